//! `perch optimize MODEL -f TEXT --max-kld X`: the smallest quantized variant of a model whose
//! quality stays within a budget, in the spirit of Olive's search.
//!
//! 1. The model itself (best an F32/F16/BF16 file) is the base: its distributions over the
//!    text's scored positions are saved (the KL-divergence base file of `perch perplexity`).
//! 2. Each candidate file type (`--types`, by default the llama.cpp types from Q8_0 down to
//!    Q2_K) is made with `perch quantize`'s code (and `--imatrix` when given), then measured:
//!    file size, bits per weight, perplexity, mean and 99th-percentile KL divergence against
//!    the base, top-token agreement, and generation speed (tokens per second, one sequence).
//! 3. The smallest candidate whose mean KLD is within `--max-kld` is kept at `-o`; the others
//!    are deleted unless `--keep-all`.
//!
//! The report goes to `--report-dir`: `report.json`, `report.md` and `chart.svg` (file size
//! against mean KLD, the budget drawn as a line). The chart is a few dozen SVG elements
//! written directly, so the binary needs no font files.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use perch_convert::{FileType, Imatrix, QuantizeOptions, quantize_file};
use perch_engine::Model;
use perch_engine::perplexity::{PerplexityConfig, kl_divergence, perplexity};
use perch_engine::session::default_threads;
use perch_quant::has_quantizer;
use serde::Serialize;

use crate::inspect::human_bytes;
use crate::perplexity::{load_with_text, read_text};

/// The candidates tried when `--types` is not given, largest first.
const DEFAULT_TYPES: &str =
    "Q8_0,Q6_K,Q5_K_M,Q5_K_S,Q5_0,Q4_K_M,Q4_K_S,IQ4_XS,IQ4_NL,Q4_0,Q3_K_L,Q3_K_M,Q3_K_S,Q2_K";

/// Arguments of `perch optimize`.
#[derive(clap::Args, Debug)]
pub struct OptimizeArgs {
    /// The model to optimize (best unquantized: F32, F16 or BF16).
    pub model: PathBuf,
    /// The evaluation text (e.g. /usr/share/common-licenses/GPL-3).
    #[arg(short = 'f', long = "file")]
    pub file: PathBuf,
    /// The quality budget: the largest mean KL divergence (nats per token) against the model.
    #[arg(long = "max-kld")]
    pub max_kld: f64,
    /// Candidate file types, comma-separated.
    #[arg(long, default_value = DEFAULT_TYPES, value_delimiter = ',')]
    pub types: Vec<String>,
    /// Where the chosen variant goes (default: MODEL's name with the type, beside it).
    #[arg(short = 'o', long = "output")]
    pub output: Option<PathBuf>,
    /// Where the report goes (report.json, report.md, chart.svg).
    #[arg(long, default_value = "optimize-report")]
    pub report_dir: PathBuf,
    /// An importance matrix for the quantizers (from `perch imatrix`).
    #[arg(long, value_name = "FILE")]
    pub imatrix: Option<PathBuf>,
    /// Tokens per evaluation chunk.
    #[arg(short = 'c', long = "ctx-size", default_value_t = 512)]
    pub ctx_size: usize,
    /// Most chunks of the text to evaluate.
    #[arg(long, default_value_t = 16)]
    pub chunks: usize,
    /// Tokens generated to measure generation speed (0: skip).
    #[arg(long, default_value_t = 64)]
    pub gen_tokens: usize,
    /// Keep every candidate file in the report folder, not only the chosen one.
    #[arg(long)]
    pub keep_all: bool,
    /// Compute threads (default: the physical cores).
    #[arg(short = 't', long)]
    pub threads: Option<usize>,
}

/// One measured variant.
#[derive(Clone, Debug, Serialize)]
pub struct Variant {
    /// File type (or "base").
    pub ftype: String,
    /// File size in bytes.
    pub bytes: u64,
    /// Bits per weight of the tensor data.
    pub bpw: f64,
    /// Perplexity over the scored positions.
    pub ppl: f64,
    /// Mean KL divergence against the base.
    pub kld_mean: f64,
    /// 99th percentile of the per-token KL divergence.
    pub kld_p99: f64,
    /// Fraction of positions with the base's most likely token on top.
    pub same_top: f64,
    /// Generated tokens per second (0 when not measured).
    pub tg_tps: f64,
    /// Whether the mean KLD is within the budget.
    pub within_budget: bool,
}

