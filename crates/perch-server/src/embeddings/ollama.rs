//! Ollama's `POST /api/embed` and the legacy `POST /api/embeddings`.

use std::time::Instant;

use axum::Json;
use axum::extract::State;
use perch_engine::embed::EmbedInput;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{api_error, check_dims, embedder_for, truncate_dims};
use crate::error::{ApiError, Ollama, OllamaJson};
use crate::ollama::KeepAlive as OllamaKeepAlive;
use crate::state::{AppState, KeepAlive};

/// `/api/embed`'s body.
#[derive(Debug, Deserialize)]
pub struct EmbedRequest {
    /// The model.
    model: String,
    /// A string or a list of strings.
    #[serde(default)]
    input: Value,
    /// Cut inputs longer than the model's maximum (default true, as Ollama).
    #[serde(default)]
    truncate: Option<bool>,
    /// Keep this many dimensions (renormalized).
    #[serde(default)]
    dimensions: Option<i64>,
    /// How long the model stays loaded afterwards.
    #[serde(default)]
    keep_alive: Option<OllamaKeepAlive>,
    /// Runner options (none apply to an embedding model; accepted as Ollama does).
    #[serde(default)]
    #[allow(dead_code)]
    options: Option<Value>,
}

/// `/api/embeddings`' body.
#[derive(Debug, Deserialize)]
pub struct LegacyRequest {
    /// The model.
    model: String,
    /// The text.
    #[serde(default)]
    prompt: String,
    /// How long the model stays loaded afterwards.
    #[serde(default)]
    keep_alive: Option<OllamaKeepAlive>,
    /// Runner options (accepted, unused).
    #[serde(default)]
    #[allow(dead_code)]
    options: Option<Value>,
}

fn keep_alive(k: Option<&OllamaKeepAlive>) -> Result<Option<KeepAlive>, ApiError> {
    Ok(match k {
        None => None,
        Some(k) => Some(match k.duration()? {
            Some(d) => KeepAlive::For(d),
            None => KeepAlive::Forever,
        }),
    })
}

fn model_name(m: &str) -> Result<&str, ApiError> {
    let m = m.trim();
    if m.is_empty() {
        return Err(ApiError::invalid_param("model", "`model` is required"));
    }
    Ok(m)
}

/// `POST /api/embed`.
pub async fn embed(
    State(state): State<AppState>,
    OllamaJson(req): OllamaJson<EmbedRequest>,
) -> Result<Json<Value>, Ollama> {
    let started = Instant::now();
    let texts: Vec<String> = match &req.input {
        Value::Null => Vec::new(),
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_str().map(str::to_string).ok_or_else(|| {
                    ApiError::invalid_param(
                        format!("input[{i}]"),
                        format!("`input[{i}]` must be a string, found {v}"),
                    )
                })
            })
            .collect::<Result<_, _>>()?,
        other => {
            return Err(ApiError::invalid_param(
                "input",
                format!("`input` must be a string or a list of strings, found {other}"),
            )
            .into());
        }
    };
    let keep = keep_alive(req.keep_alive.as_ref())?;
    let (model, loaded_now) = embedder_for(&state, Some(model_name(&req.model)?)).await?;
    let dims = check_dims(req.dimensions, model.service.embedder().dimension())?;
    let slot = model.acquire(state.config.max_queue)?;
    let out = if texts.is_empty() {
        Vec::new()
    } else {
        let inputs = texts.into_iter().map(EmbedInput::Text).collect();
        model
            .service
            .embed(inputs, req.truncate.unwrap_or(true))
            .await
            .map_err(|e| api_error(e, "input"))?
    };
    let count: usize = out.iter().map(|e| e.n_tokens).sum();
    let embeddings: Vec<Vec<f32>> = out
        .into_iter()
        .map(|mut e| {
            if let Some(d) = dims {
                truncate_dims(&mut e.vector, d);
            }
            e.vector
        })
        .collect();
    if let Some(k) = keep {
        model.set_keep_alive(k);
    }
    drop(slot);
    let load_ns = if loaded_now {
        model.load_time.as_nanos() as u64
    } else {
        0
    };
    Ok(Json(json!({
        "model": model.name,
        "embeddings": embeddings,
        "total_duration": started.elapsed().as_nanos() as u64,
        "load_duration": load_ns,
        "prompt_eval_count": count,
    })))
}

/// `POST /api/embeddings` (the legacy single-prompt form).
pub async fn embeddings_legacy(
    State(state): State<AppState>,
    OllamaJson(req): OllamaJson<LegacyRequest>,
) -> Result<Json<Value>, Ollama> {
    let keep = keep_alive(req.keep_alive.as_ref())?;
    let (model, _) = embedder_for(&state, Some(model_name(&req.model)?)).await?;
    let slot = model.acquire(state.config.max_queue)?;
    // Ollama answers an empty prompt with an empty embedding (a way to load the model).
    let embedding = if req.prompt.is_empty() {
        Vec::new()
    } else {
        model
            .service
            .embed(vec![EmbedInput::Text(req.prompt)], true)
            .await
            .map_err(|e| api_error(e, "prompt"))?
            .pop()
            .map(|e| e.vector)
            .unwrap_or_default()
    };
    if let Some(k) = keep {
        model.set_keep_alive(k);
    }
    drop(slot);
    Ok(Json(json!({ "embedding": embedding })))
}
