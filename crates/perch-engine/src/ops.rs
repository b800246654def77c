//! Element-wise and row-wise operations of the forward pass.
//!
//! These follow ggml's CPU definitions (accumulation types, the order RoPE computes its
//! angles in) so the engine's numbers track llama.cpp's. They are memory-light next to the
//! matrix products, so they are written as plain loops the compiler vectorises.

use crate::config::RopeKind;

/// RMSNorm of each `n`-wide row of `x` in place, times `weight`.
///
/// As ggml: the mean of squares is accumulated in f64, the scale is `1/sqrt(mean + eps)` in f32.
pub fn rms_norm(x: &mut [f32], n: usize, weight: &[f32], eps: f32) {
    debug_assert_eq!(weight.len(), n);
    for row in x.chunks_exact_mut(n) {
        let sum: f64 = row.iter().map(|&v| (v * v) as f64).sum();
        let mean = (sum / n as f64) as f32;
        let scale = 1.0 / (mean + eps).sqrt();
        for (v, &w) in row.iter_mut().zip(weight) {
            *v = (*v * scale) * w;
        }
    }
}

/// RMSNorm of each `n`-wide row of `src` into `dst`, times `weight`.
pub fn rms_norm_into(src: &[f32], dst: &mut [f32], n: usize, weight: &[f32], eps: f32) {
    dst.copy_from_slice(src);
    rms_norm(dst, n, weight, eps);
}

/// The cos/sin table of one position for RoPE, as ggml builds it.
///
/// `theta_i = pos * freq_scale * base^(-2i/n_rot) / freq_factor_i`, with the power computed by
/// repeated multiplication in f32 exactly as ggml's cache does.
pub fn rope_cache(
    pos: usize,
    n_rot: usize,
    base: f32,
    freq_scale: f32,
    freq_factors: Option<&[f32]>,
    out: &mut [(f32, f32)],
) {
    let theta_scale = base.powf(-2.0 / n_rot as f32);
    let mut theta = pos as f32;
    for (i, slot) in out.iter_mut().enumerate().take(n_rot / 2) {
        let ff = freq_factors.map_or(1.0, |f| f[i]);
        let t = freq_scale * (theta / ff);
        *slot = (t.cos(), t.sin());
        theta *= theta_scale;
    }
}

/// Apply RoPE to every `head_dim`-wide head in `x` (one token), using a cache from
/// [`rope_cache`]. Only the first `n_rot` dims of each head rotate.
pub fn rope_apply(
    x: &mut [f32],
    head_dim: usize,
    n_rot: usize,
    kind: RopeKind,
    cache: &[(f32, f32)],
) {
    for head in x.chunks_exact_mut(head_dim) {
        match kind {
            RopeKind::Normal => {
                for (i, &(c, s)) in cache.iter().enumerate().take(n_rot / 2) {
                    let (a, b) = (head[2 * i], head[2 * i + 1]);
                    head[2 * i] = a * c - b * s;
                    head[2 * i + 1] = a * s + b * c;
                }
            }
            RopeKind::Neox => {
                let half = n_rot / 2;
                for (i, &(c, s)) in cache.iter().enumerate().take(half) {
                    let (a, b) = (head[i], head[i + half]);
                    head[i] = a * c - b * s;
                    head[i + half] = a * s + b * c;
                }
            }
        }
    }
}

/// Softmax of `x` in place (max-subtracted, sum in f64 as ggml does).
pub fn softmax(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        x.fill(0.0);
        return;
    }
    let mut sum = 0.0f64;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v as f64;
    }
    let inv = (1.0 / sum) as f32;
    for v in x.iter_mut() {
        *v *= inv;
    }
}

/// `x = cap * tanh(x / cap)` element-wise.
pub fn softcap(x: &mut [f32], cap: f32) {
    for v in x.iter_mut() {
        *v = cap * (*v / cap).tanh();
    }
}

