//! `perch bench MODEL`: prompt processing and generation speed, measured as llama-bench
//! measures them, so the two tools' numbers compare.
//!
//! * `pp N`: one prompt of N tokens computed in batches of `--batch-size` in a fresh context;
//!   tokens per second of the whole prompt.
//! * `tg N`: N tokens generated one at a time in a fresh context (each step one token, as in
//!   decoding); tokens per second.
//!
//! * `--concurrency 1,4,16`: that many requests of `-n` generated tokens each (after a short
//!   prompt of their own) through the continuous-batching engine at once; the aggregate rate
//!   of generated tokens over the wall time (`tgN@cC` rows).
//! * `--prefix N`: time to first token of a request whose first N prompt tokens another
//!   request already brought into the prefix cache, against the same request with a cold
//!   cache (`ttft` rows, in milliseconds, and the speed-up).
//!
//! Token ids are drawn from the vocabulary with a fixed seed (llama-bench uses random tokens
//! too: speed does not depend on which). One warm-up run precedes the timed repetitions;
//! results are the mean and standard deviation of the repetitions' rates.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use perch_engine::Model;
use perch_engine::engine::{Engine, EngineConfig, Event, GenerationRequest};
use perch_engine::sampling::SamplingParams;
use perch_engine::session::{Session, SessionConfig, default_threads};
use perch_tokenizer::Tokenizer;
use serde::Serialize;
use tokio::sync::mpsc::UnboundedReceiver;

use crate::inspect::human_bytes;

/// Arguments of `perch bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// The GGUF model file.
    pub model: PathBuf,
    /// Prompt lengths to time (comma-separated; 0 for none).
    #[arg(
        short = 'p',
        long = "n-prompt",
        value_delimiter = ',',
        default_value = "512"
    )]
    pub n_prompt: Vec<usize>,
    /// Generation lengths to time (comma-separated; 0 for none).
    #[arg(
        short = 'n',
        long = "n-gen",
        value_delimiter = ',',
        default_value = "128"
    )]
    pub n_gen: Vec<usize>,
    /// Thread counts (comma-separated; default: the physical cores).
    #[arg(short = 't', long, value_delimiter = ',')]
    pub threads: Vec<usize>,
    /// Tokens per forward step while reading a prompt.
    #[arg(short = 'b', long = "batch-size", default_value_t = 512)]
    pub batch_size: usize,
    /// Timed repetitions of each test.
    #[arg(short = 'r', long, default_value_t = 5)]
    pub repetitions: usize,
    /// Concurrent generation requests through the engine (comma-separated; none by default).
    #[arg(long, value_delimiter = ',')]
    pub concurrency: Vec<usize>,
    /// Measure time to first token with this many prompt tokens already cached (0: skip).
    #[arg(long, default_value_t = 0)]
    pub prefix: usize,
    /// Print JSON (one object per test) instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// One measured test.
#[derive(Clone, Debug, Serialize)]
pub struct BenchResult {
    /// The model file's name.
    pub model: String,
    /// The file's size in bytes.
    pub size: u64,
    /// Parameters.
    pub params: u64,
    /// Compute threads.
    pub threads: usize,
    /// `"pp512"`, `"tg128"`.
    pub test: String,
    /// Tokens per second of each repetition.
    pub samples: Vec<f64>,
    /// Mean tokens per second.
    pub avg_ts: f64,
    /// Standard deviation of the tokens per second.
    pub stddev_ts: f64,
}

