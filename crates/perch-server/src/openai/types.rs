//! OpenAI request bodies and their validation into engine parameters.
//!
//! Bodies are deserialized leniently where OpenAI is (unknown fields are ignored, `null`
//! means absent) and strictly where a wrong value would silently change behaviour (wrong
//! types and out-of-range values are 400s naming the field). Sampling fields that are absent
//! take llama.cpp's defaults (temperature 0.8, top-k 40, top-p 0.95, min-p 0.05), which is
//! what local clients expect from a llama.cpp-style server.

use std::collections::BTreeMap;

use perch_engine::sampling::SamplingParams;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::state::ModelDefaults;
use crate::structured::GuidedFields;

/// `stop`: a string or a list of strings.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    /// One stop string.
    One(String),
    /// Several.
    Many(Vec<String>),
}

/// `stream_options`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct StreamOptions {
    /// Send a last chunk with the usage.
    #[serde(default)]
    pub include_usage: Option<bool>,
}

/// The sampling and limit fields chat and completion requests share.
#[derive(Debug, Clone, Default)]
pub struct Knobs<'a> {
    /// `max_tokens` (or `max_completion_tokens`) and the name it was given under.
    pub max_tokens: Option<(i64, &'static str)>,
    /// `temperature`.
    pub temperature: Option<f64>,
    /// `top_p`.
    pub top_p: Option<f64>,
    /// `n`.
    pub n: Option<i64>,
    /// `stop`.
    pub stop: Option<&'a Stop>,
    /// `seed`.
    pub seed: Option<i64>,
    /// `presence_penalty`.
    pub presence_penalty: Option<f64>,
    /// `frequency_penalty`.
    pub frequency_penalty: Option<f64>,
    /// `logit_bias`.
    pub logit_bias: Option<&'a BTreeMap<String, f64>>,
    /// `top_k`.
    pub top_k: Option<i64>,
    /// `min_p`.
    pub min_p: Option<f64>,
    /// `repeat_penalty`.
    pub repeat_penalty: Option<f64>,
}

/// Validated parameters.
#[derive(Debug, Clone)]
pub struct Validated {
    /// Sampling parameters (seed of the first choice).
    pub sampling: SamplingParams,
    /// Most tokens to generate (`None`: until the context is full).
    pub max_tokens: Option<usize>,
    /// Stop strings.
    pub stop: Vec<String>,
    /// Choices.
    pub n: usize,
}

/// Most stop strings per request.
pub const MAX_STOPS: usize = 16;

fn range(name: &str, v: Option<f64>, lo: f64, hi: f64) -> Result<Option<f32>, ApiError> {
    match v {
        None => Ok(None),
        Some(x) if x.is_finite() && x >= lo && x <= hi => Ok(Some(x as f32)),
        Some(x) => Err(ApiError::invalid_param(
            name,
            format!("`{name}` must be between {lo} and {hi}, got {x}"),
        )),
    }
}

