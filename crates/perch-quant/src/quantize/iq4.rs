//! IQ4_NL and IQ4_XS quantizers: values mapped to the 16 non-linear levels of
//! `kvalues_iq4nl`, with a weighted search over 15 scales per 32-element block (the approach
//! of ggml's `quantize_row_iq4_nl_impl`, as `quantize_iq4_nl` / `quantize_iq4_xs` run it).
//!
//! Weights are `imatrix[j] * sqrt(sigma2 + x[j]^2)` with an importance vector, `x[j]^2`
//! without one.
#![allow(clippy::needless_range_loop)] // parallel arrays indexed per element, as the algorithms are written

use super::best_of;
use super::search::*;
use crate::blocks::*;
use crate::tables::KVALUES_IQ4NL;
use crate::types::QK_K;

const NTRY: i32 = 7;

/// The best scale of one 32-element block (0 for an all-zero block); its levels in `lb`.
fn block_scale(xb: &[f32], weight: &[f32], lb: &mut [u8]) -> f32 {
    let values = &KVALUES_IQ4NL;
    let (mut amax, mut max) = (0.0f32, 0.0f32);
    for &v in xb {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    if amax < GROUP_MAX_EPS {
        return 0.0;
    }
    let mut d = -max / values[0] as f32;
    let mut id = 1.0 / d;
    let (mut sumqx, mut sumq2) = (0.0f32, 0.0f32);
    for j in 0..xb.len() {
        let l = best_index_int8(values, id * xb[j]);
        lb[j] = l as u8;
        let q = values[l] as f32;
        let w = weight[j];
        sumqx += w * q * xb[j];
        sumq2 += w * q * q;
    }
    d = if sumq2 > 0.0 { sumqx / sumq2 } else { 0.0 };
    let mut best = d * sumqx;
    for itry in -NTRY..=NTRY {
        id = (itry as f32 + values[0] as f32) / max;
        sumqx = 0.0;
        sumq2 = 0.0;
        for j in 0..xb.len() {
            let l = best_index_int8(values, id * xb[j]);
            let q = values[l] as f32;
            let w = weight[j];
            sumqx += w * q * xb[j];
            sumq2 += w * q * q;
        }
        if sumq2 > 0.0 && sumqx * sumqx > best * sumq2 {
            d = sumqx / sumq2;
            best = d * sumqx;
        }
    }
    d
}

fn weights(x: &[f32], sigma2: f32, qw: Option<&[f32]>, out: &mut [f32]) {
    match qw {
        Some(qw) => {
            for j in 0..x.len() {
                out[j] = qw[j] * (sigma2 + x[j] * x[j]).sqrt();
            }
        }
        None => {
            for j in 0..x.len() {
                out[j] = x[j] * x[j];
            }
        }
    }
}

fn sigma2(x: &[f32]) -> f32 {
    let mut s = 0.0f32;
    for &v in x {
        s += v * v;
    }
    s * (2.0 / x.len() as f32)
}

fn pack_nibbles(levels: &[u8], qs: &mut [u8]) {
    for (q, l) in qs.chunks_exact_mut(16).zip(levels.chunks_exact(32)) {
        for j in 0..16 {
            q[j] = l[j] | (l[16 + j] << 4);
        }
    }
}

/// IQ4_NL, one weighting.
fn iq4nl_pass(src: &[f32], dst: &mut [BlockIq4Nl], imatrix: Option<&[f32]>) {
    debug_assert_eq!(src.len(), dst.len() * QK4_NL);
    let mut weight = [0f32; QK4_NL];
    let mut levels = [0u8; QK4_NL];
    for (ib, (x, y)) in src.chunks_exact(QK4_NL).zip(dst.iter_mut()).enumerate() {
        let qw = imatrix.map(|w| &w[QK4_NL * ib..QK4_NL * (ib + 1)]);
        weights(x, sigma2(x), qw, &mut weight);
        let d = block_scale(x, &weight, &mut levels);
        y.d = F16Le::from_f32(d);
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        for j in 0..QK4_NL {
            levels[j] = best_index_int8(&KVALUES_IQ4NL, id * x[j]) as u8;
        }
        pack_nibbles(&levels, &mut y.qs);
    }
}

/// IQ4_XS, one weighting.
fn iq4xs_pass(src: &[f32], dst: &mut [BlockIq4Xs], imatrix: Option<&[f32]>) {
    debug_assert_eq!(src.len(), dst.len() * QK_K);
    let mut weight = [0f32; 32];
    let mut levels = [0u8; QK_K];
    let mut scales = [0f32; QK_K / 32];
    for (ibl, (x, y)) in src.chunks_exact(QK_K).zip(dst.iter_mut()).enumerate() {
        let qw = imatrix.map(|w| &w[QK_K * ibl..QK_K * (ibl + 1)]);
        let s2 = sigma2(x);
        let (mut max_scale, mut amax_scale) = (0.0f32, 0.0f32);
        for ib in 0..QK_K / 32 {
            let xb = &x[32 * ib..32 * ib + 32];
            weights(xb, s2, qw.map(|w| &w[32 * ib..32 * ib + 32]), &mut weight);
            scales[ib] = block_scale(xb, &weight, &mut levels[32 * ib..32 * ib + 32]);
            if scales[ib].abs() > amax_scale {
                amax_scale = scales[ib].abs();
                max_scale = scales[ib];
            }
        }
        let d = -max_scale / 32.0;
        y.d = F16Le::from_f32(d);
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut scales_h = 0u16;
        y.scales_l = [0; QK_K / 64];
        for ib in 0..QK_K / 32 {
            let l = nearest_int(id * scales[ib]).clamp(-32, 31);
            let dl = d * l as f32;
            let idl = if dl != 0.0 { 1.0 / dl } else { 0.0 };
            for j in 0..32 {
                levels[32 * ib + j] = best_index_int8(&KVALUES_IQ4NL, idl * x[32 * ib + j]) as u8;
            }
            let l = (l + 32) as u8;
            y.scales_l[ib / 2] |= (l & 0x0f) << (4 * (ib % 2));
            scales_h |= ((l >> 4) as u16) << (2 * ib);
        }
        y.scales_h = U16Le::new(scales_h);
        pack_nibbles(&levels, &mut y.qs);
    }
}

/// IQ4_NL. With an importance vector, the better (in importance-weighted squared error) of
/// the search weighted by it and the `x^2`-weighted one.
pub fn quantize_iq4_nl(src: &[f32], dst: &mut [BlockIq4Nl], imatrix: Option<&[f32]>) {
    debug_assert_eq!(src.len(), dst.len() * QK4_NL);
    for (i, (x, y)) in src.chunks_exact(QK4_NL).zip(dst.iter_mut()).enumerate() {
        let qw = imatrix.map(|w| &w[QK4_NL * i..QK4_NL * (i + 1)]);
        let modes: &[Option<&[f32]>] = match qw {
            None => &[None],
            Some(w) => &[Some(w), None],
        };
        *y = best_of(x, qw, modes, iq4nl_pass, crate::dequant::dequantize_iq4_nl);
    }
}

/// IQ4_XS. With an importance vector, the better (in importance-weighted squared error) of
/// the search weighted by it and the `x^2`-weighted one.
pub fn quantize_iq4_xs(src: &[f32], dst: &mut [BlockIq4Xs], imatrix: Option<&[f32]>) {
    debug_assert_eq!(src.len(), dst.len() * QK_K);
    for (i, (x, y)) in src.chunks_exact(QK_K).zip(dst.iter_mut()).enumerate() {
        let qw = imatrix.map(|w| &w[QK_K * i..QK_K * (i + 1)]);
        let modes: &[Option<&[f32]>] = match qw {
            None => &[None],
            Some(w) => &[Some(w), None],
        };
        *y = best_of(x, qw, modes, iq4xs_pass, crate::dequant::dequantize_iq4_xs);
    }
}
