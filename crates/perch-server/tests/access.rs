//! Access control against the real router on SmolLM2: the role matrix generated from the
//! route table (each role, no key and a wrong key against every route), the check that every
//! route in the router's sources is in the table, the audit log's lines for it, rate limits,
//! the request limits and the rule that only admins unload.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use common::*;
use perch_server::auth::routes::{self, Access};
use perch_server::auth::{AccessControl, AuditLog, Key, KeySet, Role};
use serde_json::{Value, json};

const ADMIN: &str = "admin-secret";
const INFER: &str = "inference-secret";

/// Every `.route("PATH", get(..).post(..))` in the crate's sources: (method, path).
fn router_routes() -> BTreeSet<(String, String)> {
    fn walk(dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(std::fs::read_to_string(&p).unwrap());
            }
        }
    }
    let mut sources = Vec::new();
    walk(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut sources,
    );
    let mut found = BTreeSet::new();
    for src in &sources {
        let mut rest = src.as_str();
        while let Some(i) = rest.find(".route(") {
            rest = &rest[i + ".route(".len()..];
            // The call's text up to its closing parenthesis.
            let mut depth = 1;
            let end = rest
                .char_indices()
                .find(|&(_, c)| {
                    match c {
                        '(' => depth += 1,
                        ')' => depth -= 1,
                        _ => {}
                    }
                    depth == 0
                })
                .map(|(i, _)| i)
                .expect("balanced .route( call");
            let call = &rest[..end];
            let path = call.split('"').nth(1).expect("a string literal path");
            for m in ["get", "post", "delete", "head", "put", "patch"] {
                let calls = call.contains(&format!("{m}(")) && {
                    // `get(` but not e.g. `forget(`: preceded by a non-identifier character.
                    call.match_indices(&format!("{m}(")).any(|(j, _)| {
                        j == 0
                            || !call.as_bytes()[j - 1].is_ascii_alphanumeric()
                                && call.as_bytes()[j - 1] != b'_'
                    })
                };
                if calls {
                    found.insert((m.to_uppercase(), path.to_string()));
                }
            }
        }
    }
    assert!(
        found.len() >= 15,
        "the scan found too few routes: {found:?}"
    );
    found
}

#[test]
fn every_route_in_the_router_is_classified() {
    for (m, p) in router_routes() {
        let method = Method::from_bytes(m.as_bytes()).unwrap();
        assert!(
            routes::access(&method, &p).is_some(),
            "{m} {p} is served but missing from the route table in src/auth/routes.rs \
             (unclassified routes are refused when the server has keys)"
        );
    }
}

fn keyed(audit: Option<Arc<AuditLog>>) -> perch_server::ServerConfig {
    let mut cfg = config();
    cfg.access = AccessControl {
        audit,
        ..AccessControl::with_keys(
            KeySet::new(vec![
                Key::from_spec(ADMIN, "ops".into()).unwrap(),
                Key::from_spec(&format!("{INFER}:inference"), "app".into()).unwrap(),
            ])
            .unwrap(),
        )
    };
    cfg
}

/// A concrete request for a route pattern (bodies are minimal and harmless: they fail
/// validation or read only).
fn request(method: &Method, pattern: &str, key: Option<&str>) -> Request<Body> {
    let path = pattern
        .replace("{*id}", MODEL)
        .replace("{digest}", &format!("sha256-{}", "0".repeat(64)));
    let mut b = Request::builder().method(method.clone()).uri(path);
    if let Some(k) = key {
        b = b.header("authorization", format!("Bearer {k}"));
    }
    let body = if *method == Method::POST || *method == Method::DELETE {
        b = b.header("content-type", "application/json");
        Body::from("{}")
    } else {
        Body::empty()
    };
    b.body(body).unwrap()
}

