//! The `perch` command line.

use clap::Parser;

/// perch: run quantized language models on the CPU and serve them over OpenAI- and
/// Ollama-compatible APIs.
#[derive(Parser, Debug)]
#[command(name = "perch", version, about)]
enum Cli {}

fn main() -> anyhow::Result<()> {
    let _cli = Cli::parse();
    Ok(())
}