impl Variant {
    /// Type, size, bits per weight, PPL, mean and 99% KLD, top-token agreement, speed.
    fn cells(&self) -> [String; 8] {
        [
            format!("{:8}", self.ftype),
            format!("{:>10}", human_bytes(self.bytes)),
            format!("{:5.2}", self.bpw),
            format!("{:8.4}", self.ppl),
            format!("{:.5}", self.kld_mean),
            format!("{:.4}", self.kld_p99),
            format!("{:5.1}%", 100.0 * self.same_top),
            format!("{:6.1}", self.tg_tps),
        ]
    }
}

/// The whole report.
#[derive(Debug, Serialize)]
struct Report {
    model: String,
    text: String,
    max_kld: f64,
    ctx_size: usize,
    chunks: usize,
    threads: usize,
    imatrix: Option<String>,
    base: Variant,
    variants: Vec<Variant>,
    chosen: Option<String>,
    output: Option<String>,
}

/// Run the command.
pub fn run(args: OptimizeArgs) -> Result<()> {
    if !(args.max_kld.is_finite() && args.max_kld > 0.0) {
        bail!("--max-kld must be a positive number (got {})", args.max_kld);
    }
    let threads = args.threads.unwrap_or_else(default_threads);
    if threads == 0 || args.chunks == 0 {
        bail!("--threads and --chunks must be positive");
    }
    let mut types = Vec::new();
    for t in &args.types {
        let ft = FileType::from_name(t.trim())
            .with_context(|| format!("--types: unknown file type {t:?}"))?;
        if !has_quantizer(ft.default_type()) {
            bail!("--types: perch cannot make {ft} files (no quantizer for its tensors)");
        }
        types.push(ft);
    }
    if types.is_empty() {
        bail!("--types: give at least one file type");
    }
    let text = read_text(&args.file)?;
    let imatrix = match &args.imatrix {
        Some(p) => Some((Arc::new(Imatrix::read(p)?), p.clone())),
        None => None,
    };
    std::fs::create_dir_all(&args.report_dir)
        .with_context(|| format!("cannot create {}", args.report_dir.display()))?;
    let stem = args
        .model
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .context("starting the compute threads")?;
    let cfg = PerplexityConfig {
        n_ctx: args.ctx_size,
        n_chunks: Some(args.chunks),
        n_batch: args.ctx_size,
        threads,
    };

    let bar =
        ProgressBar::with_draw_target(Some(types.len() as u64 + 1), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
            .expect("valid progress template"),
    );

    // The base.
    bar.set_message("base: saving its distributions");
    let (model, bos, tokens) = load_with_text(&args.model, &text)?;
    let base_file = args.report_dir.join("base.kld");
    let base_ppl = perplexity(&model, &tokens, bos, &cfg, Some(&base_file), |_, _, _| {})
        .context("cannot evaluate the base model")?;
    let base = Variant {
        ftype: "base".into(),
        bytes: std::fs::metadata(&args.model).map_or(0, |m| m.len()),
        bpw: bits_per_weight(&model),
        ppl: base_ppl.nll.ppl(),
        kld_mean: 0.0,
        kld_p99: 0.0,
        same_top: 1.0,
        tg_tps: gen_speed(&model, threads, args.gen_tokens)?,
        within_budget: true,
    };
    drop(model);
    bar.inc(1);

    let mut variants = Vec::new();
    let mut files = Vec::new();
    for ft in &types {
        bar.set_message(format!("{ft}: quantizing"));
        let path = args.report_dir.join(format!("{stem}-{}.gguf", ft.name()));
        let opts = QuantizeOptions {
            allow_requantize: true,
            imatrix: imatrix.clone(),
            ..QuantizeOptions::new(*ft)
        };
        let q = pool
            .install(|| quantize_file(&args.model, &path, &opts, |_| {}))
            .with_context(|| format!("cannot quantize to {ft}"))?;
        bar.set_message(format!("{ft}: measuring"));
        let m = Arc::new(Model::open(&path).with_context(|| format!("cannot load {ft}"))?);
        let k = kl_divergence(&m, &base_file, bos, &cfg, |_, _, _| {})
            .with_context(|| format!("cannot compare {ft} with the base"))?;
        let v = Variant {
            ftype: ft.name().to_string(),
            bytes: q.file_out,
            bpw: q.bpw_out(),
            ppl: k.nll.ppl(),
            kld_mean: k.kld_mean,
            kld_p99: k.kld_p99,
            same_top: k.same_top,
            tg_tps: gen_speed(&m, threads, args.gen_tokens)?,
            within_budget: k.kld_mean <= args.max_kld,
        };
        bar.println(format!(
            "{}{}",
            v.cells().join("  "),
            if v.within_budget { "" } else { "  over budget" }
        ));
        variants.push(v);
        files.push(path);
        bar.inc(1);
    }
    bar.finish_and_clear();
    std::fs::remove_file(&base_file).ok();

    let chosen = variants
        .iter()
        .enumerate()
        .filter(|(_, v)| v.within_budget)
        .min_by_key(|(_, v)| v.bytes)
        .map(|(i, _)| i);
    let output = chosen.map(|i| {
        args.output.clone().unwrap_or_else(|| {
            args.model
                .with_file_name(format!("{stem}-{}.gguf", variants[i].ftype))
        })
    });
    if let (Some(i), Some(out)) = (chosen, &output) {
        move_file(&files[i], out)?;
    }
    for (i, f) in files.iter().enumerate() {
        if Some(i) != chosen && !args.keep_all {
            std::fs::remove_file(f).ok();
        }
    }
    let report = Report {
        model: args.model.display().to_string(),
        text: args.file.display().to_string(),
        max_kld: args.max_kld,
        ctx_size: args.ctx_size,
        chunks: args.chunks,
        threads,
        imatrix: args.imatrix.as_ref().map(|p| p.display().to_string()),
        base,
        chosen: chosen.map(|i| variants[i].ftype.clone()),
        output: output.as_ref().map(|p| p.display().to_string()),
        variants,
    };
    write_reports(&args.report_dir, &report)?;
    match (&report.chosen, &output) {
        (Some(ft), Some(out)) => {
            eprintln!(
                "chosen: {ft} (the smallest within mean KLD {}); report in {}",
                args.max_kld,
                args.report_dir.display()
            );
            println!("{}", out.display());
            Ok(())
        }
        _ => {
            let best = report
                .variants
                .iter()
                .min_by(|a, b| a.kld_mean.total_cmp(&b.kld_mean))
                .expect("at least one type");
            bail!(
                "no candidate is within mean KLD {} (the best, {}, has {:.5}); report in {}",
                args.max_kld,
                best.ftype,
                best.kld_mean,
                args.report_dir.display()
            )
        }
    }
}

