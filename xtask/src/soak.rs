//! `cargo xtask bench serve --soak`: a load and soak generator for `perch serve` (spawned on loopback) or any
//! OpenAI-compatible server (`--url`). N concurrent clients stream chat completions of mixed
//! prompt and output lengths; every `--drop-every`-th request is dropped on purpose after its
//! first tokens. It reports errors (anything but the deliberate drops is one), the KV blocks
//! still in use at the end (from /metrics; must be 0), resident memory over time (VmRSS of
//! the server; must level off), throughput, time to first token and inter-token latency
//! percentiles, as JSON, markdown and a chart of resident memory over time (SVG) under
//! `--out`. It fails when a check fails. (`bench serve` without `--soak` is the throughput
//! sweep of load.rs.)

use std::io::Read;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::http::{self, Hostport, Percentiles, parse_url, pct, send};

/// Options of `cargo xtask bench serve`.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// The load and soak test instead of the throughput sweep: 64 clients through 1,000
    /// requests of mixed lengths, some dropped mid-stream, with KV and memory checks.
    #[arg(long)]
    pub soak: bool,
    /// Concurrent streaming clients of the soak (default 64).
    #[arg(long)]
    pub clients: Option<usize>,
    /// Requests: in total for the soak (default 1,000); per concurrency level for the sweep
    /// (default: twice the level, at least 8).
    #[arg(long)]
    pub requests: Option<usize>,
    /// Concurrency levels of the sweep (streams at once), comma-separated.
    #[arg(long, short = 'c', value_delimiter = ',', default_value = "1,4,16,64")]
    pub concurrency: Vec<usize>,
    /// Prompt length of each sweep request in tokens.
    #[arg(long, short = 'p', default_value_t = 128)]
    pub prompt_tokens: usize,
    /// Tokens each sweep request generates (end-of-generation tokens are banned, so every
    /// request generates exactly this many).
    #[arg(long, short = 'n', default_value_t = 128)]
    pub gen_tokens: usize,
    /// Requests per second the sweep sends (Poisson arrivals), at most `concurrency` at
    /// once; default: all at once.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Compute threads of the spawned servers (both get the same).
    #[arg(long, short = 't', default_value_t = 2)]
    pub threads: usize,
    /// Context per sequence of the spawned servers (default: prompt + generated + 64,
    /// rounded up to 256).
    #[arg(long)]
    pub ctx_size: Option<usize>,
    /// Also start the peer's llama-server with the same model, threads, slots and context
    /// and run the same load against it (`--vs llama.cpp`).
    #[arg(long)]
    pub vs: Option<String>,
    /// The folder holding the peer's llama-server.
    #[arg(long, env = "PERCH_PEER_BIN")]
    pub peer_bin: Option<PathBuf>,
    /// Drop every Nth request mid-stream (0: none).
    #[arg(long, default_value_t = 10)]
    pub drop_every: usize,
    /// A server already running (`http://HOST:PORT`); otherwise `perch serve` is spawned.
    #[arg(long)]
    pub url: Option<String>,
    /// The model name to request.
    #[arg(long, default_value = "smol")]
    pub model_name: String,
    /// The GGUF for the spawned servers (default: the SmolLM2 Q4_1 fixture); with `--url`,
    /// the file that server serves (the sweep reads its tokenizer for the prompt lengths and
    /// the end-of-generation ids it bans).
    #[arg(long, short = 'm')]
    pub model: Option<PathBuf>,
    /// Sequence slots of the spawned servers (perch `--parallel`, llama-server `-np`).
    #[arg(long, default_value_t = 16)]
    pub parallel: usize,
    /// Largest `max_tokens` of a soak request (lengths are mixed up to it).
    #[arg(long, default_value_t = 32)]
    pub max_tokens: usize,
    /// Where the soak's report goes.
    #[arg(long, default_value = "results/soak")]
    pub out: PathBuf,
}

/// What one request saw.
#[derive(Clone, Debug, Default)]
struct Outcome {
    ok: bool,
    dropped: bool,
    error: Option<String>,
    ttft: Option<f64>,
    gaps: Vec<f64>,
    completion_tokens: u64,
}

#[derive(Serialize)]
struct Report {
    clients: usize,
    requests: usize,
    dropped_on_purpose: usize,
    completed: usize,
    errors: usize,
    error_samples: Vec<String>,
    kv_blocks_used_at_end: Option<u64>,
    wall_s: f64,
    completion_tokens: u64,
    tokens_per_s: f64,
    requests_per_s: f64,
    ttft_ms: Percentiles,
    itl_ms: Percentiles,
    rss_mib: Vec<(f64, f64)>,
    rss_levels_off: Option<bool>,
}

/// The paragraph prompts are made of (repeated for longer prompts).
const TEXT: &str = "The lighthouse keeper wrote down the weather every morning: wind, clouds, \
    the colour of the sea and the ships that passed. ";

