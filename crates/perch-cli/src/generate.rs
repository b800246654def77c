//! What `perch run` and `perch chat` share: loading a model with its tokenizer and chat
//! template, the sampling flags, and the loop that turns a prompt into streamed text.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use perch_engine::engine::{EngineStats, Event, FinishReason, GenerationRequest};
use perch_engine::kv::KvType;
use perch_engine::loader::{ChatModel, DraftOptions, LoadOptions};
use perch_engine::sampling::SamplingParams;
use perch_engine::speculative::Speculative;
use perch_store::Entry;
use perch_template::ChatTemplate;
use serde_json::Value;

/// Flags shared by `run` and `chat`.
#[derive(clap::Args, Debug, Clone)]
pub struct ModelArgs {
    /// Context size in tokens (default: the model's, at most 4096).
    #[arg(long = "ctx-size", short = 'c')]
    pub ctx_size: Option<usize>,
    /// Compute threads (default: the physical cores).
    #[arg(long, short = 't')]
    pub threads: Option<usize>,
    /// Tokens computed per forward step while reading a prompt.
    #[arg(long = "batch-size", short = 'b', default_value_t = 512)]
    pub batch_size: usize,
    /// A chat template file (Jinja) to use instead of the model's own.
    #[arg(long = "chat-template")]
    pub chat_template: Option<PathBuf>,
    /// KV cache element type: f16, or q8_0 for about half the memory.
    #[arg(long = "kv-type", default_value = "f16")]
    pub kv_type: KvType,
    /// Speculative decoding.
    #[command(flatten)]
    pub speculative: SpeculativeArgs,
}

/// Speculative decoding flags shared by `run`, `chat` and `serve`.
#[derive(clap::Args, Debug, Clone)]
pub struct SpeculativeArgs {
    /// Speculative decoding by prompt lookup: up to N draft tokens per step, guessed from the
    /// context and verified in the same step (same output, fewer steps when text repeats).
    #[arg(long = "draft-ngram", value_name = "N", default_value_t = 0)]
    pub draft_ngram: usize,
    /// Speculative decoding with a draft model: a smaller GGUF (or store name) with the same
    /// vocabulary guesses the next tokens, the model verifies them in one step (same output).
    #[arg(
        long = "draft-model",
        value_name = "FILE",
        conflicts_with = "draft_ngram"
    )]
    pub draft_model: Option<String>,
    /// Most tokens the draft model guesses per step.
    #[arg(
        long = "draft-max",
        value_name = "N",
        default_value_t = 8,
        requires = "draft_model"
    )]
    pub draft_max: usize,
    /// Drafts shorter than N tokens are not verified.
    #[arg(
        long = "draft-min",
        value_name = "N",
        default_value_t = 0,
        requires = "draft_model"
    )]
    pub draft_min: usize,
    /// The draft model stops guessing at a token whose probability (among its 10 best) is
    /// below P.
    #[arg(
        long = "draft-p-min",
        value_name = "P",
        default_value_t = 0.75,
        requires = "draft_model"
    )]
    pub draft_p_min: f32,
}

impl SpeculativeArgs {
    /// The loader's speculation settings (the draft model resolved like a model argument:
    /// a file, a store name, or a reference pulled on first use).
    pub fn options(&self) -> Result<(Option<Speculative>, Option<DraftOptions>)> {
        let ngram = (self.draft_ngram > 0).then(|| Speculative::ngram(self.draft_ngram));
        let draft = match &self.draft_model {
            None => None,
            Some(m) => {
                let (path, _) = crate::store::resolve(m)
                    .map_err(|e| anyhow::anyhow!("--draft-model {m}: {e}"))?;
                Some(DraftOptions {
                    path,
                    max_draft: self.draft_max,
                    min_draft: self.draft_min,
                    p_min: self.draft_p_min,
                })
            }
        };
        Ok((ngram, draft))
    }
}

/// The speculation line of `perch run` and `perch chat`: drafts tried and accepted, tokens
/// per model step, and the draft model's share of the time. `None` when nothing was drafted.
pub fn speculative_report(e: &EngineStats) -> Option<String> {
    if e.draft_tokens == 0 {
        return None;
    }
    let mut line = format!(
        "speculative: {} draft tokens, {} accepted ({:.0}%), {} model steps",
        e.draft_tokens,
        e.draft_accepted,
        100.0 * e.draft_accepted as f64 / e.draft_tokens as f64,
        e.steps
    );
    if e.draft_model_steps > 0 {
        line.push_str(&format!(
            "; draft model: {} steps, {} tokens in {:.2} s",
            e.draft_model_steps,
            e.draft_model_tokens,
            e.draft_model_time.as_secs_f64()
        ));
    }
    Some(line)
}

