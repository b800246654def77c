//! `cargo xtask bench speed`: perch's prompt and generation speed beside llama.cpp's, measured
//! in the same run on the same file with the same thread counts.
//!
//! perch is measured by `perch bench` (release build), llama.cpp by the peer's `llama-bench`
//! (built by `../shared/tools/peer-llama-cpp.sh`; found through `--peer-bin`,
//! `$PERCH_PEER_BIN`, or the script's default cache folder). For each thread count the two
//! run back to back, so drift on a shared machine touches both alike. llama-bench runs with
//! `--repack 0`: ggml's extra buffer types (AMX) crash on these machines, and perch's kernels
//! read the file's own layout too.
//!
//! Results: a markdown table on stdout with the ratio perch / llama.cpp per test, and the same
//! table, the measurements as JSON and a bar chart (SVG) under `results/speed-<time>.*`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::chart;

/// Options of `cargo xtask bench speed`.
#[derive(clap::Args, Debug)]
pub struct SpeedArgs {
    /// The GGUF model (default: the SmolLM2 Q4_1 fixture).
    #[arg(long, short = 'm')]
    pub model: Option<PathBuf>,
    /// Prompt length to time (0: none).
    #[arg(short = 'p', default_value_t = 512)]
    pub n_prompt: usize,
    /// Generation length to time (0: none).
    #[arg(short = 'n', default_value_t = 128)]
    pub n_gen: usize,
    /// Thread counts (comma-separated).
    #[arg(short = 't', long, value_delimiter = ',', default_value = "2")]
    pub threads: Vec<usize>,
    /// Timed repetitions per test.
    #[arg(short = 'r', default_value_t = 5)]
    pub repetitions: usize,
    /// Also run llama.cpp's llama-bench and print ratios (`--vs llama.cpp`).
    #[arg(long)]
    pub vs: Option<String>,
    /// The folder holding the peer's llama-bench.
    #[arg(long, env = "PERCH_PEER_BIN")]
    pub peer_bin: Option<PathBuf>,
}

/// One test's result from either tool.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Measured {
    threads: usize,
    test: String,
    avg_ts: f64,
    stddev_ts: f64,
}

/// A row of the comparison.
#[derive(Debug, Serialize)]
struct Row {
    threads: usize,
    test: String,
    perch: Measured,
    llama_cpp: Option<Measured>,
    ratio: Option<f64>,
}

/// Run `cargo xtask bench speed`.
pub fn speed(args: SpeedArgs) -> Result<()> {
    let model = match &args.model {
        Some(m) => m.clone(),
        None => perch_fixtures::smollm2_q4_1(),
    };
    if !model.is_file() {
        bail!("no model at {}", model.display());
    }
    let peer = match args.vs.as_deref() {
        None => None,
        Some("llama.cpp") => Some(find_llama_bench(args.peer_bin.as_deref())?),
        Some(other) => bail!("--vs takes llama.cpp, not {other:?}"),
    };
    let perch = build_perch()?;

    let bar = ProgressBar::with_draw_target(
        Some((args.threads.len() * (1 + usize::from(peer.is_some()))) as u64),
        ProgressDrawTarget::stderr(),
    );
    bar.set_style(ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}")?);
    let mut rows = Vec::new();
    for &t in &args.threads {
        bar.set_message(format!("perch, {t} threads"));
        let ours = run_perch(&perch, &model, &args, t)?;
        bar.inc(1);
        let theirs = match &peer {
            Some(bin) => {
                bar.set_message(format!("llama.cpp, {t} threads"));
                let m = run_llama_bench(bin, &model, &args, t)?;
                bar.inc(1);
                Some(m)
            }
            None => None,
        };
        for m in ours {
            let other = theirs
                .as_ref()
                .and_then(|v| v.iter().find(|o| o.test == m.test).cloned());
            rows.push(Row {
                threads: t,
                test: m.test.clone(),
                ratio: other.as_ref().map(|o| m.avg_ts / o.avg_ts),
                perch: m,
                llama_cpp: other,
            });
        }
    }
    bar.finish_and_clear();

    let table = table(&model, &rows);
    println!("{table}");
    let json = serde_json::json!({"model": model.display().to_string(), "rows": rows});
    crate::results::save("speed", &json, &table, &chart(&model, &rows)?)?;
    Ok(())
}

fn table(model: &Path, rows: &[Row]) -> String {
    let name = model
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let mut s = format!(
        "{name}\n\n| threads | test | perch t/s | llama.cpp t/s | perch / llama.cpp |\n| ---: | ---: | ---: | ---: | ---: |\n"
    );
    for r in rows {
        let peer = r.llama_cpp.as_ref().map_or("-".to_string(), |m| {
            format!("{:.2} ± {:.2}", m.avg_ts, m.stddev_ts)
        });
        let ratio = r.ratio.map_or("-".to_string(), |x| format!("{x:.2}"));
        s.push_str(&format!(
            "| {} | {} | {:.2} ± {:.2} | {peer} | {ratio} |\n",
            r.threads, r.test, r.perch.avg_ts, r.perch.stddev_ts
        ));
    }
    s
}

