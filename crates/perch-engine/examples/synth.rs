//! Writes the tiny synthetic models the engine's peer tests use (one per architecture), with
//! the SmolLM2 fixture's vocabulary: `cargo run -p perch-engine --example synth -- DIR`.
//! `scripts/record_peer_engine.py` runs llama.cpp on them; the tests rebuild the same bytes.

use std::path::PathBuf;

use perch_engine::synth::{self, SynthSpec};
use perch_gguf::GgufFile;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from(std::env::args().nth(1).ok_or("usage: synth DIR")?);
    std::fs::create_dir_all(&dir)?;
    for (arch, name) in perch_engine::synth::TINY_ARCHS {
        let vocab = GgufFile::open(match synth::tiny_vocab(*arch) {
            Some(v) => perch_fixtures::vocab(v),
            None => perch_fixtures::smollm2_q4_1(),
        })?;
        for ty in perch_engine::synth::TINY_TYPES {
            let spec = SynthSpec::tiny(*arch, *ty, 42);
            let path = dir.join(format!("tiny-{name}-{}.gguf", ty.name()));
            synth::write(&spec, &vocab, &path, |_, _| {})?;
            println!("{}", path.display());
        }
    }
    Ok(())
}
