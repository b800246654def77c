//! The built-in chat page at `GET /`: one HTML file with its CSS and JavaScript inline
//! (`chat.html`, compiled into the binary; no CDN, nothing fetched but the server's own API).
//!
//! The page lists the models (`/v1/models`), streams replies from `/v1/chat/completions`
//! (server-sent events read with `fetch` and a `ReadableStream`), renders markdown with a small
//! renderer that escapes the text before adding its few tags, shows tokens per second, takes a
//! system prompt, temperature and max tokens, stops a generation (`AbortController`, which
//! closes the stream, which cancels the sequence on the engine) and keeps conversations in the
//! browser's `localStorage`. With `--api-key` it asks for the key when `/v1/models` answers
//! 401, keeps it in `localStorage` and sends it as `Authorization: Bearer`.
//!
//! Ollama clients probe `GET /` and expect the text `Ollama is running`: a request that does
//! not accept HTML gets that text, as does every request when the page is turned off
//! (`perch serve --no-ui`).

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::state::AppState;

/// The page.
pub const CHAT_HTML: &str = include_str!("chat.html");

/// `GET /`: the chat page for browsers, Ollama's banner for API clients.
pub async fn root(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let wants_html = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"));
    if !state.config.ui || !wants_html {
        return "Ollama is running".into_response();
    }
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(
                    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'",
                ),
            ),
            (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        ],
        CHAT_HTML,
    )
        .into_response()
}
