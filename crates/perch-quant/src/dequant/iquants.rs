//! Dequantizers of the I-quants: lattice grids with sign tables (IQ2, IQ3), the ternary-grid
//! IQ1 types and the non-linear IQ4 types.
//!
//! Same contract as the legacy ones: `dst` holds `blocks.len() * block_size` values.

use crate::blocks::*;
use crate::tables::*;
use crate::types::QK_K;

#[inline(always)]
fn sign(signs: u8, j: usize) -> f32 {
    if signs & KMASK_IQ2XS[j] != 0 {
        -1.0
    } else {
        1.0
    }
}

/// Writes 8 values `db * grid[j] * sign_j` of one 8-element grid entry.
#[inline(always)]
fn put8(y: &mut [f32], db: f32, entry: u64, signs: u8) {
    for (j, y) in y.iter_mut().enumerate().take(8) {
        *y = db * grid_byte(entry, j) as f32 * sign(signs, j);
    }
}

/// IQ2_XXS.
pub fn dequantize_iq2_xxs(blocks: &[BlockIq2Xxs], dst: &mut [f32]) {
    debug_assert_eq!(dst.len(), blocks.len() * QK_K);
    for (b, y) in blocks.iter().zip(dst.chunks_exact_mut(QK_K)) {
        let d = b.d.to_f32();
        for (ib32, y) in y.chunks_exact_mut(32).enumerate() {
            let q = &b.qs[4 * ib32..4 * ib32 + 4];
            let aux0 = q[0].get() as u32 | ((q[1].get() as u32) << 16);
            let aux1 = q[2].get() as u32 | ((q[3].get() as u32) << 16);
            let db = d * (0.5 + (aux1 >> 28) as f32) * 0.25;
            let idx = aux0.to_le_bytes();
            for (l, y) in y.chunks_exact_mut(8).enumerate() {
                let signs = KSIGNS_IQ2XS[((aux1 >> (7 * l)) & 127) as usize];
                put8(y, db, IQ2XXS_GRID[idx[l] as usize], signs);
            }
        }
    }
}

/// IQ2_XS.
pub fn dequantize_iq2_xs(blocks: &[BlockIq2Xs], dst: &mut [f32]) {
    debug_assert_eq!(dst.len(), blocks.len() * QK_K);
    for (b, y) in blocks.iter().zip(dst.chunks_exact_mut(QK_K)) {
        let d = b.d.to_f32();
        for (ib32, y) in y.chunks_exact_mut(32).enumerate() {
            let db = [
                d * (0.5 + (b.scales[ib32] & 0x0f) as f32) * 0.25,
                d * (0.5 + (b.scales[ib32] >> 4) as f32) * 0.25,
            ];
            for (l, y) in y.chunks_exact_mut(8).enumerate() {
                let q = b.qs[4 * ib32 + l].get();
                let signs = KSIGNS_IQ2XS[(q >> 9) as usize];
                put8(y, db[l / 2], IQ2XS_GRID[(q & 511) as usize], signs);
            }
        }
    }
}

/// IQ2_S.
pub fn dequantize_iq2_s(blocks: &[BlockIq2S], dst: &mut [f32]) {
    debug_assert_eq!(dst.len(), blocks.len() * QK_K);
    for (b, y) in blocks.iter().zip(dst.chunks_exact_mut(QK_K)) {
        let d = b.d.to_f32();
        let (qs, signs) = b.qs.split_at(QK_K / 8);
        for (ib32, y) in y.chunks_exact_mut(32).enumerate() {
            let db = [
                d * (0.5 + (b.scales[ib32] & 0x0f) as f32) * 0.25,
                d * (0.5 + (b.scales[ib32] >> 4) as f32) * 0.25,
            ];
            for (l, y) in y.chunks_exact_mut(8).enumerate() {
                let high = ((b.qh[ib32] as usize) << (8 - 2 * l)) & 0x300;
                let idx = qs[4 * ib32 + l] as usize | high;
                put8(y, db[l / 2], IQ2S_GRID[idx], signs[4 * ib32 + l]);
            }
        }
    }
}

