//! Kernel throughput: `cargo bench -p perch-quant --bench kernels`.
//!
//! For each weight type: one dot product of a 4096-element row held in L1 (compute bound),
//! and a matrix × vector over a ~64 MiB weight matrix (past the 32 MiB L3 of the
//! development machine: memory bound) on one thread and on two; criterion prints GB/s of
//! weight bytes (rows per second = GB/s / row bytes). `mem/read` measures the machine's
//! read bandwidth the same way (a SIMD sum over 256 MiB), so the matrix numbers can be read
//! against it. `batch/<type>` multiplies a 4096 x 4096 matrix by 8 and 64 activation rows
//! (compute bound; elements/s = dot products per second). `PERCH_SIMD` selects the level; `PERCH_BENCH_TYPES=q4_0,q4_K` narrows the
//! types (`none`: only `mem/read`, as `cargo xtask bench bandwidth` runs it). ggml's kernels on
//! the same matrices: scripts/bench_ggml_kernels.sh; `cargo xtask bench kernels --vs llama.cpp`
//! runs both and tabulates the ratios from criterion's results.
//!
//! The `*-cpu` variants time single-thread runs in the thread's CPU time instead of wall
//! time, which keeps them comparable on a machine shared with other work (the development
//! machine's 2 cores usually are); scripts/bench_ggml_kernels.sh reports ggml's the same way.

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use perch_quant::dot::{dot_fn, scalar_fn};
use perch_quant::matmul::{WeightMatrix, matmul};
use perch_quant::types::ALL;
use perch_quant::{GgmlType, QuantizedActivations, simd_level, vec_dot_type};

const COLS: usize = 4096;

/// CPU time of the calling thread in nanoseconds (Linux: /proc/thread-self/schedstat), so
/// single-thread results stay meaningful on a machine shared with other work.
fn thread_cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Times `iters` runs of `f` in thread CPU time (wall time where that is unavailable).
fn cpu_timed(iters: u64, mut f: impl FnMut()) -> Duration {
    let wall = std::time::Instant::now();
    let t0 = thread_cpu_ns();
    for _ in 0..iters {
        f();
    }
    match (t0, thread_cpu_ns()) {
        (Some(a), Some(b)) => Duration::from_nanos(b - a),
        _ => wall.elapsed(),
    }
}
const MATRIX_BYTES: usize = 64 << 20;

fn types() -> Vec<GgmlType> {
    let filter = std::env::var("PERCH_BENCH_TYPES").ok();
    ALL.iter()
        .copied()
        .filter(|t| scalar_fn(*t).is_some())
        .filter(|t| match &filter {
            Some(f) => f.split(',').any(|n| n.eq_ignore_ascii_case(t.name())),
            None => true,
        })
        .collect()
}

/// Pseudo-random bytes with every f16 scale made finite and small: each type's blocks are
/// filled with noise, then the first two bytes of each block (or the scale's position for
/// the types that keep it elsewhere) are overwritten through a dequantization check.
fn weight_bytes(ty: GgmlType, rows: usize) -> Vec<u8> {
    let row_bytes = COLS / ty.block_size() * ty.type_size();
    let mut s = 0x2545_f491u32;
    let mut row: Vec<u8> = (0..row_bytes)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s >> 24) as u8
        })
        .collect();
    // Replace every 16-bit word that is a NaN/inf or large f16 with a small one, so no block
    // scale is pathological (the kernels' speed does not depend on the values otherwise).
    for w in row.chunks_exact_mut(2) {
        let h = half::f16::from_bits(u16::from_le_bytes([w[0], w[1]]));
        if !h.is_finite() || h.to_f32().abs() > 1.0 {
            w.copy_from_slice(&half::f16::from_f32(0.01).to_bits().to_le_bytes());
        }
    }
    let mut out = Vec::with_capacity(row_bytes * rows);
    for _ in 0..rows {
        out.extend_from_slice(&row);
    }
    out
}

fn activations(ty: GgmlType, rows: usize) -> QuantizedActivations {
    let x: Vec<f32> = (0..rows * COLS)
        .map(|i| ((i * 7919) % 200) as f32 / 100.0 - 1.0)
        .collect();
    let mut q = QuantizedActivations::new();
    q.quantize(vec_dot_type(ty), &x, rows, COLS).unwrap();
    q
}

