//! Dot-product kernels against independent references:
//!
//! * every scalar kernel against `Σ dequantize(w)_i · dequantize(x)_i` in f64 (the crate's
//!   dequantizers, themselves bit-exact with gguf-py and llama.cpp), within a float tolerance;
//! * every SIMD kernel against its scalar reference: exactly when every float step is exact
//!   (unit scales, integer sums below 2^24), within a stated tolerance on random rows and on
//!   edge cases (all-zero blocks, maximal magnitudes, tiny scales, single-block rows).

mod kernels_util;

use kernels_util::*;
use perch_quant::dot::{dot_fn, kernel_level, scalar_fn, vec_dot_at};
use perch_quant::simd::SimdLevel;
use perch_quant::types::ALL;
use perch_quant::{GgmlType, QuantizedActivations, vec_dot_type};

fn dot_types() -> Vec<GgmlType> {
    ALL.iter()
        .copied()
        .filter(|t| scalar_fn(*t).is_some())
        .collect()
}

/// Float tolerance of an `n`-term `f32` dot product whose terms' magnitudes sum to `abs`:
/// `n · 2^-23 · abs` (the bound of recursive summation, doubled), plus the f16 rounding of
/// Q8_1's stored sum for the types that use it.
fn tolerance(ty: GgmlType, n: usize, abs: f64) -> f64 {
    let base = n as f64 * 2f64.powi(-23) * abs;
    let s_term = match ty {
        GgmlType::Q4_1 | GgmlType::Q5_1 => 2e-3 * abs,
        _ => 0.0,
    };
    base + s_term + 1e-30
}

fn quantized(act: GgmlType, x: &[f32]) -> Vec<u8> {
    let mut q = QuantizedActivations::new();
    q.quantize(act, x, 1, x.len()).unwrap();
    q.data().to_vec()
}

const FILLS: [Fill; 4] = [Fill::Random, Fill::Zero, Fill::Max, Fill::Tiny];

#[test]
fn scalar_kernels_match_dequantized_f64_reference() {
    for ty in dot_types() {
        let act = vec_dot_type(ty);
        let f = scalar_fn(ty).unwrap();
        for fill in FILLS {
            for k in [1, 3, 8] {
                let n = row_len(ty, k);
                let mut r = Rng(0x9e37_79b9 ^ (ty.id() << 8) ^ k as u32);
                let w = weight_row(ty, n, &mut r, fill);
                let x = quantized(act, &activation_row(n, &mut r, fill));
                let got = f64::from(f(&w, &x));
                let (want, abs) = reference_dot(ty, &w, act, &x, n);
                let tol = tolerance(ty, n, abs);
                assert!(
                    (got - want).abs() <= tol,
                    "{ty} {fill:?} n={n}: scalar {got} vs f64 reference {want} (tol {tol})"
                );
                if fill == Fill::Zero {
                    assert_eq!(got, 0.0, "{ty}: all-zero rows");
                }
            }
        }
    }
}

#[test]
fn simd_kernels_match_scalar_within_tolerance() {
    let mut compared = 0;
    for level in SimdLevel::supported().filter(|l| *l != SimdLevel::Scalar) {
        for ty in dot_types() {
            if kernel_level(ty, level) == Some(SimdLevel::Scalar) {
                continue; // no SIMD kernel for this type: dot_fn hands out the scalar one
            }
            let act = vec_dot_type(ty);
            let scalar = scalar_fn(ty).unwrap();
            let simd = dot_fn(ty, level).unwrap();
            for fill in FILLS {
                for k in [1, 2, 5, 16] {
                    let n = row_len(ty, k);
                    let mut r = Rng(0x1234_5678 ^ (ty.id() << 12) ^ (k as u32) << 4);
                    let w = weight_row(ty, n, &mut r, fill);
                    let x = quantized(act, &activation_row(n, &mut r, fill));
                    let a = f64::from(scalar(&w, &x));
                    let b = f64::from(simd(&w, &x));
                    let (_, abs) = reference_dot(ty, &w, act, &x, n);
                    let tol = tolerance(ty, n, abs);
                    assert!(
                        (a - b).abs() <= tol,
                        "{ty} at {level} {fill:?} n={n}: simd {b} vs scalar {a} (tol {tol})"
                    );
                    compared += 1;
                }
            }
        }
    }
    if SimdLevel::detected() > SimdLevel::Scalar {
        assert!(compared > 0, "no SIMD kernel was compared");
    }
}

