//! bert: the encoder of sentence-embedding models (all-MiniLM, bge, e5 ...).
//!
//! Token, position and token-type embeddings summed and layer-normed, then post-norm blocks:
//! bidirectional self-attention with biases, residual, LayerNorm, GELU feed-forward with
//! biases, residual, LayerNorm. Tensor names and metadata are llama.cpp's (`token_types`,
//! `position_embd`, `token_embd_norm`, `attn_output_norm`, `layer_output_norm`,
//! `bert.pooling_type`).

use perch_gguf::GgufFile;

use super::{Loader, MatrixRef};
use crate::error::{EngineError, Result};

/// How a sequence's token states become one vector (`{arch}.pooling_type`, llama.cpp's
/// `llama_pooling_type` numbering).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pooling {
    /// The mean of every token's final state (1).
    Mean,
    /// The first token's (`[CLS]`) final state (2).
    Cls,
    /// The last token's final state (3).
    Last,
}

impl Pooling {
    /// The pooling of llama.cpp's `pooling_type` value; `None` for "none" (0) and ranking (4),
    /// which give no sentence vector.
    pub fn from_id(id: u32) -> Option<Pooling> {
        match id {
            1 => Some(Pooling::Mean),
            2 => Some(Pooling::Cls),
            3 => Some(Pooling::Last),
            _ => None,
        }
    }

    /// The id llama.cpp stores for this pooling.
    pub fn id(self) -> u32 {
        match self {
            Pooling::Mean => 1,
            Pooling::Cls => 2,
            Pooling::Last => 3,
        }
    }
}

/// Hyper-parameters of a BERT encoder.
#[derive(Clone, Debug, PartialEq)]
pub struct BertConfig {
    /// Vocabulary size.
    pub n_vocab: usize,
    /// Width of the hidden states.
    pub n_embd: usize,
    /// Encoder blocks.
    pub n_layer: usize,
    /// Attention heads.
    pub n_head: usize,
    /// Feed-forward width.
    pub n_ff: usize,
    /// Positions the model has embeddings for (the most tokens per input).
    pub n_ctx_train: usize,
    /// Rows of the token-type embedding table.
    pub n_token_types: usize,
    /// LayerNorm epsilon.
    pub eps: f32,
    /// Sentence pooling.
    pub pooling: Pooling,
}

impl BertConfig {
    /// Read and validate the hyper-parameters from `bert.*` metadata.
    pub fn from_gguf(file: &GgufFile) -> Result<BertConfig> {
        let arch = file.get_str("general.architecture")?;
        if arch != "bert" {
            return Err(EngineError::BadConfig(format!(
                "`{arch}` is not an embedding architecture (perch embeds with bert)"
            )));
        }
        let n_embd = file.get_usize("bert.embedding_length")?;
        let n_layer = file.get_usize("bert.block_count")?;
        let n_head = file.get_usize("bert.attention.head_count")?;
        let n_ff = file.get_usize("bert.feed_forward_length")?;
        let n_ctx_train = file.get_usize("bert.context_length")?;
        let eps = file.get_f32("bert.attention.layer_norm_epsilon")?;
        if n_embd == 0 || n_layer == 0 || n_head == 0 || n_ff == 0 || n_ctx_train == 0 {
            return Err(EngineError::BadConfig(
                "bert: embedding_length, block_count, head_count, feed_forward_length and \
                 context_length must be non-zero"
                    .into(),
            ));
        }
        if n_embd % n_head != 0 {
            return Err(EngineError::BadConfig(format!(
                "bert.embedding_length ({n_embd}) is not a multiple of head_count ({n_head})"
            )));
        }
        if file.opt_bool("bert.attention.causal")? == Some(true) {
            return Err(EngineError::BadConfig(
                "bert.attention.causal = true: perch's bert encoder attends both ways".into(),
            ));
        }
        let pooling = match file.opt_u32("bert.pooling_type")? {
            // Files without the key (converted from a folder without sentence-transformers
            // settings) are pooled by mean, as sentence-transformers does by default.
            None => Pooling::Mean,
            Some(id) => Pooling::from_id(id).ok_or_else(|| {
                EngineError::BadConfig(format!(
                    "bert.pooling_type = {id}: perch pools by mean (1), CLS (2) or last token (3)"
                ))
            })?,
        };
        let n_token_types = file
            .opt_usize("tokenizer.ggml.token_type_count")?
            .or_else(|| {
                file.tensor_info("token_types.weight")
                    .and_then(|t| t.dims.get(1).map(|&d| d as usize))
            })
            .unwrap_or(2);
        let n_vocab = file
            .tensor_info("token_embd.weight")
            .and_then(|t| t.dims.get(1).copied())
            .ok_or_else(|| EngineError::MissingTensor("token_embd.weight".into()))?
            as usize;
        Ok(BertConfig {
            n_vocab,
            n_embd,
            n_layer,
            n_head,
            n_ff,
            n_ctx_train,
            n_token_types,
            eps,
            pooling,
        })
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.n_embd / self.n_head
    }
}

