//! `perch run MODEL [PROMPT]`: one completion streamed to stdout.

use std::io::{IsTerminal, Read, Write};

use anyhow::{Context, Result};
use serde_json::json;

use crate::generate::{self, ModelArgs, SamplingArgs};

/// Arguments of `perch run`.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// The GGUF model file, or a model name in the store.
    pub model: String,
    /// The prompt (read from standard input when absent).
    pub prompt: Option<String>,
    /// Send the prompt as it is, without the chat template.
    #[arg(long)]
    pub raw: bool,
    /// A system message (chat template only; default: the store model's system prompt).
    #[arg(long, conflicts_with = "raw")]
    pub system: Option<String>,
    /// Stop when this text is produced (repeatable); it is not printed.
    #[arg(long = "stop")]
    pub stop: Vec<String>,
    #[command(flatten)]
    pub model_args: ModelArgs,
    #[command(flatten)]
    pub sampling: SamplingArgs,
}

/// Run the command.
pub fn run(args: RunArgs) -> Result<()> {
    let prompt = match args.prompt {
        Some(p) => p,
        None => {
            if std::io::stdin().is_terminal() {
                anyhow::bail!("no prompt: give one after the model, or pipe it on standard input");
            }
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("reading the prompt from standard input")?;
            s
        }
    };
    let (loaded, entry) = generate::load(&args.model, &args.model_args)?;
    let manifest = entry.map(|e| e.manifest);
    let (sampling, stop) = match &manifest {
        Some(m) => (
            args.sampling.clone().with_stored(&m.parameters),
            if args.stop.is_empty() {
                generate::stored_stops(&m.parameters)
            } else {
                args.stop.clone()
            },
        ),
        None => (args.sampling.clone(), args.stop.clone()),
    };
    let tokens = if args.raw {
        loaded.raw_prompt(&prompt)?
    } else {
        let mut messages = Vec::new();
        let system = args
            .system
            .clone()
            .or_else(|| manifest.as_ref().and_then(|m| m.system.clone()));
        if let Some(sys) = system {
            messages.push(json!({"role": "system", "content": sys}));
        }
        if let Some(m) = &manifest {
            messages.extend(m.messages.iter().cloned());
        }
        messages.push(json!({"role": "user", "content": prompt}));
        loaded.chat_prompt(&messages)?
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let (_, stats) = generate::generate(&loaded, tokens, &sampling, &stop, &mut out)?;
    writeln!(out)?;
    eprintln!("{}", stats.report());
    if let Some(line) = generate::speculative_report(&loaded.handle().stats()) {
        eprintln!("{line}");
    }
    Ok(())
}
