//! `cargo xtask bench quality`: the quality of each quantization type, perch's quantizer beside
//! llama-quantize's on the same input, measured with the same tool.
//!
//! 1. The base is the model dequantized to F32 by `perch quantize ... F32 --allow-requantize`
//!    (bit-exact dequantization, so it is the same file llama-quantize would make).
//! 2. `perch perplexity BASE -f TEXT --kl-divergence-base` saves the base's distributions.
//! 3. For each type, `perch quantize BASE OUT TYPE` (and, with `--vs llama.cpp`, the peer's
//!    `llama-quantize BASE OUT TYPE`), then `perch perplexity OUT --kl-divergence BASE.kld`
//!    for both files: size, bits per weight, perplexity, mean and 99th-percentile KLD and
//!    top-token agreement.
//!
//! Results: a markdown table on stdout and under `results/quality-<time>.{md,json,svg}` (the
//! chart: file size against mean KLD per type, for both quantizers).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

const DEFAULT_TYPES: &str = "Q8_0,Q6_K,Q5_K_M,Q5_K_S,Q5_1,Q5_0,Q4_K_M,Q4_K_S,Q4_1,IQ4_XS,IQ4_NL,\
Q4_0,Q3_K_L,Q3_K_M,Q3_K_S,Q2_K,TQ2_0,TQ1_0";

/// Options of `cargo xtask bench quality`.
#[derive(clap::Args, Debug)]
pub struct QualityArgs {
    /// The model (default: the SmolLM2 Q4_1 fixture, dequantized to F32 as the base).
    #[arg(long, short = 'm')]
    pub model: Option<PathBuf>,
    /// The evaluation text.
    #[arg(long, short = 'f', default_value = "/usr/share/common-licenses/GPL-3")]
    pub text: PathBuf,
    /// File types, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = DEFAULT_TYPES)]
    pub types: Vec<String>,
    /// Tokens per chunk.
    #[arg(short = 'c', long, default_value_t = 512)]
    pub ctx_size: usize,
    /// Chunks of the text to evaluate.
    #[arg(long, default_value_t = 8)]
    pub chunks: usize,
    /// An importance matrix given to both quantizers.
    #[arg(long)]
    pub imatrix: Option<PathBuf>,
    /// Threads for quantizing and evaluating.
    #[arg(short = 't', long, default_value_t = 2)]
    pub threads: usize,
    /// Also quantize with llama.cpp's llama-quantize (`--vs llama.cpp`).
    #[arg(long)]
    pub vs: Option<String>,
    /// The folder holding the peer's llama-quantize.
    #[arg(long, env = "PERCH_PEER_BIN")]
    pub peer_bin: Option<PathBuf>,
}

/// One quantized file's measurements.
#[derive(Clone, Debug, Serialize)]
struct Quality {
    bytes: u64,
    bpw: f64,
    ppl: f64,
    kld_mean: f64,
    kld_p99: f64,
    same_top: f64,
}

#[derive(Debug, Serialize)]
struct Row {
    ftype: String,
    perch: Quality,
    llama_cpp: Option<Quality>,
}

/// Run `cargo xtask bench quality`.
pub fn quality(args: QualityArgs) -> Result<()> {
    let model = match &args.model {
        Some(m) => m.clone(),
        None => perch_fixtures::smollm2_q4_1(),
    };
    if !model.is_file() {
        bail!("no model at {}", model.display());
    }
    if !args.text.is_file() {
        bail!("no text at {}", args.text.display());
    }
    let peer = match args.vs.as_deref() {
        None => None,
        Some("llama.cpp") => Some(crate::bench::find_peer_tool(
            args.peer_bin.as_deref(),
            "llama-quantize",
        )?),
        Some(other) => bail!("--vs takes llama.cpp, not {other:?}"),
    };
    let perch = crate::bench::build_perch()?;
    let work = tempfile::tempdir().context("creating a work folder")?;
    let w = work.path();
    let t = args.threads.to_string();
    let (c, n) = (args.ctx_size.to_string(), args.chunks.to_string());

    let bar = ProgressBar::with_draw_target(
        Some((args.types.len() * (1 + usize::from(peer.is_some())) + 1) as u64),
        ProgressDrawTarget::stderr(),
    );
    bar.set_style(ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}",
    )?);
    bar.set_message("base: F32 and its distributions");
    let base = w.join("base-f32.gguf");
    run(Command::new(&perch)
        .args(["quantize", "--allow-requantize", "-t", &t])
        .arg(&model)
        .arg(&base)
        .arg("F32"))?;
    let kld = w.join("base.kld");
    run(Command::new(&perch)
        .arg("perplexity")
        .arg(&base)
        .arg("-f")
        .arg(&args.text)
        .args(["-c", &c, "--chunks", &n, "-t", &t, "--kl-divergence-base"])
        .arg(&kld))?;
    bar.inc(1);

    let measure = |file: &Path| -> Result<Quality> {
        let out = run(Command::new(&perch)
            .arg("perplexity")
            .arg(file)
            .args(["-t", &t, "--kl-divergence"])
            .arg(&kld))?;
        let field = |label: &str| -> Result<f64> {
            out.lines()
                .find(|l| l.starts_with(label))
                .and_then(|l| l.split(':').nth(1))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .with_context(|| format!("no {label} in perch perplexity's output:\n{out}"))
        };
        let (bytes, bpw) = size_and_bpw(file)?;
        Ok(Quality {
            bytes,
            bpw,
            ppl: field("Mean PPL(Q)")?,
            kld_mean: field("Mean KLD")?,
            kld_p99: field("99.0% KLD")?,
            same_top: field("Same top token")? / 100.0,
        })
    };

    let mut rows = Vec::new();
    for ft in &args.types {
        bar.set_message(format!("{ft}: perch"));
        let ours = w.join(format!("perch-{ft}.gguf"));
        let mut cmd = Command::new(&perch);
        cmd.args(["quantize", "--allow-requantize", "-t", &t]);
        if let Some(im) = &args.imatrix {
            cmd.arg("--imatrix").arg(im);
        }
        run(cmd.arg(&base).arg(&ours).arg(ft))?;
        let q = measure(&ours)?;
        std::fs::remove_file(&ours).ok();
        bar.inc(1);
        let theirs = match &peer {
            Some(bin) => {
                bar.set_message(format!("{ft}: llama-quantize"));
                let out = w.join(format!("peer-{ft}.gguf"));
                let mut cmd = Command::new(bin);
                if let Some(im) = &args.imatrix {
                    cmd.arg("--imatrix").arg(im);
                }
                run(cmd.arg(&base).arg(&out).arg(ft).arg(&t))?;
                let m = measure(&out)?;
                std::fs::remove_file(&out).ok();
                bar.inc(1);
                Some(m)
            }
            None => None,
        };
        bar.println(format!(
            "{ft:8} perch KLD {:.5}{}",
            q.kld_mean,
            theirs
                .as_ref()
                .map(|m| format!("  llama.cpp KLD {:.5}", m.kld_mean))
                .unwrap_or_default()
        ));
        rows.push(Row {
            ftype: ft.clone(),
            perch: q,
            llama_cpp: theirs,
        });
    }
    bar.finish_and_clear();

    let table = table(&model, &args, &rows);
    println!("{table}");
    let json = serde_json::json!({
        "model": model.display().to_string(),
        "text": args.text.display().to_string(),
        "ctx_size": args.ctx_size,
        "chunks": args.chunks,
        "imatrix": args.imatrix.as_ref().map(|p| p.display().to_string()),
        "rows": rows,
    });
    crate::results::save("quality", &json, &table, &chart(&model, &rows)?)?;
    Ok(())
}

