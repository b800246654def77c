//! The reference quantizers of the 32/64/128-element block types, bit-exact with ggml's
//! `quantize_row_*_ref` (and gguf-py's numpy ports of them), and importance-weighted
//! variants of Q4_0, Q4_1, Q5_0 and Q5_1 (after ggml's `quantize_row_qX_Y_impl`, what
//! llama-quantize runs with an imatrix), which keep per block the better of the weighted
//! search and the reference quantizer.
//!
//! Each function quantizes `dst.len()` blocks from `src`, which must hold
//! `dst.len() * block_size` values (checked in debug builds; [`super::quantize_row`] checks
//! it and returns an error). The arithmetic is ggml's, step by step: the same divisions,
//! reciprocals, `+ 0.5` truncations and round-half-away-from-zero.

use super::best_of;
use super::search::{QkxSearch, QxWeight, make_qkx_quants, make_qx_quants};
use crate::blocks::*;
use crate::dequant::e8m0_to_f32_half;
use crate::tables::KVALUES_MXFP4;

/// The first value of largest magnitude (ggml keeps the first on ties).
#[inline]
fn signed_absmax(x: &[f32]) -> f32 {
    let (mut amax, mut max) = (0.0f32, 0.0f32);
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    max
}

#[inline]
fn absmax(x: &[f32]) -> f32 {
    x.iter().fold(0.0f32, |a, &v| a.max(v.abs()))
}

#[inline]
fn min_max(x: &[f32]) -> (f32, f32) {
    let (mut min, mut max) = (f32::MAX, -f32::MAX);
    for &v in x {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
    }
    (min, max)
}

#[inline]
fn recip_or_zero(d: f32) -> f32 {
    if d != 0.0 { 1.0 / d } else { 0.0 }
}

/// Q4_0: `d = max / -8`, `q = min(15, trunc(x / d + 8.5))`.
pub fn quantize_q4_0(src: &[f32], dst: &mut [BlockQ4_0]) {
    debug_assert_eq!(src.len(), dst.len() * QK4_0);
    for (x, y) in src.chunks_exact(QK4_0).zip(dst.iter_mut()) {
        let d = signed_absmax(x) / -8.0;
        let id = recip_or_zero(d);
        y.d = F16Le::from_f32(d);
        for j in 0..QK4_0 / 2 {
            let x0 = x[j] * id;
            let x1 = x[j + QK4_0 / 2] * id;
            let q0 = ((x0 + 8.5) as i8 as u8).min(15);
            let q1 = ((x1 + 8.5) as i8 as u8).min(15);
            y.qs[j] = q0 | (q1 << 4);
        }
    }
}

/// Q4_1: `d = (max - min) / 15`, `m = min`, `q = min(15, trunc((x - min) / d + 0.5))`.
pub fn quantize_q4_1(src: &[f32], dst: &mut [BlockQ4_1]) {
    debug_assert_eq!(src.len(), dst.len() * QK4_1);
    for (x, y) in src.chunks_exact(QK4_1).zip(dst.iter_mut()) {
        let (min, max) = min_max(x);
        let d = (max - min) / 15.0;
        let id = recip_or_zero(d);
        y.d = F16Le::from_f32(d);
        y.m = F16Le::from_f32(min);
        for j in 0..QK4_1 / 2 {
            let x0 = (x[j] - min) * id;
            let x1 = (x[j + QK4_1 / 2] - min) * id;
            let q0 = ((x0 + 0.5) as i8 as u8).min(15);
            let q1 = ((x1 + 0.5) as i8 as u8).min(15);
            y.qs[j] = q0 | (q1 << 4);
        }
    }
}

/// Q5_0: `d = max / -16`, `q = min(31, trunc(x / d + 16.5))`.
pub fn quantize_q5_0(src: &[f32], dst: &mut [BlockQ5_0]) {
    debug_assert_eq!(src.len(), dst.len() * QK5_0);
    for (x, y) in src.chunks_exact(QK5_0).zip(dst.iter_mut()) {
        let d = signed_absmax(x) / -16.0;
        let id = recip_or_zero(d);
        y.d = F16Le::from_f32(d);
        let mut qh = 0u32;
        for j in 0..QK5_0 / 2 {
            let x0 = x[j] * id;
            let x1 = x[j + QK5_0 / 2] * id;
            let q0 = ((x0 + 16.5) as i8 as u8).min(31);
            let q1 = ((x1 + 16.5) as i8 as u8).min(31);
            y.qs[j] = (q0 & 0x0f) | ((q1 & 0x0f) << 4);
            qh |= ((q0 as u32 & 0x10) >> 4) << j;
            qh |= ((q1 as u32 & 0x10) >> 4) << (j + QK5_0 / 2);
        }
        y.qh = qh.to_le_bytes();
    }
}