/// Bits per weight of a loaded model's tensor data.
fn bits_per_weight(model: &Model) -> f64 {
    let t = model.file().tensors();
    let bytes: u64 = t.iter().map(|t| t.n_bytes).sum();
    let n: u64 = t.iter().map(|t| t.n_elements).sum();
    if n == 0 {
        0.0
    } else {
        bytes as f64 * 8.0 / n as f64
    }
}

/// Generation speed: the better of two runs of `n` single-token steps.
fn gen_speed(model: &Arc<Model>, threads: usize, n: usize) -> Result<f64> {
    if n == 0 {
        return Ok(0.0);
    }
    let a = crate::bench::time_test(model, threads, 1, false, n)?;
    let b = crate::bench::time_test(model, threads, 1, false, n)?;
    Ok(a.max(b))
}

/// Moves `from` to `to`: a rename, or a copy to a temporary name beside `to` and a rename
/// when they are on different file systems.
fn move_file(from: &Path, to: &Path) -> Result<()> {
    if std::fs::rename(from, to).is_ok() {
        return Ok(());
    }
    let mut name = to.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp{}", std::process::id()));
    let tmp = to.with_file_name(name);
    let r = std::fs::copy(from, &tmp).and_then(|_| std::fs::rename(&tmp, to));
    if let Err(e) = r {
        std::fs::remove_file(&tmp).ok();
        return Err(e).with_context(|| format!("cannot write {}", to.display()));
    }
    std::fs::remove_file(from).ok();
    Ok(())
}

fn write_reports(dir: &Path, r: &Report) -> Result<()> {
    let write = |name: &str, body: String| -> Result<()> {
        let path = dir.join(name);
        let tmp = dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, body)
            .and_then(|_| std::fs::rename(&tmp, &path))
            .with_context(|| format!("cannot write {}", path.display()))
    };
    write("report.json", serde_json::to_string_pretty(r)? + "\n")?;
    write("report.md", markdown(r))?;
    write("chart.svg", chart(r))?;
    Ok(())
}

