//! K-quant quantizers (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K) and the Q8_K activation quantizer.
//!
//! Each K-quant has (up to) two algorithms, both after ggml's: the reference search
//! (`quantize_row_qX_K_ref`, what llama-quantize runs without an imatrix) and the weighted
//! search (`quantize_row_qX_K_impl`): per-element weights (`imatrix[j] * sqrt(sigma2 +
//! x[j]^2)` with an importance vector, a type-specific default without), a weighted search of
//! every sub-block's scale (and min), then a weighted quantization of the sub-block scales.
//! After the 6-/4-bit sub-block scales are fixed, every value is re-quantized against the
//! scale it will actually be decoded with.
//!
//! With an importance vector, the public functions run, per super-block, the algorithm
//! llama.cpp would run first and then the others, and keep the block with the least
//! importance-weighted squared error (see [`super::best_of`]). Without one, Q2_K and Q3_K do
//! the same by plain squared error (on the test rows the mean relative squared error is 16%
//! lower than llama.cpp's for Q2_K, 2% for Q3_K; `tests/ref_quantize.rs` prints the table),
//! while Q4_K, Q5_K and Q6_K run ggml's reference search alone, bit for bit what
//! llama-quantize writes. For Q4_K that is a measured choice: on SmolLM2 (its Q4_1 release
//! dequantized to F32; its ffn_down tensors are the only ones whose 1536-wide rows take a
//! K-quant) six lower-error alternatives (31% to 60% less squared error on those tensors)
//! all gave Q4_K_M a mean KL divergence of 0.0645 to 0.0654 in `perch perplexity` against
//! the reference search's 0.0638 (0.0630 to 0.0638 over small perturbations of the input),
//! on two texts and in llama-perplexity too, while the same weights re-encoded as Q8_0 gave
//! the same KLD either way: the difference does not come from the weight error but from how
//! the encoding meets the dot product's 8-bit activations. Q5_K shares the search and the
//! choice (Q3_K_L, whose K-quant tensors are all Q5_K, measured 0.3% to 0.6% worse with the
//! alternatives). Either way, no block is worse than llama.cpp's.
//!
//! `imatrix`, when given, has one weight per element of `src` (a row of the importance
//! matrix, indexed per super-block as ggml does: `imatrix[QK_K * i + j]`).
#![allow(clippy::needless_range_loop)] // parallel arrays indexed per element, as the algorithms are written

use super::best_of;
use super::search::*;
use crate::blocks::*;
use crate::types::QK_K;

/// Packs 256 2-bit levels as Q2_K / Q3_K store them: byte `l` of each 32-byte group holds
/// levels `l`, `l + 32`, `l + 64`, `l + 96` of its 128 values.
fn pack_2bit(levels: &[u8; QK_K], qs: &mut [u8; QK_K / 4]) {
    for (j, q) in (0..QK_K).step_by(128).zip(qs.chunks_exact_mut(32)) {
        for l in 0..32 {
            q[l] = levels[j + l]
                | (levels[j + l + 32] << 2)
                | (levels[j + l + 64] << 4)
                | (levels[j + l + 96] << 6);
        }
    }
}

/// Sum of squares of a super-block.
fn sum_sq(x: &[f32]) -> f32 {
    let mut s = 0.0f32;
    for &v in x {
        s += v * v;
    }
    s
}