#[tokio::test]
async fn the_role_matrix_over_every_route() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("audit.log");
    let audit = Arc::new(AuditLog::open(&log_path, 1 << 20, 1).unwrap());
    let (app, _) = app_with(keyed(Some(audit))).await;
    let served = router_routes();
    let mut checked = 0;
    let (mut expect_fail, mut expect_admin, mut expect_forbidden) = (0, 0, 0);
    for (method, pattern, access) in routes::table() {
        if !served.contains(&(method.to_string(), pattern.to_string())) {
            // Classified ahead of the branch that adds it; the router does not serve it yet.
            continue;
        }
        checked += 1;
        for (who, key) in [
            ("no key", None),
            ("a wrong key", Some("wrong")),
            ("the inference key", Some(INFER)),
            ("the admin key", Some(ADMIN)),
        ] {
            let (status, headers, body) = send(&app, request(method, pattern, key)).await;
            let expected = match (access, key) {
                (Access::Public, _) => None,
                (_, None) | (_, Some("wrong")) => Some(StatusCode::UNAUTHORIZED),
                (Access::Key(Role::Admin), Some(INFER)) => Some(StatusCode::FORBIDDEN),
                _ => None,
            };
            let what = format!(
                "{method} {pattern} with {who}: {status} {}",
                String::from_utf8_lossy(&body)
            );
            match expected {
                Some(s) => {
                    assert_eq!(status, s, "{what}");
                    // HEAD answers carry no body (HEAD /api/blobs/…): only the status counts.
                    if method == Method::HEAD {
                        assert!(body.is_empty(), "{what}");
                    } else {
                        let v: Value = serde_json::from_slice(&body)
                            .unwrap_or_else(|e| panic!("{what}: not JSON: {e}"));
                        if pattern.starts_with("/api/") {
                            assert!(v["error"].is_string(), "Ollama's error shape: {what}");
                        } else {
                            assert_eq!(
                                v["error"]["type"],
                                if s == StatusCode::UNAUTHORIZED {
                                    "authentication_error"
                                } else {
                                    "permission_error"
                                },
                                "{what}"
                            );
                        }
                    }
                    if s == StatusCode::UNAUTHORIZED {
                        assert_eq!(headers["www-authenticate"], "Bearer");
                        expect_fail += 1;
                    } else {
                        expect_forbidden += 1;
                    }
                }
                None => {
                    assert!(
                        status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN,
                        "{what}"
                    );
                    if access == &Access::Key(Role::Admin) {
                        expect_admin += 1;
                    }
                }
            }
        }
    }
    assert!(checked >= 17, "only {checked} routes checked");
    // The audit log has one line per refusal and per admin call, with who and what.
    let lines: Vec<Value> = std::fs::read_to_string(&log_path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let count = |ev: &str| lines.iter().filter(|l| l["event"] == ev).count();
    assert_eq!(count("auth_failure"), expect_fail);
    assert_eq!(count("forbidden"), expect_forbidden);
    assert_eq!(count("admin"), expect_admin);
    assert!(expect_admin >= 4 && expect_forbidden >= 4);
    for l in &lines {
        match l["event"].as_str().unwrap() {
            "auth_failure" => assert_eq!(l["key"], "anonymous"),
            "forbidden" => assert_eq!(l["key"], "app"),
            "admin" => assert_eq!(l["key"], "ops"),
            e => panic!("unexpected event {e}"),
        }
        assert!(l["ts"].as_str().unwrap().ends_with('Z'));
        assert!(l["path"].as_str().unwrap().starts_with('/'));
    }
}

#[tokio::test]
async fn an_open_server_lets_everyone_in_and_audits_admin_calls() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("audit.log");
    let mut cfg = config();
    cfg.access.audit = Some(Arc::new(AuditLog::open(&log_path, 1 << 20, 1).unwrap()));
    let (app, _) = app_with(cfg).await;
    for (method, pattern, _) in routes::table() {
        let (status, _, body) = send(&app, request(method, pattern, None)).await;
        assert!(
            status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN,
            "{method} {pattern}: {status} {}",
            String::from_utf8_lossy(&body)
        );
    }
    let text = std::fs::read_to_string(&log_path).unwrap();
    assert!(text.lines().count() >= 4, "{text}");
    assert!(text.lines().all(|l| l.contains("\"key\":\"anonymous\"")));
}

#[tokio::test]
async fn unclassified_and_unknown_routes_with_keys() {
    let (app, _) = app_with(keyed(None)).await;
    // An unknown path: 401 without a key, the 404 with one.
    let (s, _, _) = send(&app, get("/nowhere")).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let req = Request::get("/nowhere")
        .header("authorization", format!("Bearer {INFER}"))
        .body(Body::empty())
        .unwrap();
    let (s, _, _) = send(&app, req).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // A known path with the wrong method: 405 for a valid key.
    let req = Request::get("/v1/chat/completions")
        .header("authorization", format!("Bearer {INFER}"))
        .body(Body::empty())
        .unwrap();
    let (s, _, _) = send(&app, req).await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
    // The scheme is case-insensitive; a key with extra spaces still matches.
    let req = Request::get("/v1/models")
        .header("authorization", format!("bearer  {INFER} "))
        .body(Body::empty())
        .unwrap();
    let (s, _, _) = send(&app, req).await;
    assert_eq!(s, StatusCode::OK);
}