/// IQ3_XXS.
pub fn dequantize_iq3_xxs(blocks: &[BlockIq3Xxs], dst: &mut [f32]) {
    debug_assert_eq!(dst.len(), blocks.len() * QK_K);
    for (b, y) in blocks.iter().zip(dst.chunks_exact_mut(QK_K)) {
        let d = b.d.to_f32();
        let (qs, scales_and_signs) = b.qs.split_at(QK_K / 4);
        for (ib32, y) in y.chunks_exact_mut(32).enumerate() {
            let s = &scales_and_signs[4 * ib32..4 * ib32 + 4];
            let aux32 = u32::from_le_bytes([s[0], s[1], s[2], s[3]]);
            let db = d * (0.5 + (aux32 >> 28) as f32) * 0.5;
            let q = &qs[8 * ib32..8 * ib32 + 8];
            for (l, y) in y.chunks_exact_mut(8).enumerate() {
                let signs = KSIGNS_IQ2XS[((aux32 >> (7 * l)) & 127) as usize];
                let g1 = IQ3XXS_GRID[q[2 * l] as usize].to_le_bytes();
                let g2 = IQ3XXS_GRID[q[2 * l + 1] as usize].to_le_bytes();
                for j in 0..4 {
                    y[j] = db * g1[j] as f32 * sign(signs, j);
                    y[j + 4] = db * g2[j] as f32 * sign(signs, j + 4);
                }
            }
        }
    }
}

/// IQ3_S.
pub fn dequantize_iq3_s(blocks: &[BlockIq3S], dst: &mut [f32]) {
    debug_assert_eq!(dst.len(), blocks.len() * QK_K);
    for (b, y) in blocks.iter().zip(dst.chunks_exact_mut(QK_K)) {
        let d = b.d.to_f32();
        for (ib32, y) in y.chunks_exact_mut(32).enumerate() {
            let sc = b.scales[ib32 / 2];
            let nib = if ib32 % 2 == 0 { sc & 0x0f } else { sc >> 4 };
            let db = d * (1 + 2 * nib as i32) as f32;
            let qh = b.qh[ib32] as usize;
            let qs = &b.qs[8 * ib32..8 * ib32 + 8];
            let signs = &b.signs[4 * ib32..4 * ib32 + 4];
            for (l, y) in y.chunks_exact_mut(8).enumerate() {
                let i1 = qs[2 * l] as usize | ((qh << (8 - 2 * l)) & 256);
                let i2 = qs[2 * l + 1] as usize | ((qh << (7 - 2 * l)) & 256);
                let g1 = IQ3S_GRID[i1].to_le_bytes();
                let g2 = IQ3S_GRID[i2].to_le_bytes();
                for j in 0..4 {
                    y[j] = db * g1[j] as f32 * sign(signs[l], j);
                    y[j + 4] = db * g2[j] as f32 * sign(signs[l], j + 4);
                }
            }
        }
    }
}

/// Writes 8 values `dl * (grid[j] + delta)` of one IQ1 grid entry.
#[inline(always)]
fn put8_iq1(y: &mut [f32], dl: f32, entry: u64, delta: f32) {
    for (j, y) in y.iter_mut().enumerate().take(8) {
        *y = dl * (grid_byte(entry, j) as i8 as f32 + delta);
    }
}

/// IQ1_S.
pub fn dequantize_iq1_s(blocks: &[BlockIq1S], dst: &mut [f32]) {
    debug_assert_eq!(dst.len(), blocks.len() * QK_K);
    for (b, y) in blocks.iter().zip(dst.chunks_exact_mut(QK_K)) {
        let d = b.d.to_f32();
        for (ib, y) in y.chunks_exact_mut(32).enumerate() {
            let qh = b.qh[ib].get();
            let dl = d * (2 * ((qh >> 12) & 7) as i32 + 1) as f32;
            let delta = if qh & 0x8000 != 0 {
                -IQ1S_DELTA
            } else {
                IQ1S_DELTA
            };
            for (l, y) in y.chunks_exact_mut(8).enumerate() {
                let idx = b.qs[4 * ib + l] as usize | ((((qh >> (3 * l)) & 7) as usize) << 8);
                put8_iq1(y, dl, IQ1S_GRID[idx], delta);
            }
        }
    }
}

/// The f16 super-block scale of an IQ1_M block, spread over the top nibbles of its four
/// scale words.
#[inline]
pub(crate) fn iq1m_scale(scales: &[u8; 8]) -> (F16Le, [u16; 4]) {
    let sc = [
        u16::from_le_bytes([scales[0], scales[1]]),
        u16::from_le_bytes([scales[2], scales[3]]),
        u16::from_le_bytes([scales[4], scales[5]]),
        u16::from_le_bytes([scales[6], scales[7]]),
    ];
    let bits = (sc[0] >> 12) | ((sc[1] >> 8) & 0x00f0) | ((sc[2] >> 4) & 0x0f00) | (sc[3] & 0xf000);
    (F16Le::from_bits(bits), sc)
}

