//! ONNX Runtime loading: a missing library is a clear error, not a crash; optimize saves a
//! loadable graph that computes the same embeddings.

mod common;

use std::process::Command;

use perch_onnx::runtime::{self, OptLevel};
use perch_onnx::{OnnxError, OnnxModel};

/// Set in the child processes of `missing_or_bad_library_is_a_clear_error`: `missing` or
/// `bad`.
const CHILD: &str = "PERCH_ONNX_LIBRARY_CHILD";

/// In a child process (ONNX Runtime loads once per process, so each case needs its own),
/// `ORT_DYLIB_PATH` names a missing file or a file that is no library: loading the runtime,
/// and opening a session, must return `RuntimeLibrary` with the way to fix it.
#[test]
fn missing_or_bad_library_is_a_clear_error() {
    if let Ok(mode) = std::env::var(CHILD) {
        let e = runtime::environment().unwrap_err();
        assert!(matches!(e, OnnxError::RuntimeLibrary { .. }), "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains("cargo xtask fixtures") && msg.contains("ORT_DYLIB_PATH"),
            "{msg}"
        );
        if mode == "missing" {
            assert!(
                msg.contains("/nonexistent/libonnxruntime.so") && msg.contains("names no file"),
                "{msg}"
            );
        } else {
            assert!(msg.contains("libonnxruntime.so"), "{msg}");
        }
        // Asking again gives the error again, and so does opening a session.
        assert!(runtime::environment().is_err());
        let e = runtime::SessionConfig::default()
            .open(&perch_fixtures::minilm_int8_onnx())
            .unwrap_err();
        assert!(matches!(e, OnnxError::RuntimeLibrary { .. }), "{e}");
        println!("child {mode} checked");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("libonnxruntime.so");
    std::fs::write(&fake, b"not a library").unwrap();
    for (mode, lib) in [
        ("missing", "/nonexistent/libonnxruntime.so"),
        ("bad", fake.to_str().unwrap()),
    ] {
        let out = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "missing_or_bad_library_is_a_clear_error",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("ORT_DYLIB_PATH", lib)
            .env(CHILD, mode)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains(&format!("child {mode} checked")),
            "child {mode} failed or crashed ({:?}): {stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn the_fixture_library_is_found_and_loads() {
    common::ort();
    if std::env::var_os(runtime::DYLIB_ENV).is_none() {
        let found = runtime::library_path().unwrap().canonicalize().unwrap();
        assert_eq!(
            found,
            perch_fixtures::onnxruntime_lib().canonicalize().unwrap()
        );
    }
    let info = runtime::build_info().unwrap();
    assert!(info.contains("ORT Build Info"), "{info}");
}

#[test]
fn optimize_saves_a_smaller_graph_with_the_same_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let input = common::paraphrase();
    let out = dir.path().join("optimized.onnx");
    runtime::optimize(&input, &out, OptLevel::Extended, 1).unwrap();
    let before = OnnxModel::open(&input).unwrap();
    let after = OnnxModel::open(&out).unwrap();
    let nodes = |m: &OnnxModel| m.graph().unwrap().node.len();
    assert!(
        nodes(&after) < nodes(&before) / 2,
        "{} -> {}",
        nodes(&before),
        nodes(&after)
    );
    // Extended level fuses attention and layer norms into com.microsoft operators.
    let ops = perch_onnx::ModelSummary::of(&after).ops;
    assert!(
        ops.keys().any(|k| k.starts_with("com.microsoft.")),
        "{ops:?}"
    );
    let a = common::embed_all(&common::embedder(&input));
    let b = common::embed_all(&common::embedder(&out));
    for (x, y) in a.iter().zip(&b) {
        assert!(perch_onnx::embed::cosine(x, y) > 0.9999);
    }
    // A bad level name is refused with the choices.
    assert!(
        "fast"
            .parse::<OptLevel>()
            .unwrap_err()
            .contains("basic, extended or all")
    );
}
