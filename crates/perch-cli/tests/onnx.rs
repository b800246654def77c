//! `perch inspect model.onnx`, `perch onnx optimize` and `perch quantize model.onnx`, run as
//! a user would.

mod common;

use std::process::Command;

use common::{assert_one_line_error, perch, stdout};

fn int8() -> String {
    perch_fixtures::onnxruntime_lib();
    perch_fixtures::minilm_int8_onnx().display().to_string()
}

fn paraphrase() -> String {
    perch_fixtures::onnxruntime_lib();
    perch_fixtures::paraphrase_minilm_onnx()
        .display()
        .to_string()
}

#[test]
fn inspect_onnx_text_and_json() {
    let text = stdout(&perch(&["inspect", &int8()]));
    for want in [
        "ONNX (IR version 10)",
        "pytorch 2.11.0+cpu",
        "ai.onnx 17",
        "input_ids",
        "[batch, sequence, 384]",
        "MatMul",
        "INT8",
    ] {
        assert!(text.contains(want), "{want:?} missing from:\n{text}");
    }
    let json: serde_json::Value =
        serde_json::from_str(&stdout(&perch(&["inspect", "--json", &int8()]))).unwrap();
    assert_eq!(json["format"], "onnx");
    assert_eq!(json["ops"]["MatMul"], 48);
    assert_eq!(json["node_count"], 385);
    assert_eq!(json["inputs"][0]["elem_type"], "INT64");
    assert_eq!(json["initializers"]["INT8"]["count"], 38);
}

#[test]
fn inspect_bad_onnx_is_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.onnx");
    let bytes = std::fs::read(int8()).unwrap();
    std::fs::write(&bad, &bytes[..bytes.len() / 3]).unwrap();
    assert_one_line_error(&["inspect", bad.to_str().unwrap()], "bad.onnx");
}

#[test]
fn quantize_and_optimize_onnx() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("q.onnx");
    let o = perch(&[
        "quantize",
        &paraphrase(),
        out.to_str().unwrap(),
        "--mode",
        "int4",
        "--block-size",
        "64",
    ]);
    let printed = stdout(&o);
    assert_eq!(printed.trim(), out.to_str().unwrap());
    let report = String::from_utf8_lossy(&o.stderr);
    assert!(
        report.contains("18 MatMul") && report.contains("size:"),
        "{report}"
    );
    let json: serde_json::Value = serde_json::from_str(&stdout(&perch(&[
        "inspect",
        "--json",
        out.to_str().unwrap(),
    ])))
    .unwrap();
    assert_eq!(json["ops"]["com.microsoft.MatMulNBits"], 18);

    let opt = dir.path().join("opt.onnx");
    stdout(&perch(&[
        "onnx",
        "optimize",
        &paraphrase(),
        opt.to_str().unwrap(),
        "--level",
        "basic",
    ]));
    assert!(opt.is_file());

    // Wrong flags are one clear line.
    assert_one_line_error(
        &["quantize", &paraphrase(), out.to_str().unwrap(), "Q4_K_M"],
        "--mode",
    );
    assert_one_line_error(
        &["quantize", &paraphrase(), out.to_str().unwrap()],
        "--mode",
    );
    assert_one_line_error(
        &[
            "quantize",
            &paraphrase(),
            out.to_str().unwrap(),
            "--mode",
            "int3",
        ],
        "int3",
    );
    assert_one_line_error(
        &[
            "quantize",
            &paraphrase(),
            out.to_str().unwrap(),
            "--mode",
            "static-int8",
        ],
        "--calibration",
    );
    assert_one_line_error(
        &[
            "quantize",
            &common::smollm2(),
            out.to_str().unwrap(),
            "--mode",
            "int4",
        ],
        "ONNX",
    );
}

#[test]
fn missing_onnx_runtime_is_a_clear_error_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("q.onnx");
    let o = Command::new(env!("CARGO_BIN_EXE_perch"))
        .args([
            "quantize",
            &paraphrase(),
            out.to_str().unwrap(),
            "--mode",
            "dynamic-int8",
        ])
        .env("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so")
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(1),
        "a clean failure, not a crash: {o:?}"
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("ORT_DYLIB_PATH") && err.contains("cargo xtask fixtures"),
        "{err}"
    );
    assert!(!out.exists());
}
