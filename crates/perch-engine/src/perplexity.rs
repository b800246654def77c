//! Perplexity and KL divergence over a text, chunked as llama.cpp's `llama-perplexity` does,
//! so the two tools' numbers compare.
//!
//! * The whole text is tokenized once (with BOS when the vocabulary asks for one) and split
//!   into chunks of `n_ctx` tokens; a remainder shorter than a chunk is dropped. At least two
//!   chunks' worth of tokens are required, as llama.cpp requires.
//! * Each chunk runs in a fresh context. When the vocabulary adds BOS, the chunk's first token
//!   is replaced by BOS for the forward pass.
//! * Only the second half of each chunk is scored: the logits at positions
//!   `n_ctx/2 ..= n_ctx-2` predict the tokens that follow them (`n_ctx - 1 - n_ctx/2` scores per
//!   chunk). Log-softmax is computed in `f64`.
//! * The estimate is `exp(mean NLL)`, its error `ppl * sqrt(var(NLL) / (count - 1))`.
//!
//! # KL-divergence base file
//!
//! [`perplexity`] can save the base model's distributions at the scored positions, and
//! [`kl_divergence`] compares another model against them. The file uses llama.cpp's layout, so
//! `llama-perplexity --kl-divergence` reads perch's files and the other way round
//! (all integers and floats little-endian):
//!
//! ```text
//! "_logits_"                 8 bytes
//! n_ctx    u32, n_vocab i32, n_chunk i32
//! tokens   i32 × n_chunk·n_ctx        (the text's tokens, before any BOS substitution)
//! per chunk, per scored position (n_ctx - 1 - n_ctx/2 rows), one row of nv = 2·⌈n_vocab/2⌉ + 4 u16:
//!     scale f32, min_log_prob f32, then q u16 × n_vocab (and one padding u16 when n_vocab is odd)
//! ```
//!
//! A row stores log-probabilities quantized to 16 bits over the 16 nats below the top logit:
//! `log p_i = scale · q_i + min_log_prob`; logits further below all store `q = 0`.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::EngineError;
use crate::kv::KvType;
use crate::model::Model;
use crate::session::{Session, SessionConfig};

const MAGIC: &[u8; 8] = b"_logits_";
/// Log-probabilities this far below the top one are not told apart in a base file.
const RANGE: f32 = 16.0;

/// What can go wrong computing perplexity or KL divergence.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PerplexityError {
    /// Fewer tokens than two chunks.
    #[error(
        "the text has {tokens} tokens; a context of {n_ctx} needs at least {need} (use a longer text or a smaller --ctx-size)"
    )]
    TooShort {
        /// Tokens in the text.
        tokens: usize,
        /// Context size.
        n_ctx: usize,
        /// Tokens needed.
        need: usize,
    },
    /// A setting out of range.
    #[error("{0}")]
    BadOption(String),
    /// Reading or writing a base file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The system's error.
        source: std::io::Error,
    },
    /// A base file that is not one, is truncated, or was made for another vocabulary.
    #[error("{path}: {why}")]
    BadBase {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The model failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// Result alias of this module.
pub type Result<T, E = PerplexityError> = std::result::Result<T, E>;

/// Settings of a perplexity run.
#[derive(Clone, Debug)]
pub struct PerplexityConfig {
    /// Tokens per chunk (`--ctx-size`).
    pub n_ctx: usize,
    /// Most chunks to evaluate (all of them when `None`).
    pub n_chunks: Option<usize>,
    /// Most tokens per forward step.
    pub n_batch: usize,
    /// Compute threads.
    pub threads: usize,
}

/// Running sums of negative log-likelihoods.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct NllStats {
    /// Sum of NLL.
    pub sum: f64,
    /// Sum of squared NLL.
    pub sum2: f64,
    /// Scored tokens.
    pub count: usize,
}

impl NllStats {
    pub(crate) fn add(&mut self, nll: f64) {
        self.sum += nll;
        self.sum2 += nll * nll;
        self.count += 1;
    }

