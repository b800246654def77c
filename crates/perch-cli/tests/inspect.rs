//! `perch inspect` run as a program: on the SmolLM2 fixture, on small built files, and on bad
//! input (one line on stderr, non-zero exit).

use std::path::Path;

mod common;
use common::{assert_one_line_error, perch, smollm2, stdout};

use perch_gguf::{GgmlType, GgufBuilder};

/// The summary line whose first words are `label`, split into the rest of its words.
fn row<'a>(out: &'a str, label: &str) -> Vec<&'a str> {
    out.lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix(label).filter(|r| r.starts_with(' ')))
        .unwrap_or_else(|| panic!("no line starting with {label:?} in:\n{out}"))
        .split_whitespace()
        .collect()
}

#[test]
fn smollm2_summary_shows_the_model() {
    let out = stdout(&perch(&["inspect", &smollm2()]));
    assert_eq!(row(&out, "architecture"), ["llama"]);
    assert_eq!(row(&out, "tensors"), ["272"]);
    assert_eq!(row(&out, "chat template")[0], "yes");
    assert_eq!(row(&out, "layers"), ["30"]);
    assert_eq!(row(&out, "embedding size"), ["576"]);
    assert_eq!(row(&out, "context length"), ["8,192"]);
    assert_eq!(row(&out, "attention heads")[..2], ["9", "(3"]);
    assert_eq!(row(&out, "tokenizer")[..2], ["gpt2", "(byte-level"]);
    assert!(row(&out, "tokenizer").contains(&"49,152"));
    assert_eq!(row(&out, "file type"), ["Q4_1"]);
    // SmolLM2-135M's shapes (HF config: vocab 49152, hidden 576, 30 layers, 9 heads of 64,
    // 3 KV heads, FFN 1536, tied embeddings): embeddings + per layer q,k,v,o, gate/up/down and
    // two norms + the final norm.
    let per_layer = 576 * 576 * 2 + 576 * 192 * 2 + 3 * 576 * 1536 + 2 * 576;
    let params: u64 = 49152 * 576 + 30 * per_layer + 576;
    assert_eq!(params, 134_515_008);
    assert_eq!(row(&out, "parameters")[1], "(134,515,008)");
    // The type table: count, weights, bytes, bits per weight (Q4_1 blocks are 20 bytes per 32
    // weights, Q8_0 34 per 32: ggml-common.h).
    let q4_1 = row(&out, "Q4_1");
    assert_eq!((q4_1[0], q4_1[4]), ("210", "5.00"));
    let q8_0 = row(&out, "Q8_0");
    assert_eq!((q8_0[0], q8_0[4]), ("1", "8.50"));
    let f32 = row(&out, "F32");
    assert_eq!((f32[0], f32[4]), ("61", "32.00"));
    assert_eq!(row(&out, "all")[..2], ["272", "134,515,008"]);
}

#[test]
fn smollm2_json() {
    let out = stdout(&perch(&["inspect", "--json", &smollm2()]));
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["tensor_count"], 272);
    assert_eq!(j["architecture"], "llama");
    assert_eq!(j["chat_template"], true);
    assert_eq!(j["tokenizer"]["vocab_size"], 49152);
    assert_eq!(j["head_count_kv"], 3);
    assert_eq!(j["size_bytes"], 98_362_432);
    let types = j["types"].as_array().unwrap();
    let find = |t: &str| types.iter().find(|x| x["type"] == t).unwrap().clone();
    assert_eq!(find("Q4_1")["tensors"], 210);
    assert_eq!(find("Q4_1")["bits_per_weight"], 5.0);
    assert_eq!(find("Q8_0")["tensors"], 1);
    assert_eq!(find("F32")["tensors"], 61);
    let bytes: u64 = types.iter().map(|t| t["bytes"].as_u64().unwrap()).sum();
    let bpw = j["bits_per_weight"].as_f64().unwrap();
    assert!((bpw - bytes as f64 * 8.0 / 134_515_008.0).abs() < 1e-9);
    assert!(j.get("metadata").is_none() && j.get("tensors").is_none());
}

#[test]
fn smollm2_details_summarize_long_arrays() {
    let out = stdout(&perch(&["inspect", "--metadata", "--tensors", &smollm2()]));
    let tokens = out
        .lines()
        .find(|l| l.trim_start().starts_with("tokenizer.ggml.tokens "))
        .unwrap();
    assert!(tokens.contains("[string; 49152]"), "{tokens}");
    assert!(tokens.contains("\"<|endoftext|>\""), "{tokens}");
    assert!(tokens.ends_with("… 49,146 more]"), "{tokens}");
    assert!(tokens.len() < 200, "a long array stays one short line");
    let emb = row(&out, "token_embd.weight");
    assert_eq!(emb[..4], ["Q8_0", "576", "x", "49152"]);
    let tensor_rows = out
        .lines()
        .skip_while(|l| !l.starts_with("tensors ("))
        .count();
    assert_eq!(tensor_rows, 272 + 2, "title, header and one row per tensor");

    let json = stdout(&perch(&[
        "inspect",
        "--json",
        "--metadata",
        "--tensors",
        &smollm2(),
    ]));
    let j: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(j["tensors"].as_array().unwrap().len(), 272);
    let md = j["metadata"].as_array().unwrap();
    let tok = md
        .iter()
        .find(|m| m["key"] == "tokenizer.ggml.tokens")
        .unwrap();
    assert_eq!(tok["value"]["len"], 49152);
    assert_eq!(tok["value"]["first"][1], "<|im_start|>");
    let tmpl = md
        .iter()
        .find(|m| m["key"] == "tokenizer.chat_template")
        .unwrap();
    assert!(tmpl["value"].as_str().unwrap().contains("<|im_start|>"));
}

#[test]
fn files_without_model_keys_show_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bare.gguf");
    GgufBuilder::new()
        .kv("general.architecture", "mystery")
        .kv("mystery.attention.head_count", vec![4u32, 8, 8])
        .tensor("w", GgmlType::Q8_0, vec![64], vec![0; 68])
        .unwrap()
        .write(&path)
        .unwrap();
    let out = stdout(&perch(&["inspect", path.to_str().unwrap()]));
    assert_eq!(row(&out, "layers"), ["unknown"]);
    assert_eq!(row(&out, "tokenizer"), ["none"]);
    assert_eq!(row(&out, "chat template"), ["no"]);
    assert_eq!(row(&out, "attention heads")[0], "4-8");
    assert_eq!(row(&out, "Q8_0")[..2], ["1", "64"]);
}

#[test]
fn bad_input_is_one_line_and_a_non_zero_exit() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.gguf");
    assert_one_line_error(&["inspect", missing.to_str().unwrap()], "No such file");

    let text = dir.path().join("notes.gguf");
    std::fs::write(&text, "hello, world").unwrap();
    assert_one_line_error(&["inspect", text.to_str().unwrap()], "not a GGUF file");

    // A damaged copy of the real model: cut inside the metadata, then inside the data.
    let model = std::fs::read(Path::new(&smollm2())).unwrap();
    let cut = dir.path().join("cut.gguf");
    std::fs::write(&cut, &model[..500_000]).unwrap();
    assert_one_line_error(
        &["inspect", cut.to_str().unwrap()],
        "truncated in the metadata",
    );
    std::fs::write(&cut, &model[..model.len() - 100]).unwrap();
    assert_one_line_error(
        &["inspect", cut.to_str().unwrap()],
        "truncated in the data section",
    );

    assert_one_line_error(&["inspect", dir.path().to_str().unwrap()], "directory");
}
