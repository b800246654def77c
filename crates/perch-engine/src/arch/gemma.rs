//! gemma2 and gemma3: norms after attention and after the FFN as well as before, GELU,
//! embeddings scaled by sqrt(n_embd) (see `config`), and for gemma3 per-head Q/K norms.
//! (The `+1` of Gemma's RMSNorm is folded into the weights by the GGUF converters.)

use super::{Layer, Loader};
use crate::config::{Arch, ModelConfig};
use crate::error::Result;

pub(super) fn layer(l: &Loader<'_>, il: usize, cfg: &ModelConfig) -> Result<Layer> {
    let qk_norm = match cfg.arch {
        Arch::Gemma3 => Some([
            l.norm(il, "attn_q_norm", cfg.head_dim)?,
            l.norm(il, "attn_k_norm", cfg.head_dim)?,
        ]),
        _ => None,
    };
    Ok(Layer {
        attn_norm: l.norm(il, "attn_norm", cfg.n_embd)?,
        qkv: l.qkv_separate(il, cfg)?,
        qkv_bias: None,
        qk_norm,
        wo: l.matrix(
            &format!("blk.{il}.attn_output.weight"),
            cfg.n_embd,
            cfg.q_dim(),
        )?,
        attn_post_norm: Some(l.norm(il, "post_attention_norm", cfg.n_embd)?),
        ffn_norm: l.norm(il, "ffn_norm", cfg.n_embd)?,
        gate_up: l.gate_up_separate(il, cfg)?,
        down: l.matrix(&format!("blk.{il}.ffn_down.weight"), cfg.n_embd, cfg.n_ff)?,
        ffn_post_norm: Some(l.norm(il, "post_ffw_norm", cfg.n_embd)?),
    })
}
