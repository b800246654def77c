//! Ollama's model-management routes on perch's store: `/api/create` (from a model, a GGUF path
//! or uploaded blobs, with parameters, system prompt, template, messages and quantization),
//! `/api/copy`, `/api/delete`. They need the server to have a store (`perch serve` always does).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use perch_store::{Modelfile, Source, Store, StoreError, parse_modelfile};
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

/// `POST /api/create` body: the current shape (`model`, `from` or `files`, `parameters`,
/// `system`, `template`, `messages`, `quantize`) or the older one (`name`, `modelfile`).
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
    messages: Option<Vec<Value>>,
    #[serde(default)]
    files: Option<BTreeMap<String, String>>,
    #[serde(default)]
    adapters: Option<Value>,
    #[serde(default)]
    quantize: Option<String>,
    #[serde(default)]
    stream: Option<bool>,
}

/// Where the new model's weights come from.
enum Base {
    /// A blob uploaded with `POST /api/blobs`.
    Blob(String),
    /// `from`: a GGUF path on the server or a model in the store.
    From(String),
}

/// `POST /api/create`.
pub async fn create(
    State(state): State<AppState>,
    OllamaJson(req): OllamaJson<CreateRequest>,
) -> Result<Response, Ollama> {
    let store = store(&state)?;
    super::reject(
        "adapters",
        req.adapters.as_ref(),
        "adapters are not supported",
    )?;
    let name = req
        .model
        .or(req.name)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::invalid_param("model", "`model` is required"))?;
    let target = perch_store::ModelName::parse(&name).map_err(store_error)?;
    let mut mf = match &req.modelfile {
        Some(text) => parse_modelfile(text).map_err(store_error)?,
        None => Modelfile::default(),
    };
    if let Some(from) = req.from.filter(|f| !f.is_empty()) {
        mf.from = from;
    }
    let files = req.files.unwrap_or_default();
    let base = if files.is_empty() {
        if mf.from.is_empty() {
            return Err(ApiError::invalid_param(
                "from",
                "`from` (a model name or a GGUF path on the server) or `files` (uploaded blobs) is required",
            )
            .into());
        }
        Base::From(mf.from.clone())
    } else {
        if !mf.from.is_empty() {
            return Err(ApiError::invalid_param(
                "files",
                "give either `from` or `files`, not both",
            )
            .into());
        }
        let ggufs: Vec<(&String, &String)> = files
            .iter()
            .filter(|(n, _)| n.to_ascii_lowercase().ends_with(".gguf"))
            .collect();
        if ggufs.len() != 1 || files.len() != 1 {
            return Err(ApiError::invalid_param(
                "files",
                format!(
                    "`files` must name exactly one .gguf file (got {}); projectors and split models are not supported",
                    files.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            )
            .into());
        }
        let hex = super::blobs::parse_digest(ggufs[0].1)?;
        if !store.has_blob(&hex) {
            return Err(ApiError::invalid_param(
                "files",
                format!("blob sha256:{hex} is not on the server; upload it first with POST /api/blobs/sha256:{hex}"),
            )
            .into());
        }
        Base::Blob(hex)
    };
    // Parameters given as JSON: check them as a Modelfile would.
    if let Some(params) = req.parameters {
        let mut text = String::from("FROM x\n");
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
    if let Some(t) = req.template.filter(|t| !t.is_empty()) {
        mf.template = Some(t);
    }
    if let Some(t) = &mf.template {
        perch_template::ChatTemplate::new(t, "", "").map_err(|e| {
            ApiError::invalid_param("template", format!("the template cannot be used: {e}"))
        })?;
    }
    let messages = match req.messages {
        None => None,
        Some(ms) => Some(check_messages(ms)?),
    };
    let quantize = match req
        .quantize
        .as_deref()
        .map(str::trim)
        .filter(|q| !q.is_empty())
    {
        None => None,
        Some(q) => Some(perch_convert::FileType::from_name(q).ok_or_else(|| {
            ApiError::invalid_param(
                "quantize",
                format!(
                    "`quantize` must be a llama.cpp file type such as Q4_K_M or Q8_0, got `{q}`"
                ),
            )
        })?),
    };
    let base_dir = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let statuses = tokio::task::spawn_blocking(move || {
        build(&store, &target, base, mf, messages, quantize, &base_dir)
    })
    .await
    .map_err(ApiError::internal)??;
    state.registry.refresh_from_store();
    tracing::info!(model = %name, "model created");
    if req.stream == Some(false) {
        return Ok(Json(json!({"status": "success"})).into_response());
    }
    let lines: Vec<String> = statuses
        .into_iter()
        .chain(["writing manifest".to_string(), "success".to_string()])
        .map(|s| json!({"status": s}).to_string())
        .collect();
    Ok(ndjson(futures_util::stream::iter(lines)))
}

fn check_messages(ms: Vec<Value>) -> Result<Vec<Value>, ApiError> {
    ms.into_iter()
        .enumerate()
        .map(|(i, m)| {
            let role = m["role"].as_str().unwrap_or("");
            if !["system", "user", "assistant"].contains(&role) {
                return Err(ApiError::invalid_param(
                    format!("messages[{i}].role"),
                    format!("`messages[{i}].role` must be system, user or assistant, got `{role}`"),
                ));
            }
            let content = m["content"].as_str().ok_or_else(|| {
                ApiError::invalid_param(
                    format!("messages[{i}].content"),
                    format!("`messages[{i}].content` must be a string"),
                )
            })?;
            Ok(json!({"role": role, "content": content}))
        })
        .collect()
}

/// The blocking part of create: find the weights, quantize them if asked, write the manifest.
/// Returns Ollama's status lines so far.
fn build(
    store: &Store,
    target: &perch_store::ModelName,
    base: Base,
    mf: Modelfile,
    messages: Option<Vec<Value>>,
    quantize: Option<perch_convert::FileType>,
    base_dir: &Path,
) -> Result<Vec<String>, ApiError> {
    let mut statuses = vec!["parsing GGUF".to_string()];
    let mut manifest = match base {
        Base::Blob(hex) => {
            let path = store.blob_path(&hex);
            perch_gguf::GgufFile::open(&path).map_err(|e| {
                ApiError::invalid_param(
                    "files",
                    format!("blob sha256:{hex} is not a usable GGUF file: {e}"),
                )
            })?;
            store
                .add_blob_model(&target.to_string(), &hex)
                .map_err(store_error)?
                .manifest
        }
        Base::From(from) => {
            let path = base_dir.join(&from);
            if path.is_file() {
                store
                    .import(&path, &target.to_string(), true)
                    .map_err(store_error)?
                    .manifest
            } else {
                store.get(&from).map_err(store_error)?.manifest
            }
        }
    };
    statuses.push(format!("using existing layer sha256:{}", manifest.sha256));
    if let Some(ftype) = quantize {
        let input = match &manifest.source {
            Source::Blob => store.blob_path(&manifest.sha256),
            Source::Path(p) => p.clone(),
        };
        let from_type = perch_gguf::GgufFile::open(&input)
            .ok()
            .and_then(|f| {
                f.opt_u32(perch_gguf::keys::GENERAL_FILE_TYPE)
                    .ok()
                    .flatten()
            })
            .and_then(perch_gguf::keys::file_type_name)
            .unwrap_or("unknown")
            .to_string();
        statuses.push(format!("quantizing {from_type} model to {ftype}"));
        let dir = store.partial_dir().map_err(store_error)?;
        let out = tempfile::Builder::new()
            .prefix("quantize-")
            .suffix(".gguf")
            .tempfile_in(&dir)
            .map_err(ApiError::internal)?
            .into_temp_path();
        perch_convert::quantize_file(
            &input,
            &out,
            &perch_convert::QuantizeOptions::new(ftype),
            |_| {},
        )
        .map_err(|e| {
            ApiError::invalid_param("quantize", format!("cannot quantize to {ftype}: {e}"))
        })?;
        let (hex, size) = perch_store::hash_file(&out).map_err(ApiError::internal)?;
        let kept = out.keep().map_err(ApiError::internal)?;
        store.install_blob(&kept, &hex).map_err(store_error)?;
        statuses.push(format!("creating new layer sha256:{hex}"));
        manifest.source = Source::Blob;
        manifest.sha256 = hex;
        manifest.size = size;
    }
    for (k, v) in mf.parameters {
        manifest.parameters.insert(k, v);
    }
    if mf.system.is_some() {
        manifest.system = mf.system;
    }
    if mf.template.is_some() {
        manifest.template = mf.template;
    }
    if let Some(m) = messages {
        manifest.messages = m;
    }
    manifest.created = perch_store::now();
    store
        .write_manifest(target, &manifest)
        .map_err(store_error)?;
    Ok(statuses)
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
