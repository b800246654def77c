//! Scalar reference dot products for the 256-element super-block types against Q8_K:
//! Q2_K … Q6_K, TQ1_0, TQ2_0 and IQ4_XS.
//!
//! Same arithmetic as ggml's `ggml_vec_dot_*_q8_K_generic`: the integer sums are exact, and
//! the floating-point steps (eight `f32` lane sums per row for Q3_K…Q6_K, one running sum for
//! the others) are done in ggml's order.

use crate::blocks::{
    BlockIq4Xs, BlockQ2K, BlockQ3K, BlockQ4K, BlockQ5K, BlockQ6K, BlockQ8K, BlockTq1_0, BlockTq2_0,
};

use super::KVALUES_IQ4NL;

/// The eight 6-bit scales and eight 6-bit mins of a Q4_K/Q5_K block (ggml's `utmp` shuffle).
#[inline]
pub(crate) fn k4_scales_mins(s: &[u8; 12]) -> ([u8; 8], [u8; 8]) {
    let w = k4_scales_mins_u64(s);
    (w[0].to_le_bytes(), w[1].to_le_bytes())
}

/// [`k4_scales_mins`] as two little-endian words (scales, mins), computed four bytes at a
/// time: byte `j` of the first word is scale `j`, of the second min `j`.
#[inline]
pub(crate) fn k4_scales_mins_u64(s: &[u8; 12]) -> [u64; 2] {
    const LOW6: u32 = 0x3f3f_3f3f;
    const LOW4: u32 = 0x0f0f_0f0f;
    const TOP2: u32 = 0x0303_0303;
    let a = u32::from_le_bytes([s[0], s[1], s[2], s[3]]);
    let b = u32::from_le_bytes([s[4], s[5], s[6], s[7]]);
    let c = u32::from_le_bytes([s[8], s[9], s[10], s[11]]);
    let sc_lo = a & LOW6;
    let mn_lo = b & LOW6;
    let sc_hi = (c & LOW4) | (((a >> 6) & TOP2) << 4);
    let mn_hi = ((c >> 4) & LOW4) | (((b >> 6) & TOP2) << 4);
    [
        u64::from(sc_lo) | (u64::from(sc_hi) << 32),
        u64::from(mn_lo) | (u64::from(mn_hi) << 32),
    ]
}

/// The sixteen 6-bit scales of a Q3_K block, minus 32.
#[inline]
pub(crate) fn q3k_scales(s: &[u8; 12]) -> [i8; 16] {
    const KMASK1: u32 = 0x0303_0303;
    const KMASK2: u32 = 0x0f0f_0f0f;
    let a0 = u32::from_le_bytes([s[0], s[1], s[2], s[3]]);
    let a1 = u32::from_le_bytes([s[4], s[5], s[6], s[7]]);
    let tmp = u32::from_le_bytes([s[8], s[9], s[10], s[11]]);
    let w = [
        (a0 & KMASK2) | ((tmp & KMASK1) << 4),
        (a1 & KMASK2) | (((tmp >> 2) & KMASK1) << 4),
        ((a0 >> 4) & KMASK2) | (((tmp >> 4) & KMASK1) << 4),
        ((a1 >> 4) & KMASK2) | (((tmp >> 6) & KMASK1) << 4),
    ];
    let mut out = [0i8; 16];
    for (k, v) in w.iter().enumerate() {
        for (b, byte) in v.to_le_bytes().iter().enumerate() {
            out[4 * k + b] = *byte as i8 - 32;
        }
    }
    out
}

/// Sums `sc(e) * a[e] * q8[e]` into eight lanes by element index mod 8 (ggml's `aux32`),
/// with one scale per group of `group` elements.
#[inline]
fn lanes(a: &[i8; 256], q8: &[i8; 256], scale: impl Fn(usize) -> i32, group: usize) -> [i32; 8] {
    let mut aux = [0i32; 8];
    for (g, (ag, qg)) in a
        .chunks_exact(group)
        .zip(q8.chunks_exact(group))
        .enumerate()
    {
        let s = scale(g);
        for (e, (&x, &y)) in ag.iter().zip(qg).enumerate() {
            aux[e % 8] += s * (i32::from(x) * i32::from(y));
        }
    }
    aux
}

