//! `POST /api/pull`: pull a model into the store (a Hugging Face `hf.co/OWNER/REPO[:QUANT]`
//! reference or the URL of a GGUF file), with progress in Ollama's streamed shape:
//!
//! ```text
//! {"status":"pulling manifest"}
//! {"status":"pulling 6a0746a1ec1a","digest":"sha256:6a07...","total":98362432,"completed":1048576}
//! {"status":"verifying sha256 digest"}
//! {"status":"writing manifest"}
//! {"status":"success"}
//! ```
//!
//! With `"stream": false` the answer is the final object alone. A failure before anything was
//! streamed is an HTTP error in Ollama's shape; a failure mid-stream is a last `{"error": ...}`
//! line, as Ollama sends it. A model already in the store under a plain name is reported as
//! pulled. The download runs on a blocking thread; a client that goes away cancels it (the
//! partial file stays, and the next pull resumes it). Pulls of the same model are serialized.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use perch_store::pull::{PullError, PullEvent, PullOptions, Reference};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::{ApiError, Ollama, OllamaJson};
use crate::state::AppState;
use crate::stream::ndjson;

/// `POST /api/pull` body.
#[derive(Debug, Deserialize)]
pub struct PullRequest {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    stream: Option<bool>,
    /// Ollama's flag for registries without TLS; perch takes `http://` URLs as given.
    #[serde(default)]
    #[allow(dead_code)]
    insecure: Option<bool>,
}

/// The Ollama progress object for an event.
pub fn event_json(ev: &PullEvent) -> Value {
    let mut v = json!({"status": ev.status()});
    if let PullEvent::Downloading {
        digest,
        total,
        completed,
        ..
    } = ev
    {
        if let Some(d) = digest {
            v["digest"] = json!(d);
        }
        v["total"] = json!(total);
        v["completed"] = json!(completed);
    }
    v
}

/// The HTTP error for a pull failure.
pub fn pull_error(e: &PullError) -> ApiError {
    let mut err = ApiError::invalid(e.to_string());
    err.status = match e {
        PullError::BadReference { .. } | PullError::SplitModel { .. } => StatusCode::BAD_REQUEST,
        PullError::RepoNotFound { .. } | PullError::NoMatch { .. } => StatusCode::NOT_FOUND,
        PullError::Offline { .. }
        | PullError::Http { .. }
        | PullError::Protocol { .. }
        | PullError::Interrupted { .. }
        | PullError::Checksum { .. }
        | PullError::NotGguf { .. } => StatusCode::BAD_GATEWAY,
        PullError::Cancelled => StatusCode::SERVICE_UNAVAILABLE,
        _ => return ApiError::internal(e),
    };
    if err.status.is_server_error() {
        err.kind = "server_error";
    }
    err
}

/// One lock per model being pulled, so two pulls of it never write the same partial file.
fn pull_lock(key: &str) -> Arc<tokio::sync::Mutex<()>> {
    static LOCKS: OnceLock<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>> = OnceLock::new();
    let mut map = LOCKS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    map.retain(|_, l| Arc::strong_count(l) > 1);
    map.entry(key.to_string()).or_default().clone()
}

/// Sets the cancel flag when dropped (the response stream or the handler went away).
struct CancelOnDrop(Arc<std::sync::atomic::AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// `POST /api/pull`.
pub async fn pull(
    State(state): State<AppState>,
    OllamaJson(req): OllamaJson<PullRequest>,
) -> Result<Response, Ollama> {
    let store = super::store::store(&state)?;
    let reference = req
        .model
        .or(req.name)
        .map(|s| s.trim().to_string())
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::invalid_param("model", "`model` is required"))?;
    let stream = req.stream != Some(false);
    let key = match Reference::parse(&reference) {
        Some(Ok(r)) => r.store_name().map_err(|e| pull_error(&e))?.to_string(),
        Some(Err(e)) => return Err(pull_error(&e).into()),
        None => {
            // A plain name: nothing to fetch if the store has it.
            let s = store.clone();
            let name = reference.clone();
            let found = tokio::task::spawn_blocking(move || s.get(&name).is_ok())
                .await
                .map_err(ApiError::internal)?;
            if !found {
                return Err(pull_error(&PullError::BadReference {
                    reference,
                    why: "perch pulls hf.co/OWNER/REPO[:QUANT] references and URLs of GGUF files, and no model of this name is in the store".into(),
                })
                .into());
            }
            let lines = [
                json!({"status": "pulling manifest"}),
                json!({"status": "success"}),
            ];
            return Ok(if stream {
                ndjson(futures_util::stream::iter(lines.map(|l| l.to_string())))
            } else {
                Json(json!({"status": "success"})).into_response()
            });
        }
    };
    let opts = PullOptions::from_env();
    let cancel = CancelOnDrop(opts.cancel.clone());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Value>();
    let lock = pull_lock(&key);
    let registry = state.registry.clone();
    let task = tokio::spawn(async move {
        let _held = lock.lock().await;
        let join = tokio::task::spawn_blocking(move || {
            let mut last_sent = Instant::now() - Duration::from_secs(1);
            let mut last_status = String::new();
            store.pull(&reference, &opts, &mut |ev| {
                let status = ev.status();
                let finished = matches!(ev, PullEvent::Downloading { total, completed, .. } if total == completed);
                // Progress at most ten times a second, but every change of status and the end.
                if status != last_status || finished || last_sent.elapsed() >= Duration::from_millis(100) {
                    last_sent = Instant::now();
                    last_status = status;
                    let _ = tx.send(event_json(ev));
                }
            })
        })
        .await;
        let result = match join {
            Ok(r) => r.map_err(|e| pull_error(&e)).map(|entry| {
                tracing::info!(model = %entry.name, "model pulled");
            }),
            Err(e) => Err(ApiError::internal(e)),
        };
        registry.refresh_from_store();
        result
    });
    if !stream {
        let _cancel = cancel;
        let result = task.await.map_err(ApiError::internal)?;
        drop(rx);
        result?;
        return Ok(Json(json!({"status": "success"})).into_response());
    }
    let lines = async_stream(move |out| async move {
        let _cancel = cancel;
        while let Some(v) = rx.recv().await {
            if out.send(v.to_string()).is_err() {
                return;
            }
        }
        // The channel closed: the pull ended. Success was streamed; an error becomes a line.
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                let _ = out.send(json!({"error": e.message}).to_string());
            }
            Err(e) => {
                let _ = out.send(json!({"error": ApiError::internal(e).message}).to_string());
            }
        }
    });
    Ok(ndjson(lines))
}

/// A stream of lines produced by `f` on a task; dropping the stream drops the task's sender
/// (so its sends fail and it returns) and aborts nothing else.
fn async_stream<F, Fut>(f: F) -> impl futures_util::Stream<Item = String> + Send + 'static
where
    F: FnOnce(tokio::sync::mpsc::UnboundedSender<String>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let handle = tokio::spawn(f(tx));
    let guard = AbortOnDrop(handle);
    futures_util::stream::unfold((rx, guard), |(mut rx, guard)| async move {
        rx.recv().await.map(|line| (line, (rx, guard)))
    })
}

/// Aborts the producing task when the response stream is dropped (the client went away), which
/// drops its cancel guard and so stops the download.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
