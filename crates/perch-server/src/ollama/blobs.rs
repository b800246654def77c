//! Ollama's blob routes on perch's store: `HEAD /api/blobs/{digest}` (200 when the store has
//! the blob, 404 when not) and `POST /api/blobs/{digest}` (upload: the body is streamed to a
//! file in the store's `partial/` folder while being hashed, and renamed into `blobs/` only when
//! its sha256 is the digest; 201 Created). A digest is `sha256:<64 hex>` (or `sha256-<hex>`).
//! Uploads are not limited by the request body limit (a GGUF is gigabytes).

use std::io::Write;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};

use crate::error::{ApiError, Ollama};
use crate::state::AppState;

/// The hex of a `sha256:<hex>` digest, or a 400 naming it.
pub fn parse_digest(d: &str) -> Result<String, ApiError> {
    let hex = d
        .strip_prefix("sha256:")
        .or_else(|| d.strip_prefix("sha256-"))
        .unwrap_or("");
    if perch_store::is_sha256_hex(hex) {
        Ok(hex.to_string())
    } else {
        Err(ApiError::invalid_param(
            "digest",
            format!("`{d}` is not a digest of the form sha256:<64 lowercase hex digits>"),
        ))
    }
}

/// `HEAD /api/blobs/{digest}`.
pub async fn head(
    State(state): State<AppState>,
    Path(digest): Path<String>,
) -> Result<StatusCode, Ollama> {
    let store = super::store::store(&state)?;
    let hex = parse_digest(&digest)?;
    Ok(if store.has_blob(&hex) {
        StatusCode::OK
    } else {
        StatusCode::NOT_FOUND
    })
}

/// `POST /api/blobs/{digest}`.
pub async fn upload(
    State(state): State<AppState>,
    Path(digest): Path<String>,
    body: Body,
) -> Result<StatusCode, Ollama> {
    let store = super::store::store(&state)?;
    let hex = parse_digest(&digest)?;
    if store.has_blob(&hex) {
        return Ok(StatusCode::OK);
    }
    let dir = store.partial_dir().map_err(ApiError::internal)?;
    let mut tmp = tempfile::Builder::new()
        .prefix("upload-")
        .tempfile_in(&dir)
        .map_err(ApiError::internal)?;
    let mut hasher = Sha256::new();
    let mut stream = body.into_data_stream();
    let mut size = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::invalid(format!("reading the upload: {e}")))?;
        hasher.update(&chunk);
        size += chunk.len() as u64;
        // Small synchronous writes to a local file; the chunks are at most a few hundred KiB.
        tmp.write_all(&chunk).map_err(ApiError::internal)?;
    }
    let actual = hex::encode(hasher.finalize());
    if actual != hex {
        // The temporary file is deleted on drop.
        return Err(ApiError::invalid_param(
            "digest",
            format!("the uploaded {size} bytes have sha256:{actual}, not the digest sha256:{hex} in the URL; nothing was stored"),
        )
        .into());
    }
    let (file, path) = tmp.keep().map_err(ApiError::internal)?;
    drop(file);
    let s = store.clone();
    let h = hex.clone();
    tokio::task::spawn_blocking(move || s.install_blob(&path, &h))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    tracing::info!(digest = %hex, size, "blob uploaded");
    Ok(StatusCode::CREATED)
}