/// Q2_K · Q8_K (`ggml_vec_dot_q2_K_q8_K_generic`).
pub fn q2_k_q8_k(x: &[BlockQ2K], y: &[BlockQ8K]) -> f32 {
    assert_eq!(x.len(), y.len(), "block counts");
    let mut sumf = 0.0f32;
    for (xb, yb) in x.iter().zip(y) {
        let sc = &xb.scales;
        let mut summs = 0i32;
        for (b, s) in yb.bsums.iter().zip(sc) {
            summs += i32::from(b.get()) * i32::from(s >> 4);
        }
        let yd = yb.d.get();
        let dall = yd * xb.d.to_f32();
        let dmin = yd * xb.dmin.to_f32();
        let mut isum = 0i32;
        let mut is = 0;
        for k in 0..2 {
            let q2 = &xb.qs[32 * k..32 * k + 32];
            for j in 0..4 {
                let q8 = &yb.qs[128 * k + 32 * j..128 * k + 32 * j + 32];
                let shift = 2 * j;
                for half in 0..2 {
                    let d = i32::from(sc[is] & 0xf);
                    is += 1;
                    let mut s = 0i32;
                    for l in 16 * half..16 * half + 16 {
                        s += i32::from(q8[l]) * i32::from((q2[l] >> shift) & 3);
                    }
                    isum += d * s;
                }
            }
        }
        sumf += dall * isum as f32 - dmin * summs as f32;
    }
    sumf
}

/// Q3_K · Q8_K (`ggml_vec_dot_q3_K_q8_K_generic`).
pub fn q3_k_q8_k(x: &[BlockQ3K], y: &[BlockQ8K]) -> f32 {
    assert_eq!(x.len(), y.len(), "block counts");
    let mut sums = [0.0f32; 8];
    for (xb, yb) in x.iter().zip(y) {
        let mut a = [0i8; 256];
        for (n, chunk) in a.chunks_exact_mut(32).enumerate() {
            // Element 32n+l: bits 2(n%4) of qs[32(n/4)+l], high bit n of hmask[l].
            let q3 = &xb.qs[32 * (n / 4)..32 * (n / 4) + 32];
            let shift = 2 * (n % 4);
            for (l, v) in chunk.iter_mut().enumerate() {
                let lo = ((q3[l] >> shift) & 3) as i8;
                *v = lo - if xb.hmask[l] & (1 << n) != 0 { 0 } else { 4 };
            }
        }
        let sc = q3k_scales(&xb.scales);
        let aux = lanes(&a, &yb.qs, |g| i32::from(sc[g]), 16);
        let d = xb.d.to_f32() * yb.d.get();
        for l in 0..8 {
            sums[l] += d * aux[l] as f32;
        }
    }
    let mut sumf = 0.0f32;
    for s in sums {
        sumf += s;
    }
    sumf
}

/// Shared tail of Q4_K and Q5_K: `a` holds the unsigned quants.
#[inline]
fn k45_block(
    a: &[i8; 256],
    scales: &[u8; 12],
    d: f32,
    dmin: f32,
    yb: &BlockQ8K,
    sums: &mut [f32; 8],
) -> f32 {
    let (sc, mn) = k4_scales_mins(scales);
    let mut sumi = 0i32;
    for j in 0..16 {
        sumi += i32::from(yb.bsums[j].get()) * i32::from(mn[j / 2]);
    }
    let aux = lanes(a, &yb.qs, |g| i32::from(sc[g]), 32);
    let dd = d * yb.d.get();
    for l in 0..8 {
        sums[l] += dd * aux[l] as f32;
    }
    let dm = dmin * yb.d.get();
    dm * sumi as f32
}

