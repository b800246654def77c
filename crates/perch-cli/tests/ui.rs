//! The chat page of `perch serve` in headless Chromium: crates/perch-server/tests/ui/chat.test.mjs
//! (playwright-core driving Debian's chromium) against a real server with `--api-key` on
//! loopback. The screenshot is kept as `target/ui-artifacts/chat.png`.
//!
//! Needs node, `npm ci` in crates/perch-server/tests/ui and chromium; .ci/run installs them.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn status(port: u16, path: &str, accept: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let code = out.split(' ').nth(1)?.parse().ok()?;
    Some((code, out.split_once("\r\n\r\n")?.1.to_string()))
}

fn serve(extra: &[&str]) -> (Server, u16, tempfile::TempDir) {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let home = tempfile::tempdir().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_perch"))
        .args(["serve", "--model"])
        .arg(format!("smol={}", perch_fixtures::smollm2_q4_1().display()))
        .args([
            "--port",
            &port.to_string(),
            "--ctx-size",
            "1024",
            "--threads",
            "2",
        ])
        .args(extra)
        .env("PERCH_HOME", home.path())
        .env("PERCH_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("perch serve starts");
    let server = Server(child);
    let deadline = Instant::now() + Duration::from_secs(90);
    while status(port, "/health", "*/*").map(|s| s.0) != Some(200) {
        assert!(
            Instant::now() < deadline,
            "perch serve did not become healthy"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    (server, port, home)
}

#[test]
fn chat_page_in_headless_chromium() {
    let ui_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../perch-server/tests/ui");
    let node_ok = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        node_ok,
        "node is missing: install Node.js (apt-get install nodejs npm; .ci/run does it)"
    );
    assert!(
        ui_dir.join("node_modules/playwright-core").is_dir(),
        "playwright-core is missing: run `npm ci` in {} (.ci/run does it)",
        ui_dir.display()
    );
    let chromium = std::env::var("PERCH_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "chromium is missing at {chromium}: apt-get install chromium (.ci/run does it) or set PERCH_CHROMIUM"
    );
    let key = "ui-test-key";
    let (_server, port, _home) = serve(&["--api-key", key]);
    let artifacts = perch_fixtures::workspace_root().join("target/ui-artifacts");
    let out = Command::new("node")
        .arg(ui_dir.join("chat.test.mjs"))
        .arg(format!("http://127.0.0.1:{port}"))
        .arg(key)
        .arg(&artifacts)
        .env("PERCH_CHROMIUM", &chromium)
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "chat.test.mjs failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
    assert!(artifacts.join("chat.png").is_file());
}

#[test]
fn no_ui_serves_ollamas_banner_and_api_clients_always_get_it() {
    let (_server, port, _home) = serve(&["--no-ui"]);
    let (code, body) = status(port, "/", "text/html").unwrap();
    assert_eq!((code, body.as_str()), (200, "Ollama is running"));
    drop(_server);
    let (_server, port, _home) = serve(&[]);
    let (code, body) = status(port, "/", "text/html,application/xhtml+xml").unwrap();
    assert_eq!(code, 200);
    assert!(body.starts_with("<!doctype html>") && body.contains("perch chat"));
    assert!(
        !body.contains("http://") && !body.contains("https://cdn"),
        "external resources"
    );
    let (code, body) = status(port, "/", "*/*").unwrap();
    assert_eq!((code, body.as_str()), (200, "Ollama is running"));
}
