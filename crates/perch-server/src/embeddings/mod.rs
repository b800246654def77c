//! Embeddings: OpenAI's `POST /v1/embeddings`, Ollama's `POST /api/embed` and the legacy
//! `POST /api/embeddings`, served by any [`Embedder`]: perch's own BERT engine for GGUF
//! files of architecture `bert`, ONNX Runtime ([`onnx::OnnxBackend`]) for ONNX files.
//!
//! The registry knows which models embed: a GGUF whose `general.architecture` is `bert`, and
//! every ONNX model (perch serves ONNX models as sentence encoders). Embedding models load on
//! first use like chat models, into their own slots ([`Embedders`]), each with a batching
//! worker ([`service::EmbedService`]). A chat request naming an embedding model, or an
//! embedding request naming a chat model, is a 400 that says which endpoint to use.

mod ollama;
pub mod onnx;
mod openai;
pub mod service;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::routing::post;
use perch_engine::embed::{EmbedError, Embedder};

use crate::error::ApiError;
use crate::state::{AppState, KeepAlive, ModelSpec};
pub use service::EmbedService;

/// The embedding routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/embeddings", post(openai::embeddings))
        .route("/api/embed", post(ollama::embed))
        .route("/api/embeddings", post(ollama::embeddings_legacy))
}

/// Whether the model file at `path` is an embedding model (read from its header only).
pub fn is_embedding_model(path: &Path) -> bool {
    perch_onnx::is_onnx_file(path)
        || perch_engine::embedding::is_embedding_gguf(path).unwrap_or(false)
}

/// Load the embedding model at `path` with `threads` compute threads: ONNX files through
/// ONNX Runtime, GGUF files on perch's engine.
pub fn load_embedder(path: &Path, threads: Option<usize>) -> Result<Arc<dyn Embedder>, String> {
    if perch_onnx::is_onnx_file(path) {
        return onnx::OnnxBackend::load(path, threads)
            .map(|m| Arc::new(m) as Arc<dyn Embedder>)
            .map_err(|e| e.to_string());
    }
    perch_engine::EmbeddingModel::load(path, threads)
        .map(|m| Arc::new(m) as Arc<dyn Embedder>)
        .map_err(|e| e.to_string())
}

/// What can be checked about the model file at `path` before serving it, without loading
/// it: for an ONNX model, that ONNX Runtime's library loads and a tokenizer.json is beside
/// the model. The server runs this for every `--model` at start, so a missing library is
/// one clear error then rather than a failure on the first request.
///
/// # Errors
/// A message naming the model and what is missing (with how to get it).
pub fn preflight(path: &Path) -> Result<(), String> {
    if !perch_onnx::is_onnx_file(path) {
        return Ok(());
    }
    perch_onnx::runtime::environment().map_err(|e| {
        format!(
            "{} is an ONNX model, served through ONNX Runtime: {e}",
            path.display()
        )
    })?;
    perch_onnx::embed::find_tokenizer(path).map_err(|e| e.to_string())?;
    Ok(())
}

/// A loaded embedding model and its bookkeeping.
#[derive(Debug)]
pub struct LoadedEmbedder {
    /// The name clients use.
    pub name: String,
    /// The model file.
    pub path: std::path::PathBuf,
    /// The model behind its batching worker.
    pub service: EmbedService,
    /// When it was loaded.
    pub loaded_at: SystemTime,
    /// How long loading took.
    pub load_time: Duration,
    in_flight: AtomicUsize,
    used: Mutex<(Instant, KeepAlive)>,
}

impl LoadedEmbedder {
    fn used(&self) -> std::sync::MutexGuard<'_, (Instant, KeepAlive)> {
        self.used.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How long it stays loaded once idle, from now on.
    pub fn set_keep_alive(&self, k: KeepAlive) {
        self.used().1 = k;
    }

