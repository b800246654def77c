//! Shared helpers of the kernel tests: a deterministic generator, random weight rows of any
//! block type with sane scales, and the f64 reference dot product through dequantization.
#![allow(dead_code)]

use perch_quant::blocks::*;
use perch_quant::{GgmlType, dequantize_row};

/// xorshift32: the same generator scripts/record_peer_kernels.py uses.
#[derive(Clone)]
pub struct Rng(pub u32);

impl Rng {
    pub fn next_u32(&mut self) -> u32 {
        let mut s = self.0;
        s ^= s << 13;
        s ^= s >> 17;
        s ^= s << 5;
        self.0 = s;
        s
    }

    /// Uniform in [0, 1) with 24 bits.
    pub fn unit(&mut self) -> f32 {
        (self.next_u32() >> 8) as f32 / 16_777_216.0
    }

    /// The peer script's row: `(u - 0.5) * 8`, or `(u - 0.5)^3 * 64` when `cube`.
    pub fn peer_row(seed: u32, n: usize, cube: bool) -> Vec<f32> {
        let mut r = Rng(seed);
        (0..n)
            .map(|_| {
                let c = r.unit() - 0.5;
                if cube { c * c * c * 64.0 } else { c * 8.0 }
            })
            .collect()
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u32() as u8).collect()
    }

    pub fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.unit()
    }
}

/// How to fill a weight row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fill {
    /// Random quants, random scales of moderate size.
    Random,
    /// Every byte zero (all-zero blocks).
    Zero,
    /// Every quant byte 0xFF, scales at a large value (maximal magnitudes).
    Max,
    /// Random quants, scales near the bottom of f16's range.
    Tiny,
}

fn scale(r: &mut Rng, fill: Fill) -> F16Le {
    match fill {
        Fill::Random => F16Le::from_f32(r.range(-0.05, 0.05)),
        Fill::Zero => F16Le::ZERO,
        Fill::Max => F16Le::from_f32(8.0),
        Fill::Tiny => F16Le::from_bits(1 + (r.next_u32() % 8) as u16),
    }
}

fn fix<B: Block>(bytes: &mut [u8], mut f: impl FnMut(&mut B)) {
    for b in as_blocks_mut::<B>(bytes).unwrap() {
        f(b);
    }
}

/// A weight row of `n` elements of type `ty`.
pub fn weight_row(ty: GgmlType, n: usize, r: &mut Rng, fill: Fill) -> Vec<u8> {
    use GgmlType::*;
    let nbytes = n / ty.block_size() * ty.type_size();
    if matches!(ty, F32 | F16 | BF16) {
        let vals: Vec<f32> = (0..n)
            .map(|_| match fill {
                Fill::Random => r.range(-1.0, 1.0),
                Fill::Zero => 0.0,
                Fill::Max => 60000.0,
                Fill::Tiny => 1e-7 * r.range(-1.0, 1.0),
            })
            .collect();
        let mut out = Vec::with_capacity(nbytes);
        for v in vals {
            match ty {
                F32 => out.extend_from_slice(&v.to_le_bytes()),
                F16 => out.extend_from_slice(&half::f16::from_f32(v).to_bits().to_le_bytes()),
                _ => out.extend_from_slice(&half::bf16::from_f32(v).to_bits().to_le_bytes()),
            }
        }
        return out;
    }
    let mut b = match fill {
        Fill::Zero => vec![0u8; nbytes],
        // Extreme quants of both signs: 0x80 and 0x7f are the i8 extremes, 0xff and 0x00
        // the nibble and 2-bit extremes.
        Fill::Max => [0x80u8, 0x7f, 0xff, 0x00]
            .iter()
            .copied()
            .cycle()
            .take(nbytes)
            .collect(),
        _ => r.bytes(nbytes),
    };
    let s = |r: &mut Rng| scale(r, fill);
    match ty {
        Q4_0 => fix::<BlockQ4_0>(&mut b, |x| x.d = s(r)),
        Q4_1 => fix::<BlockQ4_1>(&mut b, |x| (x.d, x.m) = (s(r), s(r))),
        Q5_0 => fix::<BlockQ5_0>(&mut b, |x| x.d = s(r)),
        Q5_1 => fix::<BlockQ5_1>(&mut b, |x| (x.d, x.m) = (s(r), s(r))),
        Q8_0 => fix::<BlockQ8_0>(&mut b, |x| x.d = s(r)),
        Q1_0 => fix::<BlockQ1_0>(&mut b, |x| x.d = s(r)),
        Q2_0 => fix::<BlockQ2_0>(&mut b, |x| x.d = s(r)),
        IQ4_NL => fix::<BlockIq4Nl>(&mut b, |x| x.d = s(r)),
        MXFP4 => fix::<BlockMxfp4>(&mut b, |x| {
            x.e = match fill {
                Fill::Zero => 0,
                Fill::Max => 140,
                Fill::Tiny => 1,
                Fill::Random => 110 + (r.next_u32() % 20) as u8,
            }
        }),
        NVFP4 => {}
        Q2_K => fix::<BlockQ2K>(&mut b, |x| (x.d, x.dmin) = (s(r), s(r))),
        Q3_K => fix::<BlockQ3K>(&mut b, |x| x.d = s(r)),
        Q4_K => fix::<BlockQ4K>(&mut b, |x| (x.d, x.dmin) = (s(r), s(r))),
        Q5_K => fix::<BlockQ5K>(&mut b, |x| (x.d, x.dmin) = (s(r), s(r))),
        Q6_K => fix::<BlockQ6K>(&mut b, |x| x.d = s(r)),
        TQ1_0 => fix::<BlockTq1_0>(&mut b, |x| x.d = s(r)),
        TQ2_0 => fix::<BlockTq2_0>(&mut b, |x| x.d = s(r)),
        IQ4_XS => fix::<BlockIq4Xs>(&mut b, |x| x.d = s(r)),
        IQ2_XXS => fix::<BlockIq2Xxs>(&mut b, |x| x.d = s(r)),
        IQ2_XS => fix::<BlockIq2Xs>(&mut b, |x| x.d = s(r)),
        IQ2_S => fix::<BlockIq2S>(&mut b, |x| x.d = s(r)),
        IQ3_XXS => fix::<BlockIq3Xxs>(&mut b, |x| x.d = s(r)),
        IQ3_S => fix::<BlockIq3S>(&mut b, |x| x.d = s(r)),
        IQ1_S => fix::<BlockIq1S>(&mut b, |x| x.d = s(r)),
        IQ1_M => fix::<BlockIq1M>(&mut b, |x| {
            // The f16 super-block scale lives in the top nibbles of the four u16 scale words.
            let d = s(r).to_bits();
            for k in 0..4 {
                let nib = ((d >> (4 * k)) & 0xf) as u8;
                x.scales[2 * k + 1] = (x.scales[2 * k + 1] & 0x0f) | (nib << 4);
            }
        }),
        other => panic!("no random rows for {other}"),
    }
    b
}

