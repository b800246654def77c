//! Importance matrices: the mean square of each input column of every weight matrix over a
//! calibration text, as llama.cpp's `llama-imatrix` collects them. Quantizers weight each
//! column's rounding error by it (`perch quantize --imatrix`).
//!
//! The text is cut into chunks exactly as [`crate::perplexity`] does (BOS substituted at each
//! chunk's start when the vocabulary adds one), each chunk runs in a fresh context, and every
//! matrix product of a layer (`blk.*` tensors; `output.weight` too when asked) adds `x²` of
//! each input row to its tensor's sums, in `f32` as llama.cpp does. Like llama.cpp, products
//! of fewer than 16 rows are not counted. The perplexity of the second half of each chunk is
//! computed on the way, as `llama-imatrix` prints it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::model::{MatmulObserver, Model};
use crate::perplexity::{NllStats, PerplexityConfig, PerplexityError, Result, count_chunks};
use crate::session::Session;

/// Fewer activation rows than this in one product are not collected (as in llama.cpp).
pub const MIN_ROWS: usize = 16;

/// One weight tensor's statistics.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ImatrixEntry {
    /// Sum over all collected activation rows of `x[j]²`, one per input column.
    pub sums: Vec<f32>,
    /// Activation rows collected.
    pub count: u64,
}

impl ImatrixEntry {
    /// The importance of each column: the mean of `x[j]²` (all ones when nothing was seen).
    pub fn importance(&self) -> Vec<f32> {
        if self.count == 0 {
            return vec![1.0; self.sums.len()];
        }
        let n = self.count as f32;
        self.sums.iter().map(|s| s / n).collect()
    }
}

/// What [`collect_imatrix`] found.
#[derive(Clone, Debug, Default)]
pub struct ImatrixReport {
    /// Statistics per weight tensor name.
    pub entries: BTreeMap<String, ImatrixEntry>,
    /// Chunks processed.
    pub n_chunks: usize,
    /// Tokens per chunk.
    pub chunk_size: usize,
    /// Negative log-likelihoods of the second half of each chunk.
    pub nll: NllStats,
}

/// Settings of an importance-matrix run.
#[derive(Clone, Debug)]
pub struct ImatrixConfig {
    /// Chunking, threads and batch size, as for perplexity.
    pub run: PerplexityConfig,
    /// Also collect `output.weight` (llama-imatrix's `--process-output`).
    pub process_output: bool,
}

/// Accumulates `x²` per column; shared with the caller through a mutex.
struct Collector {
    stats: Arc<Mutex<BTreeMap<String, ImatrixEntry>>>,
    process_output: bool,
    error: Arc<Mutex<Option<String>>>,
}

impl MatmulObserver for Collector {
    fn observe(&mut self, weight: &str, x: &[f32], rows: usize, cols: usize) {
        if rows < MIN_ROWS
            || !(weight.starts_with("blk.") || (self.process_output && weight == "output.weight"))
        {
            return;
        }
        let mut stats = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        let e = stats.entry(weight.to_string()).or_default();
        if e.sums.is_empty() {
            e.sums = vec![0.0; cols];
        }
        if e.sums.len() != cols {
            let mut err = self.error.lock().unwrap_or_else(|e| e.into_inner());
            err.get_or_insert_with(|| {
                format!("{weight}: {cols} input columns, earlier {}", e.sums.len())
            });
            return;
        }
        for row in x[..rows * cols].chunks_exact(cols) {
            for (acc, &v) in e.sums.iter_mut().zip(row) {
                *acc += v * v;
            }
        }
        e.count += rows as u64;
        if e.sums.iter().any(|v| !v.is_finite()) {
            let mut err = self.error.lock().unwrap_or_else(|e| e.into_inner());
            err.get_or_insert_with(|| format!("non-finite activations reached {weight}"));
        }
    }
}

