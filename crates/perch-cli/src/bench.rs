//! `perch bench MODEL`: prompt processing and generation speed, measured as llama-bench
//! measures them, so the two tools' numbers compare.
//!
//! * `pp N`: one prompt of N tokens computed in batches of `--batch-size` in a fresh context;
//!   tokens per second of the whole prompt.
//! * `tg N`: N tokens generated one at a time in a fresh context (each step one token, as in
//!   decoding); tokens per second.
//!
//! Token ids are drawn from the vocabulary with a fixed seed (llama-bench uses random tokens
//! too: speed does not depend on which). One warm-up run precedes the timed repetitions;
//! results are the mean and standard deviation of the repetitions' rates.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use perch_engine::Model;
use perch_engine::session::{Session, SessionConfig, default_threads};
use serde::Serialize;

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
            let (avg, sd) = mean_sd(&samples);
            let r = BenchResult {
                model: name.clone(),
                size,
                params,
                threads: t,
                test: format!("{}{n}", if prompt { "pp" } else { "tg" }),
                samples,
                avg_ts: avg,
                stddev_ts: sd,
            };
            if args.json {
                println!("{}", serde_json::to_string(&r)?);
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
        }
    }
    Ok(())
}

/// Tokens per second of one run of a test in a fresh context.
fn time_test(
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