/// Q4_K · Q8_K (`ggml_vec_dot_q4_K_q8_K_generic`).
pub fn q4_k_q8_k(x: &[BlockQ4K], y: &[BlockQ8K]) -> f32 {
    assert_eq!(x.len(), y.len(), "block counts");
    let mut sums = [0.0f32; 8];
    let mut sumf = 0.0f32;
    for (xb, yb) in x.iter().zip(y) {
        let mut a = [0i8; 256];
        for j in 0..4 {
            for l in 0..32 {
                let q = xb.qs[32 * j + l];
                a[64 * j + l] = (q & 0xf) as i8;
                a[64 * j + 32 + l] = (q >> 4) as i8;
            }
        }
        sumf -= k45_block(
            &a,
            &xb.scales,
            xb.d.to_f32(),
            xb.dmin.to_f32(),
            yb,
            &mut sums,
        );
    }
    for s in sums {
        sumf += s;
    }
    sumf
}

/// Q5_K · Q8_K (`ggml_vec_dot_q5_K_q8_K_generic`).
pub fn q5_k_q8_k(x: &[BlockQ5K], y: &[BlockQ8K]) -> f32 {
    assert_eq!(x.len(), y.len(), "block counts");
    let mut sums = [0.0f32; 8];
    let mut sumf = 0.0f32;
    for (xb, yb) in x.iter().zip(y) {
        let mut a = [0i8; 256];
        for j in 0..4 {
            for l in 0..32 {
                let q = xb.qs[32 * j + l];
                let h = xb.qh[l];
                a[64 * j + l] = ((q & 0xf) + if h & (1 << (2 * j)) != 0 { 16 } else { 0 }) as i8;
                a[64 * j + 32 + l] =
                    ((q >> 4) + if h & (2 << (2 * j)) != 0 { 16 } else { 0 }) as i8;
            }
        }
        sumf -= k45_block(
            &a,
            &xb.scales,
            xb.d.to_f32(),
            xb.dmin.to_f32(),
            yb,
            &mut sums,
        );
    }
    for s in sums {
        sumf += s;
    }
    sumf
}

/// Q6_K · Q8_K (`ggml_vec_dot_q6_K_q8_K_generic`).
pub fn q6_k_q8_k(x: &[BlockQ6K], y: &[BlockQ8K]) -> f32 {
    assert_eq!(x.len(), y.len(), "block counts");
    let mut sums = [0.0f32; 8];
    for (xb, yb) in x.iter().zip(y) {
        let mut a = [0i8; 256];
        for h in 0..2 {
            let ql = &xb.ql[64 * h..64 * h + 64];
            let qh = &xb.qh[32 * h..32 * h + 32];
            let a = &mut a[128 * h..128 * h + 128];
            for l in 0..32 {
                a[l] = ((ql[l] & 0xf) | ((qh[l] & 3) << 4)) as i8 - 32;
                a[l + 32] = ((ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4)) as i8 - 32;
                a[l + 64] = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i8 - 32;
                a[l + 96] = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i8 - 32;
            }
        }
        let aux = lanes(&a, &yb.qs, |g| i32::from(xb.scales[g]), 16);
        let d = xb.d.to_f32() * yb.d.get();
        for l in 0..8 {
            sums[l] += d * aux[l] as f32;
        }
    }
    let mut sumf = 0.0f32;
    for s in sums {
        sumf += s;
    }
    sumf
}

/// The trit at position `l` (0..5) of a TQ1_0 byte: ggml's `((q * 3^l) as u8 * 3) >> 8`.
#[inline]
pub(crate) fn tq1_trit(q: u8, l: usize) -> i32 {
    const POW3: [u8; 6] = [1, 3, 9, 27, 81, 243];
    let q = q.wrapping_mul(POW3[l]);
    ((u16::from(q) * 3) >> 8) as i32 - 1
}

