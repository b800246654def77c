//! `cargo xtask bench kernels` and `cargo xtask bench bandwidth`: perch-quant's criterion
//! benchmarks (crates/perch-quant/benches/kernels.rs), read back from criterion's own results,
//! beside ggml's kernels on the same matrices (scripts/bench_ggml_kernels.sh, built against
//! the peer's libggml) with `--vs llama.cpp`.
//!
//! The tests, named alike on both sides:
//! - `dot/l1`, `dot/l1-cpu`: one 4096-element row dot product held in L1 (wall time, and the
//!   thread's CPU time, which stays meaningful on a machine shared with other work);
//! - `matvec/RxC/1t`, `1t-cpu`, `2t`: matrix × vector over a ~64 MiB weight matrix (past the
//!   last-level cache) on one and two threads.
//!
//! Throughput is GB/s of weight bytes (1 GB = 10⁹ bytes). `mem/read` (a SIMD sum over 256 MiB
//! on one and two threads) is the machine's read bandwidth, the ceiling of the matrix ×
//! vector numbers; `bench bandwidth` runs that group alone (`PERCH_BENCH_TYPES=none`), so both
//! subcommands use the one measurement. Per type, perch's benches and ggml's run back to back,
//! so drift on a shared machine touches both alike.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::SystemTime;

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::chart;

/// Criterion's timing knobs, passed to the bench binary.
#[derive(clap::Args, Debug, Clone)]
pub struct CriterionArgs {
    /// Seconds criterion measures each benchmark (the bench's default: 2).
    #[arg(long)]
    pub measurement_time: Option<f64>,
    /// Seconds criterion warms each benchmark up (the bench's default: 0.5).
    #[arg(long)]
    pub warm_up_time: Option<f64>,
}

/// Options of `cargo xtask bench kernels`.
#[derive(clap::Args, Debug)]
pub struct KernelsArgs {
    /// Weight types by ggml name, comma-separated (default: every type perch has a kernel
    /// for).
    #[arg(long, value_delimiter = ',')]
    pub types: Vec<String>,
    /// Also run ggml's kernels on the same matrices (`--vs llama.cpp`).
    #[arg(long)]
    pub vs: Option<String>,
    /// The peer llama.cpp tree whose build/bin holds libggml (default: the one
    /// `../shared/tools/peer-llama-cpp.sh` builds).
    #[arg(long, env = "LLAMA_DIR")]
    pub llama_dir: Option<PathBuf>,
    #[command(flatten)]
    pub criterion: CriterionArgs,
}

/// Options of `cargo xtask bench bandwidth`.
#[derive(clap::Args, Debug)]
pub struct BandwidthArgs {
    #[command(flatten)]
    pub criterion: CriterionArgs,
}

/// One measurement: GB/s of weight bytes, with criterion's confidence interval.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Rate {
    /// The estimate (criterion's typical: the slope, else the mean).
    pub gb_s: f64,
    /// The interval's low end (from the upper bound of the time).
    pub low: Option<f64>,
    /// The interval's high end.
    pub high: Option<f64>,
}

#[cfg(test)]
impl Rate {
    fn exact(gb_s: f64) -> Rate {
        Rate {
            gb_s,
            low: None,
            high: None,
        }
    }
}

/// A criterion result, keyed by weight type and test name.
#[derive(Debug, Default)]
struct Criterion {
    /// (type, test) → rate.
    kernels: BTreeMap<(String, String), Rate>,
    /// Threads → memory read rate.
    memory: BTreeMap<usize, Rate>,
}

