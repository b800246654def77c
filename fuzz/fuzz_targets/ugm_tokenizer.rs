//! Fuzzes the Unigram (`t5`) tokenizer: the precompiled-charsmap normalizer, user-defined
//! token matching and the Viterbi segmentation.
//!
//! Three vocabularies, picked by the first byte's low bits:
//! * nomic-bert-moe, llama.cpp's vocab-only GGUF (a real 250k-token SentencePiece Unigram
//!   with its 237 KB precompiled charsmap; a `cargo xtask fixtures` fixture);
//! * a small T5-style vocabulary built here (control, unknown, user-defined and normal
//!   pieces, `▁` word starts, multi-byte pieces, no charsmap);
//! * the same vocabulary with a charsmap taken from the input (a u16 length, then the
//!   bytes), so the XCDA parser and its lookups see arbitrary tables.
//!
//! The rest of the input is text (lossy UTF-8). Encoding never fails or panics and gives ids
//! inside the vocabulary; those ids decode; arbitrary ids decode or are an error; lowercase
//! words separated by single spaces round-trip through the small vocabulary.
#![no_main]

use std::sync::OnceLock;

#[path = "common/decode.rs"]
mod decode;

use libfuzzer_sys::fuzz_target;
use perch_gguf::GgufFile;
use perch_tokenizer::{Tokenizer, Vocab};

/// The small T5-style vocabulary: `(piece, score, llama.cpp token type)`.
fn synthetic(charsmap: Vec<u8>) -> Vocab {
    let mut pieces: Vec<(String, f32, i32)> = vec![
        ("<pad>".into(), 0.0, 3),
        ("</s>".into(), 0.0, 3),
        ("<unk>".into(), 0.0, 2),
        ("<extra_id_0>".into(), 0.0, 4),
        ("<extra_id_1>".into(), 0.0, 4),
        ("\u{2581}".into(), -2.0, 1),
    ];
    for (i, c) in ('a'..='z').enumerate() {
        pieces.push((c.to_string(), -6.0 - i as f32 * 0.1, 1));
        pieces.push((format!("\u{2581}{c}"), -5.0 - i as f32 * 0.1, 1));
    }
    for (i, w) in [
        "\u{2581}the",
        "\u{2581}of",
        "\u{2581}and",
        "\u{2581}to",
        "\u{2581}is",
        "ing",
        "ed",
        "er",
        "s",
        "\u{2581}in",
        "tion",
        "\u{2581}th",
        "\u{2581}\u{2581}",
        "é",
        "\u{2581}é",
        "\u{2581}日本",
        "語",
        ".",
        ",",
        "!",
        "?",
        "'",
        "0",
        "1",
        "2",
        "\u{2581}1",
    ]
    .iter()
    .enumerate()
    {
        pieces.push((w.to_string(), -3.0 - i as f32 * 0.05, 1));
    }
    Vocab {
        model: "t5".into(),
        tokens: pieces.iter().map(|p| p.0.as_bytes().to_vec()).collect(),
        scores: pieces.iter().map(|p| p.1).collect(),
        token_types: pieces.iter().map(|p| p.2).collect(),
        special: perch_tokenizer::StoredSpecialIds {
            eos: Some(1),
            unk: Some(2),
            pad: Some(0),
            ..Default::default()
        },
        add_bos: Some(false),
        add_eos: Some(true),
        precompiled_charsmap: charsmap,
        ..Vocab::default()
    }
}

fn nomic() -> &'static Tokenizer {
    static T: OnceLock<Tokenizer> = OnceLock::new();
    T.get_or_init(|| {
        let path = perch_fixtures::vocab("nomic-bert-moe");
        let file = GgufFile::open(&path)
            .unwrap_or_else(|e| panic!("{}: {e}; run `cargo xtask fixtures`", path.display()));
        Tokenizer::from_gguf(&file).expect("the vocab loads")
    })
}

fn small() -> &'static Tokenizer {
    static T: OnceLock<Tokenizer> = OnceLock::new();
    T.get_or_init(|| Tokenizer::from_vocab(&synthetic(Vec::new())).expect("the vocab loads"))
}

fn check(name: &str, tok: &Tokenizer, text: &str, sel: u8, raw_ids: &[u8]) {
    let add_special = sel & 0x40 != 0;
    let parse_special = sel & 0x80 != 0;
    let ids = tok
        .encode(text, add_special, parse_special)
        .unwrap_or_else(|e| panic!("{name}: encoding failed: {e}"));
    for &id in &ids {
        assert!(id < tok.n_vocab(), "{name}: id {id} outside the vocabulary");
    }
    let decoded = tok.decode(&ids, false).expect("ids from encode decode");
    let _ = tok.decode(&ids, true);
    let words = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_lowercase() || b == b' ')
        && !text.starts_with(' ')
        && !text.ends_with(' ')
        && !text.contains("  ");
    if name == "small" && words && !add_special {
        assert_eq!(decoded, text, "{name}: lowercase words round-trip");
    }
    decode::arbitrary_ids(name, tok, raw_ids, sel & 1 != 0);
}

// The 250k-token vocabulary loads before the first input (not counted in its timeout).
fuzz_target!(init: { nomic(); small(); }, |data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    match sel & 3 {
        0 | 3 => check("nomic-bert-moe", nomic(), &String::from_utf8_lossy(rest), sel, rest),
        1 => check("small", small(), &String::from_utf8_lossy(rest), sel, rest),
        _ => {
            let Some((len, rest)) = rest.split_first_chunk::<2>() else {
                return;
            };
            let n = usize::from(u16::from_le_bytes(*len)).min(rest.len());
            let (map, text) = rest.split_at(n);
            // A malformed table is an error at load; a loaded one must tokenize anything.
            if let Ok(tok) = Tokenizer::from_vocab(&synthetic(map.to_vec())) {
                check("charsmap", &tok, &String::from_utf8_lossy(text), sel, text);
            }
        }
    }
});
