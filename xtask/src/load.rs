//! `cargo xtask bench serve`: serving throughput and latency per concurrency level, `perch
//! serve` beside the peer's `llama-server` (`--vs llama.cpp`) or against any OpenAI-compatible
//! server (`--url`).
//!
//! Both servers get the same model file, compute threads, sequence slots (perch `--parallel`,
//! llama-server `-np`) and context per sequence (llama-server's `-c` is the total over its
//! slots), and run one after the other, each alone on the machine. Each concurrency level
//! sends the same requests to both: streamed `/v1/completions` (no chat template, so both see
//! the same prompt tokens) of `--prompt-tokens` tokens, each opening with its own number so
//! no server can reuse another request's prefix, asking for `--gen-tokens` tokens with every
//! end-of-generation token of the vocabulary banned through `logit_bias` (-100 bans a token on
//! both), so every request generates exactly that many, greedily. Requests that come back
//! shorter are counted.
//!
//! Per level: aggregate generation tokens/s (completion tokens over the level's wall time),
//! requests/s, time to first token, inter-token latency (gaps between streamed chunks) and
//! time per output token per request at p50/p90/p99, and the ratio perch / llama.cpp. Results
//! go to `results/serve-<time>.{json,md,svg}`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use crate::chart;
use crate::http::{self, Hostport, Percentiles, Streamed, pct};
use crate::soak::ServeArgs;

/// The text prompts are cut from (repeated as needed).
const TEXT: &str = "The lighthouse keeper wrote down the weather every morning: wind, clouds, \
    the colour of the sea and the ships that passed. In winter the storms came from the north \
    and the lamp burned all night; in summer the fishing boats left before dawn and came back \
    heavy with herring, and the children ran along the harbour wall to count them. ";

/// What the requests of one run share.
struct Load {
    model_name: String,
    gen_tokens: usize,
    /// `logit_bias` banning every end-of-generation token.
    ban: serde_json::Map<String, serde_json::Value>,
    /// Prompt text per request number.
    prompts: Vec<String>,
}

impl Load {
    fn body(&self, i: usize, max_tokens: usize) -> String {
        serde_json::json!({
            "model": self.model_name,
            "prompt": self.prompts[i % self.prompts.len()],
            "max_tokens": max_tokens,
            "temperature": 0.0,
            "stream": true,
            "stream_options": {"include_usage": true},
            "logit_bias": self.ban,
        })
        .to_string()
    }
}

/// Prompts of `n_tokens` tokens each (by the model's own tokenizer), the i-th opening with
/// "Request i." so no two share more than that opening's first token.
fn prompts(model: &Path, n_tokens: usize, count: usize) -> Result<(Vec<String>, Vec<u32>)> {
    let file = perch_gguf::GgufFile::open(model)
        .with_context(|| format!("opening {}", model.display()))?;
    let tok = perch_tokenizer::Tokenizer::from_gguf(&file)
        .with_context(|| format!("reading the tokenizer of {}", model.display()))?;
    let bos = usize::from(tok.add_bos());
    let mut text = String::new();
    let mut body = Vec::new();
    while body.len() < n_tokens {
        text.push_str(TEXT);
        body = tok.encode(&text, false, false)?;
    }
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let mut ids = tok.encode(&format!("Request {i}. "), false, false)?;
        let room = n_tokens.saturating_sub(ids.len() + bos);
        ids.extend_from_slice(&body[..room]);
        out.push(String::from_utf8_lossy(&tok.decode_bytes(&ids, false)?).into_owned());
    }
    Ok((out, tok.eog_ids().to_vec()))
}

/// One concurrency level's measurements on one server.
#[derive(Debug, Serialize)]
struct Level {
    concurrency: usize,
    requests: usize,
    errors: usize,
    error_samples: Vec<String>,
    /// Requests that generated fewer tokens than asked.
    short: usize,
    wall_s: f64,
    prompt_tokens_mean: f64,
    completion_tokens: u64,
    gen_tokens_per_s: f64,
    requests_per_s: f64,
    ttft_ms: Percentiles,
    itl_ms: Percentiles,
    tpot_ms: Percentiles,
}

/// One server's run.
#[derive(Debug, Serialize)]
struct Run {
    server: String,
    levels: Vec<Level>,
}

