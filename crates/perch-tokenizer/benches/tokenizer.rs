//! Tokenizer speed: building from GGUF metadata (model load) and encoding a prompt of about
//! 1,000 tokens, for the vocabularies the engine meets most (SmolLM2, Llama 3, Qwen 2,
//! Gemma 4, Llama SentencePiece).
//!
//! `cargo bench -p perch-tokenizer` (needs `cargo xtask fixtures`).

// criterion_group! defines an undocumented public function.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use perch_gguf::GgufFile;
use perch_tokenizer::{Tokenizer, Vocab};

fn vocab_file(name: &str) -> GgufFile {
    let rel = format!(
        "{}/llama_cpp_python-0.3.36/vendor/llama.cpp/models/ggml-vocab-{name}.gguf",
        perch_fixtures::LLAMA_CPP_PKG
    );
    GgufFile::open(perch_fixtures::path(&rel)).expect("open vocab")
}

/// About 1,000 tokens of mixed English prose, code and a little non-Latin text.
fn prompt() -> String {
    let para = "The quick brown fox jumps over the lazy dog. In 2024, researchers \
        measured 1,234 samples at 56.7°C; results were \"inconclusive\" (p = 0.08).\n\
        fn main() { let x: Vec<u32> = (0..10).map(|i| i * i).collect(); println!(\"{x:?}\"); }\n\
        Привет, мир! 你好，世界。 Let's go — it's fine, isn't it? 🦙🚀\n";
    para.repeat(12)
}

fn bench(c: &mut Criterion) {
    let text = prompt();
    let mut g = c.benchmark_group("tokenizer");
    g.sample_size(10);
    for name in ["llama-bpe", "qwen2", "gemma-4", "llama-spm", "bert-bge"] {
        let file = vocab_file(name);
        g.bench_function(format!("build/{name}"), |b| {
            b.iter(|| Tokenizer::from_gguf(black_box(&file)).expect("build"))
        });
        let vocab = Vocab::from_gguf(&file).expect("vocab");
        g.bench_function(format!("from_vocab/{name}"), |b| {
            b.iter(|| Tokenizer::from_vocab(black_box(&vocab)).expect("build"))
        });
        let tok = Tokenizer::from_vocab(&vocab).expect("build");
        let n = tok.encode(&text, true, true).expect("encode").len();
        g.bench_function(format!("encode_{n}_tokens/{name}"), |b| {
            b.iter(|| tok.encode(black_box(&text), true, true).expect("encode"))
        });
        let ids = tok.encode(&text, true, true).expect("encode");
        g.bench_function(format!("decode_{n}_tokens/{name}"), |b| {
            b.iter(|| tok.decode(black_box(&ids), false).expect("decode"))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
