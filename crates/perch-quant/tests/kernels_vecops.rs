//! vecops: every level against an f64 reference (dots, axpy) or the `half` crate's
//! conversions (exactly), on lengths that exercise the vector bodies and the scalar tails.

mod kernels_util;

use half::f16;
use kernels_util::Rng;
use perch_quant::simd::SimdLevel;
use perch_quant::vecops::*;

const LENS: [usize; 8] = [0, 1, 7, 8, 9, 31, 64, 1000];

fn row(r: &mut Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| r.range(-2.0, 2.0)).collect()
}

#[test]
fn dots_match_f64_reference_at_every_level() {
    for level in SimdLevel::supported() {
        for n in LENS {
            let mut r = Rng(77 + n as u32);
            let a = row(&mut r, n);
            let b = row(&mut r, n);
            let bh: Vec<f16> = b.iter().map(|v| f16::from_f32(*v)).collect();
            let abs: f64 = a.iter().zip(&b).map(|(x, y)| f64::from(x * y).abs()).sum();
            let tol = n as f64 * 2f64.powi(-23) * abs + 1e-12;
            let want: f64 = a
                .iter()
                .zip(&b)
                .map(|(x, y)| f64::from(*x) * f64::from(*y))
                .sum();
            let got = f64::from(dot_f32_at(level, &a, &b));
            assert!(
                (got - want).abs() <= tol,
                "dot_f32 {level} n={n}: {got} vs {want}"
            );
            let want: f64 = a
                .iter()
                .zip(&bh)
                .map(|(x, y)| f64::from(*x) * f64::from(y.to_f32()))
                .sum();
            let got = f64::from(dot_f32_f16_at(level, &a, &bh));
            assert!((got - want).abs() <= 2.0 * tol, "dot_f32_f16 {level} n={n}");
        }
    }
}

#[test]
fn axpy_matches_reference_at_every_level() {
    for level in SimdLevel::supported() {
        for n in LENS {
            let mut r = Rng(991 + n as u32);
            let y0 = row(&mut r, n);
            let x = row(&mut r, n);
            let xh: Vec<f16> = x.iter().map(|v| f16::from_f32(*v)).collect();
            let alpha = 0.37f32;
            let mut y = y0.clone();
            axpy_f16_at(level, &mut y, alpha, &xh);
            let mut z = y0.clone();
            axpy_f32_at(level, &mut z, alpha, &x);
            for i in 0..n {
                let w16 = f64::from(y0[i]) + f64::from(alpha) * f64::from(xh[i].to_f32());
                let w32 = f64::from(y0[i]) + f64::from(alpha) * f64::from(x[i]);
                // One or two roundings of an f32 result.
                assert!((f64::from(y[i]) - w16).abs() <= 4.0 * 2f64.powi(-24) * 4.0);
                assert!((f64::from(z[i]) - w32).abs() <= 4.0 * 2f64.powi(-24) * 4.0);
            }
        }
    }
}

#[test]
fn conversions_equal_the_half_crate_exactly() {
    for level in SimdLevel::supported() {
        for n in LENS {
            let mut r = Rng(5 + n as u32);
            let mut src: Vec<f32> = (0..n).map(|_| r.range(-70000.0, 70000.0)).collect();
            // Ties, subnormals, overflow and signed zero.
            for (i, v) in [1.0 + 2f32.powi(-11), 2f32.powi(-25), 65520.0, -0.0, 1e-8]
                .into_iter()
                .enumerate()
            {
                if i < n {
                    src[i] = v;
                }
            }
            let mut h = vec![f16::ZERO; n];
            f32_to_f16_at(level, &src, &mut h);
            for i in 0..n {
                assert_eq!(
                    h[i].to_bits(),
                    f16::from_f32(src[i]).to_bits(),
                    "f32_to_f16 {level} {}",
                    src[i]
                );
            }
            let mut back = vec![0f32; n];
            f16_to_f32_at(level, &h, &mut back);
            for i in 0..n {
                assert_eq!(
                    back[i].to_bits(),
                    h[i].to_f32().to_bits(),
                    "f16_to_f32 {level}"
                );
            }
        }
    }
}

#[test]
fn elementwise_helpers() {
    let mut y = vec![1.0f32, -2.0, 3.0];
    scale(&mut y, 2.0);
    assert_eq!(y, [2.0, -4.0, 6.0]);
    add(&mut y, &[1.0, 1.0, 1.0]);
    assert_eq!(y, [3.0, -3.0, 7.0]);
    mul(&mut y, &[2.0, 0.5, 0.0]);
    assert_eq!(y, [6.0, -1.5, 0.0]);
    assert_eq!(max(&y), 6.0);
    assert_eq!(max(&[]), f32::NEG_INFINITY);
    assert_eq!(sum_squares(&[3.0, 4.0]), 25.0);
}

/// The block forms the attention uses (`dot_f32_f16_rows`, `axpy_f16_rows`) give exactly the
/// bits of one `dot_f32_f16` / `axpy_f16` per row, in row order, at every level, for widths
/// with and without scalar tails and for 0, 1 and 16 rows.
#[test]
fn row_block_forms_equal_row_by_row_bits() {
    for level in SimdLevel::supported() {
        for d in [1, 7, 8, 64, 72, 128] {
            for n in [0, 1, 16] {
                let mut r = Rng(5 + (d * 31 + n) as u32);
                let q = row(&mut r, d);
                let x: Vec<f16> = row(&mut r, d * n)
                    .iter()
                    .map(|v| f16::from_f32(*v))
                    .collect();
                let mut dots = vec![f32::NAN; n];
                dot_f32_f16_rows_at(level, &q, &x, &mut dots);
                for i in 0..n {
                    let want = dot_f32_f16_at(level, &q, &x[i * d..(i + 1) * d]);
                    assert_eq!(
                        dots[i].to_bits(),
                        want.to_bits(),
                        "dot rows {level} d={d} row {i}"
                    );
                }
                let alphas = row(&mut r, n);
                let mut y = row(&mut r, d);
                let mut want = y.clone();
                axpy_f16_rows_at(level, &mut y, &alphas, &x);
                for (i, &a) in alphas.iter().enumerate() {
                    axpy_f16_at(level, &mut want, a, &x[i * d..(i + 1) * d]);
                }
                let same = y.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "axpy rows {level} d={d} n={n}");
            }
        }
    }
}
