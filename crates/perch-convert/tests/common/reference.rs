//! A plain f32 llama forward pass, written from the papers and llama2.c's `run.c` rather than
//! from perch's engine: the reference the converted models' logits are compared with.

/// How RoPE pairs dimensions.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Rope {
    /// llama2.c (and GGUF's llama): pairs (2i, 2i+1).
    Interleaved,
    /// Hugging Face's `rotate_half`: pairs (i, i + hd/2).
    RotateHalf,
}

/// One block, matrices row-major `[out][in]`.
pub struct Layer {
    pub att_norm: Vec<f32>,
    pub wq: Vec<f32>,
    pub wk: Vec<f32>,
    pub wv: Vec<f32>,
    pub wo: Vec<f32>,
    pub ffn_norm: Vec<f32>,
    pub w1: Vec<f32>,
    pub w2: Vec<f32>,
    pub w3: Vec<f32>,
}

/// A llama model in f32.
pub struct Llama {
    pub dim: usize,
    pub hidden: usize,
    pub n_heads: usize,
    pub n_kv: usize,
    pub vocab: usize,
    pub eps: f32,
    pub theta: f32,
    pub rope: Rope,
    pub emb: Vec<f32>,
    pub layers: Vec<Layer>,
    pub final_norm: Vec<f32>,
    pub cls: Vec<f32>,
}

fn matvec(w: &[f32], x: &[f32], rows: usize) -> Vec<f32> {
    let cols = x.len();
    (0..rows)
        .map(|r| {
            w[r * cols..(r + 1) * cols]
                .iter()
                .zip(x)
                .map(|(a, b)| f64::from(*a) * f64::from(*b))
                .sum::<f64>() as f32
        })
        .collect()
}

fn rmsnorm(x: &[f32], w: &[f32], eps: f32) -> Vec<f32> {
    let ss = x.iter().map(|v| f64::from(*v) * f64::from(*v)).sum::<f64>() / x.len() as f64;
    let s = 1.0 / (ss as f32 + eps).sqrt();
    x.iter().zip(w).map(|(v, g)| v * s * g).collect()
}

impl Llama {
    fn rope(&self, v: &mut [f32], pos: usize) {
        let hd = self.dim / self.n_heads;
        for head in v.chunks_exact_mut(hd) {
            for i in 0..hd / 2 {
                let freq = 1.0 / f64::from(self.theta).powf((2 * i) as f64 / hd as f64);
                let a = pos as f64 * freq;
                let (s, c) = (a.sin() as f32, a.cos() as f32);
                let (j, k) = match self.rope {
                    Rope::Interleaved => (2 * i, 2 * i + 1),
                    Rope::RotateHalf => (i, i + hd / 2),
                };
                let (x0, x1) = (head[j], head[k]);
                head[j] = x0 * c - x1 * s;
                head[k] = x0 * s + x1 * c;
            }
        }
    }

