//! Several models: loaded on first use, least recently used unloaded beyond `max_loaded`,
//! idle ones unloaded after their keep-alive.

mod common;

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use common::*;
use perch_server::{AppState, ModelSpec};
use serde_json::{Value, json};

fn two_models(max_loaded: usize, keep_alive: Duration) -> perch_server::ServerConfig {
    let mut cfg = config();
    let path = cfg.models[0].path.clone();
    cfg.models.push(ModelSpec {
        name: "other".into(),
        path,
        defaults: Default::default(),
        sha256: None,
    });
    cfg.max_loaded = max_loaded;
    cfg.keep_alive = keep_alive;
    cfg
}

fn loaded(state: &AppState) -> Vec<String> {
    let mut v: Vec<String> = state
        .registry
        .loaded()
        .iter()
        .map(|m| m.name.clone())
        .collect();
    v.sort();
    v
}

async fn ask(app: &axum::Router, model: &str) -> Value {
    let mut b = chat_body("Hi", 2, false);
    b["model"] = json!(model);
    let (status, v) = send_json(app, post("/v1/chat/completions", &b)).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    v
}

async fn wait_for(state: &AppState, want: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while loaded(state) != want {
        assert!(
            Instant::now() < deadline,
            "loaded models {:?}, expected {want:?}",
            loaded(state)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn models_load_on_first_use_and_the_least_recently_used_is_unloaded() {
    let (app, state) = app_with(two_models(1, Duration::from_secs(300))).await;
    assert_eq!(loaded(&state), ["smol"]);
    let (_, v) = send_json(&app, get("/v1/models")).await;
    assert_eq!(
        v["data"].as_array().map(Vec::len),
        Some(2),
        "both are listed"
    );
    let v = ask(&app, "other").await;
    assert_eq!(v["model"], "other");
    assert_eq!(loaded(&state), ["other"], "max_loaded 1 unloads smol");
    let (_, ps) = send_json(&app, get("/api/ps")).await;
    assert_eq!(ps["models"].as_array().map(Vec::len), Some(1));
    assert_eq!(ps["models"][0]["name"], "other:latest");
    ask(&app, "smol").await;
    assert_eq!(loaded(&state), ["smol"]);
}

#[tokio::test]
async fn idle_models_unload_after_their_keep_alive() {
    let (app, state) = app_with(two_models(2, Duration::from_millis(300))).await;
    let _reaper = state.registry.spawn_reaper(Duration::from_millis(50));
    ask(&app, "other").await;
    assert_eq!(loaded(&state), ["other", "smol"]);
    // `other` goes after the server's keep-alive; the default model stays.
    wait_for(&state, &["smol"]).await;
    let text = String::from_utf8(send(&app, get("/metrics")).await.2.to_vec()).unwrap();
    assert!(text.contains("perch_models_loaded 1\n"), "{text}");

    // An Ollama keep_alive of 0 unloads right after the request, even the default model.
    let body = json!({"model": "smol", "prompt": "Hi", "stream": false, "keep_alive": 0, "options": {"num_predict": 2}});
    let (status, v) = send_json(&app, post("/api/generate", &body)).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    wait_for(&state, &[]).await;
    // And it loads again on the next request.
    ask(&app, "smol").await;
    assert_eq!(loaded(&state), ["smol"]);
    let (status, _) = send_json(&app, get("/health")).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_long_keep_alive_is_reported_by_ps() {
    let (app, state) = app_with(two_models(2, Duration::from_secs(300))).await;
    let body = json!({"model": "other", "keep_alive": "1h"});
    let (status, v) = send_json(&app, post("/api/generate", &body)).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["done_reason"], "load");
    assert_eq!(loaded(&state), ["other", "smol"]);
    let (_, ps) = send_json(&app, get("/api/ps")).await;
    let other = ps["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "other:latest")
        .expect("other is loaded");
    let now_year: u32 = perch_server::ollama::rfc3339(std::time::SystemTime::now())[..4]
        .parse()
        .unwrap();
    let expires = other["expires_at"].as_str().unwrap();
    let year: u32 = expires[..4].parse().unwrap();
    assert!(
        year <= now_year + 1,
        "one hour from now, not never: {expires}"
    );
}