/// Sampling flags shared by `run` and `chat`. A flag left out takes the store model's stored
/// parameter (Ollama's names: `temperature`, `top_k`, ...), else llama.cpp's default.
#[derive(clap::Args, Debug, Clone)]
pub struct SamplingArgs {
    /// Temperature; 0 means greedy decoding [default: 0.8].
    #[arg(long = "temp")]
    pub temp: Option<f32>,
    /// Keep the k most likely tokens (0: off) [default: 40].
    #[arg(long = "top-k")]
    pub top_k: Option<usize>,
    /// Nucleus sampling mass (1.0: off) [default: 0.95].
    #[arg(long = "top-p")]
    pub top_p: Option<f32>,
    /// Minimum probability relative to the top token (0.0: off) [default: 0.05].
    #[arg(long = "min-p")]
    pub min_p: Option<f32>,
    /// Repetition penalty (1.0: off) [default: 1.0].
    #[arg(long = "repeat-penalty")]
    pub repeat_penalty: Option<f32>,
    /// Random seed (default: random).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Most tokens to generate (default: until end of generation or a full context).
    #[arg(long = "max-tokens", short = 'n')]
    pub max_tokens: Option<usize>,
    /// Keep generating after end-of-generation tokens.
    #[arg(long = "ignore-eos")]
    pub ignore_eos: bool,
}

impl SamplingArgs {
    /// The engine's sampling parameters.
    pub fn params(&self) -> SamplingParams {
        SamplingParams {
            temperature: self.temp.unwrap_or(0.8),
            top_k: self.top_k.unwrap_or(40),
            top_p: self.top_p.unwrap_or(0.95),
            min_p: self.min_p.unwrap_or(0.05),
            repeat_penalty: self.repeat_penalty.unwrap_or(1.0),
            seed: self.seed,
            ..SamplingParams::default()
        }
    }

    /// Fill the flags left out from a store model's parameters.
    pub fn with_stored(mut self, params: &BTreeMap<String, Value>) -> SamplingArgs {
        let f = |k: &str| params.get(k).and_then(Value::as_f64).map(|v| v as f32);
        let u = |k: &str| {
            params
                .get(k)
                .and_then(Value::as_i64)
                .and_then(|v| usize::try_from(v).ok())
        };
        self.temp = self.temp.or(f("temperature"));
        self.top_k = self.top_k.or(u("top_k"));
        self.top_p = self.top_p.or(f("top_p"));
        self.min_p = self.min_p.or(f("min_p"));
        self.repeat_penalty = self.repeat_penalty.or(f("repeat_penalty"));
        self.seed = self.seed.or(params.get("seed").and_then(Value::as_u64));
        self.max_tokens = self.max_tokens.or(u("num_predict").filter(|&n| n > 0));
        self
    }
}

