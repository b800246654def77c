//! Dequantizers of the float types and the 32/64/128-element block types.
//!
//! Each per-type function writes `blocks.len() * block_size` values into `dst`; `dst` must be
//! that long (checked in debug builds; in release, a shorter `dst` receives the whole blocks
//! that fit and nothing else). [`super::dequantize_row`] checks the sizes and returns an error.

use crate::blocks::*;
use crate::tables::KVALUES_MXFP4;

/// Little-endian `f32` bytes to `f32`.
pub fn dequantize_f32(src: &[u8], dst: &mut [f32]) {
    debug_assert_eq!(src.len(), dst.len() * 4);
    for (y, b) in dst.iter_mut().zip(src.chunks_exact(4)) {
        *y = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    }
}

/// Little-endian `f64` bytes to `f32` (rounded to nearest).
pub(crate) fn dequantize_f64(src: &[u8], dst: &mut [f32]) {
    debug_assert_eq!(src.len(), dst.len() * 8);
    for (y, b) in dst.iter_mut().zip(src.chunks_exact(8)) {
        *y = f64::from_le_bytes(b.try_into().expect("8-byte chunk")) as f32;
    }
}

/// Exact IEEE half to `f32` conversion without branches (the bit manipulation of the
/// `FP16` library: normal values by rescaling the shifted bits, subnormals by a magic-number
/// subtraction), so the loop below vectorizes on any x86-64 or AArch64.
#[inline(always)]
fn f16_bits_to_f32(h: u16) -> f32 {
    let w = (h as u32) << 16;
    let sign = w & 0x8000_0000;
    let two_w = w.wrapping_add(w);
    // Normal, infinite and NaN values: move exponent and mantissa into place, then scale by
    // 2^-112 to turn the f16 exponent bias (15) into the f32 one (127).
    let normalized = f32::from_bits((two_w >> 4) + (0xe0 << 23)) * f32::from_bits(0x0780_0000);
    // Subnormals (and zero): the mantissa as the low bits of 0.5's significand, minus 0.5.
    let denormalized = f32::from_bits((two_w >> 17) | (126 << 23)) - 0.5;
    let bits = if two_w < (1 << 27) {
        denormalized.to_bits()
    } else {
        normalized.to_bits()
    };
    f32::from_bits(sign | bits)
}

/// Little-endian IEEE half bytes to `f32` (exact).
pub fn dequantize_f16(src: &[u8], dst: &mut [f32]) {
    debug_assert_eq!(src.len(), dst.len() * 2);
    for (y, b) in dst.iter_mut().zip(src.chunks_exact(2)) {
        *y = f16_bits_to_f32(u16::from_le_bytes([b[0], b[1]]));
    }
}

/// Little-endian bfloat16 bytes to `f32` (exact: the bits shifted up by 16).
pub fn dequantize_bf16(src: &[u8], dst: &mut [f32]) {
    debug_assert_eq!(src.len(), dst.len() * 2);
    for (y, b) in dst.iter_mut().zip(src.chunks_exact(2)) {
        *y = f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16);
    }
}

/// Q1_0: `x = bit ? d : -d`.
pub fn dequantize_q1_0(blocks: &[BlockQ1_0], dst: &mut [f32]) {
    debug_assert_eq!(dst.len(), blocks.len() * QK1_0);
    for (b, y) in blocks.iter().zip(dst.chunks_exact_mut(QK1_0)) {
        let d = b.d.to_f32();
        let neg_d = -d;
        for (j, y) in y.iter_mut().enumerate() {
            let bit = (b.qs[j / 8] >> (j % 8)) & 1;
            *y = if bit != 0 { d } else { neg_d };
        }
    }
}

/// Q2_0: `x = (q - 1) * d`, element `j` in bits `2 * (j % 4)` of byte `j / 4`.
pub fn dequantize_q2_0(blocks: &[BlockQ2_0], dst: &mut [f32]) {
    debug_assert_eq!(dst.len(), blocks.len() * QK2_0);
    for (b, y) in blocks.iter().zip(dst.chunks_exact_mut(QK2_0)) {
        let d = b.d.to_f32();
        for (j, y) in y.iter_mut().enumerate() {
            let q = (b.qs[j / 4] >> ((j % 4) * 2)) & 3;
            *y = (q as i32 - 1) as f32 * d;
        }
    }
}

