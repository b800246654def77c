//! # perch-template
//!
//! Turns a conversation into the prompt text a model was trained on, by rendering the
//! model's chat template (`tokenizer.chat_template` in a GGUF, or a file given with
//! `--chat-template`).
//!
//! Chat templates are Jinja2 programs written for Hugging Face transformers, so the goal is
//! to render them exactly as transformers does. They run in [minijinja] configured like
//! transformers' Jinja2 environment (`trim_blocks`, `lstrip_blocks`, loop controls, Python
//! string/dict methods through `minijinja-contrib`'s pycompat, `raise_exception`,
//! `strftime_now`, transformers' `tojson` with `indent`/`ensure_ascii`/`separators`/
//! `sort_keys`, Python's `str()` for printed values, the `{% generation %}` tag). The
//! variables are those transformers passes: `messages`, `tools` (`none` without tools),
//! `documents` (`none`), `add_generation_prompt`, `bos_token`, `eos_token`, plus any extra
//! context.
//!
//! Some adjustments to the input follow llama.cpp and vLLM, because templates are stricter
//! than the OpenAI API clients speak:
//!
//! - The `developer` role is renamed `system`.
//! - Tool-call `arguments` given as a JSON string (as OpenAI sends them) are parsed into an
//!   object, which is what templates expect (transformers' documented convention; vLLM does
//!   the same).
//! - When the template ignores or rejects a system message (probed once, when the template
//!   is loaded), a leading system message is merged into the next message, separated by a
//!   newline, as llama.cpp does.
//! - Content given as a list of text parts is joined with newlines when the template only
//!   prints string content; string content is wrapped as one text part when the template
//!   only handles lists.
//!
//! Ollama's Go templates (a Modelfile's `TEMPLATE`, the API's `template` field) are recognised
//! and rendered by [`gotmpl`] the way Ollama renders them.
//!
//! A template that is missing entirely is replaced by ChatML ([`ChatTemplate::chatml`]),
//! like llama.cpp's default. A failing template is a [`TemplateError`] naming the line and
//! what failed. Hostile templates cannot hang or overflow the stack: every render has an
//! instruction budget (minijinja fuel), a recursion limit and an output-size limit.
//!
//! ```
//! use perch_template::{ChatTemplate, RenderInput};
//! use serde_json::json;
//!
//! let tmpl = ChatTemplate::chatml("", "<|im_end|>").unwrap();
//! let prompt = tmpl
//!     .render(&RenderInput {
//!         messages: vec![json!({"role": "user", "content": "Hi"})],
//!         add_generation_prompt: true,
//!         ..Default::default()
//!     })
//!     .unwrap();
//! assert_eq!(prompt, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
//! ```
#![deny(missing_docs)]

mod env;
mod error;
pub mod gotmpl;
mod normalize;
mod python;

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use minijinja::Environment;
use serde_json::{Map, Value as Json};

pub use error::TemplateError;

/// ChatML, the template used when a model has none (llama.cpp's default as well).
pub const CHATML_TEMPLATE: &str = "{%- for message in messages -%}\n\
    {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' -}}\n\
    {%- endfor -%}\n\
    {%- if add_generation_prompt -%}\n\
    {{- '<|im_start|>assistant\\n' -}}\n\
    {%- endif -%}";

/// Rendered prompts longer than this many bytes are refused (a template that would emit
/// more is broken or hostile; real prompts are far below it).
pub const MAX_OUTPUT_BYTES: usize = 64 << 20;

/// A conversation to render.
#[derive(Debug, Clone, Default)]
pub struct RenderInput {
    /// The messages, OpenAI-shaped JSON objects: `role`, `content` (a string, a list of
    /// `{"type": "text", "text": ...}` parts, or null), and optionally `tool_calls`,
    /// `tool_call_id`, `name`, `reasoning_content`. Other fields are passed through.
    pub messages: Vec<Json>,
    /// Tool definitions (OpenAI `tools`), passed to the template as `tools`; `None` gives
    /// the template `tools = none`.
    pub tools: Option<Vec<Json>>,
    /// Whether to end the prompt with the header of an assistant turn.
    pub add_generation_prompt: bool,
    /// Extra template variables (e.g. `enable_thinking`, `date_string`). They cannot
    /// replace `messages`, `tools`, `add_generation_prompt`, `bos_token` or `eos_token`.
    pub extra_context: Map<String, Json>,
    /// The time `strftime_now` reports (UTC); `None` means the current time.
    pub now: Option<SystemTime>,
}

/// What the template does with its input, probed once when it is loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TemplateCaps {
    /// A leading system message's text shows up in the output.
    pub supports_system_role: bool,
    /// String message content shows up in the output.
    pub supports_string_content: bool,
    /// Content given as a list of text parts shows up as text in the output.
    pub supports_typed_content: bool,
}

/// A compiled chat template with the model's BOS and EOS token text.
#[derive(Debug)]
pub struct ChatTemplate {
    env: Environment<'static>,
    /// An Ollama Go template, rendered instead of Jinja when the source is one.
    go: Option<gotmpl::GoTemplate>,
    source: String,
    bos_token: String,
    eos_token: String,
    caps: TemplateCaps,
}

