//! `perch convert`: a Hugging Face model folder, or a llama2.c checkpoint with its
//! `tokenizer.bin`, to a GGUF file.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use perch_convert::{ConvertProgress, OutType, convert_hf, convert_llama2c};

use crate::inspect::human_bytes;

/// Arguments of `perch convert`.
#[derive(clap::Args, Debug)]
pub struct ConvertArgs {
    /// A Hugging Face model folder (config.json, tokenizer.json, *.safetensors) or a llama2.c
    /// checkpoint (`model.bin`, with --tokenizer).
    pub input: PathBuf,
    /// The GGUF file to write (written to a temporary file, then renamed).
    #[arg(long, short = 'o')]
    pub outfile: PathBuf,
    /// Type of the weight matrices: f32, f16, bf16 or q8_0 (norms, biases and position
    /// embeddings stay f32, as llama.cpp writes them).
    #[arg(long, default_value = "f16")]
    pub outtype: String,
    /// llama.cpp's `tokenizer.bin` of a llama2.c checkpoint (default: tokenizer.bin beside it).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Compute threads (default: all).
    #[arg(long, short = 't')]
    pub threads: Option<usize>,
}

/// Run `perch convert`.
pub fn run(args: ConvertArgs) -> Result<()> {
    let Some(outtype) = OutType::parse(&args.outtype) else {
        bail!(
            "--outtype {:?}: the types are f32, f16, bf16 and q8_0",
            args.outtype
        );
    };
    if args.outfile.is_dir() {
        bail!("{} is a folder; give a file name", args.outfile.display());
    }
    let mut pool = rayon::ThreadPoolBuilder::new();
    if let Some(t) = args.threads {
        pool = pool.num_threads(t.max(1));
    }
    let pool = pool.build().context("cannot start compute threads")?;
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} tensors {msg}")
            .expect("valid progress template"),
    );
    let progress = |p: ConvertProgress<'_>| {
        bar.set_length(p.total as u64);
        bar.set_position(p.done as u64);
        bar.set_message(p.tensor.to_string());
    };
    let report = pool.install(|| {
        if args.input.is_dir() {
            convert_hf(&args.input, &args.outfile, outtype, progress)
        } else {
            let tokenizer = args.tokenizer.clone().unwrap_or_else(|| {
                args.input
                    .parent()
                    .unwrap_or_else(|| std::path::Path::new("."))
                    .join("tokenizer.bin")
            });
            convert_llama2c(&args.input, &tokenizer, &args.outfile, outtype, progress)
        }
    });
    bar.finish_and_clear();
    let report = report.with_context(|| format!("cannot convert {}", args.input.display()))?;
    println!(
        "{}: {} model, {} tensors, {} parameters, {} of weights ({})",
        args.outfile.display(),
        report.arch,
        report.n_tensors,
        report.n_elements,
        human_bytes(report.bytes),
        args.outtype.to_ascii_lowercase()
    );
    Ok(())
}
