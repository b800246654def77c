//! `cargo xtask`: maintainer tasks (`cargo xtask --help`).

mod bench;
mod ci;
mod fixtures;
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
    /// Benchmarks of the whole system (speed beside llama.cpp).
    Bench {
        #[command(subcommand)]
        what: BenchTask,
    },
}

#[derive(Subcommand)]
enum BenchTask {
    /// Prompt processing and generation tokens/s, perch beside llama.cpp (`--vs llama.cpp`).
    Speed(bench::SpeedArgs),
    /// Load and soak test of `perch serve` (or `--url`): concurrent streams, drops, KV and
    /// memory checks, latency percentiles (`--soak` for 64 clients × 1,000 requests).
    Serve(soak::ServeArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Fixtures { write_manifest } => fixtures::run(write_manifest),
        Task::Ci => ci::run(),
        Task::Bench {
            what: BenchTask::Speed(args),
        } => bench::speed(args),
        Task::Bench {
            what: BenchTask::Serve(args),
        } => soak::serve(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
