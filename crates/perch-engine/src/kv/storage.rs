//! The K and V numbers, block by block, for every layer.
//!
//! Two element types, as llama.cpp's `--cache-type-k/-v`: f16 (the default, exact enough that
//! outputs match an unquantized cache) and Q8_0 (32 values in 34 bytes: 53% of f16's memory,
//! so twice the tokens fit in the same `--kv-memory`). Attention never sees the layout: it asks
//! for a key's dot product with a prepared query ([`KvStorage::prepare_query`],
//! [`KvStorage::key_dot`]) and for a value row to be added ([`KvStorage::add_value`]).

use std::fmt;
use std::str::FromStr;

use half::f16;
use perch_quant::dot::{DotFn, dot_fn};
use perch_quant::{GgmlType, dequantize_row, quantize_row, simd_level, vecops};

use super::BlockId;

/// The element type of the KV cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum KvType {
    /// IEEE half precision.
    #[default]
    F16,
    /// ggml's Q8_0 blocks (32 int8 values and an f16 scale); head widths must be a multiple
    /// of 32.
    Q8_0,
}

impl KvType {
    /// Bytes that `n` values take.
    pub fn bytes(self, n: usize) -> usize {
        match self {
            KvType::F16 => 2 * n,
            KvType::Q8_0 => n / 32 * 34,
        }
    }

    /// Whether rows of `width` values can be stored.
    pub fn fits(self, width: usize) -> bool {
        match self {
            KvType::F16 => true,
            KvType::Q8_0 => width % 32 == 0,
        }
    }
}

impl fmt::Display for KvType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KvType::F16 => "f16",
            KvType::Q8_0 => "q8_0",
        })
    }
}

impl FromStr for KvType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "f16" => Ok(KvType::F16),
            "q8_0" => Ok(KvType::Q8_0),
            _ => Err(format!(
                "unknown KV cache type {s:?} (expected f16 or q8_0)"
            )),
        }
    }
}

/// Shape of the KV storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvLayout {
    /// Layers.
    pub n_layer: usize,
    /// Key/value heads.
    pub n_head_kv: usize,
    /// Key head width.
    pub head_dim_k: usize,
    /// Value head width.
    pub head_dim_v: usize,
    /// Token slots per block.
    pub block_size: usize,
    /// Blocks.
    pub n_blocks: usize,
    /// Element type.
    pub kv_type: KvType,
}

impl KvLayout {
    /// Bytes of K and V for one block across all layers.
    pub fn bytes_per_block(&self) -> usize {
        let per_layer = self.n_head_kv * self.block_size;
        self.n_layer
            * per_layer
            * (self.kv_type.bytes(self.head_dim_k) + self.kv_type.bytes(self.head_dim_v))
    }

    /// Why this layout cannot be stored, if it cannot.
    pub fn check(&self) -> Result<(), String> {
        if !self.kv_type.fits(self.head_dim_k) || !self.kv_type.fits(self.head_dim_v) {
            return Err(format!(
                "a {} KV cache needs head widths that are multiples of 32; this model's are {} and {}",
                self.kv_type, self.head_dim_k, self.head_dim_v
            ));
        }
        Ok(())
    }
}

/// One layer's keys or values, `[block][head][slot][dim]`, so one head's rows of a block are
/// contiguous and attention scans them as one run.
#[derive(Debug)]
enum Rows {
    F16(Vec<f16>),
    /// Q8_0 blocks as bytes (34 per 32 values).
    Q8(Vec<u8>),
}

/// A query prepared for dot products with the stored keys: rounded to f16 for an f16 cache
/// (the values an f16 × f16 product sees, as in llama.cpp), quantized to Q8_0 for a Q8_0
/// cache (as llama.cpp's product with Q8_0 keys quantizes it).
#[derive(Debug, Default)]
pub struct Query {
    f: Vec<f32>,
    q8: Vec<u8>,
}

/// K and V for every layer.
#[derive(Debug)]
pub struct KvStorage {
    layout: KvLayout,
    k: Vec<Rows>,
    v: Vec<Rows>,
    /// The Q8_0 · Q8_0 kernel (Q8_0 caches only).
    q8_dot: Option<DotFn>,
}