    /// Mean NLL and its standard error (0 with fewer than two values).
    pub fn mean_and_err(&self) -> (f64, f64) {
        if self.count == 0 {
            return (0.0, 0.0);
        }
        let n = self.count as f64;
        let mean = self.sum / n;
        let var = self.sum2 / n - mean * mean;
        let err = if var > 0.0 && self.count > 1 {
            (var / (n - 1.0)).sqrt()
        } else {
            0.0
        };
        (mean, err)
    }

    /// Perplexity, `exp(mean NLL)`.
    pub fn ppl(&self) -> f64 {
        self.mean_and_err().0.exp()
    }

    /// Standard error of the perplexity.
    pub fn ppl_err(&self) -> f64 {
        let (m, e) = self.mean_and_err();
        m.exp() * e
    }
}

/// The outcome of [`perplexity`].
#[derive(Clone, Debug)]
pub struct PerplexityReport {
    /// Chunks evaluated.
    pub n_chunks: usize,
    /// The running perplexity after each chunk (what llama.cpp prints as `[i]x`).
    pub running: Vec<f64>,
    /// NLL sums over all scored tokens.
    pub nll: NllStats,
}

/// The outcome of [`kl_divergence`].
#[derive(Clone, Debug)]
pub struct KldReport {
    /// Chunks evaluated.
    pub n_chunks: usize,
    /// NLL of the model under test.
    pub nll: NllStats,
    /// NLL of the base model (from the file).
    pub nll_base: NllStats,
    /// Mean KL divergence (base ‖ model), in nats.
    pub kld_mean: f64,
    /// Standard error of the mean KL divergence.
    pub kld_err: f64,
    /// 99th percentile of the per-token KL divergence.
    pub kld_p99: f64,
    /// Largest per-token KL divergence.
    pub kld_max: f64,
    /// Fraction of positions where both models' most likely token is the same.
    pub same_top: f64,
}

/// How many chunks a text of `n_tokens` gives at context `n_ctx` (at most `limit`).
pub fn count_chunks(n_tokens: usize, n_ctx: usize, limit: Option<usize>) -> Result<usize> {
    if n_ctx < 4 {
        return Err(PerplexityError::BadOption(format!(
            "the context size must be at least 4 (got {n_ctx})"
        )));
    }
    if n_tokens < 2 * n_ctx {
        return Err(PerplexityError::TooShort {
            tokens: n_tokens,
            n_ctx,
            need: 2 * n_ctx,
        });
    }
    let n = n_tokens / n_ctx;
    Ok(limit.map_or(n, |l| l.min(n)))
}

/// Log-sum-exp of a row in `f64`, with the row's largest value and its first index.
pub(crate) fn log_sum_exp(row: &[f32]) -> (f64, f32, usize) {
    let (mut imax, mut max) = (0, f32::NEG_INFINITY);
    for (i, &v) in row.iter().enumerate() {
        if v > max {
            max = v;
            imax = i;
        }
    }
    let sum: f64 = row.iter().map(|&v| f64::from(v - max).exp()).sum();
    (f64::from(max) + sum.ln(), max, imax)
}

/// Checks the settings against the model and opens a session for them.
pub(crate) fn open_session(model: &Arc<Model>, cfg: &PerplexityConfig) -> Result<Session> {
    let train = model.config().n_ctx_train;
    if train > 0 && cfg.n_ctx > train {
        return Err(PerplexityError::BadOption(format!(
            "the context size {} is larger than the model's training context of {train}",
            cfg.n_ctx
        )));
    }
    if cfg.n_batch == 0 || cfg.threads == 0 {
        return Err(PerplexityError::BadOption(
            "the batch size and thread count must be positive".into(),
        ));
    }
    Ok(Session::new(
        model.clone(),
        SessionConfig {
            n_ctx: cfg.n_ctx,
            n_batch: cfg.n_batch,
            threads: cfg.threads,
            kv_type: KvType::F16,
            ..SessionConfig::default()
        },
    )?)
}

