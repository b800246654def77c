//! The OpenAI API against a real engine on SmolLM2, through the router.

mod common;

use axum::http::StatusCode;
use common::*;
use serde_json::{Value, json};

#[tokio::test]
async fn chat_greedy_answers_the_question() {
    let (app, _) = app().await;
    let (status, v) = send_json(
        &app,
        post(
            "/v1/chat/completions",
            &chat_body("What is the capital of France?", 24, false),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], MODEL);
    let choice = &v["choices"][0];
    assert_eq!(choice["message"]["role"], "assistant");
    let text = choice["message"]["content"].as_str().expect("content");
    assert!(text.contains("Paris"), "answer: {text:?}");
    assert_eq!(choice["finish_reason"], "stop");
    let u = &v["usage"];
    let (p, c) = (
        u["prompt_tokens"].as_u64().expect("prompt_tokens"),
        u["completion_tokens"].as_u64().expect("completion_tokens"),
    );
    assert!(p > 10 && c > 0 && c <= 24, "{u}");
    assert_eq!(u["total_tokens"].as_u64(), Some(p + c));
}

#[tokio::test]
async fn chat_stream_has_openai_framing_and_matches_the_non_streamed_text() {
    let (app, state) = app().await;
    let q = "Name three colors.";
    let (_, whole) = send_json(&app, post("/v1/chat/completions", &chat_body(q, 12, false))).await;
    let mut body = chat_body(q, 12, true);
    body["stream_options"] = json!({"include_usage": true});
    let (status, headers, bytes) = send(&app, post("/v1/chat/completions", &body)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let data = sse_data(&bytes);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{data:?}");
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).expect("chunk is JSON"))
        .collect();
    assert!(chunks.len() >= 4, "{chunks:?}");
    let id = chunks[0]["id"].as_str().expect("id").to_string();
    for c in &chunks {
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["id"], id.as_str(), "one id for the whole stream");
    }
    // First: the role. Then content. Then finish_reason. Then usage with no choices.
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let usage_chunk = chunks.last().unwrap();
    assert_eq!(usage_chunk["choices"], json!([]));
    let finish = &chunks[chunks.len() - 2]["choices"][0];
    assert_eq!(
        finish["finish_reason"],
        whole["choices"][0]["finish_reason"]
    );
    for c in &chunks[..chunks.len() - 2] {
        assert!(c["choices"][0]["finish_reason"].is_null());
        assert!(c["usage"].is_null(), "usage only in the last chunk");
    }
    let streamed: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(streamed, whole["choices"][0]["message"]["content"]);
    // The same counts (the cached-token count differs: the second request hits the cache).
    for k in ["prompt_tokens", "completion_tokens", "total_tokens"] {
        assert_eq!(usage_chunk["usage"][k], whole["usage"][k], "{k}");
    }
    assert!(
        usage_chunk["usage"]["prompt_tokens_details"]["cached_tokens"]
            .as_u64()
            .unwrap()
            > 0
    );
    wait_idle(&state).await;
}

#[tokio::test]
async fn without_include_usage_there_is_no_usage_chunk() {
    let (app, _) = app().await;
    let (_, _, bytes) = send(
        &app,
        post("/v1/chat/completions", &chat_body("Hi", 4, true)),
    )
    .await;
    let data = sse_data(&bytes);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    for d in &data[..data.len() - 1] {
        let c: Value = serde_json::from_str(d).unwrap();
        assert!(c.get("usage").is_none(), "{c}");
        assert_eq!(c["choices"].as_array().map(Vec::len), Some(1));
    }
}

#[tokio::test]
async fn completions_plain_streamed_echo_and_n() {
    let (app, state) = app().await;
    let body = json!({"model": MODEL, "prompt": "The capital of France is", "max_tokens": 6, "temperature": 0});
    let (status, v) = send_json(&app, post("/v1/completions", &body)).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["object"], "text_completion");
    let text = v["choices"][0]["text"].as_str().unwrap().to_string();
    assert!(text.contains("Paris"), "{text:?}");
    assert_eq!(v["usage"]["completion_tokens"], 6);

    let mut s = body.clone();
    s["stream"] = json!(true);
    let (_, _, bytes) = send(&app, post("/v1/completions", &s)).await;
    let data = sse_data(&bytes);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let streamed: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["text"].as_str())
        .collect();
    assert_eq!(streamed, text);
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "length"
    );

    let mut e = body.clone();
    e["echo"] = json!(true);
    let (_, v) = send_json(&app, post("/v1/completions", &e)).await;
    assert_eq!(
        v["choices"][0]["text"],
        format!("The capital of France is{text}")
    );

    // Two sampled choices with a seed: reproducible, each with its index.
    let n = json!({"model": MODEL, "prompt": "Once upon a time", "max_tokens": 8, "n": 2, "seed": 7, "temperature": 1.0});
    let (_, a) = send_json(&app, post("/v1/completions", &n)).await;
    let (_, b) = send_json(&app, post("/v1/completions", &n)).await;
    assert_eq!(a["choices"].as_array().map(Vec::len), Some(2), "{a}");
    assert_eq!(a["choices"][1]["index"], 1);
    assert_eq!(a["choices"][0]["text"], b["choices"][0]["text"]);
    assert_eq!(a["choices"][1]["text"], b["choices"][1]["text"]);
    assert_eq!(a["usage"]["completion_tokens"], 16);
    wait_idle(&state).await;
}

