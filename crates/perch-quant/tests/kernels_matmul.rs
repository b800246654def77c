//! matmul: every output equals the dot product of its weight row and activation row (the
//! kernels themselves are held to references in kernels_dot.rs / kernels_peer.rs), for row
//! counts not divisible by the thread count, 1 to 64 activation rows, pools of 1-3 threads,
//! and at every SIMD level; plus one f64 check of the whole product.

mod kernels_util;

use kernels_util::*;
use perch_quant::dot::dot_fn;
use perch_quant::matmul::{WeightMatrix, matmul_at};
use perch_quant::simd::SimdLevel;
use perch_quant::{GgmlType, QuantizedActivations, vec_dot_type};

fn check(ty: GgmlType, n_out: usize, cols: usize, n_act: usize, threads: usize) {
    check_filled(ty, n_out, cols, n_act, threads, Fill::Random)
}

fn check_filled(ty: GgmlType, n_out: usize, cols: usize, n_act: usize, threads: usize, fill: Fill) {
    let mut r = Rng(0x5eed ^ (ty.id() << 10) ^ (n_out * 31 + n_act) as u32);
    let mut w = Vec::new();
    for _ in 0..n_out {
        w.extend(weight_row(ty, cols, &mut r, fill));
    }
    let x: Vec<f32> = (0..n_act)
        .flat_map(|_| activation_row(cols, &mut r, fill))
        .collect();
    let wm = WeightMatrix::new(ty, n_out, cols, &w).unwrap();
    let mut xa = QuantizedActivations::new();
    xa.quantize(vec_dot_type(ty), &x, n_act, cols).unwrap();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    for level in SimdLevel::supported() {
        let f = dot_fn(ty, level).unwrap();
        let mut out = vec![f32::NAN; n_out * n_act];
        pool.install(|| matmul_at(level, &wm, &xa, &mut out))
            .unwrap();
        for rr in 0..n_act {
            for o in 0..n_out {
                let want = f(wm.row(o), xa.row(rr));
                assert_eq!(
                    out[rr * n_out + o].to_bits(),
                    want.to_bits(),
                    "{ty} {level} out[{rr}][{o}] ({n_out}x{cols}, {n_act} rows, {threads} threads)"
                );
            }
        }
        // One element against the f64 reference, to tie matmul to dequantization too.
        let (want, abs) = reference_dot(
            ty,
            wm.row(n_out - 1),
            vec_dot_type(ty),
            xa.row(n_act - 1),
            cols,
        );
        let got = f64::from(out[(n_act - 1) * n_out + n_out - 1]);
        assert!(
            (got - want).abs()
                <= cols as f64 * 2f64.powi(-23) * abs
                    + 2e-3
                        * abs
                        * f64::from(u8::from(matches!(ty, GgmlType::Q4_1 | GgmlType::Q5_1)))
                    + 1e-30
        );
    }
}

#[test]
fn matmul_equals_row_dots() {
    use GgmlType::*;
    for ty in [
        F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL, Q4_K, Q5_K, Q6_K, IQ4_XS, Q2_K, Q3_K,
        TQ2_0,
    ] {
        let cols = 2 * ty.block_size().max(vec_dot_type(ty).block_size()).max(32);
        for (n_out, n_act, threads) in [(1, 1, 1), (37, 1, 2), (37, 3, 3), (101, 9, 2), (13, 64, 2)]
        {
            check(ty, n_out, cols, n_act, threads);
        }
    }
}

/// The batch sizes that take the repacked path (`packed.rs`: 16 weight rows per group) on
/// AVX-512, with partial groups and edge-case values: still the one-row kernels' bits.
#[test]
fn repacked_batches_equal_row_dots_on_edge_cases() {
    use GgmlType::*;
    for ty in [Q4_0, Q4_1, Q5_0, Q5_1, Q8_0] {
        for fill in [Fill::Random, Fill::Zero, Fill::Max, Fill::Tiny] {
            check_filled(ty, 37, 96, 16, 2, fill);
            check_filled(ty, 16, 32, 12, 1, fill);
            // Rows x columns past the tile threshold (`amx_q8::runs_on_tiles`): Q4_0, Q5_0
            // and Q8_0 on AMX tiles where the machine has them; two whole tiles and three
            // rows more.
            check_filled(ty, 37, 768, 35, 2, fill);
        }
    }
}

/// The same for the repacked K-quants (`packed_k.rs`): partial groups, activation counts that
/// are not a multiple of its four-row tile, one and several super-blocks, edge-case values.
#[test]
fn repacked_k_quant_batches_equal_row_dots_on_edge_cases() {
    use GgmlType::*;
    for ty in [Q4_K, Q5_K, Q6_K] {
        for fill in [Fill::Random, Fill::Zero, Fill::Max, Fill::Tiny] {
            check_filled(ty, 37, 768, 9, 2, fill);
            check_filled(ty, 16, 256, 8, 1, fill);
            check_filled(ty, 21, 512, 19, 3, fill);
            // Two whole tiles of sixteen activation rows (AMX where the CPU has it) and three
            // rows more.
            check_filled(ty, 33, 512, 35, 2, fill);
        }
    }
}

