//! Cost of constrained decoding per generated token on SmolLM2's 49,152-token vocabulary:
//! the token mask, applying it to the logits, and advancing by the chosen token, along real
//! JSON outputs tokenized by the model's tokenizer.
//!
//! - `cold`: a fresh matcher per output, so every state's mask is computed by walking the
//!   vocabulary trie (the first request with a new schema).
//! - `warm`: the same matcher reset between outputs, so masks come from the per-state cache
//!   (the steady state inside one long output, where JSON revisits the same states).
//!
//! Divide by the decode step (`perch bench MODEL` tg128: about 9 ms per token for SmolLM2
//! Q4_1 on 2 threads) for the overhead.

// criterion_group! defines an undocumented public function.
#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use perch_gguf::GgufFile;
use perch_grammar::{Grammar, TokenVocab};
use perch_tokenizer::Tokenizer;
use serde_json::json;

fn vocab(tok: &Tokenizer) -> TokenVocab {
    let tokens = (0..tok.n_vocab())
        .map(|id| {
            if tok.token_attr(id).is_some_and(|a| a.is_control()) || tok.is_eog(id) {
                None
            } else {
                tok.token_to_piece(id, false).ok().map(<[u8]>::to_vec)
            }
        })
        .collect();
    TokenVocab::new(tokens, tok.eog_ids())
}

fn bench(c: &mut Criterion) {
    let file = GgufFile::open(perch_fixtures::smollm2_q4_1()).expect("SmolLM2 fixture");
    let tok = Tokenizer::from_gguf(&file).expect("tokenizer");
    let vocab = Arc::new(vocab(&tok));
    let cases = [
        (
            "schema",
            Grammar::from_json_schema(&json!({
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "age": {"type": "integer", "minimum": 0},
                    "email": {"type": "string", "format": "email"},
                    "tags": {"type": "array", "items": {"type": "string"}},
                    "address": {"type": "object", "properties": {"city": {"type": "string"}, "zip": {"type": "string", "pattern": "[0-9]{5}"}}, "required": ["city", "zip"]},
                },
                "required": ["name", "age", "email", "tags", "address"],
            }))
            .unwrap(),
            r#"{"name": "Ada Lovelace, Countess of Lovelace", "age": 36, "email": "ada@example.org", "tags": ["mathematician", "writer", "analytical engine"], "address": {"city": "London", "zip": "12345"}}"#,
        ),
        (
            "json_object",
            Grammar::json_object(),
            r#"{"title": "The quick brown fox jumps over the lazy dog", "values": [1, 2.5, -3e2, true, null], "nested": {"a": {"b": {"c": "deep"}}}}"#,
        ),
    ];
    let mut logits = vec![0.0f32; vocab.n_vocab()];
    for (name, grammar, text) in cases {
        let ids = tok.encode(text, false, false).expect("tokenizes");
        let mut g = c.benchmark_group(format!("mask/{name}"));
        g.throughput(Throughput::Elements(ids.len() as u64));
        g.sample_size(10);
        g.bench_function("cold", |b| {
            b.iter(|| {
                let mut m = grammar.matcher(vocab.clone());
                for &t in &ids {
                    m.apply_mask(&mut logits);
                    m.accept_token(t).expect("the output follows the grammar");
                }
                black_box(m.is_finished())
            })
        });
        let mut m = grammar.matcher(vocab.clone());
        g.bench_function("warm", |b| {
            b.iter(|| {
                m.reset();
                for &t in &ids {
                    m.apply_mask(&mut logits);
                    m.accept_token(t).expect("the output follows the grammar");
                }
                black_box(m.is_finished())
            })
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
