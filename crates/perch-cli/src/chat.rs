//! `perch chat MODEL`: an interactive multi-turn chat in the terminal.
//!
//! The conversation is re-rendered through the chat template each turn; only the part of the
//! prompt that differs from what the context already holds is computed. When the context
//! fills up, the oldest turns are dropped (the system message stays) and the user is told.

use std::io::{BufRead, Write};

use anyhow::Result;
use serde_json::{Value, json};

use crate::generate::{self, Loaded, ModelArgs, SamplingArgs};

/// Arguments of `perch chat`.
#[derive(clap::Args, Debug)]
pub struct ChatArgs {
    /// The GGUF model file, or a model name in the store.
    pub model: String,
    /// A system message for the whole conversation (default: the store model's).
    #[arg(long)]
    pub system: Option<String>,
    #[command(flatten)]
    pub model_args: ModelArgs,
    #[command(flatten)]
    pub sampling: SamplingArgs,
}

/// Run the command.
pub fn run(args: ChatArgs) -> Result<()> {
    let (loaded, entry) = generate::load(&args.model, &args.model_args)?;
    let manifest = entry.map(|e| e.manifest);
    // A store model's parameters, system prompt and messages apply unless flags say otherwise.
    let sampling = match &manifest {
        Some(m) => args.sampling.clone().with_stored(&m.parameters),
        None => args.sampling.clone(),
    };
    let stops = manifest
        .as_ref()
        .map(|m| generate::stored_stops(&m.parameters))
        .unwrap_or_default();
    let mut system: Vec<Value> = args
        .system
        .clone()
        .or_else(|| manifest.as_ref().and_then(|m| m.system.clone()))
        .iter()
        .map(|s| json!({"role": "system", "content": s}))
        .collect();
    if let Some(m) = &manifest {
        system.extend(m.messages.iter().cloned());
    }
    let mut turns: Vec<Value> = Vec::new();
    eprintln!(
        "perch chat: type a message; /clear forgets the conversation, /exit (or Ctrl-D) quits."
    );
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        eprint!("> ");
        std::io::stderr().flush()?;
        let Some(line) = lines.next() else { break };
        let line = line?;
        match line.trim() {
            "" => continue,
            "/exit" | "/quit" => break,
            "/clear" => {
                turns.clear();
                eprintln!("(conversation cleared)");
                continue;
            }
            _ => {}
        }
        turns.push(json!({"role": "user", "content": line}));
        let prompt = fit_context(&loaded, &system, &mut turns, &sampling)?;
        let Some(prompt) = prompt else {
            eprintln!("(that message alone does not fit the context; raise --ctx-size)");
            turns.pop();
            continue;
        };
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        let (reply, stats) = generate::generate(&loaded, prompt, &sampling, &stops, &mut out)?;
        writeln!(out)?;
        drop(out);
        eprintln!("{}", stats.report());
        if let Some(line) = generate::speculative_report(&loaded.handle().stats()) {
            eprintln!("{line}");
        }
        turns.push(json!({"role": "assistant", "content": reply}));
    }
    Ok(())
}

/// Render the conversation, dropping the oldest turns until it fits with room to answer.
/// (What the context already holds is found again by the engine's prefix cache.)
fn fit_context(
    loaded: &Loaded,
    system: &[Value],
    turns: &mut Vec<Value>,
    sampling: &SamplingArgs,
) -> Result<Option<Vec<u32>>> {
    let n_ctx = loaded.n_ctx();
    let room = sampling
        .max_tokens
        .unwrap_or(n_ctx / 4)
        .min(n_ctx / 2)
        .max(1);
    let mut dropped = 0;
    loop {
        let messages: Vec<Value> = system.iter().chain(turns.iter()).cloned().collect();
        let tokens = loaded.chat_prompt(&messages)?;
        if tokens.len() + room <= n_ctx {
            if dropped > 0 {
                eprintln!("(context full: dropped the {dropped} oldest message(s))");
            }
            return Ok(Some(tokens));
        }
        if turns.len() <= 1 {
            return Ok(None);
        }
        // Drop the oldest user turn and the reply that followed it.
        turns.remove(0);
        dropped += 1;
        if turns.first().is_some_and(|m| m["role"] == "assistant") {
            turns.remove(0);
            dropped += 1;
        }
    }
}
