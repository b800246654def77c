//! The activation side of the dot products: `f32` rows turned into the type each weight type's
//! kernel reads ([`vec_dot_type`](crate::dot::vec_dot_type)), once per layer input.
//!
//! The quantizers here are ggml's *CPU* ones, the ones llama.cpp runs on x86-64 (its
//! `type_traits_cpu[..].from_float`), because they decide the engine's numbers:
//!
//! * Q8_0 and Q8_1 follow `quantize_row_q8_0`/`quantize_row_q8_1` of ggml's x86 backend:
//!   `d = amax / 127`, multiplier `127 / amax`, rounding half to even. (ggml's portable
//!   `quantize_row_q8_0_ref`, used for *weight* files, takes `1 / d` and rounds half away from
//!   zero; the two differ on rare ties and one-ulp multipliers.)
//! * Q8_K is `quantize_row_q8_K_ref` (ggml uses it on every architecture): scale from the
//!   signed element of largest magnitude, `-127 / max`, rounding half to even, sums of 16.
//! * F16 rounds to nearest even (F16C's `vcvtps2ph`); BF16 rounds to nearest even with NaN
//!   kept quiet (`ggml_compute_fp32_to_bf16`).
//!
//! The quantized activations never depend on the SIMD level (only the dot products do, within
//! their stated tolerance): Q8_K has an AVX-512 form that gives the scalar code's bytes
//! exactly (tested), the others run the same scalar code everywhere.

use rayon::prelude::*;

use crate::blocks::{BlockQ8_0, BlockQ8_1, BlockQ8K, F16Le, F32Le, I16Le, as_blocks_mut};
use crate::types::{GgmlType, QK_K};

/// Activations that cannot be quantized as asked.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ActivationError {
    /// The type is not an activation type (F32, F16, BF16, Q8_0, Q8_1, Q8_K).
    #[error("{0} is not an activation type (expected f32, f16, bf16, q8_0, q8_1 or q8_K)")]
    NotAnActivationType(GgmlType),
    /// The row length is not a whole number of the type's blocks.
    #[error("{cols} columns are not a whole number of {ty} blocks of {block}")]
    PartialBlock {
        /// The activation type.
        ty: GgmlType,
        /// Columns asked for.
        cols: usize,
        /// Elements per block of `ty`.
        block: usize,
    },
    /// `x` does not hold `rows * cols` values.
    #[error("input holds {len} values, expected {rows} rows x {cols} columns")]
    Shape {
        /// Length of the input.
        len: usize,
        /// Rows asked for.
        rows: usize,
        /// Columns asked for.
        cols: usize,
    },
}

/// Whether `ty` can hold activations.
pub fn is_activation_type(ty: GgmlType) -> bool {
    matches!(
        ty,
        GgmlType::F32
            | GgmlType::F16
            | GgmlType::BF16
            | GgmlType::Q8_0
            | GgmlType::Q8_1
            | GgmlType::Q8_K
    )
}

/// `rows x cols` activations stored in one activation type, row after row. Build one per layer
/// input and activation type, and reuse it: [`QuantizedActivations::quantize`] keeps the buffer.
#[derive(Clone, Debug)]
pub struct QuantizedActivations {
    ty: GgmlType,
    rows: usize,
    cols: usize,
    row_bytes: usize,
    data: Vec<u8>,
}

impl Default for QuantizedActivations {
    fn default() -> Self {
        Self::new()
    }
}

impl QuantizedActivations {
    /// An empty set (zero rows of F32).
    pub fn new() -> Self {
        QuantizedActivations {
            ty: GgmlType::F32,
            rows: 0,
            cols: 0,
            row_bytes: 0,
            data: Vec::new(),
        }
    }