/// Q4_0: `x = (q - 8) * d`.
pub fn dequantize_q4_0(blocks: &[BlockQ4_0], dst: &mut [f32]) {
    debug_assert_eq!(dst.len(), blocks.len() * QK4_0);
    for (b, y) in blocks.iter().zip(dst.chunks_exact_mut(QK4_0)) {
        let d = b.d.to_f32();
        let (lo, hi) = y.split_at_mut(QK4_0 / 2);
        for j in 0..QK4_0 / 2 {
            let x0 = (b.qs[j] & 0x0f) as i32 - 8;
            let x1 = (b.qs[j] >> 4) as i32 - 8;
            lo[j] = x0 as f32 * d;
            hi[j] = x1 as f32 * d;
        }
    }
}

/// Q4_1: `x = q * d + m`.
pub fn dequantize_q4_1(blocks: &[BlockQ4_1], dst: &mut [f32]) {
    debug_assert_eq!(dst.len(), blocks.len() * QK4_1);
    for (b, y) in blocks.iter().zip(dst.chunks_exact_mut(QK4_1)) {
        let d = b.d.to_f32();
        let m = b.m.to_f32();
        let (lo, hi) = y.split_at_mut(QK4_1 / 2);
        for j in 0..QK4_1 / 2 {
            lo[j] = (b.qs[j] & 0x0f) as f32 * d + m;
            hi[j] = (b.qs[j] >> 4) as f32 * d + m;
        }
    }
}

/// Q5_0: `x = (q - 16) * d`.
pub fn dequantize_q5_0(blocks: &[BlockQ5_0], dst: &mut [f32]) {
    debug_assert_eq!(dst.len(), blocks.len() * QK5_0);
    for (b, y) in blocks.iter().zip(dst.chunks_exact_mut(QK5_0)) {
        let d = b.d.to_f32();
        let qh = u32::from_le_bytes(b.qh);
        let (lo, hi) = y.split_at_mut(QK5_0 / 2);
        for j in 0..QK5_0 / 2 {
            let xh0 = ((qh >> j) << 4) & 0x10;
            let xh1 = (qh >> (j + 12)) & 0x10;
            let x0 = ((b.qs[j] as u32 & 0x0f) | xh0) as i32 - 16;
            let x1 = ((b.qs[j] as u32 >> 4) | xh1) as i32 - 16;
            lo[j] = x0 as f32 * d;
            hi[j] = x1 as f32 * d;
        }
    }
}

/// Q5_1: `x = q * d + m`.
pub fn dequantize_q5_1(blocks: &[BlockQ5_1], dst: &mut [f32]) {
    debug_assert_eq!(dst.len(), blocks.len() * QK5_1);
    for (b, y) in blocks.iter().zip(dst.chunks_exact_mut(QK5_1)) {
        let d = b.d.to_f32();
        let m = b.m.to_f32();
        let qh = u32::from_le_bytes(b.qh);
        let (lo, hi) = y.split_at_mut(QK5_1 / 2);
        for j in 0..QK5_1 / 2 {
            let xh0 = ((qh >> j) << 4) & 0x10;
            let xh1 = (qh >> (j + 12)) & 0x10;
            let x0 = (b.qs[j] as u32 & 0x0f) | xh0;
            let x1 = (b.qs[j] as u32 >> 4) | xh1;
            lo[j] = x0 as f32 * d + m;
            hi[j] = x1 as f32 * d + m;
        }
    }
}

/// Q8_0: `x = q * d`.
pub fn dequantize_q8_0(blocks: &[BlockQ8_0], dst: &mut [f32]) {
    debug_assert_eq!(dst.len(), blocks.len() * QK8_0);
    for (b, y) in blocks.iter().zip(dst.chunks_exact_mut(QK8_0)) {
        let d = b.d.to_f32();
        for (y, &q) in y.iter_mut().zip(&b.qs) {
            *y = q as f32 * d;
        }
    }
}

/// Q8_1: `x = q * d` (ggml defines no Q8_1 dequantizer; this is the block's meaning, as in
/// Q8_0, and ignores the stored sum).
pub fn dequantize_q8_1(blocks: &[BlockQ8_1], dst: &mut [f32]) {
    debug_assert_eq!(dst.len(), blocks.len() * QK8_1);
    for (b, y) in blocks.iter().zip(dst.chunks_exact_mut(QK8_1)) {
        let d = b.d.to_f32();
        for (y, &q) in y.iter_mut().zip(&b.qs) {
            *y = q as f32 * d;
        }
    }
}

/// Half of the E8M0 scale `2^(e - 127)`, as ggml's `ggml_e8m0_to_fp32_half` (exact, including
/// the two subnormal results for `e < 2`).
#[inline]
pub fn e8m0_to_f32_half(e: u8) -> f32 {
    let bits = if e < 2 {
        0x0020_0000u32 << e
    } else {
        ((e as u32) - 1) << 23
    };
    f32::from_bits(bits)
}

