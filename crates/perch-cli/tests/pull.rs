//! `perch pull`, pull-on-first-use (`perch run`, `perch serve --model`) and `POST /api/pull`
//! against a loopback imitation of the Hugging Face hub (perch-store/tests/support/fake_hub.rs)
//! serving the SmolLM2 fixture; `/api/pull`'s stream is checked with the official `ollama`
//! Python client and as raw NDJSON, and `ollama.create` with `from_`, `system` and uploaded
//! `files` on the same server (crates/perch-server/tests/python/pull.py).

#[path = "../../perch-store/tests/support/fake_hub.rs"]
mod fake_hub;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use fake_hub::{FakeHub, HubFile, SMOL_FILE};

const REPO: &str = "test-org/SmolLM2-135M-Instruct-GGUF";

fn hub() -> FakeHub {
    let hub = fake_hub::start();
    hub.hub.repos.lock().unwrap().insert(
        REPO.into(),
        vec![HubFile::new(SMOL_FILE, fake_hub::smollm2_bytes())],
    );
    hub
}

fn perch(home: &Path, endpoint: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_perch"))
        .args(args)
        .env("PERCH_HOME", home)
        .env("PERCH_HF_ENDPOINT", endpoint)
        .env_remove("HF_TOKEN")
        .output()
        .expect("perch runs")
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "perch failed:\n{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

#[test]
fn perch_pull_then_list_show_and_run_from_the_store() {
    let hub = hub();
    let home = tempfile::tempdir().unwrap();
    let name = format!("hf.co/{REPO}:Q4_1");
    let out = ok(&perch(home.path(), &hub.url, &["pull", &name]));
    assert!(out.contains(&name), "{out}");
    let list = ok(&perch(home.path(), &hub.url, &["list"]));
    assert!(list.contains(&name), "{list}");
    // The stored model runs without the hub (it is gone now).
    drop(hub);
    let out = ok(&perch(
        home.path(),
        "http://127.0.0.1:9",
        &["run", &name, "--temp", "0", "-n", "4", "Hello"],
    ));
    assert!(!out.trim().is_empty());
}

#[test]
fn perch_run_pulls_on_first_use() {
    let hub = hub();
    let home = tempfile::tempdir().unwrap();
    let name = format!("hf.co/{REPO}:q4_1");
    let o = perch(
        home.path(),
        &hub.url,
        &["run", &name, "--temp", "0", "-n", "4", "Hello"],
    );
    let out = ok(&o);
    assert!(!out.trim().is_empty());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("pulling it"), "{err}");
    assert_eq!(hub.hub.downloads().len(), 1);
    // Second run: from the store, no download.
    ok(&perch(
        home.path(),
        &hub.url,
        &["run", &name, "--temp", "0", "-n", "2", "Hi"],
    ));
    assert_eq!(hub.hub.downloads().len(), 1);
}

#[test]
fn offline_pulls_fail_fast_with_one_clear_line() {
    let port = free_port();
    let home = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let o = perch(
        home.path(),
        &format!("http://127.0.0.1:{port}"),
        &["pull", &format!("hf.co/{REPO}:Q4_1")],
    );
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("offline") && err.contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    let list = ok(&perch(home.path(), "http://127.0.0.1:9", &["list"]));
    assert!(!list.contains("hf.co"), "{list}");
    // Unknown quantization: the available files are listed.
    let hub = hub();
    let o = perch(
        home.path(),
        &hub.url,
        &["pull", &format!("hf.co/{REPO}:Q2_K")],
    );
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(SMOL_FILE) && err.contains("Q2_K"), "{err}");
}

/// A running `perch serve`, killed on drop.
struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn get(port: u16, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split(' ').nth(1)?.parse().ok()
}

fn serve(home: &Path, endpoint: &str, model: &str) -> Server {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_perch"))
        .args(["serve", "--model", model, "--port", &port.to_string()])
        .args(["--ctx-size", "512", "--threads", "2"])
        .env("PERCH_HOME", home)
        .env("PERCH_HF_ENDPOINT", endpoint)
        .env("PERCH_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("perch serve starts");
    let server = Server { child, port };
    let deadline = Instant::now() + Duration::from_secs(90);
    while get(port, "/health") != Some(200) {
        assert!(
            Instant::now() < deadline,
            "perch serve did not become healthy"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    server
}

#[test]
fn perch_serve_pulls_its_model_on_first_use() {
    let hub = hub();
    let home = tempfile::tempdir().unwrap();
    let server = serve(home.path(), &hub.url, &format!("hf.co/{REPO}:Q4_1"));
    assert_eq!(get(server.port, "/v1/models"), Some(200));
    assert_eq!(hub.hub.downloads().len(), 1);
}

#[test]
fn api_pull_streams_ollamas_progress_to_the_official_client_and_raw_ndjson() {
    let python = perch_fixtures::python();
    let hub = hub();
    // A plain URL too, for the raw checks.
    hub.hub
        .plain
        .lock()
        .unwrap()
        .push(HubFile::new(SMOL_FILE, fake_hub::smollm2_bytes()));
    let home = tempfile::tempdir().unwrap();
    let server = serve(
        home.path(),
        &hub.url,
        &format!("smol={}", perch_fixtures::smollm2_q4_1().display()),
    );
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../perch-server/tests/python/pull.py");
    let out = Command::new(&python)
        .arg(&script)
        .arg(format!("http://127.0.0.1:{}", server.port))
        .arg(format!("hf.co/{REPO}"))
        .arg(format!("{}/files/{SMOL_FILE}", hub.url))
        .arg(perch_fixtures::smollm2_q4_1())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} ({e}); .ci/run sets up models/cache/.venv",
                python.display()
            )
        });
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(out.status.success(), "pull.py failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
}
