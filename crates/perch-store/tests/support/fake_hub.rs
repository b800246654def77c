//! A local imitation of the Hugging Face hub's HTTP API on loopback, for pull tests.
//!
//! Serves `GET /api/models/{owner}/{repo}/tree/main` (the file list with LFS sha256s, as the
//! hub answers it), `GET /api/models/{owner}/{repo}` (`siblings`), `GET|HEAD
//! /{owner}/{repo}/resolve/main/{file}` with `Range` support, `ETag`, `X-Linked-Etag` and
//! `X-Linked-Size`, and `GET /files/{name}` for plain URLs. Faults on demand: drop the
//! connection after N bytes of the next download, ignore `Range`, require a bearer token.
//! Every download request is logged with its `Range` header.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path as AxPath, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use serde_json::json;
use sha2::{Digest, Sha256};

/// A file the fake hub serves.
#[derive(Clone)]
pub struct HubFile {
    /// Its path in the repository (or name under /files/).
    pub path: String,
    /// Its bytes.
    pub data: Arc<Vec<u8>>,
    /// The sha256 the listing advertises (the real one unless a test lies).
    pub sha256: String,
}

impl HubFile {
    /// A file whose advertised sha256 is its real one.
    pub fn new(path: &str, data: Arc<Vec<u8>>) -> HubFile {
        let sha256 = hex::encode(Sha256::digest(&data[..]));
        HubFile {
            path: path.to_string(),
            data,
            sha256,
        }
    }
}

/// Shared state and switches.
#[derive(Default)]
pub struct Hub {
    /// `owner/repo` -> files.
    pub repos: Mutex<BTreeMap<String, Vec<HubFile>>>,
    /// Files under /files/.
    pub plain: Mutex<Vec<HubFile>>,
    /// Drop the connection after this many body bytes of the next download (0: off).
    pub drop_after: AtomicU64,
    /// Answer range requests with the whole file (200).
    pub ignore_range: AtomicBool,
    /// Serve no tree route (404), so clients must use the model info's siblings.
    pub no_tree: AtomicBool,
    /// A required bearer token.
    pub token: Mutex<Option<String>>,
    /// `METHOD path range` of every download request.
    pub log: Mutex<Vec<String>>,
}