/// An activation row: `n` values of the given fill.
pub fn activation_row(n: usize, r: &mut Rng, fill: Fill) -> Vec<f32> {
    (0..n)
        .map(|_| match fill {
            Fill::Random => r.range(-3.0, 3.0),
            Fill::Zero => 0.0,
            // Large, but within Q8_1's f16 sum (`d * Σq` must stay below 65504).
            Fill::Max => {
                if r.next_u32() % 2 == 0 {
                    1e3
                } else {
                    -1e3
                }
            }
            Fill::Tiny => 1e-30 * r.range(-1.0, 1.0),
        })
        .collect()
}

/// `Σ w_i x_i` and `Σ |w_i x_i|` in f64, both rows dequantized by the crate's dequantizers
/// (bit-exact with ggml's, tested against gguf-py and llama.cpp in tests/ref_*.rs).
pub fn reference_dot(wty: GgmlType, w: &[u8], xty: GgmlType, x: &[u8], n: usize) -> (f64, f64) {
    let mut wf = vec![0f32; n];
    let mut xf = vec![0f32; n];
    dequantize_row(wty, w, &mut wf).unwrap();
    dequantize_row(xty, x, &mut xf).unwrap();
    let mut s = 0f64;
    let mut a = 0f64;
    for (p, q) in wf.iter().zip(&xf) {
        let t = f64::from(*p) * f64::from(*q);
        s += t;
        a += t.abs();
    }
    (s, a)
}

/// A weight row whose every scale is 1 (or the type's equivalent), so that its dot product
/// with [`unit_activation_row`] is a sum of integers and every float step is exact.
pub fn unit_weight_row(ty: GgmlType, n: usize, r: &mut Rng) -> Vec<u8> {
    use GgmlType::*;
    let one = F16Le::from_f32(1.0);
    match ty {
        F32 | F16 | BF16 => {
            let mut out = Vec::new();
            for _ in 0..n {
                let v = (r.next_u32() % 31) as f32 - 15.0;
                match ty {
                    F32 => out.extend_from_slice(&v.to_le_bytes()),
                    F16 => out.extend_from_slice(&half::f16::from_f32(v).to_bits().to_le_bytes()),
                    _ => out.extend_from_slice(&half::bf16::from_f32(v).to_bits().to_le_bytes()),
                }
            }
            out
        }
        _ => {
            let mut b = weight_row(ty, n, r, Fill::Random);
            match ty {
                MXFP4 => fix::<BlockMxfp4>(&mut b, |x| x.e = 128),
                NVFP4 => fix::<BlockNvfp4>(&mut b, |x| x.d = [0x40; 4]),
                Q4_1 => fix::<BlockQ4_1>(&mut b, |x| (x.d, x.m) = (one, one)),
                Q5_1 => fix::<BlockQ5_1>(&mut b, |x| (x.d, x.m) = (one, one)),
                Q2_K => fix::<BlockQ2K>(&mut b, |x| (x.d, x.dmin) = (one, one)),
                Q4_K => fix::<BlockQ4K>(&mut b, |x| (x.d, x.dmin) = (one, one)),
                Q5_K => fix::<BlockQ5K>(&mut b, |x| (x.d, x.dmin) = (one, one)),
                IQ1_M => fix::<BlockIq1M>(&mut b, |x| {
                    let d = one.to_bits();
                    for k in 0..4 {
                        let nib = ((d >> (4 * k)) & 0xf) as u8;
                        x.scales[2 * k + 1] = (x.scales[2 * k + 1] & 0x0f) | (nib << 4);
                    }
                }),
                _ => set_unit_d(ty, &mut b),
            }
            b
        }
    }
}

