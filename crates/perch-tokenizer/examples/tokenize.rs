//! Tokenizes text with the vocabulary of a GGUF file, like llama.cpp's `llama-tokenize`,
//! and reports how long building the tokenizer took (best of several builds).
//!
//! `cargo run -p perch-tokenizer --release --example tokenize -- MODEL.gguf "text" [--no-bos] [--parse-special]`

use std::time::{Duration, Instant};

use perch_gguf::GgufFile;
use perch_tokenizer::{Tokenizer, Vocab};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(path), Some(text)) = (args.first(), args.get(1)) else {
        eprintln!("usage: tokenize MODEL.gguf TEXT [--no-bos] [--parse-special]");
        std::process::exit(2);
    };
    let add_special = !args.iter().any(|a| a == "--no-bos");
    let parse_special = args.iter().any(|a| a == "--parse-special");

    let t0 = Instant::now();
    let file = GgufFile::open(path)?;
    let t_open = t0.elapsed();
    let vocab = Vocab::from_gguf(&file)?;
    let mut best = Duration::MAX;
    let mut tok = None;
    for _ in 0..5 {
        let t = Instant::now();
        let built = Tokenizer::from_vocab(&vocab)?;
        best = best.min(t.elapsed());
        tok = Some(built);
    }
    let tok = tok.expect("built at least once");
    eprintln!(
        "open {:.1} ms, build (best of 5) {:.1} ms: {tok:?}",
        t_open.as_secs_f64() * 1e3,
        best.as_secs_f64() * 1e3
    );
    let ids = tok.encode(text, add_special, parse_special)?;
    for &id in &ids {
        let piece = String::from_utf8_lossy(tok.token_to_piece(id, true)?).into_owned();
        println!("{id:>7} -> {piece:?}");
    }
    Ok(())
}
