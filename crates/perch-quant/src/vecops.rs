//! Vector helpers for the engine's attention and norms: dot products against the f16 KV
//! cache, f16 axpy for the value accumulation, f32↔f16 conversion, and small element-wise
//! operations. All are allocation-free; each has a scalar reference and an AVX2 version
//! (used at the AVX2 and AVX-512 levels: these loops are memory-bound), chosen at run time
//! as the dot products are. The `*_at` forms take the level, for tests and comparisons.
//!
//! Slices that must have equal lengths are checked with `assert_eq!`: a mismatch is a bug in
//! the caller, not bad input.

use half::f16;

use crate::simd::{SimdLevel, simd_level};

#[inline]
fn use_avx2(level: SimdLevel) -> bool {
    level >= SimdLevel::Avx2 && SimdLevel::Avx2.is_supported()
}

macro_rules! dispatch {
    ($level:expr, $avx2:ident($($arg:expr),*), $scalar:expr) => {{
        #[cfg(target_arch = "x86_64")]
        {
            if use_avx2($level) {
                // SAFETY: `use_avx2` confirmed AVX2, FMA and F16C on this CPU.
                return unsafe { avx2::$avx2($($arg),*) };
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = $level;
        $scalar
    }};
}

/// `Σ a_i b_i` in `f32`.
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    dot_f32_at(simd_level(), a, b)
}

/// [`dot_f32`] at a given level.
pub fn dot_f32_at(level: SimdLevel, a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "dot_f32 lengths");
    dispatch!(
        level,
        dot_f32(a, b),
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    )
}

/// `Σ a_i b_i` with `b` in f16 (a query against a row of the f16 K cache).
pub fn dot_f32_f16(a: &[f32], b: &[f16]) -> f32 {
    dot_f32_f16_at(simd_level(), a, b)
}

/// [`dot_f32_f16`] at a given level.
pub fn dot_f32_f16_at(level: SimdLevel, a: &[f32], b: &[f16]) -> f32 {
    assert_eq!(a.len(), b.len(), "dot_f32_f16 lengths");
    dispatch!(
        level,
        dot_f32_f16(a, b),
        a.iter().zip(b).map(|(x, y)| x * y.to_f32()).sum()
    )
}

/// `y += alpha * x` with `x` in f16 (accumulating a row of the f16 V cache).
pub fn axpy_f16(y: &mut [f32], alpha: f32, x: &[f16]) {
    axpy_f16_at(simd_level(), y, alpha, x)
}

/// [`axpy_f16`] at a given level.
pub fn axpy_f16_at(level: SimdLevel, y: &mut [f32], alpha: f32, x: &[f16]) {
    assert_eq!(y.len(), x.len(), "axpy_f16 lengths");
    dispatch!(level, axpy_f16(y, alpha, x), {
        for (o, v) in y.iter_mut().zip(x) {
            *o += alpha * v.to_f32();
        }
    })
}

/// `out[i] = dot_f32_f16(a, row i of b)` for the `out.len()` rows of `a.len()` halves that
/// `b` holds one after another (the keys of a KV-cache block): the same bits as one
/// [`dot_f32_f16`] per row, without the per-row dispatch.
pub fn dot_f32_f16_rows(a: &[f32], b: &[f16], out: &mut [f32]) {
    dot_f32_f16_rows_at(simd_level(), a, b, out)
}

/// [`dot_f32_f16_rows`] at a given level.
pub fn dot_f32_f16_rows_at(level: SimdLevel, a: &[f32], b: &[f16], out: &mut [f32]) {
    let d = a.len();
    assert_eq!(b.len(), d * out.len(), "dot_f32_f16_rows lengths");
    dispatch!(level, dot_f32_f16_rows(a, b, out), {
        for (o, row) in out.iter_mut().zip(b.chunks_exact(d.max(1))) {
            *o = a.iter().zip(row).map(|(x, y)| x * y.to_f32()).sum();
        }
    })
}

/// `y += alphas[i] * row i of x` for the rows of `y.len()` halves that `x` holds one after
/// another (the values of a KV-cache block), in row order: the same bits as one
/// [`axpy_f16`] per row, with `y` kept in registers across the rows.
pub fn axpy_f16_rows(y: &mut [f32], alphas: &[f32], x: &[f16]) {
    axpy_f16_rows_at(simd_level(), y, alphas, x)
}

/// [`axpy_f16_rows`] at a given level.
pub fn axpy_f16_rows_at(level: SimdLevel, y: &mut [f32], alphas: &[f32], x: &[f16]) {
    let d = y.len();
    assert_eq!(x.len(), d * alphas.len(), "axpy_f16_rows lengths");
    dispatch!(level, axpy_f16_rows(y, alphas, x), {
        for (&alpha, row) in alphas.iter().zip(x.chunks_exact(d.max(1))) {
            for (o, v) in y.iter_mut().zip(row) {
                *o += alpha * v.to_f32();
            }
        }
    })
}

