//! AVX2 and AVX-512 kernels for F32, F16 and BF16 rows: `f32` FMAs into several
//! accumulators (so the sum's order differs from the scalar `f64` reference: tolerance).

use core::arch::x86_64::*;

use super::common::hsum_ps;

/// Reads element `i` of a little-endian `f32` row.
#[inline]
pub(crate) fn f32_at(b: &[u8], i: usize) -> f32 {
    f32::from_le_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]])
}

#[inline]
fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([b[2 * i], b[2 * i + 1]])
}

/// F32 · F32, AVX2.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn f32_avx2(w: &[u8], x: &[u8]) -> f32 {
    assert_eq!(w.len(), x.len(), "row lengths");
    let n = w.len() / 4;
    let (pw, px) = (w.as_ptr().cast::<f32>(), x.as_ptr().cast::<f32>());
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    while i + 32 <= n {
        for (k, a) in acc.iter_mut().enumerate() {
            // SAFETY: i + 8k + 8 <= n, so both 8-float loads lie inside the rows; unaligned.
            let (va, vb) = unsafe {
                (
                    _mm256_loadu_ps(pw.add(i + 8 * k)),
                    _mm256_loadu_ps(px.add(i + 8 * k)),
                )
            };
            *a = _mm256_fmadd_ps(va, vb, *a);
        }
        i += 32;
    }
    while i + 8 <= n {
        // SAFETY: i + 8 <= n; unaligned loads inside the rows.
        let (va, vb) = unsafe { (_mm256_loadu_ps(pw.add(i)), _mm256_loadu_ps(px.add(i))) };
        acc[0] = _mm256_fmadd_ps(va, vb, acc[0]);
        i += 8;
    }
    let s = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let mut sum = hsum_ps(s);
    for j in i..n {
        sum += f32_at(w, j) * f32_at(x, j);
    }
    sum
}

/// F16 · F16, AVX2 (F16C widening).
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn f16_avx2(w: &[u8], x: &[u8]) -> f32 {
    assert_eq!(w.len(), x.len(), "row lengths");
    let n = w.len() / 2;
    let (pw, px) = (w.as_ptr(), x.as_ptr());
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    while i + 32 <= n {
        for (k, a) in acc.iter_mut().enumerate() {
            // SAFETY: 2(i + 8k + 8) <= 2n bytes, so both 16-byte loads lie inside the rows.
            let (va, vb) = unsafe {
                (
                    _mm256_cvtph_ps(_mm_loadu_si128(pw.add(2 * (i + 8 * k)).cast())),
                    _mm256_cvtph_ps(_mm_loadu_si128(px.add(2 * (i + 8 * k)).cast())),
                )
            };
            *a = _mm256_fmadd_ps(va, vb, *a);
        }
        i += 32;
    }
    while i + 8 <= n {
        // SAFETY: 2(i + 8) <= 2n bytes; unaligned loads inside the rows.
        let (va, vb) = unsafe {
            (
                _mm256_cvtph_ps(_mm_loadu_si128(pw.add(2 * i).cast())),
                _mm256_cvtph_ps(_mm_loadu_si128(px.add(2 * i).cast())),
            )
        };
        acc[0] = _mm256_fmadd_ps(va, vb, acc[0]);
        i += 8;
    }
    let s = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let mut sum = hsum_ps(s);
    for j in i..n {
        sum += crate::dot::f16_to_f32(u16_at(w, j)) * crate::dot::f16_to_f32(u16_at(x, j));
    }
    sum
}

/// Eight bf16 at `p` widened to `f32`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn bf16x8(p: *const u8) -> __m256 {
    // SAFETY: the caller guarantees 16 readable bytes at `p`; unaligned load.
    let v = unsafe { _mm_loadu_si128(p.cast()) };
    _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(v)))
}

/// BF16 · BF16, AVX2.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn bf16_avx2(w: &[u8], x: &[u8]) -> f32 {
    assert_eq!(w.len(), x.len(), "row lengths");
    let n = w.len() / 2;
    let (pw, px) = (w.as_ptr(), x.as_ptr());
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    while i + 32 <= n {
        for (k, a) in acc.iter_mut().enumerate() {
            // SAFETY: 2(i + 8k + 8) <= 2n: 16 readable bytes at each pointer.
            let (va, vb) = unsafe {
                (
                    bf16x8(pw.add(2 * (i + 8 * k))),
                    bf16x8(px.add(2 * (i + 8 * k))),
                )
            };
            *a = _mm256_fmadd_ps(va, vb, *a);
        }
        i += 32;
    }
    while i + 8 <= n {
        // SAFETY: 2(i + 8) <= 2n: 16 readable bytes at each pointer.
        let (va, vb) = unsafe { (bf16x8(pw.add(2 * i)), bf16x8(px.add(2 * i))) };
        acc[0] = _mm256_fmadd_ps(va, vb, acc[0]);
        i += 8;
    }
    let s = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let mut sum = hsum_ps(s);
    for j in i..n {
        sum += crate::dot::bf16_to_f32(u16_at(w, j)) * crate::dot::bf16_to_f32(u16_at(x, j));
    }
    sum
}

/// A mask of the low `k` (< 16) lanes.
#[inline]
fn tail_mask(k: usize) -> __mmask16 {
    ((1u32 << k) - 1) as __mmask16
}

