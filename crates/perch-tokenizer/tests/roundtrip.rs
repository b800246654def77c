//! Round trips that llama.cpp's own tests expect (tests/test-tokenizer-1-spm.cpp, run on
//! ggml-vocab-llama-spm.gguf): every token's text tokenizes back to text that decodes the
//! same, and every code point survives encode + decode. The byte-level BPE vocabularies must
//! round-trip every code point too (byte-level BPE is lossless).

mod common;

use perch_tokenizer::Tokenizer;

/// Every code point llama.cpp's test tries: all but surrogates and the unassigned planes 4-13.
fn code_points() -> impl Iterator<Item = char> {
    (0u32..0x11_0000)
        .filter(|cp| !(0x4_0000..=0xE_0000).contains(cp))
        .filter_map(char::from_u32)
}

fn check_code_points(tok: &Tokenizer, name: &str) {
    let mut bad = Vec::new();
    let mut buf = [0u8; 4];
    for c in code_points() {
        if c == '\u{2581}' {
            continue; // "▁" is SentencePiece's space: it decodes to " " (llama.cpp skips it too)
        }
        let s = c.encode_utf8(&mut buf);
        let ids = tok.encode(s, false, true).unwrap();
        let back = tok.decode(&ids, true).unwrap();
        if back != *s && bad.len() < 20 {
            bad.push(format!("U+{:04X} -> {ids:?} -> {back:?}", c as u32));
        }
    }
    assert!(
        bad.is_empty(),
        "{name}: code points that do not round-trip:\n{}",
        bad.join("\n")
    );
}

#[test]
fn llama_spm_every_token_round_trips() {
    let tok = common::load("llama-spm");
    let mut bad = Vec::new();
    for id in 0..tok.n_vocab() {
        let text = tok.decode(&[id], true).unwrap();
        let ids = tok.encode(&text, false, true).unwrap();
        let back = tok.decode(&ids, true).unwrap();
        if back != text {
            bad.push(format!("{id}: {text:?} -> {ids:?} -> {back:?}"));
        }
    }
    assert!(
        bad.is_empty(),
        "{} tokens do not round-trip:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

#[test]
fn llama_spm_every_code_point_round_trips() {
    check_code_points(&common::load("llama-spm"), "llama-spm");
}

#[test]
fn byte_level_bpe_every_code_point_round_trips() {
    for name in ["gpt-2", "llama-bpe", "qwen2"] {
        check_code_points(&common::load(name), name);
    }
}

/// decode(encode(x)) == x on the vectors' inputs, for the vocabularies whose decoding
/// restores text exactly (no space clean-up, no normalization). gemma-4 is not one of them:
/// llama.cpp keeps BPE's `clean_spaces` on for it, so " ?" decodes to "?" (its decoding is
/// checked against libllama in `peer.rs`).
#[test]
fn vector_inputs_round_trip() {
    for name in [
        "llama-spm",
        "phi-3",
        "qwen2",
        "qwen35",
        "command-r",
        "deepseek-coder",
        "deepseek-llm",
    ] {
        let tok = common::load(name);
        for (text, _) in common::vectors(name) {
            let ids = tok.encode(&text, false, false).unwrap();
            let back = tok.decode(&ids, false).unwrap();
            assert_eq!(back, text, "{name}: {text:?} -> {ids:?}");
        }
    }
}
