//! Request bodies parsed and checked as the handlers do before they need a model: JSON
//! deserialization with field-naming errors, then range and feature checks. The fuzz target
//! `request_bodies` drives this with arbitrary bytes; any input must give `Ok` or an
//! [`ApiError`] with a 4xx status, never a panic.

use crate::error::{ApiError, parse_json};
use crate::openai::types::{self, ChatRequest, CompletionRequest};

/// Which route's body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyKind {
    /// `POST /v1/chat/completions`.
    OpenAiChat,
    /// `POST /v1/completions`.
    OpenAiCompletion,
    /// `POST /api/generate`.
    OllamaGenerate,
    /// `POST /api/chat`.
    OllamaChat,
}

/// Parse and check `bytes` as the body of `kind`, with `max_n` choices allowed.
pub fn check(kind: BodyKind, bytes: &[u8], max_n: usize) -> Result<(), ApiError> {
    match kind {
        BodyKind::OpenAiChat => {
            let req: ChatRequest = parse_json(bytes)?;
            types::reject_unsupported(req.functions.as_ref())?;
            let v = req.knobs().validate(max_n)?;
            types::check_bias(&v.sampling, 49_152)?;
            req.logprobs()?;
            types::messages_to_template(&req.messages)?;
        }
        BodyKind::OpenAiCompletion => {
            let req: CompletionRequest = parse_json(bytes)?;
            let v = req.knobs().validate(max_n)?;
            types::check_bias(&v.sampling, 49_152)?;
        }
        BodyKind::OllamaGenerate => {
            let req: crate::ollama::chat::GenerateRequest = parse_json(bytes)?;
            crate::ollama::chat::precheck_generate(&req)?;
        }
        BodyKind::OllamaChat => {
            let req: crate::ollama::chat::ChatRequest = parse_json(bytes)?;
            crate::ollama::chat::precheck_chat(&req)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_and_bad_bodies() {
        let ok = br#"{"messages":[{"role":"user","content":"hi"}],"temperature":1}"#;
        check(BodyKind::OpenAiChat, ok, 8).unwrap();
        let e = check(
            BodyKind::OpenAiChat,
            br#"{"messages":[],"temperature":9}"#,
            8,
        )
        .unwrap_err();
        assert_eq!(e.status.as_u16(), 400);
        let e = check(
            BodyKind::OllamaGenerate,
            br#"{"model":"m","options":{"num_predict":-7}}"#,
            8,
        )
        .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("options.num_predict"));
        check(
            BodyKind::OllamaChat,
            br#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#,
            8,
        )
        .unwrap();
        assert!(check(BodyKind::OpenAiCompletion, b"\xff", 8).is_err());
    }
}