/// SiLU: `x * sigmoid(x)`.
#[inline]
pub fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// tanh-approximated GELU, as ggml's `gelu`.
#[inline]
pub fn gelu(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    const COEF_A: f32 = 0.044_715;
    0.5 * x * (1.0 + (SQRT_2_OVER_PI * x * (1.0 + COEF_A * x * x)).tanh())
}

/// `gate = act(gate) * up` element-wise.
pub fn glu(gate: &mut [f32], up: &[f32], act: crate::config::Activation) {
    use rayon::prelude::*;
    // Element-wise, so any split gives the same values; in parallel because it sits between
    // two matrix products, where one thread working alone leaves the others waiting.
    const CHUNK: usize = 2048;
    let f = match act {
        crate::config::Activation::Silu => silu,
        crate::config::Activation::Gelu => gelu,
    };
    gate.par_chunks_mut(CHUNK)
        .zip(up.par_chunks(CHUNK))
        .for_each(|(g, u)| {
            for (g, &u) in g.iter_mut().zip(u) {
                *g = f(*g) * u;
            }
        });
}

/// `dst += src` element-wise.
pub fn add_assign(dst: &mut [f32], src: &[f32]) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d += s;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rms_norm_matches_definition() {
        let mut x = vec![1.0f32, -2.0, 3.0, 0.5];
        let w = [1.0f32, 2.0, 0.5, 1.0];
        let ms = (1.0 + 4.0 + 9.0 + 0.25) / 4.0f64;
        let s = 1.0 / (ms as f32 + 1e-5).sqrt();
        let want: Vec<f32> = [1.0f32, -2.0, 3.0, 0.5]
            .iter()
            .zip(w)
            .map(|(v, w)| v * s * w)
            .collect();
        rms_norm(&mut x, 4, &w, 1e-5);
        assert_eq!(x, want);
    }

    #[test]
    fn rope_rotates_pairs_by_position_angle() {
        // A 4-dim head at position 3 with base 10000: pair 0 turns by 3 rad, pair 1 by 3/100.
        let mut cache = [(0.0, 0.0); 2];
        rope_cache(3, 4, 10_000.0, 1.0, None, &mut cache);
        let (c0, s0) = (3.0f32.cos(), 3.0f32.sin());
        let t1 = 3.0f32 * 10_000f32.powf(-0.5);
        let mut x = [1.0f32, 0.0, 0.0, 1.0];
        rope_apply(&mut x, 4, 4, RopeKind::Normal, &cache);
        assert!((x[0] - c0).abs() < 1e-6 && (x[1] - s0).abs() < 1e-6);
        assert!((x[2] + t1.sin()).abs() < 1e-6 && (x[3] - t1.cos()).abs() < 1e-6);
        let mut y = [1.0f32, 0.0, 0.0, 1.0];
        rope_apply(&mut y, 4, 4, RopeKind::Neox, &cache);
        // Neox pairs (0,2) and (1,3).
        assert!((y[0] - c0).abs() < 1e-6 && (y[2] - s0).abs() < 1e-6);
        assert!((y[1] + t1.sin()).abs() < 1e-6 && (y[3] - t1.cos()).abs() < 1e-6);
    }

    #[test]
    fn softmax_sums_to_one_and_handles_masked_rows() {
        let mut x = [1.0f32, 2.0, 3.0, f32::NEG_INFINITY];
        softmax(&mut x);
        assert!((x.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert_eq!(x[3], 0.0);
        let e: Vec<f64> = [1.0f64, 2.0, 3.0].iter().map(|v| (v - 3.0).exp()).collect();
        let z: f64 = e.iter().sum();
        assert!((x[2] as f64 - e[2] / z).abs() < 1e-6);
        let mut all_masked = [f32::NEG_INFINITY; 3];
        softmax(&mut all_masked);
        assert_eq!(all_masked, [0.0; 3]);
    }

    #[test]
    fn activations_match_closed_forms() {
        assert!((silu(1.0) - 1.0 / (1.0 + (-1.0f32).exp())).abs() < 1e-7);
        assert_eq!(silu(0.0), 0.0);
        assert!((gelu(1.0) - 0.841_192).abs() < 1e-5);
    }
}
