//! A model's hyper-parameters, read from GGUF metadata and validated.
//!
//! Keys follow llama.cpp's `{arch}.*` naming (`llama.block_count`, `qwen2.attention.head_count`
//! ...). Everything the forward pass relies on is checked here once, so the hot path can index
//! without re-checking.

use perch_gguf::GgufFile;

use crate::error::{EngineError, Result};

/// The architectures the engine runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    /// Llama 2/3, SmolLM, TinyLlama, Mistral.
    Llama,
    /// Qwen2 / Qwen2.5: llama with biases on Q, K and V.
    Qwen2,
    /// Qwen3: llama with RMS norms on Q and K per head.
    Qwen3,
    /// Gemma 2: post-norms, GELU, embedding scaling, soft-capping, sliding-window layers.
    Gemma2,
    /// Gemma 3: Gemma 2's shape with Q/K norms and local/global rope bases.
    Gemma3,
    /// Phi-3: fused QKV and fused gate+up.
    Phi3,
}

impl Arch {
    /// The architecture named by `general.architecture`.
    pub fn from_name(name: &str) -> Result<Arch> {
        Ok(match name {
            "llama" | "mistral" => Arch::Llama,
            "qwen2" => Arch::Qwen2,
            "qwen3" => Arch::Qwen3,
            "gemma2" => Arch::Gemma2,
            "gemma3" => Arch::Gemma3,
            "phi3" => Arch::Phi3,
            "bert" => {
                return Err(EngineError::BadConfig(
                    "`bert` is an embedding model: it embeds text (perch serve's /v1/embeddings), it does not generate".into(),
                ));
            }
            other => return Err(EngineError::UnsupportedArch(other.to_string())),
        })
    }

    /// How RoPE pairs the dimensions of a head.
    pub fn rope_kind(self) -> RopeKind {
        match self {
            Arch::Llama => RopeKind::Normal,
            _ => RopeKind::Neox,
        }
    }
}

/// How RoPE pairs dimensions: adjacent (`Normal`, llama) or split halves (`Neox`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeKind {
    /// Rotate pairs `(2i, 2i+1)`.
    Normal,
    /// Rotate pairs `(i, i + n_rot/2)`.
    Neox,
}

/// The feed-forward activation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// SiLU gate (SwiGLU).
    Silu,
    /// tanh-approximated GELU gate (GeGLU).
    Gelu,
}

/// The hyper-parameters of a decoder model.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelConfig {
    /// Architecture.
    pub arch: Arch,
    /// The metadata prefix (`general.architecture`).
    pub arch_name: String,
    /// Vocabulary size (rows of the embedding matrix).
    pub n_vocab: usize,
    /// Context length the model was trained with.
    pub n_ctx_train: usize,
    /// Width of the residual stream.
    pub n_embd: usize,
    /// Number of transformer blocks.
    pub n_layer: usize,
    /// Query heads.
    pub n_head: usize,
    /// Key/value heads (grouped-query attention when smaller than `n_head`).
    pub n_head_kv: usize,
    /// Dimension of each key head.
    pub head_dim: usize,
    /// Dimension of each value head.
    pub head_dim_v: usize,
    /// Hidden width of the feed-forward block.
    pub n_ff: usize,
    /// RMSNorm epsilon.
    pub rms_eps: f32,
    /// RoPE layout.
    pub rope_kind: RopeKind,
    /// Number of rotated dimensions per head.
    pub n_rot: usize,
    /// RoPE base frequency (global layers).
    pub rope_base: f32,
    /// RoPE base frequency for sliding-window layers.
    pub rope_base_swa: f32,
    /// Linear RoPE scaling: positions are multiplied by this (1 / factor).
    pub rope_freq_scale: f32,
    /// Linear RoPE scaling of sliding-window layers.
    pub rope_freq_scale_swa: f32,
    /// Scale applied to q·k (1/sqrt(head_dim) unless the architecture says otherwise).
    pub attn_scale: f32,
    /// tanh soft-cap on attention scores.
    pub attn_softcap: Option<f32>,
    /// tanh soft-cap on the output logits.
    pub final_softcap: Option<f32>,
    /// Sliding-window size, for the layers that use one.
    pub sliding_window: Option<usize>,
    /// Per layer: does it attend through the sliding window?
    pub swa_layers: Vec<bool>,
    /// Multiply the input embeddings by this (Gemma: sqrt(n_embd)).
    pub embed_scale: Option<f32>,
    /// Feed-forward activation.
    pub activation: Activation,
}

fn key(arch: &str, suffix: &str) -> String {
    format!("{arch}.{suffix}")
}