fn markdown(r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# perch optimize: {}\n", r.model);
    let _ = writeln!(
        s,
        "Text `{}`, {} chunks of {} tokens, {} threads{}. Budget: mean KLD ≤ {}.\n",
        r.text,
        r.chunks,
        r.ctx_size,
        r.threads,
        r.imatrix
            .as_ref()
            .map(|p| format!(", imatrix `{p}`"))
            .unwrap_or_default(),
        r.max_kld
    );
    let _ = writeln!(
        s,
        "| type | size | bits/weight | PPL | mean KLD | 99% KLD | same top | gen t/s | |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|---|");
    for v in std::iter::once(&r.base).chain(&r.variants) {
        let mark = if r.chosen.as_deref() == Some(&v.ftype) {
            "**chosen**"
        } else if v.within_budget {
            ""
        } else {
            "over budget"
        };
        let _ = writeln!(s, "| {} | {mark} |", v.cells().join(" | "));
    }
    match &r.chosen {
        Some(c) => {
            let _ = writeln!(
                s,
                "\nChosen: **{c}**, written to `{}`.",
                r.output.as_deref().unwrap_or("")
            );
        }
        None => {
            let _ = writeln!(s, "\nNo candidate is within the budget.");
        }
    }
    s
}

/// Size (MiB, x) against mean KLD (y, logarithmic), one labelled point per type.
fn chart(r: &Report) -> String {
    let (w, h, ml, mr, mt, mb) = (720.0, 440.0, 70.0, 20.0, 30.0, 50.0);
    let pts: Vec<(f64, f64, &str, bool)> = r
        .variants
        .iter()
        .map(|v| {
            (
                v.bytes as f64 / (1 << 20) as f64,
                v.kld_mean.max(1e-6),
                v.ftype.as_str(),
                r.chosen.as_deref() == Some(v.ftype.as_str()),
            )
        })
        .collect();
    let xmax = pts.iter().map(|p| p.0).fold(1.0, f64::max) * 1.08;
    let lo = pts
        .iter()
        .map(|p| p.1)
        .chain([r.max_kld])
        .fold(f64::MAX, f64::min)
        .log10()
        .floor();
    let hi = pts
        .iter()
        .map(|p| p.1)
        .chain([r.max_kld])
        .fold(f64::MIN, f64::max)
        .log10()
        .ceil()
        .max(lo + 1.0);
    let x = |v: f64| ml + v / xmax * (w - ml - mr);
    let y = |v: f64| mt + (hi - v.log10()) / (hi - lo) * (h - mt - mb);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="18" text-anchor="middle" font-size="14">{} — size against mean KL divergence</text>"#,
        w / 2.0,
        xml(&r.model)
    );
    // Axes, decade grid lines, size ticks.
    let _ = writeln!(
        s,
        r#"<path d="M{ml},{mt} V{} H{}" stroke="black" fill="none"/>"#,
        h - mb,
        w - mr
    );
    let mut d = lo;
    while d <= hi {
        let yy = y(10f64.powf(d));
        let _ = writeln!(
            s,
            r##"<line x1="{ml}" x2="{}" y1="{yy}" y2="{yy}" stroke="#ddd"/><text x="{}" y="{}" text-anchor="end">1e{d}</text>"##,
            w - mr,
            ml - 6.0,
            yy + 4.0
        );
        d += 1.0;
    }
    for i in 0..=5 {
        let v = xmax * f64::from(i) / 5.0;
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle">{v:.0}</text>"#,
            x(v),
            h - mb + 18.0
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">file size (MiB)</text>"#,
        (ml + w - mr) / 2.0,
        h - 10.0
    );
    let _ = writeln!(
        s,
        r#"<text transform="translate(16,{}) rotate(-90)" text-anchor="middle">mean KLD (nats)</text>"#,
        (mt + h - mb) / 2.0
    );
    let by = y(r.max_kld);
    let _ = writeln!(
        s,
        r##"<line x1="{ml}" x2="{}" y1="{by}" y2="{by}" stroke="#c33" stroke-dasharray="6 4"/><text x="{}" y="{}" fill="#c33" text-anchor="end">budget {}</text>"##,
        w - mr,
        w - mr - 4.0,
        by - 4.0,
        r.max_kld
    );
    for (px, py, label, chosen) in pts {
        let (cx, cy) = (x(px), y(py));
        let color = if chosen { "#c33" } else { "#2a6fdb" };
        let _ = writeln!(
            s,
            r#"<circle cx="{cx:.1}" cy="{cy:.1}" r="{}" fill="{color}"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            if chosen { 6 } else { 4 },
            cx + 7.0,
            cy - 5.0,
            xml(label)
        );
    }
    s.push_str("</svg>\n");
    s
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