/// Arrival offsets (seconds) of `n` requests at `rate` per second (Poisson), or all at 0.
fn arrivals(n: usize, rate: Option<f64>, seed: u64) -> Vec<f64> {
    let Some(rate) = rate else {
        return vec![0.0; n];
    };
    let mut s = seed | 1;
    let mut t = 0.0;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let u = ((s >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
            let at = t;
            t += -u.ln() / rate;
            at
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn run_level(
    url: &Hostport,
    load: &Load,
    first: usize,
    n: usize,
    concurrency: usize,
    rate: Option<f64>,
    bar: &ProgressBar,
) -> Level {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Streamed>> = Mutex::new(Vec::with_capacity(n));
    let at = arrivals(n, rate, 0x9e37_79b9_7f4a_7c15 ^ first as u64);
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..concurrency.min(n) {
            s.spawn(|| {
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    if k >= n {
                        break;
                    }
                    let due = started + Duration::from_secs_f64(at[k]);
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    let body = load.body(first + k, load.gen_tokens);
                    let r = http::stream(url, "/v1/completions", &body, None);
                    results.lock().unwrap().push(r);
                    bar.inc(1);
                }
            });
        }
    });
    let wall = started.elapsed().as_secs_f64();
    let rs = results.into_inner().unwrap();
    let failed: Vec<String> = rs
        .iter()
        .filter_map(|r| match (&r.error, r.done) {
            (Some(e), _) => Some(e.clone()),
            (None, false) => Some("the stream ended without [DONE]".into()),
            _ => None,
        })
        .collect();
    let ok: Vec<&Streamed> = rs.iter().filter(|r| r.error.is_none() && r.done).collect();
    let tokens = |r: &Streamed| r.completion_tokens.unwrap_or(r.text_chunks);
    let completion_tokens: u64 = ok.iter().map(|r| tokens(r)).sum();
    let prompt: Vec<u64> = ok.iter().filter_map(|r| r.prompt_tokens).collect();
    let mut ttft: Vec<f64> = ok.iter().filter_map(|r| r.ttft).collect();
    let mut itl: Vec<f64> = ok.iter().flat_map(|r| r.gaps.iter().copied()).collect();
    let mut tpot: Vec<f64> = ok
        .iter()
        .filter_map(|r| {
            let n = tokens(r);
            let ttft = r.ttft?;
            (n > 1).then(|| (r.e2e - ttft) / (n - 1) as f64)
        })
        .filter(|v| v.is_finite())
        .collect();
    Level {
        concurrency,
        requests: n,
        errors: failed.len(),
        error_samples: failed.into_iter().take(3).collect(),
        short: ok
            .iter()
            .filter(|r| tokens(r) < load.gen_tokens as u64)
            .count(),
        wall_s: wall,
        prompt_tokens_mean: if prompt.is_empty() {
            0.0
        } else {
            prompt.iter().sum::<u64>() as f64 / prompt.len() as f64
        },
        completion_tokens,
        gen_tokens_per_s: completion_tokens as f64 / wall,
        requests_per_s: ok.len() as f64 / wall,
        ttft_ms: pct(&mut ttft),
        itl_ms: pct(&mut itl),
        tpot_ms: pct(&mut tpot),
    }
}

/// Requests of a level: `--requests`, else twice the level, at least 8.
fn level_requests(a: &ServeArgs, c: usize) -> usize {
    a.requests.unwrap_or((2 * c).max(8))
}

/// `perch serve` (release build) on a free loopback port.
fn start_perch(a: &ServeArgs, model: &Path, ctx: usize, home: &Path) -> Result<http::Server> {
    let perch = crate::bench::build_perch()?;
    let port = http::free_port()?;
    let mut cmd = Command::new(&perch);
    cmd.args(["serve", "--no-ui", "--model"])
        .arg(format!("{}={}", a.model_name, model.display()))
        .args(["--port", &port.to_string()])
        .args(["--ctx-size", &ctx.to_string()])
        .args(["--parallel", &a.parallel.to_string()])
        .args(["--threads", &a.threads.to_string()])
        .env("PERCH_HOME", home)
        .env("PERCH_LOG", "warn");
    http::start_server(
        "perch serve",
        cmd,
        port,
        home.join("perch-serve.log"),
        Duration::from_secs(300),
    )
}

