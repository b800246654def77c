//! Synthetic models: random weights in the real tensor layout of each architecture.
//!
//! Used by tests (tiny models of every architecture, compared with llama.cpp on the same file)
//! and by `cargo xtask synth` (real dimensions for speed work). Random weights say nothing of
//! quality; they exercise every code path and give llama.cpp and perch the same numbers to
//! disagree about. Generation is deterministic in the seed and streams tensor by tensor, so a
//! multi-gigabyte model never sits in memory.

use std::path::Path;

use perch_gguf::{GgufFile, GgufWriter, Metadata, TensorInfo, Value, keys};
use perch_quant::GgmlType;

use crate::config::Arch;
use crate::error::{EngineError, Result};

/// The shape of a synthetic model.
#[derive(Clone, Debug, PartialEq)]
pub struct SynthSpec {
    /// Architecture.
    pub arch: Arch,
    /// Residual width.
    pub n_embd: usize,
    /// Blocks.
    pub n_layer: usize,
    /// Query heads.
    pub n_head: usize,
    /// Key/value heads.
    pub n_head_kv: usize,
    /// Head width.
    pub head_dim: usize,
    /// Feed-forward width.
    pub n_ff: usize,
    /// Trained context length to record.
    pub n_ctx: usize,
    /// Type of the 2-D weight matrices (norms stay F32).
    pub weight_type: GgmlType,
    /// Type of the token embeddings.
    pub embd_type: GgmlType,
    /// A separate output matrix instead of tied embeddings.
    pub untied_output: bool,
    /// Sliding window for the architectures that have one.
    pub sliding_window: usize,
    /// Random seed.
    pub seed: u64,
}

impl SynthSpec {
    /// A tiny model of `arch` for tests: 2 layers, 64 wide, 4 heads (2 KV heads).
    pub fn tiny(arch: Arch, weight_type: GgmlType, seed: u64) -> SynthSpec {
        SynthSpec {
            arch,
            n_embd: 64,
            n_layer: 2,
            n_head: 4,
            n_head_kv: 2,
            head_dim: 16,
            n_ff: 128,
            n_ctx: 512,
            weight_type,
            embd_type: weight_type,
            untied_output: !matches!(arch, Arch::Llama | Arch::Gemma2),
            sliding_window: 8,
            seed,
        }
    }
}

/// splitmix64: a small, well-known generator; plenty for random test weights.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [-1, 1).
    fn uniform(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

/// What one tensor is filled with.
#[derive(Clone, Copy)]
enum Fill {
    /// Uniform with this half-width.
    Uniform(f32),
    /// 1 + uniform(±0.1), for norm weights.
    Norm,
}

struct Planned {
    info: TensorInfo,
    fill: Fill,
}

fn arch_name(arch: Arch) -> &'static str {
    match arch {
        Arch::Llama => "llama",
        Arch::Qwen2 => "qwen2",
        Arch::Qwen3 => "qwen3",
        Arch::Gemma2 => "gemma2",
        Arch::Gemma3 => "gemma3",
        Arch::Phi3 => "phi3",
    }
}