/// Grouped bars: one panel per test (pp, tg), a group per thread count, perch beside
/// llama.cpp.
fn chart(model: &Path, rows: &[Row]) -> Result<String> {
    let mut tests: Vec<&str> = Vec::new();
    for r in rows {
        if !tests.contains(&r.test.as_str()) {
            tests.push(&r.test);
        }
    }
    let panels: Vec<chart::BarPanel> = tests
        .iter()
        .map(|test| {
            let rs: Vec<&Row> = rows.iter().filter(|r| r.test == *test).collect();
            let mut series = vec![chart::Bars {
                name: "perch".into(),
                color: 0,
                values: rs.iter().map(|r| Some(r.perch.avg_ts)).collect(),
            }];
            if rs.iter().any(|r| r.llama_cpp.is_some()) {
                series.push(chart::Bars {
                    name: "llama.cpp".into(),
                    color: 1,
                    values: rs
                        .iter()
                        .map(|r| r.llama_cpp.as_ref().map(|m| m.avg_ts))
                        .collect(),
                });
            }
            chart::BarPanel {
                title: (*test).to_string(),
                y_label: "tokens/s".into(),
                groups: rs
                    .iter()
                    .map(|r| match r.threads {
                        1 => "1 thread".to_string(),
                        n => format!("{n} threads"),
                    })
                    .collect(),
                series,
                rules: Vec::new(),
            }
        })
        .collect();
    let name = model.file_name().unwrap_or_default().to_string_lossy();
    chart::bars(&format!("{name}: tokens/s"), &panels)
}

fn run_perch(perch: &Path, model: &Path, a: &SpeedArgs, threads: usize) -> Result<Vec<Measured>> {
    let out = Command::new(perch)
        .arg("bench")
        .arg(model)
        .args(["-p", &a.n_prompt.to_string(), "-n", &a.n_gen.to_string()])
        .args([
            "-t",
            &threads.to_string(),
            "-r",
            &a.repetitions.to_string(),
            "--json",
        ])
        .output()
        .context("running perch bench")?;
    if !out.status.success() {
        bail!(
            "perch bench failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    String::from_utf8(out.stdout)?
        .lines()
        .map(|l| serde_json::from_str(l).with_context(|| format!("perch bench printed {l:?}")))
        .collect()
}

/// The fields of llama-bench's JSON output that matter here.
#[derive(Deserialize)]
struct LlamaBenchRow {
    n_prompt: usize,
    n_gen: usize,
    n_threads: usize,
    avg_ts: f64,
    stddev_ts: f64,
}

fn run_llama_bench(
    bin: &Path,
    model: &Path,
    a: &SpeedArgs,
    threads: usize,
) -> Result<Vec<Measured>> {
    let out = Command::new(bin)
        .arg("-m")
        .arg(model)
        .args(["-p", &a.n_prompt.to_string(), "-n", &a.n_gen.to_string()])
        .args(["-t", &threads.to_string(), "-r", &a.repetitions.to_string()])
        .args(["--repack", "0", "-o", "json"])
        .output()
        .with_context(|| format!("running {}", bin.display()))?;
    if !out.status.success() {
        bail!(
            "llama-bench failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let rows: Vec<LlamaBenchRow> =
        serde_json::from_slice(&out.stdout).context("reading llama-bench's JSON")?;
    Ok(rows
        .into_iter()
        .filter(|r| r.n_prompt > 0 || r.n_gen > 0)
        .map(|r| Measured {
            threads: r.n_threads,
            test: if r.n_gen == 0 {
                format!("pp{}", r.n_prompt)
            } else {
                format!("tg{}", r.n_gen)
            },
            avg_ts: r.avg_ts,
            stddev_ts: r.stddev_ts,
        })
        .collect())
}

/// Builds perch in release and returns the binary's path.
pub fn build_perch() -> Result<PathBuf> {
    let root = perch_fixtures::workspace_root();
    eprintln!("==> cargo build --release -p perch-cli");
    let status = Command::new(env!("CARGO"))
        .args(["build", "--release", "--quiet", "-p", "perch-cli"])
        .current_dir(&root)
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("building perch failed");
    }
    Ok(target_dir().join("release/perch"))
}

/// Cargo's target folder: `$CARGO_TARGET_DIR`, else `target/` at the workspace root.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| perch_fixtures::workspace_root().join("target"))
}

/// llama-bench from `--peer-bin`, `$PERCH_PEER_BIN`, or the peer script's default folder.
fn find_llama_bench(dir: Option<&Path>) -> Result<PathBuf> {
    find_peer_tool(dir, "llama-bench")
}

/// One of the peer's tools from `--peer-bin`, `$PERCH_PEER_BIN`, or the peer script's default
/// folder.
pub fn find_peer_tool(dir: Option<&Path>, tool: &str) -> Result<PathBuf> {
    let default = std::env::var_os("HOME").map(|h| {
        PathBuf::from(h)
            .join(".cache/perch-peer/llama_cpp_python-0.3.36/vendor/llama.cpp/build/bin")
    });
    let dir = dir
        .map(Path::to_path_buf)
        .or(default)
        .context("no --peer-bin and no HOME")?;
    let bin = dir.join(tool);
    if !bin.is_file() {
        bail!(
            "{tool} not found in {}: build the peer with ../shared/tools/peer-llama-cpp.sh \
             (20-30 minutes) or pass --peer-bin",
            dir.display()
        );
    }
    Ok(bin)
}
