//! `perch convert` MiniLM's folder to GGUF, then `perch serve --model smol --model minilm`
//! and the official `openai` and `ollama` Python clients' embedding calls against it
//! (crates/perch-server/tests/python/embed_e2e.py); the same with the int8 ONNX MiniLM
//! (`perch serve --model all-MiniLM-L6-v2.onnx`, run by ONNX Runtime), and the start-up
//! errors of an ONNX model without ONNX Runtime or without its tokenizer.

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

    let server = start(
        &[
            format!("smol={}", perch_fixtures::smollm2_q4_1().display()),
            format!("minilm={}", gguf.display()),
        ],
        &tmp.path().join("home"),
    );
    run_e2e(&python, &server, "smol", "minilm", 512);
}

/// `perch serve` on a free port with `models` (`--model` values), waiting until healthy.
fn start(models: &[String], home: &Path) -> Server {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_perch"));
    cmd.arg("serve");
    for m in models {
        cmd.arg("--model").arg(m);
    }
    let child = cmd
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
        .env("PERCH_HOME", home)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("perch serve starts");
    let mut server = Server { child, port };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !healthy(port) {
        if let Ok(Some(status)) = server.child.try_wait() {
            panic!("perch serve exited: {status}");
        }
        assert!(
            Instant::now() < deadline,
            "perch serve did not become healthy"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    server
}

/// crates/perch-server/tests/python/embed_e2e.py against `server`.
fn run_e2e(python: &Path, server: &Server, chat: &str, emb: &str, max_tokens: usize) {
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../perch-server/tests/python/embed_e2e.py");
    let out = Command::new(python)
        .arg(&script)
        .arg(format!("http://127.0.0.1:{}", server.port))
        .args([chat, emb, KEY, &max_tokens.to_string()])
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

/// The int8 all-MiniLM-L6-v2 ONNX fixture in a folder as sentence-transformers exports it
/// (tokenizer.json and pooling settings beside the model).
fn onnx_folder(dir: &Path) -> PathBuf {
    let model = dir.join("all-MiniLM-L6-v2.onnx");
    std::os::unix::fs::symlink(perch_fixtures::minilm_int8_onnx(), &model).unwrap();
    let src = perch_fixtures::minilm_dir();
    for f in [
        "tokenizer.json",
        "config.json",
        "modules.json",
        "sentence_bert_config.json",
    ] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    std::fs::create_dir(dir.join("1_Pooling")).unwrap();
    std::fs::copy(
        src.join("1_Pooling/config.json"),
        dir.join("1_Pooling/config.json"),
    )
    .unwrap();
    model
}

#[test]
fn serve_an_onnx_embedding_model_beside_a_chat_model_to_the_python_clients() {
    let python = perch_fixtures::python();
    assert!(perch_fixtures::onnxruntime_lib().is_file());
    let tmp = tempfile::tempdir().unwrap();
    let onnx = onnx_folder(tmp.path());
    // Named after the file: all-MiniLM-L6-v2.
    let server = start(
        &[
            format!("smol={}", perch_fixtures::smollm2_q4_1().display()),
            onnx.display().to_string(),
        ],
        &tmp.path().join("home"),
    );
    // sentence_bert_config.json caps the ONNX model at 256 tokens.
    run_e2e(&python, &server, "smol", "all-MiniLM-L6-v2", 256);
}

#[test]
fn a_missing_onnx_runtime_is_a_clear_error_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    let onnx = onnx_folder(tmp.path());
    let missing = tmp.path().join("no-such-libonnxruntime.so");
    let out = Command::new(env!("CARGO_BIN_EXE_perch"))
        .args(["serve", "--port", "0", "--model"])
        .arg(format!("smol={}", perch_fixtures::smollm2_q4_1().display()))
        .arg("--model")
        .arg(&onnx)
        .env("ORT_DYLIB_PATH", &missing)
        .env("PERCH_LOG", "warn")
        .env("PERCH_HOME", tmp.path().join("home"))
        .output()
        .expect("perch runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    for words in [
        "all-MiniLM-L6-v2",
        "ONNX Runtime",
        "ORT_DYLIB_PATH",
        "no-such-libonnxruntime.so",
        "cargo xtask fixtures",
    ] {
        assert!(err.contains(words), "{words:?} missing from: {err}");
    }
    // Nor is the server left listening: the process has exited.

    // An ONNX model without its tokenizer.json is refused at start too.
    let bare = tempfile::tempdir().unwrap();
    let model = bare.path().join("m.onnx");
    std::os::unix::fs::symlink(perch_fixtures::minilm_int8_onnx(), &model).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_perch"))
        .args(["serve", "--port", "0", "--model"])
        .arg(&model)
        .env("PERCH_LOG", "warn")
        .env("PERCH_HOME", tmp.path().join("home"))
        .output()
        .expect("perch runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("no tokenizer.json"), "{err}");

    // The store holds GGUF files; importing an ONNX model says what to do instead.
    let out = Command::new(env!("CARGO_BIN_EXE_perch"))
        .arg("import")
        .arg(&onnx)
        .env("PERCH_HOME", tmp.path().join("home"))
        .output()
        .expect("perch runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("ONNX model") && err.contains("perch serve --model"),
        "{err}"
    );
}
