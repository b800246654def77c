//! The numeric quantizers, following onnxruntime.quantization's formulas (numpy's
//! round-half-to-even included).

/// int8 symmetric quantization of a `[k, n]` row-major matrix: one scale per column when
/// `per_channel`, else one for the whole tensor. Scale = max|w| / 127, zero point 0
/// (ONNX Runtime's symmetric int8 range is -127..127).
pub fn int8_symmetric(w: &[f32], k: usize, n: usize, per_channel: bool) -> (Vec<i8>, Vec<f32>) {
    debug_assert_eq!(w.len(), k * n);
    let scales: Vec<f32> = if per_channel {
        let mut amax = vec![0f32; n];
        for row in w.chunks_exact(n) {
            amax.iter_mut()
                .zip(row)
                .for_each(|(m, v)| *m = m.max(v.abs()));
        }
        amax.into_iter().map(scale_127).collect()
    } else {
        vec![scale_127(w.iter().fold(0f32, |m, v| m.max(v.abs())))]
    };
    let q = w
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let s = if per_channel {
                scales[i % n]
            } else {
                scales[0]
            };
            (v / s).round_ties_even().clamp(-127.0, 127.0) as i8
        })
        .collect();
    (q, scales)
}

fn scale_127(amax: f32) -> f32 {
    if amax > 0.0 { amax / 127.0 } else { 1.0 }
}

/// uint8 asymmetric parameters for a range (widened to include 0): scale and zero point,
/// as ONNX Runtime computes them for activations.
pub fn uint8_params(min: f32, max: f32) -> (f32, u8) {
    let (min, max) = (min.min(0.0), max.max(0.0));
    if max - min <= f32::EPSILON {
        return (1.0, 0);
    }
    let scale = (max - min) / 255.0;
    let zp = (-min / scale).round_ties_even().clamp(0.0, 255.0) as u8;
    (scale, zp)
}

/// A 4-bit block-quantized matrix in MatMulNBits layout.
pub struct Nbits {
    /// `[n, k_blocks, block_size / 2]`: column by column, each block's values two per byte
    /// (the first in the low nibble), K padded with zeros to whole blocks.
    pub packed: Vec<u8>,
    /// `[n, k_blocks]`.
    pub scales: Vec<f32>,
    /// `[n, ceil(k_blocks / 2)]` packed 4-bit zero points (asymmetric only).
    pub zero_points: Option<Vec<u8>>,
    /// Blocks per column.
    pub k_blocks: usize,
}

/// One block to 4 bits: symmetric (scale = the signed value of largest magnitude / -8,
/// stored zero point 8) or asymmetric (range widened to 0, scale = range / 15).
/// Returns the unsigned codes (0..15), the scale and the zero point.
fn quant_block4(vals: &[f32], symmetric: bool, codes: &mut Vec<u8>) -> (f32, u8) {
    codes.clear();
    if symmetric {
        let (mut amax, mut signed) = (0f32, 0f32);
        for &v in vals {
            if v.abs() > amax {
                amax = v.abs();
                signed = v;
            }
        }
        let scale = signed / -8.0;
        for &v in vals {
            let q = if scale == 0.0 {
                0.0
            } else {
                (v / scale).round_ties_even().clamp(-8.0, 7.0)
            };
            codes.push((q as i32 + 8) as u8);
        }
        (scale, 8)
    } else {
        let min = vals.iter().fold(0f32, |m, &v| m.min(v));
        let max = vals.iter().fold(0f32, |m, &v| m.max(v));
        let scale = (max - min) / 15.0;
        let zp = if scale == 0.0 {
            8.0
        } else {
            (-min / scale).round_ties_even().clamp(0.0, 15.0)
        };
        for &v in vals {
            let q = if scale == 0.0 {
                8.0
            } else {
                (v / scale + zp).round_ties_even().clamp(0.0, 15.0)
            };
            codes.push(q as u8);
        }
        (scale, zp as u8)
    }
}

fn pack_nibbles(codes: &[u8]) -> Vec<u8> {
    codes
        .chunks(2)
        .map(|p| (p[0] & 0xF) | (p.get(1).copied().unwrap_or(0) & 0xF) << 4)
        .collect()
}

