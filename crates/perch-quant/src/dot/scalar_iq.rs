//! Scalar reference dot products of the grid I-quants against Q8_K: IQ2_XXS, IQ2_XS, IQ2_S,
//! IQ3_XXS, IQ3_S, IQ1_S and IQ1_M, as ggml's `ggml_vec_dot_*_q8_K_generic` compute them
//! (integer sums per 32 elements, scaled per super-block, ggml's final factors). The grids
//! and sign tables are the crate's [`tables`](crate::tables).

use crate::blocks::{
    BlockIq1M, BlockIq1S, BlockIq2S, BlockIq2Xs, BlockIq2Xxs, BlockIq3S, BlockIq3Xxs, BlockQ8K,
};
use crate::tables::{
    IQ1S_DELTA, IQ1S_GRID, IQ2S_GRID, IQ2XS_GRID, IQ2XXS_GRID, IQ3S_GRID, IQ3XXS_GRID, KMASK_IQ2XS,
    KSIGNS_IQ2XS,
};

/// Byte `j` of a grid entry (little-endian), as the signed or unsigned value it encodes.
#[inline]
fn gb(entry: u64, j: usize) -> i32 {
    i32::from((entry >> (8 * j)) as u8)
}

#[inline]
fn sign(signs: u8, j: usize) -> i32 {
    if signs & KMASK_IQ2XS[j] != 0 { -1 } else { 1 }
}

/// `Σ_j grid[j] * q8[j] * ±1` over the 8 values of a u64 grid entry.
#[inline]
fn grid8_dot(entry: u64, signs: u8, q8: &[i8]) -> i32 {
    (0..8)
        .map(|j| gb(entry, j) * i32::from(q8[j]) * sign(signs, j))
        .sum()
}

/// IQ2_XXS · Q8_K (`ggml_vec_dot_iq2_xxs_q8_K_generic`).
pub fn iq2_xxs_q8_k(x: &[BlockIq2Xxs], y: &[BlockQ8K]) -> f32 {
    assert_eq!(x.len(), y.len(), "block counts");
    let mut sumf = 0.0f32;
    for (xb, yb) in x.iter().zip(y) {
        let d = xb.d.to_f32() * yb.d.get();
        let mut bsum = 0i32;
        for ib in 0..8 {
            let q = &xb.qs[4 * ib..4 * ib + 4];
            let a0 = u32::from(q[0].get()) | u32::from(q[1].get()) << 16;
            let a1 = u32::from(q[2].get()) | u32::from(q[3].get()) << 16;
            let ls = 2 * (a1 >> 28) as i32 + 1;
            let mut sumi = 0i32;
            for l in 0..4 {
                let grid = IQ2XXS_GRID[((a0 >> (8 * l)) & 0xff) as usize];
                let signs = KSIGNS_IQ2XS[((a1 >> (7 * l)) & 127) as usize];
                let q8 = &yb.qs[32 * ib + 8 * l..];
                sumi += grid8_dot(grid, signs, q8);
            }
            bsum += sumi * ls;
        }
        sumf += d * bsum as f32;
    }
    0.125 * sumf
}

/// IQ2_XS · Q8_K (`ggml_vec_dot_iq2_xs_q8_K_generic`).
pub fn iq2_xs_q8_k(x: &[BlockIq2Xs], y: &[BlockQ8K]) -> f32 {
    assert_eq!(x.len(), y.len(), "block counts");
    let mut sumf = 0.0f32;
    for (xb, yb) in x.iter().zip(y) {
        let d = xb.d.to_f32() * yb.d.get();
        let mut bsum = 0i32;
        for ib in 0..8 {
            let ls1 = 2 * i32::from(xb.scales[ib] & 0xf) + 1;
            let ls2 = 2 * i32::from(xb.scales[ib] >> 4) + 1;
            let mut s = [0i32; 2];
            for l in 0..4 {
                let q = xb.qs[4 * ib + l].get();
                let grid = IQ2XS_GRID[usize::from(q & 511)];
                let signs = KSIGNS_IQ2XS[usize::from(q >> 9)];
                s[l / 2] += grid8_dot(grid, signs, &yb.qs[32 * ib + 8 * l..]);
            }
            bsum += s[0] * ls1;
            bsum += s[1] * ls2;
        }
        sumf += d * bsum as f32;
    }
    0.125 * sumf
}

