//! `perch quantize` as a user runs it: outputs that load, clear errors, no partial files.

mod common;
use common::{assert_one_line_error, perch, smollm2, stdout};

use perch_gguf::{GgmlType, GgufFile, keys};

/// Files left in `dir` (temporary files included).
fn entries(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn smollm2_requantized_to_q8_0_keeps_metadata_and_reports_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("q8.gguf");
    let model = smollm2();
    let o = perch(&[
        "quantize",
        &model,
        out.to_str().unwrap(),
        "q8_0",
        "--allow-requantize",
    ]);
    assert_eq!(stdout(&o).trim(), out.to_str().unwrap());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("bits per weight"), "{err}");
    let input = GgufFile::open(&model).unwrap();
    let q = GgufFile::open(&out).unwrap();
    assert_eq!(q.get_u32(keys::GENERAL_FILE_TYPE).unwrap(), 7);
    assert_eq!(q.get_u32(keys::GENERAL_QUANTIZATION_VERSION).unwrap(), 2);
    for (k, v) in input.metadata().iter() {
        if k != keys::GENERAL_FILE_TYPE {
            assert_eq!(q.get(k), Some(v), "metadata {k} kept");
        }
    }
    let n = |f: &GgufFile, ty| f.tensors().iter().filter(|t| t.ty == ty).count();
    assert_eq!(
        n(&q, GgmlType::Q8_0),
        211,
        "every matrix, token_embd included"
    );
    assert_eq!(
        n(&q, GgmlType::F32),
        n(&input, GgmlType::F32),
        "norms stay F32"
    );
    assert_eq!(entries(dir.path()), ["q8.gguf"]);
}

#[test]
fn bad_quantize_input_is_one_clear_line_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let out = format!("{d}/out.gguf");
    let model = smollm2();
    assert_one_line_error(&["quantize", &model, &out, "q4_0"], "--allow-requantize");
    let missing = format!("{d}/missing.gguf");
    assert_one_line_error(&["quantize", &missing, &out, "q4_0"], "No such file");
    assert_one_line_error(&["quantize", &model, &model, "q4_1"], "is the input file");
    let nowhere = format!("{d}/no/such/dir/out.gguf");
    assert_one_line_error(
        &["quantize", &model, &nowhere, "q8_0", "--allow-requantize"],
        "no/such/dir",
    );
    assert_eq!(
        entries(dir.path()),
        Vec::<String>::new(),
        "no partial output"
    );

    // Type names are checked by the flag parser, which prints usage: still a clear error.
    let o = perch(&["quantize", &model, &out, "q9_9"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown type"));
    let o = perch(&["quantize", &model, &out, "iq2_xxs"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot quantize to IQ2_XXS"));
}
