//! The `perch` command line. Each subcommand lives in its own module; this file only parses
//! flags, sets up logging and maps errors to one clear line and a non-zero exit.

mod bench;
mod chat;
mod convert;
mod deploy;
mod generate;
mod imatrix;
mod inspect;
mod keys;
mod onnx;
mod optimize;
mod perplexity;
mod pull;
mod quantize;
mod run;
mod serve;
mod store;

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
    /// Measure prompt processing and generation speed, as llama-bench does.
    Bench(bench::BenchArgs),
    /// Show what a GGUF or ONNX model file holds: architecture, size, tokenizer, tensor types
    /// (ONNX: producer, opsets, inputs and outputs, operators, initializers, metadata).
    Inspect(inspect::InspectArgs),
    /// Quantize a GGUF model to a llama.cpp file type (Q4_K_M, Q8_0, IQ4_XS, F16...) with its
    /// mix, or an ONNX model with --mode dynamic-int8, int4 or static-int8.
    Quantize(quantize::QuantizeArgs),
    /// ONNX tools: optimize (save ONNX Runtime's optimized graph).
    Onnx(onnx::OnnxArgs),
    /// Convert a Hugging Face model folder or a llama2.c checkpoint to GGUF.
    Convert(convert::ConvertArgs),
    /// Perplexity over a text with llama-perplexity's chunking, and KL divergence against a base.
    Perplexity(perplexity::PerplexityArgs),
    /// Compute an importance matrix over a calibration text (llama.cpp's imatrix GGUF format).
    Imatrix(imatrix::ImatrixArgs),
    /// Find the smallest quantized variant of a model within a KL-divergence budget.
    Optimize(optimize::OptimizeArgs),
    /// Serve models over OpenAI- and Ollama-compatible HTTP APIs.
    Serve(serve::ServeArgs),
    /// Download a model into the store: hf.co/OWNER/REPO[:QUANT] or the URL of a GGUF file.
    Pull(pull::PullArgs),
    /// List the models in the store ($PERCH_HOME).
    List,
    /// Show a model in the store.
    Show(store::ShowArgs),
    /// Add a GGUF file to the store under a name.
    Import(store::ImportArgs),
    /// Create a model in the store from a Modelfile.
    Create(store::CreateArgs),
    /// Copy a model in the store to a new name.
    Cp(store::CopyArgs),
    /// Remove models from the store.
    Rm(store::RemoveArgs),
    /// Write deployment files (`perch deploy dockerfile --model NAME`).
    Deploy(deploy::DeployArgs),
    /// Check the sha256 of models in the store against their manifests.
    Verify(store::VerifyArgs),
    /// Manage API keys for `perch serve --api-key-file` (stored as sha256 hashes).
    Keys(keys::KeysArgs),
}

/// The log level when `PERCH_LOG` is unset: the server logs requests, other commands only
/// warnings.
fn default_log(cli: &Cli) -> &'static str {
    match cli.command {
        Command::Serve(_) => "info",
        _ => "warn",
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PERCH_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_log(&cli))),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Run(args) => run::run(args),
        Command::Chat(args) => chat::run(args),
        Command::Inspect(args) => inspect::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Quantize(args) => quantize::run(args),
        Command::Onnx(args) => onnx::run(args),
        Command::Convert(args) => convert::run(args),
        Command::Perplexity(args) => perplexity::run(args),
        Command::Imatrix(args) => imatrix::run(args),
        Command::Optimize(args) => optimize::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Pull(args) => pull::run(args),
        Command::List => store::list(),
        Command::Show(args) => store::show(args),
        Command::Import(args) => store::import(args),
        Command::Create(args) => store::create(args),
        Command::Cp(args) => store::copy(args),
        Command::Rm(args) => store::remove(args),
        Command::Keys(args) => keys::run(args),
        Command::Verify(args) => store::verify(args),
        Command::Deploy(args) => deploy::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("perch: {e:#}");
            ExitCode::FAILURE
        }
    }
}
