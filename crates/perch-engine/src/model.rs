//! A loaded model and its batched forward pass.
//!
//! One call to [`Model::forward`] computes a step for any number of sequences: all their new
//! tokens go through each weight matrix together (activations quantized once per layer input,
//! then one matrix × small-matrix product), so the weights are read once per step. Attention
//! then runs per (token, head), reading each sequence's K and V through its block table.

use std::path::Path;
use std::sync::Arc;

use perch_gguf::GgufFile;
use perch_quant::{GgmlType, PackedWeights, QuantizedActivations, WeightMatrix};
use rayon::prelude::*;

use crate::arch::{self, GateUpWeights, Globals, Layer, MatrixRef, QkvWeights};
use crate::attention::{self, AttnRow};
use crate::config::ModelConfig;
use crate::error::{EngineError, Result};
use crate::kv::{BlockTable, KvStorage};
use crate::ops;
use crate::repack::RepackCache;

/// Which rows of a sequence's step need logits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogitsWanted {
    /// None (a prompt chunk that is not the last).
    None,
    /// The last token's (generation).
    Last,
    /// Every token's (perplexity).
    All,
}

/// One sequence's part of a step.
#[derive(Clone, Copy, Debug)]
pub struct SeqStep<'a> {
    /// New tokens to compute.
    pub tokens: &'a [u32],
    /// Position of the first of them (tokens before it are already in the KV cache).
    pub start_pos: usize,
    /// The sequence's blocks, covering at least `start_pos + tokens.len()` positions.
    pub table: &'a BlockTable,
    /// Which rows need logits.
    pub logits: LogitsWanted,
}

/// A model ready to run: its configuration and views of its weights in the mapped file.
pub struct Model {
    file: Arc<GgufFile>,
    config: ModelConfig,
    globals: Globals,
    layers: Vec<Layer>,
    repacked: RepackCache,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Sees the input of every matrix product of a forward pass: `x` holds `rows` activation
/// rows of `cols` values, about to be multiplied by the weight tensor named `weight`. Used to
/// collect importance matrices (`perch imatrix`).
pub trait MatmulObserver: Send {
    /// Called before the product of `weight` with `x`.
    fn observe(&mut self, weight: &str, x: &[f32], rows: usize, cols: usize);
}

/// Reusable buffers for the forward pass, so a step allocates nothing once warmed up.
#[derive(Default)]
pub struct Workspace {
    observer: Option<Box<dyn MatmulObserver>>,
    x: Vec<f32>,
    h: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    qkv: Vec<f32>,
    attn: Vec<f32>,
    o: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
    acts: ActCache,
    acts_ffn: ActCache,
}

/// Activations quantized for the weight types that read them, each at most once per input.
#[derive(Default)]
struct ActCache {
    slots: Vec<QuantizedActivations>,
    valid: Vec<bool>,
}

impl ActCache {
    fn invalidate(&mut self) {
        self.valid.iter_mut().for_each(|v| *v = false);
    }

    /// The activations `x` (`rows × cols`) quantized to the type weight type `w` pairs with.
    fn get(
        &mut self,
        w: GgmlType,
        x: &[f32],
        rows: usize,
        cols: usize,
    ) -> Result<&QuantizedActivations> {
        let ty = perch_quant::vec_dot_type(w);
        let idx = match self.slots.iter().position(|s| s.ty() == ty) {
            Some(i) => i,
            None => {
                self.slots.push(QuantizedActivations::new());
                self.valid.push(false);
                self.slots.len() - 1
            }
        };
        if !self.valid[idx] || self.slots[idx].ty() != ty {
            self.slots[idx]
                .quantize(ty, x, rows, cols)
                .map_err(|e| EngineError::Kernel(e.to_string()))?;
            self.valid[idx] = true;
        }
        Ok(&self.slots[idx])
    }
}

impl Workspace {
    /// Installs (or with `None` removes) the observer of matrix-product inputs, returning the
    /// previous one.
    pub fn set_observer(
        &mut self,
        observer: Option<Box<dyn MatmulObserver>>,
    ) -> Option<Box<dyn MatmulObserver>> {
        std::mem::replace(&mut self.observer, observer)
    }
}

impl Model {
    /// Open and load a GGUF model file.
    pub fn open(path: impl AsRef<Path>) -> Result<Model> {
        let file = GgufFile::open(path.as_ref())?;
        Model::from_gguf(Arc::new(file))
    }

    /// Load a model from an opened GGUF file.
    pub fn from_gguf(file: Arc<GgufFile>) -> Result<Model> {
        let config = ModelConfig::from_gguf(&file)?;
        let (globals, layers) = arch::load(&file, &config)?;
        Ok(Model {
            file,
            config,
            globals,
            layers,
            repacked: RepackCache::from_env(),
        })
    }