/// Runs one chunk in a fresh context and returns the logits of its scored positions
/// (`n_ctx - 1 - n_ctx/2` rows of `n_vocab`).
fn chunk_logits(session: &mut Session, chunk: &[u32], bos: Option<u32>) -> Result<Vec<f32>> {
    let n_ctx = chunk.len();
    let first = n_ctx / 2;
    let mut toks = chunk.to_vec();
    if let Some(b) = bos {
        toks[0] = b;
    }
    session.clear();
    session.feed(&toks[..first], false)?;
    let mut logits = session.feed(&toks[first..], true)?;
    let n_vocab = session.model().config().n_vocab;
    logits.truncate((n_ctx - 1 - first) * n_vocab);
    Ok(logits)
}

/// Perplexity of `model` on `tokens` (the whole text, tokenized with BOS when the vocabulary
/// adds one; `bos` is then that token, substituted at each chunk's start).
///
/// With `base`, also writes the KL-divergence base file there (atomically: a temporary file
/// renamed into place at the end). `on_chunk(done, total, running_ppl)` is called after each
/// chunk.
pub fn perplexity(
    model: &Arc<Model>,
    tokens: &[u32],
    bos: Option<u32>,
    cfg: &PerplexityConfig,
    base: Option<&Path>,
    mut on_chunk: impl FnMut(usize, usize, f64),
) -> Result<PerplexityReport> {
    let mut session = open_session(model, cfg)?;
    let n_chunks = count_chunks(tokens.len(), cfg.n_ctx, cfg.n_chunks)?;
    let n_ctx = cfg.n_ctx;
    let n_vocab = model.config().n_vocab;
    let first = n_ctx / 2;
    let mut writer = match base {
        Some(p) => Some(BaseWriter::create(
            p,
            n_ctx,
            n_vocab,
            &tokens[..n_chunks * n_ctx],
        )?),
        None => None,
    };
    let mut nll = NllStats::default();
    let mut running = Vec::with_capacity(n_chunks);
    for c in 0..n_chunks {
        let chunk = &tokens[c * n_ctx..(c + 1) * n_ctx];
        let logits = chunk_logits(&mut session, chunk, bos)?;
        for (r, row) in logits.chunks_exact(n_vocab).enumerate() {
            let target = chunk[first + r + 1] as usize;
            let (lse, max, _) = log_sum_exp(row);
            nll.add(lse - f64::from(row[target]));
            if let Some(w) = writer.as_mut() {
                w.row(row, max, lse)?;
            }
        }
        running.push(nll.ppl());
        on_chunk(c + 1, n_chunks, nll.ppl());
    }
    if let Some(w) = writer {
        w.finish()?;
    }
    Ok(PerplexityReport {
        n_chunks,
        running,
        nll,
    })
}