/// The peer's llama-server with the same model, slots, context per slot and threads.
fn start_llama_server(
    bin: &Path,
    a: &ServeArgs,
    model: &Path,
    ctx: usize,
    home: &Path,
) -> Result<http::Server> {
    let port = http::free_port()?;
    let mut cmd = Command::new(bin);
    cmd.arg("-m")
        .arg(model)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        // -c is the total over the slots: each of the -np slots gets ctx.
        .args(["-c", &(ctx * a.parallel).to_string()])
        .args(["-np", &a.parallel.to_string()])
        .args(["-t", &a.threads.to_string(), "-tb", &a.threads.to_string()])
        // ggml's repacked (AMX) buffers crash on these machines; perch reads the file's
        // layout too.
        .arg("--no-repack")
        .arg("--no-webui")
        .args(["-a", &a.model_name]);
    http::start_server(
        "llama-server",
        cmd,
        port,
        home.join("llama-server.log"),
        Duration::from_secs(300),
    )
}

/// Runs every level against one server, after a short warm-up request.
fn run_server(
    name: &str,
    url: &Hostport,
    a: &ServeArgs,
    load: &Load,
    bar: &ProgressBar,
) -> Result<Run> {
    bar.set_message(format!("{name}: warm-up"));
    let w = http::stream(url, "/v1/completions", &load.body(usize::MAX / 2, 4), None);
    if let Some(e) = w.error {
        bail!("{name} refused the warm-up request: {e}");
    }
    let mut levels = Vec::new();
    let mut first = 0;
    for &c in &a.concurrency {
        let n = level_requests(a, c);
        bar.set_message(format!("{name}: {c} streams, {n} requests"));
        let l = run_level(url, load, first, n, c, a.rate, bar);
        bar.println(format!(
            "{name:>10} {c:>3} streams: {:7.1} tokens/s, TTFT p50 {:.0} ms, ITL p50 {:.1} ms{}",
            l.gen_tokens_per_s,
            l.ttft_ms.p50,
            l.itl_ms.p50,
            if l.errors > 0 {
                format!(", {} errors", l.errors)
            } else {
                String::new()
            }
        ));
        levels.push(l);
        first += n;
    }
    Ok(Run {
        server: name.to_string(),
        levels,
    })
}

/// Run `cargo xtask bench serve` (the sweep).
pub fn serve(a: ServeArgs) -> Result<()> {
    if a.concurrency.is_empty() || a.concurrency.contains(&0) {
        bail!("--concurrency needs levels of at least 1");
    }
    if a.gen_tokens == 0 || a.prompt_tokens < 4 {
        bail!("--gen-tokens must be at least 1 and --prompt-tokens at least 4");
    }
    if let Some(r) = a.rate
        && !(r > 0.0 && r.is_finite())
    {
        bail!("--rate must be a positive number of requests per second, got {r}");
    }
    let peer = match a.vs.as_deref() {
        None => None,
        Some("llama.cpp") if a.url.is_some() => {
            bail!("--vs llama.cpp starts both servers itself: leave out --url")
        }
        Some("llama.cpp") => Some(crate::bench::find_peer_tool(
            a.peer_bin.as_deref(),
            "llama-server",
        )?),
        Some(other) => bail!("--vs takes llama.cpp, not {other:?}"),
    };
    let model = match &a.model {
        Some(m) => m.clone(),
        None => perch_fixtures::smollm2_q4_1(),
    };
    if !model.is_file() {
        bail!("no model at {}", model.display());
    }
    let total: usize = a.concurrency.iter().map(|&c| level_requests(&a, c)).sum();
    let (prompts, eog) = prompts(&model, a.prompt_tokens, total)?;
    let load = Load {
        model_name: a.model_name.clone(),
        gen_tokens: a.gen_tokens,
        ban: eog
            .iter()
            .map(|id| (id.to_string(), serde_json::json!(-100)))
            .collect(),
        prompts,
    };
    let ctx = a
        .ctx_size
        .unwrap_or((a.prompt_tokens + a.gen_tokens + 64).div_ceil(256) * 256);
    if ctx < a.prompt_tokens + a.gen_tokens + 8 {
        bail!(
            "--ctx-size {ctx} is too small for {} prompt + {} generated tokens",
            a.prompt_tokens,
            a.gen_tokens
        );
    }
    let home = tempfile::Builder::new()
        .prefix("perch-bench-serve")
        .tempdir()?;

    let servers = if a.url.is_some() {
        1
    } else {
        1 + usize::from(peer.is_some())
    };
    let bar =
        ProgressBar::with_draw_target(Some((total * servers) as u64), ProgressDrawTarget::stderr());
    bar.set_style(ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} requests {msg}",
    )?);
    bar.enable_steady_tick(Duration::from_millis(200));
    let mut runs = Vec::new();
    if let Some(u) = &a.url {
        runs.push(run_server("server", &http::parse_url(u)?, &a, &load, &bar)?);
    } else {
        bar.set_message("building and starting perch serve");
        let server = start_perch(&a, &model, ctx, home.path())?;
        runs.push(run_server("perch", &server.url, &a, &load, &bar)?);
        drop(server);
        if let Some(bin) = &peer {
            bar.set_message("starting llama-server");
            let server = start_llama_server(bin, &a, &model, ctx, home.path())?;
            runs.push(run_server("llama.cpp", &server.url, &a, &load, &bar)?);
        }
    }
    bar.finish_and_clear();

    let md = markdown(&a, &model, ctx, &runs);
    println!("{md}");
    let json = serde_json::json!({
        "model": model.display().to_string(),
        "prompt_tokens": a.prompt_tokens,
        "gen_tokens": a.gen_tokens,
        "threads": a.threads,
        "parallel": a.parallel,
        "ctx_size": ctx,
        "rate": a.rate,
        "url": a.url,
        "runs": runs,
        "ratios": ratios(&runs),
    });
    crate::results::save("serve", &json, &md, &serve_chart(&a, &runs)?)?;
    let errors: usize = runs.iter().flat_map(|r| &r.levels).map(|l| l.errors).sum();
    if errors > 0 {
        let sample = runs
            .iter()
            .flat_map(|r| &r.levels)
            .flat_map(|l| &l.error_samples)
            .next()
            .cloned()
            .unwrap_or_default();
        bail!("{errors} requests failed, e.g. {sample}");
    }
    Ok(())
}

