//! `perch perplexity MODEL -f TEXT`: perplexity over a text with llama-perplexity's chunking
//! (see `perch_engine::perplexity`), so the two tools' numbers compare; and KL divergence of a
//! model against a base model's saved distributions.
//!
//! The reference evaluation text is the GNU GPL version 3 as Debian's `base-files` package
//! ships it: `/usr/share/common-licenses/GPL-3`.
//!
//! stdout gets what llama-perplexity prints: the running estimate after each chunk
//! (`[1]27.2804,[2]29.1354,...`) and `Final estimate: PPL = X +/- E`; with `--kl-divergence`,
//! both perplexities, their difference, the mean KL divergence, its 99th percentile and maximum,
//! and top-token agreement. A progress bar goes to stderr.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use perch_engine::Model;
use perch_engine::perplexity::{PerplexityConfig, kl_divergence, perplexity};
use perch_engine::session::default_threads;
use perch_tokenizer::Tokenizer;

/// Arguments of `perch perplexity`.
#[derive(clap::Args, Debug)]
pub struct PerplexityArgs {
    /// The GGUF model file.
    pub model: PathBuf,
    /// The text to evaluate (for example /usr/share/common-licenses/GPL-3). Not needed with
    /// --kl-divergence, which takes the tokens from the base file.
    #[arg(short = 'f', long = "file")]
    pub file: Option<PathBuf>,
    /// Tokens per chunk; the second half of each chunk is scored (with --kl-divergence, the
    /// base file's context is used).
    #[arg(short = 'c', long = "ctx-size", default_value_t = 512)]
    pub ctx_size: usize,
    /// Most chunks to evaluate (default: all).
    #[arg(long)]
    pub chunks: Option<usize>,
    /// Compute threads (default: the physical cores).
    #[arg(short = 't', long)]
    pub threads: Option<usize>,
    /// Most tokens per forward step.
    #[arg(short = 'b', long = "batch-size", default_value_t = 512)]
    pub batch_size: usize,
    /// Save this model's distributions at the scored positions to FILE (llama.cpp's format).
    #[arg(long = "kl-divergence-base", value_name = "FILE")]
    pub kl_divergence_base: Option<PathBuf>,
    /// Compare this model against the base file FILE written by --kl-divergence-base.
    #[arg(
        long = "kl-divergence",
        value_name = "FILE",
        conflicts_with = "kl_divergence_base"
    )]
    pub kl_divergence: Option<PathBuf>,
}

/// A text file, read leniently (invalid UTF-8 replaced), as llama.cpp's tools read theirs.
pub(crate) fn read_text(path: &std::path::Path) -> Result<String> {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .with_context(|| format!("cannot read {}", path.display()))
}

/// The token put at each chunk's start: BOS exactly when the vocabulary adds it to a text.
pub(crate) fn chunk_bos(tokenizer: &Tokenizer) -> Result<Option<u32>> {
    Ok(tokenizer
        .encode("", true, false)
        .context("cannot tokenize")?
        .first()
        .copied()
        .filter(|&t| Some(t) == tokenizer.bos()))
}

/// Loads `path` and tokenizes `text` for chunked evaluation: the model, the token put at
/// each chunk's start, and the text's tokens.
pub(crate) fn load_with_text(
    path: &std::path::Path,
    text: &str,
) -> Result<(Arc<Model>, Option<u32>, Vec<u32>)> {
    let model = Arc::new(
        Model::open(path).with_context(|| format!("cannot load model {}", path.display()))?,
    );
    let tokenizer = Tokenizer::from_gguf(model.file()).context("cannot load the tokenizer")?;
    let bos = chunk_bos(&tokenizer)?;
    let tokens = tokenizer
        .encode(text, true, false)
        .context("cannot tokenize the text")?;
    Ok((model, bos, tokens))
}

/// Run the command.
pub fn run(args: PerplexityArgs) -> Result<()> {
    let threads = args.threads.unwrap_or_else(default_threads);
    if threads == 0 || args.batch_size == 0 {
        bail!("--threads and --batch-size must be positive");
    }
    if args.chunks == Some(0) {
        bail!("--chunks must be positive");
    }
    let text = match &args.file {
        Some(f) => Some(read_text(f)?),
        None if args.kl_divergence.is_none() => bail!("give the text to evaluate with -f FILE"),
        None => None,
    };
    let model = Arc::new(
        Model::open(&args.model)
            .with_context(|| format!("cannot load model {}", args.model.display()))?,
    );
    let tokenizer = Tokenizer::from_gguf(model.file()).context("cannot load the tokenizer")?;
    let bos = chunk_bos(&tokenizer)?;
    let cfg = PerplexityConfig {
        n_ctx: args.ctx_size,
        n_chunks: args.chunks,
        n_batch: args.batch_size,
        threads,
    };
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
            .expect("valid progress template"),
    );
    let progress = |done: usize, total: usize, ppl: f64| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
        bar.set_message(format!("PPL {ppl:.4}"));
    };
    if let Some(base) = &args.kl_divergence {
        let r = kl_divergence(&model, base, bos, &cfg, progress);
        bar.finish_and_clear();
        let r = r.context("cannot compare against the base file")?;
        let (ppl, ppl_base) = (r.nll.ppl(), r.nll_base.ppl());
        let n = r.nll.count as f64;
        let agree_err = (r.same_top * (1.0 - r.same_top) / (n - 1.0).max(1.0)).sqrt();
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "chunks: {}, scored tokens: {}",
            r.n_chunks, r.nll.count
        )?;
        writeln!(
            out,
            "Mean PPL(Q)           : {ppl:10.6} ± {:10.6}",
            r.nll.ppl_err()
        )?;
        writeln!(
            out,
            "Mean PPL(base)        : {ppl_base:10.6} ± {:10.6}",
            r.nll_base.ppl_err()
        )?;
        writeln!(out, "PPL(Q) - PPL(base)    : {:10.6}", ppl - ppl_base)?;
        writeln!(
            out,
            "Mean KLD              : {:10.6} ± {:10.6}",
            r.kld_mean, r.kld_err
        )?;
        writeln!(out, "99.0% KLD             : {:10.6}", r.kld_p99)?;
        writeln!(out, "Maximum KLD           : {:10.6}", r.kld_max)?;
        writeln!(
            out,
            "Same top token        : {:6.3} ± {:6.3} %",
            100.0 * r.same_top,
            100.0 * agree_err
        )?;
        return Ok(());
    }
    let text = text.unwrap_or_default();
    let tokens = tokenizer
        .encode(&text, true, false)
        .context("cannot tokenize the text")?;
    let r = perplexity(
        &model,
        &tokens,
        bos,
        &cfg,
        args.kl_divergence_base.as_deref(),
        progress,
    );
    bar.finish_and_clear();
    let r = r.context("cannot compute perplexity")?;
    let mut out = std::io::stdout().lock();
    let running: Vec<String> = r
        .running
        .iter()
        .enumerate()
        .map(|(i, p)| format!("[{}]{p:.4},", i + 1))
        .collect();
    writeln!(out, "{}", running.concat())?;
    writeln!(
        out,
        "Final estimate: PPL = {:.4} +/- {:.5}",
        r.nll.ppl(),
        r.nll.ppl_err()
    )?;
    Ok(())
}