/// A store model's stop strings.
pub fn stored_stops(params: &BTreeMap<String, Value>) -> Vec<String> {
    match params.get("stop") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

/// A model loaded for the command line: engine, tokenizer and chat template (the same loader
/// the server uses).
pub type Loaded = ChatModel;

/// Load `model` (a file, a name in the store, or a reference pulled on first use) with the
/// flags in `args`; also returns the store entry, whose parameters, system prompt and messages
/// the caller applies.
pub fn load(model: &str, args: &ModelArgs) -> Result<(Loaded, Option<Entry>)> {
    let (path, entry) = crate::store::resolve(model)?;
    if perch_onnx::is_onnx_file(&path) {
        anyhow::bail!(
            "{} is an ONNX model; perch runs ONNX models as embedding models only: serve it with \
             `perch serve --model {}` and use /v1/embeddings or /api/embed",
            path.display(),
            path.display()
        );
    }
    let chat_template = match &args.chat_template {
        Some(p) => Some(ChatTemplate::read_file(p)?),
        None => entry.as_ref().and_then(|e| e.manifest.template.clone()),
    };
    let stored_ctx = entry
        .as_ref()
        .and_then(|e| e.manifest.parameters.get("num_ctx"))
        .and_then(Value::as_u64)
        .and_then(|n| usize::try_from(n).ok())
        .filter(|&n| n > 0);
    let (speculative, draft) = args.speculative.options()?;
    let opts = LoadOptions {
        n_ctx: args.ctx_size.or(stored_ctx),
        parallel: 1,
        kv_memory: None,
        threads: args.threads,
        max_batch_tokens: args.batch_size,
        chat_template,
        kv_type: args.kv_type,
        speculative,
        draft,
    };
    if opts.n_ctx == Some(0) {
        anyhow::bail!("--ctx-size must be positive");
    }
    Ok((ChatModel::load(&path, &opts)?, entry))
}

/// Counts and times of one generation.
#[derive(Clone, Debug)]
pub struct Stats {
    /// Prompt tokens.
    pub prompt_tokens: usize,
    /// Prompt tokens the prefix cache already held.
    pub cached_tokens: usize,
    /// Time until the first generated token.
    pub prompt_time: Duration,
    /// Tokens generated.
    pub gen_tokens: usize,
    /// Time spent generating after the first token.
    pub gen_time: Duration,
    /// Why it ended.
    pub finish: FinishReason,
}

impl Stats {
    /// llama.cpp-style timing lines.
    pub fn report(&self) -> String {
        let rate = |n: usize, d: Duration| {
            if d.as_secs_f64() > 0.0 {
                n as f64 / d.as_secs_f64()
            } else {
                0.0
            }
        };
        let computed = self.prompt_tokens - self.cached_tokens;
        // The first generated token's time belongs to the prompt; the rest to generation.
        let n_gen = self.gen_tokens.saturating_sub(1);
        let ended = match self.finish {
            FinishReason::Stop => "end of generation",
            FinishReason::Length => "token limit",
            FinishReason::Cancelled => "cancelled",
        };
        format!(
            "prompt: {} tokens ({} from cache) in {:.2} s ({:.1} tokens/s)\ngenerated: {} tokens in {:.2} s ({:.1} tokens/s), ended by {ended}",
            self.prompt_tokens,
            self.cached_tokens,
            self.prompt_time.as_secs_f64(),
            rate(computed, self.prompt_time),
            self.gen_tokens,
            self.gen_time.as_secs_f64(),
            rate(n_gen, self.gen_time),
        )
    }
}

/// Generate for `prompt`, writing text to `out` as it is produced. Returns the generated text
/// and the counts.
pub fn generate(
    loaded: &Loaded,
    prompt: Vec<u32>,
    sampling: &SamplingArgs,
    stops: &[String],
    out: &mut dyn Write,
) -> Result<(String, Stats)> {
    if prompt.len() >= loaded.n_ctx() {
        anyhow::bail!(
            "the prompt has {} tokens but the context holds {} (raise --ctx-size)",
            prompt.len(),
            loaded.n_ctx()
        );
    }
    let prompt_tokens = prompt.len();
    tracing::debug!(?prompt, "prompt tokens");
    let max_tokens = sampling
        .max_tokens
        .unwrap_or(loaded.n_ctx() - prompt_tokens);
    let mut rx = loaded.handle().submit(GenerationRequest {
        prompt,
        sampling: sampling.params(),
        max_tokens,
        stop: stops.to_vec(),
        ignore_eos: sampling.ignore_eos,
        logprobs: None,
        constraint: None,
    })?;
    let mut text = String::new();
    let mut gen_tokens = 0;
    loop {
        match rx.blocking_recv() {
            Some(Event::Token { text: t, .. }) => {
                gen_tokens += 1;
                out.write_all(t.as_bytes())?;
                out.flush()?;
                text.push_str(&t);
            }
            Some(Event::Done {
                text: t,
                finish,
                usage,
                timings,
            }) => {
                out.write_all(t.as_bytes())?;
                out.flush()?;
                text.push_str(&t);
                return Ok((
                    text,
                    Stats {
                        prompt_tokens,
                        cached_tokens: usage.cached_tokens,
                        prompt_time: timings.prompt,
                        gen_tokens: usage.completion_tokens.max(gen_tokens),
                        gen_time: timings.generation,
                        finish,
                    },
                ));
            }
            Some(Event::Error(e)) => anyhow::bail!("generation failed: {e}"),
            None => anyhow::bail!("the engine stopped"),
        }
    }
}