/// Q5_1: `d = (max - min) / 31`, `m = min`, `q = trunc((x - min) / d + 0.5)`.
pub fn quantize_q5_1(src: &[f32], dst: &mut [BlockQ5_1]) {
    debug_assert_eq!(src.len(), dst.len() * QK5_1);
    for (x, y) in src.chunks_exact(QK5_1).zip(dst.iter_mut()) {
        let (min, max) = min_max(x);
        let d = (max - min) / 31.0;
        let id = recip_or_zero(d);
        y.d = F16Le::from_f32(d);
        y.m = F16Le::from_f32(min);
        let mut qh = 0u32;
        for j in 0..QK5_1 / 2 {
            let x0 = (x[j] - min) * id;
            let x1 = (x[j + QK5_1 / 2] - min) * id;
            // ggml converts to uint8_t without clamping; the value is within 0..=31.
            let q0 = (x0 + 0.5) as u8;
            let q1 = (x1 + 0.5) as u8;
            y.qs[j] = (q0 & 0x0f) | ((q1 & 0x0f) << 4);
            qh |= ((q0 as u32 & 0x10) >> 4) << j;
            qh |= ((q1 as u32 & 0x10) >> 4) << (j + QK5_1 / 2);
        }
        y.qh = qh.to_le_bytes();
    }
}

/// Q8_0: `d = amax / 127`, `q = round(x / d)` (half away from zero).
pub fn quantize_q8_0(src: &[f32], dst: &mut [BlockQ8_0]) {
    debug_assert_eq!(src.len(), dst.len() * QK8_0);
    for (x, y) in src.chunks_exact(QK8_0).zip(dst.iter_mut()) {
        let d = absmax(x) / 127.0;
        let id = recip_or_zero(d);
        y.d = F16Le::from_f32(d);
        for (q, &v) in y.qs.iter_mut().zip(x) {
            *q = (v * id).round() as i8;
        }
    }
}

/// Q8_1: as Q8_0, plus `s = d * sum(q)`.
pub fn quantize_q8_1(src: &[f32], dst: &mut [BlockQ8_1]) {
    debug_assert_eq!(src.len(), dst.len() * QK8_1);
    for (x, y) in src.chunks_exact(QK8_1).zip(dst.iter_mut()) {
        let d = absmax(x) / 127.0;
        let id = recip_or_zero(d);
        y.d = F16Le::from_f32(d);
        let mut sum = 0i32;
        for (q, &v) in y.qs.iter_mut().zip(x) {
            *q = (v * id).round() as i8;
            sum += *q as i32;
        }
        y.s = F16Le::from_f32(sum as f32 * d);
    }
}

/// The index of the nearest of `kvalues_mxfp4 * e` to `x` (the first on ties).
#[inline]
fn best_index_mxfp4(x: f32, e: f32) -> u8 {
    let mut best = 0;
    let mut best_err = (KVALUES_MXFP4[0] as f32 * e - x).abs();
    for (i, &k) in KVALUES_MXFP4.iter().enumerate().skip(1) {
        let err = (k as f32 * e - x).abs();
        if err < best_err {
            best = i;
            best_err = err;
        }
    }
    best as u8
}

/// MXFP4: `e = floor(log2(amax)) - 2 + 127`, each value the nearest E2M1 level.
pub fn quantize_mxfp4(src: &[f32], dst: &mut [BlockMxfp4]) {
    debug_assert_eq!(src.len(), dst.len() * QK_MXFP4);
    for (x, y) in src.chunks_exact(QK_MXFP4).zip(dst.iter_mut()) {
        let amax = x
            .iter()
            .fold(0.0f32, |a, &v| if a < v.abs() { v.abs() } else { a });
        let e = if amax > 0.0 {
            (amax.log2().floor() - 2.0 + 127.0) as u8
        } else {
            0
        };
        let d = e8m0_to_f32_half(e);
        y.e = e;
        for j in 0..QK_MXFP4 / 2 {
            let q0 = best_index_mxfp4(x[j], d);
            let q1 = best_index_mxfp4(x[j + QK_MXFP4 / 2], d);
            y.qs[j] = q0 | (q1 << 4);
        }
    }
}

