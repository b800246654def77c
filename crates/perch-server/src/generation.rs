//! What the OpenAI and Ollama routes share: building prompts off the async runtime, submitting
//! to the engine, following a generation's events with metrics, and collecting a whole answer.
//!
//! A [`Running`] generation owns the engine's receiver and the request's queue slot: dropping
//! it (the client went away, so axum drops the handler future or the response stream) drops
//! the receiver, which cancels the sequence and frees its KV blocks at the engine's next step.

use std::sync::Arc;
use std::time::{Duration, Instant};

use perch_engine::EngineError;
use perch_engine::engine::{Event, FinishReason, GenerationRequest, Timings, Usage};
use perch_engine::loader::LoadError;
use perch_engine::sampling::Logprobs;
use tokio::sync::mpsc::UnboundedReceiver;

use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::state::{AppState, LoadedModel, Slot};

/// How a prompt is given.
#[derive(Debug, Clone)]
pub enum PromptInput {
    /// A conversation rendered with the chat template.
    Chat(Vec<serde_json::Value>),
    /// Text tokenized as it is (BOS per the vocabulary).
    Text(String),
    /// Token ids.
    Tokens(Vec<u32>),
    /// A conversation rendered with tool definitions passed to the template.
    ChatTools(Vec<serde_json::Value>, Vec<serde_json::Value>),
}

