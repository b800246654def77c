//! Opening and validating a real model file (SmolLM2-135M, 33 keys including a 49,152-token
//! vocabulary and 48,900 merges, 272 tensors), and taking its token list as text.
//!
//! `cargo bench -p perch-gguf --bench read`

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};
use perch_gguf::GgufFile;

fn read(c: &mut Criterion) {
    let path = perch_fixtures::smollm2_q4_1();
    c.bench_function("open_smollm2", |b| {
        b.iter(|| GgufFile::open(&path).unwrap())
    });
    let f = GgufFile::open(&path).unwrap();
    c.bench_function("get_str_array_49k_tokens", |b| {
        b.iter(|| f.get_str_array("tokenizer.ggml.tokens").unwrap().len())
    });
    c.bench_function("write_smollm2_to_memory", |b| {
        b.iter(|| f.to_bytes().unwrap().len())
    });
}

criterion_group!(benches, read);
criterion_main!(benches);