/// TQ1_0 · Q8_K (`ggml_vec_dot_tq1_0_q8_K_generic`).
pub fn tq1_0_q8_k(x: &[BlockTq1_0], y: &[BlockQ8K]) -> f32 {
    assert_eq!(x.len(), y.len(), "block counts");
    let mut sumf = 0.0f32;
    for (xb, yb) in x.iter().zip(y) {
        let q8 = &yb.qs;
        let mut sum = 0i32;
        // 48 bytes of five trits: the first 32 bytes cover 160 elements, the next 16 cover 80.
        for l in 0..5 {
            for m in 0..32 {
                sum += tq1_trit(xb.qs[m], l) * i32::from(q8[l * 32 + m]);
            }
        }
        for l in 0..5 {
            for m in 0..16 {
                sum += tq1_trit(xb.qs[32 + m], l) * i32::from(q8[160 + l * 16 + m]);
            }
        }
        for l in 0..4 {
            for j in 0..4 {
                sum += tq1_trit(xb.qh[j], l) * i32::from(q8[240 + l * 4 + j]);
            }
        }
        sumf += sum as f32 * (xb.d.to_f32() * yb.d.get());
    }
    sumf
}

/// TQ2_0 · Q8_K (`ggml_vec_dot_tq2_0_q8_K_generic`).
pub fn tq2_0_q8_k(x: &[BlockTq2_0], y: &[BlockQ8K]) -> f32 {
    assert_eq!(x.len(), y.len(), "block counts");
    let mut sumf = 0.0f32;
    for (xb, yb) in x.iter().zip(y) {
        let mut sumi = 0i32;
        for j in (0..64).step_by(32) {
            for l in 0..4 {
                for k in 0..32 {
                    let t = i32::from((xb.qs[j + k] >> (2 * l)) & 3) - 1;
                    sumi += i32::from(yb.qs[j * 4 + l * 32 + k]) * t;
                }
            }
        }
        let d = yb.d.get() * xb.d.to_f32();
        sumf += sumi as f32 * d;
    }
    sumf
}

/// The eight 6-bit scales of an IQ4_XS block, minus 32.
#[inline]
pub(crate) fn iq4xs_scales(xb: &BlockIq4Xs) -> [i32; 8] {
    let h = xb.scales_h.get();
    let mut out = [0i32; 8];
    for (ib, o) in out.iter_mut().enumerate() {
        let lo = (xb.scales_l[ib / 2] >> (4 * (ib % 2))) & 0xf;
        let hi = ((h >> (2 * ib)) & 3) as u8;
        *o = i32::from(lo | (hi << 4)) - 32;
    }
    out
}

/// IQ4_XS · Q8_K (`ggml_vec_dot_iq4_xs_q8_K_generic`).
pub fn iq4_xs_q8_k(x: &[BlockIq4Xs], y: &[BlockQ8K]) -> f32 {
    assert_eq!(x.len(), y.len(), "block counts");
    let mut sumf = 0.0f32;
    for (xb, yb) in x.iter().zip(y) {
        let d4d8 = xb.d.to_f32() * yb.d.get();
        let ls = iq4xs_scales(xb);
        for (ib, l) in ls.iter().enumerate() {
            let qs = &xb.qs[16 * ib..16 * ib + 16];
            let q8 = &yb.qs[32 * ib..32 * ib + 32];
            let d1 = d4d8 * *l as f32;
            let (mut s1, mut s2) = (0i32, 0i32);
            for j in 0..16 {
                s1 += i32::from(q8[j]) * i32::from(KVALUES_IQ4NL[usize::from(qs[j] & 0xf)]);
                s2 += i32::from(q8[j + 16]) * i32::from(KVALUES_IQ4NL[usize::from(qs[j] >> 4)]);
            }
            sumf += d1 * (s1 + s2) as f32;
        }
    }
    sumf
}
