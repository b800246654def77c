//! Causal grouped-query attention over the paged KV cache.
//!
//! Each (token, query head) is one task: it scores the query against every earlier position of
//! its own sequence (within the sliding window, for the layers that have one), reading keys
//! block by block through the sequence's block table, then accumulates the values with the
//! softmax weights. Tasks are independent, so they run in parallel over tokens and heads,
//! which keeps both cores busy for one decoding sequence as well as for a long prefill.

use perch_quant::vecops;
use rayon::prelude::*;

use crate::config::ModelConfig;
use crate::kv::{BlockTable, KvStorage};
use crate::ops;

/// Which sequence and position a row of the step belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttnRow {
    /// Index of the sequence in the step.
    pub seq: usize,
    /// Position of the token in its sequence.
    pub pos: usize,
}

/// Attention of layer `il` for every row: `q` is `rows × (n_head·head_dim)` (already rotated),
/// `out` is `rows × (n_head·head_dim_v)`. The rows' own K and V must already be in `kv`.
#[allow(clippy::too_many_arguments)]
pub fn attend(
    cfg: &ModelConfig,
    il: usize,
    window: Option<usize>,
    q: &[f32],
    rows: &[AttnRow],
    tables: &[&BlockTable],
    kv: &KvStorage,
    out: &mut [f32],
) {
    let (hd, hdv) = (cfg.head_dim, cfg.head_dim_v);
    let group = cfg.n_head / cfg.n_head_kv;
    let bs = kv.layout().block_size;
    out.par_chunks_mut(hdv).enumerate().for_each_init(
        || (Vec::new(), vec![0f32; hd]),
        |(scores, qh): &mut (Vec<f32>, Vec<f32>), (idx, o)| {
            let (i, h) = (idx / cfg.n_head, idx % cfg.n_head);
            let row = rows[i];
            let g = h / group;
            // The query is rounded to f16, as llama.cpp's product with the f16 keys does.
            round_f16(
                &q[(i * cfg.n_head + h) * hd..(i * cfg.n_head + h + 1) * hd],
                qh,
            );
            let table = tables[row.seq];
            let first = window.map_or(0, |w| (row.pos + 1).saturating_sub(w));
            let last = row.pos; // inclusive: causal
            scores.clear();
            for p in first..=last {
                let kb = kv.k_block(il, table.blocks[p / bs], g);
                let slot = p % bs;
                scores.push(
                    vecops::dot_f32_f16(qh, &kb[slot * hd..(slot + 1) * hd]) * cfg.attn_scale,
                );
            }
            if let Some(cap) = cfg.attn_softcap {
                ops::softcap(scores, cap);
            }
            ops::softmax(scores);
            o.fill(0.0);
            // The weights are rounded to f16 too, as in llama.cpp's product with the f16 values.
            for (p, &w) in (first..=last).zip(scores.iter()) {
                let w = half::f16::from_f32(w).to_f32();
                let vb = kv.v_block(il, table.blocks[p / bs], g);
                let slot = p % bs;
                vecops::axpy_f16(o, w, &vb[slot * hdv..(slot + 1) * hdv]);
            }
        },
    );
}

/// `dst = f16(src)` as f32: the values an f16 × f16 product sees.
fn round_f16(src: &[f32], dst: &mut [f32]) {
    for (d, &x) in dst.iter_mut().zip(src) {
        *d = half::f16::from_f32(x).to_f32();
    }
}