/// Compares `model` against a base file written by [`perplexity`] (or by llama.cpp's
/// `--kl-divergence-base`), on the tokens stored in the file. `bos` as in [`perplexity`];
/// `cfg.n_ctx` is taken from the file.
pub fn kl_divergence(
    model: &Arc<Model>,
    base: &Path,
    bos: Option<u32>,
    cfg: &PerplexityConfig,
    mut on_chunk: impl FnMut(usize, usize, f64),
) -> Result<KldReport> {
    let mut reader = BaseReader::open(base, model.config().n_vocab)?;
    let n_ctx = reader.n_ctx;
    let n_chunks = cfg
        .n_chunks
        .map_or(reader.n_chunk, |l| l.min(reader.n_chunk));
    let cfg = PerplexityConfig {
        n_ctx,
        ..cfg.clone()
    };
    if n_chunks == 0 {
        return Err(PerplexityError::BadOption("no chunks to evaluate".into()));
    }
    let mut session = open_session(model, &cfg)?;
    let n_vocab = model.config().n_vocab;
    let first = n_ctx / 2;
    let (mut nll, mut nll_base) = (NllStats::default(), NllStats::default());
    let mut klds = Vec::new();
    let mut same_top = 0usize;
    let mut qrow = vec![0u16; reader.nv];
    for c in 0..n_chunks {
        let chunk = reader.tokens[c * n_ctx..(c + 1) * n_ctx].to_vec();
        let logits = chunk_logits(&mut session, &chunk, bos)?;
        for (r, row) in logits.chunks_exact(n_vocab).enumerate() {
            reader.read_row(&mut qrow)?;
            let target = chunk[first + r + 1] as usize;
            let (lse, _, imax) = log_sum_exp(row);
            nll.add(lse - f64::from(row[target]));
            let scale = f32::from_bits(u32::from(qrow[0]) | (u32::from(qrow[1]) << 16));
            let min_lp = f32::from_bits(u32::from(qrow[2]) | (u32::from(qrow[3]) << 16));
            let q = &qrow[4..4 + n_vocab];
            let base_lp = |i: usize| f64::from(scale * f32::from(q[i]) + min_lp);
            nll_base.add(-base_lp(target));
            let (mut kld, mut imax_base, mut top) = (0.0f64, 0usize, f64::NEG_INFINITY);
            for (i, &l) in row.iter().enumerate() {
                let lp = base_lp(i);
                if lp > top {
                    top = lp;
                    imax_base = i;
                }
                if lp > -f64::from(RANGE) {
                    kld += lp.exp() * (lp - (f64::from(l) - lse));
                }
            }
            same_top += usize::from(imax == imax_base);
            klds.push(kld);
        }
        on_chunk(c + 1, n_chunks, nll.ppl());
    }
    let n = klds.len() as f64;
    let mean = klds.iter().sum::<f64>() / n;
    let var = klds.iter().map(|k| k * k).sum::<f64>() / n - mean * mean;
    let kld_err = if var > 0.0 && klds.len() > 1 {
        (var / (n - 1.0)).sqrt()
    } else {
        0.0
    };
    klds.sort_by(f64::total_cmp);
    Ok(KldReport {
        n_chunks,
        nll,
        nll_base,
        kld_mean: mean,
        kld_err,
        kld_p99: percentile(&klds, 0.99),
        kld_max: klds.last().copied().unwrap_or(0.0),
        same_top: same_top as f64 / n,
    })
}

/// Linear interpolation between the two sorted values around `fraction · (len - 1)`.
fn percentile(sorted: &[f64], fraction: f64) -> f64 {
    let Some(&last) = sorted.last() else {
        return 0.0;
    };
    let p = fraction * (sorted.len() - 1) as f64;
    let i = p as usize;
    let f = p - i as f64;
    let next = sorted.get(i + 1).copied().unwrap_or(last);
    (1.0 - f) * sorted[i] + f * next
}

/// Row length in u16 of a base file for `n_vocab`.
fn row_len(n_vocab: usize) -> usize {
    2 * n_vocab.div_ceil(2) + 4
}

/// Writes a base file to a temporary name; [`BaseWriter::finish`] renames it into place and
/// dropping it unfinished removes it.
struct BaseWriter {
    out: Option<BufWriter<File>>,
    tmp: PathBuf,
    path: PathBuf,
    buf: Vec<u8>,
    n_vocab: usize,
}

