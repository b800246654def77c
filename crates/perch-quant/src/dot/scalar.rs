//! Scalar reference dot products for the float types and the 32-element block types.
//!
//! Each function computes exactly what ggml's `ggml_vec_dot_*_generic` (quants.c) or the
//! scalar fallback of `ggml_vec_dot_{f32,f16,bf16}` (vec.cpp) computes, with the same order of
//! floating-point operations, so results equal ggml's portable path bit for bit (when ggml
//! is compiled without FMA contraction). The integer parts are exact; only the final
//! per-block scaling is floating point.

use crate::blocks::{
    BlockIq4Nl, BlockMxfp4, BlockNvfp4, BlockQ1_0, BlockQ2_0, BlockQ4_0, BlockQ4_1, BlockQ5_0,
    BlockQ5_1, BlockQ8_0, BlockQ8_1,
};

use super::{
    KVALUES_IQ4NL, KVALUES_MXFP4, bf16_to_f32, e8m0_to_f32_half, f16_to_f32, ue4m3_to_f32,
};

/// `f32 · f32`: products in `f32`, summed in `f64` (ggml's `ggml_float`).
pub fn f32_f32(w: &[u8], x: &[u8]) -> f32 {
    assert_eq!(w.len(), x.len(), "row lengths");
    let mut sum = 0.0f64;
    for (a, b) in w.chunks_exact(4).zip(x.chunks_exact(4)) {
        let a = f32::from_le_bytes([a[0], a[1], a[2], a[3]]);
        let b = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        sum += f64::from(a * b);
    }
    sum as f32
}

/// `f16 · f16`: widened to `f32`, products in `f32`, summed in `f64`.
pub fn f16_f16(w: &[u8], x: &[u8]) -> f32 {
    assert_eq!(w.len(), x.len(), "row lengths");
    let mut sum = 0.0f64;
    for (a, b) in w.chunks_exact(2).zip(x.chunks_exact(2)) {
        let a = f16_to_f32(u16::from_le_bytes([a[0], a[1]]));
        let b = f16_to_f32(u16::from_le_bytes([b[0], b[1]]));
        sum += f64::from(a * b);
    }
    sum as f32
}

/// `bf16 · bf16`: widened to `f32`, products in `f32`, summed in `f64`.
pub fn bf16_bf16(w: &[u8], x: &[u8]) -> f32 {
    assert_eq!(w.len(), x.len(), "row lengths");
    let mut sum = 0.0f64;
    for (a, b) in w.chunks_exact(2).zip(x.chunks_exact(2)) {
        let a = bf16_to_f32(u16::from_le_bytes([a[0], a[1]]));
        let b = bf16_to_f32(u16::from_le_bytes([b[0], b[1]]));
        sum += f64::from(a * b);
    }
    sum as f32
}

#[inline]
fn q8_0_at(y: &[BlockQ8_0], i: usize) -> (&[i8; 32], f32) {
    (&y[i].qs, y[i].d.to_f32())
}

/// Q4_0 · Q8_0 (`ggml_vec_dot_q4_0_q8_0_generic`).
pub fn q4_0_q8_0(x: &[BlockQ4_0], y: &[BlockQ8_0]) -> f32 {
    assert_eq!(x.len(), y.len(), "block counts");
    let mut sumf = 0.0f32;
    for (xb, yb) in x.iter().zip(y) {
        let (mut s0, mut s1) = (0i32, 0i32);
        for j in 0..16 {
            s0 += (i32::from(xb.qs[j] & 0x0f) - 8) * i32::from(yb.qs[j]);
            s1 += (i32::from(xb.qs[j] >> 4) - 8) * i32::from(yb.qs[j + 16]);
        }
        sumf += (s0 + s1) as f32 * xb.d.to_f32() * yb.d.to_f32();
    }
    sumf
}