/// `y += alpha * x`.
pub fn axpy_f32(y: &mut [f32], alpha: f32, x: &[f32]) {
    axpy_f32_at(simd_level(), y, alpha, x)
}

/// [`axpy_f32`] at a given level.
pub fn axpy_f32_at(level: SimdLevel, y: &mut [f32], alpha: f32, x: &[f32]) {
    assert_eq!(y.len(), x.len(), "axpy_f32 lengths");
    dispatch!(level, axpy_f32(y, alpha, x), {
        for (o, v) in y.iter_mut().zip(x) {
            *o += alpha * v;
        }
    })
}

/// `dst = f16(src)`, rounding to nearest even (writing the KV cache).
pub fn f32_to_f16(src: &[f32], dst: &mut [f16]) {
    f32_to_f16_at(simd_level(), src, dst)
}

/// [`f32_to_f16`] at a given level.
pub fn f32_to_f16_at(level: SimdLevel, src: &[f32], dst: &mut [f16]) {
    assert_eq!(src.len(), dst.len(), "f32_to_f16 lengths");
    dispatch!(level, f32_to_f16(src, dst), {
        for (d, s) in dst.iter_mut().zip(src) {
            *d = f16::from_f32(*s);
        }
    })
}

/// `dst = f32(src)` (exact).
pub fn f16_to_f32(src: &[f16], dst: &mut [f32]) {
    f16_to_f32_at(simd_level(), src, dst)
}

/// [`f16_to_f32`] at a given level.
pub fn f16_to_f32_at(level: SimdLevel, src: &[f16], dst: &mut [f32]) {
    assert_eq!(src.len(), dst.len(), "f16_to_f32 lengths");
    dispatch!(level, f16_to_f32(src, dst), {
        for (d, s) in dst.iter_mut().zip(src) {
            *d = s.to_f32();
        }
    })
}

/// `y *= alpha`.
pub fn scale(y: &mut [f32], alpha: f32) {
    for v in y.iter_mut() {
        *v *= alpha;
    }
}

/// `y += x`.
pub fn add(y: &mut [f32], x: &[f32]) {
    assert_eq!(y.len(), x.len(), "add lengths");
    for (o, v) in y.iter_mut().zip(x) {
        *o += v;
    }
}

/// `y *= x`, element-wise (norm weights, gating).
pub fn mul(y: &mut [f32], x: &[f32]) {
    assert_eq!(y.len(), x.len(), "mul lengths");
    for (o, v) in y.iter_mut().zip(x) {
        *o *= v;
    }
}

/// The largest element (`-inf` for an empty slice; NaNs are ignored).
pub fn max(x: &[f32]) -> f32 {
    x.iter().copied().fold(f32::NEG_INFINITY, f32::max)
}