impl BaseWriter {
    fn create(path: &Path, n_ctx: usize, n_vocab: usize, tokens: &[u32]) -> Result<BaseWriter> {
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(format!(".tmp{}", std::process::id()));
        let tmp = path.with_file_name(name);
        let io = |source| PerplexityError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = File::create(&tmp).map_err(io)?;
        let mut w = BaseWriter {
            out: Some(BufWriter::with_capacity(1 << 20, file)),
            tmp,
            path: path.to_path_buf(),
            buf: Vec::with_capacity(row_len(n_vocab) * 2),
            n_vocab,
        };
        let n_chunk = tokens.len() / n_ctx;
        let mut head = Vec::with_capacity(20 + 4 * tokens.len());
        head.extend_from_slice(MAGIC);
        head.extend_from_slice(&(n_ctx as u32).to_le_bytes());
        head.extend_from_slice(&(n_vocab as i32).to_le_bytes());
        head.extend_from_slice(&(n_chunk as i32).to_le_bytes());
        for &t in tokens {
            head.extend_from_slice(&(t as i32).to_le_bytes());
        }
        w.write(&head)?;
        Ok(w)
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        let out = self.out.as_mut().expect("writer open until finished");
        out.write_all(bytes).map_err(|source| PerplexityError::Io {
            path: self.path.clone(),
            source,
        })
    }

    /// Quantizes one row of logits (`max` its largest value, `lse` its log-sum-exp).
    fn row(&mut self, row: &[f32], max: f32, lse: f64) -> Result<()> {
        let min = row.iter().copied().fold(max, f32::min).max(max - RANGE);
        let min_lp = min - lse as f32;
        let scale = (max - min) / 65535.0;
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        buf.extend_from_slice(&scale.to_le_bytes());
        buf.extend_from_slice(&min_lp.to_le_bytes());
        let inv = if scale > 0.0 { 1.0 / scale } else { 0.0 };
        for &l in row {
            let q = if l > min {
                ((l - min) * inv).round_ties_even().clamp(0.0, 65535.0) as u16
            } else {
                0
            };
            buf.extend_from_slice(&q.to_le_bytes());
        }
        buf.resize(row_len(self.n_vocab) * 2, 0);
        let r = self.write(&buf);
        self.buf = buf;
        r
    }

    fn finish(mut self) -> Result<()> {
        let out = self.out.take().expect("writer open until finished");
        let io = |source| PerplexityError::Io {
            path: self.path.clone(),
            source,
        };
        let file = out.into_inner().map_err(|e| io(e.into_error()))?;
        file.sync_all().map_err(io)?;
        std::fs::rename(&self.tmp, &self.path).map_err(io)?;
        Ok(())
    }
}