    /// The hyper-parameters.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The GGUF file the weights live in (metadata: tokenizer, chat template ...).
    pub fn file(&self) -> &Arc<GgufFile> {
        &self.file
    }

    fn weight(&self, m: &MatrixRef) -> WeightMatrix<'_> {
        WeightMatrix::new(m.ty, m.rows, m.cols, &self.file.bytes()[m.range.clone()])
            .expect("shapes were validated at load")
    }

    /// The repacked form of `m` when a product with `rows` activation rows reads it (see
    /// `crate::repack`).
    fn repacked(&self, m: &MatrixRef, rows: usize) -> Option<Arc<PackedWeights>> {
        self.repacked.get(m.range.start, &self.weight(m), rows)
    }

    /// [`Model::weight`] with its repacked form `packed` (from [`Model::repacked`]), if any.
    fn weight_with<'a>(
        &'a self,
        m: &MatrixRef,
        packed: &'a Option<Arc<PackedWeights>>,
    ) -> WeightMatrix<'a> {
        match packed {
            Some(p) => self.weight(m).with_packed(p),
            None => self.weight(m),
        }
    }

    /// `out[r][o] = W[o] · x[r]` for `rows` rows of activations `x`.
    #[allow(clippy::too_many_arguments)]
    fn matmul(
        &self,
        m: &MatrixRef,
        obs: &mut Option<Box<dyn MatmulObserver>>,
        acts: &mut ActCache,
        x: &[f32],
        rows: usize,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        if let Some(o) = obs.as_mut() {
            o.observe(&m.name, x, rows, m.cols);
        }
        out.resize(rows * m.rows, 0.0);
        let a = acts.get(m.ty, x, rows, m.cols)?;
        let packed = self.repacked(m, rows);
        perch_quant::matmul(&self.weight_with(m, &packed), a, out)
            .map_err(|e| EngineError::Kernel(e.to_string()))
    }

    /// `outs[i][r][o] = Ms[i][o] · x[r]` for matrices that read the same activations, in one
    /// parallel pass when they pair with the same activation type (one quantization of `x`,
    /// one fork and join of the compute threads instead of one per matrix).
    #[allow(clippy::too_many_arguments)]
    fn matmul_multi(
        &self,
        ms: &[&MatrixRef],
        obs: &mut Option<Box<dyn MatmulObserver>>,
        acts: &mut ActCache,
        x: &[f32],
        rows: usize,
        outs: &mut [&mut Vec<f32>],
    ) -> Result<()> {
        let act = perch_quant::vec_dot_type(ms[0].ty);
        if ms.iter().any(|m| perch_quant::vec_dot_type(m.ty) != act) {
            for (m, out) in ms.iter().zip(outs.iter_mut()) {
                self.matmul(m, obs, acts, x, rows, out)?;
            }
            return Ok(());
        }
        if let Some(o) = obs.as_mut() {
            for m in ms {
                o.observe(&m.name, x, rows, m.cols);
            }
        }
        for (m, out) in ms.iter().zip(outs.iter_mut()) {
            out.resize(rows * m.rows, 0.0);
        }
        let a = acts.get(ms[0].ty, x, rows, ms[0].cols)?;
        let packed: Vec<Option<Arc<PackedWeights>>> =
            ms.iter().map(|m| self.repacked(m, rows)).collect();
        let ws: Vec<WeightMatrix<'_>> = ms
            .iter()
            .zip(&packed)
            .map(|(m, p)| self.weight_with(m, p))
            .collect();
        let mut slices: Vec<&mut [f32]> = outs.iter_mut().map(|o| o.as_mut_slice()).collect();
        perch_quant::matmul_multi(&ws, a, &mut slices)
            .map_err(|e| EngineError::Kernel(e.to_string()))
    }

    /// Compute one step for `seqs`, writing their new K and V into `kv`.
    ///
    /// Returns the logits of the requested rows, `n_vocab` each, in the order of `seqs` and,
    /// within a sequence, of its tokens.
    pub fn forward(
        &self,
        seqs: &[SeqStep<'_>],
        kv: &mut KvStorage,
        ws: &mut Workspace,
    ) -> Result<Vec<f32>> {
        let cfg = &self.config;
        let n_embd = cfg.n_embd;
        // Row metadata: which sequence and position each token of the step is.
        let mut rows: Vec<AttnRow> = Vec::new();
        for (si, s) in seqs.iter().enumerate() {
            let need = cfg_blocks(kv, s.start_pos + s.tokens.len());
            if s.table.blocks.len() < need {
                return Err(EngineError::KvFull(format!(
                    "sequence {si} has {} blocks for {} positions",
                    s.table.blocks.len(),
                    s.start_pos + s.tokens.len()
                )));
            }
            for (j, &t) in s.tokens.iter().enumerate() {
                if t as usize >= cfg.n_vocab {
                    return Err(EngineError::BadToken {
                        id: t,
                        n_vocab: cfg.n_vocab,
                    });
                }
                rows.push(AttnRow {
                    seq: si,
                    pos: s.start_pos + j,
                });
            }
        }
        let n = rows.len();
        if n == 0 {
            return Ok(Vec::new());
        }
        // The step's parallel regions follow each other closely: keep the workers awake.
        let _awake = crate::awake::KeepAwake::start();

        // Embeddings.
        ws.x.resize(n * n_embd, 0.0);
        let emb = &self.globals.tok_embd;
        let emb_bytes = &self.file.bytes()[emb.range.clone()];
        let row_bytes = emb.ty.bytes_for(n_embd as u64).expect("validated") as usize;
        let tokens = seqs.iter().flat_map(|s| s.tokens.iter().copied());
        for (dst, t) in ws.x.chunks_exact_mut(n_embd).zip(tokens) {
            let src = &emb_bytes[t as usize * row_bytes..(t as usize + 1) * row_bytes];
            perch_quant::dequantize_row(emb.ty, src, dst)
                .map_err(|e| EngineError::Kernel(e.to_string()))?;
            if let Some(s) = cfg.embed_scale {
                dst.iter_mut().for_each(|v| *v *= s);
            }
        }

        let tables: Vec<&BlockTable> = seqs.iter().map(|s| s.table).collect();
        for (il, layer) in self.layers.iter().enumerate() {
            self.layer_forward(il, layer, &rows, &tables, kv, ws)?;
        }

        // Logits for the rows that want them.
        let mut keep: Vec<usize> = Vec::new();
        let mut base = 0;
        for s in seqs {
            match s.logits {
                LogitsWanted::None => {}
                LogitsWanted::Last => keep.push(base + s.tokens.len() - 1),
                LogitsWanted::All => keep.extend(base..base + s.tokens.len()),
            }
            base += s.tokens.len();
        }
        if keep.is_empty() {
            return Ok(Vec::new());
        }
        ws.h.clear();
        for &r in &keep {
            ws.h.extend_from_slice(&ws.x[r * n_embd..(r + 1) * n_embd]);
        }
        ops::rms_norm(&mut ws.h, n_embd, &self.globals.output_norm, cfg.rms_eps);
        ws.acts.invalidate();
        let mut logits = Vec::new();
        self.matmul(
            &self.globals.output,
            &mut ws.observer,
            &mut ws.acts,
            &ws.h,
            keep.len(),
            &mut logits,
        )?;
        if let Some(cap) = cfg.final_softcap {
            ops::softcap(&mut logits, cap);
        }
        Ok(logits)
    }

    fn layer_forward(
        &self,
        il: usize,
        layer: &Layer,
        rows: &[AttnRow],
        tables: &[&BlockTable],
        kv: &mut KvStorage,
        ws: &mut Workspace,
    ) -> Result<()> {
        let cfg = &self.config;
        let (n, n_embd) = (rows.len(), cfg.n_embd);
        let (qd, kd, vd) = (cfg.q_dim(), cfg.k_dim(), cfg.v_dim());

        // Attention input.
        ws.h.resize(n * n_embd, 0.0);
        ops::rms_norm_into(&ws.x, &mut ws.h, n_embd, &layer.attn_norm, cfg.rms_eps);
        ws.acts.invalidate();
        match &layer.qkv {
            QkvWeights::Separate { q, k, v } => self.matmul_multi(
                &[q, k, v],
                &mut ws.observer,
                &mut ws.acts,
                &ws.h,
                n,
                &mut [&mut ws.q, &mut ws.k, &mut ws.v],
            )?,
            QkvWeights::Fused(w) => {
                self.matmul(w, &mut ws.observer, &mut ws.acts, &ws.h, n, &mut ws.qkv)?;
                split_rows(
                    &ws.qkv,
                    n,
                    &mut [(&mut ws.q, qd), (&mut ws.k, kd), (&mut ws.v, vd)],
                );
            }
        }
        if let Some([bq, bk, bv]) = &layer.qkv_bias {
            add_row_bias(&mut ws.q, bq);
            add_row_bias(&mut ws.k, bk);
            add_row_bias(&mut ws.v, bv);
        }
        if let Some([nq, nk]) = &layer.qk_norm {
            ops::rms_norm(&mut ws.q, cfg.head_dim, nq, cfg.rms_eps);
            ops::rms_norm(&mut ws.k, cfg.head_dim, nk, cfg.rms_eps);
        }

        // RoPE, per token at its position.
        let swa = cfg.swa_layers[il];
        let base = if swa {
            cfg.rope_base_swa
        } else {
            cfg.rope_base
        };
        let freq_scale = if swa {
            cfg.rope_freq_scale_swa
        } else {
            cfg.rope_freq_scale
        };
        let freqs = self.globals.rope_freqs.as_deref();
        let rope = |buf: &mut [f32], width: usize| {
            buf.par_chunks_mut(width)
                .zip(rows.par_iter())
                .for_each_init(
                    || vec![(0.0f32, 0.0f32); cfg.n_rot / 2],
                    |cache, (x, r)| {
                        ops::rope_cache(r.pos, cfg.n_rot, base, freq_scale, freqs, cache);
                        ops::rope_apply(x, cfg.head_dim, cfg.n_rot, cfg.rope_kind, cache);
                    },
                )
        };
        rope(&mut ws.q, qd);
        rope(&mut ws.k, kd);

        // Store K and V, then attend.
        let bs = kv.layout().block_size;
        for (i, r) in rows.iter().enumerate() {
            let block = tables[r.seq].blocks[r.pos / bs];
            kv.write(
                il,
                block,
                r.pos % bs,
                &ws.k[i * kd..(i + 1) * kd],
                &ws.v[i * vd..(i + 1) * vd],
            );
        }
        ws.attn.resize(n * cfg.n_head * cfg.head_dim_v, 0.0);
        let window = if swa { cfg.sliding_window } else { None };
        attention::attend(cfg, il, window, &ws.q, rows, tables, kv, &mut ws.attn);

        // Output projection and residual.
        ws.acts.invalidate();
        self.matmul(
            &layer.wo,
            &mut ws.observer,
            &mut ws.acts,
            &ws.attn,
            n,
            &mut ws.o,
        )?;
        if let Some(w) = &layer.attn_post_norm {
            ops::rms_norm(&mut ws.o, n_embd, w, cfg.rms_eps);
        }
        ops::add_assign(&mut ws.x, &ws.o);

        // Feed-forward.
        ops::rms_norm_into(&ws.x, &mut ws.h, n_embd, &layer.ffn_norm, cfg.rms_eps);
        ws.acts.invalidate();
        match &layer.gate_up {
            GateUpWeights::Separate { gate, up } => self.matmul_multi(
                &[gate, up],
                &mut ws.observer,
                &mut ws.acts,
                &ws.h,
                n,
                &mut [&mut ws.gate, &mut ws.up],
            )?,
            GateUpWeights::Fused(w) => {
                self.matmul(w, &mut ws.observer, &mut ws.acts, &ws.h, n, &mut ws.qkv)?;
                split_rows(
                    &ws.qkv,
                    n,
                    &mut [(&mut ws.gate, cfg.n_ff), (&mut ws.up, cfg.n_ff)],
                );
            }
        }
        ops::glu(&mut ws.gate, &ws.up, cfg.activation);
        ws.acts_ffn.invalidate();
        self.matmul(
            &layer.down,
            &mut ws.observer,
            &mut ws.acts_ffn,
            &ws.gate,
            n,
            &mut ws.o,
        )?;
        if let Some(w) = &layer.ffn_post_norm {
            ops::rms_norm(&mut ws.o, n_embd, w, cfg.rms_eps);
        }
        ops::add_assign(&mut ws.x, &ws.o);
        Ok(())
    }
}

fn cfg_blocks(kv: &KvStorage, n_tokens: usize) -> usize {
    n_tokens.div_ceil(kv.layout().block_size)
}

/// Add `bias` to every row of `x`.
fn add_row_bias(x: &mut [f32], bias: &[f32]) {
    for row in x.chunks_exact_mut(bias.len()) {
        ops::add_assign(row, bias);
    }
}

/// Split each row of a fused product into consecutive parts of the given widths.
fn split_rows(fused: &[f32], n: usize, parts: &mut [(&mut Vec<f32>, usize)]) {
    let total: usize = parts.iter().map(|p| p.1).sum();
    for (buf, w) in parts.iter_mut() {
        buf.resize(n * *w, 0.0);
    }
    for r in 0..n {
        let mut off = r * total;
        for (buf, w) in parts.iter_mut() {
            buf[r * *w..(r + 1) * *w].copy_from_slice(&fused[off..off + *w]);
            off += *w;
        }
    }
}