#[test]
fn simd_kernels_equal_scalar_exactly_when_arithmetic_is_exact() {
    let mut exact_cases = 0;
    for level in SimdLevel::supported().filter(|l| *l != SimdLevel::Scalar) {
        for ty in dot_types() {
            if kernel_level(ty, level) == Some(SimdLevel::Scalar) {
                continue;
            }
            let act = vec_dot_type(ty);
            let scalar = scalar_fn(ty).unwrap();
            let simd = dot_fn(ty, level).unwrap();
            let before = exact_cases;
            for seed in 0..6u32 {
                let n = row_len(ty, 1 + seed as usize % 3);
                let mut r = Rng(0xabcd_0001 + seed * 7919 + ty.id());
                let w = unit_weight_row(ty, n, &mut r);
                let x = unit_activation_row(act, n, &mut r);
                let (want, abs) = reference_dot(ty, &w, act, &x, n);
                // Every partial sum is an integer (or a multiple of a power of two) below
                // 2^24: any summation order is exact.
                if abs >= f64::from(1u32 << 22) {
                    continue;
                }
                let a = scalar(&w, &x);
                let b = simd(&w, &x);
                assert_eq!(a, b, "{ty} at {level}, seed {seed}: simd vs scalar");
                assert_eq!(
                    f64::from(a),
                    want,
                    "{ty}, seed {seed}: scalar vs dequantized"
                );
                exact_cases += 1;
            }
            assert!(exact_cases > before, "{ty} at {level}: no exact case ran");
        }
    }
    if SimdLevel::detected() > SimdLevel::Scalar {
        assert!(exact_cases > 20, "too few exact cases ran: {exact_cases}");
    }
}

#[test]
fn vec_dot_rejects_mismatched_rows() {
    use perch_quant::dot::DotError;
    let w = vec![0u8; 18 * 2];
    assert!(matches!(
        vec_dot_at(SimdLevel::Scalar, GgmlType::Q4_0, &w[..35], &[0; 34]),
        Err(DotError::PartialWeight { .. })
    ));
    assert!(matches!(
        vec_dot_at(SimdLevel::Scalar, GgmlType::Q4_0, &w, &[0; 34]),
        Err(DotError::ActivationLength { .. })
    ));
    assert!(matches!(
        vec_dot_at(SimdLevel::Scalar, GgmlType::I32, &w, &w),
        Err(DotError::Unsupported(GgmlType::I32))
    ));
    for level in SimdLevel::supported() {
        assert_eq!(
            vec_dot_at(level, GgmlType::Q4_0, &w, &[0; 68]),
            Ok(0.0),
            "zero rows at {level}"
        );
    }
}

#[test]
fn pairing_matches_ggml_type_traits_cpu() {
    use GgmlType::*;
    // ggml-cpu.c type_traits_cpu[..].vec_dot_type.
    for (w, a) in [
        (F32, F32),
        (F16, F16),
        (BF16, BF16),
        (Q4_0, Q8_0),
        (Q4_1, Q8_1),
        (Q5_0, Q8_0),
        (Q5_1, Q8_1),
        (Q8_0, Q8_0),
        (MXFP4, Q8_0),
        (IQ4_NL, Q8_0),
        (Q2_K, Q8_K),
        (Q6_K, Q8_K),
        (IQ4_XS, Q8_K),
        (IQ2_XXS, Q8_K),
        (TQ1_0, Q8_K),
        (TQ2_0, Q8_K),
    ] {
        assert_eq!(vec_dot_type(w), a, "{w}");
    }
}

#[test]
fn four_row_kernels_are_bit_identical_to_one_row_kernels() {
    use perch_quant::dot::dot4_fn;
    let mut checked = 0;
    for level in SimdLevel::supported() {
        for ty in dot_types() {
            let Some(f4) = dot4_fn(ty, level) else {
                continue;
            };
            let f = dot_fn(ty, level).unwrap();
            let act = vec_dot_type(ty);
            for fill in FILLS {
                for k in [1, 3, 9] {
                    let n = row_len(ty, k);
                    let mut r = Rng(0x4444 ^ (ty.id() << 8) ^ k as u32);
                    let w = weight_row(ty, n, &mut r, fill);
                    let xs: Vec<Vec<u8>> = (0..4)
                        .map(|_| quantized(act, &activation_row(n, &mut r, fill)))
                        .collect();
                    let got = f4(&w, [&xs[0], &xs[1], &xs[2], &xs[3]]);
                    for (i, x) in xs.iter().enumerate() {
                        assert_eq!(
                            got[i].to_bits(),
                            f(&w, x).to_bits(),
                            "{ty} at {level} {fill:?} n={n} row {i}"
                        );
                    }
                    checked += 1;
                }
            }
        }
    }
    if SimdLevel::detected() > SimdLevel::Scalar {
        assert!(checked > 0, "no four-row kernel was checked");
    }
}
