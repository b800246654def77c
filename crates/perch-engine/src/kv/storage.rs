//! The K and V numbers, block by block, for every layer.

use half::f16;
use perch_quant::vecops;

use super::BlockId;

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
}

impl KvLayout {
    /// Bytes of K and V for one block across all layers.
    pub fn bytes_per_block(&self) -> usize {
        self.n_layer * self.n_head_kv * self.block_size * (self.head_dim_k + self.head_dim_v) * 2
    }
}

/// f16 K and V. Within a layer a block is laid out `[head][slot][dim]`, so one head's keys
/// for a block are contiguous: attention scans them as one run.
#[derive(Debug)]
pub struct KvStorage {
    layout: KvLayout,
    k: Vec<Vec<f16>>,
    v: Vec<Vec<f16>>,
}

impl KvStorage {
    /// Zeroed storage for `layout`.
    pub fn new(layout: KvLayout) -> KvStorage {
        let per_k = layout.n_blocks * layout.n_head_kv * layout.block_size * layout.head_dim_k;
        let per_v = layout.n_blocks * layout.n_head_kv * layout.block_size * layout.head_dim_v;
        KvStorage {
            layout,
            k: (0..layout.n_layer)
                .map(|_| vec![f16::ZERO; per_k])
                .collect(),
            v: (0..layout.n_layer)
                .map(|_| vec![f16::ZERO; per_v])
                .collect(),
        }
    }

    /// The layout.
    pub fn layout(&self) -> &KvLayout {
        &self.layout
    }

    fn offset(&self, block: BlockId, head: usize, slot: usize, dim: usize) -> usize {
        let l = &self.layout;
        ((block as usize * l.n_head_kv + head) * l.block_size + slot) * dim
    }

    /// Store one token's keys and values (all heads, `n_head_kv * head_dim` each) at `slot` of
    /// `block` in `layer`.
    pub fn write(&mut self, layer: usize, block: BlockId, slot: usize, k: &[f32], v: &[f32]) {
        let (dk, dv) = (self.layout.head_dim_k, self.layout.head_dim_v);
        for h in 0..self.layout.n_head_kv {
            let o = self.offset(block, h, slot, dk);
            vecops::f32_to_f16(&k[h * dk..(h + 1) * dk], &mut self.k[layer][o..o + dk]);
            let o = self.offset(block, h, slot, dv);
            vecops::f32_to_f16(&v[h * dv..(h + 1) * dv], &mut self.v[layer][o..o + dv]);
        }
    }

    /// The keys of `head` in `block` of `layer`: `block_size` rows of `head_dim_k`.
    pub fn k_block(&self, layer: usize, block: BlockId, head: usize) -> &[f16] {
        let dk = self.layout.head_dim_k;
        let o = self.offset(block, head, 0, dk);
        &self.k[layer][o..o + self.layout.block_size * dk]
    }

    /// The values of `head` in `block` of `layer`: `block_size` rows of `head_dim_v`.
    pub fn v_block(&self, layer: usize, block: BlockId, head: usize) -> &[f16] {
        let dv = self.layout.head_dim_v;
        let o = self.offset(block, head, 0, dv);
        &self.v[layer][o..o + self.layout.block_size * dv]
    }

    /// Copy every layer's K and V of block `src` into block `dst` (copy-on-write).
    pub fn copy_block(&mut self, src: BlockId, dst: BlockId) {
        let l = self.layout;
        let nk = l.n_head_kv * l.block_size * l.head_dim_k;
        let nv = l.n_head_kv * l.block_size * l.head_dim_v;
        for layer in 0..l.n_layer {
            self.k[layer].copy_within(
                src as usize * nk..(src as usize + 1) * nk,
                dst as usize * nk,
            );
            self.v[layer].copy_within(
                src as usize * nv..(src as usize + 1) * nv,
                dst as usize * nv,
            );
        }
    }
}