/// IQ2_S · Q8_K (`ggml_vec_dot_iq2_s_q8_K_generic`).
pub fn iq2_s_q8_k(x: &[BlockIq2S], y: &[BlockQ8K]) -> f32 {
    assert_eq!(x.len(), y.len(), "block counts");
    let mut sumf = 0.0f32;
    for (xb, yb) in x.iter().zip(y) {
        let d = xb.d.to_f32() * yb.d.get();
        let (qs, signs) = xb.qs.split_at(32);
        let mut bsum = 0i32;
        for ib in 0..8 {
            let ls1 = 1 + 2 * i32::from(xb.scales[ib] & 0xf);
            let ls2 = 1 + 2 * i32::from(xb.scales[ib] >> 4);
            let mut s = [0i32; 2];
            for l in 0..4 {
                let hi = (usize::from(xb.qh[ib]) << (8 - 2 * l)) & 0x300;
                let grid = IQ2S_GRID[usize::from(qs[4 * ib + l]) | hi];
                s[l / 2] += grid8_dot(grid, signs[4 * ib + l], &yb.qs[32 * ib + 8 * l..]);
            }
            bsum += ls1 * s[0] + ls2 * s[1];
        }
        sumf += d * bsum as f32;
    }
    0.125 * sumf
}

/// `Σ` over two 4-value u32 grid entries against 8 activations with 8 sign bits.
#[inline]
fn grid4x2_dot(g1: u32, g2: u32, signs: u8, q8: &[i8]) -> i32 {
    let mut s = 0i32;
    for j in 0..4 {
        s += i32::from((g1 >> (8 * j)) as u8) * i32::from(q8[j]) * sign(signs, j);
        s += i32::from((g2 >> (8 * j)) as u8) * i32::from(q8[j + 4]) * sign(signs, j + 4);
    }
    s
}

/// IQ3_XXS · Q8_K (`ggml_vec_dot_iq3_xxs_q8_K_generic`).
pub fn iq3_xxs_q8_k(x: &[BlockIq3Xxs], y: &[BlockQ8K]) -> f32 {
    assert_eq!(x.len(), y.len(), "block counts");
    let mut sumf = 0.0f32;
    for (xb, yb) in x.iter().zip(y) {
        let d = xb.d.to_f32() * yb.d.get();
        let (q3, gas) = xb.qs.split_at(64);
        let mut bsum = 0i32;
        for ib in 0..8 {
            let a = u32::from_le_bytes([
                gas[4 * ib],
                gas[4 * ib + 1],
                gas[4 * ib + 2],
                gas[4 * ib + 3],
            ]);
            let ls = 2 * (a >> 28) as i32 + 1;
            let mut sumi = 0i32;
            for l in 0..4 {
                let g1 = IQ3XXS_GRID[usize::from(q3[8 * ib + 2 * l])];
                let g2 = IQ3XXS_GRID[usize::from(q3[8 * ib + 2 * l + 1])];
                let signs = KSIGNS_IQ2XS[((a >> (7 * l)) & 127) as usize];
                sumi += grid4x2_dot(g1, g2, signs, &yb.qs[32 * ib + 8 * l..]);
            }
            bsum += sumi * ls;
        }
        sumf += d * bsum as f32;
    }
    0.25 * sumf
}

/// IQ3_S · Q8_K (`ggml_vec_dot_iq3_s_q8_K_generic`).
pub fn iq3_s_q8_k(x: &[BlockIq3S], y: &[BlockQ8K]) -> f32 {
    assert_eq!(x.len(), y.len(), "block counts");
    let mut sumf = 0.0f32;
    for (xb, yb) in x.iter().zip(y) {
        let d = xb.d.to_f32() * yb.d.get();
        let mut bsum = 0i32;
        for ib in 0..8 {
            let sc = xb.scales[ib / 2];
            let ls = 2 * i32::from(if ib % 2 == 0 { sc & 0xf } else { sc >> 4 }) + 1;
            let qh = usize::from(xb.qh[ib]);
            let mut sumi = 0i32;
            for l in 0..4 {
                let i1 = usize::from(xb.qs[8 * ib + 2 * l]) | ((qh << (8 - 2 * l)) & 256);
                let i2 = usize::from(xb.qs[8 * ib + 2 * l + 1]) | ((qh << (7 - 2 * l)) & 256);
                let signs = xb.signs[4 * ib + l];
                sumi += grid4x2_dot(
                    IQ3S_GRID[i1],
                    IQ3S_GRID[i2],
                    signs,
                    &yb.qs[32 * ib + 8 * l..],
                );
            }
            bsum += sumi * ls;
        }
        sumf += d * bsum as f32;
    }
    sumf
}