fn set_unit_d(ty: GgmlType, b: &mut [u8]) {
    use GgmlType::*;
    let one = F16Le::from_f32(1.0);
    match ty {
        Q4_0 => fix::<BlockQ4_0>(b, |x| x.d = one),
        Q5_0 => fix::<BlockQ5_0>(b, |x| x.d = one),
        Q8_0 => fix::<BlockQ8_0>(b, |x| x.d = one),
        Q1_0 => fix::<BlockQ1_0>(b, |x| x.d = one),
        Q2_0 => fix::<BlockQ2_0>(b, |x| x.d = one),
        IQ4_NL => fix::<BlockIq4Nl>(b, |x| x.d = one),
        Q3_K => fix::<BlockQ3K>(b, |x| x.d = one),
        Q6_K => fix::<BlockQ6K>(b, |x| x.d = one),
        TQ1_0 => fix::<BlockTq1_0>(b, |x| x.d = one),
        TQ2_0 => fix::<BlockTq2_0>(b, |x| x.d = one),
        IQ4_XS => fix::<BlockIq4Xs>(b, |x| x.d = one),
        IQ2_XXS => fix::<BlockIq2Xxs>(b, |x| x.d = one),
        IQ2_XS => fix::<BlockIq2Xs>(b, |x| x.d = one),
        IQ2_S => fix::<BlockIq2S>(b, |x| x.d = one),
        IQ3_XXS => fix::<BlockIq3Xxs>(b, |x| x.d = one),
        IQ3_S => fix::<BlockIq3S>(b, |x| x.d = one),
        IQ1_S => fix::<BlockIq1S>(b, |x| x.d = one),
        other => panic!("no unit scale for {other}"),
    }
}

/// An activation row of type `act` built directly: scale 1 and random quants in
/// `[-31, 31]` (sums and `s` consistent), or small integers for the float types.
pub fn unit_activation_row(act: GgmlType, n: usize, r: &mut Rng) -> Vec<u8> {
    use GgmlType::*;
    let mut q = || ((r.next_u32() % 63) as i32 - 31) as i8;
    match act {
        F32 | F16 | BF16 => {
            let mut out = Vec::new();
            for _ in 0..n {
                let v = f32::from(q()) / 8.0;
                match act {
                    F32 => out.extend_from_slice(&v.to_le_bytes()),
                    F16 => out.extend_from_slice(&half::f16::from_f32(v).to_bits().to_le_bytes()),
                    _ => out.extend_from_slice(&half::bf16::from_f32(v).to_bits().to_le_bytes()),
                }
            }
            out
        }
        Q8_0 => {
            let mut v = vec![BlockQ8_0::zeroed(); n / 32];
            for b in &mut v {
                b.d = F16Le::from_f32(1.0);
                b.qs.iter_mut().for_each(|x| *x = q());
            }
            bytemuck::cast_slice(&v).to_vec()
        }
        Q8_1 => {
            let mut v = vec![BlockQ8_1::zeroed(); n / 32];
            for b in &mut v {
                b.d = F16Le::from_f32(1.0);
                b.qs.iter_mut().for_each(|x| *x = q());
                let s: i32 = b.qs.iter().map(|&x| i32::from(x)).sum();
                b.s = F16Le::from_f32(s as f32);
            }
            bytemuck::cast_slice(&v).to_vec()
        }
        Q8_K => {
            let mut v = vec![BlockQ8K::zeroed(); n / 256];
            for b in &mut v {
                b.d = F32Le::new(1.0);
                b.qs.iter_mut().for_each(|x| *x = q());
                for (s, g) in b.bsums.iter_mut().zip(b.qs.chunks(16)) {
                    *s = I16Le::new(g.iter().map(|&x| i16::from(x)).sum());
                }
            }
            bytemuck::cast_slice(&v).to_vec()
        }
        other => panic!("{other} is not an activation type"),
    }
}

use bytemuck::Zeroable;

/// Elements in a row of `k` units of the least common block of `ty` and its activation type.
pub fn row_len(ty: GgmlType, k: usize) -> usize {
    let a = ty.block_size();
    let b = perch_quant::vec_dot_type(ty).block_size();
    a.max(b) * k
}
