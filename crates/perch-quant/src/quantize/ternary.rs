//! The reference quantizers of the ternary types TQ1_0 and TQ2_0, bit-exact with ggml's
//! `quantize_row_tq1_0_ref` / `quantize_row_tq2_0_ref`. Both ignore importance weights, as
//! ggml's do.

use crate::blocks::*;
use crate::types::QK_K;

/// `round(x / d) + 1` in {0, 1, 2} (half away from zero, as `lroundf`). Only a scale whose
/// reciprocal overflows (a subnormal `amax`) can push `x / d` out of [-1, 1]; the clamp keeps
/// such blocks well-formed where ggml's result is undefined.
#[inline]
fn trit(x: f32, id: f32) -> u8 {
    (((x * id).round() as i32).clamp(-1, 1) + 1) as u8
}

/// Five (or four) trits as a base-3 number scaled to a byte: `ceil(q * 256 / 243)`.
#[inline]
fn pack(q: u8) -> u8 {
    (q as u16 * 256).div_ceil(243) as u8
}

fn scale(x: &[f32]) -> (f32, f32) {
    let amax = x.iter().fold(0.0f32, |a, &v| a.max(v.abs()));
    (amax, if amax != 0.0 { 1.0 / amax } else { 0.0 })
}

/// TQ1_0: `d = amax`, trits `round(x / d)` packed five per byte (four in `qh`).
pub fn quantize_tq1_0(src: &[f32], dst: &mut [BlockTq1_0]) {
    debug_assert_eq!(src.len(), dst.len() * QK_K);
    for (x, y) in src.chunks_exact(QK_K).zip(dst.iter_mut()) {
        let (d, id) = scale(x);
        y.d = F16Le::from_f32(d);
        // qs[0..32]: elements m + 32 n of x[0..160]; qs[32..48]: m + 16 n of x[160..240].
        for (group, (base, width)) in [(0usize, (0usize, 32usize)), (32, (160, 16))] {
            for m in 0..width {
                let mut q = 0u8;
                for n in 0..5 {
                    q = q * 3 + trit(x[base + m + n * width], id);
                }
                y.qs[group + m] = pack(q);
            }
        }
        // qh[0..4]: elements j + 4 m of x[240..256], first value in the top trit.
        for j in 0..4 {
            let mut q = 0u8;
            for m in 0..4 {
                q = q * 3 + trit(x[240 + j + 4 * m], id);
            }
            y.qh[j] = pack(q * 3);
        }
    }
}

/// TQ2_0: `d = amax`, `q = round(x / d) + 1` in 2 bits.
pub fn quantize_tq2_0(src: &[f32], dst: &mut [BlockTq2_0]) {
    debug_assert_eq!(src.len(), dst.len() * QK_K);
    for (x, y) in src.chunks_exact(QK_K).zip(dst.iter_mut()) {
        let (d, id) = scale(x);
        y.d = F16Le::from_f32(d);
        for (j, xs) in x.chunks_exact(128).enumerate() {
            for m in 0..32 {
                let mut q = 0u8;
                for n in 0..4 {
                    q += (trit(xs[m + 32 * n], id) & 3) << (2 * n);
                }
                y.qs[32 * j + m] = q;
            }
        }
    }
}
