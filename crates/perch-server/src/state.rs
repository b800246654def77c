//! Server settings, shared state and the model registry.
//!
//! The registry knows every model the server may serve (from `--model`) and keeps the loaded
//! ones. Models load on first use (the default one at start-up), on a blocking thread so the
//! async runtime never stalls; loads are serialized so two requests for the same model load it
//! once. Beyond `max_loaded` the least recently used model is unloaded; a model idle longer
//! than its keep-alive is unloaded by [`Registry::reap`] (the default model stays loaded).
//! An unloaded model that still has requests running stays alive until they finish, because
//! each request holds an `Arc` to it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use perch_engine::loader::{ChatModel, LoadOptions};

use crate::error::ApiError;
use crate::metrics::{Metrics, Snapshot};

/// What a model runs with unless a request says otherwise (from the store's manifest).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ModelDefaults {
    /// Parameters under Ollama's option names (`temperature`, `top_k`, `stop`, `num_ctx`...).
    pub parameters: BTreeMap<String, serde_json::Value>,
    /// A system prompt used when a conversation has none.
    pub system: Option<String>,
    /// A chat template (Ollama Go or Jinja) replacing the model's own.
    pub template: Option<String>,
    /// Messages put before every conversation (after its system message).
    pub messages: Vec<serde_json::Value>,
}

impl ModelDefaults {
    /// A float parameter.
    pub fn f64(&self, key: &str) -> Option<f64> {
        self.parameters.get(key).and_then(serde_json::Value::as_f64)
    }

    /// An integer parameter.
    pub fn i64(&self, key: &str) -> Option<i64> {
        self.parameters.get(key).and_then(serde_json::Value::as_i64)
    }

    /// The stop strings.
    pub fn stop(&self) -> Option<Vec<String>> {
        let v = self.parameters.get("stop")?;
        match v {
            serde_json::Value::String(s) => Some(vec![s.clone()]),
            serde_json::Value::Array(a) => Some(
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect(),
            ),
            _ => None,
        }
    }

    /// Put the default system prompt first when `messages` has no system message, and the
    /// model's stored messages after it.
    pub fn add_system(&self, messages: &mut Vec<serde_json::Value>) {
        let has = messages
            .first()
            .and_then(|m| m["role"].as_str())
            .is_some_and(|r| r == "system" || r == "developer");
        let at = usize::from(has || self.system.is_some());
        if let (Some(sys), false) = (&self.system, has) {
            messages.insert(0, serde_json::json!({"role": "system", "content": sys}));
        }
        for (i, m) in self.messages.iter().enumerate() {
            messages.insert(at + i, m.clone());
        }
    }
}

/// A model the server can serve.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelSpec {
    /// The name clients use.
    pub name: String,
    /// The model file (GGUF, or ONNX for embedding models).
    pub path: PathBuf,
    /// Defaults from the store.
    pub defaults: ModelDefaults,
    /// sha256 of the file, when known (store models).
    pub sha256: Option<String>,
}

impl ModelSpec {
    /// A spec from `--model`: `NAME=PATH`, or a path whose file name (without `.gguf` or
    /// `.onnx`) becomes the name.
    pub fn parse(arg: &str) -> Result<ModelSpec, String> {
        let (name, path) = match arg.split_once('=') {
            Some((n, p)) if !n.is_empty() && !n.contains('/') => (n.to_string(), PathBuf::from(p)),
            _ => {
                let path = PathBuf::from(arg);
                let name = path
                    .file_name()
                    .map(|s| s.to_string_lossy().into_owned())
                    .ok_or_else(|| format!("`{arg}` has no file name"))?;
                let name = name
                    .strip_suffix(".gguf")
                    .or_else(|| name.strip_suffix(".onnx"))
                    .map(str::to_string)
                    .unwrap_or(name);
                (name, path)
            }
        };
        if name.is_empty() || name.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(format!(
                "model name `{name}` must be non-empty without spaces"
            ));
        }
        Ok(ModelSpec {
            name,
            path,
            defaults: ModelDefaults::default(),
            sha256: None,
        })
    }

    /// A spec for a model in the store.
    pub fn from_entry(e: &perch_store::Entry) -> ModelSpec {
        ModelSpec {
            name: e.name.to_string(),
            path: e.path.clone(),
            defaults: ModelDefaults {
                parameters: e.manifest.parameters.clone(),
                system: e.manifest.system.clone(),
                template: e.manifest.template.clone(),
                messages: e.manifest.messages.clone(),
            },
            sha256: Some(e.manifest.sha256.clone()),
        }
    }

    fn matches(&self, requested: &str) -> bool {
        requested == self.name
            || requested
                .strip_suffix(":latest")
                .is_some_and(|r| r == self.name)
            || self
                .name
                .strip_suffix(":latest")
                .is_some_and(|n| n == requested)
    }
}

