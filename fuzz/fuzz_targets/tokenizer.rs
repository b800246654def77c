//! Fuzzes every tokenizer kind on llama.cpp's vocab-only GGUFs (the fixtures of
//! `cargo xtask fixtures`): SPM (llama-spm), byte-level BPE (gpt-2, llama-bpe, qwen2),
//! WordPiece (bert-bge) and UGM when a vocabulary of that kind is present. The first byte picks
//! the vocabulary and the flags; the rest is text (lossy UTF-8) to encode and, read as u32s,
//! ids to decode. Encoding never panics and gives ids inside the vocabulary; decoding valid
//! ids works, invalid ids are an error; byte-level BPE round-trips its input up to the spaces
//! that llama.cpp's detokenizer cleans up.
#![no_main]

use std::sync::OnceLock;

#[path = "common/decode.rs"]
mod decode;

use libfuzzer_sys::fuzz_target;
use perch_gguf::GgufFile;
use perch_tokenizer::{Tokenizer, VocabKind};

const VOCABS: &[&str] = &[
    "llama-spm",
    "gpt-2",
    "llama-bpe",
    "qwen2",
    "bert-bge",
    "phi-3",
];

fn vocabs() -> &'static [(String, Tokenizer)] {
    static V: OnceLock<Vec<(String, Tokenizer)>> = OnceLock::new();
    V.get_or_init(|| {
        VOCABS
            .iter()
            .map(|name| {
                let path = perch_fixtures::vocab(name);
                let file = GgufFile::open(&path).unwrap_or_else(|e| {
                    panic!("{}: {e}; run `cargo xtask fixtures`", path.display())
                });
                (
                    name.to_string(),
                    Tokenizer::from_gguf(&file).expect("the vocab loads"),
                )
            })
            .collect()
    })
}

// Loading six vocabularies (150k merges under ASan) takes seconds: before the first input,
// so it does not count against the per-input timeout.
fuzz_target!(init: { vocabs(); }, |data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let all = vocabs();
    let (name, tok) = &all[usize::from(sel) % all.len()];
    let add_special = sel & 0x40 != 0;
    let parse_special = sel & 0x80 != 0;
    let text = String::from_utf8_lossy(rest);
    let ids = tok
        .encode(&text, add_special, parse_special)
        .unwrap_or_else(|e| panic!("{name}: encoding failed: {e}"));
    for &id in &ids {
        assert!(id < tok.n_vocab(), "{name}: id {id} outside the vocabulary");
    }
    let decoded = tok.decode(&ids, false).expect("ids from encode decode");
    if !add_special && !parse_special && tok.kind() == VocabKind::Bpe && name == "gpt-2" {
        // Byte-level BPE loses nothing but the spaces llama.cpp's detokenizer cleans up
        // (before punctuation and contractions, as `clean_up_tokenization_spaces`).
        assert_eq!(
            decoded.replace(' ', ""),
            text.replace(' ', ""),
            "{name}: byte-level BPE round trip"
        );
    }
    let _ = tok.decode(&ids, true);
    // Arbitrary ids: an error for ids outside the vocabulary, never a panic.
    decode::arbitrary_ids(name, tok, rest, sel & 1 != 0);
});