/// The fields of criterion's `new/benchmark.json` used here.
#[derive(Deserialize)]
struct BenchmarkJson {
    group_id: String,
    function_id: Option<String>,
    value_str: Option<String>,
    throughput: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Interval {
    lower_bound: f64,
    upper_bound: f64,
}

#[derive(Deserialize)]
struct Estimate {
    confidence_interval: Interval,
    point_estimate: f64,
}

/// The fields of criterion's `new/estimates.json` used here (times in ns per iteration).
#[derive(Deserialize)]
struct EstimatesJson {
    mean: Estimate,
    slope: Option<Estimate>,
}

/// The test name of a criterion benchmark id, as the ggml script names it: `dot/l1`,
/// `matvec/16384x4096/1t`; or the memory bench's thread count.
enum Id {
    Kernel { ty: String, test: String },
    Memory { threads: usize },
}

fn classify(b: &BenchmarkJson) -> Option<Id> {
    let (kind, ty) = b.group_id.split_once('/').unwrap_or((&b.group_id, ""));
    let f = b.function_id.as_deref()?;
    match (kind, b.value_str.as_deref()) {
        ("mem", Some(v)) if f == "read" => Some(Id::Memory {
            threads: v.strip_suffix('t')?.parse().ok()?,
        }),
        ("dot", None) => Some(Id::Kernel {
            ty: ty.to_string(),
            test: format!("dot/{f}"),
        }),
        ("matvec", Some(v)) => Some(Id::Kernel {
            ty: ty.to_string(),
            test: format!("matvec/{f}/{v}"),
        }),
        _ => None,
    }
}

/// Reads the criterion results under `dir` written at or after `since`.
fn read_criterion(dir: &Path, since: SystemTime, into: &mut Criterion) -> Result<()> {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n == "new") {
                    read_one(&p, since, into)?;
                } else {
                    stack.push(p);
                }
            }
        }
    }
    Ok(())
}

fn read_one(new: &Path, since: SystemTime, into: &mut Criterion) -> Result<()> {
    let est_path = new.join("estimates.json");
    let fresh = std::fs::metadata(&est_path)
        .and_then(|m| m.modified())
        .is_ok_and(|t| t >= since);
    if !fresh {
        return Ok(());
    }
    let read = |p: &Path| -> Result<String> {
        std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))
    };
    let b: BenchmarkJson = serde_json::from_str(&read(&new.join("benchmark.json"))?)
        .with_context(|| format!("parsing {}/benchmark.json", new.display()))?;
    let e: EstimatesJson = serde_json::from_str(&read(&est_path)?)
        .with_context(|| format!("parsing {}", est_path.display()))?;
    let Some(bytes) = b.throughput.as_ref().and_then(|t| {
        t.get("Bytes")
            .or_else(|| t.get("BytesDecimal"))
            .and_then(serde_json::Value::as_u64)
    }) else {
        return Ok(());
    };
    let typical = e.slope.as_ref().unwrap_or(&e.mean);
    // bytes per ns = GB/s.
    let rate = Rate {
        gb_s: bytes as f64 / typical.point_estimate,
        low: Some(bytes as f64 / typical.confidence_interval.upper_bound),
        high: Some(bytes as f64 / typical.confidence_interval.lower_bound),
    };
    match classify(&b) {
        Some(Id::Kernel { ty, test }) => {
            into.kernels.insert((ty, test), rate);
        }
        Some(Id::Memory { threads }) => {
            into.memory.insert(threads, rate);
        }
        None => {}
    }
    Ok(())
}

/// Criterion's output folder: `$CRITERION_HOME`, else the target folder's `criterion/`.
fn criterion_dir() -> PathBuf {
    if let Some(h) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(h);
    }
    crate::bench::target_dir().join("criterion")
}