/// Collects the importance matrix of `model` over `tokens` (the whole text, tokenized with
/// BOS when the vocabulary adds one; `bos` is then that token). `on_chunk(done, total,
/// running_ppl)` is called after each chunk.
pub fn collect_imatrix(
    model: &Arc<Model>,
    tokens: &[u32],
    bos: Option<u32>,
    cfg: &ImatrixConfig,
    mut on_chunk: impl FnMut(usize, usize, f64),
) -> Result<ImatrixReport> {
    let n_ctx = cfg.run.n_ctx;
    let n_chunks = count_chunks(tokens.len(), n_ctx, cfg.run.n_chunks)?;
    let mut session: Session = crate::perplexity::open_session(model, &cfg.run)?;
    let stats = Arc::new(Mutex::new(BTreeMap::new()));
    let error = Arc::new(Mutex::new(None));
    session.set_observer(Some(Box::new(Collector {
        stats: stats.clone(),
        process_output: cfg.process_output,
        error: error.clone(),
    })));
    let n_vocab = model.config().n_vocab;
    let first = n_ctx / 2;
    let mut nll = NllStats::default();
    for c in 0..n_chunks {
        let chunk = &tokens[c * n_ctx..(c + 1) * n_ctx];
        let mut toks = chunk.to_vec();
        if let Some(b) = bos {
            toks[0] = b;
        }
        session.clear();
        // All logits, as llama-imatrix asks for: the last layer then runs on every row, and
        // output.weight sees the whole chunk.
        let logits = session.feed(&toks, true)?;
        if let Some(why) = error.lock().unwrap_or_else(|e| e.into_inner()).take() {
            return Err(PerplexityError::BadOption(why));
        }
        for (r, row) in logits.chunks_exact(n_vocab).enumerate().skip(first) {
            if r + 1 >= n_ctx {
                break;
            }
            let target = chunk[r + 1] as usize;
            let (lse, _, _) = crate::perplexity::log_sum_exp(row);
            nll.add(lse - f64::from(row[target]));
        }
        on_chunk(c + 1, n_chunks, nll.ppl());
    }
    session.set_observer(None);
    let entries = std::mem::take(&mut *stats.lock().unwrap_or_else(|e| e.into_inner()));
    Ok(ImatrixReport {
        entries,
        n_chunks,
        chunk_size: n_ctx,
        nll,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collector_sums_squares_of_layer_inputs_only() {
        let stats = Arc::new(Mutex::new(BTreeMap::new()));
        let error = Arc::new(Mutex::new(None));
        let mut c = Collector {
            stats: stats.clone(),
            process_output: false,
            error: error.clone(),
        };
        let x: Vec<f32> = (0..16 * 3).map(|i| i as f32 * 0.5).collect();
        c.observe("blk.0.attn_q.weight", &x, 16, 3);
        c.observe("blk.0.attn_q.weight", &x[..15 * 3], 15, 3); // too few rows
        c.observe("output.weight", &x, 16, 3); // not asked for
        c.observe("token_embd.weight", &x, 16, 3);
        let s = stats.lock().unwrap();
        assert_eq!(s.len(), 1);
        let e = &s["blk.0.attn_q.weight"];
        assert_eq!(e.count, 16);
        for j in 0..3 {
            let want: f32 = (0..16).map(|r| x[r * 3 + j] * x[r * 3 + j]).sum();
            assert_eq!(e.sums[j], want);
        }
        let imp = e.importance();
        assert!((imp[1] - e.sums[1] / 16.0).abs() < 1e-6);
        assert!(error.lock().unwrap().is_none());
    }

    #[test]
    fn a_changing_width_is_an_error() {
        let stats = Arc::new(Mutex::new(BTreeMap::new()));
        let error = Arc::new(Mutex::new(None));
        let mut c = Collector {
            stats,
            process_output: true,
            error: error.clone(),
        };
        c.observe("output.weight", &[1.0; 64], 16, 4);
        c.observe("output.weight", &[1.0; 80], 16, 5);
        assert!(
            error
                .lock()
                .unwrap()
                .as_deref()
                .unwrap()
                .contains("5 input columns")
        );
    }
}