impl Drop for BaseWriter {
    fn drop(&mut self) {
        if self.out.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Reads a base file row by row.
struct BaseReader {
    input: BufReader<File>,
    path: PathBuf,
    n_ctx: usize,
    n_chunk: usize,
    nv: usize,
    tokens: Vec<u32>,
    bytes: Vec<u8>,
}

impl BaseReader {
    fn open(path: &Path, n_vocab: usize) -> Result<BaseReader> {
        let bad = |why: String| PerplexityError::BadBase {
            path: path.to_path_buf(),
            why,
        };
        let file = File::open(path).map_err(|source| PerplexityError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let mut input = BufReader::with_capacity(1 << 20, file);
        let mut head = [0u8; 20];
        if input.read_exact(&mut head).is_err() || &head[..8] != MAGIC {
            return Err(bad(
                "not a KL-divergence base file (no `_logits_` header)".into()
            ));
        }
        let word = |i: usize| u32::from_le_bytes(head[i..i + 4].try_into().expect("4 bytes"));
        let (n_ctx, file_vocab, n_chunk) = (word(8) as usize, word(12) as i32, word(16) as i32);
        if file_vocab as usize != n_vocab {
            return Err(bad(format!(
                "made with a vocabulary of {file_vocab} tokens, the model has {n_vocab}"
            )));
        }
        if n_ctx < 4 || n_chunk <= 0 {
            return Err(bad(format!("bad header (n_ctx {n_ctx}, {n_chunk} chunks)")));
        }
        let n_chunk = n_chunk as usize;
        let nv = row_len(n_vocab);
        let rows = n_chunk as u64 * (n_ctx - 1 - n_ctx / 2) as u64;
        let expect = 20 + 4 * (n_chunk * n_ctx) as u64 + rows * nv as u64 * 2;
        if len != expect {
            return Err(bad(format!(
                "{len} bytes, expected {expect} for {n_chunk} chunks of {n_ctx} tokens (truncated?)"
            )));
        }
        let mut raw = vec![0u8; 4 * n_chunk * n_ctx];
        input
            .read_exact(&mut raw)
            .map_err(|e| bad(format!("cannot read the tokens: {e}")))?;
        let tokens: Vec<u32> = raw
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
            .collect();
        if let Some(&t) = tokens.iter().find(|&&t| t as usize >= n_vocab) {
            return Err(bad(format!("token {t} is outside the vocabulary")));
        }
        Ok(BaseReader {
            input,
            path: path.to_path_buf(),
            n_ctx,
            n_chunk,
            nv,
            tokens,
            bytes: vec![0u8; nv * 2],
        })
    }

    fn read_row(&mut self, out: &mut [u16]) -> Result<()> {
        self.input
            .read_exact(&mut self.bytes)
            .map_err(|source| PerplexityError::Io {
                path: self.path.clone(),
                source,
            })?;
        for (o, b) in out.iter_mut().zip(self.bytes.chunks_exact(2)) {
            *o = u16::from_le_bytes([b[0], b[1]]);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_follow_llama_cpp() {
        assert_eq!(count_chunks(1000, 128, None).unwrap(), 7);
        assert_eq!(count_chunks(1000, 128, Some(4)).unwrap(), 4);
        assert!(matches!(
            count_chunks(255, 128, None),
            Err(PerplexityError::TooShort { need: 256, .. })
        ));
        assert!(count_chunks(1000, 2, None).is_err());
    }

    #[test]
    fn base_file_round_trips_and_rejects_truncation() {
        let dir = std::env::temp_dir().join(format!("perch-ppl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("base.kld");
        let n_vocab = 5;
        let row = [1.0f32, -3.0, 0.5, -40.0, 2.0];
        let (lse, max, imax) = log_sum_exp(&row);
        assert_eq!((max, imax), (2.0, 4));
        let mut w = BaseWriter::create(&path, 4, n_vocab, &[1, 2, 3, 4]).unwrap();
        w.row(&row, max, lse).unwrap();
        assert!(!path.exists(), "nothing at the final name before finish");
        w.finish().unwrap();
        let len = std::fs::metadata(&path).unwrap().len();
        assert_eq!(len, 20 + 16 + 2 * 10);
        let mut r = BaseReader::open(&path, n_vocab).unwrap();
        assert_eq!(
            (r.n_ctx, r.n_chunk, r.tokens.clone()),
            (4, 1, vec![1, 2, 3, 4])
        );
        let mut q = vec![0u16; r.nv];
        r.read_row(&mut q).unwrap();
        let scale = f32::from_bits(u32::from(q[0]) | (u32::from(q[1]) << 16));
        let min_lp = f32::from_bits(u32::from(q[2]) | (u32::from(q[3]) << 16));
        for (i, &l) in row.iter().enumerate() {
            let got = f64::from(scale * f32::from(q[4 + i]) + min_lp);
            let want = (f64::from(l) - lse).max(f64::from(max - RANGE) - lse);
            assert!((got - want).abs() < 1e-3, "{i}: {got} vs {want}");
        }
        assert!(matches!(
            BaseReader::open(&path, 6),
            Err(PerplexityError::BadBase { .. })
        ));
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 2]).unwrap();
        let e = BaseReader::open(&path, n_vocab).err().unwrap().to_string();
        assert!(e.contains("truncated"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn stats_and_percentile() {
        let mut s = NllStats::default();
        for v in [1.0, 2.0, 3.0] {
            s.add(v);
        }
        assert!((s.ppl() - 2f64.exp()).abs() < 1e-12);
        assert!((s.mean_and_err().1 - (1.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert_eq!(percentile(&[0.0, 1.0, 2.0], 0.5), 1.0);
        assert!((percentile(&[0.0, 10.0], 0.99) - 9.9).abs() < 1e-9);
    }
}
