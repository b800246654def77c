//! Architectures: each file maps one architecture's tensor names and options onto the shared
//! [`Layer`] building blocks, checking every shape.
//!
//! The forward pass (`crate::model`) is shared; an architecture differs only in which optional
//! pieces its layers carry (biases, Q/K norms, post-norms, fused projections) and in its
//! hyper-parameters (`crate::config`).

pub mod bert;
mod gemma;
mod llama;
mod phi3;

use std::ops::Range;

use perch_gguf::GgufFile;
use perch_quant::GgmlType;

use crate::config::{Arch, ModelConfig};
use crate::error::{EngineError, Result};

/// A weight matrix in the file: `rows` outputs of `cols` inputs, as a byte range of the map.
#[derive(Clone, Debug, PartialEq)]
pub struct MatrixRef {
    /// Tensor name, for errors.
    pub name: String,
    /// ggml type.
    pub ty: GgmlType,
    /// Output rows (ne1).
    pub rows: usize,
    /// Input columns (ne0).
    pub cols: usize,
    /// Bytes within the file.
    pub range: Range<usize>,
}

/// Q, K and V projections: separate, or one fused matrix (phi3).
#[derive(Clone, Debug)]
pub enum QkvWeights {
    /// `attn_q`, `attn_k`, `attn_v`.
    Separate {
        /// Query projection.
        q: MatrixRef,
        /// Key projection.
        k: MatrixRef,
        /// Value projection.
        v: MatrixRef,
    },
    /// `attn_qkv`: rows are Q then K then V.
    Fused(MatrixRef),
}

/// Gate and up projections: separate, or fused (phi3: gate rows then up rows).
#[derive(Clone, Debug)]
pub enum GateUpWeights {
    /// `ffn_gate`, `ffn_up`.
    Separate {
        /// Gate projection.
        gate: MatrixRef,
        /// Up projection.
        up: MatrixRef,
    },
    /// `ffn_up` holding gate and up together.
    Fused(MatrixRef),
}

/// One transformer block's weights.
#[derive(Clone, Debug)]
pub struct Layer {
    /// Pre-attention RMSNorm weight.
    pub attn_norm: Vec<f32>,
    /// Q/K/V projections.
    pub qkv: QkvWeights,
    /// Biases of Q, K, V (qwen2).
    pub qkv_bias: Option<[Vec<f32>; 3]>,
    /// Per-head RMSNorm weights of Q and K (qwen3, gemma3).
    pub qk_norm: Option<[Vec<f32>; 2]>,
    /// Attention output projection.
    pub wo: MatrixRef,
    /// RMSNorm after attention, before the residual add (gemma).
    pub attn_post_norm: Option<Vec<f32>>,
    /// Pre-FFN RMSNorm weight.
    pub ffn_norm: Vec<f32>,
    /// Gate/up projections.
    pub gate_up: GateUpWeights,
    /// Down projection.
    pub down: MatrixRef,
    /// RMSNorm after the FFN, before the residual add (gemma).
    pub ffn_post_norm: Option<Vec<f32>>,
}

/// Everything outside the blocks.
#[derive(Clone, Debug)]
pub struct Globals {
    /// Token embeddings, `n_vocab` rows of `n_embd`.
    pub tok_embd: MatrixRef,
    /// Final RMSNorm weight.
    pub output_norm: Vec<f32>,
    /// Output projection (the embeddings when tied).
    pub output: MatrixRef,
    /// llama3-style per-dimension RoPE frequency factors.
    pub rope_freqs: Option<Vec<f32>>,
}

/// Looks tensors up by name and checks their shapes.
pub(crate) struct Loader<'a> {
    file: &'a GgufFile,
    data_offset: usize,
}

impl<'a> Loader<'a> {
    pub(crate) fn new(file: &'a GgufFile) -> Self {
        Loader {
            file,
            data_offset: file.data_offset() as usize,
        }
    }