impl<'a> Knobs<'a> {
    /// Fill the fields the request left out from a model's defaults (`stop` is the defaults'
    /// stop strings, made by the caller so they outlive the knobs).
    pub fn with_defaults(mut self, d: &ModelDefaults, stop: Option<&'a Stop>) -> Knobs<'a> {
        self.max_tokens = self.max_tokens.or_else(|| {
            d.i64("num_predict")
                .filter(|&n| n > 0)
                .map(|n| (n, "max_tokens"))
        });
        self.temperature = self.temperature.or(d.f64("temperature"));
        self.top_p = self.top_p.or(d.f64("top_p"));
        self.min_p = self.min_p.or(d.f64("min_p"));
        self.top_k = self.top_k.or(d.i64("top_k"));
        self.seed = self.seed.or(d.i64("seed"));
        self.repeat_penalty = self.repeat_penalty.or(d.f64("repeat_penalty"));
        self.presence_penalty = self.presence_penalty.or(d.f64("presence_penalty"));
        self.frequency_penalty = self.frequency_penalty.or(d.f64("frequency_penalty"));
        self.stop = self.stop.or(stop);
        self
    }

    /// Check every field and build the engine's parameters.
    pub fn validate(&self, max_n: usize) -> Result<Validated, ApiError> {
        let mut s = SamplingParams::default();
        let max_tokens = match self.max_tokens {
            None => None,
            Some((v, _)) if v >= 1 => Some(usize::try_from(v).unwrap_or(usize::MAX)),
            Some((v, name)) => {
                return Err(ApiError::invalid_param(
                    name,
                    format!("`{name}` must be at least 1, got {v}"),
                ));
            }
        };
        if let Some(t) = range("temperature", self.temperature, 0.0, 2.0)? {
            s.temperature = t;
        }
        if let Some(p) = range("top_p", self.top_p, 0.0, 1.0)? {
            s.top_p = p;
        }
        if let Some(p) = range("min_p", self.min_p, 0.0, 1.0)? {
            s.min_p = p;
        }
        if let Some(p) = range("presence_penalty", self.presence_penalty, -2.0, 2.0)? {
            s.presence_penalty = p;
        }
        if let Some(p) = range("frequency_penalty", self.frequency_penalty, -2.0, 2.0)? {
            s.frequency_penalty = p;
        }
        if let Some(p) = self.repeat_penalty {
            if !(p > 0.0 && p <= 10.0) {
                return Err(ApiError::invalid_param(
                    "repeat_penalty",
                    format!("`repeat_penalty` must be above 0 and at most 10, got {p}"),
                ));
            }
            s.repeat_penalty = p as f32;
        }
        if let Some(k) = self.top_k {
            s.top_k = usize::try_from(k).map_err(|_| {
                ApiError::invalid_param("top_k", format!("`top_k` must be 0 or more, got {k}"))
            })?;
        }
        let n = match self.n {
            None => 1,
            Some(n) if n >= 1 && (n as u64) <= max_n as u64 => n as usize,
            Some(n) => {
                return Err(ApiError::invalid_param(
                    "n",
                    format!("`n` must be between 1 and {max_n}, got {n}"),
                ));
            }
        };
        s.seed = self.seed.map(|v| v as u64);
        if let Some(bias) = self.logit_bias {
            for (k, &v) in bias {
                let id: u32 = k.parse().map_err(|_| {
                    ApiError::invalid_param(
                        "logit_bias",
                        format!("`logit_bias` keys must be token ids, got `{k}`"),
                    )
                })?;
                if !(-100.0..=100.0).contains(&v) {
                    return Err(ApiError::invalid_param(
                        "logit_bias",
                        format!("`logit_bias` values must be between -100 and 100, got {v}"),
                    ));
                }
                // OpenAI: -100 bans the token, 100 forces it.
                let v = if v <= -100.0 {
                    f32::NEG_INFINITY
                } else {
                    v as f32
                };
                s.logit_bias.push((id, v));
            }
        }
        let stop = match self.stop {
            None => Vec::new(),
            Some(Stop::One(s)) => vec![s.clone()],
            Some(Stop::Many(v)) => v.clone(),
        };
        let stop: Vec<String> = stop.into_iter().filter(|s| !s.is_empty()).collect();
        if stop.len() > MAX_STOPS {
            return Err(ApiError::invalid_param(
                "stop",
                format!("`stop` may hold at most {MAX_STOPS} strings"),
            ));
        }
        Ok(Validated {
            sampling: s,
            max_tokens,
            stop,
            n,
        })
    }
}

/// Check the logit-bias token ids against the vocabulary size.
pub fn check_bias(s: &SamplingParams, n_vocab: usize) -> Result<(), ApiError> {
    match s.logit_bias.iter().find(|(id, _)| *id as usize >= n_vocab) {
        Some((id, _)) => Err(ApiError::invalid_param(
            "logit_bias",
            format!("`logit_bias` token {id} is outside the vocabulary (size {n_vocab})"),
        )),
        None => Ok(()),
    }
}

/// Refuse features perch does not have, instead of silently ignoring them: the legacy
/// `functions` field (the `tools` field replaced it).
pub fn reject_unsupported(functions: Option<&Value>) -> Result<(), ApiError> {
    let non_empty =
        |v: Option<&Value>| v.is_some_and(|v| v.as_array().is_none_or(|a| !a.is_empty()));
    if non_empty(functions) {
        return Err(ApiError::unsupported(
            "functions",
            "the legacy `functions` field is not supported; send them as `tools`",
        ));
    }
    Ok(())
}

/// `guided()`: the structured-output extension fields (llama.cpp's server, vLLM) of a body.
/// A content part.
#[derive(Debug, Clone, Deserialize)]
pub struct Part {
    /// `text`, `image_url`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// The text of a text part.
    #[serde(default)]
    pub text: Option<String>,
}

/// Message content: a string or a list of parts.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Content {
    /// Plain text.
    Text(String),
    /// Parts.
    Parts(Vec<Part>),
}

