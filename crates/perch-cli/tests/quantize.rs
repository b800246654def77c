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

#[test]
fn mix_flags_override_types_and_bad_flags_are_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let out = format!("{d}/out.gguf");
    let model = smollm2();
    let q = |extra: &[&str], expect: &str| {
        let mut args = vec!["quantize", &model, &out, "q8_0", "--allow-requantize"];
        args.extend_from_slice(extra);
        assert_one_line_error(&args, expect);
    };
    q(&["--tensor-type", "attn_(v=q8_0"], "--tensor-type");
    q(&["--tensor-type", "attn_v"], "PATTERN=TYPE");
    q(&["--tensor-type", "attn_v=q9_9"], "unknown type");
    q(
        &["--tensor-type", "attn_v=iq2_xxs"],
        "cannot quantize to IQ2_XXS",
    );
    q(&["--output-tensor-type", "q9_9"], "--output-tensor-type");
    q(
        &["--token-embedding-type", "nope"],
        "--token-embedding-type",
    );
    // Q2_K_S puts Q2_K in ffn_down (1536 wide), which needs an importance matrix.
    assert_one_line_error(
        &["quantize", &model, &out, "q2_k_s", "--allow-requantize"],
        "importance matrix",
    );
    assert_eq!(
        entries(dir.path()),
        Vec::<String>::new(),
        "no partial output"
    );

    let o = perch(&[
        "quantize",
        &model,
        &out,
        "Q8_0",
        "--allow-requantize",
        "--tensor-type",
        r"blk\.[0-9]\.ffn_down=q4_0",
        "--tensor-type",
        "ffn_down=q5_0",
        "--token-embedding-type",
        "f16",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let q = GgufFile::open(&out).unwrap();
    assert_eq!(q.get_u32(keys::GENERAL_FILE_TYPE).unwrap(), 7);
    let ty = |name: &str| q.tensor_info(name).unwrap().ty;
    assert_eq!(ty("token_embd.weight"), GgmlType::F16);
    assert_eq!(ty("blk.3.ffn_down.weight"), GgmlType::Q4_0);
    assert_eq!(ty("blk.13.ffn_down.weight"), GgmlType::Q5_0);
    assert_eq!(ty("blk.13.ffn_up.weight"), GgmlType::Q8_0);
}