/// perch / llama.cpp generation tokens/s per level, when both ran.
fn ratios(runs: &[Run]) -> BTreeMap<usize, f64> {
    let (Some(p), Some(l)) = (
        runs.iter().find(|r| r.server == "perch"),
        runs.iter().find(|r| r.server == "llama.cpp"),
    ) else {
        return BTreeMap::new();
    };
    p.levels
        .iter()
        .filter_map(|pl| {
            let ll = l.levels.iter().find(|x| x.concurrency == pl.concurrency)?;
            (ll.gen_tokens_per_s > 0.0)
                .then(|| (pl.concurrency, pl.gen_tokens_per_s / ll.gen_tokens_per_s))
        })
        .collect()
}

fn markdown(a: &ServeArgs, model: &Path, ctx: usize, runs: &[Run]) -> String {
    let p3 = |p: &Percentiles, d: usize| format!("{:.d$} / {:.d$} / {:.d$}", p.p50, p.p90, p.p99);
    let setup = match &a.url {
        Some(u) => format!("the server at {u}"),
        None => format!(
            "spawned on loopback with {} threads, {} slots of {ctx} tokens",
            a.threads, a.parallel
        ),
    };
    let mut s = format!(
        "Serving {} ({setup}): {} prompt tokens, {} generated per request (end of generation \
         banned, greedy){}.\n\n\
         | streams | server | gen tokens/s | requests/s | TTFT p50 / p90 / p99 ms | \
         ITL p50 / p90 / p99 ms | TPOT p50 / p90 / p99 ms | prompt tokens | errors | short |\n\
         |---:|---|---:|---:|---|---|---|---:|---:|---:|\n",
        model.file_name().unwrap_or_default().to_string_lossy(),
        a.prompt_tokens,
        a.gen_tokens,
        a.rate
            .map(|r| format!(", {r} requests/s"))
            .unwrap_or_else(|| ", requests sent as fast as the streams allow".into()),
    );
    for &c in &a.concurrency {
        for r in runs {
            if let Some(l) = r.levels.iter().find(|l| l.concurrency == c) {
                s.push_str(&format!(
                    "| {c} | {} | {:.1} | {:.2} | {} | {} | {} | {:.0} | {} | {} |\n",
                    r.server,
                    l.gen_tokens_per_s,
                    l.requests_per_s,
                    p3(&l.ttft_ms, 0),
                    p3(&l.itl_ms, 1),
                    p3(&l.tpot_ms, 1),
                    l.prompt_tokens_mean,
                    l.errors,
                    l.short,
                ));
            }
        }
    }
    let ratios = ratios(runs);
    if !ratios.is_empty() {
        let find = |name: &str, c: usize| {
            runs.iter()
                .find(|r| r.server == name)
                .and_then(|r| r.levels.iter().find(|l| l.concurrency == c))
        };
        s.push_str(
            "\n| streams | perch tokens/s | llama.cpp tokens/s | perch / llama.cpp | \
             TTFT p50 perch / llama.cpp ms | ITL p50 perch / llama.cpp ms |\n\
             |---:|---:|---:|---:|---|---|\n",
        );
        for (c, ratio) in &ratios {
            let (Some(p), Some(l)) = (find("perch", *c), find("llama.cpp", *c)) else {
                continue;
            };
            s.push_str(&format!(
                "| {c} | {:.1} | {:.1} | **{ratio:.2}** | {:.0} / {:.0} | {:.1} / {:.1} |\n",
                p.gen_tokens_per_s,
                l.gen_tokens_per_s,
                p.ttft_ms.p50,
                l.ttft_ms.p50,
                p.itl_ms.p50,
                l.itl_ms.p50
            ));
        }
    }
    s
}