/// Runs perch-quant's kernels bench with `filter` (a criterion regex) for `types` (the
/// `PERCH_BENCH_TYPES` value), counting finished benchmarks on `bar`, and reads the results.
fn run_criterion(
    types: &str,
    filter: &str,
    c: &CriterionArgs,
    bar: &ProgressBar,
    into: &mut Criterion,
) -> Result<()> {
    let since = SystemTime::now();
    let root = perch_fixtures::workspace_root();
    let log = tempfile::NamedTempFile::new().context("creating a log file")?;
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args([
        "bench",
        "--quiet",
        "-p",
        "perch-quant",
        "--bench",
        "kernels",
        "--",
    ])
    .args(["--noplot", filter])
    .env("PERCH_BENCH_TYPES", types)
    .current_dir(&root)
    .stdout(Stdio::piped())
    .stderr(log.reopen()?);
    if let Some(t) = c.measurement_time {
        cmd.args(["--measurement-time", &t.to_string()]);
    }
    if let Some(t) = c.warm_up_time {
        cmd.args(["--warm-up-time", &t.to_string()]);
    }
    let mut child = cmd.spawn().context("running cargo bench")?;
    // Criterion prints `ID  time: [...]` (or the ID on a line of its own first) when a
    // benchmark finishes.
    let mut last_id = String::new();
    for line in BufReader::new(child.stdout.take().context("no stdout")?).lines() {
        let line = line?;
        let trimmed = line.trim_start();
        let indented = trimmed.len() != line.len();
        if !indented && !line.is_empty() {
            last_id = line.split_whitespace().next().unwrap_or("").to_string();
        }
        if trimmed.starts_with("time:") || (!indented && line.contains(" time: ")) {
            bar.inc(1);
            bar.set_message(format!("{last_id} done"));
        }
    }
    let status = child.wait()?;
    if !status.success() {
        let text = std::fs::read_to_string(log.path()).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(30).collect();
        bail!(
            "cargo bench -p perch-quant --bench kernels failed ({status}):\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    read_criterion(&criterion_dir(), since, into)
}

/// The weight types to measure: `requested` checked against perch-quant's table, or every
/// type with a kernel.
fn kernel_types(requested: &[String]) -> Result<Vec<String>> {
    use perch_quant::GgmlType;
    let has_kernel = |t: GgmlType| perch_quant::dot::scalar_fn(t).is_some();
    if requested.is_empty() {
        return Ok(perch_quant::types::ALL
            .iter()
            .copied()
            .filter(|t| has_kernel(*t))
            .map(|t| t.name().to_string())
            .collect());
    }
    requested
        .iter()
        .map(|n| {
            let t = GgmlType::from_name(n)
                .with_context(|| format!("--types: {n:?} is not a ggml type"))?;
            if !has_kernel(t) {
                bail!("--types: perch has no dot-product kernel for {}", t.name());
            }
            Ok(t.name().to_string())
        })
        .collect()
}

/// One line of `bench_ggml_kernels` output, as (type, test, GB/s):
/// `ggml q4_0     dot/l1        12.34 GB/s ...` or
/// `ggml q4_0     matvec 14912x4096 1t    3.21 GB/s ...`.
fn parse_ggml_line(line: &str) -> Option<(String, String, f64)> {
    let w: Vec<&str> = line.split_whitespace().collect();
    if w.first() != Some(&"ggml") || w.len() < 5 {
        return None;
    }
    let (test, value) = if w[2] == "matvec" {
        (format!("matvec/{}/{}", w.get(3)?, w.get(4)?), w.get(5)?)
    } else {
        (w[2].to_string(), &w[3])
    };
    Some((w[1].to_string(), test, value.parse().ok()?))
}

/// Runs scripts/bench_ggml_kernels.sh for one type; (test → GB/s).
fn run_ggml(llama_dir: &Path, ty: &str) -> Result<BTreeMap<String, f64>> {
    let root = perch_fixtures::workspace_root();
    let text = crate::quality::run(
        Command::new("sh")
            .arg(root.join("scripts/bench_ggml_kernels.sh"))
            .arg(ty)
            .env("LLAMA_DIR", llama_dir),
    )?;
    let map: BTreeMap<String, f64> = text
        .lines()
        .filter_map(parse_ggml_line)
        .filter(|(t, ..)| t == ty)
        .map(|(_, test, v)| (test, v))
        .collect();
    if map.is_empty() {
        bail!("scripts/bench_ggml_kernels.sh {ty} printed no measurement:\n{text}");
    }
    Ok(map)
}

fn default_llama_dir() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|h| {
        PathBuf::from(h).join(".cache/perch-peer/llama_cpp_python-0.3.36/vendor/llama.cpp")
    })
}

/// One row of the kernels table.
#[derive(Debug, Serialize)]
struct Row {
    ty: String,
    test: String,
    perch: Option<Rate>,
    ggml: Option<f64>,
    /// perch / ggml, for the same test on both.
    ratio: Option<f64>,
    /// perch's share of the memory read bandwidth at the same thread count (matvec only).
    of_memory: Option<f64>,
}

