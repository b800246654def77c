//! Embeddings per second of the server's two embedding backends side by side, through the
//! `Embedder` trait the batching worker calls:
//!
//! ```sh
//! cargo bench -p perch-server --bench embed_backends
//! ```
//!
//! all-MiniLM-L6-v2 at batch 1 and batch 32 of short sentences (8 to 20 tokens):
//! * `native-f32`: perch's own bert engine on the f32 safetensors converted to GGUF;
//! * `native-q8_0`: the same converted to Q8_0 (int8 weights, as the ONNX model has);
//! * `onnxruntime-int8`: ONNX Runtime on the int8 ONNX fixture (dynamic int8 matmuls).
//!
//! No fixture holds an f32 ONNX export of all-MiniLM-L6-v2, so ONNX Runtime runs the int8
//! model; compare it with `native-q8_0` for like precision and with `native-f32` for the
//! reference. Both backends use one thread per physical core (their defaults). Criterion's
//! elements/s is embeddings per second.

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use perch_convert::OutType;
use perch_engine::embed::{EmbedInput, Embedder};
use perch_server::embeddings::onnx::OnnxBackend;

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

fn convert(dir: &Path, ty: OutType, name: &str) -> PathBuf {
    let out = dir.join(name);
    perch_convert::convert_hf(&perch_fixtures::minilm_dir(), &out, ty, |_| {})
        .expect("MiniLM converts to GGUF");
    out
}

/// The int8 ONNX model in a folder with all-MiniLM-L6-v2's tokenizer and settings.
fn onnx_folder(dir: &Path) -> PathBuf {
    let model = dir.join("all-MiniLM-L6-v2.onnx");
    std::os::unix::fs::symlink(perch_fixtures::minilm_int8_onnx(), &model).expect("link");
    let src = perch_fixtures::minilm_dir();
    for f in [
        "tokenizer.json",
        "modules.json",
        "sentence_bert_config.json",
    ] {
        std::fs::copy(src.join(f), dir.join(f)).expect("copy the tokenizer files");
    }
    std::fs::create_dir(dir.join("1_Pooling")).expect("mkdir");
    std::fs::copy(
        src.join("1_Pooling/config.json"),
        dir.join("1_Pooling/config.json"),
    )
    .expect("copy the pooling settings");
    model
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temporary folder");
    let f32_gguf = convert(dir.path(), OutType::F32, "minilm-f32.gguf");
    let q8_gguf = convert(dir.path(), OutType::Q8_0, "minilm-q8_0.gguf");
    let onnx = onnx_folder(dir.path());
    let backends: Vec<(&str, Arc<dyn Embedder>)> = vec![
        (
            "native-f32",
            Arc::new(perch_engine::EmbeddingModel::load(&f32_gguf, None).expect("load f32")),
        ),
        (
            "native-q8_0",
            Arc::new(perch_engine::EmbeddingModel::load(&q8_gguf, None).expect("load q8_0")),
        ),
        (
            "onnxruntime-int8",
            Arc::new(OnnxBackend::load(&onnx, None).expect("load the ONNX model")),
        ),
    ];
    let mut group = c.benchmark_group("all-MiniLM-L6-v2");
    for batch in [1usize, 32] {
        let inputs: Vec<EmbedInput> = (0..batch)
            .map(|i| EmbedInput::Text(SENTENCES[i % SENTENCES.len()].to_string()))
            .collect();
        group.throughput(Throughput::Elements(batch as u64));
        for (name, backend) in &backends {
            group.bench_with_input(
                BenchmarkId::new(*name, format!("batch{batch}")),
                &inputs,
                |b, inputs| b.iter(|| black_box(backend.embed(inputs, true).expect("embed"))),
            );
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