    /// Take a place in the queue (503 beyond `limit`).
    pub fn acquire(self: &Arc<Self>, limit: usize) -> Result<EmbedSlot, ApiError> {
        if self.in_flight.fetch_add(1, Ordering::AcqRel) >= limit {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            return Err(ApiError::overloaded(&self.name, limit));
        }
        self.used().0 = Instant::now();
        Ok(EmbedSlot {
            model: self.clone(),
        })
    }

    /// How long it stays loaded once idle (`None`: until unloaded by hand or shutdown).
    fn keep_for(&self, default: Duration, is_default: bool) -> Option<Duration> {
        match self.used().1 {
            KeepAlive::For(d) => Some(d),
            KeepAlive::Forever => None,
            KeepAlive::ServerDefault if is_default => None,
            KeepAlive::ServerDefault => Some(default),
        }
    }

    fn expired(&self, default: Duration, is_default: bool) -> bool {
        let last = self.used().0;
        self.in_flight.load(Ordering::Acquire) == 0
            && self
                .keep_for(default, is_default)
                .is_some_and(|k| last.elapsed() >= k)
    }

    /// When its keep-alive runs out if no request comes (`None`: it does not), with the
    /// server's `default` keep-alive; the server's default model is kept.
    pub fn expires_at(&self, default: Duration, is_default: bool) -> Option<SystemTime> {
        let keep = self.keep_for(default, is_default)?;
        let idle = self.used().0.elapsed();
        Some(SystemTime::now() + keep.saturating_sub(idle))
    }
}

/// A request's place in an embedding model's queue; freed on drop.
#[derive(Debug)]
pub struct EmbedSlot {
    model: Arc<LoadedEmbedder>,
}

