//! Streaming detokenization: text deltas are whole UTF-8 characters even when a character is
//! spread over several tokens (SentencePiece byte-fallback tokens, byte-level BPE pieces).

mod common;

use std::sync::Arc;

use perch_tokenizer::{StreamDecoder, Tokenizer};

const TEXT: &str = "Emoji 😶‍🌫️🦙🚀 and CJK 我想在apple工作 日本語 ≈ ü ឆ";

/// Streams `ids` one at a time; returns the deltas and how many pushes held bytes back.
fn stream(tok: &Tokenizer, ids: &[u32]) -> (Vec<String>, usize) {
    let mut dec = tok.stream_decoder(false);
    let mut deltas = Vec::new();
    let mut held = 0;
    for &id in ids {
        let d = dec.push(id).unwrap();
        if !dec.pending().is_empty() {
            held += 1;
        }
        deltas.push(d);
    }
    deltas.push(dec.finish());
    (deltas, held)
}

fn check(name: &str) {
    let tok = common::load(name);
    let ids = tok.encode(TEXT, false, false).unwrap();
    let pieces: Vec<u8> = ids
        .iter()
        .flat_map(|&i| tok.token_to_piece(i, false).unwrap().to_vec())
        .collect();
    let (deltas, held) = stream(&tok, &ids);
    // Some token must end inside a character, or this test proves nothing.
    assert!(
        held > 0,
        "{name}: no token ended inside a character: {ids:?}"
    );
    for d in &deltas {
        assert!(
            !d.contains('\u{FFFD}'),
            "{name}: delta {d:?} has a replacement character"
        );
    }
    // Deltas are exactly the concatenated pieces, split at character boundaries.
    assert_eq!(deltas.concat().as_bytes(), pieces.as_slice(), "{name}");
}

#[test]
fn spm_byte_fallback_tokens_are_held_back() {
    // llama-spm has no token for most emoji: they come out as <0xF0> <0x9F> ... tokens.
    check("llama-spm");
}

#[test]
fn byte_level_bpe_partial_characters_are_held_back() {
    check("gpt-2");
    check("llama-bpe");
    check("qwen2");
}

#[test]
fn gemma4_byte_fallback_is_held_back() {
    check("gemma-4");
}

#[test]
fn stream_matches_decode_for_smollm2() {
    let tok = Arc::new(common::smollm2());
    let ids = tok.encode(TEXT, false, false).unwrap();
    // SmolLM2 does not clean up spaces, so the stream is exactly decode().
    let mut dec = StreamDecoder::new(Arc::clone(&tok), false);
    let mut out = String::new();
    for &id in &ids {
        out += &dec.push(id).unwrap();
    }
    out += &dec.finish();
    assert_eq!(out, tok.decode(&ids, false).unwrap());
    assert_eq!(out, TEXT);
}

#[test]
fn unfinished_character_becomes_a_replacement_at_finish() {
    let tok = common::load("gpt-2");
    let ids = tok.encode("🦙", false, false).unwrap();
    assert!(
        ids.len() > 1,
        "the llama emoji is several GPT-2 tokens: {ids:?}"
    );
    let mut dec = tok.stream_decoder(false);
    assert_eq!(dec.push(ids[0]).unwrap(), "");
    assert_eq!(dec.finish(), "\u{FFFD}");
}

#[test]
fn control_tokens_render_only_when_asked() {
    let tok = common::smollm2();
    let ids = tok
        .encode("<|im_start|>assistant\nHi<|im_end|>", false, true)
        .unwrap();
    let quiet: String = {
        let mut d = tok.stream_decoder(false);
        ids.iter().map(|&i| d.push(i).unwrap()).collect::<String>() + &d.finish()
    };
    let loud: String = {
        let mut d = tok.stream_decoder(true);
        ids.iter().map(|&i| d.push(i).unwrap()).collect::<String>() + &d.finish()
    };
    assert_eq!(quiet, "assistant\nHi");
    assert_eq!(loud, "<|im_start|>assistant\nHi<|im_end|>");
}

#[test]
fn invalid_ids_are_errors() {
    let tok = common::smollm2();
    let mut dec = tok.stream_decoder(false);
    assert!(dec.push(tok.n_vocab()).is_err());
    assert!(tok.decode(&[1, u32::MAX], false).is_err());
    assert!(tok.token_to_piece(tok.n_vocab(), true).is_err());
    assert!(tok.validate_ids(&[0, 5, tok.n_vocab() - 1]).is_ok());
    assert!(tok.validate_ids(&[tok.n_vocab()]).is_err());
}