#[tokio::test]
async fn logprobs_report_the_chosen_token_and_alternatives() {
    let (app, _) = app().await;
    let mut body = chat_body("What is the capital of France?", 5, false);
    body["logprobs"] = json!(true);
    body["top_logprobs"] = json!(3);
    let (status, v) = send_json(&app, post("/v1/chat/completions", &body)).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let content = v["choices"][0]["logprobs"]["content"]
        .as_array()
        .expect("logprobs.content");
    assert_eq!(
        content.len() as u64,
        v["usage"]["completion_tokens"].as_u64().unwrap()
    );
    let text: String = content
        .iter()
        .map(|e| e["token"].as_str().unwrap())
        .collect();
    assert!(
        v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .starts_with(text.trim_end()),
        "{text:?} vs {v}"
    );
    for e in content {
        let lp = e["logprob"].as_f64().unwrap();
        assert!(lp <= 0.0);
        let top = e["top_logprobs"].as_array().unwrap();
        assert_eq!(top.len(), 3);
        // Greedy: the chosen token is the most likely one.
        assert_eq!(top[0]["token"], e["token"]);
        assert!(top[0]["logprob"].as_f64().unwrap() >= top[1]["logprob"].as_f64().unwrap());
    }
}

#[tokio::test]
async fn models_list_and_lookup() {
    let (app, _) = app().await;
    let (status, v) = send_json(&app, get("/v1/models")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"][0]["id"], MODEL);
    assert_eq!(v["data"][0]["object"], "model");
    let (status, v) = send_json(&app, get("/v1/models/smol")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["id"], MODEL);
    let (status, v) = send_json(&app, get("/v1/models/gpt-4")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(v["error"]["code"], "model_not_found");
}

#[tokio::test]
async fn a_model_named_in_the_request_must_exist_and_absent_means_default() {
    let (app, _) = app().await;
    let mut body = chat_body("Hi", 2, false);
    body.as_object_mut().unwrap().remove("model");
    let (status, v) = send_json(&app, post("/v1/chat/completions", &body)).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["model"], MODEL);
    body["model"] = json!("smol:latest");
    let (status, _) = send_json(&app, post("/v1/chat/completions", &body)).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn streaming_several_choices_with_logprobs() {
    let (app, state) = app().await;
    let mut body = chat_body("Say a word.", 6, true);
    body["n"] = json!(2);
    body["temperature"] = json!(1.0);
    body["seed"] = json!(11);
    body["logprobs"] = json!(true);
    body["top_logprobs"] = json!(1);
    let (status, _, bytes) = send(&app, post("/v1/chat/completions", &body)).await;
    assert_eq!(status, StatusCode::OK);
    let data = sse_data(&bytes);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    for index in 0..2 {
        let mine: Vec<&Value> = chunks
            .iter()
            .map(|c| &c["choices"][0])
            .filter(|c| c["index"] == index)
            .collect();
        assert_eq!(mine[0]["delta"]["role"], "assistant", "choice {index}");
        let finishes: Vec<&Value> = mine
            .iter()
            .map(|c| &c["finish_reason"])
            .filter(|f| !f.is_null())
            .collect();
        assert_eq!(finishes.len(), 1, "one finish per choice");
        assert!(!mine.last().unwrap()["finish_reason"].is_null());
        let with_text: Vec<&&Value> = mine
            .iter()
            .filter(|c| {
                c["delta"]["content"]
                    .as_str()
                    .is_some_and(|t| !t.is_empty())
            })
            .collect();
        assert!(!with_text.is_empty(), "choice {index} produced text");
        for c in with_text {
            let lp = &c["logprobs"]["content"][0];
            assert!(lp["logprob"].as_f64().unwrap() <= 0.0, "{c}");
            assert_eq!(lp["top_logprobs"].as_array().map(Vec::len), Some(1));
        }
    }
    // Same seed, same answers: the stream is reproducible.
    let (_, _, again) = send(&app, post("/v1/chat/completions", &body)).await;
    let text = |b: &[u8], i: u64| -> String {
        sse_data(b)
            .iter()
            .filter_map(|d| serde_json::from_str::<Value>(d).ok())
            .filter(|c| c["choices"][0]["index"] == i)
            .filter_map(|c| {
                c["choices"][0]["delta"]["content"]
                    .as_str()
                    .map(str::to_string)
            })
            .collect()
    };
    assert_eq!(text(&bytes, 0), text(&again, 0));
    assert_eq!(text(&bytes, 1), text(&again, 1));
    wait_idle(&state).await;
}

/// `ignore_eos` (llama.cpp's server and vLLM): the answer that ends by itself within 24
/// tokens runs on to exactly `max_tokens` and finishes with `length`, beginning with the same
/// text.
#[tokio::test]
async fn ignore_eos_generates_exactly_max_tokens() {
    let (app, _) = app().await;
    let mut body = chat_body("What is the capital of France?", 24, false);
    let (status, short) = send_json(&app, post("/v1/chat/completions", &body)).await;
    assert_eq!(status, StatusCode::OK, "{short}");
    assert_eq!(short["choices"][0]["finish_reason"], "stop", "{short}");
    let short_text = short["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    body["max_tokens"] = json!(64);
    body["ignore_eos"] = json!(true);
    let (status, v) = send_json(&app, post("/v1/chat/completions", &body)).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["choices"][0]["finish_reason"], "length", "{v}");
    assert_eq!(v["usage"]["completion_tokens"], 64, "{v}");
    let text = v["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(
        text.starts_with(short_text.trim_end()),
        "{text:?} vs {short_text:?}"
    );
}