/// Runs a command and returns its stdout; a failure is an error with its stderr.
pub fn run(cmd: &mut Command) -> Result<String> {
    let o = cmd
        .output()
        .with_context(|| format!("running {:?}", cmd.get_program()))?;
    if !o.status.success() {
        bail!(
            "{:?} failed: {}",
            cmd,
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

/// File size and bits per weight of the tensor data.
fn size_and_bpw(file: &Path) -> Result<(u64, f64)> {
    let f = perch_gguf::GgufFile::open(file)?;
    let bytes: u64 = f.tensors().iter().map(|t| t.n_bytes).sum();
    let n: u64 = f.tensors().iter().map(|t| t.n_elements).sum();
    Ok((f.len(), bytes as f64 * 8.0 / n.max(1) as f64))
}

/// Size (MiB) against mean KLD (log scale), one labelled point per type and quantizer.
fn chart(model: &Path, rows: &[Row]) -> Result<String> {
    let point = |ft: &str, q: &Quality| crate::chart::Point {
        x: q.bytes as f64 / (1 << 20) as f64,
        y: q.kld_mean,
        label: ft.to_string(),
    };
    let mut series = vec![(
        "perch".to_string(),
        rows.iter().map(|r| point(&r.ftype, &r.perch)).collect(),
    )];
    if rows.iter().any(|r| r.llama_cpp.is_some()) {
        series.push((
            "llama-quantize".to_string(),
            rows.iter()
                .filter_map(|r| r.llama_cpp.as_ref().map(|q| point(&r.ftype, q)))
                .collect(),
        ));
    }
    let name = model.file_name().unwrap_or_default().to_string_lossy();
    crate::chart::scatter(
        &format!("{name}: file size against mean KL divergence"),
        "file size (MiB)",
        "mean KLD (nats)",
        &series,
    )
}

fn table(model: &Path, args: &QualityArgs, rows: &[Row]) -> String {
    let mut s = format!(
        "Quality of {} (dequantized to F32 as the base), {} chunks of {} tokens of {}{}; \
         KLD in nats, measured by perch perplexity for both quantizers.\n\n",
        model.file_name().unwrap_or_default().to_string_lossy(),
        args.chunks,
        args.ctx_size,
        args.text.display(),
        args.imatrix
            .as_ref()
            .map(|p| format!(", imatrix {}", p.display()))
            .unwrap_or_default()
    );
    let peer = rows.iter().any(|r| r.llama_cpp.is_some());
    s.push_str("| type | size MiB | bpw | PPL | mean KLD | 99% KLD | same top |");
    if peer {
        s.push_str(" llama.cpp size MiB | bpw | PPL | mean KLD | 99% KLD | same top | KLD perch/llama.cpp |");
    }
    s.push('\n');
    s.push_str("|---|---:|---:|---:|---:|---:|---:|");
    if peer {
        s.push_str("---:|---:|---:|---:|---:|---:|---:|");
    }
    s.push('\n');
    let cells = |q: &Quality| {
        format!(
            " {:.1} | {:.2} | {:.4} | {:.5} | {:.4} | {:.2}% |",
            q.bytes as f64 / (1 << 20) as f64,
            q.bpw,
            q.ppl,
            q.kld_mean,
            q.kld_p99,
            100.0 * q.same_top
        )
    };
    for r in rows {
        s.push_str(&format!("| {} |{}", r.ftype, cells(&r.perch)));
        if let Some(l) = &r.llama_cpp {
            s.push_str(&cells(l));
            s.push_str(&format!(" {:.3} |", r.perch.kld_mean / l.kld_mean));
        }
        s.push('\n');
    }
    s
}
