//! Ollama's `/api/blobs` uploads, `/api/create` from blobs (with quantization, template,
//! system, parameters, messages), and Go templates in requests and Modelfiles, on the router.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::*;
use perch_engine::Arch;
use perch_engine::synth::{self, SynthSpec};
use perch_gguf::{GgmlType, GgufFile};
use perch_store::Store;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// A small F32 llama model with SmolLM2's vocabulary (for quantizing).
fn tiny_f32(dir: &std::path::Path) -> Vec<u8> {
    let vocab = GgufFile::open(perch_fixtures::smollm2_q4_1()).unwrap();
    let spec = SynthSpec::tiny(Arch::Llama, GgmlType::F32, 3);
    let path = dir.join("tiny-f32.gguf");
    synth::write(&spec, &vocab, &path, |_, _| {}).unwrap();
    std::fs::read(&path).unwrap()
}

fn blob_req(method: &str, digest: &str, body: Vec<u8>) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(format!("/api/blobs/{digest}"))
        .body(Body::from(body))
        .unwrap()
}

async fn generate(app: &axum::Router, body: Value) -> Value {
    let (status, v) = send_json(app, post("/api/generate", &body)).await;
    assert_eq!(status, StatusCode::OK, "{body}: {v}");
    v
}

#[tokio::test]
async fn blobs_upload_verified_and_create_quantizes_them() {
    let home = tempfile::tempdir().unwrap();
    let store = Store::at(home.path());
    let mut cfg = config();
    cfg.store = Some(store.clone());
    cfg.max_loaded = 2;
    cfg.body_limit = 1 << 20; // smaller than the model: uploads are not limited by it
    let (app, _) = app_with(cfg).await;

    let data = tiny_f32(home.path());
    assert!(
        data.len() > 1 << 20,
        "the test model should exceed the body limit"
    );
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(&data)));
    let (status, _, _) = send(&app, blob_req("HEAD", &digest, vec![])).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Wrong bytes for the digest: refused, nothing stored.
    let (status, v) = send_json(&app, blob_req("POST", &digest, b"not the model".to_vec())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("nothing was stored"),
        "{v}"
    );
    let (status, _, _) = send(&app, blob_req("HEAD", &digest, vec![])).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, v) = send_json(&app, blob_req("POST", "sha256:xyz", vec![1])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    // The real upload.
    let (status, _, _) = send(&app, blob_req("POST", &digest, data.clone())).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _, _) = send(&app, blob_req("HEAD", &digest, vec![])).await;
    assert_eq!(status, StatusCode::OK);
    assert!(perch_store::pull::partial_files(&store).is_empty());

    // Create from the blob, as is and quantized to Q8_0.
    let (status, body) = {
        let (s, _, b) = send(
            &app,
            post(
                "/api/create",
                &json!({"model": "tiny", "files": {"tiny-f32.gguf": digest}, "system": "Be brief.", "parameters": {"temperature": 0, "stop": ["END"]}}),
            ),
        )
        .await;
        (s, b)
    };
    assert_eq!(status, StatusCode::OK);
    let lines = ndjson(&body);
    assert_eq!(lines.last().unwrap()["status"], "success", "{lines:?}");
    let e = store.get("tiny").unwrap();
    assert_eq!(format!("sha256:{}", e.manifest.sha256), digest);
    assert_eq!(e.manifest.system.as_deref(), Some("Be brief."));
    assert_eq!(e.manifest.parameters["stop"], json!(["END"]));

    let (status, v) = send_json(
        &app,
        post(
            "/api/create",
            &json!({"model": "tiny:q8", "from": "tiny", "quantize": "Q8_0", "stream": false}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let q = store.get("tiny:q8").unwrap();
    assert_ne!(q.manifest.sha256, e.manifest.sha256);
    assert_eq!(
        q.manifest.system.as_deref(),
        Some("Be brief."),
        "base settings kept"
    );
    let f = GgufFile::open(&q.path).unwrap();
    assert_eq!(
        f.opt_u32(perch_gguf::keys::GENERAL_FILE_TYPE).unwrap(),
        Some(7),
        "llama.cpp's MOSTLY_Q8_0"
    );
    let (_, v) = send_json(&app, post("/api/show", &json!({"model": "tiny:q8"}))).await;
    assert_eq!(v["details"]["quantization_level"], "Q8_0", "{v}");

    // Bad creates: a missing blob, two sources, an unknown quantization, a bad template.
    let missing = format!("sha256:{}", "0".repeat(64));
    for (body, want) in [
        (
            json!({"model": "y", "files": {"m.gguf": missing}}),
            "upload it first",
        ),
        (
            json!({"model": "y", "from": "tiny", "files": {"m.gguf": digest}}),
            "either",
        ),
        (
            json!({"model": "y", "files": {"m.gguf": digest, "mmproj.gguf": digest}}),
            "exactly one",
        ),
        (
            json!({"model": "y", "from": "tiny", "quantize": "Q9_X"}),
            "Q9_X",
        ),
        (
            json!({"model": "y", "from": "tiny", "template": "{{ range .Messages }}"}),
            "template",
        ),
        (
            json!({"model": "y", "from": "tiny", "messages": [{"role": "robot", "content": "x"}]}),
            "messages[0].role",
        ),
    ] {
        let (status, v) = send_json(&app, post("/api/create", &body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {v}");
        assert!(v["error"].as_str().unwrap().contains(want), "{body}: {v}");
    }
    assert!(store.get("y").is_err());
}

/// Ollama's ChatML template (as in its library's SmolLM2 model).
const CHATML_GO: &str = "{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}{{ if .Prompt }}<|im_start|>user\n{{ .Prompt }}<|im_end|>\n{{ end }}<|im_start|>assistant\n{{ .Response }}<|im_end|>\n";

#[tokio::test]
async fn go_templates_render_requests_and_created_models() {
    let home = tempfile::tempdir().unwrap();
    let store = Store::at(home.path());
    store
        .import(&perch_fixtures::smollm2_q4_1(), "base", false)
        .unwrap();
    let mut cfg = config();
    cfg.store = Some(store.clone());
    cfg.max_loaded = 3;
    let (app, _) = app_with(cfg).await;
    let opts = json!({"temperature": 0, "num_predict": 6});
    // The reference: the same conversation through the model's own Jinja template (SmolLM2's
    // is ChatML, which renders what Ollama's Go ChatML template renders when a system prompt
    // is given).
    let chat_ref = |messages: Value| json!({"model": MODEL, "messages": messages, "stream": false, "options": opts});
    let sys = json!({"role": "system", "content": "You are a helpful assistant."});
    let question = json!({"role": "user", "content": "What is the capital of France?"});
    let (status, reference) =
        send_json(&app, post("/api/chat", &chat_ref(json!([sys, question])))).await;
    assert_eq!(status, StatusCode::OK, "{reference}");
    let reference = json!({
        "prompt_eval_count": reference["prompt_eval_count"],
        "response": reference["message"]["content"],
    });
    // The same through the request's `template` field.
    let templated = generate(
        &app,
        json!({"model": MODEL, "prompt": "What is the capital of France?", "system": "You are a helpful assistant.", "template": CHATML_GO, "stream": false, "options": opts}),
    )
    .await;
    assert_eq!(
        templated["prompt_eval_count"],
        reference["prompt_eval_count"]
    );
    assert_eq!(templated["response"], reference["response"]);
    // `raw` ignores templates.
    let rendered = "<|im_start|>user\nHi<|im_end|>\n";
    let raw = generate(
        &app,
        json!({"model": MODEL, "prompt": rendered, "raw": true, "template": "{{ .Prompt }} junk", "stream": false, "options": opts}),
    )
    .await;
    let plain = generate(
        &app,
        json!({"model": MODEL, "prompt": rendered, "raw": true, "stream": false, "options": opts}),
    )
    .await;
    assert_eq!(raw["prompt_eval_count"], plain["prompt_eval_count"]);

    // A model created with the template (and its system prompt) renders the same prompt.
    let (status, v) = send_json(
        &app,
        post(
            "/api/create",
            &json!({"model": "gochat", "modelfile": format!("FROM base\nSYSTEM You are a helpful assistant.\nTEMPLATE \"\"\"{CHATML_GO}\"\"\""), "stream": false}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let created = generate(
        &app,
        json!({"model": "gochat", "prompt": "What is the capital of France?", "stream": false, "options": opts}),
    )
    .await;
    assert_eq!(created["prompt_eval_count"], reference["prompt_eval_count"]);
    assert_eq!(created["response"], reference["response"]);
    let (status, v) = send_json(
        &app,
        post("/api/chat", &json!({"model": "gochat", "messages": [{"role": "user", "content": "What is the capital of France?"}], "stream": false, "options": opts})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["prompt_eval_count"], reference["prompt_eval_count"]);
    let (_, show) = send_json(&app, post("/api/show", &json!({"model": "gochat"}))).await;
    assert_eq!(show["template"], CHATML_GO);

    // Stored messages go before the conversation.
    let (status, v) = send_json(
        &app,
        post(
            "/api/create",
            &json!({"model": "withmsgs", "from": "gochat", "messages": [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi!"}], "stream": false}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let (_, reference2) = send_json(
        &app,
        post(
            "/api/chat",
            &chat_ref(json!([sys, {"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi!"}, question])),
        ),
    )
    .await;
    let (_, v) = send_json(
        &app,
        post("/api/chat", &json!({"model": "withmsgs", "messages": [{"role": "user", "content": "What is the capital of France?"}], "stream": false, "options": opts})),
    )
    .await;
    assert_eq!(
        v["prompt_eval_count"], reference2["prompt_eval_count"],
        "{v}"
    );

    // A template that fails for these messages is a 400 naming `template`.
    let (status, v) = send_json(
        &app,
        post(
            "/api/generate",
            &json!({"model": MODEL, "prompt": "x", "template": "{{ index .Prompt 3 }}"}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["error"].as_str().unwrap().contains("template"), "{v}");
}
