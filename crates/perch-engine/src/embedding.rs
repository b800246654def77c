//! Sentence embeddings with perch's own BERT encoder: [`EmbeddingModel`].
//!
//! A batch of token sequences runs as one set of rows through every weight matrix (the
//! activations of all sequences quantized once per layer input, then one matrix × rows
//! product), so the weights are read once per batch; attention is per sequence and
//! bidirectional. The token states are pooled (mean, `[CLS]` or last, from
//! `bert.pooling_type`) and L2-normalized, as sentence-transformers' `Pooling` and
//! `Normalize` modules do.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use perch_gguf::GgufFile;
use perch_quant::{GgmlType, QuantizedActivations, WeightMatrix};
use perch_tokenizer::Tokenizer;
use rayon::prelude::*;

use crate::arch::MatrixRef;
use crate::arch::bert::{self, BertConfig, BertWeights, LayerNormWeights, Linear, Pooling};
use crate::embed::{EmbedError, EmbedInput, Embedder, Embedding, l2_normalize};
use crate::error::{EngineError, Result};
use crate::session::default_threads;

/// Most token rows one forward pass computes; bigger batches run in several passes so the
/// intermediate buffers stay bounded (about 25 MB of f32 for MiniLM's feed-forward).
const MAX_ROWS_PER_PASS: usize = 4096;

/// A loaded BERT embedding model: weights, tokenizer and a compute pool.
pub struct EmbeddingModel {
    file: Arc<GgufFile>,
    config: BertConfig,
    weights: BertWeights,
    tokenizer: Tokenizer,
    pool: rayon::ThreadPool,
    path: PathBuf,
}

impl std::fmt::Debug for EmbeddingModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddingModel")
            .field("path", &self.path)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Whether the GGUF file at `path` holds an embedding model (architecture `bert`), read from
/// its metadata without loading the weights.
pub fn is_embedding_gguf(path: &Path) -> Result<bool> {
    let file = GgufFile::open(path)?;
    Ok(file.get_str("general.architecture")? == "bert")
}

