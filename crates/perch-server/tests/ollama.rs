//! The Ollama API against a real engine on SmolLM2, through the router.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::*;
use serde_json::{Value, json};

fn options() -> Value {
    json!({"temperature": 0, "num_predict": 24})
}

fn check_final(last: &Value) {
    assert_eq!(last["done"], true, "{last}");
    assert!(
        matches!(last["done_reason"].as_str(), Some("stop" | "length")),
        "{last}"
    );
    for k in [
        "total_duration",
        "load_duration",
        "prompt_eval_count",
        "prompt_eval_duration",
        "eval_count",
        "eval_duration",
    ] {
        assert!(last[k].is_u64(), "{k} missing: {last}");
    }
    assert!(last["total_duration"].as_u64().unwrap() >= last["eval_duration"].as_u64().unwrap());
    assert!(last["created_at"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test]
async fn chat_streams_ndjson_by_default_and_answers_greedily() {
    let (app, state) = app().await;
    let body = json!({
        "model": MODEL,
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "What is the capital of France?"},
        ],
        "options": options(),
    });
    let (status, headers, bytes) = send(&app, post("/api/chat", &body)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/x-ndjson");
    let lines = ndjson(&bytes);
    assert!(lines.len() >= 2);
    let (last, parts) = lines.split_last().unwrap();
    for p in parts {
        assert_eq!(p["done"], false);
        assert_eq!(p["model"], MODEL);
        assert_eq!(p["message"]["role"], "assistant");
    }
    check_final(last);
    assert_eq!(last["message"]["content"], "");
    let text: String = parts
        .iter()
        .map(|p| p["message"]["content"].as_str().unwrap())
        .collect();
    assert!(text.contains("Paris"), "{text:?}");

    // stream: false gives one object with the same text.
    let mut b = body.clone();
    b["stream"] = json!(false);
    let (status, v) = send_json(&app, post("/api/chat", &b)).await;
    assert_eq!(status, StatusCode::OK);
    check_final(&v);
    assert_eq!(v["message"]["content"], text.as_str());
    assert_eq!(v["eval_count"], last["eval_count"]);
    wait_idle(&state).await;
}

#[tokio::test]
async fn generate_streams_and_returns_a_context_that_continues() {
    let (app, _) = app().await;
    let body = json!({"model": MODEL, "prompt": "What is the capital of France?", "system": "You are a helpful assistant.", "options": options()});
    let (status, _, bytes) = send(&app, post("/api/generate", &body)).await;
    assert_eq!(status, StatusCode::OK);
    let lines = ndjson(&bytes);
    let (last, parts) = lines.split_last().unwrap();
    check_final(last);
    let text: String = parts
        .iter()
        .map(|p| p["response"].as_str().unwrap())
        .collect();
    assert!(text.contains("Paris"), "{text:?}");
    // The context is the prompt and the answer's tokens (an end-of-generation token is
    // counted in eval_count but not part of the answer).
    let ctx = last["context"].as_array().expect("context");
    let eog = u64::from(last["done_reason"] == "stop");
    assert_eq!(
        ctx.len() as u64,
        last["prompt_eval_count"].as_u64().unwrap() + last["eval_count"].as_u64().unwrap() - eog
    );

    // Raw mode, not streamed, continuing nothing.
    let raw = json!({"model": MODEL, "prompt": "The capital of France is", "raw": true, "stream": false, "options": {"temperature": 0, "num_predict": 4}});
    let (status, v) = send_json(&app, post("/api/generate", &raw)).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert!(v["response"].as_str().unwrap().contains("Paris"), "{v}");
    assert_eq!(v["done_reason"], "length");
    assert_eq!(v["eval_count"], 4);

    // The context of the first answer carries the conversation on.
    let next = json!({"model": MODEL, "prompt": "And of Germany?", "context": last["context"], "stream": false, "options": options()});
    let (status, v) = send_json(&app, post("/api/generate", &next)).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert!(v["prompt_eval_count"].as_u64().unwrap() > ctx.len() as u64);
}

#[tokio::test]
async fn an_empty_request_loads_the_model() {
    let (app, _) = app().await;
    let (status, v) = send_json(&app, post("/api/generate", &json!({"model": MODEL}))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["done"], true);
    assert_eq!(v["done_reason"], "load");
    let (status, v) = send_json(
        &app,
        post("/api/chat", &json!({"model": MODEL, "messages": []})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["done_reason"], "load");
}

#[tokio::test]
async fn tags_show_ps_version_and_root() {
    let (app, _) = app().await;
    let (status, v) = send_json(&app, get("/api/tags")).await;
    assert_eq!(status, StatusCode::OK);
    let m = &v["models"][0];
    assert_eq!(m["name"], "smol:latest");
    assert_eq!(m["details"]["family"], "llama");
    assert_eq!(m["details"]["quantization_level"], "Q4_1");
    assert_eq!(m["details"]["parameter_size"], "135M");
    assert_eq!(m["size"], 98_362_432);

    let (status, v) = send_json(&app, post("/api/show", &json!({"model": "smol"}))).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["model_info"]["general.architecture"], "llama");
    assert_eq!(v["model_info"]["llama.block_count"], 30);
    assert!(v["template"].as_str().unwrap().contains("im_start"));
    let (status, v) = send_json(&app, post("/api/show", &json!({"model": "nope"}))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(v["error"].is_string(), "Ollama's error shape: {v}");

    let (status, v) = send_json(&app, get("/api/ps")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["models"][0]["name"], "smol:latest");
    assert!(v["models"][0]["expires_at"].is_string());

    let (status, v) = send_json(&app, get("/api/version")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(v["version"].is_string());

    let (status, _, body) = send(&app, get("/")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&body[..], b"Ollama is running");
    let head = Request::head("/").body(Body::empty()).unwrap();
    let (status, _, _) = send(&app, head).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn ollama_errors_use_ollamas_shape() {
    let (app, _) = app().await;
    let cases = [
        (post_raw("/api/chat", "{"), StatusCode::BAD_REQUEST),
        (
            post(
                "/api/chat",
                &json!({"model": "nope", "messages": [{"role": "user", "content": "x"}]}),
            ),
            StatusCode::NOT_FOUND,
        ),
        (
            post(
                "/api/chat",
                &json!({"model": MODEL, "messages": [{"role": "bard", "content": "x"}]}),
            ),
            StatusCode::BAD_REQUEST,
        ),
        (
            post(
                "/api/generate",
                &json!({"model": MODEL, "prompt": "x", "format": "yaml"}),
            ),
            StatusCode::BAD_REQUEST,
        ),
        (
            post(
                "/api/generate",
                &json!({"model": MODEL, "prompt": "x", "format": {"type": "object", "not": {}}}),
            ),
            StatusCode::BAD_REQUEST,
        ),
        (
            post(
                "/api/generate",
                &json!({"model": MODEL, "prompt": "x", "options": {"temperature": "warm"}}),
            ),
            StatusCode::BAD_REQUEST,
        ),
        (
            post(
                "/api/generate",
                &json!({"model": MODEL, "prompt": "x", "options": {"num_predict": -7}}),
            ),
            StatusCode::BAD_REQUEST,
        ),
        (
            post(
                "/api/generate",
                &json!({"model": MODEL, "prompt": "Tell me a story about the sea.", "options": {"num_ctx": 8}}),
            ),
            StatusCode::BAD_REQUEST,
        ),
        (
            post("/api/pull", &json!({"model": "llama3"})),
            StatusCode::NOT_IMPLEMENTED,
        ),
    ];
    for (i, (req, want)) in cases.into_iter().enumerate() {
        let (status, v) = send_json(&app, req).await;
        assert_eq!(status, want, "case {i}: {v}");
        assert!(
            v["error"].as_str().is_some_and(|m| !m.is_empty()),
            "case {i}: {v}"
        );
    }
}
