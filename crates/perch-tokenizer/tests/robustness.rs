//! Encode and decode never panic: arbitrary text (with special-token fragments mixed in) on
//! every tokenizer family, arbitrary ids, and hand-made vocabularies with garbage in them.

mod common;

use std::sync::OnceLock;

use perch_tokenizer::{Tokenizer, Vocab};
use proptest::prelude::*;

fn tokenizers() -> &'static [(&'static str, Tokenizer)] {
    static T: OnceLock<Vec<(&'static str, Tokenizer)>> = OnceLock::new();
    T.get_or_init(|| {
        [
            "llama-spm",
            "gpt-2",
            "qwen2",
            "gemma-4",
            "bert-bge",
            "nomic-bert-moe",
            "deepseek-llm",
            "falcon",
        ]
        .into_iter()
        .map(|n| (n, common::load(n)))
        .collect()
    })
}

/// Text mixing random code points, special-token texts, spaces and newlines.
fn text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        any::<char>().prop_map(String::from),
        "[a-zA-Z0-9 ]{0,8}",
        Just("<|im_start|>".to_string()),
        Just("<s>".to_string()),
        Just("</s>".to_string()),
        Just("[CLS]".to_string()),
        Just("<|endoftext|>".to_string()),
        Just("\n\n ".to_string()),
        Just("\u{2581}".to_string()),
        Just("😶‍🌫️".to_string()),
        Just("'s".to_string()),
    ];
    prop::collection::vec(piece, 0..24).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn encode_and_decode_never_panic(s in text(), add in any::<bool>(), parse in any::<bool>()) {
        for (name, tok) in tokenizers() {
            let ids = tok.encode(&s, add, parse).map_err(|e| TestCaseError::fail(format!("{name}: {e}")))?;
            prop_assert!(ids.iter().all(|&i| i < tok.n_vocab()), "{}: id out of range", name);
            let _ = tok.decode(&ids, true).unwrap();
            let mut stream = tok.stream_decoder(false);
            for &id in &ids {
                let _ = stream.push(id).unwrap();
            }
            let _ = stream.finish();
        }
    }

    #[test]
    fn byte_level_bpe_round_trips_any_text(s in text()) {
        // Qwen 2 neither cleans up spaces nor normalizes: decoding restores the text.
        let (_, tok) = tokenizers().iter().find(|(n, _)| *n == "qwen2").unwrap();
        let ids = tok.encode(&s, false, false).unwrap();
        prop_assert_eq!(tok.decode(&ids, true).unwrap(), s);
    }

    #[test]
    fn spm_round_trips_text_without_its_space_marker(s in text()) {
        let s = s.replace('\u{2581}', "_");
        let (_, tok) = tokenizers().iter().find(|(n, _)| *n == "llama-spm").unwrap();
        let ids = tok.encode(&s, false, false).unwrap();
        prop_assert_eq!(tok.decode(&ids, true).unwrap(), s);
    }

    #[test]
    fn decode_rejects_or_renders_any_id(ids in prop::collection::vec(any::<u32>(), 0..16)) {
        for (_, tok) in tokenizers() {
            let all_valid = ids.iter().all(|&i| i < tok.n_vocab());
            prop_assert_eq!(tok.decode(&ids, true).is_ok(), all_valid);
            prop_assert_eq!(tok.validate_ids(&ids).is_ok(), all_valid);
        }
    }

    #[test]
    fn garbage_vocabularies_build_or_fail_cleanly(
        model in prop_oneof![Just("llama"), Just("gpt2"), Just("bert"), Just("t5"), Just("gemma4"), Just("nope")],
        tokens in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..6), 0..40),
        types in prop::collection::vec(-2i32..9, 0..40),
        scores in prop::collection::vec(-20.0f32..5.0, 0..40),
        merges in prop::collection::vec(prop::collection::vec(prop_oneof![Just(b' '), any::<u8>()], 0..6), 0..40),
        charsmap in prop::collection::vec(any::<u8>(), 0..64),
        bos in proptest::option::of(-3i64..50),
        pre in proptest::option::of(prop_oneof![Just("gpt-2"), Just("llama-bpe"), Just("qwen2"), Just("deepseek-llm"), Just("bogus")]),
        s in text(),
    ) {
        let n = tokens.len();
        let vocab = Vocab {
            model: model.to_string(),
            pre: pre.map(str::to_string),
            tokens,
            token_types: if types.len() >= n { types[..n].to_vec() } else { types },
            scores: if scores.len() >= n { scores[..n].to_vec() } else { scores },
            merges,
            precompiled_charsmap: charsmap,
            special: perch_tokenizer::StoredSpecialIds { bos, ..Default::default() },
            add_bos: Some(true),
            add_eos: Some(true),
            ..Vocab::default()
        };
        if let Ok(tok) = Tokenizer::from_vocab(&vocab) {
            for (add, parse) in [(false, false), (true, true)] {
                if let Ok(ids) = tok.encode(&s, add, parse) {
                    prop_assert!(ids.iter().all(|&i| i < tok.n_vocab()));
                    let _ = tok.decode(&ids, true).unwrap();
                }
            }
        }
    }
}
