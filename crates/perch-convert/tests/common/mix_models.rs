//! The synthetic models the mix tests record llama-quantize's choices on: widths divisible by
//! 256, so the K-quant rules apply without fallbacks, and more layers than SmolLM2's shapes
//! exercise. Shared by `examples/mix_models.rs` (which writes them for
//! `scripts/record_peer_mixes.py`) and `tests/mixes.rs` (which rebuilds the same files).

use std::path::{Path, PathBuf};

use perch_engine::config::Arch;
use perch_engine::synth::{self, SynthSpec};
use perch_gguf::GgufFile;
use perch_quant::GgmlType;

/// A synthetic model: its file stem, its shape and the vocabulary it borrows
/// (`None`: the SmolLM2 fixture's).
pub struct MixModel {
    /// File stem, also the key of its record.
    pub name: &'static str,
    /// Shape.
    pub spec: SynthSpec,
    /// One of llama.cpp's vocab-only files, or `None` for SmolLM2's vocabulary.
    pub vocab: Option<&'static str>,
}

fn spec(arch: Arch, n_layer: usize, n_head_kv: usize, n_ff: usize, untied: bool) -> SynthSpec {
    let mut s = SynthSpec::tiny(arch, GgmlType::F32, 7);
    s.n_embd = 256;
    s.n_layer = n_layer;
    s.n_head = 4;
    s.n_head_kv = n_head_kv;
    s.head_dim = 64;
    s.n_ff = n_ff;
    s.untied_output = untied;
    s
}

/// The models: llama with 16 layers, tied embeddings and 4 query heads per KV head; qwen2
/// with 12 layers and a separate output matrix; phi3 with its fused `attn_qkv`; qwen3 with
/// 10 layers and tied embeddings; gemma3 with 8 layers, 4 query heads per KV head.
pub fn mix_models() -> Vec<MixModel> {
    vec![
        MixModel {
            name: "llama-16l",
            spec: spec(Arch::Llama, 16, 1, 768, false),
            vocab: None,
        },
        MixModel {
            name: "qwen2-12l",
            spec: spec(Arch::Qwen2, 12, 2, 512, true),
            vocab: None,
        },
        MixModel {
            name: "phi3-8l",
            spec: spec(Arch::Phi3, 8, 4, 512, true),
            vocab: Some("phi-3"),
        },
        MixModel {
            name: "qwen3-10l",
            spec: spec(Arch::Qwen3, 10, 2, 768, false),
            vocab: None,
        },
        MixModel {
            name: "gemma3-8l",
            spec: spec(Arch::Gemma3, 8, 1, 768, false),
            vocab: None,
        },
    ]
}

/// Writes `m` as F32 into `dir`, returning its path.
pub fn write(m: &MixModel, dir: &Path) -> PathBuf {
    let vocab = GgufFile::open(match m.vocab {
        Some(v) => perch_fixtures::vocab(v),
        None => perch_fixtures::smollm2_q4_1(),
    })
    .expect("the vocabulary file opens");
    let path = dir.join(format!("{}.gguf", m.name));
    synth::write(&m.spec, &vocab, &path, |_, _| {}).expect("the synthetic model is written");
    path
}