    fn info(&self, name: &str) -> Result<&'a perch_gguf::TensorInfo> {
        self.file
            .tensor_info(name)
            .ok_or_else(|| EngineError::MissingTensor(name.to_string()))
    }

    fn check_dims(&self, name: &str, found: &[u64], expected: &[u64]) -> Result<()> {
        if found != expected {
            return Err(EngineError::WrongShape {
                name: name.to_string(),
                found: found.to_vec(),
                expected: expected.to_vec(),
            });
        }
        Ok(())
    }

    /// A `rows × cols` matrix (ggml dims `[cols, rows]`).
    pub(crate) fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<MatrixRef> {
        let t = self.info(name)?;
        self.check_dims(name, &t.dims, &[cols as u64, rows as u64])?;
        if perch_quant::dot::scalar_fn(t.ty).is_none() {
            return Err(EngineError::UnsupportedType {
                name: name.to_string(),
                ty: t.ty,
                why: "no matrix kernel for this type".into(),
            });
        }
        let start = self.data_offset + t.offset as usize;
        Ok(MatrixRef {
            name: name.to_string(),
            ty: t.ty,
            rows,
            cols,
            range: start..start + t.n_bytes as usize,
        })
    }

    pub(crate) fn opt_matrix(
        &self,
        name: &str,
        rows: usize,
        cols: usize,
    ) -> Result<Option<MatrixRef>> {
        if self.file.tensor_info(name).is_none() {
            return Ok(None);
        }
        self.matrix(name, rows, cols).map(Some)
    }

    /// A vector of `n` values, dequantized to f32 (norm weights and biases are small).
    pub(crate) fn vector(&self, name: &str, n: usize) -> Result<Vec<f32>> {
        let t = self
            .file
            .require_tensor(name)
            .map_err(|_| EngineError::MissingTensor(name.to_string()))?;
        self.check_dims(name, t.dims(), &[n as u64])?;
        let mut out = vec![0.0f32; n];
        perch_quant::dequantize_row(t.ty(), t.data, &mut out).map_err(|e| {
            EngineError::UnsupportedType {
                name: name.to_string(),
                ty: t.ty(),
                why: e.to_string(),
            }
        })?;
        Ok(out)
    }

    pub(crate) fn opt_vector(&self, name: &str, n: usize) -> Result<Option<Vec<f32>>> {
        if self.file.tensor_info(name).is_none() {
            return Ok(None);
        }
        self.vector(name, n).map(Some)
    }

    fn globals(&self, cfg: &ModelConfig) -> Result<Globals> {
        let tok_embd = self.matrix("token_embd.weight", cfg.n_vocab, cfg.n_embd)?;
        let output = self
            .opt_matrix("output.weight", cfg.n_vocab, cfg.n_embd)?
            .unwrap_or_else(|| tok_embd.clone());
        Ok(Globals {
            output_norm: self.vector("output_norm.weight", cfg.n_embd)?,
            output,
            tok_embd,
            rope_freqs: self.opt_vector("rope_freqs.weight", cfg.n_rot / 2)?,
        })
    }

    /// The standard separate Q/K/V projections of layer `il`.
    fn qkv_separate(&self, il: usize, cfg: &ModelConfig) -> Result<QkvWeights> {
        Ok(QkvWeights::Separate {
            q: self.matrix(&format!("blk.{il}.attn_q.weight"), cfg.q_dim(), cfg.n_embd)?,
            k: self.matrix(&format!("blk.{il}.attn_k.weight"), cfg.k_dim(), cfg.n_embd)?,
            v: self.matrix(&format!("blk.{il}.attn_v.weight"), cfg.v_dim(), cfg.n_embd)?,
        })
    }

    /// The standard separate gate/up projections of layer `il`.
    fn gate_up_separate(&self, il: usize, cfg: &ModelConfig) -> Result<GateUpWeights> {
        Ok(GateUpWeights::Separate {
            gate: self.matrix(&format!("blk.{il}.ffn_gate.weight"), cfg.n_ff, cfg.n_embd)?,
            up: self.matrix(&format!("blk.{il}.ffn_up.weight"), cfg.n_ff, cfg.n_embd)?,
        })
    }

    fn norm(&self, il: usize, which: &str, n: usize) -> Result<Vec<f32>> {
        self.vector(&format!("blk.{il}.{which}.weight"), n)
    }
}

/// Load the globals and every layer of `cfg.arch` from `file`.
pub fn load(file: &GgufFile, cfg: &ModelConfig) -> Result<(Globals, Vec<Layer>)> {
    let loader = Loader::new(file);
    let globals = loader.globals(cfg)?;
    let layers = (0..cfg.n_layer)
        .map(|il| match cfg.arch {
            Arch::Llama | Arch::Qwen2 | Arch::Qwen3 => llama::layer(&loader, il, cfg),
            Arch::Gemma2 | Arch::Gemma3 => gemma::layer(&loader, il, cfg),
            Arch::Phi3 => phi3::layer(&loader, il, cfg),
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((globals, layers))
}
