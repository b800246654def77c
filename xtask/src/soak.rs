//! `cargo xtask bench serve`: a load generator for `perch serve` (spawned on loopback) or any
//! OpenAI-compatible server (`--url`). N concurrent clients stream chat completions of mixed
//! prompt and output lengths; every `--drop-every`-th request is dropped on purpose after its
//! first tokens. It reports errors (anything but the deliberate drops is one), the KV blocks
//! still in use at the end (from /metrics; must be 0), resident memory over time (VmRSS of
//! the server; must level off), throughput, time to first token and inter-token latency
//! percentiles, as JSON and markdown under `--out`. It fails when a check fails.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;

/// Options of `cargo xtask bench serve`.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// The full soak: 64 clients through 1,000 requests (default without it: 8 and 40).
    #[arg(long)]
    pub soak: bool,
    /// Concurrent streaming clients.
    #[arg(long)]
    pub clients: Option<usize>,
    /// Requests in total.
    #[arg(long)]
    pub requests: Option<usize>,
    /// Drop every Nth request mid-stream (0: none).
    #[arg(long, default_value_t = 10)]
    pub drop_every: usize,
    /// A server already running (`http://HOST:PORT`); otherwise `perch serve` is spawned.
    #[arg(long)]
    pub url: Option<String>,
    /// The model name to request.
    #[arg(long, default_value = "smol")]
    pub model_name: String,
    /// The GGUF for the spawned server (default: the SmolLM2 Q4_1 fixture).
    #[arg(long, short = 'm')]
    pub model: Option<PathBuf>,
    /// `--parallel` of the spawned server.
    #[arg(long, default_value_t = 16)]
    pub parallel: usize,
    /// Largest `max_tokens` of a request (lengths are mixed up to it).
    #[arg(long, default_value_t = 32)]
    pub max_tokens: usize,
    /// Where the report goes.
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
struct Percentiles {
    p50: f64,
    p90: f64,
    p99: f64,
}

fn pct(v: &mut [f64]) -> Percentiles {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| {
        if v.is_empty() {
            0.0
        } else {
            v[((v.len() - 1) as f64 * q).round() as usize] * 1e3
        }
    };
    Percentiles {
        p50: at(0.5),
        p90: at(0.9),
        p99: at(0.99),
    }
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

/// One HTTP/1.1 request; the response's status and a reader over its (de-chunked) body.
fn send(url: &Hostport, method: &str, path: &str, body: &str) -> Result<(u16, ChunkedReader)> {
    let mut s = TcpStream::connect((url.host.as_str(), url.port))?;
    s.set_read_timeout(Some(Duration::from_secs(300)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        url.host,
        body.len()
    )?;
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let status: u16 = line
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("bad status line {line:?}"))?;
    let mut chunked = false;
    let mut length = None;
    loop {
        line.clear();
        r.read_line(&mut line)?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let lower = l.to_ascii_lowercase();
        if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
            chunked = true;
        }
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse().ok();
        }
    }
    Ok((
        status,
        ChunkedReader {
            inner: r,
            chunked,
            left: if chunked {
                0
            } else {
                length.unwrap_or(usize::MAX)
            },
            done: false,
        },
    ))
}

/// A body reader that undoes chunked transfer encoding.
struct ChunkedReader {
    inner: BufReader<TcpStream>,
    chunked: bool,
    left: usize,
    done: bool,
}

impl Read for ChunkedReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.done {
            return Ok(0);
        }
        if self.chunked && self.left == 0 {
            let mut line = String::new();
            self.inner.read_line(&mut line)?;
            if line.trim().is_empty() {
                line.clear();
                self.inner.read_line(&mut line)?;
            }
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| std::io::Error::other(format!("bad chunk size {line:?}")))?;
            if size == 0 {
                self.done = true;
                return Ok(0);
            }
            self.left = size;
        }
        let n = buf.len().min(self.left);
        let got = self.inner.read(&mut buf[..n])?;
        if got == 0 {
            self.done = true;
        }
        self.left -= got;
        Ok(got)
    }
}

#[derive(Clone, Debug)]
struct Hostport {
    host: String,
    port: u16,
}