impl KvStorage {
    /// Zeroed storage for `layout` (see [`KvLayout::check`]).
    pub fn new(layout: KvLayout) -> Result<KvStorage, String> {
        layout.check()?;
        let slots = layout.n_blocks * layout.n_head_kv * layout.block_size;
        let rows = |dim: usize| match layout.kv_type {
            KvType::F16 => Rows::F16(vec![f16::ZERO; slots * dim]),
            KvType::Q8_0 => Rows::Q8(vec![0; slots * KvType::Q8_0.bytes(dim)]),
        };
        Ok(KvStorage {
            layout,
            k: (0..layout.n_layer)
                .map(|_| rows(layout.head_dim_k))
                .collect(),
            v: (0..layout.n_layer)
                .map(|_| rows(layout.head_dim_v))
                .collect(),
            q8_dot: match layout.kv_type {
                KvType::F16 => None,
                KvType::Q8_0 => dot_fn(GgmlType::Q8_0, simd_level()),
            },
        })
    }

    /// The layout.
    pub fn layout(&self) -> &KvLayout {
        &self.layout
    }

    /// Index of the row of (`block`, `head`, `slot`) in a layer's rows.
    fn row(&self, block: BlockId, head: usize, slot: usize) -> usize {
        let l = &self.layout;
        (block as usize * l.n_head_kv + head) * l.block_size + slot
    }

    /// Store one token's keys and values (all heads, `n_head_kv * head_dim` each) at `slot` of
    /// `block` in `layer`.
    pub fn write(&mut self, layer: usize, block: BlockId, slot: usize, k: &[f32], v: &[f32]) {
        let (dk, dv) = (self.layout.head_dim_k, self.layout.head_dim_v);
        for h in 0..self.layout.n_head_kv {
            let r = self.row(block, h, slot);
            store(&mut self.k[layer], r, &k[h * dk..(h + 1) * dk]);
            store(&mut self.v[layer], r, &v[h * dv..(h + 1) * dv]);
        }
    }

    /// Prepare `q` (one head's query, `head_dim_k` values) for [`Self::key_dot`].
    pub fn prepare_query(&self, q: &[f32], out: &mut Query) {
        match self.layout.kv_type {
            KvType::F16 => {
                out.f.clear();
                out.f.extend(q.iter().map(|&x| f16::from_f32(x).to_f32()));
            }
            KvType::Q8_0 => {
                out.q8.resize(KvType::Q8_0.bytes(q.len()), 0);
                // Only non-finite activations fail; their scores are then zero instead of NaN.
                if quantize_row(GgmlType::Q8_0, q, &mut out.q8, None).is_err() {
                    out.q8.fill(0);
                }
            }
        }
    }

    /// The dot product of a prepared query with the key at (`block`, `head`, `slot`).
    pub fn key_dot(
        &self,
        layer: usize,
        block: BlockId,
        head: usize,
        slot: usize,
        q: &Query,
    ) -> f32 {
        let dk = self.layout.head_dim_k;
        let r = self.row(block, head, slot);
        match &self.k[layer] {
            Rows::F16(k) => vecops::dot_f32_f16(&q.f, &k[r * dk..(r + 1) * dk]),
            Rows::Q8(k) => {
                let n = KvType::Q8_0.bytes(dk);
                let dot = self.q8_dot.expect("set for Q8_0 caches");
                dot(&k[r * n..(r + 1) * n], &q.q8)
            }
        }
    }

    /// `out[i] = key_dot(layer, block, head, slot0 + i, q)` for the `out.len()` slots from
    /// `slot0` on (the same bits, with one dispatch per block for f16 caches).
    pub fn key_dots(
        &self,
        layer: usize,
        block: BlockId,
        head: usize,
        slot0: usize,
        q: &Query,
        out: &mut [f32],
    ) {
        let dk = self.layout.head_dim_k;
        let r = self.row(block, head, slot0);
        match &self.k[layer] {
            Rows::F16(k) => vecops::dot_f32_f16_rows(&q.f, &k[r * dk..(r + out.len()) * dk], out),
            Rows::Q8(_) => {
                for (i, o) in out.iter_mut().enumerate() {
                    *o = self.key_dot(layer, block, head, slot0 + i, q);
                }
            }
        }
    }

    /// `out += ws[i] · value` of the slots `slot0 + i`, in slot order (the same bits as one
    /// [`KvStorage::add_value`] per slot).
    #[allow(clippy::too_many_arguments)]
    pub fn add_values(
        &self,
        layer: usize,
        block: BlockId,
        head: usize,
        slot0: usize,
        ws: &[f32],
        out: &mut [f32],
        tmp: &mut Vec<f32>,
    ) {
        let dv = self.layout.head_dim_v;
        let r = self.row(block, head, slot0);
        match &self.v[layer] {
            Rows::F16(v) => vecops::axpy_f16_rows(out, ws, &v[r * dv..(r + ws.len()) * dv]),
            Rows::Q8(_) => {
                for (i, &w) in ws.iter().enumerate() {
                    self.add_value(layer, block, head, slot0 + i, w, out, tmp);
                }
            }
        }
    }