fn with_key(mut req: Request<Body>, key: &str) -> Request<Body> {
    req.headers_mut()
        .insert("authorization", format!("Bearer {key}").parse().unwrap());
    req
}

#[tokio::test]
async fn requests_per_minute_answer_429_with_retry_after() {
    let mut cfg = config();
    let mut k = Key::from_spec("limited:inference", "lim".into()).unwrap();
    k.rpm = Some(2);
    cfg.access = AccessControl::with_keys(KeySet::new(vec![k]).unwrap());
    let (app, _) = app_with(cfg).await;
    for _ in 0..2 {
        let (s, _) = send_json(&app, with_key(get("/v1/models"), "limited")).await;
        assert_eq!(s, StatusCode::OK);
    }
    let (s, headers, body) = send(&app, with_key(get("/v1/models"), "limited")).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    let secs: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((55..=60).contains(&secs), "Retry-After {secs}");
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");
    assert_eq!(v["error"]["type"], "requests");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("limit 2"),
        "{v}"
    );
    // Ollama routes answer in Ollama's shape.
    let (s, v) = send_json(&app, with_key(get("/api/tags"), "limited")).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    assert!(v["error"].as_str().unwrap().contains("rate limit"), "{v}");
}

#[tokio::test]
async fn tokens_per_minute_count_prompt_and_generated_tokens() {
    let mut cfg = config();
    let mut k = Key::from_spec("limited:inference", "lim".into()).unwrap();
    k.tpm = Some(20);
    cfg.access = AccessControl::with_keys(KeySet::new(vec![k]).unwrap());
    let (app, state) = app_with(cfg).await;
    let (s, v) = send_json(
        &app,
        with_key(
            post("/v1/chat/completions", &chat_body("Hi", 3, false)),
            "limited",
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let used = v["usage"]["total_tokens"].as_u64().unwrap();
    assert!(used > 20, "the prompt alone passes the limit: {used}");
    // A streamed request after it is refused before it starts.
    let (s, headers, body) = send(
        &app,
        with_key(
            post("/v1/chat/completions", &chat_body("Hi", 3, true)),
            "limited",
        ),
    )
    .await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    assert!(headers.contains_key("retry-after"));
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"]["type"], "tokens");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&format!("used {used}")),
        "{v}"
    );
    wait_idle(&state).await;
}

#[tokio::test]
async fn request_limits_are_enforced() {
    let mut cfg = config();
    cfg.max_tokens_limit = Some(4);
    cfg.max_prompt_tokens = Some(40);
    cfg.max_n = 2;
    let (app, _) = app_with(cfg).await;
    let (s, v) = send_json(
        &app,
        post("/v1/chat/completions", &chat_body("Hi", 5, false)),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(v["error"]["param"], "max_tokens");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at most 4"),
        "{v}"
    );
    // Without max_tokens the limit caps the answer.
    let mut body = chat_body("Count to one hundred.", 0, false);
    body.as_object_mut().unwrap().remove("max_tokens");
    let (s, v) = send_json(&app, post("/v1/chat/completions", &body)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(
        v["usage"]["completion_tokens"].as_u64().unwrap() <= 4,
        "{v}"
    );
    let long = "word ".repeat(100);
    let (s, v) = send_json(
        &app,
        post("/v1/chat/completions", &chat_body(&long, 2, false)),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(v["error"]["code"], "context_length_exceeded");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at most 40"),
        "{v}"
    );
    let mut body = chat_body("Hi", 2, false);
    body["n"] = json!(3);
    let (s, v) = send_json(&app, post("/v1/chat/completions", &body)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(v["error"]["param"], "n");
    // Ollama's num_predict is held to the same limit.
    let body =
        json!({"model": MODEL, "prompt": "Hi", "stream": false, "options": {"num_predict": 9}});
    let (s, v) = send_json(&app, post("/api/generate", &body)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
}

#[tokio::test]
async fn only_admin_keys_unload_models() {
    let (app, state) = app_with(keyed(None)).await;
    let unload = json!({"model": MODEL, "keep_alive": 0});
    let (s, v) = send_json(&app, with_key(post("/api/generate", &unload), INFER)).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert!(v["error"].as_str().unwrap().contains("admin"), "{v}");
    assert!(state.registry.loaded_model(MODEL).is_some());
    let (s, v) = send_json(&app, with_key(post("/api/generate", &unload), ADMIN)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["done_reason"], "unload");
}