#[test]
fn large_matrix_many_chunks() {
    // More weight rows than one chunk holds, an odd count, two threads.
    check(GgmlType::Q4_0, 1027, 256, 5, 2);
    check(GgmlType::Q4_K, 515, 512, 2, 2);
}

#[test]
fn zero_activation_rows_is_a_no_op() {
    let w = vec![0u8; 18];
    let wm = WeightMatrix::new(GgmlType::Q4_0, 1, 32, &w).unwrap();
    let mut xa = QuantizedActivations::new();
    xa.quantize(GgmlType::Q8_0, &[], 0, 32).unwrap();
    let mut out: [f32; 0] = [];
    matmul_at(SimdLevel::Scalar, &wm, &xa, &mut out).unwrap();
}

#[test]
fn multi_products_equal_separate_products() {
    use perch_quant::matmul::{MatmulError, matmul_multi_at};
    // Query/key/value-like shapes sharing activations: three matrices of two types that pair
    // with the same activation type, several activation rows, two threads.
    let cols = 512;
    let mut r = Rng(0x6d75_6c74);
    let shapes = [
        (GgmlType::Q4_K, 96),
        (GgmlType::Q6_K, 32),
        (GgmlType::Q4_K, 33),
    ];
    let data = random_matrices(&shapes, cols, &mut r);
    let ws = matrices(&shapes, cols, &data);
    let n_act = 5;
    let x: Vec<f32> = (0..n_act * cols).map(|_| r.range(-2.0, 2.0)).collect();
    let mut xa = QuantizedActivations::new();
    xa.quantize(GgmlType::Q8_K, &x, n_act, cols).unwrap();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    for level in SimdLevel::supported() {
        let mut sep: Vec<Vec<f32>> = ws.iter().map(|w| vec![0.0; w.rows() * n_act]).collect();
        for (w, o) in ws.iter().zip(sep.iter_mut()) {
            pool.install(|| matmul_at(level, w, &xa, o)).unwrap();
        }
        let mut multi: Vec<Vec<f32>> = ws
            .iter()
            .map(|w| vec![f32::NAN; w.rows() * n_act])
            .collect();
        let mut outs: Vec<&mut [f32]> = multi.iter_mut().map(|v| v.as_mut_slice()).collect();
        pool.install(|| matmul_multi_at(level, &ws, &xa, &mut outs))
            .unwrap();
        for (a, b) in sep.iter().zip(&multi) {
            let same = a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
            assert!(same, "multi product differs at {level}");
        }
        // A wrong output count or length is an error, not a panic.
        let mut one = vec![0.0; 1];
        let err = matmul_multi_at(level, &ws, &xa, &mut [&mut one]).unwrap_err();
        assert!(matches!(
            err,
            MatmulError::OutputCount {
                weights: 3,
                outputs: 1
            }
        ));
    }
}

/// Random weight bytes for matrices of `(type, rows)` with `cols` columns.
fn random_matrices(shapes: &[(GgmlType, usize)], cols: usize, r: &mut Rng) -> Vec<Vec<u8>> {
    shapes
        .iter()
        .map(|&(ty, rows)| {
            (0..rows)
                .flat_map(|_| weight_row(ty, cols, r, Fill::Random))
                .collect()
        })
        .collect()
}

/// The matrices over `data` (from [`random_matrices`] with the same shapes).
fn matrices<'a>(
    shapes: &[(GgmlType, usize)],
    cols: usize,
    data: &'a [Vec<u8>],
) -> Vec<WeightMatrix<'a>> {
    shapes
        .iter()
        .zip(data)
        .map(|(&(ty, rows), d)| WeightMatrix::new(ty, rows, cols, d).unwrap())
        .collect()
}

/// Several matrices through the repacked paths in one product give exactly what separate
/// products give: 32-element types with different offsets (Q4_0, Q5_0, Q8_0) and one type twice
/// (whose prepared activations are shared), and the K-quants (Q4_K twice, Q6_K).
#[test]
fn repacked_multi_products_equal_separate_products() {
    use perch_quant::matmul::matmul_multi_at;
    let cases: [(usize, [(GgmlType, usize); 4]); 2] = [
        (
            128,
            [
                (GgmlType::Q4_0, 40),
                (GgmlType::Q8_0, 17),
                (GgmlType::Q5_0, 16),
                (GgmlType::Q4_0, 9),
            ],
        ),
        (
            512,
            [
                (GgmlType::Q4_K, 40),
                (GgmlType::Q6_K, 17),
                (GgmlType::Q5_K, 16),
                (GgmlType::Q4_K, 9),
            ],
        ),
    ];
    let mut r = Rng(0x7061_636b);
    for (cols, shapes) in cases {
        let data = random_matrices(&shapes, cols, &mut r);
        let ws = matrices(&shapes, cols, &data);
        let n_act = 16;
        let x: Vec<f32> = (0..n_act)
            .flat_map(|_| activation_row(cols, &mut r, Fill::Random))
            .collect();
        let mut xa = QuantizedActivations::new();
        xa.quantize(vec_dot_type(shapes[0].0), &x, n_act, cols)
            .unwrap();
        for level in SimdLevel::supported() {
            let mut multi: Vec<Vec<f32>> = ws
                .iter()
                .map(|w| vec![f32::NAN; w.rows() * n_act])
                .collect();
            let mut outs: Vec<&mut [f32]> = multi.iter_mut().map(|v| v.as_mut_slice()).collect();
            matmul_multi_at(level, &ws, &xa, &mut outs).unwrap();
            for (w, m) in ws.iter().zip(&multi) {
                let mut sep = vec![f32::NAN; w.rows() * n_act];
                matmul_at(level, w, &xa, &mut sep).unwrap();
                let same = sep.iter().zip(m).all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "{} at {level}: multi product differs", w.ty());
            }
        }
    }
}

