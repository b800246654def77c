//! Bad requests, authentication, limits and CORS: each answered with the right status and
//! error object, while the server keeps serving.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::*;
use http_body_util::BodyExt;
use perch_server::router;
use serde_json::{Value, json};
use tower::ServiceExt;

fn chat(extra: Value) -> Value {
    let mut b = chat_body("Hi", 4, false);
    for (k, v) in extra.as_object().unwrap() {
        b[k] = v.clone();
    }
    b
}

/// Check the OpenAI error object and return it.
fn error_object(v: &Value) -> &Value {
    let e = &v["error"];
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    assert!(e["type"].is_string(), "{v}");
    assert!(e.get("param").is_some() && e.get("code").is_some(), "{v}");
    e
}

#[tokio::test]
async fn bad_requests_get_the_right_status_and_error_object() {
    let (app, _) = app().await;
    let long_question = "Tell me about the history of France in great detail. ".repeat(60);
    let cases: Vec<(&str, axum::http::Request<Body>, StatusCode, Option<&str>)> = vec![
        (
            "malformed JSON",
            post_raw("/v1/chat/completions", "{\"messages\": [}"),
            StatusCode::BAD_REQUEST,
            None,
        ),
        (
            "wrong type",
            post("/v1/chat/completions", &chat(json!({"temperature": "hot"}))),
            StatusCode::BAD_REQUEST,
            Some("temperature"),
        ),
        (
            "messages not a list",
            post("/v1/chat/completions", &chat(json!({"messages": "hello"}))),
            StatusCode::BAD_REQUEST,
            Some("messages"),
        ),
        (
            "negative max_tokens",
            post("/v1/chat/completions", &chat(json!({"max_tokens": -5}))),
            StatusCode::BAD_REQUEST,
            Some("max_tokens"),
        ),
        (
            "max_completion_tokens zero",
            post(
                "/v1/chat/completions",
                &chat(json!({"max_completion_tokens": 0})),
            ),
            StatusCode::BAD_REQUEST,
            Some("max_completion_tokens"),
        ),
        (
            "temperature out of range",
            post("/v1/chat/completions", &chat(json!({"temperature": 7.5}))),
            StatusCode::BAD_REQUEST,
            Some("temperature"),
        ),
        (
            "top_p out of range",
            post("/v1/chat/completions", &chat(json!({"top_p": 1.5}))),
            StatusCode::BAD_REQUEST,
            Some("top_p"),
        ),
        (
            "empty messages",
            post("/v1/chat/completions", &chat(json!({"messages": []}))),
            StatusCode::BAD_REQUEST,
            Some("messages"),
        ),
        (
            "unknown role",
            post(
                "/v1/chat/completions",
                &chat(json!({"messages": [{"role": "wizard", "content": "hi"}]})),
            ),
            StatusCode::BAD_REQUEST,
            Some("messages[0].role"),
        ),
        (
            "image part",
            post(
                "/v1/chat/completions",
                &chat(
                    json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:"}}]}]}),
                ),
            ),
            StatusCode::BAD_REQUEST,
            Some("messages[0].content[0].type"),
        ),
        (
            "huge n",
            post("/v1/chat/completions", &chat(json!({"n": 100000}))),
            StatusCode::BAD_REQUEST,
            Some("n"),
        ),
        (
            "logit_bias key not a token id",
            post(
                "/v1/chat/completions",
                &chat(json!({"logit_bias": {"hello": 5}})),
            ),
            StatusCode::BAD_REQUEST,
            Some("logit_bias"),
        ),
        (
            "logit_bias token outside the vocabulary",
            post(
                "/v1/chat/completions",
                &chat(json!({"logit_bias": {"999999": 5}})),
            ),
            StatusCode::BAD_REQUEST,
            Some("logit_bias"),
        ),
        (
            "top_logprobs without logprobs",
            post("/v1/chat/completions", &chat(json!({"top_logprobs": 3}))),
            StatusCode::BAD_REQUEST,
            Some("top_logprobs"),
        ),
        (
            "unknown model",
            post("/v1/chat/completions", &chat(json!({"model": "gpt-4o"}))),
            StatusCode::NOT_FOUND,
            Some("model"),
        ),
        (
            "tool parameters with an unsupported schema feature",
            post(
                "/v1/chat/completions",
                &chat(
                    json!({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "not": {}}}}]}),
                ),
            ),
            StatusCode::BAD_REQUEST,
            Some("tools[0].function.parameters"),
        ),
        (
            "response_format with an unsupported schema feature",
            post(
                "/v1/chat/completions",
                &chat(
                    json!({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "array", "uniqueItems": true}}}}),
                ),
            ),
            StatusCode::BAD_REQUEST,
            Some("response_format.json_schema.schema"),
        ),
        (
            "response_format with an invalid schema",
            post(
                "/v1/chat/completions",
                &chat(
                    json!({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "wizard"}}}}),
                ),
            ),
            StatusCode::BAD_REQUEST,
            Some("response_format.json_schema.schema"),
        ),
        (
            "an invalid GBNF grammar",
            post(
                "/v1/completions",
                &json!({"model": MODEL, "prompt": "x", "grammar": "root ::= foo"}),
            ),
            StatusCode::BAD_REQUEST,
            Some("grammar"),
        ),
        (
            "an invalid regular expression",
            post(
                "/v1/completions",
                &json!({"model": MODEL, "prompt": "x", "guided_regex": "(ab"}),
            ),
            StatusCode::BAD_REQUEST,
            Some("guided_regex"),
        ),
        (
            "tool_choice naming an unknown tool",
            post(
                "/v1/chat/completions",
                &chat(
                    json!({"tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": {"type": "function", "function": {"name": "g"}}}),
                ),
            ),
            StatusCode::BAD_REQUEST,
            Some("tool_choice"),
        ),
        (
            "prompt longer than the context",
            post(
                "/v1/chat/completions",
                &chat(json!({"messages": [{"role": "user", "content": long_question}]})),
            ),
            StatusCode::BAD_REQUEST,
            Some("messages"),
        ),
        (
            "body over the limit",
            post_raw(
                "/v1/chat/completions",
                format!("{{\"pad\": \"{}\"}}", "x".repeat(100 << 10)),
            ),
            StatusCode::PAYLOAD_TOO_LARGE,
            None,
        ),
        (
            "completions: negative logprobs",
            post(
                "/v1/completions",
                &json!({"model": MODEL, "prompt": "x", "logprobs": -1}),
            ),
            StatusCode::BAD_REQUEST,
            Some("logprobs"),
        ),
        (
            "completions: missing prompt",
            post("/v1/completions", &json!({"model": MODEL})),
            StatusCode::BAD_REQUEST,
            None,
        ),
        (
            "unknown route",
            get("/v1/nothing"),
            StatusCode::NOT_FOUND,
            None,
        ),
    ];
    for (name, req, want, param) in cases {
        let (status, v) = send_json(&app, req).await;
        assert_eq!(status, want, "{name}: {v}");
        let e = error_object(&v);
        if let Some(p) = param {
            assert_eq!(e["param"], p, "{name}: {v}");
        }
        if status == StatusCode::BAD_REQUEST {
            assert_eq!(e["type"], "invalid_request_error", "{name}");
        }
        if name == "prompt longer than the context" {
            let msg = e["message"].as_str().unwrap();
            assert_eq!(e["code"], "context_length_exceeded");
            assert!(msg.contains("512"), "names the context size: {msg}");
        }
        if name.contains("unsupported schema feature") {
            let msg = e["message"].as_str().unwrap();
            assert!(
                msg.contains("`not`") || msg.contains("`uniqueItems`"),
                "names the feature: {v}"
            );
            assert_eq!(e["code"], "unsupported_schema", "{v}");
        }
        if name == "an invalid GBNF grammar" {
            assert!(
                e["message"]
                    .as_str()
                    .unwrap()
                    .contains("undefined rule `foo`"),
                "{v}"
            );
        }
        // And the server keeps serving.
        let (status, _) = send_json(&app, get("/v1/models")).await;
        assert_eq!(status, StatusCode::OK, "after {name}");
    }
    let (status, v) = send_json(
        &app,
        post("/v1/chat/completions", &chat_body("Hi", 3, false)),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
}

