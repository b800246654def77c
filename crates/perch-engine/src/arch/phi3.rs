//! phi3: fused QKV (`attn_qkv`) and fused gate+up (`ffn_up` with `2 * n_ff` rows), or the
//! separate tensors when a converter split them.

use super::{GateUpWeights, Layer, Loader, QkvWeights};
use crate::config::ModelConfig;
use crate::error::Result;

pub(super) fn layer(l: &Loader<'_>, il: usize, cfg: &ModelConfig) -> Result<Layer> {
    let qkv_rows = cfg.q_dim() + cfg.k_dim() + cfg.v_dim();
    let qkv = match l.opt_matrix(&format!("blk.{il}.attn_qkv.weight"), qkv_rows, cfg.n_embd)? {
        Some(m) => QkvWeights::Fused(m),
        None => l.qkv_separate(il, cfg)?,
    };
    let gate_up = if l
        .opt_matrix(&format!("blk.{il}.ffn_gate.weight"), cfg.n_ff, cfg.n_embd)?
        .is_some()
    {
        l.gate_up_separate(il, cfg)?
    } else {
        GateUpWeights::Fused(l.matrix(
            &format!("blk.{il}.ffn_up.weight"),
            2 * cfg.n_ff,
            cfg.n_embd,
        )?)
    };
    Ok(Layer {
        attn_norm: l.norm(il, "attn_norm", cfg.n_embd)?,
        qkv,
        qkv_bias: None,
        qk_norm: None,
        wo: l.matrix(
            &format!("blk.{il}.attn_output.weight"),
            cfg.n_embd,
            cfg.q_dim(),
        )?,
        attn_post_norm: None,
        ffn_norm: l.norm(il, "ffn_norm", cfg.n_embd)?,
        gate_up,
        down: l.matrix(&format!("blk.{il}.ffn_down.weight"), cfg.n_embd, cfg.n_ff)?,
        ffn_post_norm: None,
    })
}
