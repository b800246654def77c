//! The `perch` command line. Each subcommand lives in its own module; this file only parses
//! flags, sets up logging and maps errors to one clear line and a non-zero exit.

mod chat;
mod generate;
mod inspect;
mod quantize;
mod run;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// perch: run quantized language models on the CPU and serve them over OpenAI- and
/// Ollama-compatible APIs.
#[derive(Parser, Debug)]
#[command(name = "perch", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Generate one completion for a prompt, streamed to stdout.
    Run(run::RunArgs),
    /// Chat with a model in the terminal.
    Chat(chat::ChatArgs),
    /// Show what a GGUF model file holds: architecture, size, tokenizer, tensor types.
    Inspect(inspect::InspectArgs),
    /// Quantize a GGUF model to a llama.cpp file type (Q4_K_M, Q8_0, IQ4_XS, F16...) with its mix.
    Quantize(quantize::QuantizeArgs),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PERCH_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run::run(args),
        Command::Chat(args) => chat::run(args),
        Command::Inspect(args) => inspect::run(args),
        Command::Quantize(args) => quantize::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("perch: {e:#}");
            ExitCode::FAILURE
        }
    }
}
