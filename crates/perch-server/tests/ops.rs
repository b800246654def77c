//! Load and lifecycle: concurrent streams, cancellation on disconnect, metrics.

mod common;

use std::time::Duration;

use axum::http::StatusCode;
use common::*;
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

/// The value of a metric line `name{labels} value` in Prometheus text.
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

async fn metrics_text(app: &axum::Router) -> String {
    let (status, headers, body) = send(app, get("/metrics")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    String::from_utf8(body.to_vec()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_two_concurrent_streams_all_complete() {
    let (app, state) = app().await;
    let mut tasks = Vec::new();
    for i in 0..32 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            let q = format!("Give me a fact about the number {i}.");
            let (status, _, bytes) =
                send(&app, post("/v1/chat/completions", &chat_body(&q, 8, true))).await;
            (i, status, bytes)
        }));
    }
    for t in tasks {
        let (i, status, bytes) = t.await.expect("task");
        assert_eq!(status, StatusCode::OK, "request {i}");
        let data = sse_data(&bytes);
        assert_eq!(
            data.last().map(String::as_str),
            Some("[DONE]"),
            "request {i}"
        );
        let chunks: Vec<Value> = data[..data.len() - 1]
            .iter()
            .map(|d| serde_json::from_str(d).expect("JSON chunk"))
            .collect();
        assert_eq!(
            chunks[0]["choices"][0]["delta"]["role"], "assistant",
            "request {i}"
        );
        let last = &chunks.last().unwrap()["choices"][0];
        assert!(
            matches!(last["finish_reason"].as_str(), Some("stop" | "length")),
            "request {i}: {last}"
        );
        let text: String = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert!(!text.is_empty(), "request {i} generated nothing");
    }
    wait_idle(&state).await;
    let text = metrics_text(&app).await;
    assert_eq!(
        metric(
            &text,
            "perch_http_requests_total{route=\"/v1/chat/completions\",status=\"200\"}"
        ),
        Some(32.0)
    );
}

#[tokio::test]
async fn a_stream_dropped_midway_frees_its_kv_blocks() {
    let (app, state) = app().await;
    let resp = app
        .clone()
        .oneshot(post(
            "/v1/chat/completions",
            &chat_body("Write a long story about a dragon.", 400, true),
        ))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    // Read a few frames: the generation is under way and holds blocks.
    for _ in 0..4 {
        let f = body.frame().await.expect("frame").expect("no error");
        assert!(f.is_data());
    }
    let model = state.registry.loaded_model(MODEL).unwrap();
    let s = model.chat.handle().stats();
    assert!(s.pool.used > 0, "blocks in use while streaming: {s:?}");
    let text = metrics_text(&app).await;
    let used = metric(&text, "perch_kv_blocks{model=\"smol\",state=\"used\"}").unwrap();
    assert!(used > 0.0, "{text}");
    // The client goes away: the engine stops within a step or two instead of computing the
    // remaining ~390 tokens.
    let before = model.chat.handle().stats().tokens_computed;
    drop(body);
    let dropped = std::time::Instant::now();
    wait_idle(&state).await;
    assert_stopped_promptly(&model, before, dropped);
    let text = metrics_text(&app).await;
    assert_eq!(
        metric(&text, "perch_kv_blocks{model=\"smol\",state=\"used\"}"),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, "perch_running_sequences{model=\"smol\"}"),
        Some(0.0)
    );
}