/// IQ1_S · Q8_K (`ggml_vec_dot_iq1_s_q8_K_generic`).
pub fn iq1_s_q8_k(x: &[BlockIq1S], y: &[BlockQ8K]) -> f32 {
    assert_eq!(x.len(), y.len(), "block counts");
    let mut sumf = 0.0f32;
    for (xb, yb) in x.iter().zip(y) {
        let (mut sumi, mut sumi1) = (0i32, 0i32);
        for ib in 0..8 {
            let qh = xb.qh[ib].get();
            let ls = 2 * i32::from((qh >> 12) & 7) + 1;
            let delta = if qh & 0x8000 != 0 { -1 } else { 1 };
            let mut lsum = 0i32;
            for l in 0..4 {
                let idx = usize::from(xb.qs[4 * ib + l]) | (usize::from((qh >> (3 * l)) & 7) << 8);
                let grid = IQ1S_GRID[idx];
                let q8 = &yb.qs[32 * ib + 8 * l..];
                for (j, &q) in q8[..8].iter().enumerate() {
                    lsum += i32::from(q) * i32::from((grid >> (8 * j)) as u8 as i8);
                }
            }
            sumi += ls * lsum;
            let bs = i32::from(yb.bsums[2 * ib].get()) + i32::from(yb.bsums[2 * ib + 1].get());
            sumi1 += ls * delta * bs;
        }
        sumf += xb.d.to_f32() * yb.d.get() * (sumi as f32 + IQ1S_DELTA * sumi1 as f32);
    }
    sumf
}

/// IQ1_M · Q8_K (`ggml_vec_dot_iq1_m_q8_K_generic`).
pub fn iq1_m_q8_k(x: &[BlockIq1M], y: &[BlockQ8K]) -> f32 {
    /// ggml's `IQ1M_DELTA`.
    const IQ1M_DELTA: f32 = 0.125;
    assert_eq!(x.len(), y.len(), "block counts");
    let mut sumf = 0.0f32;
    for (xb, yb) in x.iter().zip(y) {
        let sc: [u16; 4] =
            core::array::from_fn(|k| u16::from_le_bytes([xb.scales[2 * k], xb.scales[2 * k + 1]]));
        let scale =
            (sc[0] >> 12) | ((sc[1] >> 8) & 0x00f0) | ((sc[2] >> 4) & 0x0f00) | (sc[3] & 0xf000);
        let (mut sumi1, mut sumi2) = (0i32, 0i32);
        for ib in 0..8 {
            let qh = &xb.qh[2 * ib..2 * ib + 2];
            let delta = [
                if qh[0] & 0x08 != 0 { -1 } else { 1 },
                if qh[0] & 0x80 != 0 { -1 } else { 1 },
                if qh[1] & 0x08 != 0 { -1 } else { 1 },
                if qh[1] & 0x80 != 0 { -1 } else { 1 },
            ];
            let mut sum1 = [0i32; 2];
            let mut sum2 = [0i32; 2];
            for l in 0..4 {
                let hi = (u16::from(qh[l / 2]) << (8 - 4 * (l % 2))) & 0x700;
                let grid = IQ1S_GRID[usize::from(xb.qs[4 * ib + l]) | usize::from(hi)];
                let q8 = &yb.qs[32 * ib + 8 * l..];
                let (mut l1, mut l2) = (0i32, 0i32);
                for (j, &q) in q8[..8].iter().enumerate() {
                    l1 += i32::from(q) * i32::from((grid >> (8 * j)) as u8 as i8);
                    l2 += i32::from(q);
                }
                sum1[l / 2] += l1;
                sum2[l / 2] += l2 * delta[l];
            }
            let w = sc[ib / 2] >> (6 * (ib % 2));
            let ls1 = 2 * i32::from(w & 7) + 1;
            let ls2 = 2 * i32::from((w >> 3) & 7) + 1;
            sumi1 += sum1[0] * ls1 + sum1[1] * ls2;
            sumi2 += sum2[0] * ls1 + sum2[1] * ls2;
        }
        let d = half::f16::from_bits(scale).to_f32();
        sumf += d * yb.d.get() * (sumi1 as f32 + IQ1M_DELTA * sumi2 as f32);
    }
    sumf
}
