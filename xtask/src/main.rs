//! `cargo xtask`: maintainer tasks (`cargo xtask --help`).

mod bench;
mod chart;
mod ci;
mod fixtures;
mod http;
mod kernels;
mod load;
mod quality;
mod results;
mod soak;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "perch maintainer tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Fetch the pinned test fixtures (models/fixtures.toml) into models/cache/.
    ///
    /// Does nothing when every file is present with the right sha256.
    Fixtures {
        /// Regenerate the per-file lists and hashes in models/fixtures.toml from the
        /// pinned archives instead.
        #[arg(long)]
        write_manifest: bool,
    },
    /// Run the whole check: fixtures, fmt, clippy -D warnings, all tests (ci profile).
    Ci,
    /// Write a random-weight model of a real shape (llama-3.2-1b, qwen2.5-0.5b, llama-3-8b)
    /// for speed work: `cargo xtask synth --shape llama-3.2-1b --type Q4_K_M -o FILE`.
    Synth {
        /// Arguments passed on (--shape, --type, -o, --seed).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Benchmarks beside llama.cpp (`--vs llama.cpp`): tables, JSON and SVG charts under
    /// results/.
    Bench {
        #[command(subcommand)]
        what: BenchTask,
    },
}

#[derive(Subcommand)]
enum BenchTask {
    /// Prompt processing and generation tokens/s, perch beside llama.cpp (`--vs llama.cpp`).
    Speed(bench::SpeedArgs),
    /// Size, perplexity and KL divergence per quantization type, perch beside llama-quantize.
    Quality(quality::QualityArgs),
    /// Serving throughput, time to first token and inter-token latency per concurrency level
    /// of `perch serve` (or `--url`), beside llama-server (`--vs llama.cpp`); `--soak`: the
    /// load and soak test (drops, KV and memory checks; 64 clients × 1,000 requests).
    Serve(Box<soak::ServeArgs>),
    /// perch-quant's kernel microbenchmarks (criterion), beside ggml's (`--vs llama.cpp`).
    Kernels(kernels::KernelsArgs),
    /// The machine's memory read bandwidth on 1 and 2 threads.
    Bandwidth(kernels::BandwidthArgs),
}

/// Runs the synthetic-model writer (an example of perch-cli) in release.
fn synth(args: &[String]) -> anyhow::Result<()> {
    let status = std::process::Command::new(env!("CARGO"))
        .args([
            "run",
            "--release",
            "--quiet",
            "-p",
            "perch-cli",
            "--example",
            "synth_model",
            "--",
        ])
        .args(args)
        .current_dir(perch_fixtures::workspace_root())
        .status()?;
    anyhow::ensure!(status.success(), "synth failed");
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Fixtures { write_manifest } => fixtures::run(write_manifest),
        Task::Ci => ci::run(),
        Task::Synth { args } => synth(&args),
        Task::Bench {
            what: BenchTask::Speed(args),
        } => bench::speed(args),
        Task::Bench {
            what: BenchTask::Quality(args),
        } => quality::quality(args),
        Task::Bench {
            what: BenchTask::Serve(args),
        } => {
            if args.soak {
                soak::serve(*args)
            } else {
                load::serve(*args)
            }
        }
        Task::Bench {
            what: BenchTask::Kernels(args),
        } => kernels::kernels(args),
        Task::Bench {
            what: BenchTask::Bandwidth(args),
        } => kernels::bandwidth(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
