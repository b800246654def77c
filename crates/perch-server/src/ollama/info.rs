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

/// Open a model's GGUF (a memory map; cheap) off the async runtime.
async fn open(spec: &ModelSpec) -> Result<std::sync::Arc<GgufFile>, ApiError> {
    let path = spec.path.clone();
    tokio::task::spawn_blocking(move || GgufFile::open(&path).map(std::sync::Arc::new))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)
}

/// `GET /api/tags`: every model the server can serve.
pub async fn tags(State(state): State<AppState>) -> Result<Json<Value>, Ollama> {
    let mut models = Vec::new();
    for spec in state.registry.specs() {
        let details = match state.registry.loaded_model(&spec.name) {
            Some(m) => details(m.chat.model().file()),
            None => match open(&spec).await {
                Ok(f) => details(&f),
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

/// `GET /api/ps`: the loaded models.
pub async fn ps(State(state): State<AppState>) -> Json<Value> {
    let models: Vec<Value> = state
        .registry
        .loaded()
        .iter()
        .map(|m| {
            let size = facts(m.chat.path()).map_or(0, |f| f.size);
            // Not unloaded by a keep-alive: a far-off time, as Ollama reports for -1.
            let expires = state.registry.expires_at(m).unwrap_or(
                SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(253_402_300_799),
            );
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
    let file = match state.registry.loaded_model(&spec.name) {
        Some(m) => m.chat.model().file().clone(),
        None => open(&spec).await?,
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
    let modified = facts(&spec.path).map_or(SystemTime::UNIX_EPOCH, |f| f.modified);
    Ok(Json(json!({
        "license": file.opt_str("general.license").ok().flatten().unwrap_or(""),
        "modelfile": format!("# Served by perch\nFROM {}\n", spec.path.display()),
        "parameters": spec
            .defaults
            .parameters
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join("\n"),
        "system": spec.defaults.system,
        "template": template,
        "details": details(&file),
        "model_info": info,
        "capabilities": ["completion"],
        "modified_at": rfc3339(modified),
    })))
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