/// Q2_K, one algorithm: without weights ggml's reference search, with weights the weighted one.
fn q2k_pass(src: &[f32], dst: &mut [BlockQ2K], imatrix: Option<&[f32]>) {
    debug_assert_eq!(src.len(), dst.len() * QK_K);
    const Q4SCALE: f32 = 15.0;
    let mut levels = [0u8; QK_K];
    let mut aux = [0u8; 16];
    let mut weights = [0f32; 16];
    let mut mins = [0f32; QK_K / 16];
    let mut scales = [0f32; QK_K / 16];
    for (i, (x, y)) in src.chunks_exact(QK_K).zip(dst.iter_mut()).enumerate() {
        match imatrix {
            None => {
                let search = QkxSearch {
                    rmin: -0.5,
                    rdelta: 0.1,
                    nstep: 15,
                    use_mad: true,
                };
                let (mut max_scale, mut max_min) = (0.0f32, 0.0f32);
                for j in 0..QK_K / 16 {
                    let xs = &x[16 * j..16 * j + 16];
                    for l in 0..16 {
                        weights[l] = xs[l].abs();
                    }
                    let (s, m) = make_qkx_quants(
                        3,
                        xs,
                        &weights,
                        &mut levels[16 * j..16 * j + 16],
                        &mut aux,
                        search,
                    );
                    scales[j] = s;
                    mins[j] = m;
                    if s > max_scale {
                        max_scale = s;
                    }
                    if m > max_min {
                        max_min = m;
                    }
                }
                if max_scale > 0.0 {
                    let iscale = Q4SCALE / max_scale;
                    for j in 0..QK_K / 16 {
                        y.scales[j] = nearest_int(iscale * scales[j]) as u8;
                    }
                    y.d = F16Le::from_f32(max_scale / Q4SCALE);
                } else {
                    y.scales = [0; QK_K / 16];
                    y.d = F16Le::from_f32(0.0);
                }
                if max_min > 0.0 {
                    let iscale = Q4SCALE / max_min;
                    for j in 0..QK_K / 16 {
                        let l = nearest_int(iscale * mins[j]);
                        y.scales[j] |= (l << 4) as u8;
                    }
                    y.dmin = F16Le::from_f32(max_min / Q4SCALE);
                } else {
                    y.dmin = F16Le::from_f32(0.0);
                }
            }
            Some(imatrix) => {
                let search = QkxSearch {
                    rmin: -0.9,
                    rdelta: 0.05,
                    nstep: 36,
                    use_mad: false,
                };
                let mut sw = [0f32; QK_K / 16];
                let sigma2 = sum_sq(x) / QK_K as f32;
                for j in 0..QK_K / 16 {
                    let qw = &imatrix[QK_K * i + 16 * j..QK_K * i + 16 * j + 16];
                    let xs = &x[16 * j..16 * j + 16];
                    for l in 0..16 {
                        weights[l] = qw[l] * (sigma2 + xs[l] * xs[l]).sqrt();
                    }
                    for &w in &weights {
                        sw[j] += w;
                    }
                    let (s, m) = make_qkx_quants(
                        3,
                        xs,
                        &weights,
                        &mut levels[16 * j..16 * j + 16],
                        &mut aux,
                        search,
                    );
                    scales[j] = s;
                    mins[j] = m;
                }
                let mut ls = [0u8; QK_K / 16];
                let mut lm = [0u8; QK_K / 16];
                let dm = make_qp_quants(15, &scales, &mut ls, &sw);
                let mm = make_qp_quants(15, &mins, &mut lm, &sw);
                y.d = F16Le::from_f32(dm);
                y.dmin = F16Le::from_f32(mm);
                for j in 0..QK_K / 16 {
                    y.scales[j] = ls[j] | (lm[j] << 4);
                }
            }
        }
        // Re-quantize against the scales and mins as they will be decoded.
        let dm = y.d.to_f32();
        let mm = y.dmin.to_f32();
        for j in 0..QK_K / 16 {
            let d = dm * (y.scales[j] & 0x0f) as f32;
            if d == 0.0 {
                continue;
            }
            let m = mm * (y.scales[j] >> 4) as f32;
            for ii in 0..16 {
                let l = nearest_int((x[16 * j + ii] + m) / d);
                levels[16 * j + ii] = l.clamp(0, 3) as u8;
            }
        }
        pack_2bit(&levels, &mut y.qs);
    }
}

/// Packs sixteen 6-bit Q3_K scales (already offset by 32).
fn pack_q3k_scales(ls: &[i32; 16]) -> [u8; 12] {
    let mut s = [0u8; 12];
    for (j, &l) in ls.iter().enumerate() {
        let l = l as u8;
        if j < 8 {
            s[j] = l & 0x0f;
        } else {
            s[j - 8] |= (l & 0x0f) << 4;
        }
        s[j % 4 + 8] |= (l >> 4) << (2 * (j / 4));
    }
    s
}

