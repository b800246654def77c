//! `perch serve`: the OpenAI- and Ollama-compatible HTTP server.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use perch_engine::kv::KvType;
use perch_engine::loader::LoadOptions;
use perch_server::auth::{AccessControl, AuditLog, KeySet};
use perch_server::{ModelSpec, ServerConfig};

/// The default port (llama.cpp's server uses the same; Ollama's 11434 is left free so both can
/// run side by side; pass `--port 11434` to stand in for Ollama).
pub const DEFAULT_PORT: u16 = 8080;

/// Arguments of `perch serve`.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// A model to serve: a name in the store, a GGUF `PATH` (named after the file), an ONNX
    /// sentence-embedding model `PATH.onnx` (tokenizer.json beside it; run by ONNX Runtime)
    /// or `NAME=PATH`; repeatable. The first is the default model, loaded at start-up; the
    /// others, and every model in the store, load on first use.
    #[arg(long = "model", short = 'm', required = true)]
    pub models: Vec<String>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// Port to listen on.
    #[arg(long, default_value_t = DEFAULT_PORT)]
    pub port: u16,
    /// An API key clients send as `Authorization: Bearer KEY`: `KEY` (role admin) or
    /// `KEY:inference` / `KEY:admin`; repeatable. `PERCH_API_KEYS` adds comma-separated ones
    /// (and `PERCH_API_KEY` one). With any key, every route but /health needs one.
    #[arg(long = "api-key")]
    pub api_keys: Vec<String>,
    /// A key file of `NAME ROLE SHA256 [rpm=N] [tpm=N]` lines, as `perch keys add` writes.
    #[arg(long = "api-key-file")]
    pub api_key_file: Option<PathBuf>,
    /// Append admin actions and refused requests to this file as JSON lines.
    #[arg(long = "audit-log")]
    pub audit_log: Option<PathBuf>,
    /// Rotate the audit log once it would pass this size.
    #[arg(long = "audit-log-max-bytes", default_value_t = 10 << 20)]
    pub audit_log_max_bytes: u64,
    /// Rotated audit logs kept (FILE.1 is the newest).
    #[arg(long = "audit-log-keep", default_value_t = 5)]
    pub audit_log_keep: usize,
    /// Serve HTTPS with this PEM certificate chain (needs --tls-key).
    #[arg(long = "tls-cert", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key for --tls-cert.
    #[arg(long = "tls-key", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Sequences that can each hold a full context at once (sizes the KV cache).
    #[arg(long, short = 'p', default_value_t = 4)]
    pub parallel: usize,
    /// Context size per sequence in tokens (default: the model's, at most 4096).
    #[arg(long = "ctx-size", short = 'c')]
    pub ctx_size: Option<usize>,
    /// KV cache size in MiB (instead of parallel × context).
    #[arg(long = "kv-memory")]
    pub kv_memory: Option<usize>,
    /// KV cache element type: f16, or q8_0 for about twice the tokens in the same memory.
    #[arg(long = "kv-type", default_value = "f16")]
    pub kv_type: KvType,
    /// Speculative decoding (a draft model serves every model the server loads, so it must
    /// share their vocabulary).
    #[command(flatten)]
    pub speculative: crate::generate::SpeculativeArgs,
    /// Most tokens computed in one forward step (decode tokens plus prompt chunks).
    #[arg(long = "batch-tokens", default_value_t = 512)]
    pub batch_tokens: usize,
    /// Compute threads per model (default: the physical cores).
    #[arg(long, short = 't')]
    pub threads: Option<usize>,
    /// Allow browsers from this origin (`*` for any); repeatable. CORS is off without it.
    #[arg(long = "cors-origin")]
    pub cors_origin: Vec<String>,
    /// Most models loaded at once; the least recently used is unloaded beyond it.
    #[arg(long = "max-loaded", default_value_t = 1)]
    pub max_loaded: usize,
    /// Seconds an idle model (other than the default) stays loaded.
    #[arg(long = "keep-alive", default_value_t = 300)]
    pub keep_alive: u64,
    /// Most requests queued or running per model; more get 503 with Retry-After.
    #[arg(long = "max-queue", default_value_t = 256)]
    pub max_queue: usize,
    /// Largest request body in bytes.
    #[arg(long = "max-body-bytes", alias = "body-limit", default_value_t = 2 << 20)]
    pub body_limit: usize,
    /// Do not serve the chat page at `/` (API clients still get Ollama's banner there).
    #[arg(long = "no-ui")]
    pub no_ui: bool,
    /// Largest `max_tokens` / `num_predict` a request may ask for (requests without one are
    /// capped at it).
    #[arg(long = "max-tokens-limit")]
    pub max_tokens_limit: Option<usize>,
    /// Most choices (`n`) per request.
    #[arg(long = "max-n", default_value_t = 8)]
    pub max_n: usize,
    /// Longest prompt in tokens (beyond the context size, which always applies).
    #[arg(long = "max-prompt-tokens")]
    pub max_prompt_tokens: Option<usize>,
    /// Seconds running requests get to finish after SIGINT or SIGTERM.
    #[arg(long = "shutdown-timeout", default_value_t = 10)]
    pub shutdown_timeout: u64,
}