/// Run the command.
pub fn run(args: BenchArgs) -> Result<()> {
    if args.repetitions == 0 || args.batch_size == 0 {
        bail!("--repetitions and --batch-size must be positive");
    }
    let threads = if args.threads.is_empty() {
        vec![default_threads()]
    } else {
        args.threads.clone()
    };
    if threads.contains(&0) {
        bail!("--threads must be positive");
    }
    let model = Arc::new(
        Model::open(&args.model)
            .with_context(|| format!("cannot load model {}", args.model.display()))?,
    );
    let name = args
        .model
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let size = model.file().len();
    let params: u64 = model.file().tensors().iter().map(|t| t.n_elements).sum();
    let n_ctx_train = model.config().n_ctx_train;
    let tests: Vec<(bool, usize)> = args
        .n_prompt
        .iter()
        .filter(|&&n| n > 0)
        .map(|&n| (true, n))
        .chain(args.n_gen.iter().filter(|&&n| n > 0).map(|&n| (false, n)))
        .collect();
    if let Some(&(_, n)) = tests.iter().find(|&&(_, n)| n > n_ctx_train) {
        bail!("a test of {n} tokens does not fit the model's context of {n_ctx_train}");
    }
    let report = |r: &BenchResult| -> Result<()> {
        if args.json {
            println!("{}", serde_json::to_string(r)?);
        } else {
            println!(
                "| {} | {} | {:.2} M | {} | {} | {:.2} ± {:.2} |",
                r.model,
                human_bytes(r.size),
                r.params as f64 / 1e6,
                r.threads,
                r.test,
                r.avg_ts,
                r.stddev_ts
            );
        }
        Ok(())
    };
    let result = |t: usize, test: String, samples: Vec<f64>| {
        let (avg, sd) = mean_sd(&samples);
        BenchResult {
            model: name.clone(),
            size,
            params,
            threads: t,
            test,
            samples,
            avg_ts: avg,
            stddev_ts: sd,
        }
    };
    if !args.json {
        println!("| model | size | params | threads | test | t/s |");
        println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    }
    for &t in &threads {
        for &(prompt, n) in &tests {
            let samples = (0..=args.repetitions)
                .map(|_| time_test(&model, t, args.batch_size, prompt, n))
                .collect::<Result<Vec<f64>>>()?
                .split_off(1); // the first run warms caches and page-ins
            let test = format!("{}{n}", if prompt { "pp" } else { "tg" });
            report(&result(t, test, samples))?;
        }
        let n_gen = args.n_gen.iter().copied().find(|&n| n > 0).unwrap_or(128);
        for &c in args.concurrency.iter().filter(|&&c| c > 0) {
            let samples = (0..=args.repetitions)
                .map(|_| time_concurrent(&model, t, c, n_gen))
                .collect::<Result<Vec<f64>>>()?
                .split_off(1);
            report(&result(t, format!("tg{n_gen}@c{c}"), samples))?;
        }
        if args.prefix > 0 {
            let (cold, warm) = time_prefix(&model, t, args.prefix)?;
            // Reported as first tokens per second; the milliseconds go to stderr.
            eprintln!(
                "time to first token with a {}-token prompt: {:.1} ms cold, {:.1} ms with its \
                 first {} tokens cached ({:.1}x faster)",
                args.prefix + PREFIX_TAIL,
                cold * 1e3,
                warm * 1e3,
                args.prefix,
                cold / warm
            );
            report(&result(
                t,
                format!("ttft{}-cold", args.prefix),
                vec![1.0 / cold],
            ))?;
            report(&result(
                t,
                format!("ttft{}-cached", args.prefix),
                vec![1.0 / warm],
            ))?;
        }
    }
    Ok(())
}

/// Prompt tokens each concurrent request has of its own, and that follow a cached prefix.
const PREFIX_TAIL: usize = 16;

/// An engine for `model` with room for `seqs` sequences of `n_ctx` tokens.
fn engine(model: &Arc<Model>, threads: usize, seqs: usize, n_ctx: usize) -> Result<Engine> {
    let tokenizer = Arc::new(Tokenizer::from_gguf(model.file())?);
    let cfg = EngineConfig::for_model(model, n_ctx, seqs, None, threads);
    Ok(Engine::start(model.clone(), tokenizer, cfg)?)
}

fn request(prompt: Vec<u32>, max_tokens: usize) -> GenerationRequest {
    GenerationRequest {
        prompt,
        sampling: SamplingParams::greedy(),
        max_tokens,
        stop: Vec::new(),
        ignore_eos: true,
        logprobs: None,
        constraint: None,
    }
}

