//! The model store through the server: store models are listed and served with their
//! defaults; Ollama's create, copy and delete work on the store.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::*;
use perch_store::{Store, parse_modelfile};
use serde_json::{Value, json};

fn delete(body: &Value) -> Request<Body> {
    Request::delete("/api/delete")
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

fn names(v: &Value) -> Vec<String> {
    v["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn store_models_are_served_with_their_defaults() {
    let home = tempfile::tempdir().unwrap();
    let store = Store::at(home.path());
    let smol = perch_fixtures::smollm2_q4_1();
    // Referenced in place: no 98 MB copy.
    store.import(&smol, "base", false).unwrap();
    let mf = parse_modelfile(
        "FROM base\nPARAMETER temperature 0\nPARAMETER num_predict 3\nSYSTEM You are a helpful assistant.",
    )
    .unwrap();
    store.create("terse", &mf, home.path()).unwrap();
    let mut cfg = config();
    cfg.store = Some(store.clone());
    cfg.max_loaded = 2;
    let (app, _) = app_with(cfg).await;

    let (_, v) = send_json(&app, get("/api/tags")).await;
    let mut n = names(&v);
    n.sort();
    assert_eq!(n, ["base:latest", "smol:latest", "terse:latest"]);
    let base = v["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "base:latest")
        .unwrap();
    assert_eq!(
        base["digest"],
        store.get("base").unwrap().manifest.sha256.as_str()
    );
    let (_, v) = send_json(&app, get("/v1/models")).await;
    assert_eq!(v["data"].as_array().unwrap().len(), 3);

    // The defaults apply: greedy, 3 tokens, the system prompt.
    let body = json!({"model": "terse", "messages": [{"role": "user", "content": "What is the capital of France?"}]});
    let (status, a) = send_json(&app, post("/v1/chat/completions", &body)).await;
    assert_eq!(status, StatusCode::OK, "{a}");
    assert_eq!(a["usage"]["completion_tokens"], 3);
    assert_eq!(a["choices"][0]["finish_reason"], "length");
    let explicit = json!({"model": "smol", "temperature": 0, "max_tokens": 3, "messages": [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "What is the capital of France?"},
    ]});
    let (_, b) = send_json(&app, post("/v1/chat/completions", &explicit)).await;
    assert_eq!(a["choices"][0]["message"], b["choices"][0]["message"]);
    assert_eq!(a["usage"]["prompt_tokens"], b["usage"]["prompt_tokens"]);
    // A request's own values win.
    let mut longer = body.clone();
    longer["max_tokens"] = json!(5);
    let (_, c) = send_json(&app, post("/v1/chat/completions", &longer)).await;
    assert_eq!(c["usage"]["completion_tokens"], 5);

    let (_, show) = send_json(&app, post("/api/show", &json!({"model": "terse"}))).await;
    assert_eq!(show["system"], "You are a helpful assistant.");
    assert!(
        show["parameters"]
            .as_str()
            .unwrap()
            .contains("num_predict 3")
    );
}

#[tokio::test]
async fn ollama_create_copy_and_delete_work_on_the_store() {
    let home = tempfile::tempdir().unwrap();
    let store = Store::at(home.path());
    let mut cfg = config();
    cfg.store = Some(store.clone());
    let (app, _) = app_with(cfg).await;
    let smol = perch_fixtures::smollm2_q4_1();

    let create = json!({"model": "made", "from": smol.to_str().unwrap(), "system": "Be brief.", "parameters": {"temperature": 0.2, "stop": ["END"]}, "stream": false});
    let (status, v) = send_json(&app, post("/api/create", &create)).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "success");
    let e = store.get("made").unwrap();
    assert_eq!(e.manifest.system.as_deref(), Some("Be brief."));
    assert_eq!(e.manifest.parameters["stop"], json!(["END"]));
    assert!(e.path.starts_with(home.path()), "copied into the store");

    let (status, _, _) = send(
        &app,
        post(
            "/api/copy",
            &json!({"source": "made", "destination": "made2:v1"}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (_, v) = send_json(&app, get("/api/tags")).await;
    assert!(names(&v).contains(&"made2:v1".to_string()), "{v}");
    let (status, v) = send_json(
        &app,
        post("/api/chat", &json!({"model": "made2:v1", "messages": [{"role": "user", "content": "Hi"}], "stream": false, "options": {"num_predict": 2}})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");

    let (status, _, _) = send(&app, delete(&json!({"model": "made2:v1"}))).await;
    assert_eq!(status, StatusCode::OK);
    let (status, v) = send_json(&app, delete(&json!({"model": "made2:v1"}))).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{v}");
    let (_, v) = send_json(&app, get("/api/tags")).await;
    assert!(!names(&v).contains(&"made2:v1".to_string()));

    // Bad input: Ollama's error shape, nothing written.
    for (body, want) in [
        (
            json!({"model": "../evil", "from": smol.to_str().unwrap()}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"model": "x", "from": "no-such-model"}),
            StatusCode::NOT_FOUND,
        ),
        (
            json!({"model": "x", "from": "made", "parameters": {"warp": 9}}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"model": "x", "from": "made", "template": "{{ if .Prompt }}unclosed"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"model": "x", "files": {"a.gguf": "sha256:00"}}),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let (status, v) = send_json(&app, post("/api/create", &body)).await;
        assert_eq!(status, want, "{body}: {v}");
        assert!(v["error"].is_string(), "{v}");
    }
    assert!(store.get("x").is_err());
}
