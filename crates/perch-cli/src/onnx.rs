//! The ONNX side of the CLI: `perch inspect model.onnx`, `perch onnx optimize` and
//! `perch quantize model.onnx` (dispatched here when the input is ONNX).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use perch_onnx::quantize::{Calibration, CalibrationMethod, Mode, QuantizeOptions, quantize_file};
use perch_onnx::runtime::{OptLevel, optimize};
use perch_onnx::{ModelSummary, OnnxModel};

use crate::inspect::human_bytes;

/// `perch inspect model.onnx`.
pub fn inspect(file: &Path, json: bool) -> Result<()> {
    let model = OnnxModel::open(file)?;
    let s = ModelSummary::of(&model);
    if json {
        let mut v = serde_json::to_value(&s)?;
        v["file"] = file.display().to_string().into();
        v["format"] = "onnx".into();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    print!("{}", render(file, &s));
    Ok(())
}

fn shape(v: &perch_onnx::ValueSummary) -> String {
    match &v.shape {
        Some(dims) => format!("[{}]", dims.join(", ")),
        None => "(no shape)".into(),
    }
}

fn render(file: &Path, s: &ModelSummary) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", file.display());
    let _ = writeln!(out, "  format        ONNX (IR version {})", s.ir_version);
    if !s.producer.is_empty() {
        let _ = writeln!(out, "  producer      {}", s.producer);
    }
    if !s.graph_name.is_empty() {
        let _ = writeln!(out, "  graph         {}", s.graph_name);
    }
    let opsets: Vec<String> = s
        .opset_imports
        .iter()
        .map(|(d, v)| format!("{d} {v}"))
        .collect();
    let _ = writeln!(out, "  opsets        {}", opsets.join(", "));
    let _ = writeln!(
        out,
        "  weights       {} in {} initializers",
        human_bytes(s.initializer_bytes),
        s.initializers.values().map(|i| i.count).sum::<usize>()
    );
    if !s.external_files.is_empty() {
        let _ = writeln!(out, "  external data {}", s.external_files.join(", "));
    }
    let _ = writeln!(out, "\ninputs");
    for v in &s.inputs {
        let _ = writeln!(out, "  {:<24} {:<8} {}", v.name, v.elem_type, shape(v));
    }
    let _ = writeln!(out, "\noutputs");
    for v in &s.outputs {
        let _ = writeln!(out, "  {:<24} {:<8} {}", v.name, v.elem_type, shape(v));
    }
    let _ = writeln!(out, "\nnodes ({})", s.node_count);
    let mut ops: Vec<(&String, &usize)> = s.ops.iter().collect();
    ops.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    for (op, n) in ops {
        let _ = writeln!(out, "  {op:<28} {n:>6}");
    }
    let _ = writeln!(out, "\ninitializers by type");
    let mut types: Vec<_> = s.initializers.iter().collect();
    types.sort_by_key(|(_, st)| std::cmp::Reverse(st.bytes));
    for (ty, st) in types {
        let share = 100.0 * st.bytes as f64 / s.initializer_bytes.max(1) as f64;
        let _ = writeln!(
            out,
            "  {ty:<10} {:>6} tensors {:>14} elements {:>12} {share:>5.1}%",
            st.count,
            st.elements,
            human_bytes(st.bytes)
        );
    }
    if !s.metadata.is_empty() {
        let _ = writeln!(out, "\nmetadata");
        for (k, v) in &s.metadata {
            let v = if v.chars().count() > 80 {
                format!(
                    "{}... ({} bytes)",
                    v.chars().take(77).collect::<String>(),
                    v.len()
                )
            } else {
                v.clone()
            };
            let _ = writeln!(out, "  {k} = {v}");
        }
    }
    out
}

/// `perch onnx ...`.
#[derive(Args, Debug)]
pub struct OnnxArgs {
    #[command(subcommand)]
    command: OnnxCommand,
}

#[derive(Subcommand, Debug)]
enum OnnxCommand {
    /// Save ONNX Runtime's optimized graph (constant folding, fusions) as a new ONNX file.
    Optimize(OptimizeArgs),
}

/// `perch onnx optimize IN OUT`.
#[derive(Args, Debug)]
struct OptimizeArgs {
    /// The ONNX model to read.
    input: PathBuf,
    /// Where to write the optimized model (written to a temporary file, loaded back, renamed).
    output: PathBuf,
    /// Graph optimization level: basic, extended or all.
    #[arg(long, default_value = "extended", value_parser = parse_level)]
    level: OptLevel,
    /// ONNX Runtime threads (default: its own choice, the physical cores).
    #[arg(long, short = 't', default_value_t = 0)]
    threads: usize,
}

fn parse_level(s: &str) -> Result<OptLevel, String> {
    s.parse()
}

/// Runs `perch onnx ...`.
pub fn run(args: OnnxArgs) -> Result<()> {
    match args.command {
        OnnxCommand::Optimize(a) => {
            let before = OnnxModel::open(&a.input)?;
            let size = optimize(&a.input, &a.output, a.level, a.threads)
                .with_context(|| format!("cannot optimize {}", a.input.display()))?;
            let after = OnnxModel::open(&a.output)?;
            let nodes = |m: &OnnxModel| m.graph().map_or(0, |g| g.node.len());
            eprintln!(
                "{} nodes -> {} nodes ({:?}), {}",
                nodes(&before),
                nodes(&after),
                a.level,
                human_bytes(size)
            );
            println!("{}", a.output.display());
            Ok(())
        }
    }
}

