//! The embedding endpoints on all-MiniLM-L6-v2 converted to GGUF (perch convert), served
//! beside SmolLM2: OpenAI's /v1/embeddings, Ollama's /api/embed and /api/embeddings, their
//! validation errors, chat/embedding model mix-ups, and batching of concurrent requests.

mod common;

use std::sync::OnceLock;

use axum::http::StatusCode;
use base64::Engine as _;
use common::{MODEL, app_with, config, get, norm, post, send_json, vector};
use perch_server::ModelSpec;
use serde_json::{Value, json};

const EMB: &str = "minilm";

/// MiniLM converted once per test process (F32, so values match the published ones).
fn minilm_gguf() -> std::path::PathBuf {
    static PATH: OnceLock<(tempfile::TempDir, std::path::PathBuf)> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("minilm.gguf");
        perch_convert::convert_hf(
            &perch_fixtures::minilm_dir(),
            &out,
            perch_convert::OutType::F32,
            |_| {},
        )
        .expect("MiniLM converts");
        (dir, out)
    })
    .1
    .clone()
}

async fn app() -> (axum::Router, perch_server::AppState) {
    let mut cfg = config();
    cfg.models.push(ModelSpec {
        name: EMB.into(),
        path: minilm_gguf(),
        defaults: Default::default(),
        sha256: None,
    });
    app_with(cfg).await
}

const PUBLISHED: [f32; 5] = [0.067657, 0.063496, 0.048713, 0.079305, 0.037448];

