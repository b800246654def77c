//! Dequantizers of the K-quants (256-element super-blocks) and the ternary types.
//!
//! Same contract as the legacy ones: `dst` holds `blocks.len() * 256` values.

use crate::blocks::*;
use crate::types::QK_K;

/// The 6-bit scale and min of sub-block `j` (0..8) of a Q4_K/Q5_K block, as ggml's
/// `get_scale_min_k4`.
#[inline]
pub fn scale_min_k4(j: usize, q: &[u8; K_SCALE_SIZE]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// Q2_K: `x = d * (sc & 15) * q - dmin * (sc >> 4)` per sub-block of 16.
pub fn dequantize_q2_k(blocks: &[BlockQ2K], dst: &mut [f32]) {
    debug_assert_eq!(dst.len(), blocks.len() * QK_K);
    for (b, y) in blocks.iter().zip(dst.chunks_exact_mut(QK_K)) {
        let d = b.d.to_f32();
        let min = b.dmin.to_f32();
        let mut is = 0;
        let mut out = y.iter_mut();
        for q in b.qs.chunks_exact(32) {
            for shift in [0, 2, 4, 6] {
                for half in [&q[..16], &q[16..]] {
                    let sc = b.scales[is];
                    is += 1;
                    let dl = d * (sc & 0x0f) as f32;
                    let ml = min * (sc >> 4) as f32;
                    for &ql in half {
                        let v = dl * ((ql >> shift) & 3) as f32 - ml;
                        *out.next().expect("256 outputs") = v;
                    }
                }
            }
        }
    }
}

/// The sixteen 6-bit scales of a Q3_K block (before subtracting 32).
#[inline]
pub(crate) fn q3k_scales(packed: &[u8; 12]) -> [i8; 16] {
    let mut out = [0i8; 16];
    for j in 0..16 {
        let low = if j < 8 {
            packed[j] & 0x0f
        } else {
            packed[j - 8] >> 4
        };
        let high = (packed[8 + j % 4] >> (2 * (j / 4))) & 3;
        out[j] = (low | (high << 4)) as i8;
    }
    out
}

/// Q3_K: `x = d * (sc - 32) * (q - (hbit ? 0 : 4))` per sub-block of 16.
pub fn dequantize_q3_k(blocks: &[BlockQ3K], dst: &mut [f32]) {
    debug_assert_eq!(dst.len(), blocks.len() * QK_K);
    for (b, y) in blocks.iter().zip(dst.chunks_exact_mut(QK_K)) {
        let d_all = b.d.to_f32();
        let scales = q3k_scales(&b.scales);
        let mut is = 0;
        let mut m = 1u8;
        let mut out = y.iter_mut();
        for q in b.qs.chunks_exact(32) {
            for shift in [0, 2, 4, 6] {
                for off in [0, 16] {
                    let dl = d_all * (scales[is] as i32 - 32) as f32;
                    is += 1;
                    for (&ql, &hm) in q[off..off + 16].iter().zip(&b.hmask[off..off + 16]) {
                        let lo = ((ql >> shift) & 3) as i32;
                        let hi = if hm & m != 0 { 0 } else { 4 };
                        *out.next().expect("256 outputs") = dl * (lo - hi) as f32;
                    }
                }
                m = m.wrapping_shl(1);
            }
        }
    }
}

/// Q4_K: `x = d * sc * q - dmin * m` per sub-block of 32.
pub fn dequantize_q4_k(blocks: &[BlockQ4K], dst: &mut [f32]) {
    debug_assert_eq!(dst.len(), blocks.len() * QK_K);
    for (b, y) in blocks.iter().zip(dst.chunks_exact_mut(QK_K)) {
        let d = b.d.to_f32();
        let min = b.dmin.to_f32();
        for (k, (q, y)) in
            b.qs.chunks_exact(32)
                .zip(y.chunks_exact_mut(64))
                .enumerate()
        {
            let (sc1, m1) = scale_min_k4(2 * k, &b.scales);
            let (sc2, m2) = scale_min_k4(2 * k + 1, &b.scales);
            let (d1, m1) = (d * sc1 as f32, min * m1 as f32);
            let (d2, m2) = (d * sc2 as f32, min * m2 as f32);
            let (lo, hi) = y.split_at_mut(32);
            for l in 0..32 {
                lo[l] = d1 * (q[l] & 0x0f) as f32 - m1;
                hi[l] = d2 * (q[l] >> 4) as f32 - m2;
            }
        }
    }
}

/// Q5_K: `x = d * sc * q - dmin * m` per sub-block of 32, 5-bit `q`.
pub fn dequantize_q5_k(blocks: &[BlockQ5K], dst: &mut [f32]) {
    debug_assert_eq!(dst.len(), blocks.len() * QK_K);
    for (b, y) in blocks.iter().zip(dst.chunks_exact_mut(QK_K)) {
        let d = b.d.to_f32();
        let min = b.dmin.to_f32();
        for (k, (ql, y)) in
            b.qs.chunks_exact(32)
                .zip(y.chunks_exact_mut(64))
                .enumerate()
        {
            let (sc1, m1) = scale_min_k4(2 * k, &b.scales);
            let (sc2, m2) = scale_min_k4(2 * k + 1, &b.scales);
            let (d1, m1) = (d * sc1 as f32, min * m1 as f32);
            let (d2, m2) = (d * sc2 as f32, min * m2 as f32);
            let u1 = 1u8 << (2 * k);
            let u2 = 2u8 << (2 * k);
            let (lo, hi) = y.split_at_mut(32);
            for l in 0..32 {
                let h1 = if b.qh[l] & u1 != 0 { 16 } else { 0 };
                let h2 = if b.qh[l] & u2 != 0 { 16 } else { 0 };
                lo[l] = d1 * ((ql[l] & 0x0f) + h1) as f32 - m1;
                hi[l] = d2 * ((ql[l] >> 4) + h2) as f32 - m2;
            }
        }
    }
}

/// Q6_K: `x = d * sc * (q - 32)` per sub-block of 16.
pub fn dequantize_q6_k(blocks: &[BlockQ6K], dst: &mut [f32]) {
    debug_assert_eq!(dst.len(), blocks.len() * QK_K);
    for (b, y) in blocks.iter().zip(dst.chunks_exact_mut(QK_K)) {
        let d = b.d.to_f32();
        for n in 0..2 {
            let ql = &b.ql[64 * n..64 * n + 64];
            let qh = &b.qh[32 * n..32 * n + 32];
            let sc = &b.scales[8 * n..8 * n + 8];
            let y = &mut y[128 * n..128 * n + 128];
            for l in 0..32 {
                let is = l / 16;
                let q1 = ((ql[l] & 0x0f) | ((qh[l] & 3) << 4)) as i32 - 32;
                let q2 = ((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
                let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
                let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
                y[l] = d * sc[is] as f32 * q1 as f32;
                y[l + 32] = d * sc[is + 2] as f32 * q2 as f32;
                y[l + 64] = d * sc[is + 4] as f32 * q3 as f32;
                y[l + 96] = d * sc[is + 6] as f32 * q4 as f32;
            }
        }
    }
}

/// Q8_K: `x = d * q` with an `f32` scale.
pub fn dequantize_q8_k(blocks: &[BlockQ8K], dst: &mut [f32]) {
    debug_assert_eq!(dst.len(), blocks.len() * QK_K);
    for (b, y) in blocks.iter().zip(dst.chunks_exact_mut(QK_K)) {
        let d = b.d.get();
        for (y, &q) in y.iter_mut().zip(&b.qs) {
            *y = d * q as f32;
        }
    }
}

/// The trit in "digit" position `n` of a TQ1_0 byte: `((q * 3^n mod 256) * 3) >> 8`.
#[inline]
fn trit(q: u8, pow3: u8) -> i32 {
    let q = q.wrapping_mul(pow3);
    ((q as u16 * 3) >> 8) as i32
}

/// TQ1_0: `x = (t - 1) * d` with trits packed five (then four) per byte.
pub fn dequantize_tq1_0(blocks: &[BlockTq1_0], dst: &mut [f32]) {
    debug_assert_eq!(dst.len(), blocks.len() * QK_K);
    const POW3: [u8; 5] = [1, 3, 9, 27, 81];
    for (b, y) in blocks.iter().zip(dst.chunks_exact_mut(QK_K)) {
        let d = b.d.to_f32();
        let mut out = y.iter_mut();
        let mut put = |v: i32| *out.next().expect("256 outputs") = (v - 1) as f32 * d;
        // 48 bytes of qs: one group of 32, then one of 16; then the 4 bytes of qh.
        for group in [&b.qs[..32], &b.qs[32..48]] {
            for &p in &POW3 {
                for &q in group {
                    put(trit(q, p));
                }
            }
        }
        for &p in &POW3[..4] {
            for &q in &b.qh {
                put(trit(q, p));
            }
        }
    }
}

/// TQ2_0: `x = (q - 1) * d` with 2-bit `q`.
pub fn dequantize_tq2_0(blocks: &[BlockTq2_0], dst: &mut [f32]) {
    debug_assert_eq!(dst.len(), blocks.len() * QK_K);
    for (b, y) in blocks.iter().zip(dst.chunks_exact_mut(QK_K)) {
        let d = b.d.to_f32();
        let mut out = y.iter_mut();
        for q in b.qs.chunks_exact(32) {
            for l in 0..4 {
                for &qm in q {
                    let v = ((qm >> (2 * l)) & 3) as i32 - 1;
                    *out.next().expect("256 outputs") = v as f32 * d;
                }
            }
        }
    }
}