/// Q1_0: `d = mean(|x|)`, one bit per value: set when `x >= 0`.
pub fn quantize_q1_0(src: &[f32], dst: &mut [BlockQ1_0]) {
    debug_assert_eq!(src.len(), dst.len() * QK1_0);
    for (x, y) in src.chunks_exact(QK1_0).zip(dst.iter_mut()) {
        let mut sum_abs = 0.0f32;
        for &v in x {
            sum_abs += v.abs();
        }
        y.d = F16Le::from_f32(sum_abs / QK1_0 as f32);
        y.qs = [0; QK1_0 / 8];
        for (j, &v) in x.iter().enumerate() {
            if v >= 0.0 {
                y.qs[j / 8] |= 1 << (j % 8);
            }
        }
    }
}

/// Q2_0: `d = amax`, `q = clamp(round(x / d) + 1, 0, 3)`.
pub fn quantize_q2_0(src: &[f32], dst: &mut [BlockQ2_0]) {
    debug_assert_eq!(src.len(), dst.len() * QK2_0);
    for (x, y) in src.chunks_exact(QK2_0).zip(dst.iter_mut()) {
        let amax = x
            .iter()
            .fold(0.0f32, |a, &v| if v.abs() > a { v.abs() } else { a });
        let id = if amax > 0.0 { 1.0 / amax } else { 0.0 };
        y.d = F16Le::from_f32(amax);
        y.qs = [0; QK2_0 / 4];
        for (j, &v) in x.iter().enumerate() {
            let q = ((v * id).round() as i32).clamp(-1, 2) + 1;
            y.qs[j / 4] |= (q as u8) << ((j % 4) * 2);
        }
    }
}

// --- importance-weighted variants ------------------------------------------------------------

/// `sum(x^2) / n` over the whole row, as ggml's weighted legacy quantizers compute it.
fn row_sigma2(x: &[f32]) -> f32 {
    let mut s = 0.0f32;
    for &v in x {
        s += v * v;
    }
    s / x.len() as f32
}

fn block_weights(xb: &[f32], qw: &[f32], sigma2: f32) -> [f32; 32] {
    let mut w = [0f32; 32];
    for j in 0..32 {
        w[j] = qw[j] * (sigma2 + xb[j] * xb[j]).sqrt();
    }
    w
}

const QKX3: QkxSearch = QkxSearch {
    rmin: -0.9,
    rdelta: 0.05,
    nstep: 36,
    use_mad: false,
};

/// Packs 32 5-bit levels as Q5_0 / Q5_1 store them.
fn pack_q5(levels: &[u8; 32]) -> ([u8; 4], [u8; 16]) {
    let mut qs = [0u8; 16];
    let mut qh = 0u32;
    for j in 0..16 {
        let (x0, x1) = (levels[j], levels[j + 16]);
        qs[j] = (x0 & 0x0f) | ((x1 & 0x0f) << 4);
        qh |= ((x0 as u32 & 0x10) >> 4) << j;
        qh |= ((x1 as u32 & 0x10) >> 4) << (j + 16);
    }
    (qh.to_le_bytes(), qs)
}

/// One block by ggml's importance-weighted search (`quantize_row_qX_Y_impl`): `None` runs
/// the reference quantizer instead.
type WeightedPass<B> = fn(&[f32], &mut [B], Option<(&[f32], f32)>);

fn q4_0_pass(x: &[f32], y: &mut [BlockQ4_0], w: Option<(&[f32], f32)>) {
    let Some((qw, sigma2)) = w else {
        return quantize_q4_0(x, y);
    };
    let weight = block_weights(x, qw, sigma2);
    let mut l = [0i8; 32];
    let d = make_qx_quants(8, x, &mut l, QxWeight::Square, Some(&weight));
    y[0].d = F16Le::from_f32(d);
    for j in 0..16 {
        y[0].qs[j] = l[j] as u8 | ((l[j + 16] as u8) << 4);
    }
}

