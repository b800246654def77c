//! Request middleware: a request id and tracing span per request with the request metrics.
//! Authentication is [`crate::auth::guard`].

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

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