fn parse_url(url: &str) -> Result<Hostport> {
    let rest = url
        .strip_prefix("http://")
        .context("only http:// URLs are supported")?;
    let hp = rest.split('/').next().unwrap_or(rest);
    let (host, port) = hp.rsplit_once(':').unwrap_or((hp, "80"));
    Ok(Hostport {
        host: host.to_string(),
        port: port.parse().context("bad port")?,
    })
}

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
    let mut out = Outcome {
        dropped: drop,
        ..Outcome::default()
    };
    let started = Instant::now();
    let (status, reader) = match send(url, "POST", "/v1/chat/completions", &body) {
        Ok(r) => r,
        Err(e) => {
            out.error = Some(format!("request {i}: {e}"));
            return out;
        }
    };
    if status != 200 {
        let mut text = String::new();
        let mut reader = reader;
        let _ = reader.read_to_string(&mut text);
        out.error = Some(format!("request {i}: status {status}: {text}"));
        return out;
    }
    let mut last: Option<Instant> = None;
    let mut done = false;
    for line in BufReader::new(reader).lines() {
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                out.error = Some(format!("request {i}: stream broke: {e}"));
                return out;
            }
        };
        let Some(data) = line.strip_prefix("data: ") else {
            continue;
        };
        if data == "[DONE]" {
            done = true;
            break;
        }
        let v: serde_json::Value = match serde_json::from_str(data) {
            Ok(v) => v,
            Err(e) => {
                out.error = Some(format!("request {i}: bad chunk {data:?}: {e}"));
                return out;
            }
        };
        if let Some(n) = v["usage"]["completion_tokens"].as_u64() {
            out.completion_tokens = n;
        }
        let has_text = v["choices"][0]["delta"]["content"]
            .as_str()
            .is_some_and(|s| !s.is_empty());
        if has_text {
            let now = Instant::now();
            match last {
                None => out.ttft = Some((now - started).as_secs_f64()),
                Some(t) => out.gaps.push((now - t).as_secs_f64()),
            }
            last = Some(now);
            if drop && out.gaps.len() >= 2 {
                // Hang up mid-stream: the reader (and the socket) are dropped here.
                out.ok = true;
                return out;
            }
        }
    }
    if drop {
        // It finished before the drop point: a short answer, still fine.
        out.ok = done;
    } else if done {
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

struct Spawned(Child);

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

fn spawn_server(a: &ServeArgs) -> Result<(Spawned, Hostport)> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(&cargo)
        .args(["build", "--profile", "ci", "-p", "perch-cli"])
        .status()
        .context("building perch")?;
    if !status.success() {
        bail!("cargo build -p perch-cli failed");
    }
    let perch = target_dir().join("ci/perch");
    let model = match &a.model {
        Some(m) => m.clone(),
        None => perch_fixtures::smollm2_q4_1(),
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let home = std::env::temp_dir().join(format!("perch-soak-{}", std::process::id()));
    std::fs::create_dir_all(&home)?;
    let child = Command::new(&perch)
        .args(["serve", "--model"])
        .arg(format!("{}={}", a.model_name, model.display()))
        .args(["--port", &port.to_string(), "--ctx-size", "512"])
        .args(["--parallel", &a.parallel.to_string()])
        .env("PERCH_HOME", &home)
        .env("PERCH_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", perch.display()))?;
    let child = Spawned(child);
    let url = Hostport {
        host: "127.0.0.1".into(),
        port,
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while send(&url, "GET", "/health", "").map(|r| r.0).ok() != Some(200) {
        if Instant::now() > deadline {
            bail!("perch serve did not become healthy");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok((child, url))
}

/// Run the load.
pub fn serve(a: ServeArgs) -> Result<()> {
    let clients = a.clients.unwrap_or(if a.soak { 64 } else { 8 });
    let requests = a.requests.unwrap_or(if a.soak { 1000 } else { 40 });
    let (server, url) = match &a.url {
        Some(u) => (None, parse_url(u)?),
        None => {
            let (s, u) = spawn_server(&a)?;
            (Some(s), u)
        }
    };
    let pid = server.as_ref().map(|s| s.0.id());
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
    std::fs::create_dir_all(&a.out)?;
    let json = a.out.join("soak.json");
    std::fs::write(&json, serde_json::to_string_pretty(&report)?)?;
    let md = markdown(&report);
    std::fs::write(a.out.join("soak.md"), &md)?;
    println!("{md}");
    println!("report: {} and soak.md", json.display());
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