fn q4_1_pass(x: &[f32], y: &mut [BlockQ4_1], w: Option<(&[f32], f32)>) {
    let Some((qw, sigma2)) = w else {
        return quantize_q4_1(x, y);
    };
    let weight = block_weights(x, qw, sigma2);
    let (mut l, mut aux) = ([0u8; 32], [0u8; 32]);
    let (d, min) = make_qkx_quants(15, x, &weight, &mut l, &mut aux, QKX3);
    y[0].d = F16Le::from_f32(d);
    y[0].m = F16Le::from_f32(-min);
    for j in 0..16 {
        y[0].qs[j] = l[j] | (l[j + 16] << 4);
    }
}

fn q5_0_pass(x: &[f32], y: &mut [BlockQ5_0], w: Option<(&[f32], f32)>) {
    let Some((qw, sigma2)) = w else {
        return quantize_q5_0(x, y);
    };
    let weight = block_weights(x, qw, sigma2);
    let mut l = [0i8; 32];
    let d = make_qx_quants(16, x, &mut l, QxWeight::Square, Some(&weight));
    y[0].d = F16Le::from_f32(d);
    (y[0].qh, y[0].qs) = pack_q5(&l.map(|v| v as u8));
}

fn q5_1_pass(x: &[f32], y: &mut [BlockQ5_1], w: Option<(&[f32], f32)>) {
    let Some((qw, sigma2)) = w else {
        return quantize_q5_1(x, y);
    };
    let weight = block_weights(x, qw, sigma2);
    let (mut l, mut aux) = ([0u8; 32], [0u8; 32]);
    let (d, min) = make_qkx_quants(31, x, &weight, &mut l, &mut aux, QKX3);
    y[0].d = F16Le::from_f32(d);
    y[0].m = F16Le::from_f32(-min);
    (y[0].qh, y[0].qs) = pack_q5(&l);
}

/// Per block, the better (in importance-weighted squared error) of ggml's weighted search and
/// its reference quantizer; `src` is the whole row (the weights use the row's mean square).
fn weighted_row<B: crate::blocks::Block>(
    src: &[f32],
    dst: &mut [B],
    imatrix: &[f32],
    pass: WeightedPass<B>,
    deq: fn(&[B], &mut [f32]),
) {
    debug_assert_eq!(src.len(), dst.len() * 32);
    debug_assert_eq!(imatrix.len(), src.len());
    let sigma2 = row_sigma2(src);
    for (ib, (x, y)) in src.chunks_exact(32).zip(dst.iter_mut()).enumerate() {
        let qw = &imatrix[32 * ib..32 * ib + 32];
        let modes = [Some((qw, sigma2)), None];
        *y = best_of(x, Some(qw), &modes, pass, deq);
    }
}

/// Q4_0 with an importance vector (one weight per element of the row `src`).
pub fn quantize_q4_0_imatrix(src: &[f32], dst: &mut [BlockQ4_0], imatrix: &[f32]) {
    weighted_row(
        src,
        dst,
        imatrix,
        q4_0_pass,
        crate::dequant::dequantize_q4_0,
    );
}

/// Q4_1 with an importance vector (one weight per element of the row `src`).
pub fn quantize_q4_1_imatrix(src: &[f32], dst: &mut [BlockQ4_1], imatrix: &[f32]) {
    weighted_row(
        src,
        dst,
        imatrix,
        q4_1_pass,
        crate::dequant::dequantize_q4_1,
    );
}

/// Q5_0 with an importance vector (one weight per element of the row `src`).
pub fn quantize_q5_0_imatrix(src: &[f32], dst: &mut [BlockQ5_0], imatrix: &[f32]) {
    weighted_row(
        src,
        dst,
        imatrix,
        q5_0_pass,
        crate::dequant::dequantize_q5_0,
    );
}

/// Q5_1 with an importance vector (one weight per element of the row `src`).
pub fn quantize_q5_1_imatrix(src: &[f32], dst: &mut [BlockQ5_1], imatrix: &[f32]) {
    weighted_row(
        src,
        dst,
        imatrix,
        q5_1_pass,
        crate::dequant::dequantize_q5_1,
    );
}