/// IQ1_M.
pub fn dequantize_iq1_m(blocks: &[BlockIq1M], dst: &mut [f32]) {
    debug_assert_eq!(dst.len(), blocks.len() * QK_K);
    for (b, y) in blocks.iter().zip(dst.chunks_exact_mut(QK_K)) {
        let (d, sc) = iq1m_scale(&b.scales);
        let d = d.to_f32();
        for (ib, y) in y.chunks_exact_mut(32).enumerate() {
            let s = sc[ib / 2];
            let dl1 = d * (2 * ((s >> (6 * (ib % 2))) & 7) as i32 + 1) as f32;
            let dl2 = d * (2 * ((s >> (6 * (ib % 2) + 3)) & 7) as i32 + 1) as f32;
            let qs = &b.qs[4 * ib..4 * ib + 4];
            let qh = &b.qh[2 * ib..2 * ib + 2];
            let idx = [
                qs[0] as usize | ((qh[0] as usize) << 8 & 0x700),
                qs[1] as usize | ((qh[0] as usize) << 4 & 0x700),
                qs[2] as usize | ((qh[1] as usize) << 8 & 0x700),
                qs[3] as usize | ((qh[1] as usize) << 4 & 0x700),
            ];
            let delta = |bit: bool| if bit { -IQ1S_DELTA } else { IQ1S_DELTA };
            let deltas = [
                delta(qh[0] & 0x08 != 0),
                delta(qh[0] & 0x80 != 0),
                delta(qh[1] & 0x08 != 0),
                delta(qh[1] & 0x80 != 0),
            ];
            for (l, y) in y.chunks_exact_mut(8).enumerate() {
                let dl = if l < 2 { dl1 } else { dl2 };
                put8_iq1(y, dl, IQ1S_GRID[idx[l]], deltas[l]);
            }
        }
    }
}

/// IQ4_NL: `x = d * kvalues_iq4nl[q]`.
pub fn dequantize_iq4_nl(blocks: &[BlockIq4Nl], dst: &mut [f32]) {
    debug_assert_eq!(dst.len(), blocks.len() * QK4_NL);
    for (b, y) in blocks.iter().zip(dst.chunks_exact_mut(QK4_NL)) {
        let d = b.d.to_f32();
        let (lo, hi) = y.split_at_mut(QK4_NL / 2);
        for j in 0..QK4_NL / 2 {
            lo[j] = d * KVALUES_IQ4NL[(b.qs[j] & 0x0f) as usize] as f32;
            hi[j] = d * KVALUES_IQ4NL[(b.qs[j] >> 4) as usize] as f32;
        }
    }
}

/// The 6-bit scale (0..64, before subtracting 32) of sub-block `ib` of an IQ4_XS block.
#[inline]
pub(crate) fn iq4xs_scale(b: &BlockIq4Xs, ib: usize) -> i32 {
    let low = (b.scales_l[ib / 2] >> (4 * (ib % 2))) & 0x0f;
    let high = (b.scales_h.get() >> (2 * ib)) & 3;
    low as i32 | ((high as i32) << 4)
}

/// IQ4_XS: `x = d * (ls - 32) * kvalues_iq4nl[q]` per sub-block of 32.
pub fn dequantize_iq4_xs(blocks: &[BlockIq4Xs], dst: &mut [f32]) {
    debug_assert_eq!(dst.len(), blocks.len() * QK_K);
    for (b, y) in blocks.iter().zip(dst.chunks_exact_mut(QK_K)) {
        let d = b.d.to_f32();
        for (ib, y) in y.chunks_exact_mut(32).enumerate() {
            let dl = d * (iq4xs_scale(b, ib) - 32) as f32;
            let qs = &b.qs[16 * ib..16 * ib + 16];
            let (lo, hi) = y.split_at_mut(16);
            for j in 0..16 {
                lo[j] = dl * KVALUES_IQ4NL[(qs[j] & 0x0f) as usize] as f32;
                hi[j] = dl * KVALUES_IQ4NL[(qs[j] >> 4) as usize] as f32;
            }
        }
    }
}