/// Q4_1 · Q8_1 (`ggml_vec_dot_q4_1_q8_1_generic`).
pub fn q4_1_q8_1(x: &[BlockQ4_1], y: &[BlockQ8_1]) -> f32 {
    assert_eq!(x.len(), y.len(), "block counts");
    let mut sumf = 0.0f32;
    for (xb, yb) in x.iter().zip(y) {
        let (mut s0, mut s1) = (0i32, 0i32);
        for j in 0..16 {
            s0 += i32::from(xb.qs[j] & 0x0f) * i32::from(yb.qs[j]);
            s1 += i32::from(xb.qs[j] >> 4) * i32::from(yb.qs[j + 16]);
        }
        sumf += (xb.d.to_f32() * yb.d.to_f32()) * (s0 + s1) as f32 + xb.m.to_f32() * yb.s.to_f32();
    }
    sumf
}

/// Q5_0 · Q8_0 (`ggml_vec_dot_q5_0_q8_0_generic`).
pub fn q5_0_q8_0(x: &[BlockQ5_0], y: &[BlockQ8_0]) -> f32 {
    assert_eq!(x.len(), y.len(), "block counts");
    let mut sumf = 0.0f32;
    for (xb, yb) in x.iter().zip(y) {
        let qh = u32::from_le_bytes(xb.qh);
        let (mut s0, mut s1) = (0i32, 0i32);
        for j in 0..16 {
            let h0 = ((qh >> j) << 4) & 0x10;
            let h1 = (qh >> (j + 12)) & 0x10;
            let x0 = (u32::from(xb.qs[j] & 0x0f) | h0) as i32 - 16;
            let x1 = (u32::from(xb.qs[j] >> 4) | h1) as i32 - 16;
            s0 += x0 * i32::from(yb.qs[j]);
            s1 += x1 * i32::from(yb.qs[j + 16]);
        }
        sumf += (xb.d.to_f32() * yb.d.to_f32()) * (s0 + s1) as f32;
    }
    sumf
}

/// Q5_1 · Q8_1 (`ggml_vec_dot_q5_1_q8_1_generic`).
pub fn q5_1_q8_1(x: &[BlockQ5_1], y: &[BlockQ8_1]) -> f32 {
    assert_eq!(x.len(), y.len(), "block counts");
    let mut sumf = 0.0f32;
    for (xb, yb) in x.iter().zip(y) {
        let qh = u32::from_le_bytes(xb.qh);
        let (mut s0, mut s1) = (0i32, 0i32);
        for j in 0..16 {
            let h0 = ((qh >> j) << 4) & 0x10;
            let h1 = (qh >> (j + 12)) & 0x10;
            let x0 = (u32::from(xb.qs[j] & 0x0f) | h0) as i32;
            let x1 = (u32::from(xb.qs[j] >> 4) | h1) as i32;
            s0 += x0 * i32::from(yb.qs[j]);
            s1 += x1 * i32::from(yb.qs[j + 16]);
        }
        sumf += (xb.d.to_f32() * yb.d.to_f32()) * (s0 + s1) as f32 + xb.m.to_f32() * yb.s.to_f32();
    }
    sumf
}

/// Q8_0 · Q8_0 (`ggml_vec_dot_q8_0_q8_0_generic`).
pub fn q8_0_q8_0(x: &[BlockQ8_0], y: &[BlockQ8_0]) -> f32 {
    assert_eq!(x.len(), y.len(), "block counts");
    let mut sumf = 0.0f32;
    for (xb, yb) in x.iter().zip(y) {
        let mut s = 0i32;
        for j in 0..32 {
            s += i32::from(xb.qs[j]) * i32::from(yb.qs[j]);
        }
        sumf += s as f32 * (xb.d.to_f32() * yb.d.to_f32());
    }
    sumf
}

/// Q1_0 · Q8_0 (`ggml_vec_dot_q1_0_q8_0_generic`): one Q1_0 block spans four Q8_0 blocks.
pub fn q1_0_q8_0(x: &[BlockQ1_0], y: &[BlockQ8_0]) -> f32 {
    assert_eq!(x.len() * 4, y.len(), "block counts");
    let mut sumf = 0.0f32;
    for (i, xb) in x.iter().enumerate() {
        let d0 = xb.d.to_f32();
        let mut sumi = 0.0f32;
        for k in 0..4 {
            let (qy, d1) = q8_0_at(y, i * 4 + k);
            let mut sb = 0i32;
            for (j, &q) in qy.iter().enumerate() {
                let bit = (xb.qs[k * 4 + j / 8] >> (j % 8)) & 1;
                sb += if bit != 0 {
                    i32::from(q)
                } else {
                    -i32::from(q)
                };
            }
            sumi += d1 * sb as f32;
        }
        sumf += d0 * sumi;
    }
    sumf
}