/// After a cancellation at `at` (with `before` tokens computed), the engine went idle within a
/// moment and computed only a few more tokens.
fn assert_stopped_promptly(
    model: &perch_server::state::LoadedModel,
    before: u64,
    at: std::time::Instant,
) {
    let took = at.elapsed();
    let extra = model.chat.handle().stats().tokens_computed - before;
    assert!(took < Duration::from_secs(2), "idle only after {took:?}");
    assert!(extra <= 8, "{extra} tokens computed after the client left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_streaming_request_whose_client_leaves_is_cancelled() {
    let (app, state) = app().await;
    let model = state.registry.loaded_model(MODEL).unwrap();
    let task = tokio::spawn(async move {
        send(
            &app,
            post(
                "/v1/chat/completions",
                &chat_body("Write a long story about a dragon.", 400, false),
            ),
        )
        .await
    });
    // Wait until it is generating.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while model.chat.handle().stats().tokens_computed < 60 {
        assert!(
            std::time::Instant::now() < deadline,
            "the request never started"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(model.chat.handle().stats().running, 1);
    // The client gives up: the handler future is dropped.
    let before = model.chat.handle().stats().tokens_computed;
    task.abort();
    let dropped = std::time::Instant::now();
    assert!(task.await.is_err_and(|e| e.is_cancelled()));
    wait_idle(&state).await;
    assert_stopped_promptly(&model, before, dropped);
}

#[tokio::test]
async fn metrics_count_requests_tokens_and_latencies() {
    let (app, state) = app().await;
    let (status, v) = send_json(
        &app,
        post("/v1/chat/completions", &chat_body("Hi", 6, false)),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = send_json(&app, get("/v1/models/nope")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    wait_idle(&state).await;
    let text = metrics_text(&app).await;
    assert_eq!(
        metric(
            &text,
            "perch_http_requests_total{route=\"/v1/chat/completions\",status=\"200\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &text,
            "perch_http_requests_total{route=\"/v1/models/{*id}\",status=\"404\"}"
        ),
        Some(1.0)
    );
    let usage = &v["usage"];
    assert_eq!(
        metric(&text, "perch_prompt_tokens_total{model=\"smol\"}"),
        usage["prompt_tokens"].as_f64()
    );
    assert_eq!(
        metric(&text, "perch_generated_tokens_total{model=\"smol\"}"),
        usage["completion_tokens"].as_f64()
    );
    assert_eq!(
        metric(&text, "perch_time_to_first_token_seconds_count"),
        Some(1.0)
    );
    // One gap between each two streamed tokens; an end-of-generation token is counted in
    // usage but not streamed.
    let itl = metric(&text, "perch_inter_token_latency_seconds_count").unwrap();
    let streamed = usage["completion_tokens"].as_f64().unwrap()
        - if v["choices"][0]["finish_reason"] == "stop" {
            1.0
        } else {
            0.0
        };
    assert_eq!(itl, streamed - 1.0);
    for series in [
        "perch_queue_depth{model=\"smol\"}",
        "perch_kv_blocks{model=\"smol\",state=\"free\"}",
        "perch_kv_blocks{model=\"smol\",state=\"cached\"}",
        "perch_prefix_cache_hit_rate{model=\"smol\"}",
        "perch_models_loaded",
        "perch_model_loaded{model=\"smol\"}",
    ] {
        assert!(metric(&text, series).is_some(), "{series} missing:\n{text}");
    }
    assert_eq!(metric(&text, "perch_models_loaded"), Some(1.0));
}

/// With a draft model (`perch serve --draft-model`), completions are the same under greedy
/// decoding and the speculation counters appear in /metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draft_model_keeps_completions_and_is_reported_in_metrics() {
    let body = serde_json::json!({
        "model": MODEL,
        "prompt": "The three primary colors are",
        "max_tokens": 24,
        "temperature": 0,
    });
    let (app, state) = app().await;
    let (status, plain) = send_json(&app, post("/v1/completions", &body)).await;
    assert_eq!(status, StatusCode::OK, "{plain}");
    wait_idle(&state).await;

    let mut cfg = config();
    let mut draft = perch_engine::loader::DraftOptions::new(perch_fixtures::smollm2_q4_1());
    draft.p_min = 0.0;
    cfg.load.draft = Some(draft);
    let (app, state) = app_with(cfg).await;
    let (status, drafted) = send_json(&app, post("/v1/completions", &body)).await;
    assert_eq!(status, StatusCode::OK, "{drafted}");
    assert_eq!(plain["choices"][0]["text"], drafted["choices"][0]["text"]);
    assert_eq!(plain["usage"], drafted["usage"]);
    wait_idle(&state).await;
    let text = metrics_text(&app).await;
    let get = |name: &str| {
        metric(&text, &format!("{name}{{model=\"{MODEL}\"}}"))
            .unwrap_or_else(|| panic!("{name} missing from /metrics:\n{text}"))
    };
    let (drafts, accepted) = (
        get("perch_speculative_draft_tokens"),
        get("perch_speculative_accepted_tokens"),
    );
    assert!(drafts > 0.0 && accepted == drafts, "{drafts} {accepted}");
    assert!(get("perch_speculative_draft_model_steps") > 0.0);
    assert!(get("perch_speculative_draft_model_seconds") > 0.0);
    assert_eq!(get("perch_speculative_draft_kv_blocks_used"), 0.0);
}