    /// Replaces the contents with `x` (`rows` rows of `cols`, row-major) converted to `ty`.
    /// Reuses the buffer; rows are converted in parallel on the current rayon pool.
    pub fn quantize(
        &mut self,
        ty: GgmlType,
        x: &[f32],
        rows: usize,
        cols: usize,
    ) -> Result<(), ActivationError> {
        if !is_activation_type(ty) {
            return Err(ActivationError::NotAnActivationType(ty));
        }
        let block = ty.block_size();
        if cols % block != 0 {
            return Err(ActivationError::PartialBlock { ty, cols, block });
        }
        if rows.checked_mul(cols) != Some(x.len()) {
            return Err(ActivationError::Shape {
                len: x.len(),
                rows,
                cols,
            });
        }
        let row_bytes = cols / block * ty.type_size();
        self.ty = ty;
        self.rows = rows;
        self.cols = cols;
        self.row_bytes = row_bytes;
        self.data.clear();
        self.data.resize(rows * row_bytes, 0);
        if rows == 0 || cols == 0 {
            return Ok(());
        }
        let f = |(dst, src): (&mut [u8], &[f32])| quantize_row_into(ty, src, dst);
        // Parallel only when there is enough work to pay for the fork.
        if rows > 1 && rows * cols >= 16 * 1024 {
            self.data
                .par_chunks_mut(row_bytes)
                .zip(x.par_chunks(cols))
                .for_each(f);
        } else {
            self.data
                .chunks_mut(row_bytes)
                .zip(x.chunks(cols))
                .for_each(f);
        }
        Ok(())
    }

