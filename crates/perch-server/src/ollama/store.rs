//! Ollama's model-management routes on perch's store: `/api/create`, `/api/copy`,
//! `/api/delete`. They need the server to have a store (`perch serve` always does).

use std::path::PathBuf;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use perch_store::{Modelfile, Store, StoreError, parse_modelfile};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::error::{ApiError, Ollama, OllamaJson};
use crate::state::AppState;
use crate::stream::ndjson;

pub(super) fn store(state: &AppState) -> Result<Store, ApiError> {
    state.registry.store().cloned().ok_or_else(|| {
        let mut e = ApiError::invalid("this server has no model store");
        e.status = StatusCode::NOT_IMPLEMENTED;
        e
    })
}

fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::NotFound(n) => ApiError::model_not_found(&n),
        StoreError::BadName { .. }
        | StoreError::BadModelfile { .. }
        | StoreError::NotGguf { .. } => ApiError::invalid(e.to_string()),
        other => ApiError::internal(other),
    }
}

/// Run blocking store work off the runtime.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(ApiError::internal)?
        .map_err(store_error)
}

/// `POST /api/create` body: the current shape (`model`, `from`, `parameters`, `system`,
/// `template`) or the older one (`name`, `modelfile`).
#[derive(Debug, Deserialize)]
pub struct CreateRequest {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    modelfile: Option<String>,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
    #[serde(default)]
    system: Option<String>,
    #[serde(default)]
    template: Option<String>,
    #[serde(default)]
    files: Option<Value>,
    #[serde(default)]
    adapters: Option<Value>,
    #[serde(default)]
    quantize: Option<String>,
    #[serde(default)]
    stream: Option<bool>,
}

/// `POST /api/create`.
pub async fn create(
    State(state): State<AppState>,
    OllamaJson(req): OllamaJson<CreateRequest>,
) -> Result<Response, Ollama> {
    let store = store(&state)?;
    super::reject(
        "files",
        req.files.as_ref(),
        "uploading blobs is not supported; use `from` with a GGUF path on the server or a model name",
    )?;
    super::reject(
        "adapters",
        req.adapters.as_ref(),
        "adapters are not supported",
    )?;
    if req.quantize.as_deref().is_some_and(|q| !q.is_empty()) {
        return Err(
            ApiError::unsupported("quantize", "quantizing on create is not built yet").into(),
        );
    }
    let name = req
        .model
        .or(req.name)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::invalid_param("model", "`model` is required"))?;
    let mut mf = match &req.modelfile {
        Some(text) => parse_modelfile(text).map_err(store_error)?,
        None => Modelfile::default(),
    };
    if let Some(from) = req.from {
        mf.from = from;
    }
    if mf.from.is_empty() {
        return Err(ApiError::invalid_param(
            "from",
            "`from` (a GGUF path or a model name) is required",
        )
        .into());
    }
    // Parameters given as JSON: check them as a Modelfile would.
    if let Some(params) = req.parameters {
        let mut text = format!("FROM {}\n", mf.from);
        for (k, v) in &params {
            match v {
                Value::Array(items) => {
                    for i in items {
                        text.push_str(&format!("PARAMETER {k} {}\n", plain(i)));
                    }
                }
                other => text.push_str(&format!("PARAMETER {k} {}\n", plain(other))),
            }
        }
        let parsed = parse_modelfile(&text).map_err(store_error)?;
        mf.parameters.extend(parsed.parameters);
    }
    if req.system.is_some() {
        mf.system = req.system;
    }
    if req.template.is_some() {
        let check = parse_modelfile(&format!(
            "FROM x\nTEMPLATE \"\"\"{}\"\"\"",
            req.template.as_deref().unwrap_or("")
        ))
        .map_err(store_error)?;
        mf.template = check.template;
    }
    let base = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let created = blocking(move || store.create(&name, &mf, &base)).await?;
    state.registry.refresh_from_store();
    tracing::info!(model = %created.name, "model created");
    let success = json!({"status": "success"});
    if req.stream == Some(false) {
        return Ok(Json(success).into_response());
    }
    let lines = vec![
        json!({"status": "writing manifest"}).to_string(),
        success.to_string(),
    ];
    Ok(ndjson(futures_util::stream::iter(lines)))
}

fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `POST /api/copy` body.
#[derive(Debug, Deserialize)]
pub struct CopyRequest {
    source: String,
    destination: String,
}

/// `POST /api/copy`.
pub async fn copy(
    State(state): State<AppState>,
    OllamaJson(req): OllamaJson<CopyRequest>,
) -> Result<StatusCode, Ollama> {
    let store = store(&state)?;
    let created = blocking(move || store.copy(&req.source, &req.destination)).await?;
    state.registry.refresh_from_store();
    tracing::info!(model = %created.name, "model copied");
    Ok(StatusCode::OK)
}

/// `DELETE /api/delete` body.
#[derive(Debug, Deserialize)]
pub struct DeleteRequest {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

/// `DELETE /api/delete`: remove a model from the store (and unload it).
pub async fn delete(
    State(state): State<AppState>,
    OllamaJson(req): OllamaJson<DeleteRequest>,
) -> Result<StatusCode, Ollama> {
    let store = store(&state)?;
    let name = req
        .model
        .or(req.name)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::invalid_param("model", "`model` is required"))?;
    let parsed = perch_store::ModelName::parse(&name).map_err(store_error)?;
    let full = parsed.to_string();
    blocking(move || store.remove(&full)).await?;
    state.registry.forget(&parsed.to_string());
    tracing::info!(model = %parsed, "model deleted");
    Ok(StatusCode::OK)
}