/// The ONNX flags of `perch quantize`.
#[derive(Args, Debug, Default)]
pub struct OnnxQuantizeArgs {
    /// ONNX quantization: dynamic-int8 (MatMulInteger), int4 (MatMulNBits) or static-int8
    /// (QDQ, needs --calibration).
    #[arg(long, value_name = "MODE")]
    pub mode: Option<String>,
    /// int4 block size along K: 32, 64 or 128.
    #[arg(long, default_value_t = 32)]
    pub block_size: usize,
    /// int4 without zero points (values around 0) instead of a zero point per block.
    #[arg(long)]
    pub symmetric: bool,
    /// static-int8: a text file whose lines are run through the model to measure
    /// activation ranges.
    #[arg(long, value_name = "FILE")]
    pub calibration: Option<PathBuf>,
    /// static-int8: minmax, or percentile (ignores the rarest values; see --percentile).
    #[arg(long, default_value = "minmax")]
    pub calibration_method: String,
    /// static-int8 with --calibration-method percentile: the share of values kept.
    #[arg(long, default_value_t = 99.999)]
    pub percentile: f32,
    /// tokenizer.json for calibration (default: beside the model).
    #[arg(long, value_name = "FILE")]
    pub tokenizer: Option<PathBuf>,
    /// A node name or operator type to leave in float (repeatable).
    #[arg(long, value_name = "NODE_OR_OPTYPE")]
    pub exclude: Vec<String>,
    /// Leave Gather tables (token embeddings) in float.
    #[arg(long)]
    pub keep_embeddings: bool,
    /// int8: one weight scale per tensor (ONNX Runtime's default) instead of per column.
    #[arg(long)]
    pub per_tensor: bool,
}

impl OnnxQuantizeArgs {
    /// Whether any ONNX-only flag was given (an error for GGUF input).
    pub fn any_set(&self) -> bool {
        self.mode.is_some()
            || self.symmetric
            || self.calibration.is_some()
            || self.tokenizer.is_some()
            || !self.exclude.is_empty()
            || self.keep_embeddings
            || self.per_tensor
    }
}

/// `perch quantize model.onnx out.onnx --mode ...`.
pub fn quantize(input: &Path, output: &Path, a: &OnnxQuantizeArgs) -> Result<()> {
    let Some(mode) = a.mode.as_deref() else {
        bail!(
            "{} is an ONNX model: give --mode dynamic-int8, int4 or static-int8",
            input.display()
        );
    };
    let mode = match mode {
        "dynamic-int8" => Mode::DynamicInt8,
        "int4" => {
            if ![32, 64, 128].contains(&a.block_size) {
                bail!("--block-size {}: use 32, 64 or 128", a.block_size);
            }
            Mode::Int4 {
                block_size: a.block_size,
                symmetric: a.symmetric,
            }
        }
        "static-int8" => {
            let Some(file) = &a.calibration else {
                bail!("--mode static-int8 needs --calibration FILE (text, one input per line)");
            };
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("cannot read the calibration file {}", file.display()))?;
            let method = match a.calibration_method.as_str() {
                "minmax" => CalibrationMethod::MinMax,
                "percentile" => CalibrationMethod::Percentile(a.percentile),
                m => bail!("--calibration-method {m:?}: use minmax or percentile"),
            };
            Mode::StaticInt8 {
                calibration: Calibration {
                    texts: text.lines().map(str::to_string).collect(),
                    tokenizer: a.tokenizer.clone(),
                    method,
                },
            }
        }
        m => bail!("--mode {m:?}: use dynamic-int8, int4 or static-int8"),
    };
    if a.symmetric && !matches!(mode, Mode::Int4 { .. }) {
        bail!("--symmetric applies to --mode int4 (int8 weights are always symmetric)");
    }
    if a.calibration.is_some() && !matches!(mode, Mode::StaticInt8 { .. }) {
        bail!("--calibration applies to --mode static-int8");
    }
    let mut opts = QuantizeOptions::new(mode);
    opts.exclude = a.exclude.clone();
    opts.quantize_gather = !a.keep_embeddings;
    opts.per_channel = !a.per_tensor;
    let started = std::time::Instant::now();
    let report = quantize_file(input, output, &opts)
        .with_context(|| format!("cannot quantize {}", input.display()))?;
    let quantized: Vec<String> = report
        .quantized
        .iter()
        .map(|(op, n)| format!("{n} {op}"))
        .collect();
    eprintln!(
        "quantized {} nodes ({}), {} left in float, in {:.1} s",
        report.quantized.values().sum::<usize>(),
        quantized.join(", "),
        report.skipped.len(),
        started.elapsed().as_secs_f64()
    );
    for s in &report.skipped {
        eprintln!("  kept in float: {s}");
    }
    eprintln!(
        "size: {} -> {} ({:.1}%); weights {} -> {}",
        human_bytes(report.file_bytes_in),
        human_bytes(report.file_bytes_out),
        100.0 * report.ratio(),
        human_bytes(report.weight_bytes_in),
        human_bytes(report.weight_bytes_out),
    );
    println!("{}", output.display());
    Ok(())
}
