//! Helpers for the router-level tests: a server state on SmolLM2, requests, and SSE/NDJSON
//! parsing. Each test builds its own state (nextest runs every test in its own process; the
//! model is a 98 MB memory map, so loading is cheap).
#![allow(dead_code)]

use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use bytes::Bytes;
use http_body_util::BodyExt;
use perch_engine::loader::LoadOptions;
use perch_server::{AppState, ModelSpec, ServerConfig, router};
use serde_json::Value;
use tower::ServiceExt;

/// The model name the tests use.
pub const MODEL: &str = "smol";

/// A configuration serving SmolLM2 as `smol`.
pub fn config() -> ServerConfig {
    // Panics with "fixture missing: ...; run `cargo xtask fixtures`" when it is absent.
    let path = perch_fixtures::smollm2_q4_1();
    ServerConfig {
        models: vec![ModelSpec {
            name: MODEL.into(),
            path,
            defaults: Default::default(),
            sha256: None,
        }],
        load: LoadOptions {
            n_ctx: Some(512),
            parallel: 4,
            threads: Some(2),
            ..LoadOptions::default()
        },
        body_limit: 64 << 10,
        ..ServerConfig::default()
    }
}

/// A router and its state with the default model loaded.
pub async fn app_with(cfg: ServerConfig) -> (Router, AppState) {
    let state = AppState::new(cfg);
    state.load_default().await.expect("SmolLM2 loads");
    (router(state.clone()), state)
}

/// [`app_with`] the default [`config`].
pub async fn app() -> (Router, AppState) {
    app_with(config()).await
}

/// A JSON POST.
pub fn post(uri: &str, body: &Value) -> Request<Body> {
    Request::post(uri)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .expect("request builds")
}

/// A POST with a raw body.
pub fn post_raw(uri: &str, body: impl Into<Body>) -> Request<Body> {
    Request::post(uri)
        .header("content-type", "application/json")
        .body(body.into())
        .expect("request builds")
}

/// A GET.
pub fn get(uri: &str) -> Request<Body> {
    Request::get(uri)
        .body(Body::empty())
        .expect("request builds")
}

/// Send a request and read the whole body.
pub async fn send(app: &Router, req: Request<Body>) -> (StatusCode, HeaderMap, Bytes) {
    let resp = app.clone().oneshot(req).await.expect("router answers");
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .expect("body reads")
        .to_bytes();
    (status, headers, body)
}

/// Send a request and parse the body as JSON.
pub async fn send_json(app: &Router, req: Request<Body>) -> (StatusCode, Value) {
    let (status, _, body) = send(app, req).await;
    let v = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", String::from_utf8_lossy(&body)));
    (status, v)
}

/// The `data:` payloads of a server-sent events body, in order.
pub fn sse_data(body: &[u8]) -> Vec<String> {
    let text = std::str::from_utf8(body).expect("SSE is UTF-8");
    let mut out = Vec::new();
    for event in text.split("\n\n") {
        let data: Vec<&str> = event
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(|d| d.strip_prefix(' ').unwrap_or(d))
            .collect();
        if !data.is_empty() {
            out.push(data.join("\n"));
        }
    }
    out
}

/// The objects of an NDJSON body.
pub fn ndjson(body: &[u8]) -> Vec<Value> {
    std::str::from_utf8(body)
        .expect("NDJSON is UTF-8")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad NDJSON line {l:?}: {e}")))
        .collect()
}

/// Poll until the default model's engine has no KV blocks in use and nothing running.
pub async fn wait_idle(state: &AppState) {
    let m = state
        .registry
        .loaded_model(MODEL)
        .expect("the model is loaded");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = m.chat.handle().stats();
        if s.pool.used == 0 && s.running == 0 && s.waiting == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the engine did not go idle: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A greedy chat request body.
pub fn chat_body(question: &str, max_tokens: u32, stream: bool) -> Value {
    serde_json::json!({
        "model": MODEL,
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": question},
        ],
        "temperature": 0,
        "max_tokens": max_tokens,
        "stream": stream,
    })
}

/// An embedding's JSON array of numbers as `f32`.
pub fn vector(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

/// The L2 norm of `v`.
pub fn norm(v: &[f32]) -> f32 {
    v.iter().map(|x| x * x).sum::<f32>().sqrt()
}