/// Half of an unsigned E4M3 scale (bias 7), as ggml's `ggml_ue4m3_to_fp32`; `0` and `0x7f`
/// decode to zero and the top bit is ignored.
#[inline]
pub fn ue4m3_to_f32_half(x: u8) -> f32 {
    if x == 0 || x == 0x7f {
        return 0.0;
    }
    let exp = ((x >> 3) & 0x0f) as i32;
    let man = (x & 0x07) as f32;
    let raw = if exp == 0 {
        // ldexpf(man, -9): exact.
        man * f32::from_bits(((127 - 9) as u32) << 23)
    } else {
        // ldexpf(1 + man / 8, exp - 7): exact, exp - 7 is within [-6, 8].
        (1.0 + man / 8.0) * f32::from_bits(((127 + exp - 7) as u32) << 23)
    };
    raw * 0.5
}

/// MXFP4: `x = kvalues_mxfp4[q] * d` with `d` half the E8M0 scale.
pub fn dequantize_mxfp4(blocks: &[BlockMxfp4], dst: &mut [f32]) {
    debug_assert_eq!(dst.len(), blocks.len() * QK_MXFP4);
    for (b, y) in blocks.iter().zip(dst.chunks_exact_mut(QK_MXFP4)) {
        let d = e8m0_to_f32_half(b.e);
        let (lo, hi) = y.split_at_mut(QK_MXFP4 / 2);
        for j in 0..QK_MXFP4 / 2 {
            lo[j] = KVALUES_MXFP4[(b.qs[j] & 0x0f) as usize] as f32 * d;
            hi[j] = KVALUES_MXFP4[(b.qs[j] >> 4) as usize] as f32 * d;
        }
    }
}

/// NVFP4: four sub-blocks of 16, each `x = kvalues_mxfp4[q] * d_s` with `d_s` half its
/// UE4M3 scale.
pub fn dequantize_nvfp4(blocks: &[BlockNvfp4], dst: &mut [f32]) {
    debug_assert_eq!(dst.len(), blocks.len() * QK_NVFP4);
    const SUB: usize = QK_NVFP4_SUB;
    for (b, y) in blocks.iter().zip(dst.chunks_exact_mut(QK_NVFP4)) {
        for (s, ys) in y.chunks_exact_mut(SUB).enumerate() {
            let d = ue4m3_to_f32_half(b.d[s]);
            let qs = &b.qs[s * SUB / 2..(s + 1) * SUB / 2];
            let (lo, hi) = ys.split_at_mut(SUB / 2);
            for j in 0..SUB / 2 {
                lo[j] = KVALUES_MXFP4[(qs[j] & 0x0f) as usize] as f32 * d;
                hi[j] = KVALUES_MXFP4[(qs[j] >> 4) as usize] as f32 * d;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_conversion_is_exact_for_every_non_nan_half() {
        // Against the `half` crate's conversion, for all 65536 bit patterns.
        for h in 0..=u16::MAX {
            let want = half::f16::from_bits(h).to_f32();
            let got = f16_bits_to_f32(h);
            if want.is_nan() {
                assert!(got.is_nan(), "{h:#06x}");
            } else {
                assert_eq!(got.to_bits(), want.to_bits(), "{h:#06x}");
            }
        }
    }

    #[test]
    fn e8m0_and_ue4m3_match_their_definitions() {
        // 0.5 * 2^(e - 127), computed in f64 and exact in f32 for every e.
        for e in 0..=255u8 {
            let want = 0.5 * 2f64.powi(e as i32 - 127);
            assert_eq!(e8m0_to_f32_half(e) as f64, want, "e = {e}");
        }
        // UE4M3: subnormals man * 2^-9, normals (1 + man/8) * 2^(exp-7), halved.
        for x in 1..0x7fu8 {
            let (exp, man) = ((x >> 3) as i32, (x & 7) as f64);
            let v = if exp == 0 {
                man * 2f64.powi(-9)
            } else {
                (1.0 + man / 8.0) * 2f64.powi(exp - 7)
            };
            assert_eq!(ue4m3_to_f32_half(x) as f64, v * 0.5, "x = {x:#x}");
        }
        assert_eq!(ue4m3_to_f32_half(0x7f), 0.0);
        // The top bit is not masked off the exponent's neighbour: 0xb8 reads as 0x38.
        assert_eq!(ue4m3_to_f32_half(0xb8), 0.5);
        assert_eq!(ue4m3_to_f32_half(0xff), 240.0);
    }
}
