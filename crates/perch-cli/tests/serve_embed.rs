//! `perch convert` MiniLM's folder to GGUF, then `perch serve --model smol --model minilm`
//! and the official `openai` and `ollama` Python clients' embedding calls against it
//! (crates/perch-server/tests/python/embed_e2e.py).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const KEY: &str = "test-key";

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

fn healthy(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    if write!(
        s,
        "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .is_err()
    {
        return false;
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.starts_with("HTTP/1.1 200")
}

fn convert(out: &Path) {
    let status = Command::new(env!("CARGO_BIN_EXE_perch"))
        .arg("convert")
        .arg(perch_fixtures::minilm_dir())
        .arg("--outfile")
        .arg(out)
        .args(["--outtype", "f32"])
        .env("PERCH_LOG", "warn")
        .status()
        .expect("perch convert runs");
    assert!(status.success());
}

#[test]
fn convert_then_serve_embeddings_to_the_python_clients() {
    let python = perch_fixtures::python();
    let tmp = tempfile::tempdir().unwrap();
    let gguf = tmp.path().join("minilm.gguf");
    convert(&gguf);

    // A bad --outtype is one clear line.
    let out = Command::new(env!("CARGO_BIN_EXE_perch"))
        .arg("convert")
        .arg(perch_fixtures::minilm_dir())
        .args(["-o", "/tmp/never.gguf", "--outtype", "q4_k"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("f32, f16, bf16 and q8_0"));

    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(env!("CARGO_BIN_EXE_perch"))
        .args(["serve", "--model"])
        .arg(format!("smol={}", perch_fixtures::smollm2_q4_1().display()))
        .arg("--model")
        .arg(format!("minilm={}", gguf.display()))
        .args([
            "--port",
            &port.to_string(),
            "--ctx-size",
            "512",
            "--threads",
            "2",
        ])
        .args(["--api-key", KEY])
        .env("PERCH_LOG", "warn")
        .env("PERCH_HOME", tmp.path().join("home"))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("perch serve starts");
    let server = Server { child, port };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !healthy(port) {
        assert!(
            Instant::now() < deadline,
            "perch serve did not become healthy"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../perch-server/tests/python/embed_e2e.py");
    let out = Command::new(&python)
        .arg(&script)
        .arg(format!("http://127.0.0.1:{}", server.port))
        .args(["smol", "minilm", KEY])
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} ({e}): set PERCH_PYTHON to a Python with the openai and ollama packages",
                python.display()
            )
        });
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "embed_e2e.py failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
}