/// Tokenize `input` for `model` on a blocking thread (template rendering and tokenization are
/// CPU work).
pub async fn tokenize(model: &Arc<LoadedModel>, input: PromptInput) -> Result<Vec<u32>, ApiError> {
    let m = model.clone();
    tokio::task::spawn_blocking(move || match input {
        PromptInput::Chat(messages) => m.chat.chat_prompt(&messages),
        PromptInput::Text(text) => m.chat.raw_prompt(&text),
        PromptInput::Tokens(ids) => Ok(ids),
        PromptInput::ChatTools(messages, tools) => {
            m.chat.render_prompt(&perch_template::RenderInput {
                messages,
                tools: Some(tools),
                add_generation_prompt: true,
                ..Default::default()
            })
        }
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(|e| match e {
        LoadError::Template(t) => ApiError::invalid_param(
            "messages",
            format!("the model's chat template cannot render these messages: {t}"),
        ),
        LoadError::Tokenizer(t) => ApiError::invalid(format!("cannot tokenize the prompt: {t}")),
        other => ApiError::internal(other),
    })
}

/// The engine's answer to a submission, as an API error.
pub fn submit_error(e: EngineError) -> ApiError {
    match e {
        EngineError::ContextOverflow { prompt, ctx } => ApiError::context_overflow(prompt, ctx),
        EngineError::BadToken { id, n_vocab } => ApiError::invalid_param(
            "prompt",
            format!("token id {id} is outside the vocabulary (size {n_vocab})"),
        ),
        EngineError::BadConfig(msg) if msg.contains("empty") => {
            ApiError::invalid_param("prompt", "the prompt is empty")
        }
        other => ApiError::internal(other),
    }
}

/// The API's name of a finish reason.
pub fn finish_name(f: FinishReason) -> &'static str {
    match f {
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
        // Only at shutdown; clients know no other reason, and the text did stop.
        FinishReason::Cancelled => "stop",
    }
}

/// A generation in progress.
#[derive(Debug)]
pub struct Running {
    rx: UnboundedReceiver<Event>,
    slot: Slot,
    metrics: Arc<Metrics>,
    submitted: Instant,
    last_token: Option<Instant>,
    done: bool,
    /// Who asked: tokens are charged to their key's per-minute limit.
    caller: Option<crate::auth::Caller>,
    prompt_len: u64,
    generated: u64,
}

impl Drop for Running {
    /// Charge what was used (the whole prompt and the tokens so far), finished or not.
    fn drop(&mut self) {
        if let Some(c) = self.caller.take() {
            c.charge(self.prompt_len + self.generated);
        }
    }
}

/// Submit `req` to the slot's model.
pub fn start(state: &AppState, slot: Slot, req: GenerationRequest) -> Result<Running, ApiError> {
    let prompt_len = req.prompt.len() as u64;
    let rx = slot
        .model()
        .chat
        .handle()
        .submit(req)
        .map_err(submit_error)?;
    Ok(Running {
        rx,
        slot,
        metrics: state.metrics.clone(),
        submitted: Instant::now(),
        last_token: None,
        done: false,
        caller: crate::auth::caller(),
        prompt_len,
        generated: 0,
    })
}

impl Running {
    /// The model.
    pub fn model(&self) -> &Arc<LoadedModel> {
        self.slot.model()
    }

    /// The next event, or `None` after the last.
    pub async fn next(&mut self) -> Option<Event> {
        if self.done {
            return None;
        }
        let ev = self.rx.recv().await;
        let now = Instant::now();
        match &ev {
            Some(Event::Token { .. }) => {
                match self.last_token {
                    None => self.metrics.record_ttft(now - self.submitted),
                    Some(t) => self.metrics.record_inter_token(now - t),
                }
                self.last_token = Some(now);
                self.generated += 1;
            }
            Some(Event::Done { finish, usage, .. }) => {
                self.done = true;
                self.generated = usage.completion_tokens as u64;
                self.metrics.record_generation(
                    &self.slot.model().name,
                    usage.prompt_tokens,
                    usage.cached_tokens,
                    usage.completion_tokens,
                    finish_name(*finish),
                );
            }
            Some(Event::Error(_)) | None => self.done = true,
        }
        match ev {
            None => Some(Event::Error("the engine stopped".into())),
            some => some,
        }
    }

    /// Run to the end and gather the answer.
    pub async fn collect(mut self) -> Result<Completed, ApiError> {
        let mut text = String::new();
        let mut tokens = Vec::new();
        while let Some(ev) = self.next().await {
            match ev {
                Event::Token {
                    id,
                    text: t,
                    logprobs,
                } => {
                    text.push_str(&t);
                    tokens.push(TokenOut {
                        id,
                        text: t,
                        logprobs,
                    });
                }
                Event::Done {
                    text: t,
                    finish,
                    usage,
                    timings,
                } => {
                    text.push_str(&t);
                    return Ok(Completed {
                        text,
                        tokens,
                        finish,
                        usage,
                        timings,
                        total: self.submitted.elapsed(),
                    });
                }
                Event::Error(e) => return Err(ApiError::internal(e)),
            }
        }
        Err(ApiError::internal("the generation ended without a result"))
    }

    /// Time since submission.
    pub fn elapsed(&self) -> Duration {
        self.submitted.elapsed()
    }
}

/// A generated token as the engine reported it.
#[derive(Debug, Clone)]
pub struct TokenOut {
    /// Token id.
    pub id: u32,
    /// Text it released.
    pub text: String,
    /// Log-probabilities, when asked.
    pub logprobs: Option<Logprobs>,
}

/// A finished generation.
#[derive(Debug, Clone)]
pub struct Completed {
    /// All the text.
    pub text: String,
    /// Each token.
    pub tokens: Vec<TokenOut>,
    /// Why it ended.
    pub finish: FinishReason,
    /// Token counts.
    pub usage: Usage,
    /// Engine timings.
    pub timings: Timings,
    /// From submission to the end.
    pub total: Duration,
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A short random-looking id with `prefix` (unique within the process, not guessable enough
/// to be a secret, and not meant to be).
pub fn new_id(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    // A splitmix64 step mixes the time and the counter into 64 well-spread bits.
    let mut z = t ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    format!("{prefix}{z:016x}{n:x}")
}

/// What [`launch`] needs besides the prompt.
#[derive(Debug, Clone)]
pub struct Launch {
    /// Sampling parameters (the seed is the first choice's; choice `i` gets `seed + i`).
    pub sampling: perch_engine::sampling::SamplingParams,
    /// Most tokens to generate (`None`: until the context is full).
    pub max_tokens: Option<usize>,
    /// Stop strings.
    pub stop: Vec<String>,
    /// Alternatives per token when log-probabilities are wanted.
    pub logprobs: Option<usize>,
    /// Choices.
    pub n: usize,
    /// Constrained decoding: every choice's output must match this grammar.
    pub grammar: Option<perch_grammar::Grammar>,
    /// Keep generating past end-of-generation tokens (`ignore_eos`, as llama.cpp's server and
    /// vLLM accept it): the request ends at `max_tokens`, a stop string or the context.
    pub ignore_eos: bool,
}

/// Submit `n` generations of `prompt`, each taking a queue slot. The server's limits on the
/// prompt's length and `max_tokens` apply here.
pub fn launch(
    state: &AppState,
    model: &Arc<LoadedModel>,
    prompt: &[u32],
    l: &Launch,
) -> Result<Vec<Running>, ApiError> {
    let cfg = &state.config;
    if let Some(max) = cfg.max_prompt_tokens.filter(|&m| prompt.len() > m) {
        let mut e = ApiError::invalid_param(
            "messages",
            format!(
                "the prompt has {} tokens; this server accepts at most {max} (--max-prompt-tokens)",
                prompt.len()
            ),
        );
        e.code = Some("context_length_exceeded");
        return Err(e);
    }
    let max_tokens = match (l.max_tokens, cfg.max_tokens_limit) {
        (Some(n), Some(lim)) if n > lim => {
            return Err(ApiError::invalid_param(
                "max_tokens",
                format!(
                    "`max_tokens` is {n}; this server allows at most {lim} (--max-tokens-limit)"
                ),
            ));
        }
        (Some(n), _) => n,
        (None, Some(lim)) => lim.min(model.chat.n_ctx()),
        (None, None) => model.chat.n_ctx(),
    };
    let mut runs = Vec::with_capacity(l.n);
    let vocab = l
        .grammar
        .as_ref()
        .map(|_| crate::structured::token_vocab(model.chat.tokenizer()));
    for i in 0..l.n {
        let slot = model.acquire(state.config.max_queue)?;
        let mut sampling = l.sampling.clone();
        sampling.seed = sampling.seed.map(|s| s.wrapping_add(i as u64));
        let req = GenerationRequest {
            prompt: prompt.to_vec(),
            sampling,
            max_tokens,
            stop: l.stop.clone(),
            ignore_eos: l.ignore_eos,
            logprobs: l.logprobs,
            constraint: l.grammar.as_ref().zip(vocab.as_ref()).map(|(g, v)| {
                Box::new(crate::structured::GrammarConstraint::new(g, v.clone()))
                    as Box<dyn perch_engine::sampling::Constraint>
            }),
        };
        runs.push(start(state, slot, req)?);
    }
    Ok(runs)
}

/// The text of token `id` for log-probability reports.
pub fn token_piece(model: &LoadedModel, id: u32) -> (String, Vec<u8>) {
    let bytes = model
        .chat
        .tokenizer()
        .token_to_piece(id, false)
        .map(<[u8]>::to_vec)
        .unwrap_or_default();
    (String::from_utf8_lossy(&bytes).into_owned(), bytes)
}
