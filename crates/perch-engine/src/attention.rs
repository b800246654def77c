//! Causal grouped-query attention over the paged KV cache.
//!
//! Each (token, query head) is one task: it scores the query against every earlier position of
//! its own sequence (within the sliding window, for the layers that have one), reading keys
//! block by block through the sequence's block table, then accumulates the values with the
//! softmax weights. Tasks are independent, so they run in parallel over tokens and heads,
//! which keeps both cores busy for one decoding sequence as well as for a long prefill.

use rayon::prelude::*;

use crate::config::ModelConfig;
use crate::kv::{BlockTable, KvStorage, Query};
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
        || (Vec::new(), Query::default(), Vec::new()),
        |(scores, qh, tmp): &mut (Vec<f32>, Query, Vec<f32>), (idx, o)| {
            let (i, h) = (idx / cfg.n_head, idx % cfg.n_head);
            let row = rows[i];
            let g = h / group;
            kv.prepare_query(
                &q[(i * cfg.n_head + h) * hd..(i * cfg.n_head + h + 1) * hd],
                qh,
            );
            let table = tables[row.seq];
            let first = window.map_or(0, |w| (row.pos + 1).saturating_sub(w));
            let last = row.pos; // inclusive: causal
            // Block by block: each run of positions within one block of the table.
            let runs = |first: usize, last: usize| {
                (first / bs..=last / bs).map(move |b| {
                    let p0 = (b * bs).max(first);
                    let p1 = ((b + 1) * bs).min(last + 1);
                    (b, p0, p1)
                })
            };
            scores.clear();
            scores.resize(last + 1 - first, 0.0);
            for (b, p0, p1) in runs(first, last) {
                let s = &mut scores[p0 - first..p1 - first];
                kv.key_dots(il, table.blocks[b], g, p0 % bs, qh, s);
                for x in s.iter_mut() {
                    *x *= cfg.attn_scale;
                }
            }
            if let Some(cap) = cfg.attn_softcap {
                ops::softcap(scores, cap);
            }
            ops::softmax(scores);
            // The weights are rounded to f16, as in llama.cpp's product with f16 values.
            for w in scores.iter_mut() {
                *w = half::f16::from_f32(*w).to_f32();
            }
            o.fill(0.0);
            for (b, p0, p1) in runs(first, last) {
                let w = &scores[p0 - first..p1 - first];
                kv.add_values(il, table.blocks[b], g, p0 % bs, w, o, tmp);
            }
        },
    );
}
