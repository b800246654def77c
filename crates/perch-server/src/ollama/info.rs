//! Ollama's informational routes: `/`, `/api/version`, `/api/tags`, `/api/ps`, `/api/show`,
//! (`/api/pull` is in `pull`).

use std::path::Path;
use std::time::SystemTime;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use perch_gguf::{GgufFile, Value as GgufValue, keys};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::rfc3339;
use crate::embeddings::onnx::OnnxFacts;
use crate::error::{ApiError, Ollama, OllamaJson};
use crate::state::{AppState, ModelSpec};

/// `HEAD /`.
pub async fn root_head() -> StatusCode {
    StatusCode::OK
}

/// `GET /api/version`.
pub async fn version() -> Json<Value> {
    Json(json!({"version": env!("CARGO_PKG_VERSION")}))
}

/// The name Ollama clients see: `name:tag`.
fn tagged(name: &str) -> String {
    if name.contains(':') {
        name.to_string()
    } else {
        format!("{name}:latest")
    }
}

/// "135M", "1.2B" like Ollama's `parameter_size`.
fn human_count(n: u64) -> String {
    match n {
        n if n >= 1_000_000_000 => format!("{:.1}B", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{:.0}M", n as f64 / 1e6),
        n => format!("{:.0}K", n as f64 / 1e3),
    }
}

fn details(f: &GgufFile) -> Value {
    let arch = f
        .opt_str(keys::GENERAL_ARCHITECTURE)
        .ok()
        .flatten()
        .unwrap_or("");
    let params: u64 = f
        .tensors()
        .iter()
        .map(|t| t.dims.iter().product::<u64>())
        .sum();
    let quant = f
        .opt_u32(keys::GENERAL_FILE_TYPE)
        .ok()
        .flatten()
        .and_then(keys::file_type_name)
        .unwrap_or("unknown");
    json!({
        "parent_model": "",
        "format": "gguf",
        "family": arch,
        "families": [arch],
        "parameter_size": human_count(params),
        "quantization_level": quant,
    })
}

/// What a model file says about itself: a GGUF's header, or an ONNX model's summary.
enum ModelFile {
    Gguf(std::sync::Arc<GgufFile>),
    Onnx(Box<OnnxFacts>),
}

impl ModelFile {
    /// Ollama's `details` object.
    fn details(&self) -> Value {
        match self {
            ModelFile::Gguf(f) => details(f),
            ModelFile::Onnx(o) => json!({
                "parent_model": "",
                "format": "onnx",
                "family": o.family,
                "families": [o.family],
                "parameter_size": human_count(o.parameters()),
                "quantization_level": o.quantization(),
            }),
        }
    }
}

struct FileFacts {
    size: u64,
    modified: SystemTime,
}

fn facts(path: &Path) -> Option<FileFacts> {
    let md = std::fs::metadata(path).ok()?;
    Some(FileFacts {
        size: md.len(),
        modified: md.modified().unwrap_or(SystemTime::UNIX_EPOCH),
    })
}

/// Open a model's file off the async runtime: a GGUF's memory map (cheap), or an ONNX
/// model's summary.
async fn open(spec: &ModelSpec) -> Result<ModelFile, ApiError> {
    let path = spec.path.clone();
    tokio::task::spawn_blocking(move || {
        if perch_onnx::is_onnx_file(&path) {
            OnnxFacts::read(&path)
                .map(|o| ModelFile::Onnx(Box::new(o)))
                .map_err(ApiError::internal)
        } else {
            GgufFile::open(&path)
                .map(|f| ModelFile::Gguf(std::sync::Arc::new(f)))
                .map_err(ApiError::internal)
        }
    })
    .await
    .map_err(ApiError::internal)?
}

/// `GET /api/tags`: every model the server can serve.
pub async fn tags(State(state): State<AppState>) -> Result<Json<Value>, Ollama> {
    let mut models = Vec::new();
    for spec in state.registry.specs() {
        let details = match state.registry.loaded_model(&spec.name) {
            Some(m) => details(m.chat.model().file()),
            None => match open(&spec).await {
                Ok(f) => f.details(),
                Err(_) => continue,
            },
        };
        let Some(fx) = facts(&spec.path) else {
            continue;
        };
        let mut m = json!({
            "name": tagged(&spec.name),
            "model": tagged(&spec.name),
            "modified_at": rfc3339(fx.modified),
            "size": fx.size,
            "details": details,
        });
        if let Some(sha) = &spec.sha256 {
            m["digest"] = json!(sha);
        }
        models.push(m);
    }
    Ok(Json(json!({"models": models})))
}

/// Not unloaded by a keep-alive: a far-off time, as Ollama reports for -1.
fn never() -> SystemTime {
    SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(253_402_300_799)
}

/// `GET /api/ps`: the loaded models, chat and embedding.
pub async fn ps(State(state): State<AppState>) -> Json<Value> {
    let mut models: Vec<Value> = state
        .registry
        .loaded()
        .iter()
        .map(|m| {
            let size = facts(m.chat.path()).map_or(0, |f| f.size);
            let expires = state.registry.expires_at(m).unwrap_or_else(never);
            json!({
                "name": tagged(&m.name),
                "model": tagged(&m.name),
                "size": size,
                "details": details(m.chat.model().file()),
                "expires_at": rfc3339(expires),
                "size_vram": 0,
                "context_length": m.chat.n_ctx(),
            })
        })
        .collect();
    for m in state.registry.embedders().loaded() {
        let spec = ModelSpec {
            name: m.name.clone(),
            path: m.path.clone(),
            defaults: Default::default(),
            sha256: None,
        };
        let Ok(file) = open(&spec).await else {
            continue;
        };
        let expires = state.registry.embedder_expires_at(&m).unwrap_or_else(never);
        models.push(json!({
            "name": tagged(&m.name),
            "model": tagged(&m.name),
            "size": facts(&m.path).map_or(0, |f| f.size),
            "details": file.details(),
            "expires_at": rfc3339(expires),
            "size_vram": 0,
            "context_length": m.service.embedder().max_tokens(),
        }));
    }
    Json(json!({"models": models}))
}

/// `POST /api/show` body.
#[derive(Debug, Deserialize)]
pub struct ShowRequest {
    /// The model.
    #[serde(default)]
    model: Option<String>,
    /// The model (older clients).
    #[serde(default)]
    name: Option<String>,
}

fn json_of(v: &GgufValue) -> Option<Value> {
    Some(match v {
        GgufValue::U8(x) => json!(x),
        GgufValue::I8(x) => json!(x),
        GgufValue::U16(x) => json!(x),
        GgufValue::I16(x) => json!(x),
        GgufValue::U32(x) => json!(x),
        GgufValue::I32(x) => json!(x),
        GgufValue::U64(x) => json!(x),
        GgufValue::I64(x) => json!(x),
        GgufValue::F32(x) => json!(x),
        GgufValue::F64(x) => json!(x),
        GgufValue::Bool(x) => json!(x),
        GgufValue::String(s) => json!(String::from_utf8_lossy(s.as_bytes())),
        // Arrays (vocabularies, merges) are large; Ollama leaves them out too.
        GgufValue::Array(_) => return None,
    })
}

/// `POST /api/show`: a model's details, metadata and template.
pub async fn show(
    State(state): State<AppState>,
    OllamaJson(req): OllamaJson<ShowRequest>,
) -> Result<Json<Value>, Ollama> {
    let name = req.model.or(req.name).unwrap_or_default();
    if name.trim().is_empty() {
        return Err(ApiError::invalid_param("model", "`model` is required").into());
    }
    let spec = state.registry.spec(Some(&name))?;
    let embedding = state.registry.is_embedding(&spec).await;
    let capabilities = if embedding {
        json!(["embedding"])
    } else {
        json!(["completion"])
    };
    let modified = facts(&spec.path).map_or(SystemTime::UNIX_EPOCH, |f| f.modified);
    let parameters = spec
        .defaults
        .parameters
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join("\n");
    let modelfile = format!("# Served by perch\nFROM {}\n", spec.path.display());
    let file = match state.registry.loaded_model(&spec.name) {
        Some(m) => m.chat.model().file().clone(),
        None => match open(&spec).await? {
            ModelFile::Gguf(f) => f,
            ModelFile::Onnx(o) => {
                return Ok(Json(json!({
                    "license": "",
                    "modelfile": modelfile,
                    "parameters": parameters,
                    "system": spec.defaults.system,
                    "template": "",
                    "details": ModelFile::Onnx(o.clone()).details(),
                    "model_info": onnx_model_info(&o),
                    "capabilities": capabilities,
                    "modified_at": rfc3339(modified),
                })));
            }
        },
    };
    let mut info = Map::new();
    for (k, v) in file.metadata().iter() {
        if k == "tokenizer.chat_template" {
            continue;
        }
        if let Some(j) = json_of(v) {
            info.insert(k.to_string(), j);
        }
    }
    let template = match state.registry.loaded_model(&spec.name) {
        Some(m) => m.chat.template().source().to_string(),
        None => file
            .opt_str("tokenizer.chat_template")
            .ok()
            .flatten()
            .unwrap_or("")
            .to_string(),
    };
    Ok(Json(json!({
        "license": file.opt_str("general.license").ok().flatten().unwrap_or(""),
        "modelfile": modelfile,
        "parameters": parameters,
        "system": spec.defaults.system,
        "template": template,
        "details": details(&file),
        "model_info": info,
        "capabilities": capabilities,
        "modified_at": rfc3339(modified),
    })))
}

/// `/api/show`'s `model_info` for an ONNX model: its format facts and metadata properties,
/// under GGUF-like keys.
fn onnx_model_info(o: &OnnxFacts) -> Map<String, Value> {
    let s = &o.summary;
    let mut info = Map::new();
    info.insert("general.architecture".into(), json!(o.family));
    info.insert("general.file_format".into(), json!("onnx"));
    info.insert("general.parameter_count".into(), json!(o.parameters()));
    info.insert("onnx.ir_version".into(), json!(s.ir_version));
    if !s.producer.is_empty() {
        info.insert("onnx.producer".into(), json!(s.producer));
    }
    for (domain, version) in &s.opset_imports {
        info.insert(format!("onnx.opset.{domain}"), json!(version));
    }
    info.insert("onnx.node_count".into(), json!(s.node_count));
    for (k, v) in &s.metadata {
        info.insert(format!("onnx.metadata.{k}"), json!(v));
    }
    info
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_sizes() {
        assert_eq!(tagged("smol"), "smol:latest");
        assert_eq!(tagged("smol:q4"), "smol:q4");
        assert_eq!(human_count(134_515_008), "135M");
        assert_eq!(human_count(1_240_000_000), "1.2B");
    }
}