/// A chat message.
#[derive(Debug, Clone, Deserialize)]
pub struct Message {
    /// `system`, `developer`, `user`, `assistant` or `tool`.
    pub role: String,
    /// The content.
    #[serde(default)]
    pub content: Option<Content>,
    /// A participant name.
    #[serde(default)]
    pub name: Option<String>,
    /// The call a tool message answers.
    #[serde(default)]
    pub tool_call_id: Option<String>,
    /// Tool calls an assistant message made.
    #[serde(default)]
    pub tool_calls: Option<Value>,
}

const ROLES: &[&str] = &["system", "developer", "user", "assistant", "tool"];

/// Check the messages and turn them into the template's input.
pub fn messages_to_template(messages: &[Message]) -> Result<Vec<Value>, ApiError> {
    if messages.is_empty() {
        return Err(ApiError::invalid_param(
            "messages",
            "`messages` must hold at least one message",
        ));
    }
    let mut out = Vec::with_capacity(messages.len());
    for (i, m) in messages.iter().enumerate() {
        if !ROLES.contains(&m.role.as_str()) {
            return Err(ApiError::invalid_param(
                format!("messages[{i}].role"),
                format!(
                    "`messages[{i}].role` must be one of {}, got `{}`",
                    ROLES.join(", "),
                    m.role
                ),
            ));
        }
        let content = match &m.content {
            None => {
                if m.role != "assistant" {
                    return Err(ApiError::invalid_param(
                        format!("messages[{i}].content"),
                        format!(
                            "`messages[{i}].content` is required for the {} role",
                            m.role
                        ),
                    ));
                }
                json!("")
            }
            Some(Content::Text(t)) => json!(t),
            Some(Content::Parts(parts)) => {
                let mut texts = Vec::with_capacity(parts.len());
                for (j, p) in parts.iter().enumerate() {
                    match (p.kind.as_str(), &p.text) {
                        ("text", Some(t)) => texts.push(json!({"type": "text", "text": t})),
                        ("text", None) => {
                            return Err(ApiError::invalid_param(
                                format!("messages[{i}].content[{j}].text"),
                                "a text part needs `text`",
                            ));
                        }
                        (other, _) => {
                            let mut e = ApiError::invalid_param(
                                format!("messages[{i}].content[{j}].type"),
                                format!(
                                    "content parts of type `{other}` are not supported; only `text` parts are"
                                ),
                            );
                            e.code = Some("unsupported_content");
                            return Err(e);
                        }
                    }
                }
                Value::Array(texts)
            }
        };
        let mut msg = json!({"role": m.role, "content": content});
        if let Some(n) = &m.name {
            msg["name"] = json!(n);
        }
        if let Some(id) = &m.tool_call_id {
            msg["tool_call_id"] = json!(id);
        }
        if let Some(tc) = &m.tool_calls {
            msg["tool_calls"] = tc.clone();
        }
        out.push(msg);
    }
    Ok(out)
}