impl ChatTemplate {
    /// Compiles `source` and probes what it supports. `bos_token` and `eos_token` are the
    /// texts of the model's BOS and EOS tokens (empty when the model has none).
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<Self, TemplateError> {
        if gotmpl::is_go_template(source) {
            let go = gotmpl::GoTemplate::parse(source).map_err(|e| TemplateError::Syntax {
                line: None,
                detail: e.to_string(),
            })?;
            let env = env::build(String::new()).map_err(|e| TemplateError::from_compile(&e))?;
            return Ok(ChatTemplate {
                env,
                go: Some(go),
                source: source.to_string(),
                bos_token: bos_token.to_string(),
                eos_token: eos_token.to_string(),
                caps: TemplateCaps {
                    supports_system_role: true,
                    supports_string_content: true,
                    supports_typed_content: true,
                },
            });
        }
        let prepared = env::rewrite_generation_tags(source);
        let env = env::build(prepared).map_err(|e| TemplateError::from_compile(&e))?;
        let mut tmpl = ChatTemplate {
            env,
            go: None,
            source: source.to_string(),
            bos_token: bos_token.to_string(),
            eos_token: eos_token.to_string(),
            caps: TemplateCaps {
                supports_system_role: true,
                supports_string_content: true,
                supports_typed_content: false,
            },
        };
        tmpl.caps = normalize::probe_caps(&tmpl);
        tracing::debug!(caps = ?tmpl.caps, "chat template loaded");
        Ok(tmpl)
    }

    /// The ChatML template ([`CHATML_TEMPLATE`]), for models without one.
    pub fn chatml(bos_token: &str, eos_token: &str) -> Result<Self, TemplateError> {
        Self::new(CHATML_TEMPLATE, bos_token, eos_token)
    }

    /// The template a model should use: `override_source` (e.g. the contents of
    /// `--chat-template FILE`) if given, else the model's own (`tokenizer.chat_template`),
    /// else ChatML. A model template that is empty or the word `chatml` also means ChatML.
    pub fn for_model(
        override_source: Option<&str>,
        model_template: Option<&str>,
        bos_token: &str,
        eos_token: &str,
    ) -> Result<Self, TemplateError> {
        match (override_source, model_template) {
            (Some(src), _) => Self::new(src, bos_token, eos_token),
            (None, Some(src)) if !src.trim().is_empty() && src.trim() != "chatml" => {
                Self::new(src, bos_token, eos_token)
            }
            _ => Self::chatml(bos_token, eos_token),
        }
    }

    /// Reads a template file (for `--chat-template FILE`).
    pub fn read_file(path: &Path) -> Result<String, TemplateError> {
        std::fs::read_to_string(path).map_err(|source| TemplateError::Io {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Whether this is an Ollama Go template ([`gotmpl`]) rather than Jinja. Go templates
    /// do not write the BOS token: the tokenizer adds it as the vocabulary asks, as Ollama
    /// does.
    pub fn is_go(&self) -> bool {
        self.go.is_some()
    }

    /// Another template (Jinja or Go) for the same model's BOS and EOS tokens.
    pub fn with_source(&self, source: &str) -> Result<ChatTemplate, TemplateError> {
        Self::new(source, &self.bos_token, &self.eos_token)
    }

    /// The template source as given.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// What the template was found to support when it was loaded.
    pub fn caps(&self) -> TemplateCaps {
        self.caps
    }

    /// Renders the conversation into prompt text.
    pub fn render(&self, input: &RenderInput) -> Result<String, TemplateError> {
        if let Some(go) = &self.go {
            return go
                .render_chat(&input.messages, input.tools.as_deref())
                .map_err(|e| TemplateError::Render {
                    line: None,
                    detail: e.to_string(),
                });
        }
        let messages = normalize::messages(&input.messages, &self.caps)?;
        let tools = match &input.tools {
            Some(tools) => Json::Array(tools.clone()),
            None => Json::Null,
        };
        self.render_raw(
            Json::Array(messages),
            tools,
            input.add_generation_prompt,
            &input.extra_context,
            input.now,
            &self.bos_token,
            &self.eos_token,
        )
    }

    /// Renders without any input adjustment.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn render_raw(
        &self,
        messages: Json,
        tools: Json,
        add_generation_prompt: bool,
        extra: &Map<String, Json>,
        now: Option<SystemTime>,
        bos_token: &str,
        eos_token: &str,
    ) -> Result<String, TemplateError> {
        let mut ctx = extra.clone();
        ctx.insert("messages".into(), messages);
        ctx.insert("tools".into(), tools);
        ctx.entry("documents").or_insert(Json::Null);
        ctx.insert(
            "add_generation_prompt".into(),
            Json::Bool(add_generation_prompt),
        );
        ctx.insert("bos_token".into(), Json::String(bos_token.into()));
        ctx.insert("eos_token".into(), Json::String(eos_token.into()));
        let now = now.unwrap_or_else(SystemTime::now);
        let secs = match now.duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
        };
        ctx.insert(env::NOW_VAR.into(), Json::from(secs));

        let tmpl = self
            .env
            .get_template(env::TEMPLATE_NAME)
            .map_err(|e| TemplateError::from_compile(&e))?;
        let mut out = BoundedWriter {
            buf: Vec::new(),
            limit: MAX_OUTPUT_BYTES,
        };
        let captured = tmpl
            .render_captured_to(Json::Object(ctx), &mut out)
            .map_err(|e| TemplateError::from_render(&e))?;
        if let Some((consumed, _)) = captured.state().fuel_levels() {
            tracing::trace!(
                fuel = consumed,
                bytes = out.buf.len(),
                "chat template rendered"
            );
        }
        String::from_utf8(out.buf).map_err(|_| TemplateError::Render {
            line: None,
            detail: "output is not UTF-8".into(),
        })
    }
}

/// An output buffer that fails once it would exceed `limit` bytes.
struct BoundedWriter {
    buf: Vec<u8>,
    limit: usize,
}

impl std::io::Write for BoundedWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() + data.len() > self.limit {
            return Err(std::io::Error::other(error::OutputTooLarge));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