impl EmbeddingModel {
    /// Load the model at `path` with a compute pool of `threads` threads (default: the
    /// physical cores).
    pub fn load(path: impl AsRef<Path>, threads: Option<usize>) -> Result<EmbeddingModel> {
        let path = path.as_ref();
        let file = Arc::new(GgufFile::open(path)?);
        let config = BertConfig::from_gguf(&file)?;
        let weights = bert::load(&file, &config)?;
        let tokenizer = Tokenizer::from_gguf(&file)
            .map_err(|e| EngineError::BadConfig(format!("tokenizer: {e}")))?;
        if tokenizer.n_vocab() as usize != config.n_vocab {
            return Err(EngineError::BadConfig(format!(
                "the vocabulary has {} tokens but token_embd.weight has {} rows",
                tokenizer.n_vocab(),
                config.n_vocab
            )));
        }
        let threads = threads.unwrap_or_else(default_threads).max(1);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("perch-embed-{i}"))
            .build()
            .map_err(|e| EngineError::Kernel(format!("cannot start compute threads: {e}")))?;
        tracing::info!(
            path = %path.display(),
            layers = config.n_layer,
            dim = config.n_embd,
            max_tokens = config.n_ctx_train,
            pooling = ?config.pooling,
            threads,
            "embedding model loaded"
        );
        Ok(EmbeddingModel {
            file,
            config,
            weights,
            tokenizer,
            pool,
            path: path.to_path_buf(),
        })
    }

    /// The hyper-parameters.
    pub fn config(&self) -> &BertConfig {
        &self.config
    }

    /// The tokenizer (WordPiece from the GGUF vocabulary).
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The GGUF file (metadata).
    pub fn file(&self) -> &Arc<GgufFile> {
        &self.file
    }

    /// The file the model was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `text` as the model reads it: `[CLS]`, the WordPiece tokens, `[SEP]`.
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>, perch_tokenizer::TokenizerError> {
        self.tokenizer.encode(text, true, false)
    }

    /// Embed token sequences (each with its special tokens, at most
    /// `config().n_ctx_train` long): one pooled, L2-normalized vector per sequence.
    pub fn embed_tokens(&self, seqs: &[&[u32]]) -> Result<Vec<Vec<f32>>> {
        for s in seqs {
            if s.is_empty() {
                return Err(EngineError::BadConfig(
                    "cannot embed an empty sequence".into(),
                ));
            }
            if s.len() > self.config.n_ctx_train {
                return Err(EngineError::ContextOverflow {
                    prompt: s.len(),
                    ctx: self.config.n_ctx_train,
                });
            }
            if let Some(&id) = s.iter().find(|&&t| t as usize >= self.config.n_vocab) {
                return Err(EngineError::BadToken {
                    id,
                    n_vocab: self.config.n_vocab,
                });
            }
        }
        let mut out = Vec::with_capacity(seqs.len());
        let mut start = 0;
        while start < seqs.len() {
            // Group sequences into passes of at most MAX_ROWS_PER_PASS rows (one long
            // sequence always gets its own pass).
            let mut end = start;
            let mut rows = 0;
            while end < seqs.len() && (end == start || rows + seqs[end].len() <= MAX_ROWS_PER_PASS)
            {
                rows += seqs[end].len();
                end += 1;
            }
            let part = self.pool.install(|| self.forward(&seqs[start..end]))?;
            out.extend(part);
            start = end;
        }
        Ok(out)
    }

    fn weight(&self, m: &MatrixRef) -> WeightMatrix<'_> {
        WeightMatrix::new(m.ty, m.rows, m.cols, &self.file.bytes()[m.range.clone()])
            .expect("shapes were validated at load")
    }

    /// `outs[i] = x · Wᵢᵀ + bᵢ` for linear layers reading the same `rows × cols` input.
    fn linear(
        &self,
        layers: &[&Linear],
        x: &[f32],
        rows: usize,
        acts: &mut QuantizedActivations,
        outs: &mut [&mut Vec<f32>],
    ) -> Result<()> {
        let kernel = |e: perch_quant::MatmulError| EngineError::Kernel(e.to_string());
        let cols = layers[0].weight.cols;
        let act_ty = perch_quant::vec_dot_type(layers[0].weight.ty);
        let same = layers
            .iter()
            .all(|l| perch_quant::vec_dot_type(l.weight.ty) == act_ty);
        for (l, out) in layers.iter().zip(outs.iter_mut()) {
            out.clear();
            out.resize(rows * l.weight.rows, 0.0);
        }
        let quantize = |acts: &mut QuantizedActivations, ty: GgmlType| {
            acts.quantize(ty, x, rows, cols)
                .map_err(|e| EngineError::Kernel(e.to_string()))
        };
        if same {
            quantize(acts, act_ty)?;
            let ws: Vec<WeightMatrix<'_>> = layers.iter().map(|l| self.weight(&l.weight)).collect();
            let mut slices: Vec<&mut [f32]> = outs.iter_mut().map(|o| o.as_mut_slice()).collect();
            perch_quant::matmul_multi(&ws, acts, &mut slices).map_err(kernel)?;
        } else {
            for (l, out) in layers.iter().zip(outs.iter_mut()) {
                quantize(acts, perch_quant::vec_dot_type(l.weight.ty))?;
                perch_quant::matmul(&self.weight(&l.weight), acts, out).map_err(kernel)?;
            }
        }
        for (l, out) in layers.iter().zip(outs.iter_mut()) {
            out.par_chunks_mut(l.weight.rows)
                .for_each(|row| row.iter_mut().zip(&l.bias).for_each(|(v, b)| *v += b));
        }
        Ok(())
    }

    /// One pass over `seqs` (already validated).
    fn forward(&self, seqs: &[&[u32]]) -> Result<Vec<Vec<f32>>> {
        let cfg = &self.config;
        let w = &self.weights;
        let e = cfg.n_embd;
        let n: usize = seqs.iter().map(|s| s.len()).sum();
        // Row r belongs to sequence seq_of[r] at position pos_of[r]; starts[s] is its first row.
        let mut starts = Vec::with_capacity(seqs.len() + 1);
        let mut acc = 0;
        for s in seqs {
            starts.push(acc);
            acc += s.len();
        }
        starts.push(acc);

        // Embeddings: token + position + type 0, then LayerNorm.
        let mut x = vec![0.0f32; n * e];
        let tok_bytes = &self.file.bytes()[w.tok_embd.range.clone()];
        let pos_bytes = &self.file.bytes()[w.pos_embd.range.clone()];
        let tok_row = w.tok_embd.ty.bytes_for(e as u64).expect("validated") as usize;
        let pos_row = w.pos_embd.ty.bytes_for(e as u64).expect("validated") as usize;
        let rows_meta: Vec<(u32, usize)> = seqs
            .iter()
            .flat_map(|s| s.iter().enumerate().map(|(p, &t)| (t, p)))
            .collect();
        x.par_chunks_mut(e)
            .zip(rows_meta.par_iter())
            .try_for_each_init(
                || vec![0.0f32; e],
                |tmp, (dst, &(t, p))| -> Result<()> {
                    let t = t as usize;
                    let deq = |ty, src: &[u8], out: &mut [f32]| {
                        perch_quant::dequantize_row(ty, src, out)
                            .map_err(|err| EngineError::Kernel(err.to_string()))
                    };
                    deq(
                        w.tok_embd.ty,
                        &tok_bytes[t * tok_row..(t + 1) * tok_row],
                        dst,
                    )?;
                    deq(
                        w.pos_embd.ty,
                        &pos_bytes[p * pos_row..(p + 1) * pos_row],
                        tmp,
                    )?;
                    for ((d, &a), &b) in dst.iter_mut().zip(tmp.iter()).zip(&w.type0) {
                        *d += a + b;
                    }
                    Ok(())
                },
            )?;
        layer_norm(&mut x, e, &w.embd_norm, cfg.eps);

        let mut acts = QuantizedActivations::new();
        let (mut q, mut k, mut v) = (Vec::new(), Vec::new(), Vec::new());
        let (mut attn, mut o, mut up) = (vec![0.0f32; n * e], Vec::new(), Vec::new());
        let hd = cfg.head_dim();
        let scale = 1.0 / (hd as f32).sqrt();
        for layer in &w.layers {
            self.linear(
                &[&layer.q, &layer.k, &layer.v],
                &x,
                n,
                &mut acts,
                &mut [&mut q, &mut k, &mut v],
            )?;
            // Bidirectional attention within each sequence, per (row, head).
            let row_seq: Vec<usize> = (0..seqs.len())
                .flat_map(|s| std::iter::repeat_n(s, seqs[s].len()))
                .collect();
            attn.par_chunks_mut(e).enumerate().for_each_init(
                Vec::new,
                |scores: &mut Vec<f32>, (r, out)| {
                    let s = row_seq[r];
                    let (lo, hi) = (starts[s], starts[s + 1]);
                    for h in 0..cfg.n_head {
                        let qh = &q[r * e + h * hd..r * e + (h + 1) * hd];
                        scores.clear();
                        scores.extend((lo..hi).map(|j| {
                            perch_quant::vecops::dot_f32(
                                qh,
                                &k[j * e + h * hd..j * e + (h + 1) * hd],
                            ) * scale
                        }));
                        crate::ops::softmax(scores);
                        let oh = &mut out[h * hd..(h + 1) * hd];
                        oh.fill(0.0);
                        for (j, &p) in (lo..hi).zip(scores.iter()) {
                            perch_quant::vecops::axpy_f32(
                                oh,
                                p,
                                &v[j * e + h * hd..j * e + (h + 1) * hd],
                            );
                        }
                    }
                },
            );
            self.linear(&[&layer.o], &attn, n, &mut acts, &mut [&mut o])?;
            crate::ops::add_assign(&mut x, &o);
            layer_norm(&mut x, e, &layer.attn_norm, cfg.eps);

            self.linear(&[&layer.up], &x, n, &mut acts, &mut [&mut up])?;
            up.par_chunks_mut(cfg.n_ff)
                .for_each(|row| row.iter_mut().for_each(|v| *v = gelu_erf(*v)));
            self.linear(&[&layer.down], &up, n, &mut acts, &mut [&mut o])?;
            crate::ops::add_assign(&mut x, &o);
            layer_norm(&mut x, e, &layer.out_norm, cfg.eps);
        }

        // Pool and normalize.
        Ok((0..seqs.len())
            .map(|s| {
                let (lo, hi) = (starts[s], starts[s + 1]);
                let mut vec = match cfg.pooling {
                    Pooling::Cls => x[lo * e..(lo + 1) * e].to_vec(),
                    Pooling::Last => x[(hi - 1) * e..hi * e].to_vec(),
                    Pooling::Mean => {
                        let mut sum = vec![0.0f64; e];
                        for row in x[lo * e..hi * e].chunks_exact(e) {
                            sum.iter_mut()
                                .zip(row)
                                .for_each(|(a, &b)| *a += f64::from(b));
                        }
                        let len = (hi - lo) as f64;
                        sum.into_iter().map(|a| (a / len) as f32).collect()
                    }
                };
                l2_normalize(&mut vec);
                vec
            })
            .collect())
    }
}