/// Throughput, TTFT and ITL against the concurrency level, a line per server (p99 dashed).
fn serve_chart(a: &ServeArgs, runs: &[Run]) -> Result<String> {
    let x_names: Vec<String> = a.concurrency.iter().map(|c| c.to_string()).collect();
    let line =
        |ri: usize, r: &Run, suffix: &str, dashed: bool, f: &dyn Fn(&Level) -> f64| chart::Line {
            name: format!("{}{suffix}", r.server),
            points: r
                .levels
                .iter()
                .filter_map(|l| {
                    let x = a.concurrency.iter().position(|&c| c == l.concurrency)?;
                    Some((x as f64, f(l)))
                })
                .collect(),
            dashed,
            color: ri,
        };
    let panel = |title: &str, y: &str, lines: Vec<chart::Line>| chart::LinePanel {
        title: title.into(),
        x_label: "concurrent streams".into(),
        y_label: y.into(),
        x_names: x_names.clone(),
        lines,
    };
    let mut tput = Vec::new();
    let mut ttft = Vec::new();
    let mut itl = Vec::new();
    for (i, r) in runs.iter().enumerate() {
        tput.push(line(i, r, "", false, &|l| l.gen_tokens_per_s));
        ttft.push(line(i, r, " p50", false, &|l| l.ttft_ms.p50));
        ttft.push(line(i, r, " p99", true, &|l| l.ttft_ms.p99));
        itl.push(line(i, r, " p50", false, &|l| l.itl_ms.p50));
        itl.push(line(i, r, " p99", true, &|l| l.itl_ms.p99));
    }
    let setup = match &a.url {
        Some(u) => u.clone(),
        None => format!("{} threads, {} slots", a.threads, a.parallel),
    };
    chart::lines(
        &format!(
            "Serving: {} prompt + {} generated tokens per request, {setup}",
            a.prompt_tokens, a.gen_tokens
        ),
        &[
            panel("generation throughput", "tokens/s", tput),
            panel("time to first token", "ms", ttft),
            panel("inter-token latency", "ms", itl),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poisson_arrivals_have_the_requested_rate() {
        let at = arrivals(20_000, Some(50.0), 7);
        assert_eq!(at[0], 0.0);
        assert!(at.windows(2).all(|w| w[1] >= w[0]));
        let rate = (at.len() - 1) as f64 / at[at.len() - 1];
        assert!((rate - 50.0).abs() < 2.0, "rate {rate}");
        assert!(arrivals(5, None, 7).iter().all(|&t| t == 0.0));
    }

    #[test]
    fn prompts_have_the_requested_length_and_eog_is_banned() {
        let model = perch_fixtures::smollm2_q4_1();
        assert!(
            model.is_file(),
            "fixture missing: run `cargo xtask fixtures` ({})",
            model.display()
        );
        let (p, eog) = prompts(&model, 64, 3).unwrap();
        let file = perch_gguf::GgufFile::open(&model).unwrap();
        let tok = perch_tokenizer::Tokenizer::from_gguf(&file).unwrap();
        for (i, text) in p.iter().enumerate() {
            assert!(text.starts_with(&format!("Request {i}.")), "{text}");
            let n = tok.encode(text, true, false).unwrap().len();
            assert!((62..=66).contains(&n), "prompt {i} has {n} tokens");
        }
        assert!(eog.contains(&tok.eos().unwrap()), "{eog:?}");
    }
}