/// `POST /v1/chat/completions`.
#[derive(Debug, Clone, Deserialize)]
pub struct ChatRequest {
    /// The model (default model when absent).
    #[serde(default)]
    pub model: Option<String>,
    /// The conversation.
    pub messages: Vec<Message>,
    /// Most tokens to generate (legacy name).
    #[serde(default)]
    pub max_tokens: Option<i64>,
    /// Most tokens to generate.
    #[serde(default)]
    pub max_completion_tokens: Option<i64>,
    /// Temperature, 0 to 2.
    #[serde(default)]
    pub temperature: Option<f64>,
    /// Nucleus mass.
    #[serde(default)]
    pub top_p: Option<f64>,
    /// Choices.
    #[serde(default)]
    pub n: Option<i64>,
    /// Stop strings.
    #[serde(default)]
    pub stop: Option<Stop>,
    /// Seed.
    #[serde(default)]
    pub seed: Option<i64>,
    /// Presence penalty.
    #[serde(default)]
    pub presence_penalty: Option<f64>,
    /// Frequency penalty.
    #[serde(default)]
    pub frequency_penalty: Option<f64>,
    /// Token id → bias.
    #[serde(default)]
    pub logit_bias: Option<BTreeMap<String, f64>>,
    /// Return log-probabilities.
    #[serde(default)]
    pub logprobs: Option<bool>,
    /// Alternatives per token, 0 to 20.
    #[serde(default)]
    pub top_logprobs: Option<i64>,
    /// End-user id (logged).
    #[serde(default)]
    pub user: Option<String>,
    /// Stream server-sent events.
    #[serde(default)]
    pub stream: Option<bool>,
    /// Streaming options.
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    /// Top-k (extension).
    #[serde(default)]
    pub top_k: Option<i64>,
    /// Min-p (extension).
    #[serde(default)]
    pub min_p: Option<f64>,
    /// Repetition penalty (extension).
    #[serde(default)]
    pub repeat_penalty: Option<f64>,
    /// Structured outputs: `text`, `json_object` or `json_schema`.
    #[serde(default)]
    pub response_format: Option<Value>,
    /// Functions the model may call.
    #[serde(default)]
    pub tools: Option<Value>,
    /// `auto`, `none`, `required` or a named function.
    #[serde(default)]
    pub tool_choice: Option<Value>,
    /// Several tool calls in one answer (default true).
    #[serde(default)]
    pub parallel_tool_calls: Option<bool>,
    /// Legacy functions (refused: use `tools`).
    #[serde(default)]
    pub functions: Option<Value>,
    /// The structured-output extensions (llama.cpp's `grammar`, `json_schema`; vLLM's
    /// `guided_*`).
    #[serde(flatten)]
    pub guided: GuidedFields,
    /// Generate past end-of-generation tokens (llama.cpp's server and vLLM extension; for
    /// benchmarks that need exact output lengths).
    #[serde(default)]
    pub ignore_eos: bool,
}

impl ChatRequest {
    /// The shared fields.
    pub fn knobs(&self) -> Knobs<'_> {
        Knobs {
            max_tokens: self
                .max_completion_tokens
                .map(|v| (v, "max_completion_tokens"))
                .or(self.max_tokens.map(|v| (v, "max_tokens"))),
            temperature: self.temperature,
            top_p: self.top_p,
            n: self.n,
            stop: self.stop.as_ref(),
            seed: self.seed,
            presence_penalty: self.presence_penalty,
            frequency_penalty: self.frequency_penalty,
            logit_bias: self.logit_bias.as_ref(),
            top_k: self.top_k,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
        }
    }

    /// Alternatives per token, when log-probabilities are asked for.
    pub fn logprobs(&self) -> Result<Option<usize>, ApiError> {
        let top = match self.top_logprobs {
            None => 0,
            Some(k) if (0..=20).contains(&k) => k as usize,
            Some(k) => {
                return Err(ApiError::invalid_param(
                    "top_logprobs",
                    format!("`top_logprobs` must be between 0 and 20, got {k}"),
                ));
            }
        };
        match self.logprobs {
            Some(true) => Ok(Some(top)),
            _ if self.top_logprobs.is_some_and(|k| k > 0) => Err(ApiError::invalid_param(
                "top_logprobs",
                "`top_logprobs` needs `logprobs: true`",
            )),
            _ => Ok(None),
        }
    }
}

/// `prompt` of a completion request.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum PromptField {
    /// One text prompt.
    Text(String),
    /// Several text prompts.
    Texts(Vec<String>),
    /// One prompt as token ids.
    Tokens(Vec<u32>),
    /// Several prompts as token ids.
    TokenLists(Vec<Vec<u32>>),
}