/// Settings of one server.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The models; the first is the default (loaded at start-up, used when a request names
    /// no model).
    pub models: Vec<ModelSpec>,
    /// How models are loaded (context size, parallel sequences, KV memory, threads).
    pub load: LoadOptions,
    /// API keys, roles, rate limits and the audit log (no keys: open).
    pub access: crate::auth::AccessControl,
    /// Serve HTTPS with this certificate and key.
    pub tls: Option<crate::tls::TlsFiles>,
    /// Largest `max_tokens` (or `num_predict`) a request may ask for; requests that ask for
    /// none are capped at it.
    pub max_tokens_limit: Option<usize>,
    /// Longest prompt in tokens.
    pub max_prompt_tokens: Option<usize>,
    /// Origins allowed by CORS (`*` for any); empty turns CORS off.
    pub cors_origins: Vec<String>,
    /// Most models loaded at once.
    pub max_loaded: usize,
    /// How long an idle model stays loaded.
    pub keep_alive: Duration,
    /// Most requests queued or running per model before 503.
    pub max_queue: usize,
    /// Largest request body in bytes.
    pub body_limit: usize,
    /// Largest `n` (choices per request).
    pub max_n: usize,
    /// How long running requests may take to finish after a shutdown signal.
    pub shutdown_timeout: Duration,
    /// The model store: its models are served too, and the Ollama routes that create, copy
    /// and delete models work on it.
    pub store: Option<perch_store::Store>,
    /// Serve the chat page at `GET /` (`--no-ui` turns it off).
    pub ui: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            models: Vec::new(),
            load: LoadOptions::default(),
            access: crate::auth::AccessControl::default(),
            tls: None,
            max_tokens_limit: None,
            max_prompt_tokens: None,
            cors_origins: Vec::new(),
            max_loaded: 1,
            keep_alive: Duration::from_secs(300),
            max_queue: 256,
            body_limit: 2 << 20,
            max_n: 8,
            shutdown_timeout: Duration::from_secs(10),
            store: None,
            ui: true,
        }
    }
}

/// How long a model stays loaded once idle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeepAlive {
    /// The server's `--keep-alive` (the default model stays loaded).
    ServerDefault,
    /// This long after the last request (set by an Ollama request's `keep_alive`).
    For(Duration),
    /// Until the server stops or the model is evicted by `--max-loaded`.
    Forever,
}

/// A loaded model and its bookkeeping.
#[derive(Debug)]
pub struct LoadedModel {
    /// The name clients use.
    pub name: String,
    /// The model, tokenizer, template and engine.
    pub chat: ChatModel,
    /// When it was loaded.
    pub loaded_at: SystemTime,
    /// How long loading took.
    pub load_time: Duration,
    /// Defaults from the store.
    pub defaults: ModelDefaults,
    in_flight: AtomicUsize,
    used: Mutex<(Instant, KeepAlive)>,
}

impl LoadedModel {
    /// Take a queue slot, or 503 when `limit` requests are already queued or running.
    pub fn acquire(self: &Arc<Self>, limit: usize) -> Result<Slot, ApiError> {
        let prev = self.in_flight.fetch_add(1, Ordering::AcqRel);
        if prev >= limit {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            return Err(ApiError::overloaded(&self.name, limit));
        }
        self.touch();
        Ok(Slot {
            model: self.clone(),
        })
    }