/// LayerNorm of each `n`-wide row of `x` in place (mean and variance accumulated in f64, as
/// ggml's `norm`).
fn layer_norm(x: &mut [f32], n: usize, w: &LayerNormWeights, eps: f32) {
    x.par_chunks_mut(n).for_each(|row| {
        let mean = row.iter().map(|&v| f64::from(v)).sum::<f64>() / n as f64;
        let var = row
            .iter()
            .map(|&v| {
                let d = f64::from(v) - mean;
                d * d
            })
            .sum::<f64>()
            / n as f64;
        let inv = 1.0 / (var + f64::from(eps)).sqrt();
        for ((v, &g), &b) in row.iter_mut().zip(&w.weight).zip(&w.bias) {
            *v = ((f64::from(*v) - mean) * inv) as f32 * g + b;
        }
    });
}

/// The exact GELU BERT was trained with: `x/2 · (1 + erf(x/√2))`.
fn gelu_erf(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(f64::from(x) * std::f64::consts::FRAC_1_SQRT_2) as f32)
}

/// erf to about 1e-7 absolute (Abramowitz and Stegun 7.1.26 is 1.5e-7; this uses the
/// complementary-error-function expansion of Numerical Recipes' `erfc`, 1.2e-7 relative).
fn erf(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 { 1.0 - r } else { r - 1.0 }
}

