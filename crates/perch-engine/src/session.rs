//! One sequence driven step by step: what `perch run`, `perch chat` and `perch perplexity`
//! need before the multi-request engine loop (issue 5) takes over scheduling.
//!
//! A session owns a small KV pool sized for its context and a block table, and feeds tokens
//! through [`Model::forward`] in chunks of at most `n_batch`, exactly as the batched engine
//! does for many sequences.

use std::sync::Arc;

use crate::error::{EngineError, Result};
use crate::kv::{BlockPool, BlockTable, KvLayout, KvStorage, KvType};
use crate::model::{LogitsWanted, Model, SeqStep, Workspace};

/// Settings of a [`Session`].
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// Context size in tokens (prompt plus generation).
    pub n_ctx: usize,
    /// Most tokens computed in one forward step.
    pub n_batch: usize,
    /// KV block size in tokens.
    pub block_size: usize,
    /// Compute threads (the rayon pool the session runs its steps in).
    pub threads: usize,
    /// Element type of the KV cache.
    pub kv_type: KvType,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            n_ctx: 4096,
            n_batch: 512,
            block_size: 16,
            threads: default_threads(),
            kv_type: KvType::F16,
        }
    }
}

/// The number of physical cores (logical CPUs when that cannot be told).
pub fn default_threads() -> usize {
    // Hyper-threads share the execution units the kernels saturate; count cores, not CPUs.
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            let mut cores = std::collections::HashSet::new();
            let (mut phys, mut core) = (None, None);
            for line in s.lines() {
                if let Some(v) = line.strip_prefix("physical id") {
                    phys = v.trim_start_matches([' ', '\t', ':']).parse::<u32>().ok();
                } else if let Some(v) = line.strip_prefix("core id") {
                    core = v.trim_start_matches([' ', '\t', ':']).parse::<u32>().ok();
                } else if line.is_empty() {
                    if let (Some(p), Some(c)) = (phys, core) {
                        cores.insert((p, c));
                    }
                    phys = None;
                    core = None;
                }
            }
            (!cores.is_empty()).then_some(cores.len())
        })
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// A single sequence over its own KV cache.
pub struct Session {
    model: Arc<Model>,
    cfg: SessionConfig,
    pool: BlockPool,
    kv: KvStorage,
    table: BlockTable,
    tokens: Vec<u32>,
    ws: Workspace,
    threads: rayon::ThreadPool,
}

impl Session {
    /// A session for `model` with room for `cfg.n_ctx` tokens.
    pub fn new(model: Arc<Model>, cfg: SessionConfig) -> Result<Session> {
        if cfg.n_ctx == 0 || cfg.n_batch == 0 || cfg.block_size == 0 {
            return Err(EngineError::BadConfig(
                "context, batch and block sizes must be positive".into(),
            ));
        }
        let m = model.config();
        let n_blocks = cfg.n_ctx.div_ceil(cfg.block_size);
        let layout = KvLayout {
            n_layer: m.n_layer,
            n_head_kv: m.n_head_kv,
            head_dim_k: m.head_dim,
            head_dim_v: m.head_dim_v,
            block_size: cfg.block_size,
            n_blocks,
            kv_type: cfg.kv_type,
        };
        let threads = rayon::ThreadPoolBuilder::new()
            .num_threads(cfg.threads.max(1))
            .thread_name(|i| format!("perch-compute-{i}"))
            .build()
            .map_err(|e| EngineError::BadConfig(format!("cannot start compute threads: {e}")))?;
        Ok(Session {
            pool: BlockPool::new(n_blocks, cfg.block_size),
            kv: KvStorage::new(layout).map_err(EngineError::BadConfig)?,
            table: BlockTable::new(),
            tokens: Vec::new(),
            ws: Workspace::default(),
            model,
            cfg,
            threads,
        })
    }

    /// The model.
    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    /// Tokens in the context so far.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// Context size.
    pub fn n_ctx(&self) -> usize {
        self.cfg.n_ctx
    }

    /// Append `tokens` to the context and compute them; returns the logits of the last one
    /// (`n_vocab` values), or of every one when `all_logits` is set.
    pub fn feed(&mut self, tokens: &[u32], all_logits: bool) -> Result<Vec<f32>> {
        let total = self.tokens.len() + tokens.len();
        if total > self.cfg.n_ctx {
            return Err(EngineError::ContextOverflow {
                prompt: total,
                ctx: self.cfg.n_ctx,
            });
        }
        if !self.pool.ensure_capacity(&mut self.table, total) {
            return Err(EngineError::KvFull(format!("no blocks for {total} tokens")));
        }
        let mut out = Vec::new();
        let chunks: Vec<&[u32]> = tokens.chunks(self.cfg.n_batch).collect();
        let n_chunks = chunks.len();
        for (ci, chunk) in chunks.into_iter().enumerate() {
            let logits = if all_logits {
                LogitsWanted::All
            } else if ci + 1 == n_chunks {
                LogitsWanted::Last
            } else {
                LogitsWanted::None
            };
            let step = SeqStep {
                tokens: chunk,
                start_pos: self.tokens.len(),
                table: &self.table,
                logits,
            };
            let (model, kv, ws) = (&self.model, &mut self.kv, &mut self.ws);
            let l = self.threads.install(|| model.forward(&[step], kv, ws))?;
            out.extend_from_slice(&l);
            self.tokens.extend_from_slice(chunk);
        }
        Ok(out)
    }

    /// Forget everything after the first `n` tokens (their blocks are released).
    pub fn truncate(&mut self, n: usize) {
        if n >= self.tokens.len() {
            return;
        }
        self.tokens.truncate(n);
        let keep = self.pool.blocks_for(n);
        for b in self.table.blocks.drain(keep..) {
            self.pool.release(b);
        }
    }

    /// Installs (or with `None` removes) an observer of every matrix product's input,
    /// returning the previous one.
    pub fn set_observer(
        &mut self,
        observer: Option<Box<dyn crate::MatmulObserver>>,
    ) -> Option<Box<dyn crate::MatmulObserver>> {
        self.ws.set_observer(observer)
    }

    /// Forget the whole context.
    pub fn clear(&mut self) {
        self.tokens.clear();
        self.pool.free_table(&mut self.table);
    }
}
