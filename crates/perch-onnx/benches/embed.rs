//! Embeddings per second through ONNX Runtime: `cargo bench -p perch-onnx --bench embed`.
//!
//! all-MiniLM-L6-v2 (the int8 ONNX fixture) and paraphrase-MiniLM-L3-v2 (fp32), batch 1 and
//! batch 32 of short sentences (8 to 20 tokens), one ONNX Runtime thread per physical core
//! (ONNX Runtime's default). Criterion's elements/s is embeddings per second. perch's native
//! GGUF bert engine against ONNX Runtime on the same model, side by side:
//! `cargo bench -p perch-server --bench embed_backends`.

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use perch_onnx::{EmbedInput, EmbedderConfig, OnnxEmbedder};

const SENTENCES: [&str; 8] = [
    "This is an example sentence",
    "The quick brown fox jumps over the lazy dog.",
    "How do I reset my password if I cannot open my email?",
    "Paris is the capital and most populous city of France.",
    "Quantum computers use qubits in superposition.",
    "I loved the movie, but the ending felt rushed.",
    "The committee will meet again next Tuesday at 10 am.",
    "Please restart the server and check the logs.",
];

fn bench(c: &mut Criterion) {
    let models = [
        ("minilm-l6-int8", perch_fixtures::minilm_int8_onnx()),
        (
            "paraphrase-l3-fp32",
            perch_fixtures::paraphrase_minilm_onnx(),
        ),
    ];
    let mut group = c.benchmark_group("embed");
    for (name, path) in models {
        let cfg = EmbedderConfig {
            tokenizer: Some(perch_fixtures::minilm_tokenizer()),
            ..Default::default()
        };
        let embedder = OnnxEmbedder::load(&path, &cfg).expect("load the embedding model");
        for batch in [1usize, 32] {
            let inputs: Vec<EmbedInput> = (0..batch)
                .map(|i| SENTENCES[i % SENTENCES.len()].into())
                .collect();
            group.throughput(Throughput::Elements(batch as u64));
            group.bench_with_input(
                BenchmarkId::new(name, format!("batch{batch}")),
                &inputs,
                |b, inputs| {
                    b.iter(|| black_box(embedder.embed(inputs).expect("embed")));
                },
            );
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