    /// `out += w · value` of (`block`, `head`, `slot`); `tmp` holds `head_dim_v` floats for
    /// caches that must be dequantized first.
    #[allow(clippy::too_many_arguments)]
    pub fn add_value(
        &self,
        layer: usize,
        block: BlockId,
        head: usize,
        slot: usize,
        w: f32,
        out: &mut [f32],
        tmp: &mut Vec<f32>,
    ) {
        let dv = self.layout.head_dim_v;
        let r = self.row(block, head, slot);
        match &self.v[layer] {
            Rows::F16(v) => vecops::axpy_f16(out, w, &v[r * dv..(r + 1) * dv]),
            Rows::Q8(v) => {
                let n = KvType::Q8_0.bytes(dv);
                tmp.resize(dv, 0.0);
                dequantize_row(GgmlType::Q8_0, &v[r * n..(r + 1) * n], tmp)
                    .expect("stored rows are whole Q8_0 blocks");
                vecops::axpy_f32(out, w, tmp);
            }
        }
    }
}

/// Writes `x` as row `r` of `rows`.
fn store(rows: &mut Rows, r: usize, x: &[f32]) {
    let d = x.len();
    match rows {
        Rows::F16(buf) => vecops::f32_to_f16(x, &mut buf[r * d..(r + 1) * d]),
        Rows::Q8(buf) => {
            let n = KvType::Q8_0.bytes(d);
            // Non-finite activations cannot be quantized; store zeros rather than fail the
            // step (the f16 path would store infinities, which attention turns into NaN
            // logits that the sampler reports).
            if quantize_row(GgmlType::Q8_0, x, &mut buf[r * n..(r + 1) * n], None).is_err() {
                buf[r * n..(r + 1) * n].fill(0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(kv_type: KvType) -> KvLayout {
        KvLayout {
            n_layer: 2,
            n_head_kv: 2,
            head_dim_k: 64,
            head_dim_v: 64,
            block_size: 4,
            n_blocks: 3,
            kv_type,
        }
    }

    #[test]
    fn q8_0_takes_53_percent_of_f16() {
        let f = layout(KvType::F16).bytes_per_block();
        let q = layout(KvType::Q8_0).bytes_per_block();
        assert_eq!(f, 2 * 2 * 4 * (128 + 128));
        assert_eq!(q * 64, f * 34);
    }

    #[test]
    fn q8_0_needs_head_widths_of_32() {
        let mut l = layout(KvType::Q8_0);
        l.head_dim_k = 80;
        assert!(KvStorage::new(l).unwrap_err().contains("multiples of 32"));
        l.kv_type = KvType::F16;
        assert!(KvStorage::new(l).is_ok());
    }

    #[test]
    fn both_types_read_back_what_was_written() {
        for ty in [KvType::F16, KvType::Q8_0] {
            let mut s = KvStorage::new(layout(ty)).unwrap();
            let k: Vec<f32> = (0..128).map(|i| (i as f32 * 0.37).sin()).collect();
            let v: Vec<f32> = (0..128).map(|i| (i as f32 * 0.11).cos()).collect();
            s.write(1, 2, 3, &k, &v);
            let mut q = Query::default();
            let ones = vec![1.0f32; 64];
            s.prepare_query(&ones, &mut q);
            let want: f32 = k[64..].iter().sum();
            let got = s.key_dot(1, 2, 1, 3, &q);
            let tol = if ty == KvType::F16 { 1e-2 } else { 0.1 };
            assert!((got - want).abs() < tol, "{ty}: {got} vs {want}");
            let mut out = vec![0.0f32; 64];
            let mut tmp = Vec::new();
            s.add_value(1, 2, 0, 3, 2.0, &mut out, &mut tmp);
            for (o, x) in out.iter().zip(&v[..64]) {
                assert!((o - 2.0 * x).abs() < 0.02, "{ty}: {o} vs {}", 2.0 * x);
            }
            // Other slots are untouched (zero).
            assert_eq!(s.key_dot(1, 2, 1, 2, &q), 0.0);
        }
        assert_eq!("Q8_0".parse::<KvType>(), Ok(KvType::Q8_0));
        assert!("q4_0".parse::<KvType>().is_err());
    }
}