/// A LayerNorm's scale and shift.
#[derive(Clone, Debug)]
pub struct LayerNormWeights {
    /// Scale (gamma).
    pub weight: Vec<f32>,
    /// Shift (beta).
    pub bias: Vec<f32>,
}

/// A linear layer: weight matrix and bias.
#[derive(Clone, Debug)]
pub struct Linear {
    /// `out × in` weights.
    pub weight: MatrixRef,
    /// `out` biases.
    pub bias: Vec<f32>,
}

/// One encoder block.
#[derive(Clone, Debug)]
pub struct BertLayer {
    /// Query projection.
    pub q: Linear,
    /// Key projection.
    pub k: Linear,
    /// Value projection.
    pub v: Linear,
    /// Attention output projection.
    pub o: Linear,
    /// LayerNorm after the attention residual.
    pub attn_norm: LayerNormWeights,
    /// Feed-forward up projection.
    pub up: Linear,
    /// Feed-forward down projection.
    pub down: Linear,
    /// LayerNorm after the feed-forward residual.
    pub out_norm: LayerNormWeights,
}

/// Everything a BERT encoder reads.
#[derive(Clone, Debug)]
pub struct BertWeights {
    /// Token embeddings (`n_vocab` rows).
    pub tok_embd: MatrixRef,
    /// Position embeddings (`n_ctx_train` rows).
    pub pos_embd: MatrixRef,
    /// The token-type-0 embedding row (every input is one segment).
    pub type0: Vec<f32>,
    /// LayerNorm of the summed embeddings.
    pub embd_norm: LayerNormWeights,
    /// The blocks.
    pub layers: Vec<BertLayer>,
}

impl Loader<'_> {
    fn linear(&self, name: &str, rows: usize, cols: usize) -> Result<Linear> {
        Ok(Linear {
            weight: self.matrix(&format!("{name}.weight"), rows, cols)?,
            bias: self.vector(&format!("{name}.bias"), rows)?,
        })
    }

    fn layer_norm(&self, name: &str, n: usize) -> Result<LayerNormWeights> {
        Ok(LayerNormWeights {
            weight: self.vector(&format!("{name}.weight"), n)?,
            bias: self.vector(&format!("{name}.bias"), n)?,
        })
    }
}

/// Load and shape-check every tensor of a BERT encoder.
pub fn load(file: &GgufFile, cfg: &BertConfig) -> Result<BertWeights> {
    let l = Loader::new(file);
    let e = cfg.n_embd;
    let types = l.matrix("token_types.weight", cfg.n_token_types, e)?;
    let mut type0 = vec![0.0f32; e];
    let row_bytes = types.ty.bytes_for(e as u64).expect("validated") as usize;
    perch_quant::dequantize_row(
        types.ty,
        &file.bytes()[types.range.start..types.range.start + row_bytes],
        &mut type0,
    )
    .map_err(|err| EngineError::UnsupportedType {
        name: types.name.clone(),
        ty: types.ty,
        why: err.to_string(),
    })?;
    let layers = (0..cfg.n_layer)
        .map(|il| {
            let b = format!("blk.{il}");
            Ok(BertLayer {
                q: l.linear(&format!("{b}.attn_q"), e, e)?,
                k: l.linear(&format!("{b}.attn_k"), e, e)?,
                v: l.linear(&format!("{b}.attn_v"), e, e)?,
                o: l.linear(&format!("{b}.attn_output"), e, e)?,
                attn_norm: l.layer_norm(&format!("{b}.attn_output_norm"), e)?,
                up: l.linear(&format!("{b}.ffn_up"), cfg.n_ff, e)?,
                down: l.linear(&format!("{b}.ffn_down"), e, cfg.n_ff)?,
                out_norm: l.layer_norm(&format!("{b}.layer_output_norm"), e)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(BertWeights {
        tok_embd: l.matrix("token_embd.weight", cfg.n_vocab, e)?,
        pos_embd: l.matrix("position_embd.weight", cfg.n_ctx_train, e)?,
        type0,
        embd_norm: l.layer_norm("token_embd_norm", e)?,
        layers,
    })
}