    /// Requests queued or running.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    fn touch(&self) {
        self.used_lock().0 = Instant::now();
    }

    fn used_lock(&self) -> std::sync::MutexGuard<'_, (Instant, KeepAlive)> {
        self.used.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How long this model stays loaded once idle, from now on.
    pub fn set_keep_alive(&self, k: KeepAlive) {
        self.used_lock().1 = k;
    }

    /// How long this model stays loaded once idle (`None`: until evicted or shutdown).
    /// `default` is the server's keep-alive; `is_default` says whether this is the default
    /// model, which the server's keep-alive does not unload.
    fn keep_for(&self, default: Duration, is_default: bool) -> Option<Duration> {
        match self.used_lock().1 {
            KeepAlive::For(d) => Some(d),
            KeepAlive::Forever => None,
            KeepAlive::ServerDefault if is_default => None,
            KeepAlive::ServerDefault => Some(default),
        }
    }

    fn idle_expired(&self, default: Duration, is_default: bool) -> bool {
        let last = self.used_lock().0;
        self.in_flight() == 0
            && self
                .keep_for(default, is_default)
                .is_some_and(|k| last.elapsed() >= k)
    }
}

/// A request's place in a model's queue; freed on drop.
#[derive(Debug)]
pub struct Slot {
    model: Arc<LoadedModel>,
}