/// The two Q3_K algorithms: ggml's reference search, or the weighted one (weights from the
/// importance vector, or `x^2` without one).
#[derive(Clone, Copy)]
enum Q3Mode<'a> {
    Ref,
    Weighted(Option<&'a [f32]>),
}

/// Q3_K, one algorithm.
fn q3k_pass(src: &[f32], dst: &mut [BlockQ3K], mode: Q3Mode<'_>) {
    debug_assert_eq!(src.len(), dst.len() * QK_K);
    let mut levels = [0i8; QK_K];
    let mut scales = [0f32; QK_K / 16];
    let mut weight = [0f32; 16];
    for (i, (x, y)) in src.chunks_exact(QK_K).zip(dst.iter_mut()).enumerate() {
        match mode {
            Q3Mode::Ref => {
                let (mut max_scale, mut amax) = (0.0f32, 0.0f32);
                for j in 0..QK_K / 16 {
                    scales[j] = make_q3_quants(4, &x[16 * j..16 * j + 16], &mut levels[16 * j..]);
                    let a = scales[j].abs();
                    if a > amax {
                        amax = a;
                        max_scale = scales[j];
                    }
                }
                if max_scale != 0.0 {
                    let iscale = -32.0 / max_scale;
                    let mut ls = [0i32; 16];
                    for j in 0..QK_K / 16 {
                        // ggml stores nearest_int's result in an int8_t first.
                        let l = nearest_int(iscale * scales[j]) as i8 as i32;
                        ls[j] = l.clamp(-32, 31) + 32;
                    }
                    y.scales = pack_q3k_scales(&ls);
                    y.d = F16Le::from_f32(1.0 / iscale);
                } else {
                    y.scales = [0; 12];
                    y.d = F16Le::from_f32(0.0);
                }
            }
            Q3Mode::Weighted(imatrix) => {
                let sigma2 = 2.0 * sum_sq(x) / QK_K as f32;
                let mut sw = [0f32; QK_K / 16];
                for j in 0..QK_K / 16 {
                    let xs = &x[16 * j..16 * j + 16];
                    match imatrix {
                        Some(imatrix) => {
                            let qw = &imatrix[QK_K * i + 16 * j..QK_K * i + 16 * j + 16];
                            for l in 0..16 {
                                weight[l] = qw[l] * (sigma2 + xs[l] * xs[l]).sqrt();
                            }
                        }
                        None => {
                            for l in 0..16 {
                                weight[l] = xs[l] * xs[l];
                            }
                        }
                    }
                    let mut sumw = 0.0f32;
                    for &w in &weight {
                        sumw += w;
                    }
                    sw[j] = sumw;
                    scales[j] = make_qx_quants(
                        4,
                        xs,
                        &mut levels[16 * j..16 * j + 16],
                        QxWeight::Square,
                        Some(&weight),
                    );
                }
                let mut lsi = [0i8; 16];
                let d_block = make_qx_quants(32, &scales, &mut lsi, QxWeight::Square, Some(&sw));
                let ls = lsi.map(|l| l as i32);
                y.scales = pack_q3k_scales(&ls);
                y.d = F16Le::from_f32(d_block);
            }
        }
        let sc = crate::dequant::q3k_scales(&y.scales);
        let dd = y.d.to_f32();
        for j in 0..QK_K / 16 {
            let d = dd * (sc[j] as i32 - 32) as f32;
            if d == 0.0 {
                continue;
            }
            for ii in 0..16 {
                let l = nearest_int(x[16 * j + ii] / d).clamp(-4, 3);
                levels[16 * j + ii] = (l + 4) as i8;
            }
        }
        // High bits: the first 32 values in bit 0 of hmask[0..32], the next 32 in bit 1, ...
        let mut lv = [0u8; QK_K];
        y.hmask = [0; QK_K / 8];
        for j in 0..QK_K {
            let mut l = levels[j] as u8;
            if l > 3 {
                y.hmask[j % (QK_K / 8)] |= 1 << (j / (QK_K / 8));
                l -= 4;
            }
            lv[j] = l;
        }
        pack_2bit(&lv, &mut y.qs);
    }
}