/// Request `i`: its prompt repeats, its max_tokens, whether it is dropped.
fn plan(i: usize, max_tokens: usize, drop_every: usize) -> (usize, usize, bool) {
    let repeats = [1, 2, 4, 8, 16][i % 5];
    let sizes = [max_tokens / 8, max_tokens / 4, max_tokens / 2, max_tokens];
    let mt = sizes[(i / 5) % sizes.len()].max(2);
    (
        repeats,
        mt,
        drop_every > 0 && i % drop_every == drop_every - 1,
    )
}

fn one(url: &Hostport, model: &str, i: usize, a: &ServeArgs) -> Outcome {
    let (repeats, max_tokens, drop) = plan(i, a.max_tokens, a.drop_every);
    let body = serde_json::json!({
        "model": model,
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": format!("{}Request {i}: summarize.", TEXT.repeat(repeats))},
        ],
        "max_tokens": max_tokens,
        "temperature": 0.7,
        "seed": i,
        "stream": true,
        "stream_options": {"include_usage": true},
    })
    .to_string();
    let r = http::stream(url, "/v1/chat/completions", &body, drop.then_some(2));
    let mut out = Outcome {
        dropped: drop,
        ttft: r.ttft,
        gaps: r.gaps,
        completion_tokens: r.completion_tokens.unwrap_or(0),
        ..Outcome::default()
    };
    if let Some(e) = r.error {
        out.error = Some(format!("request {i}: {e}"));
    } else if r.hung_up {
        out.ok = true;
    } else if drop {
        // It finished before the drop point: a short answer, still fine.
        out.ok = r.done;
    } else if r.done {
        out.ok = true;
    } else {
        out.error = Some(format!("request {i}: the stream ended without [DONE]"));
    }
    out
}

fn vm_rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn kv_used(url: &Hostport) -> Result<u64> {
    let (status, mut r) = send(url, "GET", "/metrics", "")?;
    let mut text = String::new();
    r.read_to_string(&mut text)?;
    if status != 200 {
        bail!("/metrics answered {status}");
    }
    Ok(text
        .lines()
        .filter(|l| l.starts_with("perch_kv_blocks{") && l.contains("state=\"used\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64)
}

/// Builds perch (ci profile: debug assertions on) and starts `perch serve` on loopback.
fn spawn_server(a: &ServeArgs) -> Result<(http::Server, tempfile::TempDir)> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(&cargo)
        .args(["build", "--profile", "ci", "-p", "perch-cli"])
        .status()
        .context("building perch")?;
    if !status.success() {
        bail!("cargo build -p perch-cli failed");
    }
    let perch = crate::bench::target_dir().join("ci/perch");
    let model = match &a.model {
        Some(m) => m.clone(),
        None => perch_fixtures::smollm2_q4_1(),
    };
    let home = tempfile::Builder::new().prefix("perch-soak").tempdir()?;
    let port = http::free_port()?;
    let mut cmd = Command::new(&perch);
    cmd.args(["serve", "--model"])
        .arg(format!("{}={}", a.model_name, model.display()))
        .args(["--port", &port.to_string(), "--ctx-size", "512"])
        .args(["--parallel", &a.parallel.to_string()])
        .env("PERCH_HOME", home.path())
        .env("PERCH_LOG", "warn");
    let log = home.path().join("serve.log");
    let server = http::start_server("perch serve", cmd, port, log, Duration::from_secs(120))?;
    Ok((server, home))
}

/// Run the load.
pub fn serve(a: ServeArgs) -> Result<()> {
    let clients = a.clients.unwrap_or(64);
    let requests = a.requests.unwrap_or(1000);
    let (server, url) = match &a.url {
        Some(u) => (None, parse_url(u)?),
        None => {
            let s = spawn_server(&a)?;
            let url = s.0.url.clone();
            (Some(s), url)
        }
    };
    let pid = server.as_ref().map(|s| s.0.child.0.id());
    let next = Arc::new(AtomicUsize::new(0));
    let results = Arc::new(Mutex::new(Vec::with_capacity(requests)));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let rss = Arc::new(Mutex::new(Vec::new()));
    let sampler = pid.map(|pid| {
        let (rss, stop) = (rss.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Some(k) = vm_rss_kib(pid) {
                    rss.lock()
                        .unwrap()
                        .push((started.elapsed().as_secs_f64(), k as f64 / 1024.0));
                }
                std::thread::sleep(Duration::from_millis(250));
            }
        })
    });
    let bar = indicatif::ProgressBar::new(requests as u64);
    std::thread::scope(|s| {
        for _ in 0..clients {
            let (next, results, url, a, bar) = (&next, &results, &url, &a, &bar);
            s.spawn(move || {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= requests {
                        break;
                    }
                    let o = one(url, &a.model_name, i, a);
                    results.lock().unwrap().push(o);
                    bar.inc(1);
                }
            });
        }
    });
    bar.finish_and_clear();
    let wall = started.elapsed().as_secs_f64();
    // Dropped streams free their blocks at the engine's next step: give it a moment.
    let mut kv = None;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        kv = kv_used(&url).ok();
        if kv == Some(0) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    if let Some(t) = sampler {
        let _ = t.join();
    }
    drop(server);

    let results = results.lock().unwrap();
    let errors: Vec<&String> = results.iter().filter_map(|o| o.error.as_ref()).collect();
    let mut ttft: Vec<f64> = results.iter().filter_map(|o| o.ttft).collect();
    let mut itl: Vec<f64> = results
        .iter()
        .flat_map(|o| o.gaps.iter().copied())
        .collect();
    let tokens: u64 = results.iter().map(|o| o.completion_tokens).sum();
    let rss = rss.lock().unwrap().clone();
    let levels_off = (rss.len() >= 6).then(|| {
        let third = rss.len() / 3;
        let early = rss[..2 * third].iter().map(|r| r.1).fold(0.0, f64::max);
        let late = rss[2 * third..].iter().map(|r| r.1).fold(0.0, f64::max);
        late <= early * 1.10
    });
    let report = Report {
        clients,
        requests,
        dropped_on_purpose: results.iter().filter(|o| o.dropped).count(),
        completed: results.iter().filter(|o| o.ok && !o.dropped).count(),
        errors: errors.len(),
        error_samples: errors.iter().take(5).map(|e| e.to_string()).collect(),
        kv_blocks_used_at_end: kv,
        wall_s: wall,
        completion_tokens: tokens,
        tokens_per_s: tokens as f64 / wall,
        requests_per_s: requests as f64 / wall,
        ttft_ms: pct(&mut ttft),
        itl_ms: pct(&mut itl),
        rss_mib: rss,
        rss_levels_off: levels_off,
    };
    let md = markdown(&report);
    println!("{md}");
    crate::results::save_in(&a.out, "soak", &report, &md, &rss_chart(&report)?)?;
    if report.errors > 0 {
        bail!(
            "{} requests failed, e.g. {:?}",
            report.errors,
            report.error_samples
        );
    }
    if report.kv_blocks_used_at_end != Some(0) && a.url.is_none() {
        bail!(
            "KV blocks still in use at the end: {:?}",
            report.kv_blocks_used_at_end
        );
    }
    if report.rss_levels_off == Some(false) {
        bail!("resident memory kept growing in the last third of the run");
    }
    Ok(())
}