/// Drains a request's events; returns the time of its first token.
fn drain(mut rx: UnboundedReceiver<Event>, started: Instant) -> Result<Option<f64>> {
    let mut first = None;
    while let Some(ev) = rx.blocking_recv() {
        match ev {
            Event::Token { .. } => {
                first.get_or_insert_with(|| started.elapsed().as_secs_f64());
            }
            Event::Done { .. } => return Ok(first),
            Event::Error(e) => bail!("generation failed: {e}"),
        }
    }
    bail!("the engine stopped")
}

/// Aggregate generated tokens per second of `c` concurrent requests of `n` tokens.
fn time_concurrent(model: &Arc<Model>, threads: usize, c: usize, n: usize) -> Result<f64> {
    let e = engine(model, threads, c, PREFIX_TAIL + n + 1)?;
    let h = e.handle();
    let n_vocab = model.config().n_vocab;
    let all = token_ids(n_vocab, c * PREFIX_TAIL);
    let started = Instant::now();
    let rxs = all
        .chunks(PREFIX_TAIL)
        .map(|p| h.submit(request(p.to_vec(), n)))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    for rx in rxs {
        drain(rx, started)?;
    }
    Ok((c * n) as f64 / started.elapsed().as_secs_f64())
}

/// Seconds to the first token of a `prefix + PREFIX_TAIL`-token prompt, cold and with the
/// prefix cached by an earlier request.
fn time_prefix(model: &Arc<Model>, threads: usize, prefix: usize) -> Result<(f64, f64)> {
    let n_ctx = prefix + PREFIX_TAIL + 2;
    let ids = token_ids(model.config().n_vocab, prefix + 2 * PREFIX_TAIL);
    let first = ids[..prefix + PREFIX_TAIL].to_vec();
    let mut second = ids[..prefix].to_vec();
    second.extend_from_slice(&ids[prefix + PREFIX_TAIL..]);
    let ttft = |e: &Engine, prompt: Vec<u32>| -> Result<f64> {
        let started = Instant::now();
        let rx = e.handle().submit(request(prompt, 1))?;
        drain(rx, started)?.context("no token was generated")
    };
    // Cold: a fresh engine, nothing cached.
    let cold = ttft(&engine(model, threads, 2, n_ctx)?, second.clone())?;
    // Warm: the first request leaves the shared prefix in the cache.
    let e = engine(model, threads, 2, n_ctx)?;
    ttft(&e, first)?;
    let warm = ttft(&e, second)?;
    Ok((cold, warm))
}

/// Tokens per second of one run of a test in a fresh context.
pub(crate) fn time_test(
    model: &Arc<Model>,
    threads: usize,
    batch: usize,
    prompt: bool,
    n: usize,
) -> Result<f64> {
    let cfg = SessionConfig {
        n_ctx: n + 1,
        n_batch: batch,
        threads,
        ..SessionConfig::default()
    };
    let mut s = Session::new(model.clone(), cfg)?;
    let tokens = token_ids(model.config().n_vocab, n);
    let started = Instant::now();
    if prompt {
        s.feed(&tokens, false)?;
    } else {
        for &t in &tokens {
            s.feed(&[t], false)?;
        }
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

/// `n` token ids spread over the vocabulary (a fixed xorshift sequence).
fn token_ids(n_vocab: usize, n: usize) -> Vec<u32> {
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n_vocab as u64) as u32
        })
        .collect()
}

fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (mean, var.sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistics() {
        let (m, sd) = mean_sd(&[2.0, 4.0, 6.0]);
        assert_eq!(m, 4.0);
        assert_eq!(sd, 2.0);
        assert_eq!(mean_sd(&[5.0]), (5.0, 0.0));
    }

    #[test]
    fn token_ids_stay_in_the_vocabulary() {
        let ids = token_ids(100, 1000);
        assert!(ids.iter().all(|&t| t < 100));
        assert!(ids.iter().collect::<std::collections::HashSet<_>>().len() > 50);
    }
}