/// Run the command.
pub fn run(args: ServeArgs) -> Result<()> {
    let store = crate::store::open()?;
    for p in store.sweep_partials(crate::store::PARTIAL_MIN_AGE)? {
        tracing::info!(path = %p.display(), "removed an unfinished write from the store");
    }
    let models = args
        .models
        .iter()
        .map(|m| {
            if let Some(e) = crate::pull::ensure(&store, m)? {
                return Ok(ModelSpec::from_entry(&e));
            }
            if !m.contains('=') && !std::path::Path::new(m).is_file() {
                let e = store
                    .get(m)
                    .with_context(|| format!("`{m}` is neither a file nor a model in the store"))?;
                return Ok(ModelSpec::from_entry(&e));
            }
            ModelSpec::parse(m).map_err(anyhow::Error::msg)
        })
        .collect::<Result<Vec<_>>>()?;
    for m in &models {
        if !m.path.is_file() {
            anyhow::bail!("model file {} does not exist", m.path.display());
        }
        // ONNX models need ONNX Runtime's library and their tokenizer.json: say so now.
        perch_server::embeddings::preflight(&m.path)
            .map_err(|e| anyhow::anyhow!("model `{}`: {e}", m.name))?;
    }
    let mut names: Vec<&str> = models.iter().map(|m| m.name.as_str()).collect();
    names.sort_unstable();
    if names.windows(2).any(|w| w[0] == w[1]) {
        anyhow::bail!("two models have the same name; name them with --model NAME=PATH");
    }
    if args.parallel == 0
        || args.max_queue == 0
        || args.ctx_size == Some(0)
        || args.batch_tokens == 0
    {
        anyhow::bail!("--parallel, --max-queue, --ctx-size and --batch-tokens must be positive");
    }
    let access = access(&args)?;
    if access.keys.is_empty() && !args.host.is_loopback() {
        tracing::warn!(
            host = %args.host,
            "listening on a non-loopback address without API keys: anyone who can reach it \
             can use and change the models (set --api-key or --api-key-file)"
        );
    }
    if args.max_n == 0 || args.max_tokens_limit == Some(0) || args.max_prompt_tokens == Some(0) {
        anyhow::bail!("--max-n, --max-tokens-limit and --max-prompt-tokens must be positive");
    }
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(perch_server::tls::TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
        }),
        _ => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let (speculative, draft) = args.speculative.options()?;
    let config = ServerConfig {
        models,
        load: LoadOptions {
            n_ctx: args.ctx_size,
            parallel: args.parallel,
            kv_memory: args.kv_memory.map(|mib| mib << 20),
            threads: args.threads,
            max_batch_tokens: args.batch_tokens,
            kv_type: args.kv_type,
            speculative,
            draft,
            ..LoadOptions::default()
        },
        access,
        tls,
        max_tokens_limit: args.max_tokens_limit,
        max_n: args.max_n,
        max_prompt_tokens: args.max_prompt_tokens,
        cors_origins: args.cors_origin,
        max_loaded: args.max_loaded.max(1),
        keep_alive: Duration::from_secs(args.keep_alive),
        max_queue: args.max_queue,
        body_limit: args.body_limit,
        shutdown_timeout: Duration::from_secs(args.shutdown_timeout),
        store: Some(store),
        ui: !args.no_ui,
    };
    let addr = SocketAddr::new(args.host, args.port);
    let ui = config.ui;
    // A small runtime: tokio only moves bytes; the engines compute on their own threads.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("perch-http")
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async move {
        if ui {
            eprintln!("perch: chat in your browser at {scheme}://{addr}/");
        }
        eprintln!(
            "perch: serving on {scheme}://{addr} (OpenAI API under /v1, Ollama API under /api)"
        );
        perch_server::serve(config, addr, perch_server::shutdown_signal()).await
    })?;
    Ok(())
}

/// The keys from `--api-key`, `PERCH_API_KEYS`, `PERCH_API_KEY` and `--api-key-file`, and the
/// audit log.
fn access(args: &ServeArgs) -> Result<AccessControl> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    let mut flags = args.api_keys.clone();
    if let Some(one) = env("PERCH_API_KEY") {
        flags.push(one);
    }
    let keys = KeySet::gather(
        &flags,
        env("PERCH_API_KEYS").as_deref(),
        args.api_key_file.as_deref(),
    )?;
    let audit = match &args.audit_log {
        Some(p) => Some(Arc::new(
            AuditLog::open(p, args.audit_log_max_bytes, args.audit_log_keep)
                .with_context(|| format!("cannot open the audit log {}", p.display()))?,
        )),
        None => None,
    };
    if !keys.is_empty() {
        let admins = keys
            .keys()
            .iter()
            .filter(|k| k.role == perch_server::auth::Role::Admin)
            .count();
        tracing::info!(keys = keys.keys().len(), admins, "API keys required");
    }
    Ok(AccessControl {
        keys,
        audit,
        ..AccessControl::default()
    })
}