fn plan(spec: &SynthSpec, n_vocab: usize) -> Result<Vec<Planned>> {
    let (e, hd, ff) = (spec.n_embd as u64, spec.head_dim as u64, spec.n_ff as u64);
    let (qd, kd) = (spec.n_head as u64 * hd, spec.n_head_kv as u64 * hd);
    let wt = spec.weight_type;
    let mut out = Vec::new();
    let mut add = |name: String, ty: GgmlType, dims: Vec<u64>, fill: Fill| -> Result<()> {
        out.push(Planned {
            info: TensorInfo::new(name, ty, dims)?,
            fill,
        });
        Ok(())
    };
    // Weights scaled so every projection keeps activations near unit size.
    let w = |cols: u64| Fill::Uniform(3f32.sqrt() / (cols as f32).sqrt());
    add(
        "token_embd.weight".into(),
        spec.embd_type,
        vec![e, n_vocab as u64],
        Fill::Uniform(1.0),
    )?;
    add(
        "output_norm.weight".into(),
        GgmlType::F32,
        vec![e],
        Fill::Norm,
    )?;
    if spec.untied_output {
        add("output.weight".into(), wt, vec![e, n_vocab as u64], w(e))?;
    }
    for il in 0..spec.n_layer {
        let b = |s: &str| format!("blk.{il}.{s}");
        add(b("attn_norm.weight"), GgmlType::F32, vec![e], Fill::Norm)?;
        if spec.arch == Arch::Phi3 {
            add(b("attn_qkv.weight"), wt, vec![e, qd + 2 * kd], w(e))?;
        } else {
            add(b("attn_q.weight"), wt, vec![e, qd], w(e))?;
            add(b("attn_k.weight"), wt, vec![e, kd], w(e))?;
            add(b("attn_v.weight"), wt, vec![e, kd], w(e))?;
        }
        if spec.arch == Arch::Qwen2 {
            add(
                b("attn_q.bias"),
                GgmlType::F32,
                vec![qd],
                Fill::Uniform(0.1),
            )?;
            add(
                b("attn_k.bias"),
                GgmlType::F32,
                vec![kd],
                Fill::Uniform(0.1),
            )?;
            add(
                b("attn_v.bias"),
                GgmlType::F32,
                vec![kd],
                Fill::Uniform(0.1),
            )?;
        }
        if matches!(spec.arch, Arch::Qwen3 | Arch::Gemma3) {
            add(b("attn_q_norm.weight"), GgmlType::F32, vec![hd], Fill::Norm)?;
            add(b("attn_k_norm.weight"), GgmlType::F32, vec![hd], Fill::Norm)?;
        }
        add(b("attn_output.weight"), wt, vec![qd, e], w(qd))?;
        let gemma = matches!(spec.arch, Arch::Gemma2 | Arch::Gemma3);
        if gemma {
            add(
                b("post_attention_norm.weight"),
                GgmlType::F32,
                vec![e],
                Fill::Norm,
            )?;
        }
        add(b("ffn_norm.weight"), GgmlType::F32, vec![e], Fill::Norm)?;
        if spec.arch == Arch::Phi3 {
            add(b("ffn_up.weight"), wt, vec![e, 2 * ff], w(e))?;
        } else {
            add(b("ffn_gate.weight"), wt, vec![e, ff], w(e))?;
            add(b("ffn_up.weight"), wt, vec![e, ff], w(e))?;
        }
        add(b("ffn_down.weight"), wt, vec![ff, e], w(ff))?;
        if gemma {
            add(
                b("post_ffw_norm.weight"),
                GgmlType::F32,
                vec![e],
                Fill::Norm,
            )?;
        }
    }
    Ok(out)
}

/// Metadata of a synthetic model: the architecture's hyper-parameters plus every
/// `tokenizer.*` key of `vocab` (a real vocabulary, so both engines can tokenize).
pub fn metadata(spec: &SynthSpec, vocab: &GgufFile) -> Result<(Metadata, usize)> {
    let a = arch_name(spec.arch);
    let mut md = Metadata::default();
    md.set("general.architecture", a);
    md.set("general.name", format!("perch synthetic {a}"));
    md.set(
        keys::GENERAL_FILE_TYPE,
        keys::file_type_of(spec.weight_type),
    );
    let u = |v: usize| Value::U32(v as u32);
    md.set(format!("{a}.context_length"), u(spec.n_ctx));
    md.set(format!("{a}.embedding_length"), u(spec.n_embd));
    md.set(format!("{a}.block_count"), u(spec.n_layer));
    md.set(format!("{a}.feed_forward_length"), u(spec.n_ff));
    md.set(format!("{a}.attention.head_count"), u(spec.n_head));
    md.set(format!("{a}.attention.head_count_kv"), u(spec.n_head_kv));
    md.set(format!("{a}.attention.key_length"), u(spec.head_dim));
    md.set(format!("{a}.attention.value_length"), u(spec.head_dim));
    md.set(format!("{a}.rope.dimension_count"), u(spec.head_dim));
    md.set(format!("{a}.rope.freq_base"), Value::F32(10_000.0));
    md.set(
        format!("{a}.attention.layer_norm_rms_epsilon"),
        Value::F32(1e-5),
    );
    match spec.arch {
        Arch::Gemma2 => {
            md.set(
                format!("{a}.attention.sliding_window"),
                u(spec.sliding_window),
            );
            md.set(format!("{a}.attn_logit_softcapping"), Value::F32(50.0));
            md.set(format!("{a}.final_logit_softcapping"), Value::F32(30.0));
        }
        Arch::Gemma3 => {
            md.set(
                format!("{a}.attention.sliding_window"),
                u(spec.sliding_window),
            );
            md.set(format!("{a}.rope.freq_base"), Value::F32(1_000_000.0));
        }
        _ => {}
    }
    let mut n_vocab = None;
    for (k, v) in vocab.metadata().iter() {
        if k.starts_with("tokenizer.") {
            if k == "tokenizer.ggml.tokens" {
                n_vocab = v.as_array().map(|arr| arr.len());
            }
            md.set(k, v.clone());
        }
    }
    let n_vocab = n_vocab.ok_or_else(|| {
        EngineError::BadConfig("the vocabulary file has no tokenizer.ggml.tokens".into())
    })?;
    Ok((md, n_vocab))
}