impl EmbeddingModel {
    /// The token ids of `input`, checked and (with `truncate`) cut to the maximum.
    fn input_tokens(
        &self,
        index: usize,
        input: &EmbedInput,
        truncate: bool,
    ) -> Result<(Vec<u32>, bool), EmbedError> {
        let max = self.config.n_ctx_train;
        let mut ids = match input {
            EmbedInput::Text(t) => self.tokenize(t).map_err(|e| EmbedError::Tokenizer {
                index,
                message: e.to_string(),
            })?,
            EmbedInput::Tokens(t) => t.clone(),
        };
        if ids.is_empty() {
            return Err(EmbedError::Empty { index });
        }
        if let Some(&id) = ids.iter().find(|&&t| t as usize >= self.config.n_vocab) {
            return Err(EmbedError::BadToken {
                index,
                id,
                n_vocab: self.config.n_vocab,
            });
        }
        let mut truncated = false;
        if ids.len() > max {
            if !truncate {
                return Err(EmbedError::TooLong {
                    index,
                    tokens: ids.len(),
                    max,
                });
            }
            truncated = true;
            // Text keeps its closing [SEP], as Hugging Face tokenizers truncate.
            let sep = match input {
                EmbedInput::Text(_) if self.tokenizer.add_sep() => ids.last().copied(),
                _ => None,
            };
            ids.truncate(max);
            if let Some(sep) = sep {
                ids[max - 1] = sep;
            }
        }
        Ok((ids, truncated))
    }
}

impl Embedder for EmbeddingModel {
    fn name(&self) -> &str {
        "bert (perch)"
    }

    fn dimension(&self) -> usize {
        self.config.n_embd
    }

    fn max_tokens(&self) -> usize {
        self.config.n_ctx_train
    }

    fn embed(&self, inputs: &[EmbedInput], truncate: bool) -> Result<Vec<Embedding>, EmbedError> {
        let prepared = inputs
            .iter()
            .enumerate()
            .map(|(i, input)| self.input_tokens(i, input, truncate))
            .collect::<Result<Vec<_>, _>>()?;
        let seqs: Vec<&[u32]> = prepared.iter().map(|(ids, _)| ids.as_slice()).collect();
        let vectors = self
            .embed_tokens(&seqs)
            .map_err(|e| EmbedError::Backend(e.to_string()))?;
        Ok(vectors
            .into_iter()
            .zip(prepared)
            .map(|(vector, (ids, truncated))| Embedding {
                vector,
                n_tokens: ids.len(),
                truncated,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_matches_known_values() {
        // erf(0.5), erf(1), erf(2), erf(-1.5) to 10 digits.
        for (x, want) in [
            (0.0, 0.0),
            (0.5, 0.520_499_877_8),
            (1.0, 0.842_700_792_9),
            (2.0, 0.995_322_265_0),
            (-1.5, -0.966_105_146_5),
        ] {
            assert!((erf(x) - want).abs() < 2e-7, "erf({x}) = {}", erf(x));
        }
    }
}