/// The memory bandwidth a test is bounded by: wall-time matrix tests only, at their thread
/// count.
fn memory_for(test: &str, memory: &BTreeMap<usize, Rate>) -> Option<f64> {
    // The `-cpu` variants count CPU time, the memory bench wall time: not comparable.
    let threads: usize = test
        .strip_prefix("matvec/")?
        .rsplit('/')
        .next()?
        .strip_suffix('t')?
        .parse()
        .ok()?;
    memory.get(&threads).map(|r| r.gb_s)
}

/// The order tests are listed in.
fn test_rank(test: &str) -> (u8, String) {
    let r = if test.starts_with("dot/") {
        0
    } else if test.starts_with("matvec/") {
        1
    } else {
        2
    };
    (r, test.to_string())
}

fn rows(
    types: &[String],
    perch: &Criterion,
    ggml: &BTreeMap<String, BTreeMap<String, f64>>,
) -> Vec<Row> {
    let mut out = Vec::new();
    for ty in types {
        let mut tests: Vec<String> = perch
            .kernels
            .keys()
            .filter(|(t, _)| t == ty)
            .map(|(_, test)| test.clone())
            .chain(ggml.get(ty).into_iter().flat_map(|m| m.keys().cloned()))
            .collect();
        tests.sort_by_key(|t| test_rank(t));
        tests.dedup();
        for test in tests {
            let p = perch.kernels.get(&(ty.clone(), test.clone())).cloned();
            let g = ggml.get(ty).and_then(|m| m.get(&test)).copied();
            let ratio = p.as_ref().zip(g).map(|(p, g)| p.gb_s / g);
            let of_memory = p
                .as_ref()
                .zip(memory_for(&test, &perch.memory))
                .map(|(p, m)| p.gb_s / m);
            out.push(Row {
                ty: ty.clone(),
                test,
                perch: p,
                ggml: g,
                ratio,
                of_memory,
            });
        }
    }
    out
}

fn memory_line(memory: &BTreeMap<usize, Rate>) -> String {
    if memory.is_empty() {
        return "Memory read bandwidth: not measured.".into();
    }
    let parts: Vec<String> = memory
        .iter()
        .map(|(t, r)| {
            format!(
                "{:.1} GB/s on {t} thread{}",
                r.gb_s,
                if *t == 1 { "" } else { "s" }
            )
        })
        .collect();
    format!("Memory read bandwidth (`mem/read`): {}.", parts.join(", "))
}

fn markdown(rows: &[Row], memory: &BTreeMap<usize, Rate>, simd: &str) -> String {
    let mut s = format!(
        "Kernel throughput in GB/s of weight bytes (perch-quant at SIMD level {simd}; ggml \
         from the peer's libggml-cpu). `-cpu`: the thread's CPU time instead of wall time. \
         perch / memory: a wall-time matrix × vector against `mem/read` on as many threads. \
         {}\n",
        memory_line(memory)
    );
    let mut ty = None;
    let f = |v: Option<f64>, digits: usize| v.map_or("-".to_string(), |v| format!("{v:.digits$}"));
    for r in rows {
        if ty != Some(&r.ty) {
            ty = Some(&r.ty);
            s.push_str(&format!(
                "\n### {}\n\n| test | perch GB/s | ggml GB/s | perch / ggml | perch / memory |\n\
                 |---|---:|---:|---:|---:|\n",
                r.ty
            ));
        }
        let perch = r
            .perch
            .as_ref()
            .map_or("-".to_string(), |p| match (p.low, p.high) {
                (Some(lo), Some(hi)) => format!("{:.2} [{lo:.2}, {hi:.2}]", p.gb_s),
                _ => format!("{:.2}", p.gb_s),
            });
        s.push_str(&format!(
            "| {} | {perch} | {} | {} | {} |\n",
            r.test,
            f(r.ggml, 2),
            f(r.ratio, 2),
            r.of_memory
                .map_or("-".into(), |m| format!("{:.0}%", m * 100.0)),
        ));
    }
    s
}