impl Slot {
    /// The model.
    pub fn model(&self) -> &Arc<LoadedModel> {
        &self.model
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.model.touch();
        self.model.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The models the server knows and the ones it has loaded.
#[derive(Debug)]
pub struct Registry {
    specs: RwLock<Vec<ModelSpec>>,
    default_name: Option<String>,
    explicit: Vec<String>,
    store: Option<perch_store::Store>,
    opts: LoadOptions,
    max_loaded: usize,
    keep_alive: Duration,
    loaded: Mutex<Vec<Arc<LoadedModel>>>,
    load_lock: tokio::sync::Mutex<()>,
    ready: AtomicBool,
    embedders: crate::embeddings::Embedders,
    /// Whether each model file is an embedding model (read once from its header).
    kinds: Mutex<std::collections::HashMap<PathBuf, bool>>,
}

impl Registry {
    fn new(cfg: &ServerConfig) -> Registry {
        Registry {
            specs: RwLock::new(cfg.models.clone()),
            default_name: cfg.models.first().map(|m| m.name.clone()),
            explicit: cfg.models.iter().map(|m| m.name.clone()).collect(),
            store: cfg.store.clone(),
            opts: cfg.load.clone(),
            max_loaded: cfg.max_loaded.max(1),
            keep_alive: cfg.keep_alive,
            loaded: Mutex::new(Vec::new()),
            load_lock: tokio::sync::Mutex::new(()),
            ready: AtomicBool::new(false),
            embedders: crate::embeddings::Embedders::default(),
            kinds: Mutex::new(std::collections::HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<LoadedModel>>> {
        self.loaded.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn specs_lock(&self) -> std::sync::RwLockReadGuard<'_, Vec<ModelSpec>> {
        self.specs.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Every model the server can serve (the `--model` ones, the default first, then the
    /// store's).
    pub fn specs(&self) -> Vec<ModelSpec> {
        self.refresh_from_store();
        self.specs_lock().clone()
    }

    /// The model store, if the server has one.
    pub fn store(&self) -> Option<&perch_store::Store> {
        self.store.as_ref()
    }

    fn is_default(&self, name: &str) -> bool {
        self.default_name.as_deref() == Some(name)
    }

    /// Add the store's models that are not known yet; forget store models that are gone.
    pub fn refresh_from_store(&self) {
        let Some(store) = &self.store else { return };
        let entries = match store.list() {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list the model store");
                return;
            }
        };
        let mut specs = self.specs.write().unwrap_or_else(|e| e.into_inner());
        let from_store: Vec<ModelSpec> = entries.iter().map(ModelSpec::from_entry).collect();
        // Store models are named name:tag; keep --model ones as they are.
        specs.retain(|s| !s.name.contains(':') || from_store.iter().any(|f| f.name == s.name));
        for f in from_store {
            match specs.iter_mut().find(|s| s.name == f.name) {
                Some(s) if self.explicit.contains(&s.name) => {}
                Some(s) => *s = f,
                None => specs.push(f),
            }
        }
    }

    /// The loaded embedding models.
    pub fn embedders(&self) -> &crate::embeddings::Embedders {
        &self.embedders
    }

    /// Whether `spec` is an embedding model (its GGUF's architecture is `bert`).
    pub async fn is_embedding(&self, spec: &ModelSpec) -> bool {
        if let Some(&k) = self
            .kinds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&spec.path)
        {
            return k;
        }
        let path = spec.path.clone();
        let k = tokio::task::spawn_blocking(move || crate::embeddings::is_embedding_model(&path))
            .await
            .unwrap_or(false);
        self.kinds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(spec.path.clone(), k);
        k
    }

    /// Load the default model, chat or embedding.
    pub async fn load_default(&self) -> Result<(), ApiError> {
        let spec = self.spec(None)?;
        if self.is_embedding(&spec).await {
            self.embedders.get(&spec, self.opts.threads).await?;
            self.ready.store(true, Ordering::Release);
            Ok(())
        } else {
            self.get(None).await.map(|_| ())
        }
    }

    /// Forget `name` (removed from the store) and unload it once idle.
    pub fn forget(&self, name: &str) {
        self.embedders.forget(name);
        self.specs
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|s| s.name != name);
        let gone: Vec<_> = {
            let mut loaded = self.lock();
            let (gone, keep): (Vec<_>, Vec<_>) = loaded.drain(..).partition(|m| m.name == name);
            *loaded = keep;
            gone
        };
        unload(gone, "deleted");
    }

    /// The spec a request's `model` names (`None` or empty: the default).
    pub fn spec(&self, requested: Option<&str>) -> Result<ModelSpec, ApiError> {
        let find =
            |specs: &[ModelSpec], name: &str| specs.iter().find(|s| s.matches(name)).cloned();
        match requested.map(str::trim).filter(|s| !s.is_empty()) {
            None => self
                .specs_lock()
                .first()
                .cloned()
                .ok_or_else(|| ApiError::unavailable("this server has no models")),
            Some(name) => {
                if let Some(s) = find(&self.specs_lock(), name) {
                    return Ok(s);
                }
                // Imported since the server started?
                self.refresh_from_store();
                find(&self.specs_lock(), name).ok_or_else(|| ApiError::model_not_found(name))
            }
        }
    }

    /// The loaded models.
    pub fn loaded(&self) -> Vec<Arc<LoadedModel>> {
        self.lock().clone()
    }

    /// The loaded model called `name`, if it is loaded.
    pub fn loaded_model(&self, name: &str) -> Option<Arc<LoadedModel>> {
        self.lock().iter().find(|m| m.name == name).cloned()
    }

    /// Whether the default model has loaded.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// The model a request names, loading it if needed.
    pub async fn get(&self, requested: Option<&str>) -> Result<Arc<LoadedModel>, ApiError> {
        let spec = self.spec(requested)?;
        if let Some(m) = self.loaded_model(&spec.name) {
            m.touch();
            return Ok(m);
        }
        if self.is_embedding(&spec).await {
            return Err(crate::embeddings::not_a_chat_model(&spec.name));
        }
        let _guard = self.load_lock.lock().await;
        if let Some(m) = self.loaded_model(&spec.name) {
            m.touch();
            return Ok(m);
        }
        let mut opts = self.opts.clone();
        if let Some(t) = &spec.defaults.template {
            opts.chat_template = Some(t.clone());
        }
        if let Some(n) = spec.defaults.i64("num_ctx").filter(|&n| n > 0) {
            opts.n_ctx = Some(n as usize);
        }
        let path = spec.path.clone();
        let started = Instant::now();
        let chat = tokio::task::spawn_blocking(move || ChatModel::load(&path, &opts))
            .await
            .map_err(ApiError::internal)?
            .map_err(|e| {
                tracing::error!(model = %spec.name, error = %e, "cannot load model");
                ApiError::unavailable(format!(
                    "model `{}` could not be loaded (the server log says why)",
                    spec.name
                ))
            })?;
        let model = Arc::new(LoadedModel {
            name: spec.name.clone(),
            chat,
            loaded_at: SystemTime::now(),
            load_time: started.elapsed(),
            defaults: spec.defaults.clone(),
            in_flight: AtomicUsize::new(0),
            used: Mutex::new((Instant::now(), KeepAlive::ServerDefault)),
        });
        let evicted = {
            let mut loaded = self.lock();
            loaded.push(model.clone());
            let mut evicted = Vec::new();
            while loaded.len() > self.max_loaded {
                // Least recently used first, never the one just loaded.
                let Some(i) = loaded
                    .iter()
                    .enumerate()
                    .filter(|(_, m)| !Arc::ptr_eq(m, &model))
                    .min_by_key(|(_, m)| m.used_lock().0)
                    .map(|(i, _)| i)
                else {
                    break;
                };
                evicted.push(loaded.remove(i));
            }
            evicted
        };
        if self.is_default(&spec.name) {
            self.ready.store(true, Ordering::Release);
        }
        unload(evicted, "least recently used beyond --max-loaded");
        Ok(model)
    }

    /// Unload models idle past their keep-alive.
    pub fn reap(&self) {
        let default = self.default_name.as_deref();
        self.embedders.reap(self.keep_alive, default);
        let expired = {
            let mut loaded = self.lock();
            let (gone, keep): (Vec<_>, Vec<_>) = loaded
                .drain(..)
                .partition(|m| m.idle_expired(self.keep_alive, Some(m.name.as_str()) == default));
            *loaded = keep;
            gone
        };
        unload(expired, "keep-alive expired");
    }

    /// When `m` will be unloaded if nothing uses it (`None`: not by the keep-alive).
    pub fn expires_at(&self, m: &LoadedModel) -> Option<SystemTime> {
        let is_default = self.is_default(&m.name);
        let keep = m.keep_for(self.keep_alive, is_default)?;
        let idle = m.used_lock().0.elapsed();
        Some(SystemTime::now() + keep.saturating_sub(idle))
    }

    /// When the loaded embedding model `m` will be unloaded if idle (`None`: never).
    pub fn embedder_expires_at(&self, m: &crate::embeddings::LoadedEmbedder) -> Option<SystemTime> {
        m.expires_at(self.keep_alive, self.is_default(&m.name))
    }

    /// Check keep-alives every `every` until the registry is dropped.
    pub fn spawn_reaper(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let reg = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                match reg.upgrade() {
                    Some(r) => r.reap(),
                    None => return,
                }
            }
        })
    }

    /// Unload everything (at shutdown).
    pub fn unload_all(&self) {
        self.embedders.unload_all();
        let gone: Vec<_> = self.lock().drain(..).collect();
        unload(gone, "shutdown");
    }

    /// What the metrics report about the engines.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            models: self
                .loaded()
                .iter()
                .map(|m| (m.name.clone(), m.chat.handle().stats()))
                .collect(),
            known_models: self.specs_lock().len(),
        }
    }
}