    /// The activation type.
    pub fn ty(&self) -> GgmlType {
        self.ty
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Elements per row.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Bytes per row.
    pub fn row_bytes(&self) -> usize {
        self.row_bytes
    }

    /// The bytes of row `r`.
    ///
    /// # Panics
    /// When `r >= self.rows()`.
    pub fn row(&self, r: usize) -> &[u8] {
        &self.data[r * self.row_bytes..(r + 1) * self.row_bytes]
    }

    /// All rows' bytes.
    pub fn data(&self) -> &[u8] {
        &self.data
    }
}

/// Converts one row `x` into `dst` (exactly the row's bytes of type `ty`). `ty` must be an
/// activation type and `x.len()` a whole number of its blocks.
fn quantize_row_into(ty: GgmlType, x: &[f32], dst: &mut [u8]) {
    match ty {
        GgmlType::F32 => {
            for (d, v) in dst.chunks_exact_mut(4).zip(x) {
                d.copy_from_slice(&v.to_le_bytes());
            }
        }
        GgmlType::F16 => {
            for (d, v) in dst.chunks_exact_mut(2).zip(x) {
                d.copy_from_slice(&half::f16::from_f32(*v).to_bits().to_le_bytes());
            }
        }
        GgmlType::BF16 => {
            for (d, v) in dst.chunks_exact_mut(2).zip(x) {
                d.copy_from_slice(&f32_to_bf16_bits(*v).to_le_bytes());
            }
        }
        GgmlType::Q8_0 => quantize_row_q8_0(
            x,
            as_blocks_mut(dst).expect("row bytes are whole Q8_0 blocks"),
        ),
        GgmlType::Q8_1 => quantize_row_q8_1(
            x,
            as_blocks_mut(dst).expect("row bytes are whole Q8_1 blocks"),
        ),
        GgmlType::Q8_K => quantize_row_q8_k(
            x,
            as_blocks_mut(dst).expect("row bytes are whole Q8_K blocks"),
        ),
        other => unreachable!("{other} is not an activation type (checked by the caller)"),
    }
}

/// `f32` to bfloat16 bits, rounding to nearest even, NaN kept and made quiet
/// (ggml's `ggml_compute_fp32_to_bf16`).
#[inline]
pub fn f32_to_bf16_bits(v: f32) -> u16 {
    let u = v.to_bits();
    if u & 0x7fff_ffff > 0x7f80_0000 {
        return ((u >> 16) | 64) as u16;
    }
    ((u + (0x7fff + ((u >> 16) & 1))) >> 16) as u16
}

/// Largest absolute value, `0` for an empty slice.
#[inline]
fn amax(x: &[f32]) -> f32 {
    x.iter().fold(0.0f32, |m, v| m.max(v.abs()))
}

/// `v.round_ties_even()` without its libm call (on baseline x86-64 it is `rintf`, which cost
/// 5% of a prompt's time): for |v| < 2^23, |v| + 2^23 lies where floats are one apart, so the
/// addition rounds to an integer, half to even; larger magnitudes are integers already.
#[inline]
fn rint(v: f32) -> f32 {
    const TWO_23: f32 = 8_388_608.0;
    let a = v.abs();
    if a < TWO_23 {
        ((a + TWO_23) - TWO_23).copysign(v)
    } else {
        v
    }
}

/// Rounds `v` to the nearest integer (ties to even) and saturates to `i8`, as
/// `vcvtps2dq` + `vpackssdw` + `vpacksswb` do.
#[inline]
fn round_sat_i8(v: f32) -> i8 {
    rint(v).clamp(-128.0, 127.0) as i8
}

/// Quantizes `x` (32 values per block) to Q8_0 as ggml's x86 `quantize_row_q8_0` does.
///
/// # Panics
/// When `x.len() != 32 * y.len()`.
pub fn quantize_row_q8_0(x: &[f32], y: &mut [BlockQ8_0]) {
    assert_eq!(x.len(), y.len() * 32, "Q8_0 row length");
    let block = q8_block_fn();
    for (xb, yb) in x.chunks_exact(32).zip(y.iter_mut()) {
        let (m, _) = block(xb.try_into().expect("32 values"), &mut yb.qs);
        yb.d = F16Le::from_f32(m / 127.0);
    }
}

/// Quantizes `x` (32 values per block) to Q8_1 as ggml's x86 `quantize_row_q8_1` does:
/// Q8_0's quants plus `s = f16(d * sum(q))`.
///
/// # Panics
/// When `x.len() != 32 * y.len()`.
pub fn quantize_row_q8_1(x: &[f32], y: &mut [BlockQ8_1]) {
    assert_eq!(x.len(), y.len() * 32, "Q8_1 row length");
    let block = q8_block_fn();
    for (xb, yb) in x.chunks_exact(32).zip(y.iter_mut()) {
        let (m, sum) = block(xb.try_into().expect("32 values"), &mut yb.qs);
        let d = m / 127.0;
        yb.d = F16Le::from_f32(d);
        yb.s = F16Le::from_f32(d * sum as f32);
    }
}

/// One block of Q8_0 / Q8_1: the quants `round(v · 127 / amax)` into `qs`; returns `amax`
/// and the sum of the quants.
type Q8BlockFn = fn(&[f32; 32], &mut [i8; 32]) -> (f32, i32);

/// The [`Q8BlockFn`] for the process's SIMD level, chosen once per row.
fn q8_block_fn() -> Q8BlockFn {
    #[cfg(target_arch = "x86_64")]
    if crate::simd::simd_level() == crate::simd::SimdLevel::Avx512 {
        return |x, qs| {
            // SAFETY: handed out only when the process's SIMD level is AVX-512, which
            // includes every feature the function is compiled with.
            unsafe { x86::q8_block(x, qs) }
        };
    }
    q8_block_scalar
}

/// [`Q8BlockFn`] in portable code (the reference its AVX-512 form is tested against).
fn q8_block_scalar(x: &[f32; 32], qs: &mut [i8; 32]) -> (f32, i32) {
    let m = amax(x);
    let id = if m != 0.0 { 127.0 / m } else { 0.0 };
    let mut sum = 0i32;
    for (q, v) in qs.iter_mut().zip(x) {
        *q = round_sat_i8(v * id);
        sum += i32::from(*q);
    }
    (m, sum)
}

/// Quantizes `x` (256 values per block) to Q8_K as ggml's `quantize_row_q8_K_ref` does.
/// An all-zero block gets `d = 0`, zero quants and zero sums.
///
/// # Panics
/// When `x.len() != 256 * y.len()`.
pub fn quantize_row_q8_k(x: &[f32], y: &mut [BlockQ8K]) {
    assert_eq!(x.len(), y.len() * QK_K, "Q8_K row length");
    #[cfg(target_arch = "x86_64")]
    if crate::simd::simd_level() == crate::simd::SimdLevel::Avx512 {
        for (xb, yb) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
            // SAFETY: the process's SIMD level is AVX-512, which includes every feature the
            // function is compiled with.
            unsafe { x86::q8_k_block(xb.try_into().expect("256 values"), yb) };
        }
        return;
    }
    quantize_row_q8_k_scalar(x, y)
}

/// [`quantize_row_q8_k`] in portable code (the reference its AVX-512 form is tested against).
pub fn quantize_row_q8_k_scalar(x: &[f32], y: &mut [BlockQ8K]) {
    assert_eq!(x.len(), y.len() * QK_K, "Q8_K row length");
    for (xb, yb) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
        let mut max = 0.0f32;
        let mut am = 0.0f32;
        for &v in xb {
            if v.abs() > am {
                am = v.abs();
                max = v;
            }
        }
        if am == 0.0 {
            *yb = bytemuck::Zeroable::zeroed();
            continue;
        }
        let iscale = -127.0 / max;
        for (q, v) in yb.qs.iter_mut().zip(xb) {
            // |iscale * v| <= 127 by construction; ggml clamps the top only.
            *q = (rint(iscale * v) as i32).min(127) as i8;
        }
        for (s, g) in yb.bsums.iter_mut().zip(yb.qs.chunks_exact(16)) {
            *s = I16Le::new(g.iter().map(|&q| i16::from(q)).sum());
        }
        yb.d = F32Le::new(1.0 / iscale);
    }
}