impl Drop for EmbedSlot {
    fn drop(&mut self) {
        self.model.used().0 = Instant::now();
        self.model.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The loaded embedding models (their own slots, apart from `--max-loaded` chat models:
/// they are small and a chat model and an embedding model are meant to be served together).
#[derive(Debug, Default)]
pub struct Embedders {
    loaded: Mutex<Vec<Arc<LoadedEmbedder>>>,
    load_lock: tokio::sync::Mutex<()>,
}

impl Embedders {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<LoadedEmbedder>>> {
        self.loaded.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The loaded embedding models.
    pub fn loaded(&self) -> Vec<Arc<LoadedEmbedder>> {
        self.lock().clone()
    }

    /// `spec`'s model, loading it if needed; the flag says whether this call loaded it.
    pub async fn get(
        &self,
        spec: &ModelSpec,
        threads: Option<usize>,
    ) -> Result<(Arc<LoadedEmbedder>, bool), ApiError> {
        let find = |s: &Self| s.lock().iter().find(|m| m.name == spec.name).cloned();
        if let Some(m) = find(self) {
            return Ok((m, false));
        }
        let _guard = self.load_lock.lock().await;
        if let Some(m) = find(self) {
            return Ok((m, false));
        }
        let path = spec.path.clone();
        let started = Instant::now();
        let embedder = tokio::task::spawn_blocking(move || load_embedder(&path, threads))
            .await
            .map_err(ApiError::internal)?
            .map_err(|e| {
                tracing::error!(model = %spec.name, error = %e, "cannot load embedding model");
                ApiError::unavailable(format!(
                    "model `{}` could not be loaded (the server log says why)",
                    spec.name
                ))
            })?;
        let service = EmbedService::start(embedder).map_err(ApiError::internal)?;
        let m = Arc::new(LoadedEmbedder {
            name: spec.name.clone(),
            path: spec.path.clone(),
            service,
            loaded_at: SystemTime::now(),
            load_time: started.elapsed(),
            in_flight: AtomicUsize::new(0),
            used: Mutex::new((Instant::now(), KeepAlive::ServerDefault)),
        });
        self.lock().push(m.clone());
        Ok((m, true))
    }

    /// Unload models idle past their keep-alive (`default_model` is kept by the server's).
    pub fn reap(&self, keep_alive: Duration, default_model: Option<&str>) {
        let gone: Vec<_> = {
            let mut loaded = self.lock();
            let (gone, keep): (Vec<_>, Vec<_>) = loaded
                .drain(..)
                .partition(|m| m.expired(keep_alive, Some(m.name.as_str()) == default_model));
            *loaded = keep;
            gone
        };
        unload(gone, "keep-alive expired");
    }

    /// Unload everything.
    pub fn unload_all(&self) {
        let gone: Vec<_> = self.lock().drain(..).collect();
        unload(gone, "shutdown");
    }

    /// Forget `name` (deleted from the store).
    pub fn forget(&self, name: &str) {
        let gone: Vec<_> = {
            let mut loaded = self.lock();
            let (gone, keep): (Vec<_>, Vec<_>) = loaded.drain(..).partition(|m| m.name == name);
            *loaded = keep;
            gone
        };
        unload(gone, "deleted");
    }
}

/// Drop models off the async runtime: dropping joins the worker thread.
fn unload(models: Vec<Arc<LoadedEmbedder>>, why: &'static str) {
    for m in models {
        tracing::info!(model = %m.name, why, "unloading embedding model");
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn_blocking(move || drop(m));
            }
            Err(_) => drop(m),
        }
    }
}

/// The 400 for an embedding request naming a chat model.
pub fn not_an_embedding_model(name: &str) -> ApiError {
    ApiError::invalid_param(
        "model",
        format!(
            "model `{name}` is a chat model and does not produce embeddings; name an embedding \
             model (a bert GGUF or an ONNX sentence encoder) for /v1/embeddings, /api/embed \
             and /api/embeddings"
        ),
    )
}

/// The 400 for a chat or completion request naming an embedding model.
pub fn not_a_chat_model(name: &str) -> ApiError {
    ApiError::invalid_param(
        "model",
        format!(
            "model `{name}` is an embedding model: it does not generate text; use it with \
             /v1/embeddings or /api/embed"
        ),
    )
}

/// The embedding model a request names (`None`: the default), loaded.
pub async fn embedder_for(
    state: &AppState,
    requested: Option<&str>,
) -> Result<(Arc<LoadedEmbedder>, bool), ApiError> {
    let spec = state.registry.spec(requested)?;
    if !state.registry.is_embedding(&spec).await {
        return Err(not_an_embedding_model(&spec.name));
    }
    state
        .registry
        .embedders()
        .get(&spec, state.config.load.threads)
        .await
}

/// An [`EmbedError`] as an HTTP error (`param` names the request field holding the inputs).
pub fn api_error(e: EmbedError, param: &str) -> ApiError {
    match e {
        EmbedError::TooLong { index, tokens, max } => ApiError::invalid_param(
            param,
            format!(
                "input {index} has {tokens} tokens, more than this model's maximum of {max} \
                 tokens; shorten it"
            ),
        ),
        EmbedError::Backend(m) => ApiError::internal(m),
        other => ApiError::invalid_param(param, other.to_string()),
    }
}

/// Keep the first `dims` values and scale back to unit length (OpenAI's and Ollama's
/// `dimensions`, for models trained to allow it).
pub fn truncate_dims(v: &mut Vec<f32>, dims: usize) {
    if dims < v.len() {
        v.truncate(dims);
        perch_engine::embed::l2_normalize(v);
    }
}

/// Check a requested `dimensions` against the model's.
pub fn check_dims(dims: Option<i64>, model_dims: usize) -> Result<Option<usize>, ApiError> {
    match dims {
        None => Ok(None),
        Some(d) if d >= 1 && d as u64 <= model_dims as u64 => Ok(Some(d as usize)),
        Some(d) => Err(ApiError::invalid_param(
            "dimensions",
            format!("`dimensions` must be between 1 and the model's {model_dims}, got {d}"),
        )),
    }
}