fn bench(c: &mut Criterion) {
    let level = simd_level();
    eprintln!("perch-quant kernels at SIMD level {level}");

    // Memory read bandwidth, one and two threads.
    {
        let buf = vec![1.0f32; (256 << 20) / 4];
        let mut g = c.benchmark_group("mem");
        g.throughput(Throughput::Bytes((buf.len() * 4) as u64));
        for threads in [1, 2] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            g.bench_function(BenchmarkId::new("read", format!("{threads}t")), |b| {
                b.iter(|| {
                    pool.install(|| {
                        use rayon::prelude::*;
                        buf.par_chunks(1 << 20)
                            .map(|c| perch_quant::vecops::dot_f32(c, c))
                            .sum::<f32>()
                    })
                })
            });
        }
        g.finish();
    }

    for ty in types() {
        let row_bytes = COLS / ty.block_size() * ty.type_size();
        let f = dot_fn(ty, level).unwrap();
        // Dot product in L1.
        {
            let w = weight_bytes(ty, 1);
            let x = activations(ty, 1);
            let mut g = c.benchmark_group(format!("dot/{}", ty.name()));
            g.throughput(Throughput::Bytes(row_bytes as u64));
            g.bench_function("l1", |b| b.iter(|| f(black_box(&w), black_box(x.row(0)))));
            g.bench_function("l1-cpu", |b| {
                b.iter_custom(|iters| {
                    cpu_timed(iters, || {
                        black_box(f(black_box(&w), black_box(x.row(0))));
                    })
                })
            });
            g.finish();
        }
        // Matrix x vector over ~64 MiB.
        let rows = (MATRIX_BYTES / row_bytes).max(64) / 64 * 64;
        let w = weight_bytes(ty, rows);
        let wm = WeightMatrix::new(ty, rows, COLS, &w).unwrap();
        let x = activations(ty, 1);
        let mut out = vec![0f32; rows];
        let mut g = c.benchmark_group(format!("matvec/{}", ty.name()));
        g.throughput(Throughput::Bytes(w.len() as u64));
        for threads in [1, 2] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            g.bench_function(
                BenchmarkId::new(format!("{rows}x{COLS}"), format!("{threads}t")),
                |b| b.iter(|| pool.install(|| matmul(&wm, &x, &mut out).unwrap())),
            );
            if threads == 1 {
                g.bench_function(BenchmarkId::new(format!("{rows}x{COLS}"), "1t-cpu"), |b| {
                    b.iter_custom(|iters| {
                        pool.install(|| cpu_timed(iters, || matmul(&wm, &x, &mut out).unwrap()))
                    })
                });
            }
        }
        g.finish();

        // Batched: 8 and 64 activation rows against a 4096 x 4096 matrix (compute bound);
        // throughput in dot products (weight rows x activation rows) per second.
        let rows = 4096;
        let w = &w[..rows * row_bytes];
        let wm = WeightMatrix::new(ty, rows, COLS, w).unwrap();
        let mut g = c.benchmark_group(format!("batch/{}", ty.name()));
        for n_act in [8, 64] {
            let x = activations(ty, n_act);
            let mut out = vec![0f32; rows * n_act];
            g.throughput(Throughput::Elements((rows * n_act) as u64));
            for threads in [1, 2] {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                g.bench_function(
                    BenchmarkId::new(format!("{n_act}rows"), format!("{threads}t")),
                    |b| b.iter(|| pool.install(|| matmul(&wm, &x, &mut out).unwrap())),
                );
                if threads == 1 {
                    g.bench_function(BenchmarkId::new(format!("{n_act}rows"), "1t-cpu"), |b| {
                        b.iter_custom(|iters| {
                            pool.install(|| cpu_timed(iters, || matmul(&wm, &x, &mut out).unwrap()))
                        })
                    });
                }
            }
        }
        // The engine's case: weights repacked once beforehand (`PackedWeights`), 64 rows (a
        // batch of decoding sequences) and 512 (a prompt chunk).
        if let Some(packed) = perch_quant::PackedWeights::build(&wm) {
            let wp = wm.with_packed(&packed);
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(1)
                .build()
                .unwrap();
            for n_act in [16, 64, 512] {
                let x = activations(ty, n_act);
                let mut out = vec![0f32; rows * n_act];
                g.throughput(Throughput::Elements((rows * n_act) as u64));
                g.bench_function(
                    BenchmarkId::new(format!("{n_act}rows-prepacked"), "1t-cpu"),
                    |b| {
                        b.iter_custom(|iters| {
                            pool.install(|| cpu_timed(iters, || matmul(&wp, &x, &mut out).unwrap()))
                        })
                    },
                );
            }
        }
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
