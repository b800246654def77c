//! The OpenAI-compatible API: `/v1/chat/completions`, `/v1/completions`, `/v1/models`.
//!
//! Responses follow OpenAI's shapes exactly, including the streaming chunks: the first chunk
//! of each choice carries the role, the last carries `finish_reason`, an optional usage chunk
//! (`stream_options.include_usage`) has empty `choices`, and `data: [DONE]` closes the stream.

mod chat;
mod completions;
pub mod types;

use axum::Json;
use axum::extract::{Path, State};
use serde_json::{Value, json};

pub use chat::chat_completions;
pub use completions::completions;

use crate::error::ApiError;
use crate::generation::{Completed, unix_now};
use crate::state::{AppState, ModelSpec};

/// What `system_fingerprint` says: the server and its version.
pub const FINGERPRINT: &str = concat!("perch-", env!("CARGO_PKG_VERSION"));

fn model_object(spec: &ModelSpec, created: u64) -> Value {
    json!({
        "id": spec.name,
        "object": "model",
        "created": created,
        "owned_by": "perch",
    })
}

fn created_of(state: &AppState) -> u64 {
    state
        .started
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_else(|_| unix_now())
}

/// `GET /v1/models`.
pub async fn list_models(State(state): State<AppState>) -> Json<Value> {
    let created = created_of(&state);
    let data: Vec<Value> = state
        .registry
        .specs()
        .iter()
        .map(|s| model_object(s, created))
        .collect();
    Json(json!({"object": "list", "data": data}))
}

/// `GET /v1/models/{id}`.
pub async fn get_model(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let spec = state.registry.spec(Some(&id))?;
    Ok(Json(model_object(&spec, created_of(&state))))
}

/// The `usage` object of finished choices (the prompt counted once).
fn usage(done: &[Completed]) -> Value {
    let prompt = done.first().map_or(0, |c| c.usage.prompt_tokens);
    let cached = done.first().map_or(0, |c| c.usage.cached_tokens);
    let completion: usize = done.iter().map(|c| c.usage.completion_tokens).sum();
    usage_json(prompt, cached, completion)
}

fn usage_json(prompt: usize, cached: usize, completion: usize) -> Value {
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
    })
}
