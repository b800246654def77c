//! `perch quantize IN.gguf OUT.gguf TYPE`: a whole model to one ggml type.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use perch_convert::{QuantizeOptions, quantize_file};
use perch_quant::{GgmlType, has_quantizer};

use crate::inspect::human_bytes;

/// Arguments of `perch quantize`.
#[derive(clap::Args, Debug)]
pub struct QuantizeArgs {
    /// The GGUF model to read.
    pub input: PathBuf,
    /// Where to write the result (written to a temporary file, then renamed).
    pub output: PathBuf,
    /// Target type, e.g. Q4_0, Q8_0, Q4_K, IQ4_XS, TQ2_0, F16, BF16, F32.
    #[arg(value_parser = parse_type)]
    pub ty: GgmlType,
    /// Allow dequantizing and quantizing again tensors that are already quantized.
    #[arg(long)]
    pub allow_requantize: bool,
    /// Compute threads (default: the physical cores).
    #[arg(long, short = 't')]
    pub threads: Option<usize>,
}

/// A ggml type name perch can quantize to.
fn parse_type(s: &str) -> Result<GgmlType, String> {
    let ty = GgmlType::from_name(s).ok_or_else(|| format!("unknown type {s:?}"))?;
    if !has_quantizer(ty) {
        let can: Vec<&str> = perch_quant::types::ALL
            .iter()
            .copied()
            .filter(|&t| has_quantizer(t))
            .map(GgmlType::name)
            .collect();
        return Err(format!(
            "perch cannot quantize to {ty}; it can to {}",
            can.join(", ")
        ));
    }
    Ok(ty)
}

/// Run the command.
pub fn run(args: QuantizeArgs) -> Result<()> {
    let threads = args
        .threads
        .unwrap_or_else(perch_engine::session::default_threads);
    if threads == 0 {
        bail!("--threads must be positive");
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .context("starting the compute threads")?;
    let opts = QuantizeOptions {
        target: args.ty,
        allow_requantize: args.allow_requantize,
    };
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {bytes}/{total_bytes} {msg}",
        )
        .expect("valid progress template"),
    );
    let report = pool.install(|| {
        quantize_file(&args.input, &args.output, &opts, |p| {
            bar.set_length(p.bytes_total);
            bar.set_position(p.bytes_done);
            bar.set_message(format!("{}/{} {}", p.done, p.total, p.tensor.name));
        })
    });
    bar.finish_and_clear();
    let report = report
        .with_context(|| format!("cannot quantize {} to {}", args.input.display(), args.ty))?;
    eprintln!(
        "{} tensors: {} quantized to {} ({} by fallback), {} copied, in {:.1} s",
        report.tensors.len(),
        report.n_quantized(),
        args.ty,
        report.n_fallback(),
        report.tensors.len() - report.n_quantized(),
        report.elapsed.as_secs_f64(),
    );
    eprintln!(
        "size: {} ({:.2} bits per weight) -> {} ({:.2} bits per weight)",
        human_bytes(report.file_in),
        report.bpw_in(),
        human_bytes(report.file_out),
        report.bpw_out(),
    );
    println!("{}", args.output.display());
    Ok(())
}