/// Weights repacked once beforehand (`PackedWeights`, what the engine keeps beside a model)
/// give exactly the products of weights repacked on the fly, for every packable type, with a
/// partial last group and chunks split over two threads; and, below the rows that pay for
/// repacking (down to `min_rows_prepacked`), exactly the four-row and one-row kernels'.
#[test]
fn prepacked_weights_equal_packing_on_the_fly() {
    use GgmlType::*;
    use perch_quant::PackedWeights;
    let mut checked = 0;
    for ty in [Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K] {
        let (n_out, cols) = (53, 512);
        let mut r = Rng(0x9e37 ^ ty.id());
        let w: Vec<u8> = (0..n_out)
            .flat_map(|_| weight_row(ty, cols, &mut r, Fill::Random))
            .collect();
        let wm = WeightMatrix::new(ty, n_out, cols, &w).unwrap();
        let (Some(min_rows), Some(small)) = (
            PackedWeights::min_rows(ty),
            PackedWeights::min_rows_prepacked(ty),
        ) else {
            // No AVX-512 VNNI here: nothing is ever repacked.
            assert!(PackedWeights::build(&wm).is_none());
            assert!(PackedWeights::min_rows_prepacked(ty).is_none());
            continue;
        };
        assert!(small <= min_rows, "{ty}");
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        let packed = pool.install(|| PackedWeights::build(&wm)).unwrap();
        assert_eq!(
            Some(packed.bytes()),
            PackedWeights::size_for(&wm),
            "{ty}: size estimate"
        );
        // 49 rows x 512 columns is past the 32-element types' tile threshold
        // (`amx_q8::runs_on_tiles`): Q4_0, Q5_0 and Q8_0 on tiles with prepacked weights.
        for n_act in [small, small + 1, 5, 13, 49] {
            let x: Vec<f32> = (0..n_act)
                .flat_map(|_| activation_row(cols, &mut r, Fill::Random))
                .collect();
            let mut xa = QuantizedActivations::new();
            xa.quantize(vec_dot_type(ty), &x, n_act, cols).unwrap();
            let (mut a, mut b) = (vec![f32::NAN; n_out * n_act], vec![f32::NAN; n_out * n_act]);
            pool.install(|| {
                perch_quant::matmul(&wm, &xa, &mut a).unwrap();
                perch_quant::matmul(&wm.with_packed(&packed), &xa, &mut b).unwrap();
            });
            let same = a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits());
            assert!(same, "{ty}, {n_act} rows: prepacked product differs");
            // And both equal the one-row kernel.
            let f = dot_fn(ty, perch_quant::simd_level()).unwrap();
            let last = n_act - 1;
            assert_eq!(
                b[last * n_out + 52].to_bits(),
                f(wm.row(52), xa.row(last)).to_bits(),
                "{ty}, {n_act} rows"
            );
        }
        checked += 1;
    }
    eprintln!("{checked} types checked with prepacked weights");
}

/// Repacked weights handed to a matrix of another shape are refused (a panic naming the
/// mistake, not wrong results).
#[test]
fn prepacked_weights_of_another_shape_are_refused() {
    use perch_quant::PackedWeights;
    let mut r = Rng(7);
    let ty = GgmlType::Q8_0;
    let w: Vec<u8> = (0..32)
        .flat_map(|_| weight_row(ty, 64, &mut r, Fill::Random))
        .collect();
    let big = WeightMatrix::new(ty, 32, 64, &w).unwrap();
    let small = WeightMatrix::new(ty, 16, 64, &w[..w.len() / 2]).unwrap();
    let Some(p) = PackedWeights::build(&big) else {
        // No AVX-512 VNNI here: nothing can be repacked at all.
        assert!(PackedWeights::min_rows(ty).is_none());
        return;
    };
    let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = small.with_packed(&p);
    }))
    .expect_err("a matrix of another shape must be refused");
    let msg = err
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| err.downcast_ref::<&str>().copied())
        .unwrap_or_default();
    assert!(msg.contains("repacked weights of another matrix"), "{msg}");
    // The matrix it was built from takes it.
    let _ = big.with_packed(&p);
}
