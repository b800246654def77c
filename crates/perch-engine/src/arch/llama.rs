//! llama (Llama 2/3, SmolLM2, TinyLlama, Mistral), qwen2 (Q/K/V biases) and qwen3 (per-head
//! Q/K RMS norms): the same block with optional pieces.

use super::{Layer, Loader};
use crate::config::{Arch, ModelConfig};
use crate::error::Result;

pub(super) fn layer(l: &Loader<'_>, il: usize, cfg: &ModelConfig) -> Result<Layer> {
    let qkv_bias = match cfg.arch {
        Arch::Qwen2 => Some([
            l.vector(&format!("blk.{il}.attn_q.bias"), cfg.q_dim())?,
            l.vector(&format!("blk.{il}.attn_k.bias"), cfg.k_dim())?,
            l.vector(&format!("blk.{il}.attn_v.bias"), cfg.v_dim())?,
        ]),
        _ => None,
    };
    let qk_norm = match cfg.arch {
        Arch::Qwen3 => Some([
            l.norm(il, "attn_q_norm", cfg.head_dim)?,
            l.norm(il, "attn_k_norm", cfg.head_dim)?,
        ]),
        _ => None,
    };
    Ok(Layer {
        attn_norm: l.norm(il, "attn_norm", cfg.n_embd)?,
        qkv: l.qkv_separate(il, cfg)?,
        qkv_bias,
        qk_norm,
        wo: l.matrix(
            &format!("blk.{il}.attn_output.weight"),
            cfg.n_embd,
            cfg.q_dim(),
        )?,
        attn_post_norm: None,
        ffn_norm: l.norm(il, "ffn_norm", cfg.n_embd)?,
        gate_up: l.gate_up_separate(il, cfg)?,
        down: l.matrix(&format!("blk.{il}.ffn_down.weight"), cfg.n_embd, cfg.n_ff)?,
        ffn_post_norm: None,
    })
}