/// F32 · F32, AVX-512 (masked tail).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")]
pub(crate) fn f32_avx512(w: &[u8], x: &[u8]) -> f32 {
    assert_eq!(w.len(), x.len(), "row lengths");
    let n = w.len() / 4;
    let (pw, px) = (w.as_ptr().cast::<f32>(), x.as_ptr().cast::<f32>());
    let mut acc = [_mm512_setzero_ps(); 4];
    let mut i = 0;
    while i + 64 <= n {
        for (k, a) in acc.iter_mut().enumerate() {
            // SAFETY: i + 16k + 16 <= n: both loads inside the rows; unaligned.
            let (va, vb) = unsafe {
                (
                    _mm512_loadu_ps(pw.add(i + 16 * k)),
                    _mm512_loadu_ps(px.add(i + 16 * k)),
                )
            };
            *a = _mm512_fmadd_ps(va, vb, *a);
        }
        i += 64;
    }
    while i < n {
        let m = lanes_mask(n - i);
        // SAFETY: the mask covers only lanes i..min(i + 16, n); masked-off lanes are not read.
        let (va, vb) = unsafe {
            (
                _mm512_maskz_loadu_ps(m, pw.add(i)),
                _mm512_maskz_loadu_ps(m, px.add(i)),
            )
        };
        acc[0] = _mm512_fmadd_ps(va, vb, acc[0]);
        i += 16;
    }
    let s = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
    _mm512_reduce_add_ps(s)
}

/// F16 · F16, AVX-512.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")]
pub(crate) fn f16_avx512(w: &[u8], x: &[u8]) -> f32 {
    assert_eq!(w.len(), x.len(), "row lengths");
    let n = w.len() / 2;
    let (pw, px) = (w.as_ptr().cast::<i16>(), x.as_ptr().cast::<i16>());
    let mut acc = [_mm512_setzero_ps(); 4];
    let mut i = 0;
    while i + 64 <= n {
        for (k, a) in acc.iter_mut().enumerate() {
            // SAFETY: i + 16k + 16 <= n halves: both 32-byte loads inside the rows.
            let (va, vb) = unsafe {
                (
                    _mm512_cvtph_ps(_mm256_loadu_si256(pw.add(i + 16 * k).cast())),
                    _mm512_cvtph_ps(_mm256_loadu_si256(px.add(i + 16 * k).cast())),
                )
            };
            *a = _mm512_fmadd_ps(va, vb, *a);
        }
        i += 64;
    }
    while i < n {
        let m = lanes_mask(n - i);
        // SAFETY: the mask covers only halves i..min(i + 16, n); masked-off lanes are not read.
        let (va, vb) = unsafe {
            (
                _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, pw.add(i))),
                _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, px.add(i))),
            )
        };
        acc[0] = _mm512_fmadd_ps(va, vb, acc[0]);
        i += 16;
    }
    let s = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
    _mm512_reduce_add_ps(s)
}

/// A mask of `min(left, 16)` low lanes.
#[inline]
pub(crate) fn lanes_mask(left: usize) -> __mmask16 {
    if left >= 16 { 0xffff } else { tail_mask(left) }
}

/// Sixteen bf16 (masked) widened to `f32`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")]
fn bf16x16(p: *const i16, m: __mmask16) -> __m512 {
    // SAFETY: the caller guarantees the masked lanes are readable; others are not read.
    let v = unsafe { _mm256_maskz_loadu_epi16(m, p) };
    _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(v)))
}

/// BF16 · BF16, AVX-512 (without the BF16 extension: widen and FMA).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")]
pub(crate) fn bf16_avx512(w: &[u8], x: &[u8]) -> f32 {
    assert_eq!(w.len(), x.len(), "row lengths");
    let n = w.len() / 2;
    let (pw, px) = (w.as_ptr().cast::<i16>(), x.as_ptr().cast::<i16>());
    let mut acc = [_mm512_setzero_ps(); 2];
    let mut i = 0;
    while i < n {
        let m = lanes_mask(n - i);
        // SAFETY: the mask covers only elements i..min(i + 16, n) of both rows.
        let (va, vb) = unsafe { (bf16x16(pw.add(i), m), bf16x16(px.add(i), m)) };
        let k = (i / 16) % 2;
        acc[k] = _mm512_fmadd_ps(va, vb, acc[k]);
        i += 16;
    }
    _mm512_reduce_add_ps(_mm512_add_ps(acc[0], acc[1]))
}

/// BF16 · BF16 with AVX-512 BF16 `vdpbf16ps` (pairs of bf16 products summed in `f32`).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx512bf16")]
pub(crate) fn bf16_avx512bf16(w: &[u8], x: &[u8]) -> f32 {
    assert_eq!(w.len(), x.len(), "row lengths");
    let n = w.len() / 2;
    let (pw, px) = (w.as_ptr().cast::<i16>(), x.as_ptr().cast::<i16>());
    let mut acc = [_mm512_setzero_ps(); 2];
    let mut i = 0;
    while i < n {
        let left = n - i;
        let m: __mmask32 = if left >= 32 {
            u32::MAX
        } else {
            (1u32 << left) - 1
        };
        // SAFETY: the mask covers only elements i..min(i + 32, n) of both rows.
        let (va, vb) = unsafe {
            (
                _mm512_maskz_loadu_epi16(m, pw.add(i)),
                _mm512_maskz_loadu_epi16(m, px.add(i)),
            )
        };
        let k = (i / 32) % 2;
        acc[k] = _mm512_dpbf16_ps(
            acc[k],
            _mm512_castsi512_ps_bh(va),
            _mm512_castsi512_ps_bh(vb),
        );
        i += 32;
    }
    _mm512_reduce_add_ps(_mm512_add_ps(acc[0], acc[1]))
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx512bf16")]
fn _mm512_castsi512_ps_bh(v: __m512i) -> __m512bh {
    // SAFETY: both are 512-bit plain vectors; reinterpreting bits is sound.
    unsafe { core::mem::transmute::<__m512i, __m512bh>(v) }
}