    /// Logits at every position of `tokens` (causal attention).
    pub fn forward(&self, tokens: &[u32]) -> Vec<Vec<f32>> {
        let hd = self.dim / self.n_heads;
        let kv_dim = hd * self.n_kv;
        let group = self.n_heads / self.n_kv;
        let mut keys: Vec<Vec<Vec<f32>>> = vec![Vec::new(); self.layers.len()];
        let mut values: Vec<Vec<Vec<f32>>> = vec![Vec::new(); self.layers.len()];
        let mut out = Vec::new();
        for (pos, &t) in tokens.iter().enumerate() {
            let t = t as usize;
            let mut x = self.emb[t * self.dim..(t + 1) * self.dim].to_vec();
            for (l, layer) in self.layers.iter().enumerate() {
                let h = rmsnorm(&x, &layer.att_norm, self.eps);
                let mut q = matvec(&layer.wq, &h, self.dim);
                let mut k = matvec(&layer.wk, &h, kv_dim);
                let v = matvec(&layer.wv, &h, kv_dim);
                self.rope(&mut q, pos);
                self.rope(&mut k, pos);
                keys[l].push(k);
                values[l].push(v);
                let mut att = vec![0.0f32; self.dim];
                for hh in 0..self.n_heads {
                    let kvh = hh / group;
                    let qh = &q[hh * hd..(hh + 1) * hd];
                    let mut scores: Vec<f64> = keys[l]
                        .iter()
                        .map(|k| {
                            qh.iter()
                                .zip(&k[kvh * hd..(kvh + 1) * hd])
                                .map(|(a, b)| f64::from(*a) * f64::from(*b))
                                .sum::<f64>()
                                / (hd as f64).sqrt()
                        })
                        .collect();
                    let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    scores.iter_mut().for_each(|s| *s = (*s - m).exp());
                    let sum: f64 = scores.iter().sum();
                    for (p, v) in scores.iter().zip(&values[l]) {
                        for d in 0..hd {
                            att[hh * hd + d] += (p / sum) as f32 * v[kvh * hd + d];
                        }
                    }
                }
                let o = matvec(&layer.wo, &att, self.dim);
                x.iter_mut().zip(&o).for_each(|(a, b)| *a += b);
                let h = rmsnorm(&x, &layer.ffn_norm, self.eps);
                let g = matvec(&layer.w1, &h, self.hidden);
                let u = matvec(&layer.w3, &h, self.hidden);
                let act: Vec<f32> = g
                    .iter()
                    .zip(&u)
                    .map(|(g, u)| g / (1.0 + (-g).exp()) * u)
                    .collect();
                let d = matvec(&layer.w2, &act, self.dim);
                x.iter_mut().zip(&d).for_each(|(a, b)| *a += b);
            }
            let h = rmsnorm(&x, &self.final_norm, self.eps);
            out.push(matvec(&self.cls, &h, self.vocab));
        }
        out
    }
}

/// splitmix64 random numbers in [-scale, scale).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }

    pub fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.next() * scale).collect()
    }
}

/// The dimensions of a random model.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub dim: usize,
    pub hidden: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub n_kv: usize,
    pub vocab: usize,
}

/// The tiny shape the tests use: 64 wide, 96 FFN, 2 layers, 4 heads (2 KV), 300 tokens.
pub const TINY: Shape = Shape {
    dim: 64,
    hidden: 96,
    n_layers: 2,
    n_heads: 4,
    n_kv: 2,
    vocab: 300,
};

/// A random model of the given shape.
pub fn random_llama(seed: u64, shape: Shape, rope: Rope) -> Llama {
    let Shape {
        dim,
        hidden,
        n_layers,
        n_heads,
        n_kv,
        vocab,
    } = shape;
    let mut r = Rng(seed);
    let hd = dim / n_heads;
    let s = 1.0 / (dim as f32).sqrt();
    let layers = (0..n_layers)
        .map(|_| Layer {
            att_norm: (0..dim).map(|_| 1.0 + 0.1 * r.next()).collect(),
            wq: r.vec(dim * dim, s),
            wk: r.vec(hd * n_kv * dim, s),
            wv: r.vec(hd * n_kv * dim, s),
            wo: r.vec(dim * dim, s),
            ffn_norm: (0..dim).map(|_| 1.0 + 0.1 * r.next()).collect(),
            w1: r.vec(hidden * dim, s),
            w2: r.vec(dim * hidden, 1.0 / (hidden as f32).sqrt()),
            w3: r.vec(hidden * dim, s),
        })
        .collect();
    Llama {
        dim,
        hidden,
        n_heads,
        n_kv,
        vocab,
        eps: 1e-5,
        theta: 10_000.0,
        rope,
        emb: r.vec(vocab * dim, 1.0),
        layers,
        final_norm: (0..dim).map(|_| 1.0 + 0.1 * r.next()).collect(),
        cls: r.vec(vocab * dim, s),
    }
}

/// Largest |a - b| relative to the largest |b|.
pub fn max_rel_diff(a: &[f32], b: &[f32]) -> f32 {
    let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-6);
    a.iter()
        .zip(b)
        .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()))
        / scale
}