/// Write a synthetic model to `path` (atomically), with the vocabulary of `vocab`.
pub fn write(
    spec: &SynthSpec,
    vocab: &GgufFile,
    path: &Path,
    mut progress: impl FnMut(usize, usize),
) -> Result<()> {
    let (md, n_vocab) = metadata(spec, vocab)?;
    let planned = plan(spec, n_vocab)?;
    let mut w = GgufWriter::create(path, &md, planned.iter().map(|p| p.info.clone()))?;
    let n = planned.len();
    for (i, p) in planned.iter().enumerate() {
        let data = fill_tensor(p, spec.seed.wrapping_add(i as u64 * 0x1000_0001))?;
        w.write_tensor(&p.info.name, &data)?;
        progress(i + 1, n);
    }
    w.finish()?;
    Ok(())
}

fn fill_tensor(p: &Planned, seed: u64) -> Result<Vec<u8>> {
    let mut rng = Rng(seed);
    let row = p.info.dims[0] as usize;
    let rows = p.info.n_rows() as usize;
    let mut vals = vec![0.0f32; row];
    let mut out = Vec::with_capacity(p.info.n_bytes as usize);
    let row_bytes = p.info.row_bytes() as usize;
    let mut buf = vec![0u8; row_bytes];
    for _ in 0..rows {
        for v in vals.iter_mut() {
            *v = match p.fill {
                Fill::Uniform(a) => a * rng.uniform(),
                Fill::Norm => 1.0 + 0.1 * rng.uniform(),
            };
        }
        perch_quant::quantize_row(p.info.ty, &vals, &mut buf, None).map_err(|e| {
            EngineError::UnsupportedType {
                name: p.info.name.clone(),
                ty: p.info.ty,
                why: e.to_string(),
            }
        })?;
        out.extend_from_slice(&buf);
    }
    Ok(out)
}

/// The architectures of the tiny test models, with their file-name stems.
pub const TINY_ARCHS: &[(Arch, &str)] = &[
    (Arch::Llama, "llama"),
    (Arch::Qwen2, "qwen2"),
    (Arch::Qwen3, "qwen3"),
    (Arch::Gemma2, "gemma2"),
    (Arch::Gemma3, "gemma3"),
    (Arch::Phi3, "phi3"),
];

/// The vocabulary a tiny model of `arch` borrows: the name of one of llama.cpp's vocab-only
/// files (`ggml-vocab-NAME.gguf`), or `None` for the SmolLM2 fixture's. llama.cpp checks
/// some architectures' special tokens, so phi3 needs its own vocabulary.
pub fn tiny_vocab(arch: Arch) -> Option<&'static str> {
    match arch {
        Arch::Phi3 => Some("phi-3"),
        _ => None,
    }
}

/// The weight types the tiny test models are written in.
pub const TINY_TYPES: &[GgmlType] = &[GgmlType::F32, GgmlType::Q8_0];

/// Real model shapes for speed work (`cargo xtask synth --shape NAME`): the name, the
/// vocabulary borrowed from llama.cpp's vocab files (`ggml-vocab-NAME.gguf`), and the shape.
pub const SHAPES: &[(&str, &str)] = &[
    ("llama-3.2-1b", "llama-bpe"),
    ("qwen2.5-0.5b", "qwen2"),
    ("llama-3-8b", "llama-bpe"),
];

impl SynthSpec {
    /// The shape of a published model (see [`SHAPES`]), with `weight_type` matrices.
    pub fn named(name: &str, weight_type: GgmlType, seed: u64) -> Option<SynthSpec> {
        // (arch, n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff, n_ctx, untied output)
        let (arch, n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff, n_ctx, untied) = match name {
            "llama-3.2-1b" => (Arch::Llama, 2048, 16, 32, 8, 64, 8192, 131_072, false),
            "qwen2.5-0.5b" => (Arch::Qwen2, 896, 24, 14, 2, 64, 4864, 32_768, false),
            "llama-3-8b" => (Arch::Llama, 4096, 32, 32, 8, 128, 14_336, 8192, true),
            _ => return None,
        };
        Some(SynthSpec {
            arch,
            n_embd,
            n_layer,
            n_head,
            n_head_kv,
            head_dim,
            n_ff,
            n_ctx,
            weight_type,
            embd_type: weight_type,
            untied_output: untied,
            sliding_window: 0,
            seed,
        })
    }
}