impl Hub {
    /// The logged download requests.
    pub fn downloads(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

/// A running fake hub; stops when dropped.
pub struct FakeHub {
    /// Its state.
    pub hub: Arc<Hub>,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for FakeHub {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn authorized(hub: &Hub, headers: &HeaderMap) -> bool {
    match &*hub.token.lock().unwrap() {
        None => true,
        Some(t) => headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v == format!("Bearer {t}")),
    }
}

fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(json!({"error": "Repository not found"})),
    )
        .into_response()
}

async fn tree(
    State(hub): State<Arc<Hub>>,
    AxPath((owner, repo)): AxPath<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if !authorized(&hub, &headers) {
        return (StatusCode::UNAUTHORIZED, "Invalid credentials").into_response();
    }
    if hub.no_tree.load(Ordering::Relaxed) {
        return (StatusCode::NOT_FOUND, "no such route").into_response();
    }
    let repos = hub.repos.lock().unwrap();
    let Some(files) = repos.get(&format!("{owner}/{repo}")) else {
        return not_found();
    };
    let mut list = vec![json!({"type": "directory", "oid": "0", "size": 0, "path": "sub"})];
    list.push(json!({"type": "file", "oid": "1", "size": 10, "path": "README.md"}));
    for f in files {
        list.push(json!({
            "type": "file",
            "oid": "abc",
            "size": f.data.len(),
            "path": f.path,
            "lfs": {"oid": f.sha256, "size": f.data.len(), "pointerSize": 135},
        }));
    }
    axum::Json(list).into_response()
}

async fn info(
    State(hub): State<Arc<Hub>>,
    AxPath((owner, repo)): AxPath<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if !authorized(&hub, &headers) {
        return (StatusCode::UNAUTHORIZED, "Invalid credentials").into_response();
    }
    let repos = hub.repos.lock().unwrap();
    let Some(files) = repos.get(&format!("{owner}/{repo}")) else {
        return not_found();
    };
    let mut sibs = vec![json!({"rfilename": "README.md", "size": 10})];
    for f in files {
        sibs.push(json!({
            "rfilename": f.path,
            "size": f.data.len(),
            "lfs": {"sha256": f.sha256, "size": f.data.len(), "pointerSize": 135},
        }));
    }
    axum::Json(json!({"id": format!("{owner}/{repo}"), "siblings": sibs})).into_response()
}

/// Serve `f` honouring `Range` (and the fault switches).
fn serve_file(
    hub: &Hub,
    f: &HubFile,
    method: &Method,
    headers: &HeaderMap,
    what: &str,
) -> Response {
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    hub.log.lock().unwrap().push(format!(
        "{method} {what} {}",
        range.as_deref().unwrap_or("-")
    ));
    let len = f.data.len() as u64;
    let etag = format!("\"{}\"", f.sha256);
    let start = range
        .as_deref()
        .filter(|_| !hub.ignore_range.load(Ordering::Relaxed))
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|s| s.parse::<u64>().ok());
    let if_range_ok = headers
        .get(header::IF_RANGE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| v == etag);
    let start = start.filter(|_| if_range_ok);
    let mut resp = Response::builder()
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::ETAG, &etag)
        .header("x-linked-etag", &etag)
        .header("x-linked-size", len.to_string())
        .header(header::CONTENT_TYPE, "application/octet-stream");
    let body_range = match start {
        Some(s) if s >= len => {
            return Response::builder()
                .status(StatusCode::RANGE_NOT_SATISFIABLE)
                .header(header::CONTENT_RANGE, format!("bytes */{len}"))
                .body(Body::empty())
                .unwrap();
        }
        Some(s) => {
            resp = resp.status(StatusCode::PARTIAL_CONTENT).header(
                header::CONTENT_RANGE,
                format!("bytes {s}-{}/{len}", len - 1),
            );
            s..len
        }
        None => {
            resp = resp.status(StatusCode::OK);
            0..len
        }
    };
    let resp = resp.header(
        header::CONTENT_LENGTH,
        (body_range.end - body_range.start).to_string(),
    );
    if *method == Method::HEAD {
        return resp.body(Body::empty()).unwrap();
    }
    let drop_after = hub.drop_after.swap(0, Ordering::Relaxed);
    let data = f.data.clone();
    let (s, e) = (body_range.start as usize, body_range.end as usize);
    let chunks: Vec<Result<Bytes, std::io::Error>> = {
        let mut v = Vec::new();
        let mut pos = s;
        let stop_at = if drop_after > 0 {
            (s + drop_after as usize).min(e)
        } else {
            e
        };
        while pos < stop_at {
            let end = (pos + (1 << 20)).min(stop_at);
            v.push(Ok(Bytes::copy_from_slice(&data[pos..end])));
            pos = end;
        }
        if drop_after > 0 {
            v.push(Err(std::io::Error::other("fake hub drops the connection")));
        }
        v
    };
    resp.body(Body::from_stream(futures_util::stream::iter(chunks)))
        .unwrap()
}

async fn resolve(
    State(hub): State<Arc<Hub>>,
    AxPath((owner, repo, file)): AxPath<(String, String, String)>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    if !authorized(&hub, &headers) {
        return (StatusCode::UNAUTHORIZED, "Invalid credentials").into_response();
    }
    let f = {
        let repos = hub.repos.lock().unwrap();
        repos
            .get(&format!("{owner}/{repo}"))
            .and_then(|fs| fs.iter().find(|f| f.path == file).cloned())
    };
    match f {
        Some(f) => serve_file(&hub, &f, &method, &headers, &file),
        None => not_found(),
    }
}

async fn plain(
    State(hub): State<Arc<Hub>>,
    AxPath(name): AxPath<String>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let f = hub
        .plain
        .lock()
        .unwrap()
        .iter()
        .find(|f| f.path == name)
        .cloned();
    match f {
        Some(f) => serve_file(&hub, &f, &method, &headers, &name),
        None => (StatusCode::NOT_FOUND, "Not Found").into_response(),
    }
}

/// Start a fake hub on 127.0.0.1 (a free port) in its own thread.
pub fn start() -> FakeHub {
    let hub = Arc::new(Hub::default());
    let app = Router::new()
        .route("/api/models/{owner}/{repo}/tree/main", get(tree))
        .route("/api/models/{owner}/{repo}", get(info))
        .route(
            "/{owner}/{repo}/resolve/main/{*file}",
            get(resolve).head(resolve),
        )
        .route("/files/{name}", get(plain).head(plain))
        .with_state(hub.clone());
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    std_listener.set_nonblocking(true).unwrap();
    let addr: SocketAddr = std_listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop_rx.await;
                })
                .await
                .unwrap();
        });
    });
    FakeHub {
        hub,
        url: format!("http://{addr}"),
        stop: Some(stop_tx),
        thread: Some(thread),
    }
}

/// The SmolLM2 fixture's bytes.
pub fn smollm2_bytes() -> Arc<Vec<u8>> {
    let p = perch_fixtures::smollm2_q4_1();
    Arc::new(std::fs::read(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display())))
}

/// The fixture's file name.
pub const SMOL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
