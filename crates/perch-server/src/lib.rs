//! # perch-server
//!
//! Serves perch's engine over HTTP: an OpenAI-compatible API (`/v1/...`), an
//! Ollama-compatible API (`/api/...`), `/health` and Prometheus `/metrics`.
//!
//! The server only moves bytes. Each model runs in its own engine thread (perch-engine);
//! handlers validate a request, render and tokenize its prompt on a blocking thread, submit it
//! to the engine and forward the engine's events as JSON, server-sent events or NDJSON. A
//! request's stream owns the engine's receiver, so a client that disconnects cancels its
//! generation and frees its KV blocks.
//!
//! Pieces: [`error`] (the API error and JSON extractors whose rejections are API errors),
//! [`state`] (settings, the model registry with lazy loading, LRU and keep-alive),
//! [`generation`] (what both APIs share), [`openai`], [`ollama`], [`embeddings`] (both APIs'
//! embedding routes with request batching), [`stream`] (SSE and NDJSON framing), [`metrics`],
//! [`middleware`] (request ids, tracing spans), [`auth`] (API keys and roles, the route table,
//! rate limits, the audit log), [`tls`] (rustls), [`structured`] (response formats and
//! grammars as decoding constraints), [`tools`] (tool calling: prompts, forced-call grammars,
//! parsing calls out of the output) and [`ui`] (the chat page at `/`).
//!
//! [`router`] builds the whole app for a state, which is what the tests drive with
//! `tower::ServiceExt::oneshot`; [`serve`] binds it and shuts down gracefully.
#![deny(missing_docs)]

pub mod auth;
pub mod embeddings;
pub mod error;
pub mod generation;
pub mod metrics;
pub mod middleware;
pub mod ollama;
pub mod openai;
pub mod state;
pub mod stream;
pub mod structured;
pub mod tls;
pub mod tools;
pub mod ui;
pub mod validate;

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tower_http::cors::{AllowOrigin, CorsLayer};

pub use error::ApiError;
pub use state::{AppState, KeepAlive, ModelSpec, ServerConfig};

/// Errors starting or running the server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The default model could not be loaded.
    #[error("{0}")]
    Load(String),
    /// The configuration is unusable.
    #[error("{0}")]
    Config(String),
    /// Serving failed.
    #[error("server error: {0}")]
    Io(#[from] std::io::Error),
}

/// `GET /health`: 200 once the default model has loaded, 503 before.
async fn health(State(state): State<AppState>) -> Response {
    if state.registry.is_ready() {
        (
            StatusCode::OK,
            axum::Json(serde_json::json!({"status": "ok"})),
        )
            .into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, HeaderValue::from_static("1"))],
            axum::Json(serde_json::json!({"status": "loading"})),
        )
            .into_response()
    }
}

/// `GET /metrics`: Prometheus text.
async fn metrics(State(state): State<AppState>) -> Response {
    let text = state.metrics.render(&state.registry.snapshot());
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        text,
    )
        .into_response()
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::route_not_found(uri.path())
}

fn cors(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::DELETE,
                Method::HEAD,
                Method::OPTIONS,
            ])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
            .expose_headers([header::HeaderName::from_static(middleware::REQUEST_ID)]),
    )
}

/// The whole app for `state`.
pub fn router(state: AppState) -> Router {
    let app = Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/v1/models", get(openai::list_models))
        .route("/v1/models/{*id}", get(openai::get_model))
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route("/v1/completions", post(openai::completions))
        .merge(ollama::routes())
        .merge(embeddings::routes())
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::guard,
        ))
        .layer(DefaultBodyLimit::max(state.config.body_limit));
    let app = match cors(&state.config.cors_origins) {
        Some(c) => app.layer(c),
        None => app,
    };
    app.layer(axum::middleware::from_fn_with_state(
        state.clone(),
        middleware::trace,
    ))
    .with_state(state)
}

/// Serve `config` on `addr` until `shutdown` resolves, then stop accepting, give running
/// requests `config.shutdown_timeout` to finish, and cancel the rest.
///
/// The server listens at once (so `/health` answers 503 while loading); the default model is
/// loaded before this returns an error for it, and `/health` turns 200 when it is ready.
pub async fn serve(
    config: ServerConfig,
    addr: SocketAddr,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    if config.models.is_empty() {
        return Err(ServeError::Config("no model given (use --model)".into()));
    }
    for m in &config.models {
        embeddings::preflight(&m.path)
            .map_err(|e| ServeError::Config(format!("model `{}`: {e}", m.name)))?;
    }
    let timeout = config.shutdown_timeout;
    let tls = match &config.tls {
        Some(files) => {
            Some(tls::server_config(files).map_err(|e| ServeError::Config(e.to_string()))?)
        }
        None => None,
    };
    let state = AppState::new(config);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })?;
    let local = listener.local_addr()?;
    tracing::info!(%local, tls = tls.is_some(), "listening");
    // Keep-alive: unload idle models.
    let reaper = state
        .registry
        .spawn_reaper(std::time::Duration::from_secs(1));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // Connection info gives the audit log the client's address.
    let app = router(state.clone()).into_make_service_with_connect_info::<tls::Remote>();
    let mut stop_rx2 = stop_rx.clone();
    let stopped = async move {
        let _ = stop_rx2.wait_for(|s| *s).await;
    };
    let server: std::pin::Pin<Box<dyn Future<Output = std::io::Result<()>> + Send>> = match tls {
        None => Box::pin(
            axum::serve(listener, app)
                .with_graceful_shutdown(stopped)
                .into_future(),
        ),
        Some(cfg) => Box::pin(
            axum::serve(tls::TlsListener::new(listener, cfg)?, app)
                .with_graceful_shutdown(stopped)
                .into_future(),
        ),
    };
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutting down: no new connections; letting running requests finish");
        let _ = stop_tx.send(true);
    });
    let loader = {
        let state = state.clone();
        async move { state.load_default().await }
    };
    let server = tokio::spawn(server);
    let load_result = loader.await;
    if let Err(e) = load_result {
        reaper.abort();
        server.abort();
        return Err(ServeError::Load(e.message));
    }
    let mut stop_rx3 = stop_rx.clone();
    let deadline = async move {
        let _ = stop_rx3.wait_for(|s| *s).await;
        tokio::time::sleep(timeout).await;
    };
    tokio::pin!(server);
    let result = tokio::select! {
        r = &mut server => r.map_err(|e| ServeError::Config(format!("server task failed: {e}")))?.map_err(ServeError::from),
        () = deadline => {
            tracing::warn!(timeout_s = timeout.as_secs_f64(), "requests still running after the shutdown timeout; cancelling them");
            server.abort();
            Ok(())
        }
    };
    reaper.abort();
    // Dropping the engines cancels whatever is still running.
    let reg = state.registry.clone();
    let _ = tokio::task::spawn_blocking(move || reg.unload_all()).await;
    result
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