impl ModelConfig {
    /// Read and validate the hyper-parameters from a GGUF file's metadata.
    pub fn from_gguf(file: &GgufFile) -> Result<ModelConfig> {
        let arch_name = file.get_str("general.architecture")?.to_string();
        let arch = Arch::from_name(&arch_name)?;
        let a = arch_name.as_str();
        let n_embd = file.get_usize(&key(a, "embedding_length"))?;
        let n_layer = file.get_usize(&key(a, "block_count"))?;
        let n_head = file.get_usize(&key(a, "attention.head_count"))?;
        let n_head_kv = file
            .opt_usize(&key(a, "attention.head_count_kv"))?
            .unwrap_or(n_head);
        let n_ff = file.get_usize(&key(a, "feed_forward_length"))?;
        let n_ctx_train = file.get_usize(&key(a, "context_length"))?;
        let rms_eps = file.get_f32(&key(a, "attention.layer_norm_rms_epsilon"))?;
        if n_head == 0 || n_layer == 0 || n_embd == 0 || n_ff == 0 {
            return Err(EngineError::BadConfig(format!(
                "{a}: embedding_length, block_count, head_count and feed_forward_length must be non-zero"
            )));
        }
        let head_dim = file
            .opt_usize(&key(a, "attention.key_length"))?
            .unwrap_or(n_embd / n_head);
        let head_dim_v = file
            .opt_usize(&key(a, "attention.value_length"))?
            .unwrap_or(head_dim);
        if n_head_kv == 0 || n_head % n_head_kv != 0 {
            return Err(EngineError::BadConfig(format!(
                "{a}.attention.head_count ({n_head}) is not a multiple of head_count_kv ({n_head_kv})"
            )));
        }
        if head_dim == 0 || head_dim % 2 != 0 || head_dim_v == 0 {
            return Err(EngineError::BadConfig(format!(
                "{a}: head dimension {head_dim} must be even and non-zero"
            )));
        }
        let n_rot = file
            .opt_usize(&key(a, "rope.dimension_count"))?
            .unwrap_or(head_dim);
        if n_rot > head_dim || n_rot % 2 != 0 {
            return Err(EngineError::BadConfig(format!(
                "{a}.rope.dimension_count ({n_rot}) must be even and at most the head dimension ({head_dim})"
            )));
        }
        let rope_base = file.opt_f32(&key(a, "rope.freq_base"))?.unwrap_or(10_000.0);
        // Sliding-window layers: Gemma 2 rotates them like the global ones; otherwise
        // llama.cpp's defaults (base 10000, no scaling) apply unless the file says.
        let rope_base_swa =
            file.opt_f32(&key(a, "rope.freq_base_swa"))?
                .unwrap_or(if arch == Arch::Gemma2 {
                    rope_base
                } else {
                    10_000.0
                });
        if file.opt_str(&key(a, "rope.scaling.type"))? == Some("yarn") {
            return Err(EngineError::BadConfig(format!(
                "{a}.rope.scaling.type = yarn is not supported"
            )));
        }
        // Linear scaling (llama3-style scaling comes as the `rope_freqs` tensor instead).
        let factor = match file.opt_f32(&key(a, "rope.scaling.factor"))? {
            Some(f) => Some(f),
            None => file.opt_f32(&key(a, "rope.scale_linear"))?,
        };
        let rope_freq_scale = match factor {
            Some(f) if f != 0.0 => 1.0 / f,
            _ => 1.0,
        };
        let rope_freq_scale_swa = if arch == Arch::Gemma2 {
            rope_freq_scale
        } else {
            1.0
        };
        let is_gemma = matches!(arch, Arch::Gemma2 | Arch::Gemma3);
        let attn_softcap = match arch {
            Arch::Gemma2 => file.opt_f32(&key(a, "attn_logit_softcapping"))?,
            _ => None,
        }
        .filter(|&c| c > 0.0);
        let final_softcap = if is_gemma {
            file.opt_f32(&key(a, "final_logit_softcapping"))?
        } else {
            None
        }
        .filter(|&c| c > 0.0);
        let mut sliding_window = match arch {
            Arch::Gemma2 | Arch::Gemma3 => file.opt_usize(&key(a, "attention.sliding_window"))?,
            _ => None,
        }
        .filter(|&w| w > 0);
        // Which layers use the sliding window: Gemma 2 alternates (pattern 2, window 4096 by
        // default), Gemma 3 has five local layers per global one (pattern 6) when the file
        // names a window; layer `il` is local when `il % pattern < pattern - 1`.
        let pattern = match arch {
            Arch::Gemma2 => {
                sliding_window.get_or_insert(4096);
                Some(2)
            }
            Arch::Gemma3 => Some(
                file.opt_usize(&key(a, "attention.sliding_window_pattern"))?
                    .unwrap_or(6),
            ),
            _ => None,
        };
        let swa_layers = (0..n_layer)
            .map(|il| match (pattern, sliding_window) {
                (Some(p), Some(_)) if p > 0 => il % p < p - 1,
                _ => false,
            })
            .collect();
        // Gemma's 27B models scale by n_embd/n_head rather than the head width.
        let is_27b = matches!((arch, n_layer), (Arch::Gemma2, 46) | (Arch::Gemma3, 62));
        let attn_scale = if is_27b {
            1.0 / ((n_embd / n_head) as f32).sqrt()
        } else {
            1.0 / (head_dim as f32).sqrt()
        };
        let (embed_scale, activation) = if is_gemma {
            (Some((n_embd as f32).sqrt()), Activation::Gelu)
        } else {
            (None, Activation::Silu)
        };
        let n_vocab = match file.opt_usize(&key(a, "vocab_size"))? {
            Some(n) => n,
            None => file
                .tensor_info("token_embd.weight")
                .and_then(|t| t.dims.get(1).copied())
                .ok_or_else(|| EngineError::MissingTensor("token_embd.weight".into()))?
                as usize,
        };
        Ok(ModelConfig {
            arch,
            arch_name,
            n_vocab,
            n_ctx_train,
            n_embd,
            n_layer,
            n_head,
            n_head_kv,
            head_dim,
            head_dim_v,
            n_ff,
            rms_eps,
            rope_kind: arch.rope_kind(),
            n_rot,
            rope_base,
            rope_base_swa,
            rope_freq_scale,
            rope_freq_scale_swa,
            attn_scale,
            attn_softcap,
            final_softcap,
            sliding_window,
            swa_layers,
            embed_scale,
            activation,
        })
    }

    /// Width of all query heads together.
    pub fn q_dim(&self) -> usize {
        self.n_head * self.head_dim
    }

    /// Width of all key heads together.
    pub fn k_dim(&self) -> usize {
        self.n_head_kv * self.head_dim
    }

    /// Width of all value heads together.
    pub fn v_dim(&self) -> usize {
        self.n_head_kv * self.head_dim_v
    }
}