/// Two panels: the in-cache dot product, and matrix × vector on 1 and 2 threads against the
/// memory read bandwidth.
fn kernels_chart(types: &[String], rows: &[Row], memory: &BTreeMap<usize, Rate>) -> Result<String> {
    let find =
        |ty: &str, pred: &dyn Fn(&str) -> bool| rows.iter().find(|r| r.ty == ty && pred(&r.test));
    let peer = rows.iter().any(|r| r.ggml.is_some());
    // Colours: perch blue, ggml orange; the 2-thread bars in lighter shades.
    let series = |name: &str, pred: &dyn Fn(&str) -> bool, ggml: bool| chart::Bars {
        name: name.to_string(),
        color: usize::from(ggml) + if name.contains("2 threads") { 2 } else { 0 },
        values: types
            .iter()
            .map(|ty| {
                find(ty, pred).and_then(|r| {
                    if ggml {
                        r.ggml
                    } else {
                        r.perch.as_ref().map(|p| p.gb_s)
                    }
                })
            })
            .collect(),
    };
    let is_dot = |t: &str| t == "dot/l1";
    let is_1t = |t: &str| t.starts_with("matvec/") && t.ends_with("/1t");
    let is_2t = |t: &str| t.starts_with("matvec/") && t.ends_with("/2t");
    let mut dot = vec![series("perch", &is_dot, false)];
    let mut mv = vec![series("perch 1 thread", &is_1t, false)];
    if peer {
        dot.push(series("ggml", &is_dot, true));
        mv.push(series("ggml 1 thread", &is_1t, true));
    }
    mv.push(series("perch 2 threads", &is_2t, false));
    if peer {
        mv.push(series("ggml 2 threads", &is_2t, true));
    }
    let rules = memory
        .iter()
        .map(|(t, r)| (format!("memory read, {t}t"), r.gb_s))
        .collect();
    chart::bars(
        "Kernel throughput (GB/s of weight bytes)",
        &[
            chart::BarPanel {
                title: "dot product, one row in L1".into(),
                y_label: "GB/s".into(),
                groups: types.to_vec(),
                series: dot,
                rules: Vec::new(),
            },
            chart::BarPanel {
                title: "matrix × vector, ~64 MiB".into(),
                y_label: "GB/s".into(),
                groups: types.to_vec(),
                series: mv,
                rules,
            },
        ],
    )
}

fn bar(len: u64) -> Result<ProgressBar> {
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    bar.set_style(ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}",
    )?);
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    Ok(bar)
}

/// Run `cargo xtask bench kernels`.
pub fn kernels(args: KernelsArgs) -> Result<()> {
    let types = kernel_types(&args.types)?;
    let llama_dir = match args.vs.as_deref() {
        None => None,
        Some("llama.cpp") => {
            let dir = args
                .llama_dir
                .clone()
                .or_else(default_llama_dir)
                .context("no --llama-dir and no HOME")?;
            if !dir.join("build/bin").join("libggml-cpu.so").is_file() {
                bail!(
                    "no libggml-cpu.so in {}/build/bin: build the peer with \
                     ../shared/tools/peer-llama-cpp.sh or pass --llama-dir",
                    dir.display()
                );
            }
            Some(dir)
        }
        Some(other) => bail!("--vs takes llama.cpp, not {other:?}"),
    };
    // Per type: dot l1, l1-cpu, matvec 1t, 1t-cpu, 2t; ggml as one step; memory: 2.
    let per_type = 5 + u64::from(llama_dir.is_some());
    let bar = bar(2 + per_type * types.len() as u64)?;
    bar.set_message("building perch-quant's benches, then mem/read");
    let mut perch = Criterion::default();
    run_criterion("none", "^mem/read/", &args.criterion, &bar, &mut perch)?;
    let mut ggml = BTreeMap::new();
    for ty in &types {
        bar.set_message(format!("perch {ty}"));
        let before = perch.kernels.len();
        run_criterion(ty, "^(dot|matvec)/", &args.criterion, &bar, &mut perch)?;
        if perch.kernels.len() == before {
            bar.println(format!("warning: no criterion results for {ty}"));
        }
        if let Some(dir) = &llama_dir {
            bar.set_message(format!("ggml {ty}"));
            match run_ggml(dir, ty) {
                Ok(m) => {
                    ggml.insert(ty.clone(), m);
                }
                Err(e) => bar.println(format!("warning: {e:#}")),
            }
            bar.inc(1);
        }
    }
    bar.finish_and_clear();

    let rows = rows(&types, &perch, &ggml);
    let simd = perch_quant::simd_level().to_string();
    let md = markdown(&rows, &perch.memory, &simd);
    println!("{md}");
    let json = serde_json::json!({
        "simd_level": simd,
        "memory_read_gb_s": perch.memory,
        "rows": rows,
    });
    crate::results::save(
        "kernels",
        &json,
        &md,
        &kernels_chart(&types, &rows, &perch.memory)?,
    )?;
    Ok(())
}