/// The importance weights of super-block `i`.
fn block_mode(mode: K4Mode<'_>, i: usize) -> K4Mode<'_> {
    match mode {
        K4Mode::Weighted(Some(w)) => K4Mode::Weighted(Some(&w[QK_K * i..QK_K * (i + 1)])),
        m => m,
    }
}

/// Packs eight 6-bit scales and mins as Q4_K / Q5_K store them.
fn pack_k4_scales(ls: &[u8; 8], lm: &[u8; 8]) -> [u8; K_SCALE_SIZE] {
    let mut s = [0u8; K_SCALE_SIZE];
    for j in 0..8 {
        let (l, m) = (ls[j], lm[j]);
        if j < 4 {
            s[j] = l;
            s[j + 4] = m;
        } else {
            s[j + 4] = (l & 0x0f) | ((m & 0x0f) << 4);
            s[j - 4] |= (l >> 4) << 6;
            s[j] |= (m >> 4) << 6;
        }
    }
    s
}

/// The two Q4_K/Q5_K algorithms: ggml's reference search, or the weighted one (weights from
/// the importance vector, or `sqrt(sigma2) + |x|` without one).
#[derive(Clone, Copy)]
enum K4Mode<'a> {
    Ref,
    Weighted(Option<&'a [f32]>),
}

/// The shared scale/min search of Q4_K and Q5_K: fills `levels` (re-quantized against the
/// stored scales), `d`, `dmin` and `scales`.
fn quantize_k4_like(
    nmax: i32,
    ref_search: QkxSearch,
    x: &[f32],
    mode: K4Mode<'_>,
    levels: &mut [u8; QK_K],
) -> (F16Le, F16Le, [u8; K_SCALE_SIZE]) {
    let mut aux = [0u8; 32];
    let mut weights = [0f32; 32];
    let mut mins = [0f32; QK_K / 32];
    let mut scales = [0f32; QK_K / 32];
    let (d, dmin, packed);
    match mode {
        K4Mode::Ref => {
            let (mut max_scale, mut max_min) = (0.0f32, 0.0f32);
            for j in 0..QK_K / 32 {
                let xs = &x[32 * j..32 * j + 32];
                let av_x = (sum_sq(xs) / 32.0).sqrt();
                for l in 0..32 {
                    weights[l] = av_x + xs[l].abs();
                }
                let (s, m) = make_qkx_quants(
                    nmax,
                    xs,
                    &weights,
                    &mut levels[32 * j..32 * j + 32],
                    &mut aux,
                    ref_search,
                );
                scales[j] = s;
                mins[j] = m;
                if s > max_scale {
                    max_scale = s;
                }
                if m > max_min {
                    max_min = m;
                }
            }
            let inv_scale = if max_scale > 0.0 {
                63.0 / max_scale
            } else {
                0.0
            };
            let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
            let mut ls = [0u8; 8];
            let mut lm = [0u8; 8];
            for j in 0..8 {
                ls[j] = (nearest_int(inv_scale * scales[j]) as u8).min(63);
                lm[j] = (nearest_int(inv_min * mins[j]) as u8).min(63);
            }
            packed = pack_k4_scales(&ls, &lm);
            d = F16Le::from_f32(max_scale / 63.0);
            dmin = F16Le::from_f32(max_min / 63.0);
        }
        K4Mode::Weighted(qw) => {
            let search = QkxSearch {
                rmin: -0.9,
                rdelta: 0.05,
                nstep: 36,
                use_mad: false,
            };
            let sigma2 = 2.0 * sum_sq(x) / QK_K as f32;
            let av_x = sigma2.sqrt();
            let mut sw = [0f32; QK_K / 32];
            for j in 0..QK_K / 32 {
                let xs = &x[32 * j..32 * j + 32];
                match qw {
                    Some(qw) => {
                        let q = &qw[32 * j..32 * j + 32];
                        for l in 0..32 {
                            weights[l] = q[l] * (sigma2 + xs[l] * xs[l]).sqrt();
                        }
                    }
                    None => {
                        for l in 0..32 {
                            weights[l] = av_x + xs[l].abs();
                        }
                    }
                }
                let mut sumw = 0.0f32;
                for &w in &weights {
                    sumw += w;
                }
                sw[j] = sumw;
                let (s, m) = make_qkx_quants(
                    nmax,
                    xs,
                    &weights,
                    &mut levels[32 * j..32 * j + 32],
                    &mut aux,
                    search,
                );
                scales[j] = s;
                mins[j] = m;
            }
            let mut ls = [0u8; 8];
            let mut lm = [0u8; 8];
            let d_block = make_qp_quants(63, &scales, &mut ls, &sw);
            let m_block = make_qp_quants(63, &mins, &mut lm, &sw);
            packed = pack_k4_scales(&ls.map(|v| v.min(63)), &lm.map(|v| v.min(63)));
            d = F16Le::from_f32(d_block);
            dmin = F16Le::from_f32(m_block);
        }
    }
    for j in 0..QK_K / 32 {
        let (sc, m) = crate::dequant::scale_min_k4(j, &packed);
        let dj = d.to_f32() * sc as f32;
        if dj == 0.0 {
            continue;
        }
        let dm = dmin.to_f32() * m as f32;
        for ii in 0..32 {
            let l = nearest_int((x[32 * j + ii] + dm) / dj);
            levels[32 * j + ii] = l.clamp(0, nmax) as u8;
        }
    }
    (d, dmin, packed)
}

/// Q4_K, one algorithm.
fn q4k_pass(src: &[f32], dst: &mut [BlockQ4K], mode: K4Mode<'_>) {
    debug_assert_eq!(src.len(), dst.len() * QK_K);
    let search = QkxSearch {
        rmin: -1.0,
        rdelta: 0.1,
        nstep: 20,
        use_mad: false,
    };
    let mut levels = [0u8; QK_K];
    for (i, (x, y)) in src.chunks_exact(QK_K).zip(dst.iter_mut()).enumerate() {
        (y.d, y.dmin, y.scales) = quantize_k4_like(15, search, x, block_mode(mode, i), &mut levels);
        for (n, q) in (0..QK_K).step_by(64).zip(y.qs.chunks_exact_mut(32)) {
            for l in 0..32 {
                q[l] = levels[n + l] | (levels[n + l + 32] << 4);
            }
        }
    }
}

/// Q5_K, one algorithm.
fn q5k_pass(src: &[f32], dst: &mut [BlockQ5K], mode: K4Mode<'_>) {
    debug_assert_eq!(src.len(), dst.len() * QK_K);
    let search = QkxSearch {
        rmin: -0.5,
        rdelta: 0.1,
        nstep: 15,
        use_mad: false,
    };
    let mut levels = [0u8; QK_K];
    for (i, (x, y)) in src.chunks_exact(QK_K).zip(dst.iter_mut()).enumerate() {
        (y.d, y.dmin, y.scales) = quantize_k4_like(31, search, x, block_mode(mode, i), &mut levels);
        y.qh = [0; QK_K / 8];
        let (mut m1, mut m2) = (1u8, 2u8);
        for (n, ql) in (0..QK_K).step_by(64).zip(y.qs.chunks_exact_mut(32)) {
            for j in 0..32 {
                let mut l1 = levels[n + j];
                if l1 > 15 {
                    l1 -= 16;
                    y.qh[j] |= m1;
                }
                let mut l2 = levels[n + j + 32];
                if l2 > 15 {
                    l2 -= 16;
                    y.qh[j] |= m2;
                }
                ql[j] = l1 | (l2 << 4);
            }
            m1 = m1.wrapping_shl(2);
            m2 = m2.wrapping_shl(2);
        }
    }
}

/// Q6_K, one algorithm (ggml's reference search without weights, weighted with them).
fn q6k_pass(src: &[f32], dst: &mut [BlockQ6K], imatrix: Option<&[f32]>) {
    debug_assert_eq!(src.len(), dst.len() * QK_K);
    let mut levels = [0i8; QK_K];
    let mut scales = [0f32; QK_K / 16];
    for (i, (x, y)) in src.chunks_exact(QK_K).zip(dst.iter_mut()).enumerate() {
        let (mut max_scale, mut max_abs_scale) = (0.0f32, 0.0f32);
        for ib in 0..QK_K / 16 {
            let qw = imatrix.map(|w| &w[QK_K * i + 16 * ib..QK_K * i + 16 * ib + 16]);
            let s = make_qx_quants(
                32,
                &x[16 * ib..16 * ib + 16],
                &mut levels[16 * ib..16 * ib + 16],
                QxWeight::Square,
                qw,
            );
            scales[ib] = s;
            if s.abs() > max_abs_scale {
                max_abs_scale = s.abs();
                max_scale = s;
            }
        }
        if max_abs_scale < GROUP_MAX_EPS {
            *y = bytemuck::Zeroable::zeroed();
            continue;
        }
        let iscale = -128.0 / max_scale;
        y.d = F16Le::from_f32(1.0 / iscale);
        for ib in 0..QK_K / 16 {
            y.scales[ib] = nearest_int(iscale * scales[ib]).min(127) as i8;
        }
        for j in 0..QK_K / 16 {
            let d = y.d.to_f32() * y.scales[j] as f32;
            if d == 0.0 {
                continue;
            }
            for ii in 0..16 {
                let l = nearest_int(x[16 * j + ii] / d).clamp(-32, 31);
                levels[16 * j + ii] = (l + 32) as i8;
            }
        }
        for (n, (ql, qh)) in (0..QK_K)
            .step_by(128)
            .zip(y.ql.chunks_exact_mut(64).zip(y.qh.chunks_exact_mut(32)))
        {
            let lv = |k: usize| levels[n + k] as u8;
            for l in 0..32 {
                ql[l] = (lv(l) & 0x0f) | ((lv(l + 64) & 0x0f) << 4);
                ql[l + 32] = (lv(l + 32) & 0x0f) | ((lv(l + 96) & 0x0f) << 4);
                qh[l] = (lv(l) >> 4)
                    | ((lv(l + 32) >> 4) << 2)
                    | ((lv(l + 64) >> 4) << 4)
                    | ((lv(l + 96) >> 4) << 6);
            }
        }
    }
}

/// Q8_K (the activation type of the K- and I-quant dot products): `d = max / -127`,
/// `q = min(127, round(x / d))`, with the sums of each 16 quants.
pub fn quantize_q8_k(src: &[f32], dst: &mut [BlockQ8K]) {
    debug_assert_eq!(src.len(), dst.len() * QK_K);
    for (x, y) in src.chunks_exact(QK_K).zip(dst.iter_mut()) {
        let (mut max, mut amax) = (0.0f32, 0.0f32);
        for &v in x {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        if amax == 0.0 {
            // ggml zeroes d and the quants and leaves bsums as they were; perch zeroes them.
            *y = bytemuck::Zeroable::zeroed();
            continue;
        }
        let iscale = -127.0 / max;
        for (q, &v) in y.qs.iter_mut().zip(x) {
            *q = nearest_int(iscale * v).min(127) as i8;
        }
        for (j, s) in y.bsums.iter_mut().enumerate() {
            let sum: i32 = y.qs[16 * j..16 * j + 16].iter().map(|&q| q as i32).sum();
            *s = I16Le::new(sum as i16);
        }
        y.d = F32Le::new(1.0 / iscale);
    }
}

/// All-ones importance weights: Q2_K's weighted search with plain `sqrt(sigma2 + x^2)`
/// weights, tried as a second candidate when no importance vector is given.
static ONES: [f32; QK_K] = [1.0; QK_K];

/// Q2_K. Without an importance vector, the better (in squared error) of ggml's reference
/// search and the weighted search with unit importance; with one, the better (in
/// importance-weighted squared error) of the weighted search and the reference one.
pub fn quantize_q2_k(src: &[f32], dst: &mut [BlockQ2K], imatrix: Option<&[f32]>) {
    debug_assert_eq!(src.len(), dst.len() * QK_K);
    for (i, (x, y)) in src.chunks_exact(QK_K).zip(dst.iter_mut()).enumerate() {
        let qw = imatrix.map(|w| &w[QK_K * i..QK_K * (i + 1)]);
        let modes: &[Option<&[f32]>] = match qw {
            None => &[None, Some(&ONES)],
            Some(w) => &[Some(w), None],
        };
        *y = best_of(x, qw, modes, q2k_pass, crate::dequant::dequantize_q2_k);
    }
}

/// Q3_K: the better of ggml's reference search and the weighted search (with the importance
/// vector when given, `x^2` weights otherwise), by (importance-weighted) squared error.
pub fn quantize_q3_k(src: &[f32], dst: &mut [BlockQ3K], imatrix: Option<&[f32]>) {
    debug_assert_eq!(src.len(), dst.len() * QK_K);
    for (i, (x, y)) in src.chunks_exact(QK_K).zip(dst.iter_mut()).enumerate() {
        let qw = imatrix.map(|w| &w[QK_K * i..QK_K * (i + 1)]);
        let modes: &[Q3Mode<'_>] = match qw {
            None => &[Q3Mode::Ref, Q3Mode::Weighted(None)],
            Some(w) => &[
                Q3Mode::Weighted(Some(w)),
                Q3Mode::Ref,
                Q3Mode::Weighted(None),
            ],
        };
        *y = best_of(x, qw, modes, q3k_pass, crate::dequant::dequantize_q3_k);
    }
}

/// The Q4_K/Q5_K algorithms tried with an importance vector, the one llama.cpp runs first.
fn k4_modes(w: &[f32]) -> [K4Mode<'_>; 3] {
    [
        K4Mode::Weighted(Some(w)),
        K4Mode::Ref,
        K4Mode::Weighted(None),
    ]
}

/// Q4_K. Without an importance vector, ggml's reference search (what llama-quantize runs, bit
/// for bit; see the module notes for why no alternative is tried); with one, the best (in
/// importance-weighted squared error) of the weighted search, the reference one and the
/// weighted search with `sqrt(sigma2) + |x|` weights.
pub fn quantize_q4_k(src: &[f32], dst: &mut [BlockQ4K], imatrix: Option<&[f32]>) {
    debug_assert_eq!(src.len(), dst.len() * QK_K);
    let Some(imatrix) = imatrix else {
        return q4k_pass(src, dst, K4Mode::Ref);
    };
    for (i, (x, y)) in src.chunks_exact(QK_K).zip(dst.iter_mut()).enumerate() {
        let w = &imatrix[QK_K * i..QK_K * (i + 1)];
        *y = best_of(
            x,
            Some(w),
            &k4_modes(w),
            q4k_pass,
            crate::dequant::dequantize_q4_k,
        );
    }
}

/// Q5_K: as [`quantize_q4_k`], with 5-bit levels.
pub fn quantize_q5_k(src: &[f32], dst: &mut [BlockQ5K], imatrix: Option<&[f32]>) {
    debug_assert_eq!(src.len(), dst.len() * QK_K);
    let Some(imatrix) = imatrix else {
        return q5k_pass(src, dst, K4Mode::Ref);
    };
    for (i, (x, y)) in src.chunks_exact(QK_K).zip(dst.iter_mut()).enumerate() {
        let w = &imatrix[QK_K * i..QK_K * (i + 1)];
        *y = best_of(
            x,
            Some(w),
            &k4_modes(w),
            q5k_pass,
            crate::dequant::dequantize_q5_k,
        );
    }
}

/// Q6_K: ggml's reference search; with an importance vector, the better of the weighted
/// search and the reference one, by importance-weighted squared error.
pub fn quantize_q6_k(src: &[f32], dst: &mut [BlockQ6K], imatrix: Option<&[f32]>) {
    debug_assert_eq!(src.len(), dst.len() * QK_K);
    for (i, (x, y)) in src.chunks_exact(QK_K).zip(dst.iter_mut()).enumerate() {
        let qw = imatrix.map(|w| &w[QK_K * i..QK_K * (i + 1)]);
        let modes: &[Option<&[f32]>] = match qw {
            None => &[None],
            Some(w) => &[Some(w), None],
        };
        *y = best_of(x, qw, modes, q6k_pass, crate::dequant::dequantize_q6_k);
    }
}
