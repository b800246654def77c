//! `POST /v1/embeddings`, in OpenAI's shapes.

use axum::Json;
use axum::extract::State;
use base64::Engine as _;
use perch_engine::embed::EmbedInput;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{api_error, check_dims, embedder_for, truncate_dims};
use crate::error::{ApiError, ApiJson};
use crate::state::AppState;

/// Most inputs in one request (OpenAI's limit).
const MAX_INPUTS: usize = 2048;

/// The request body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbeddingsRequest {
    /// The model (default: the server's default model).
    #[serde(default)]
    model: Option<String>,
    /// A string, a list of strings, a token array or a list of token arrays.
    input: Value,
    /// `float` (default) or `base64` (little-endian f32).
    #[serde(default)]
    encoding_format: Option<String>,
    /// Keep this many dimensions (renormalized).
    #[serde(default)]
    dimensions: Option<i64>,
    /// An end-user id (accepted and ignored, as it only serves OpenAI's abuse monitoring).
    #[serde(default)]
    #[allow(dead_code)]
    user: Option<String>,
}

fn token_array(v: &[Value], param: &str) -> Result<Vec<u32>, ApiError> {
    if v.is_empty() {
        return Err(ApiError::invalid_param(
            param,
            format!("`{param}` is an empty token array"),
        ));
    }
    v.iter()
        .map(|t| {
            t.as_u64()
                .and_then(|x| u32::try_from(x).ok())
                .ok_or_else(|| {
                    ApiError::invalid_param(
                        param,
                        format!("`{param}` must hold token ids (non-negative integers), found {t}"),
                    )
                })
        })
        .collect()
}

/// The inputs of `input`, validated.
pub fn parse_input(input: &Value) -> Result<Vec<EmbedInput>, ApiError> {
    let text = |s: &str, param: String| {
        if s.is_empty() {
            Err(ApiError::invalid_param(
                param.clone(),
                format!("`{param}` must not be an empty string"),
            ))
        } else {
            Ok(EmbedInput::Text(s.to_string()))
        }
    };
    match input {
        Value::String(s) => Ok(vec![text(s, "input".into())?]),
        Value::Array(items) if items.is_empty() => Err(ApiError::invalid_param(
            "input",
            "`input` must not be an empty list",
        )),
        Value::Array(items) if items.len() > MAX_INPUTS => Err(ApiError::invalid_param(
            "input",
            format!(
                "`input` has {} items; at most {MAX_INPUTS} per request",
                items.len()
            ),
        )),
        Value::Array(items) => {
            if items.iter().all(Value::is_number) {
                return Ok(vec![EmbedInput::Tokens(token_array(items, "input")?)]);
            }
            items
                .iter()
                .enumerate()
                .map(|(i, item)| match item {
                    Value::String(s) => text(s, format!("input[{i}]")),
                    Value::Array(t) => {
                        Ok(EmbedInput::Tokens(token_array(t, &format!("input[{i}]"))?))
                    }
                    other => Err(ApiError::invalid_param(
                        format!("input[{i}]"),
                        format!("`input[{i}]` must be a string or a token array, found {other}"),
                    )),
                })
                .collect()
        }
        other => Err(ApiError::invalid_param(
            "input",
            format!(
                "`input` must be a string, a list of strings, a token array or a list of token \
                 arrays, found {other}"
            ),
        )),
    }
}

/// `POST /v1/embeddings`.
pub async fn embeddings(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<EmbeddingsRequest>,
) -> Result<Json<Value>, ApiError> {
    let base64 = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(ApiError::invalid_param(
                "encoding_format",
                format!("`encoding_format` must be `float` or `base64`, got `{other}`"),
            ));
        }
    };
    let inputs = parse_input(&req.input)?;
    let (model, _) = embedder_for(&state, req.model.as_deref()).await?;
    let dims = check_dims(req.dimensions, model.service.embedder().dimension())?;
    let _slot = model.acquire(state.config.max_queue)?;
    // OpenAI does not truncate: a too-long input is an error.
    let out = model
        .service
        .embed(inputs, false)
        .await
        .map_err(|e| api_error(e, "input"))?;
    let mut tokens = 0;
    let data: Vec<Value> = out
        .into_iter()
        .enumerate()
        .map(|(i, mut e)| {
            tokens += e.n_tokens;
            if let Some(d) = dims {
                truncate_dims(&mut e.vector, d);
            }
            let embedding = if base64 {
                let bytes: Vec<u8> = e.vector.iter().flat_map(|v| v.to_le_bytes()).collect();
                Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(e.vector)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    Ok(Json(json!({
        "object": "list",
        "data": data,
        "model": model.name,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    })))
}