/// Drop models off the async runtime: dropping the last reference joins the engine thread.
fn unload(models: Vec<Arc<LoadedModel>>, why: &'static str) {
    for m in models {
        tracing::info!(model = %m.name, why, "unloading model");
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn_blocking(move || drop(m));
            }
            Err(_) => drop(m),
        }
    }
}

/// State shared by every handler.
#[derive(Clone, Debug)]
pub struct AppState {
    /// Settings.
    pub config: Arc<ServerConfig>,
    /// The models.
    pub registry: Arc<Registry>,
    /// Counters and histograms.
    pub metrics: Arc<Metrics>,
    /// When the server started.
    pub started: SystemTime,
}

impl AppState {
    /// State for `config` (no model loaded yet: see [`AppState::load_default`]).
    pub fn new(config: ServerConfig) -> AppState {
        AppState {
            registry: Arc::new(Registry::new(&config)),
            config: Arc::new(config),
            metrics: Arc::new(Metrics::default()),
            started: SystemTime::now(),
        }
    }

    /// Load the default model (what `/health` waits for).
    pub async fn load_default(&self) -> Result<(), ApiError> {
        self.registry.load_default().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_specs_from_flags() {
        let s = ModelSpec::parse("/m/SmolLM2.Q4_1.gguf").unwrap();
        assert_eq!(s.name, "SmolLM2.Q4_1");
        assert_eq!(s.path, PathBuf::from("/m/SmolLM2.Q4_1.gguf"));
        let s = ModelSpec::parse("smol=/m/a.gguf").unwrap();
        assert_eq!(s.name, "smol");
        assert!(s.matches("smol:latest"));
        assert!(!s.matches("smol2"));
        assert!(ModelSpec::parse("/").is_err());
        let s = ModelSpec::parse("/m/all-MiniLM-L6-v2.onnx").unwrap();
        assert_eq!(s.name, "all-MiniLM-L6-v2");
    }
}