#[tokio::test]
async fn openai_embeddings_in_every_input_form() {
    let (app, _) = app().await;
    let (s, v) = send_json(
        &app,
        post(
            "/v1/embeddings",
            &json!({"model": EMB, "input": "This is an example sentence"}),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["object"], "list");
    assert_eq!(v["model"], EMB);
    assert_eq!(v["data"][0]["object"], "embedding");
    assert_eq!(v["data"][0]["index"], 0);
    let e = vector(&v["data"][0]["embedding"]);
    assert_eq!(e.len(), 384);
    for (a, b) in e.iter().zip(PUBLISHED) {
        assert!((a - b).abs() < 0.01, "{:?}", &e[..5]);
    }
    assert_eq!(v["usage"], json!({"prompt_tokens": 7, "total_tokens": 7}));

    // The same sentence as token ids, and in lists.
    let ids = json!([101, 2023, 2003, 2019, 2742, 6251, 102]);
    let (s, t) = send_json(
        &app,
        post("/v1/embeddings", &json!({"model": EMB, "input": ids})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{t}");
    let te = vector(&t["data"][0]["embedding"]);
    assert!(e.iter().zip(&te).all(|(a, b)| (a - b).abs() < 1e-5));
    let (s, l) = send_json(
        &app,
        post(
            "/v1/embeddings",
            &json!({"model": EMB, "input": ["a cat", "This is an example sentence"]}),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(l["data"].as_array().unwrap().len(), 2);
    assert_eq!(l["data"][1]["index"], 1);
    let le = vector(&l["data"][1]["embedding"]);
    assert!(e.iter().zip(&le).all(|(a, b)| (a - b).abs() < 1e-4));
    assert_eq!(l["usage"]["prompt_tokens"], 4 + 7);
    let (s, lt) = send_json(
        &app,
        post(
            "/v1/embeddings",
            &json!({"model": EMB, "input": [ids.clone(), [101, 102]]}),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(lt["usage"]["total_tokens"], 9);

    // base64: little-endian f32 of the same vector.
    let (_, b) = send_json(
        &app,
        post("/v1/embeddings", &json!({"model": EMB, "input": "This is an example sentence", "encoding_format": "base64"})),
    )
    .await;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b["data"][0]["embedding"].as_str().unwrap())
        .unwrap();
    let decoded: Vec<f32> = raw
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(decoded, e);

    // dimensions: the first values, renormalized.
    let (_, d) = send_json(
        &app,
        post(
            "/v1/embeddings",
            &json!({"model": EMB, "input": "This is an example sentence", "dimensions": 64}),
        ),
    )
    .await;
    let de = vector(&d["data"][0]["embedding"]);
    assert_eq!(de.len(), 64);
    assert!((norm(&de) - 1.0).abs() < 1e-5);
    let scale = 1.0 / norm(&e[..64]);
    assert!(
        de.iter()
            .zip(&e[..64])
            .all(|(a, b)| (a - b * scale).abs() < 1e-5)
    );

    // /v1/models lists both models.
    let (_, m) = send_json(&app, get("/v1/models")).await;
    let ids: Vec<&str> = m["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [MODEL, EMB]);
}

async fn error_of(app: &axum::Router, uri: &str, body: Value) -> (StatusCode, Value) {
    let (s, v) = send_json(app, post(uri, &body)).await;
    assert!(s.is_client_error(), "{uri} {body}: {s} {v}");
    (s, v)
}

#[tokio::test]
async fn bad_embedding_requests_name_the_field() {
    let (app, _) = app().await;
    for (body, param, words) in [
        (json!({"model": EMB, "input": ""}), "input", "empty"),
        (json!({"model": EMB, "input": []}), "input", "empty"),
        (
            json!({"model": EMB, "input": ["ok", 3]}),
            "input[1]",
            "string or a token array",
        ),
        (
            json!({"model": EMB, "input": [1, -2]}),
            "input",
            "token ids",
        ),
        (
            json!({"model": EMB, "input": {"text": "x"}}),
            "input",
            "must be a string",
        ),
        (
            json!({"model": EMB, "input": "x", "encoding_format": "hex"}),
            "encoding_format",
            "base64",
        ),
        (
            json!({"model": EMB, "input": "x", "dimensions": 0}),
            "dimensions",
            "384",
        ),
        (
            json!({"model": EMB, "input": "x", "dimensions": 385}),
            "dimensions",
            "384",
        ),
        (
            json!({"model": EMB, "input": [[101, 99999]]}),
            "input",
            "vocabulary",
        ),
        (
            json!({"model": EMB, "input": "word ".repeat(600)}),
            "input",
            "602 tokens",
        ),
        (json!({"model": EMB, "input": "x", "bogus": 1}), "", "bogus"),
        (json!({"model": MODEL, "input": "x"}), "model", "chat model"),
        (json!({"model": "nope", "input": "x"}), "model", "nope"),
    ] {
        let (s, v) = error_of(&app, "/v1/embeddings", body.clone()).await;
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains(words), "{body}: {msg}");
        if !param.is_empty() {
            assert_eq!(v["error"]["param"], param, "{body}: {v}");
        }
        if param == "model" && words == "nope" {
            assert_eq!(s, StatusCode::NOT_FOUND);
        } else {
            assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {v}");
        }
    }
    // Both numbers for a too-long input.
    let (_, v) = error_of(
        &app,
        "/v1/embeddings",
        json!({"model": EMB, "input": "word ".repeat(600)}),
    )
    .await;
    assert!(
        v["error"]["message"].as_str().unwrap().contains("512"),
        "{v}"
    );

    // A chat request to the embedding model.
    let (s, v) = send_json(
        &app,
        post(
            "/v1/chat/completions",
            &json!({"model": EMB, "messages": [{"role": "user", "content": "hi"}]}),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(v["error"]["param"], "model");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("embedding model"),
        "{v}"
    );
    let (s, v) = send_json(
        &app,
        post("/api/generate", &json!({"model": EMB, "prompt": "hi"})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        v["error"].as_str().unwrap().contains("embedding model"),
        "{v}"
    );
}

#[tokio::test]
async fn ollama_embed_and_legacy_embeddings() {
    let (app, _) = app().await;
    let (s, v) = send_json(
        &app,
        post(
            "/api/embed",
            &json!({"model": EMB, "input": ["This is an example sentence", "a cat"]}),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["model"], EMB);
    let embs = v["embeddings"].as_array().unwrap();
    assert_eq!(embs.len(), 2);
    let e = vector(&embs[0]);
    for (a, b) in e.iter().zip(PUBLISHED) {
        assert!((a - b).abs() < 0.01);
    }
    assert_eq!(v["prompt_eval_count"], 11);
    assert!(v["total_duration"].as_u64().unwrap() > 0);
    assert!(v["load_duration"].is_u64());

    // A string input; dimensions; truncation by default; truncate=false refuses.
    let long = "word ".repeat(600);
    let (s, v) = send_json(
        &app,
        post(
            "/api/embed",
            &json!({"model": EMB, "input": long, "dimensions": 8}),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["prompt_eval_count"], 512);
    let d = vector(&v["embeddings"][0]);
    assert_eq!(d.len(), 8);
    assert!((norm(&d) - 1.0).abs() < 1e-5);
    let (s, v) = send_json(
        &app,
        post(
            "/api/embed",
            &json!({"model": EMB, "input": long, "truncate": false}),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let msg = v["error"].as_str().unwrap();
    assert!(msg.contains("602") && msg.contains("512"), "{msg}");
    let (s, v) = send_json(
        &app,
        post("/api/embed", &json!({"model": EMB, "input": [1, 2]})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, v) = send_json(
        &app,
        post("/api/embed", &json!({"model": MODEL, "input": "x"})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(v["error"].as_str().unwrap().contains("chat model"));
    let (s, v) = send_json(
        &app,
        post(
            "/api/embed",
            &json!({"model": EMB, "input": "x", "keep_alive": "soon"}),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, v) = send_json(
        &app,
        post(
            "/api/embed",
            &json!({"model": EMB, "input": "x", "keep_alive": "10m"}),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");

    // Legacy: one prompt in, one vector out.
    let (s, v) = send_json(
        &app,
        post(
            "/api/embeddings",
            &json!({"model": EMB, "prompt": "This is an example sentence"}),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let l = vector(&v["embedding"]);
    assert!(l.iter().zip(&e).all(|(a, b)| (a - b).abs() < 1e-4));
    let (s, v) = send_json(
        &app,
        post("/api/embeddings", &json!({"model": EMB, "prompt": ""})),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["embedding"], json!([]));
}

#[tokio::test]
async fn concurrent_requests_are_batched_and_get_their_own_vectors() {
    let (app, state) = app().await;
    let texts: Vec<String> = (0..12)
        .map(|i| format!("sentence number {i} about topic {}", i * 7))
        .collect();
    // Each alone first.
    let mut alone = Vec::new();
    for t in &texts {
        let (_, v) = send_json(
            &app,
            post("/v1/embeddings", &json!({"model": EMB, "input": t})),
        )
        .await;
        alone.push(vector(&v["data"][0]["embedding"]));
    }
    let model = state
        .registry
        .embedders()
        .loaded()
        .into_iter()
        .find(|m| m.name == EMB)
        .unwrap();
    let before = model.service.batches();
    let futs = texts.iter().map(|t| {
        let app = app.clone();
        let body = json!({"model": EMB, "input": t});
        async move { send_json(&app, post("/v1/embeddings", &body)).await }
    });
    let results = futures_util::future::join_all(futs).await;
    let batches = model.service.batches() - before;
    for ((s, v), want) in results.iter().zip(&alone) {
        assert_eq!(*s, StatusCode::OK);
        let got = vector(&v["data"][0]["embedding"]);
        assert!(got.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-4));
    }
    assert!(
        batches < texts.len() as u64,
        "{batches} batches for {} concurrent requests",
        texts.len()
    );
}

#[tokio::test]
async fn an_embedding_model_alone_is_served() {
    let mut cfg = config();
    cfg.models = vec![ModelSpec {
        name: EMB.into(),
        path: minilm_gguf(),
        defaults: Default::default(),
        sha256: None,
    }];
    let (app, state) = app_with(cfg).await;
    assert!(state.registry.is_ready());
    let (s, _) = send_json(&app, get("/health")).await;
    assert_eq!(s, StatusCode::OK);
    // No model named: the default (the embedding model).
    let (s, v) = send_json(&app, post("/v1/embeddings", &json!({"input": "hello"}))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = send_json(
        &app,
        post(
            "/v1/chat/completions",
            &json!({"messages": [{"role": "user", "content": "hi"}]}),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
}
