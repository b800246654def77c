//! Random-weight GGUF models of real shapes for speed work, with a real vocabulary from the
//! fixtures (what `cargo xtask synth` runs, in release):
//!
//!     cargo run --release -p perch-cli --example synth_model -- --shape llama-3.2-1b --type Q4_K_M -o OUT
//!
//! `--type` is a ggml type (every matrix in it) or a llama.cpp file type such as Q4_K_M, made
//! by writing F16 weights to a temporary file and quantizing them with llama-quantize's mix
//! (perch-convert). Random weights say nothing of quality.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use perch_convert::{FileType, QuantizeOptions, quantize_file};
use perch_engine::synth::{self, SHAPES, SynthSpec};
use perch_gguf::GgufFile;
use perch_quant::{GgmlType, has_quantizer};

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let (mut shape, mut ty, mut out, mut seed) = (None, None, None, 42u64);
    while let Some(a) = args.next() {
        let mut val = || args.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--shape" => shape = Some(val()?),
            "--type" => ty = Some(val()?),
            "-o" | "--output" => out = Some(PathBuf::from(val()?)),
            "--seed" => seed = val()?.parse().context("--seed")?,
            other => bail!("unknown argument {other:?}"),
        }
    }
    let names: Vec<&str> = SHAPES.iter().map(|s| s.0).collect();
    let shape = shape.with_context(|| format!("--shape is one of {}", names.join(", ")))?;
    let vocab_name = SHAPES
        .iter()
        .find(|s| s.0 == shape)
        .with_context(|| {
            format!(
                "unknown shape {shape:?}; the shapes are {}",
                names.join(", ")
            )
        })?
        .1;
    let ty = ty.unwrap_or_else(|| "Q4_K_M".into());
    let out = out.unwrap_or_else(|| PathBuf::from(format!("{shape}-{ty}.gguf")));
    let vocab = GgufFile::open(perch_fixtures::vocab(vocab_name))
        .context("opening the vocabulary (run `cargo xtask fixtures`)")?;
    let bar = ProgressBar::new(0);
    bar.set_style(ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}",
    )?);
    let progress = |done: usize, total: usize| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    };
    if let Some(t) = GgmlType::from_name(&ty).filter(|t| has_quantizer(*t)) {
        bar.set_message(format!("writing {t} weights"));
        let spec = SynthSpec::named(&shape, t, seed).expect("known shape");
        synth::write(&spec, &vocab, &out, progress)?;
    } else {
        let ft = FileType::from_name(&ty)
            .with_context(|| format!("--type {ty:?} is neither a ggml type nor a file type"))?;
        let spec = SynthSpec::named(&shape, GgmlType::F16, seed).expect("known shape");
        let f16 = out.with_extension("f16.tmp.gguf");
        bar.set_message("writing F16 weights");
        synth::write(&spec, &vocab, &f16, progress)?;
        bar.set_message(format!("quantizing to {ft}"));
        let r = quantize_file(&f16, &out, &QuantizeOptions::new(ft), |p| {
            bar.set_length(p.total as u64);
            bar.set_position(p.done as u64);
        });
        std::fs::remove_file(&f16).ok();
        r?;
    }
    bar.finish_and_clear();
    println!("{}", out.display());
    Ok(())
}
