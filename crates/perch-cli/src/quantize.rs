//! `perch quantize IN.gguf OUT.gguf FTYPE`: a whole model to one of llama.cpp's file types,
//! with its per-tensor mix (or `--pure`) and llama-quantize's override flags.
//! `perch quantize IN.onnx OUT.onnx --mode ...` goes to [`crate::onnx::quantize`].

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use perch_convert::{FileType, MixOptions, QuantizeOptions, TensorTypeRule, quantize_file};
use perch_quant::{GgmlType, has_quantizer};

use crate::inspect::human_bytes;

/// Arguments of `perch quantize`.
#[derive(clap::Args, Debug)]
pub struct QuantizeArgs {
    /// The GGUF (or ONNX) model to read.
    pub input: PathBuf,
    /// Where to write the result (written to a temporary file, then renamed).
    pub output: PathBuf,
    /// llama.cpp file type: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q2_K_S, Q3_K_S, Q3_K_M, Q3_K_L,
    /// Q4_K_S, Q4_K_M, Q5_K_S, Q5_K_M, Q6_K, IQ4_NL, IQ4_XS, TQ1_0, TQ2_0, MXFP4_MOE, Q1_0,
    /// Q2_0, F16, BF16, F32 (Q3_K, Q4_K, Q5_K are the _M mixes). The IQ1/IQ2/IQ3 mixes need
    /// quantizers perch does not have yet. Not for ONNX input (--mode).
    pub ftype: Option<String>,
    /// Allow dequantizing and quantizing again tensors that are already quantized.
    #[arg(long)]
    pub allow_requantize: bool,
    /// Every quantizable tensor in the file type's default type: no mix rules.
    #[arg(long)]
    pub pure: bool,
    /// PATTERN=TYPE: tensors whose name the regex matches get TYPE (repeatable; the first
    /// matching pattern wins), e.g. --tensor-type 'attn_v=q8_0'.
    #[arg(long = "tensor-type", value_name = "PATTERN=TYPE")]
    pub tensor_types: Vec<String>,
    /// The type of output.weight (and of tied token embeddings).
    #[arg(long, value_name = "TYPE")]
    pub output_tensor_type: Option<String>,
    /// The type of token_embd.weight.
    #[arg(long, value_name = "TYPE")]
    pub token_embedding_type: Option<String>,
    /// Copy output.weight unchanged.
    #[arg(long)]
    pub leave_output_tensor: bool,
    /// An importance matrix (from `perch imatrix` or llama-imatrix, GGUF or legacy .dat):
    /// the K- and I-quants and Q4_0/Q4_1/Q5_0/Q5_1 weight each column's rounding error by it.
    #[arg(long, value_name = "FILE")]
    pub imatrix: Option<PathBuf>,
    /// Compute threads (default: the physical cores).
    #[arg(long, short = 't')]
    pub threads: Option<usize>,
    /// ONNX input only.
    #[command(flatten)]
    pub onnx: crate::onnx::OnnxQuantizeArgs,
}

/// A llama.cpp file type perch can make.
fn parse_ftype(s: &str) -> Result<FileType, String> {
    let Some(ftype) = FileType::from_name(s) else {
        let names: Vec<&str> = FileType::ALL
            .iter()
            .filter(|f| has_quantizer(f.default_type()))
            .map(|f| f.name())
            .collect();
        return Err(format!(
            "unknown type {s:?}; the file types are {}",
            names.join(", ")
        ));
    };
    let ty = ftype.default_type();
    if !has_quantizer(ty) {
        return Err(format!(
            "cannot quantize to {ftype}: its tensors are {ty}, for which perch has no \
             quantizer (the 1- to 3-bit I-quants also need an importance matrix)"
        ));
    }
    Ok(ftype)
}

/// `--tensor-type PATTERN=TYPE`.
fn parse_rule(s: &str) -> Result<TensorTypeRule, String> {
    let rule = TensorTypeRule::parse(s).map_err(|e| e.to_string())?;
    parse_type(rule.ty.name()).map_err(|e| format!("--tensor-type {s:?}: {e}"))?;
    Ok(rule)
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
    if perch_onnx::is_onnx_file(&args.input) {
        if args.ftype.is_some() {
            bail!(
                "{} is an ONNX model: use --mode dynamic-int8, int4 or static-int8 instead of a file type",
                args.input.display()
            );
        }
        if args.imatrix.is_some() {
            bail!(
                "--imatrix applies to GGUF models; for ONNX use --mode static-int8 --calibration FILE"
            );
        }
        return crate::onnx::quantize(&args.input, &args.output, &args.onnx);
    }
    if args.onnx.any_set() {
        bail!(
            "--mode and the other ONNX flags apply to ONNX models; {} is not one",
            args.input.display()
        );
    }
    let Some(ftype_name) = args.ftype.as_deref() else {
        bail!("give the file type to quantize to, e.g. Q4_K_M");
    };
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
    // Flags are parsed here, not by clap, so a bad one is a single line naming it.
    let ftype = parse_ftype(ftype_name).map_err(anyhow::Error::msg)?;
    let flag_type = |flag: &str, v: &Option<String>| -> Result<Option<GgmlType>> {
        v.as_deref()
            .map(|s| parse_type(s).map_err(|e| anyhow::anyhow!("{flag} {s:?}: {e}")))
            .transpose()
    };
    let output_tensor_type = flag_type("--output-tensor-type", &args.output_tensor_type)?;
    let token_embedding_type = flag_type("--token-embedding-type", &args.token_embedding_type)?;
    let tensor_types = args
        .tensor_types
        .iter()
        .map(|s| parse_rule(s).map_err(anyhow::Error::msg))
        .collect::<Result<Vec<_>>>()?;
    let imatrix = match &args.imatrix {
        Some(p) => {
            let m = perch_convert::Imatrix::read(p)?;
            Some((std::sync::Arc::new(m), p.clone()))
        }
        None => None,
    };
    let opts = QuantizeOptions {
        ftype,
        allow_requantize: args.allow_requantize,
        mix: MixOptions {
            pure: args.pure,
            tensor_types,
            output_tensor_type,
            token_embedding_type,
            leave_output_tensor: args.leave_output_tensor,
            has_imatrix: imatrix.is_some(),
        },
        imatrix,
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
    let report =
        report.with_context(|| format!("cannot quantize {} to {ftype}", args.input.display()))?;
    let mut by_type = std::collections::BTreeMap::<&str, usize>::new();
    for t in report.tensors.iter().filter(|t| !t.is_copy()) {
        *by_type.entry(t.to.name()).or_default() += 1;
    }
    let by_type: Vec<String> = by_type.iter().map(|(t, n)| format!("{n} {t}")).collect();
    eprintln!(
        "{} tensors: {} quantized for {} ({}; {} by fallback), {} copied, in {:.1} s",
        report.tensors.len(),
        report.n_quantized(),
        ftype,
        by_type.join(", "),
        report.n_fallback(),
        report.tensors.len() - report.n_quantized(),
        report.elapsed.as_secs_f64(),
    );
    if let Some((m, _)) = &opts.imatrix {
        eprintln!(
            "importance matrix: {} entries from {} chunks of {}",
            m.entries.len(),
            m.chunk_count,
            if m.datasets.is_empty() {
                "an unnamed text".to_string()
            } else {
                m.datasets.join(", ")
            }
        );
    }
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
