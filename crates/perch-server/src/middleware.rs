//! Request middleware: a request id and tracing span per request with the request metrics,
//! and API-key authentication.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use crate::error::ApiError;
use crate::generation::new_id;
use crate::state::AppState;

/// The header carrying the request id (taken from the client when it sends a sane one).
pub const REQUEST_ID: &str = "x-request-id";

fn client_request_id(req: &Request) -> Option<String> {
    let v = req.headers().get(REQUEST_ID)?.to_str().ok()?;
    let ok = !v.is_empty()
        && v.len() <= 64
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
    ok.then(|| v.to_string())
}

/// Give each request an id and a span, log it, count it in the metrics, and echo the id in
/// the response.
pub async fn trace(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let id = client_request_id(&req).unwrap_or_else(|| new_id("req-"));
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let span = tracing::info_span!(
        "request",
        id = %id,
        method = %req.method(),
        path = %req.uri().path(),
    );
    let started = Instant::now();
    let mut resp = next.run(req).instrument(span.clone()).await;
    let took = started.elapsed();
    let status = resp.status();
    span.in_scope(|| {
        tracing::info!(
            status = status.as_u16(),
            ms = took.as_secs_f64() * 1e3,
            "answered"
        );
    });
    state.metrics.record_request(&route, status.as_u16(), took);
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(REQUEST_ID, v);
    }
    resp
}

/// Constant-time equality, so the key cannot be guessed byte by byte from timings.
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Require `Authorization: Bearer KEY` when the server has a key, on every route but
/// `/health`, `GET /` (the chat page, which then asks for the key) and CORS preflights, which
/// browsers send without credentials.
pub async fn auth(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(key) = state.config.api_key.as_deref() else {
        return next.run(req).await;
    };
    if req.uri().path() == "/health"
        || req.method() == Method::OPTIONS
        || (req.uri().path() == "/" && req.method() == Method::GET)
    {
        return next.run(req).await;
    }
    let given = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    let err = match given {
        None => ApiError::unauthorized("missing API key: send it as `Authorization: Bearer KEY`"),
        Some(g) if same(g.as_bytes(), key.as_bytes()) => return next.run(req).await,
        Some(_) => ApiError::unauthorized("invalid API key"),
    };
    tracing::warn!(path = %req.uri().path(), "authentication failed");
    if req.uri().path().starts_with("/api/") {
        crate::error::Ollama(err).into_response()
    } else {
        err.into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::same;

    #[test]
    fn constant_time_compare() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"));
    }
}