/// Q2_0 · Q8_0 (`ggml_vec_dot_q2_0_q8_0_generic`): one Q2_0 block spans two Q8_0 blocks.
pub fn q2_0_q8_0(x: &[BlockQ2_0], y: &[BlockQ8_0]) -> f32 {
    assert_eq!(x.len() * 2, y.len(), "block counts");
    let mut sumf = 0.0f32;
    for (i, xb) in x.iter().enumerate() {
        let d0 = xb.d.to_f32();
        let mut sumi = 0.0f32;
        for k in 0..2 {
            let (qy, d1) = q8_0_at(y, i * 2 + k);
            let mut sb = 0i32;
            for b in 0..8 {
                let byte = xb.qs[k * 8 + b];
                for l in 0..4 {
                    let v = i32::from((byte >> (2 * l)) & 3) - 1;
                    sb += v * i32::from(qy[b * 4 + l]);
                }
            }
            sumi += d1 * sb as f32;
        }
        sumf += d0 * sumi;
    }
    sumf
}

/// MXFP4 · Q8_0 (`ggml_vec_dot_mxfp4_q8_0_generic`).
pub fn mxfp4_q8_0(x: &[BlockMxfp4], y: &[BlockQ8_0]) -> f32 {
    assert_eq!(x.len(), y.len(), "block counts");
    let mut sumf = 0.0f32;
    for (xb, yb) in x.iter().zip(y) {
        let d = yb.d.to_f32() * e8m0_to_f32_half(xb.e);
        let (mut s1, mut s2) = (0i32, 0i32);
        for j in 0..16 {
            s1 += i32::from(yb.qs[j]) * i32::from(KVALUES_MXFP4[usize::from(xb.qs[j] & 0xf)]);
            s2 += i32::from(yb.qs[j + 16]) * i32::from(KVALUES_MXFP4[usize::from(xb.qs[j] >> 4)]);
        }
        sumf += d * (s1 + s2) as f32;
    }
    sumf
}

/// NVFP4 · Q8_0 (`ggml_vec_dot_nvfp4_q8_0_generic`): one NVFP4 block spans two Q8_0 blocks.
pub fn nvfp4_q8_0(x: &[BlockNvfp4], y: &[BlockQ8_0]) -> f32 {
    assert_eq!(x.len() * 2, y.len(), "block counts");
    let mut sumf = 0.0f32;
    for (ib, xb) in x.iter().enumerate() {
        for s in 0..4 {
            let d = ue4m3_to_f32(xb.d[s]);
            let (qy, dy) = q8_0_at(y, 2 * ib + s / 2);
            let off = (s % 2) * 16;
            let (mut lo, mut hi) = (0i32, 0i32);
            for j in 0..8 {
                let qv = xb.qs[s * 8 + j];
                lo += i32::from(qy[off + j]) * i32::from(KVALUES_MXFP4[usize::from(qv & 0xf)]);
                hi += i32::from(qy[off + j + 8]) * i32::from(KVALUES_MXFP4[usize::from(qv >> 4)]);
            }
            sumf += dy * d * (lo + hi) as f32;
        }
    }
    sumf
}

/// IQ4_NL · Q8_0 (`ggml_vec_dot_iq4_nl_q8_0_generic`).
pub fn iq4_nl_q8_0(x: &[BlockIq4Nl], y: &[BlockQ8_0]) -> f32 {
    assert_eq!(x.len(), y.len(), "block counts");
    let mut sumf = 0.0f32;
    for (xb, yb) in x.iter().zip(y) {
        let d = yb.d.to_f32() * xb.d.to_f32();
        let (mut s1, mut s2) = (0i32, 0i32);
        for j in 0..16 {
            s1 += i32::from(yb.qs[j]) * i32::from(KVALUES_IQ4NL[usize::from(xb.qs[j] & 0xf)]);
            s2 += i32::from(yb.qs[j + 16]) * i32::from(KVALUES_IQ4NL[usize::from(xb.qs[j] >> 4)]);
        }
        sumf += d * (s1 + s2) as f32;
    }
    sumf
}
