//! Sampler chain cost per token on a 151,936-token vocabulary (Qwen2.5's), for the
//! common settings.

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};
use perch_engine::sampling::{Sampler, SamplingParams, logprobs};
use std::hint::black_box;

const N_VOCAB: usize = 151_936;

fn logits() -> Vec<f32> {
    // Deterministic spread of logits (xorshift), like a real step: a few high, most low.
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    (0..N_VOCAB)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let u = (x >> 11) as f32 / (1u64 << 53) as f32;
            -8.0 + 20.0 * u.powi(6)
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let l = logits();
    let cases = [
        ("greedy", SamplingParams::greedy()),
        (
            "default (top-k 40, top-p 0.95, min-p 0.05, T 0.8)",
            SamplingParams {
                seed: Some(1),
                ..Default::default()
            },
        ),
        (
            "top-p 0.9 only",
            SamplingParams {
                top_k: 0,
                min_p: 0.0,
                top_p: 0.9,
                temperature: 1.0,
                seed: Some(1),
                ..Default::default()
            },
        ),
        (
            "penalties + default",
            SamplingParams {
                repeat_penalty: 1.1,
                frequency_penalty: 0.2,
                presence_penalty: 0.2,
                seed: Some(1),
                ..Default::default()
            },
        ),
    ];
    let mut g = c.benchmark_group("sample_151936");
    for (name, params) in cases {
        let mut s = Sampler::new(&params, N_VOCAB).unwrap();
        for t in 0..64 {
            s.accept(t * 37);
        }
        g.bench_function(name, |b| b.iter(|| s.sample(black_box(&l)).unwrap()));
    }
    g.bench_function("logprobs top 5", |b| {
        b.iter(|| logprobs(black_box(&l), 17, 5).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