/// Q8_K with AVX-512: the scalar code's bytes, sixteen values per instruction.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::incompatible_msrv)] // AVX-512 intrinsics, see `dot/x86/mod.rs`
mod x86 {
    use core::arch::x86_64::*;

    use crate::blocks::{BlockQ8K, F32Le, I16Le};

    /// `super::q8_block_scalar`'s results with AVX-512.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")]
    pub(super) fn q8_block(x: &[f32; 32], qs: &mut [i8; 32]) -> (f32, i32) {
        // SAFETY: `x` is 32 readable floats; unaligned loads.
        let (a, b) = unsafe {
            (
                _mm512_loadu_ps(x.as_ptr()),
                _mm512_loadu_ps(x.as_ptr().add(16)),
            )
        };
        // `f32::max` ignores NaN; so does `vmaxps` with the running maximum second.
        let m = _mm512_reduce_max_ps(_mm512_max_ps(
            _mm512_abs_ps(b),
            _mm512_max_ps(_mm512_abs_ps(a), _mm512_setzero_ps()),
        ));
        let id = _mm512_set1_ps(if m != 0.0 { 127.0 / m } else { 0.0 });
        let q = |v: __m512| -> __m512i {
            let p = _mm512_mul_ps(v, id);
            // Round half to even; NaN lanes give 0 as the scalar `as i8` does; the rest lie
            // within ±127 (clamped anyway, as the scalar code saturates).
            let ordered = _mm512_cmp_ps_mask::<_CMP_ORD_Q>(p, p);
            let r = _mm512_maskz_cvtps_epi32(ordered, p);
            _mm512_max_epi32(
                _mm512_min_epi32(r, _mm512_set1_epi32(127)),
                _mm512_set1_epi32(-128),
            )
        };
        let (qa, qb) = (q(a), q(b));
        // SAFETY: `qs` is 32 writable bytes; unaligned stores of 16 each.
        unsafe {
            _mm_storeu_si128(qs.as_mut_ptr().cast(), _mm512_cvtepi32_epi8(qa));
            _mm_storeu_si128(qs.as_mut_ptr().add(16).cast(), _mm512_cvtepi32_epi8(qb));
        }
        (m, _mm512_reduce_add_epi32(_mm512_add_epi32(qa, qb)))
    }

    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")]
    pub(super) fn q8_k_block(x: &[f32; 256], y: &mut BlockQ8K) {
        let ld = |i: usize| -> __m512 {
            // SAFETY: i < 16, so floats 16i..16i + 16 are inside `x`; unaligned load.
            unsafe { _mm512_loadu_ps(x.as_ptr().add(16 * i)) }
        };
        // The largest magnitude; NaNs never win (`vmaxps` returns its second operand, the
        // running maximum, when either is NaN), as the scalar loop's `>` skips them.
        let mut m = _mm512_setzero_ps();
        for i in 0..16 {
            m = _mm512_max_ps(_mm512_abs_ps(ld(i)), m);
        }
        let am = _mm512_reduce_max_ps(m);
        if am == 0.0 {
            *y = bytemuck::Zeroable::zeroed();
            return;
        }
        // The first element of that magnitude gives the sign, as in the scalar loop.
        let amv = _mm512_set1_ps(am);
        let mut max = am;
        for i in 0..16 {
            let hit = _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(_mm512_abs_ps(ld(i)), amv);
            if hit != 0 {
                max = x[16 * i + hit.trailing_zeros() as usize];
                break;
            }
        }
        let iscale = -127.0 / max;
        let s = _mm512_set1_ps(iscale);
        let top = _mm512_set1_epi32(127);
        for i in 0..16 {
            // Round half to even (the default rounding mode), then clamp the top only. A NaN
            // product converts to i32::MIN, whose low byte 0 is what the scalar `as` gives.
            let q = _mm512_min_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(s, ld(i))), top);
            let b = _mm512_cvtepi32_epi8(q);
            // SAFETY: `qs` is 256 bytes and i < 16: bytes 16i..16i + 16; unaligned store.
            unsafe { _mm_storeu_si128(y.qs.as_mut_ptr().add(16 * i).cast(), b) };
            let sum = _mm512_reduce_add_epi32(_mm512_cvtepi8_epi32(b));
            y.bsums[i] = I16Le::new(sum as i16);
        }
        y.d = F32Le::new(1.0 / iscale);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rint_is_round_ties_even() {
        let mut x = 0x1234_5678u32;
        let mut vals: Vec<f32> = vec![0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 126.5, -127.5, 4_194_303.5];
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            vals.push(f32::from_bits(x));
            vals.push((x % 100_000) as f32 / 64.0 - 700.0);
        }
        for v in vals {
            let (a, b) = (rint(v), v.round_ties_even());
            assert!(a == b || (a.is_nan() && b.is_nan()), "{v}: {a} vs {b}");
        }
    }

    #[test]
    fn q8_0_rounds_half_to_even_with_127_over_amax() {
        // amax 127 makes the multiplier exactly 1, so the quants are the rounded inputs.
        let mut x = [0.0f32; 32];
        x[0] = 127.0;
        x[1] = 2.5;
        x[2] = -2.5;
        x[3] = 3.5;
        x[4] = -0.5;
        let mut y = [BlockQ8_0::zeroed(); 1];
        quantize_row_q8_0(&x, &mut y);
        assert_eq!(y[0].d.to_f32(), 1.0);
        assert_eq!(&y[0].qs[..5], &[127, 2, -2, 4, 0]);
    }

    #[test]
    fn q8_1_sum_and_zero_block() {
        let x: Vec<f32> = (0..64)
            .map(|i| if i < 32 { 0.0 } else { (i - 40) as f32 })
            .collect();
        let mut y = [BlockQ8_1::zeroed(); 2];
        quantize_row_q8_1(&x, &mut y);
        assert_eq!(y[0].d.to_bits(), 0);
        assert_eq!(y[0].s.to_bits(), 0);
        assert!(y[0].qs.iter().all(|&q| q == 0));
        let sum: i32 = y[1].qs.iter().map(|&q| i32::from(q)).sum();
        let d = 23.0f32 / 127.0;
        assert_eq!(y[1].s, F16Le::from_f32(d * sum as f32));
        assert_eq!(y[1].qs[31], 127);
    }

    #[test]
    fn q8_k_uses_signed_max() {
        let mut x = [0.5f32; 256];
        x[7] = 4.0;
        x[9] = -2.0;
        let mut y = [BlockQ8K::zeroed(); 1];
        quantize_row_q8_k(&x, &mut y);
        // The largest magnitude is +4, so iscale = -127/4 and the quants are negated.
        assert_eq!(y[0].qs[7], -127);
        assert_eq!(y[0].qs[9], 64); // -31.75 * -2 = 63.5 -> 64 (even)
        assert_eq!(y[0].d.get(), 1.0 / (-127.0f32 / 4.0));
        let s0: i16 = y[0].qs[..16].iter().map(|&q| i16::from(q)).sum();
        assert_eq!(y[0].bsums[0].get(), s0);
        // An all-zero block.
        let mut z = [BlockQ8K::zeroed(); 1];
        z[0].bsums[3] = I16Le::new(5);
        quantize_row_q8_k(&[0.0; 256], &mut z);
        assert_eq!(z[0], BlockQ8K::zeroed());
    }

    #[test]
    fn q8_block_simd_equals_scalar() {
        let mut r = 0x1357_9bdfu32;
        let mut next = || {
            r ^= r << 13;
            r ^= r >> 17;
            r ^= r << 5;
            r
        };
        let mut blocks: Vec<[f32; 32]> = (0..2000)
            .map(|k| {
                let scale = [1e-30, 1e-3, 1.0, 100.0, 3e37][k % 5];
                std::array::from_fn(|_| ((next() % 20001) as f32 / 10000.0 - 1.0) * scale)
            })
            .collect();
        blocks.push([0.0; 32]);
        blocks.push(std::array::from_fn(|i| (i as f32 - 16.0) / 2.0));
        let mut odd = [1.5f32; 32];
        odd[3] = f32::NAN;
        blocks.push(odd);
        odd[9] = f32::INFINITY;
        blocks.push(odd);
        odd[9] = f32::NEG_INFINITY;
        blocks.push(odd);
        for x in &blocks {
            let (mut a, mut b) = ([0i8; 32], [0i8; 32]);
            let ra = q8_block_fn()(x, &mut a);
            let rb = q8_block_scalar(x, &mut b);
            assert_eq!(a, b, "{:?}", &x[..4]);
            assert_eq!(
                (ra.0.to_bits(), ra.1),
                (rb.0.to_bits(), rb.1),
                "{:?}",
                &x[..4]
            );
        }
    }

    #[test]
    fn q8_k_simd_equals_scalar_bytes() {
        let mut r = 0x2468_ace1u32;
        let mut next = || {
            r ^= r << 13;
            r ^= r >> 17;
            r ^= r << 5;
            r
        };
        let mut rows: Vec<Vec<f32>> = Vec::new();
        for k in 0..200 {
            let scale = [1e-30, 1e-3, 1.0, 100.0, 3e37][k % 5];
            rows.push(
                (0..512)
                    .map(|_| (next() % 20001) as f32 / 10000.0 - 1.0)
                    .map(|v| v * scale)
                    .collect(),
            );
        }
        // Ties in magnitude with opposite signs (the first wins), halves, zeros, non-finite.
        let mut tie = vec![0.25f32; 256];
        tie[3] = -2.0;
        tie[200] = 2.0;
        rows.push(tie.clone());
        tie[3] = 2.0;
        tie[200] = -2.0;
        rows.push(tie);
        rows.push((0..256).map(|i| (i as f32 - 128.0) / 2.0).collect());
        rows.push(vec![0.0; 256]);
        rows.push((0..256).map(|i| if i == 5 { -0.0 } else { 0.0 }).collect());
        let mut odd = vec![1.0f32; 256];
        odd[17] = f32::NAN;
        rows.push(odd.clone());
        odd[40] = f32::INFINITY;
        rows.push(odd.clone());
        odd[41] = f32::NEG_INFINITY;
        rows.push(odd);
        for x in &rows {
            let n = x.len() / 256;
            let mut a = vec![BlockQ8K::zeroed(); n];
            let mut b = vec![BlockQ8K::zeroed(); n];
            quantize_row_q8_k(x, &mut a);
            quantize_row_q8_k_scalar(x, &mut b);
            for (u, v) in a.iter().zip(&b) {
                assert_eq!(
                    bytemuck::bytes_of(u),
                    bytemuck::bytes_of(v),
                    "{:?}",
                    &x[..4]
                );
            }
        }
    }

    #[test]
    fn bf16_rounding_and_nan() {
        assert_eq!(f32_to_bf16_bits(1.0), 0x3f80);
        // 1 + 2^-8 is a tie between 1 and 1 + 2^-7: even wins.
        assert_eq!(f32_to_bf16_bits(1.0 + 2f32.powi(-8)), 0x3f80);
        assert_eq!(f32_to_bf16_bits(1.0 + 3.0 * 2f32.powi(-8)), 0x3f82);
        assert_eq!(f32_to_bf16_bits(f32::from_bits(0x7f80_0001)), 0x7fc0);
    }

    #[test]
    fn quantize_validates_shapes() {
        let mut a = QuantizedActivations::new();
        assert_eq!(
            a.quantize(GgmlType::Q4_0, &[0.0; 32], 1, 32),
            Err(ActivationError::NotAnActivationType(GgmlType::Q4_0))
        );
        assert!(matches!(
            a.quantize(GgmlType::Q8_K, &[0.0; 32], 1, 32),
            Err(ActivationError::PartialBlock { .. })
        ));
        assert!(matches!(
            a.quantize(GgmlType::Q8_0, &[0.0; 64], 3, 32),
            Err(ActivationError::Shape { .. })
        ));
        a.quantize(GgmlType::Q8_0, &[1.0; 128], 2, 64).unwrap();
        assert_eq!((a.rows(), a.cols(), a.row_bytes()), (2, 64, 68));
        assert_eq!(a.row(1).len(), 68);
        a.quantize(GgmlType::F16, &[1.0; 6], 2, 3).unwrap();
        assert_eq!(a.row(1), &[0x00, 0x3c, 0x00, 0x3c, 0x00, 0x3c]);
    }

    use bytemuck::Zeroable;
}