#[tokio::test]
async fn the_api_key_guards_everything_but_health() {
    let mut cfg = config();
    cfg.access = perch_server::auth::AccessControl::single_key("s3cret");
    let (app, _) = app_with(cfg).await;
    let (status, headers, body) = send(&app, get("/v1/models")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers["www-authenticate"], "Bearer");
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(error_object(&v)["type"], "authentication_error");

    let wrong = Request::get("/v1/models")
        .header("authorization", "Bearer nope")
        .body(Body::empty())
        .unwrap();
    let (status, v) = send_json(&app, wrong).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(v["error"]["message"], "invalid API key");

    let right = Request::get("/v1/models")
        .header("authorization", "Bearer s3cret")
        .body(Body::empty())
        .unwrap();
    let (status, _) = send_json(&app, right).await;
    assert_eq!(status, StatusCode::OK);

    for path in ["/metrics", "/api/tags", "/v1/nothing"] {
        let (status, _, _) = send(&app, get(path)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
    }
    // Ollama routes answer in Ollama's shape.
    let (_, v) = send_json(&app, get("/api/tags")).await;
    assert!(v["error"].is_string(), "{v}");

    let (status, v) = send_json(&app, get("/health")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["status"], "ok");
}

#[tokio::test]
async fn health_is_not_ready_before_the_default_model_loads() {
    let state = perch_server::AppState::new(config());
    let app = router(state.clone());
    let (status, headers, _) = send(&app, get("/health")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(headers.contains_key("retry-after"));
    state.load_default().await.unwrap();
    let (status, _, _) = send(&app, get("/health")).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_full_queue_answers_503_with_retry_after() {
    let mut cfg = config();
    cfg.max_queue = 1;
    let (app, state) = app_with(cfg).await;
    // Hold one streaming request open (read only its first frame).
    let resp = app
        .clone()
        .oneshot(post(
            "/v1/chat/completions",
            &chat_body("Count to fifty.", 200, true),
        ))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    let first = body.frame().await.expect("a frame").expect("no error");
    assert!(first.is_data());
    let (status, headers, bytes) = send(
        &app,
        post("/v1/chat/completions", &chat_body("Hi", 2, false)),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers["retry-after"], "1");
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(v["error"]["code"], "queue_full");
    drop(body);
    wait_idle(&state).await;
    let (status, _) = send_json(
        &app,
        post("/v1/chat/completions", &chat_body("Hi", 2, false)),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "the slot is free again");
}

#[tokio::test]
async fn cors_is_off_unless_an_origin_is_allowed() {
    let preflight = || {
        Request::options("/v1/chat/completions")
            .header("origin", "http://example.test")
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type",
            )
            .body(Body::empty())
            .unwrap()
    };
    let (app, _) = app().await;
    let (_, headers, _) = send(&app, preflight()).await;
    assert!(!headers.contains_key("access-control-allow-origin"));

    let mut cfg = config();
    cfg.cors_origins = vec!["http://example.test".into()];
    cfg.access = perch_server::auth::AccessControl::single_key("k");
    let (app, _) = app_with(cfg).await;
    let (status, headers, _) = send(&app, preflight()).await;
    assert!(status.is_success(), "{status}");
    assert_eq!(
        headers["access-control-allow-origin"],
        "http://example.test"
    );
}