/// `Σ x_i²`, accumulated in `f64` (RMS norm's denominator, as ggml sums it).
pub fn sum_squares(x: &[f32]) -> f32 {
    x.iter().map(|v| f64::from(*v) * f64::from(*v)).sum::<f64>() as f32
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use core::arch::x86_64::*;

    use half::f16;

    use crate::dot::x86::common::hsum_ps;

    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        while i + 32 <= n {
            for (k, s) in acc.iter_mut().enumerate() {
                // SAFETY: i + 8k + 8 <= n: the loads lie inside both slices.
                let (x, y) = unsafe {
                    (
                        _mm256_loadu_ps(a.as_ptr().add(i + 8 * k)),
                        _mm256_loadu_ps(b.as_ptr().add(i + 8 * k)),
                    )
                };
                *s = _mm256_fmadd_ps(x, y, *s);
            }
            i += 32;
        }
        while i + 8 <= n {
            // SAFETY: i + 8 <= n.
            let (x, y) = unsafe {
                (
                    _mm256_loadu_ps(a.as_ptr().add(i)),
                    _mm256_loadu_ps(b.as_ptr().add(i)),
                )
            };
            acc[0] = _mm256_fmadd_ps(x, y, acc[0]);
            i += 8;
        }
        let s = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        let mut sum = hsum_ps(s);
        for j in i..n {
            sum += a[j] * b[j];
        }
        sum
    }

    /// Eight halves at `p` widened.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn h8(p: *const f16) -> __m256 {
        // SAFETY: the caller guarantees 8 readable halves at `p`.
        _mm256_cvtph_ps(unsafe { _mm_loadu_si128(p.cast()) })
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) fn dot_f32_f16(a: &[f32], b: &[f16]) -> f32 {
        let n = a.len().min(b.len());
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        while i + 32 <= n {
            for (k, s) in acc.iter_mut().enumerate() {
                // SAFETY: i + 8k + 8 <= n: 8 floats and 8 halves inside the slices.
                let (x, y) = unsafe {
                    (
                        _mm256_loadu_ps(a.as_ptr().add(i + 8 * k)),
                        h8(b.as_ptr().add(i + 8 * k)),
                    )
                };
                *s = _mm256_fmadd_ps(x, y, *s);
            }
            i += 32;
        }
        while i + 8 <= n {
            // SAFETY: i + 8 <= n.
            let (x, y) = unsafe { (_mm256_loadu_ps(a.as_ptr().add(i)), h8(b.as_ptr().add(i))) };
            acc[0] = _mm256_fmadd_ps(x, y, acc[0]);
            i += 8;
        }
        let s = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        let mut sum = hsum_ps(s);
        for j in i..n {
            sum += a[j] * b[j].to_f32();
        }
        sum
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) fn axpy_f16(y: &mut [f32], alpha: f32, x: &[f16]) {
        let n = y.len().min(x.len());
        let va = _mm256_set1_ps(alpha);
        let mut i = 0;
        while i + 8 <= n {
            // SAFETY: i + 8 <= n: 8 halves of `x` and 8 floats of `y` in bounds; `y` is
            // exclusively borrowed.
            unsafe {
                let p = y.as_mut_ptr().add(i);
                let r = _mm256_fmadd_ps(va, h8(x.as_ptr().add(i)), _mm256_loadu_ps(p));
                _mm256_storeu_ps(p, r);
            }
            i += 8;
        }
        for j in i..n {
            y[j] = alpha.mul_add(x[j].to_f32(), y[j]);
        }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) fn dot_f32_f16_rows(a: &[f32], b: &[f16], out: &mut [f32]) {
        let d = a.len();
        if d == 0 {
            out.fill(0.0);
            return;
        }
        for (o, row) in out.iter_mut().zip(b.chunks_exact(d)) {
            *o = dot_f32_f16(a, row);
        }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) fn axpy_f16_rows(y: &mut [f32], alphas: &[f32], x: &[f16]) {
        let d = y.len();
        let mut i = 0;
        // Eight lanes of `y` at a time through every row: each element sees the same FMAs in
        // the same order as row-by-row `axpy_f16`.
        while i + 8 <= d {
            // SAFETY: i + 8 <= d: 8 floats of `y` in bounds; row r's 8 halves at r·d + i are
            // in `x` (x.len() == d · alphas.len(), checked by the caller).
            unsafe {
                let p = y.as_mut_ptr().add(i);
                let mut acc = _mm256_loadu_ps(p);
                for (r, &alpha) in alphas.iter().enumerate() {
                    acc =
                        _mm256_fmadd_ps(_mm256_set1_ps(alpha), h8(x.as_ptr().add(r * d + i)), acc);
                }
                _mm256_storeu_ps(p, acc);
            }
            i += 8;
        }
        for j in i..d {
            for (r, &alpha) in alphas.iter().enumerate() {
                y[j] = alpha.mul_add(x[r * d + j].to_f32(), y[j]);
            }
        }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) fn axpy_f32(y: &mut [f32], alpha: f32, x: &[f32]) {
        let n = y.len().min(x.len());
        let va = _mm256_set1_ps(alpha);
        let mut i = 0;
        while i + 8 <= n {
            // SAFETY: i + 8 <= n: both ranges in bounds; `y` is exclusively borrowed.
            unsafe {
                let p = y.as_mut_ptr().add(i);
                let r = _mm256_fmadd_ps(va, _mm256_loadu_ps(x.as_ptr().add(i)), _mm256_loadu_ps(p));
                _mm256_storeu_ps(p, r);
            }
            i += 8;
        }
        for j in i..n {
            y[j] = alpha.mul_add(x[j], y[j]);
        }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) fn f32_to_f16(src: &[f32], dst: &mut [f16]) {
        let n = src.len().min(dst.len());
        let mut i = 0;
        while i + 8 <= n {
            // SAFETY: i + 8 <= n: 8 floats read, 8 halves written, in bounds.
            unsafe {
                let h = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm256_loadu_ps(
                    src.as_ptr().add(i),
                ));
                _mm_storeu_si128(dst.as_mut_ptr().add(i).cast(), h);
            }
            i += 8;
        }
        for j in i..n {
            dst[j] = f16::from_f32(src[j]);
        }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) fn f16_to_f32(src: &[f16], dst: &mut [f32]) {
        let n = src.len().min(dst.len());
        let mut i = 0;
        while i + 8 <= n {
            // SAFETY: i + 8 <= n: 8 halves read, 8 floats written, in bounds.
            unsafe { _mm256_storeu_ps(dst.as_mut_ptr().add(i), h8(src.as_ptr().add(i))) };
            i += 8;
        }
        for j in i..n {
            dst[j] = src[j].to_f32();
        }
    }
}