/// Resident memory of the server over the run.
fn rss_chart(r: &Report) -> Result<String> {
    crate::chart::lines(
        &format!(
            "Soak: {} clients, {} requests, {:.1} tokens/s",
            r.clients, r.requests, r.tokens_per_s
        ),
        &[crate::chart::LinePanel {
            title: "server resident memory".into(),
            x_label: "seconds".into(),
            y_label: "MiB".into(),
            x_names: Vec::new(),
            lines: vec![crate::chart::Line {
                name: "VmRSS".into(),
                points: r.rss_mib.clone(),
                dashed: false,
                color: 0,
            }],
        }],
    )
}

fn markdown(r: &Report) -> String {
    let peak = r
        .rss_mib
        .iter()
        .map(|x| x.1)
        .reduce(f64::max)
        .map_or("-".into(), |v| format!("{v:.0} MiB"));
    let first = r
        .rss_mib
        .first()
        .map_or("-".into(), |x| format!("{:.0} MiB", x.1));
    let last = r
        .rss_mib
        .last()
        .map_or("-".into(), |x| format!("{:.0} MiB", x.1));
    format!(
        "| metric | value |\n|---|---:|\n\
         | clients / requests | {} / {} |\n\
         | completed / dropped on purpose / errors | {} / {} / {} |\n\
         | KV blocks in use at the end | {} |\n\
         | wall time | {:.1} s |\n\
         | throughput | {:.1} tokens/s, {:.2} requests/s |\n\
         | TTFT p50 / p90 / p99 | {:.0} / {:.0} / {:.0} ms |\n\
         | inter-token p50 / p90 / p99 | {:.1} / {:.1} / {:.1} ms |\n\
         | RSS first / last / peak | {} / {} / {} |\n\
         | RSS levels off | {} |\n",
        r.clients,
        r.requests,
        r.completed,
        r.dropped_on_purpose,
        r.errors,
        r.kv_blocks_used_at_end
            .map_or("-".into(), |v| v.to_string()),
        r.wall_s,
        r.tokens_per_s,
        r.requests_per_s,
        r.ttft_ms.p50,
        r.ttft_ms.p90,
        r.ttft_ms.p99,
        r.itl_ms.p50,
        r.itl_ms.p90,
        r.itl_ms.p99,
        first,
        last,
        peak,
        r.rss_levels_off
            .map_or("-", |b| if b { "yes" } else { "no" }),
    )
}
