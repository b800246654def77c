//! `perch imatrix MODEL -f TEXT -o FILE`: the importance matrix of a model over a calibration
//! text (see `perch_engine::imatrix`), written in llama.cpp's imatrix GGUF format so
//! `llama-quantize --imatrix` and `perch quantize --imatrix` can both use it.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use perch_convert::{Imatrix, ImatrixData};
use perch_engine::imatrix::{ImatrixConfig, collect_imatrix};
use perch_engine::perplexity::PerplexityConfig;
use perch_engine::session::default_threads;

use crate::perplexity::{load_with_text, read_text};

/// Arguments of `perch imatrix`.
#[derive(clap::Args, Debug)]
pub struct ImatrixArgs {
    /// The GGUF model (best: the unquantized F32/F16/BF16 file the quantized ones are made from).
    pub model: PathBuf,
    /// The calibration text.
    #[arg(short = 'f', long = "file")]
    pub file: PathBuf,
    /// Where to write the importance matrix (GGUF; written to a temporary file, then renamed).
    #[arg(short = 'o', long = "output", default_value = "imatrix.gguf")]
    pub output: PathBuf,
    /// Tokens per chunk.
    #[arg(short = 'c', long = "ctx-size", default_value_t = 512)]
    pub ctx_size: usize,
    /// Most chunks to process (default: all).
    #[arg(long)]
    pub chunks: Option<usize>,
    /// Also collect output.weight (not of tied embeddings).
    #[arg(long)]
    pub process_output: bool,
    /// Compute threads (default: the physical cores).
    #[arg(short = 't', long)]
    pub threads: Option<usize>,
}

/// Run the command.
pub fn run(args: ImatrixArgs) -> Result<()> {
    let threads = args.threads.unwrap_or_else(default_threads);
    if threads == 0 {
        bail!("--threads must be positive");
    }
    if args.chunks == Some(0) {
        bail!("--chunks must be positive");
    }
    let text = read_text(&args.file)?;
    let (model, bos, tokens) = load_with_text(&args.model, &text)?;
    let cfg = ImatrixConfig {
        run: PerplexityConfig {
            n_ctx: args.ctx_size,
            n_chunks: args.chunks,
            n_batch: args.ctx_size,
            threads,
        },
        process_output: args.process_output,
    };
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
            .expect("valid progress template"),
    );
    let report = collect_imatrix(&model, &tokens, bos, &cfg, |done, total, ppl| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
        bar.set_message(format!("PPL {ppl:.4}"));
    });
    bar.finish_and_clear();
    let report = report.context("cannot compute the importance matrix")?;
    let m = Imatrix {
        entries: report
            .entries
            .into_iter()
            .map(|(name, e)| {
                (
                    name,
                    ImatrixData {
                        sums: e.sums,
                        counts: vec![e.count],
                    },
                )
            })
            .collect(),
        datasets: vec![args.file.to_string_lossy().into_owned()],
        chunk_count: report.n_chunks as u32,
        chunk_size: report.chunk_size as u32,
    };
    m.write(&args.output)
        .with_context(|| format!("cannot write {}", args.output.display()))?;
    eprintln!(
        "{} entries over {} chunks of {} tokens; PPL of the text {:.4} +/- {:.4}",
        m.entries.len(),
        report.n_chunks,
        report.chunk_size,
        report.nll.ppl(),
        report.nll.ppl_err()
    );
    println!("{}", args.output.display());
    Ok(())
}
