//! `perch serve` as a process on loopback: the official `openai` and `ollama` Python clients
//! against it (crates/perch-server/tests/python/e2e.py, run with `perch_fixtures::python()`), and a
//! graceful shutdown on SIGTERM that lets a running stream finish.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const KEY: &str = "test-key";

/// A running `perch serve`, killed on drop if still running.
struct Server {
    child: Child,
    port: u16,
    _home: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// One HTTP/1.1 request; returns (status, body).
fn http(port: u16, method: &str, path: &str, body: Option<&str>) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(120)))?;
    let body = body.unwrap_or("");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {KEY}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

fn start() -> Server {
    start_with(&["--shutdown-timeout", "20"])
}

fn start_with(extra: &[&str]) -> Server {
    let model = perch_fixtures::smollm2_q4_1();
    let port = free_port();
    // An empty model store of its own.
    let home = tempfile::tempdir().expect("a temporary folder");
    let child = Command::new(env!("CARGO_BIN_EXE_perch"))
        .args(["serve", "--model"])
        .arg(format!("smol={}", model.display()))
        .args([
            "--port",
            &port.to_string(),
            "--ctx-size",
            "1024",
            "--threads",
            "2",
        ])
        .args(["--api-key", KEY])
        .args(extra)
        .env("PERCH_LOG", "warn")
        .env("PERCH_HOME", home.path())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("perch serve starts");
    let server = Server {
        child,
        port,
        _home: home,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok((200, _)) = http(port, "GET", "/health", None) {
            return server;
        }
        assert!(
            Instant::now() < deadline,
            "perch serve did not become healthy"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The exit status of `server` once it has exited, within `limit`.
fn wait_exit(server: &mut Server, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(code) = server.child.try_wait().expect("wait") {
            return code;
        }
        assert!(
            Instant::now() < deadline,
            "perch serve did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn official_python_clients_work_against_perch_serve() {
    let python = perch_fixtures::python();
    let probe = Command::new(&python)
        .args(["-c", "import openai, ollama"])
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} ({e}): set PERCH_PYTHON to a Python with the openai and ollama \
                 packages (.ci/run sets up models/cache/.venv)",
                python.display()
            )
        });
    assert!(
        probe.status.success(),
        "{} lacks the openai/ollama packages: run `{} -m pip install openai ollama`\n{}",
        python.display(),
        python.display(),
        String::from_utf8_lossy(&probe.stderr)
    );
    let server = start();
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../perch-server/tests/python/e2e.py");
    let out = Command::new(&python)
        .arg(&script)
        .arg(format!("http://127.0.0.1:{}", server.port))
        .args(["smol", KEY])
        .output()
        .expect("the e2e script runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(out.status.success(), "e2e.py failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
}

#[test]
fn sigterm_lets_a_running_stream_finish_then_exits() {
    let mut server = start();
    let port = server.port;
    // A streaming request running while the signal arrives.
    let streamer = std::thread::spawn(move || {
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let body = r#"{"model":"smol","messages":[{"role":"user","content":"Count from one to twenty."}],"max_tokens":40,"temperature":0,"stream":true}"#;
        write!(
            s,
            "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .expect("send");
        let mut lines = Vec::new();
        for line in BufReader::new(s).lines() {
            match line {
                Ok(l) => lines.push(l),
                Err(_) => break,
            }
        }
        lines
    });
    // Let the stream start, then ask the server to stop.
    std::thread::sleep(Duration::from_millis(700));
    let status = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let lines = streamer.join().expect("streamer");
    assert!(
        lines.iter().any(|l| l == "data: [DONE]"),
        "the running stream was cut off: {lines:?}"
    );
    let code = wait_exit(&mut server, Duration::from_secs(30));
    assert!(code.success(), "exit status {code:?}");
    // New connections are refused once it has stopped.
    assert!(http(port, "GET", "/health", None).is_err());
}

#[test]
fn after_the_shutdown_timeout_running_requests_are_cancelled() {
    let mut server = start_with(&["--shutdown-timeout", "1"]);
    let port = server.port;
    let streamer = std::thread::spawn(move || {
        let body = r#"{"model":"smol","messages":[{"role":"user","content":"Write a very long story."}],"max_tokens":900,"temperature":0,"stream":true}"#;
        http(port, "POST", "/v1/chat/completions", Some(body)).map(|(_, b)| b)
    });
    std::thread::sleep(Duration::from_millis(700));
    let started = Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let code = loop {
        if let Some(code) = server.child.try_wait().expect("wait") {
            break code;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "perch serve did not give up on the running request"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(code.success(), "exit status {code:?}");
    // 900 tokens take far longer than the 1 s allowed: the stream was cut short.
    let body = streamer.join().expect("streamer").unwrap_or_default();
    assert!(!body.contains("[DONE]"), "the long stream finished?");
}

#[test]
fn structured_outputs_and_tool_calls_through_the_python_clients() {
    let python = perch_fixtures::python();
    let server = start();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../perch-server/tests/python/structured_e2e.py");
    let out = Command::new(&python)
        .arg(&script)
        .arg(format!("http://127.0.0.1:{}", server.port))
        .args(["smol", KEY])
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} ({e}): set PERCH_PYTHON to a Python with the openai, ollama and \
                 pydantic packages (.ci/run sets up models/cache/.venv)",
                python.display()
            )
        });
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "structured_e2e.py failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
}

/// Fault: SIGTERM while the server is loaded with streams (more than `--parallel`, so some
/// are still queued) lets every one of them finish with `[DONE]`, then exits with status 0.
#[test]
fn sigterm_under_load_drains_every_stream_and_exits_cleanly() {
    let mut server = start_with(&["--shutdown-timeout", "60", "--parallel", "4"]);
    let port = server.port;
    let streamers: Vec<_> = (0..8)
        .map(|i| {
            std::thread::spawn(move || {
                let body = format!(
                    r#"{{"model":"smol","messages":[{{"role":"user","content":"Say something about the number {i}."}}],"max_tokens":24,"temperature":0,"stream":true}}"#
                );
                http(port, "POST", "/v1/chat/completions", Some(&body))
            })
        })
        .collect();
    // Every stream is connected and at least one is producing tokens.
    std::thread::sleep(Duration::from_millis(800));
    let status = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    for (i, s) in streamers.into_iter().enumerate() {
        let (code, body) = s.join().expect("streamer").expect("the stream reads");
        assert_eq!(code, 200, "stream {i}: {body}");
        assert!(
            body.contains("data: [DONE]"),
            "stream {i} was cut off: {body}"
        );
        assert!(
            body.contains("\"finish_reason\":\"length\"")
                || body.contains("\"finish_reason\":\"stop\"")
        );
    }
    let code = wait_exit(&mut server, Duration::from_secs(30));
    assert_eq!(code.code(), Some(0), "exit status {code:?}");
    assert!(http(port, "GET", "/health", None).is_err());
}