/// Quantizes a `[k, n]` MatMul weight for MatMulNBits (blocks run along K in each column).
pub fn matmul_nbits(w: &[f32], k: usize, n: usize, block: usize, symmetric: bool) -> Nbits {
    let k_blocks = k.div_ceil(block);
    let mut packed = Vec::with_capacity(n * k_blocks * block / 2);
    let mut scales = Vec::with_capacity(n * k_blocks);
    let mut zps = Vec::with_capacity(n * k_blocks);
    let mut col = vec![0f32; k_blocks * block];
    let mut codes = Vec::with_capacity(block);
    for c in 0..n {
        col.iter_mut().for_each(|v| *v = 0.0);
        for r in 0..k {
            col[r] = w[r * n + c];
        }
        for b in 0..k_blocks {
            let (scale, zp) = quant_block4(&col[b * block..(b + 1) * block], symmetric, &mut codes);
            // Padding rows past K must decode to 0: they hold the zero point.
            for (i, code) in codes.iter_mut().enumerate() {
                if b * block + i >= k {
                    *code = zp;
                }
            }
            packed.extend(pack_nibbles(&codes));
            scales.push(scale);
            zps.push(zp);
        }
    }
    let zero_points = (!symmetric).then(|| zps.chunks(k_blocks).flat_map(pack_nibbles).collect());
    Nbits {
        packed,
        scales,
        zero_points,
        k_blocks,
    }
}

/// A `[rows, cols]` table quantized to 4 bits in blocks along its last axis, for
/// GatherBlockQuantized: `data` holds INT4 (symmetric, code - 8) or UINT4 codes packed two
/// per byte in row-major order; `scales` and `zero_points` are `[rows, cols / block]`.
pub struct Blocked4 {
    /// Packed 4-bit values.
    pub data: Vec<u8>,
    /// One scale per block.
    pub scales: Vec<f32>,
    /// Packed UINT4 zero points (asymmetric only).
    pub zero_points: Option<Vec<u8>>,
}

/// Quantizes a table along its last axis (`cols` must be a multiple of `block`).
pub fn gather_blocks4(w: &[f32], cols: usize, block: usize, symmetric: bool) -> Blocked4 {
    let mut codes_all = Vec::with_capacity(w.len());
    let mut scales = Vec::with_capacity(w.len() / block);
    let mut zps = Vec::with_capacity(w.len() / block);
    let mut codes = Vec::with_capacity(block);
    for row in w.chunks_exact(cols) {
        for blk in row.chunks(block) {
            let (scale, zp) = quant_block4(blk, symmetric, &mut codes);
            if symmetric {
                // INT4 two's complement: code 8 means 0.
                codes_all.extend(codes.iter().map(|&c| (c as i8 - 8) as u8 & 0xF));
            } else {
                codes_all.extend_from_slice(&codes);
            }
            scales.push(scale);
            zps.push(zp);
        }
    }
    Blocked4 {
        data: pack_nibbles(&codes_all),
        scales,
        zero_points: (!symmetric).then(|| pack_nibbles(&zps)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unpack(p: &[u8]) -> Vec<u8> {
        p.iter().flat_map(|b| [b & 0xF, b >> 4]).collect()
    }

    #[test]
    fn int8_round_trip_error_is_within_half_a_step() {
        let w: Vec<f32> = (0..64)
            .map(|i| ((i * 37 % 23) as f32 - 11.0) / 7.0)
            .collect();
        for per_channel in [false, true] {
            let (q, s) = int8_symmetric(&w, 8, 8, per_channel);
            for (i, (&v, &q)) in w.iter().zip(&q).enumerate() {
                let scale = if per_channel { s[i % 8] } else { s[0] };
                assert!((v - q as f32 * scale).abs() <= scale / 2.0 + 1e-6);
            }
        }
    }

    #[test]
    fn nbits_blocks_decode_close_and_pad_with_zero_point() {
        let (k, n, block) = (40, 3, 32);
        let w: Vec<f32> = (0..k * n)
            .map(|i| ((i * 13 % 17) as f32 - 8.0) / 5.0)
            .collect();
        for symmetric in [true, false] {
            let q = matmul_nbits(&w, k, n, block, symmetric);
            assert_eq!(q.k_blocks, 2);
            assert_eq!(q.packed.len(), n * 2 * block / 2);
            let codes = unpack(&q.packed);
            let zps = q.zero_points.as_ref().map(|z| unpack(z));
            for c in 0..n {
                for r in 0..2 * block {
                    let b = r / block;
                    let scale = q.scales[c * 2 + b];
                    let zp = zps.as_ref().map_or(8, |z| z[c * 2 + b]);
                    let code = codes[c * 2 * block + r];
                    let v = (code as f32 - zp as f32) * scale;
                    if r < k {
                        // Symmetric blocks scale by the signed extreme / -8, so a value of the
                        // other sign as large may be clipped by one step (as in ONNX Runtime).
                        let tol = if symmetric {
                            scale.abs() * 1.001
                        } else {
                            scale.abs() / 2.0
                        };
                        assert!(
                            (v - w[r * n + c]).abs() <= tol + 1e-6,
                            "{v} {}",
                            w[r * n + c]
                        );
                    } else {
                        assert_eq!(v, 0.0);
                    }
                }
            }
        }
    }

    #[test]
    fn uint8_params_cover_the_range() {
        let (s, zp) = uint8_params(-1.0, 3.0);
        assert!((s - 4.0 / 255.0).abs() < 1e-7);
        assert_eq!(zp, 64);
    }
}