/// Run `cargo xtask bench bandwidth`.
pub fn bandwidth(args: BandwidthArgs) -> Result<()> {
    let bar = bar(2)?;
    bar.set_message("building perch-quant's benches, then mem/read");
    let mut m = Criterion::default();
    run_criterion("none", "^mem/read/", &args.criterion, &bar, &mut m)?;
    bar.finish_and_clear();
    if m.memory.is_empty() {
        bail!(
            "criterion left no mem/read results in {}",
            criterion_dir().display()
        );
    }
    let mut md = String::from(
        "Memory read bandwidth (perch-quant's `mem/read` bench: a SIMD sum over 256 MiB), \
         GB/s (10⁹ bytes/s), criterion's estimate and confidence interval.\n\n\
         | threads | GB/s | interval |\n|---:|---:|---|\n",
    );
    for (t, r) in &m.memory {
        md.push_str(&format!(
            "| {t} | {:.2} | [{:.2}, {:.2}] |\n",
            r.gb_s,
            r.low.unwrap_or(r.gb_s),
            r.high.unwrap_or(r.gb_s)
        ));
    }
    println!("{md}");
    let groups: Vec<String> = m
        .memory
        .keys()
        .map(|t| format!("{t} thread{}", if *t == 1 { "" } else { "s" }))
        .collect();
    let svg = chart::bars(
        "Memory read bandwidth",
        &[chart::BarPanel {
            title: "mem/read over 256 MiB".into(),
            y_label: "GB/s".into(),
            groups,
            series: vec![chart::Bars {
                name: "read".into(),
                color: 0,
                values: m.memory.values().map(|r| Some(r.gb_s)).collect(),
            }],
            rules: Vec::new(),
        }],
    )?;
    let json = serde_json::json!({ "memory_read_gb_s": m.memory });
    crate::results::save("bandwidth", &json, &md, &svg)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ggml_lines_parse_to_the_criterion_test_names() {
        // Lines as scripts/bench_ggml_kernels.c prints them.
        let l = "ggml q4_K     dot/l1           45.10 GB/s     313194 rows/s  (3192.9 ns/row) 0";
        assert_eq!(
            parse_ggml_line(l),
            Some(("q4_K".into(), "dot/l1".into(), 45.10))
        );
        let l = "ggml q4_0     matvec 14912x4096 1t-cpu    11.25 GB/s     4850 rows/s";
        assert_eq!(
            parse_ggml_line(l),
            Some(("q4_0".into(), "matvec/14912x4096/1t-cpu".into(), 11.25))
        );
        assert_eq!(parse_ggml_line("unknown type q9"), None);
    }

    #[test]
    fn criterion_ids_map_to_the_same_names() {
        let b = |g: &str, f: Option<&str>, v: Option<&str>| BenchmarkJson {
            group_id: g.into(),
            function_id: f.map(Into::into),
            value_str: v.map(Into::into),
            throughput: None,
        };
        match classify(&b("dot/q4_0", Some("l1-cpu"), None)) {
            Some(Id::Kernel { ty, test }) => {
                assert_eq!((ty.as_str(), test.as_str()), ("q4_0", "dot/l1-cpu"))
            }
            _ => panic!("dot not classified"),
        }
        match classify(&b("matvec/q8_0", Some("1920x4096"), Some("2t"))) {
            Some(Id::Kernel { ty, test }) => {
                assert_eq!(
                    (ty.as_str(), test.as_str()),
                    ("q8_0", "matvec/1920x4096/2t")
                )
            }
            _ => panic!("matvec not classified"),
        }
        assert!(matches!(
            classify(&b("mem", Some("read"), Some("2t"))),
            Some(Id::Memory { threads: 2 })
        ));
        assert!(classify(&b("batch/q4_0", Some("8rows"), Some("1t"))).is_none());
    }

    #[test]
    fn ratios_only_for_the_same_test() {
        let mut perch = Criterion::default();
        perch.memory.insert(1, Rate::exact(20.0));
        for (test, v) in [("dot/l1", 40.0), ("matvec/100x4096/1t", 10.0)] {
            perch
                .kernels
                .insert(("q4_0".into(), test.into()), Rate::exact(v));
        }
        let ggml = BTreeMap::from([(
            "q4_0".to_string(),
            BTreeMap::from([
                ("dot/l1".to_string(), 20.0),
                // Another shape: not the same test.
                ("matvec/128x4096/1t".to_string(), 5.0),
            ]),
        )]);
        let rows = rows(&["q4_0".into()], &perch, &ggml);
        let get = |t: &str| rows.iter().find(|r| r.test == t).unwrap();
        assert_eq!(get("dot/l1").ratio, Some(2.0));
        assert_eq!(get("dot/l1").of_memory, None);
        assert_eq!(get("matvec/100x4096/1t").ratio, None);
        assert_eq!(get("matvec/100x4096/1t").of_memory, Some(0.5));
        assert_eq!(memory_for("matvec/100x4096/1t-cpu", &perch.memory), None);
        assert_eq!(get("matvec/128x4096/1t").perch, None);
    }

    #[test]
    fn criterion_results_are_read_from_disk() {
        let dir = tempfile::tempdir().unwrap();
        let since = SystemTime::now() - std::time::Duration::from_secs(1);
        let new = dir.path().join("matvec_q4_0/1920x4096/1t/new");
        std::fs::create_dir_all(&new).unwrap();
        std::fs::write(
            new.join("benchmark.json"),
            r#"{"group_id":"matvec/q4_0","function_id":"1920x4096","value_str":"1t",
               "throughput":{"Bytes":1000000},"full_id":"matvec/q4_0/1920x4096/1t",
               "directory_name":"matvec_q4_0/1920x4096/1t","title":"matvec/q4_0/1920x4096/1t"}"#,
        )
        .unwrap();
        let interval = |lo: f64, hi: f64, pe: f64| {
            format!(
                r#"{{"confidence_interval":{{"confidence_level":0.95,"lower_bound":{lo},"upper_bound":{hi}}},"point_estimate":{pe},"standard_error":1.0}}"#
            )
        };
        let e = interval(90000.0, 110000.0, 100000.0);
        std::fs::write(
            new.join("estimates.json"),
            format!(
                r#"{{"mean":{e},"median":{e},"median_abs_dev":{e},"slope":{},"std_dev":{e}}}"#,
                interval(40000.0, 60000.0, 50000.0)
            ),
        )
        .unwrap();
        let mut c = Criterion::default();
        read_criterion(dir.path(), since, &mut c).unwrap();
        // 1 MB in 50 µs (the slope) is 20 GB/s.
        let r = &c.kernels[&("q4_0".to_string(), "matvec/1920x4096/1t".to_string())];
        assert!((r.gb_s - 20.0).abs() < 1e-9, "{r:?}");
        assert!((r.low.unwrap() - 1e6 / 60000.0).abs() < 1e-9);
        // Results older than the run are ignored.
        let mut c = Criterion::default();
        read_criterion(
            dir.path(),
            SystemTime::now() + std::time::Duration::from_secs(5),
            &mut c,
        )
        .unwrap();
        assert!(c.kernels.is_empty());
    }
}