/// `POST /v1/completions`.
#[derive(Debug, Clone, Deserialize)]
pub struct CompletionRequest {
    /// The model (default model when absent).
    #[serde(default)]
    pub model: Option<String>,
    /// The prompt(s).
    pub prompt: PromptField,
    /// Most tokens to generate (OpenAI's default is 16).
    #[serde(default)]
    pub max_tokens: Option<i64>,
    /// Temperature, 0 to 2.
    #[serde(default)]
    pub temperature: Option<f64>,
    /// Nucleus mass.
    #[serde(default)]
    pub top_p: Option<f64>,
    /// Choices per prompt.
    #[serde(default)]
    pub n: Option<i64>,
    /// Stop strings.
    #[serde(default)]
    pub stop: Option<Stop>,
    /// Seed.
    #[serde(default)]
    pub seed: Option<i64>,
    /// Presence penalty.
    #[serde(default)]
    pub presence_penalty: Option<f64>,
    /// Frequency penalty.
    #[serde(default)]
    pub frequency_penalty: Option<f64>,
    /// Token id → bias.
    #[serde(default)]
    pub logit_bias: Option<BTreeMap<String, f64>>,
    /// Alternatives per token, 0 to 5.
    #[serde(default)]
    pub logprobs: Option<i64>,
    /// Put the prompt before the completion.
    #[serde(default)]
    pub echo: Option<bool>,
    /// Text after the completion (not supported).
    #[serde(default)]
    pub suffix: Option<String>,
    /// Server-side best-of (only 1 or n).
    #[serde(default)]
    pub best_of: Option<i64>,
    /// End-user id (logged).
    #[serde(default)]
    pub user: Option<String>,
    /// Stream server-sent events.
    #[serde(default)]
    pub stream: Option<bool>,
    /// Streaming options.
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    /// Top-k (extension).
    #[serde(default)]
    pub top_k: Option<i64>,
    /// Min-p (extension).
    #[serde(default)]
    pub min_p: Option<f64>,
    /// Repetition penalty (extension).
    #[serde(default)]
    pub repeat_penalty: Option<f64>,
    /// Structured outputs: `text`, `json_object` or `json_schema`.
    #[serde(default)]
    pub response_format: Option<Value>,
    /// The structured-output extensions (llama.cpp's `grammar`, `json_schema`; vLLM's
    /// `guided_*`).
    #[serde(flatten)]
    pub guided: GuidedFields,
    /// Generate past end-of-generation tokens (llama.cpp's server and vLLM extension; for
    /// benchmarks that need exact output lengths).
    #[serde(default)]
    pub ignore_eos: bool,
}

impl CompletionRequest {
    /// The shared fields.
    pub fn knobs(&self) -> Knobs<'_> {
        Knobs {
            max_tokens: self.max_tokens.map(|v| (v, "max_tokens")),
            temperature: self.temperature,
            top_p: self.top_p,
            n: self.n,
            stop: self.stop.as_ref(),
            seed: self.seed,
            presence_penalty: self.presence_penalty,
            frequency_penalty: self.frequency_penalty,
            logit_bias: self.logit_bias.as_ref(),
            top_k: self.top_k,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_name_the_field() {
        let k = Knobs {
            temperature: Some(3.0),
            ..Default::default()
        };
        assert_eq!(
            k.validate(8).unwrap_err().param.as_deref(),
            Some("temperature")
        );
        let k = Knobs {
            max_tokens: Some((-1, "max_tokens")),
            ..Default::default()
        };
        assert_eq!(
            k.validate(8).unwrap_err().param.as_deref(),
            Some("max_tokens")
        );
        let k = Knobs {
            n: Some(9),
            ..Default::default()
        };
        assert_eq!(k.validate(8).unwrap_err().param.as_deref(), Some("n"));
        let v = Knobs {
            temperature: Some(0.0),
            n: Some(2),
            stop: Some(&Stop::One("\n".into())),
            ..Default::default()
        }
        .validate(8)
        .unwrap();
        assert_eq!(v.sampling.temperature, 0.0);
        assert_eq!(v.n, 2);
        assert_eq!(v.stop, vec!["\n".to_string()]);
    }

    #[test]
    fn messages_are_checked() {
        let msgs: Vec<Message> = serde_json::from_value(json!([
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "hi"}]},
        ]))
        .unwrap();
        let out = messages_to_template(&msgs).unwrap();
        assert_eq!(out[1]["content"][0]["text"], "hi");
        let bad: Vec<Message> =
            serde_json::from_value(json!([{"role": "wizard", "content": "x"}])).unwrap();
        assert_eq!(
            messages_to_template(&bad).unwrap_err().param.as_deref(),
            Some("messages[0].role")
        );
        assert!(messages_to_template(&[]).is_err());
        let image: Vec<Message> = serde_json::from_value(
            json!([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]),
        )
        .unwrap();
        assert!(messages_to_template(&image).is_err());
    }

    #[test]
    fn legacy_functions_are_refused() {
        assert!(reject_unsupported(Some(&json!([{"name": "f"}]))).is_err());
        assert!(reject_unsupported(Some(&json!([]))).is_ok());
        assert!(reject_unsupported(None).is_ok());
    }
}

#[cfg(test)]
mod fuzz;
