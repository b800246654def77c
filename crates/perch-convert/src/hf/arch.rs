//! Per-architecture facts: which checkpoint tensor becomes which GGUF tensor with which shape
//! (from config.json), the transformations llama.cpp applies on the way (llama's Q/K row
//! permutation, Gemma's `+1` on norm weights) and the `{arch}.*` metadata.

use perch_gguf::Value;
use serde_json::Value as Json;

use crate::error::{ConvertError, Result};

/// What happens to a tensor's values on the way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Transform {
    /// Copied.
    None,
    /// llama's Q/K rows reordered from Hugging Face's rotate-half layout to GGUF's
    /// interleaved one (`n_head` heads).
    PermuteRows {
        /// Heads in the matrix.
        n_head: usize,
    },
    /// Gemma's RMSNorm multiplies by `1 + w`; GGUF stores `1 + w`.
    PlusOne,
}

/// One output tensor.
#[derive(Clone, Debug)]
pub(crate) struct Planned {
    /// Checkpoint name.
    pub hf: String,
    /// GGUF name.
    pub gguf: String,
    /// Shape in the checkpoint (outermost first) that config.json implies.
    pub shape: Vec<usize>,
    /// Transformation.
    pub transform: Transform,
    /// Whether the tensor may be absent (`lm_head` when embeddings are tied).
    pub optional: bool,
}

/// The architecture families perch converts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Family {
    Llama,
    Qwen2,
    Qwen3,
    Gemma2,
    Gemma3,
    Phi3,
    Bert,
}

impl Family {
    /// The family of config.json's `architectures[0]`.
    pub(crate) fn from_config(cfg: &Json) -> Result<Family> {
        let name = cfg["architectures"][0]
            .as_str()
            .or_else(|| cfg["model_type"].as_str())
            .ok_or_else(|| {
                ConvertError::BadInput(
                    "config.json names no architecture (`architectures` or `model_type`)".into(),
                )
            })?;
        Ok(match name {
            "LlamaForCausalLM" | "MistralForCausalLM" | "llama" | "mistral" => Family::Llama,
            "Qwen2ForCausalLM" | "qwen2" => Family::Qwen2,
            "Qwen3ForCausalLM" | "qwen3" => Family::Qwen3,
            "Gemma2ForCausalLM" | "gemma2" => Family::Gemma2,
            "Gemma3ForCausalLM" | "gemma3_text" => Family::Gemma3,
            "Phi3ForCausalLM" | "phi3" => Family::Phi3,
            "BertModel" | "BertForMaskedLM" | "bert" => Family::Bert,
            other => return Err(ConvertError::UnsupportedArch(other.to_string())),
        })
    }

    /// `general.architecture`.
    pub(crate) fn gguf_name(self) -> &'static str {
        match self {
            Family::Llama => "llama",
            Family::Qwen2 => "qwen2",
            Family::Qwen3 => "qwen3",
            Family::Gemma2 => "gemma2",
            Family::Gemma3 => "gemma3",
            Family::Phi3 => "phi3",
            Family::Bert => "bert",
        }
    }
}

/// Reads config.json values with errors that name the key.
pub(crate) struct Hparams<'a>(pub &'a Json);

impl Hparams<'_> {
    pub(crate) fn usize(&self, key: &str) -> Result<usize> {
        self.opt_usize(key)?
            .ok_or_else(|| ConvertError::BadInput(format!("config.json: missing `{key}`")))
    }

    pub(crate) fn opt_usize(&self, key: &str) -> Result<Option<usize>> {
        match &self.0[key] {
            Json::Null => Ok(None),
            v => v.as_u64().map(|n| Some(n as usize)).ok_or_else(|| {
                ConvertError::BadInput(format!("config.json: `{key}` is not a whole number: {v}"))
            }),
        }
    }

    pub(crate) fn opt_f32(&self, key: &str) -> Result<Option<f32>> {
        match &self.0[key] {
            Json::Null => Ok(None),
            v => v.as_f64().map(|n| Some(n as f32)).ok_or_else(|| {
                ConvertError::BadInput(format!("config.json: `{key}` is not a number: {v}"))
            }),
        }
    }
}

/// The tensors and metadata of one architecture.
pub(crate) struct ArchPlan {
    pub metadata: Vec<(String, Value)>,
    pub tensors: Vec<Planned>,
    /// Tensors llama.cpp generates rather than converts (llama3's `rope_freqs`): name, dims
    /// (ggml order), values.
    pub generated: Vec<(String, Vec<u64>, Vec<f32>)>,
    /// `vocab_size` from config.json (rows of the embeddings).
    pub n_vocab: usize,
}

/// Checkpoint tensors llama.cpp drops.
pub(crate) fn ignored(family: Family, name: &str) -> bool {
    name.ends_with(".rotary_emb.inv_freq")
        || name.ends_with(".attention.masked_bias")
        || (family == Family::Bert
            && (name == "embeddings.position_ids"
                || name.starts_with("pooler.")
                || name.starts_with("cls.")))
}

/// Strip the prefixes checkpoints add (`bert.` in BertForMaskedLM).
pub(crate) fn canonical(family: Family, name: &str) -> String {
    let mut n = name;
    if family == Family::Bert {
        n = n.strip_prefix("bert.").unwrap_or(n);
    }
    let mut s = n.to_string();
    if family == Family::Bert {
        if let Some(base) = s.strip_suffix(".gamma") {
            s = format!("{base}.weight");
        } else if let Some(base) = s.strip_suffix(".beta") {
            s = format!("{base}.bias");
        }
    }
    s
}

fn t(hf: impl Into<String>, gguf: impl Into<String>, shape: &[usize]) -> Planned {
    Planned {
        hf: hf.into(),
        gguf: gguf.into(),
        shape: shape.to_vec(),
        transform: Transform::None,
        optional: false,
    }
}

/// The plan for `cfg`.
pub(crate) fn plan(family: Family, cfg: &Json) -> Result<ArchPlan> {
    let h = Hparams(cfg);
    let a = family.gguf_name();
    let n_layer = h.usize("num_hidden_layers")?;
    let n_embd = h.usize("hidden_size")?;
    let n_head = h.usize("num_attention_heads")?;
    let n_ff = h.usize("intermediate_size")?;
    let n_vocab = h.usize("vocab_size")?;
    if n_layer == 0 || n_embd == 0 || n_head == 0 || n_ff == 0 || n_vocab == 0 {
        return Err(ConvertError::BadInput(
            "config.json: num_hidden_layers, hidden_size, num_attention_heads, intermediate_size and vocab_size must be positive".into(),
        ));
    }
    let n_ctx = h.usize("max_position_embeddings")?;
    let mut md: Vec<(String, Value)> = vec![
        (format!("{a}.block_count"), Value::U32(n_layer as u32)),
        (format!("{a}.context_length"), Value::U32(n_ctx as u32)),
        (format!("{a}.embedding_length"), Value::U32(n_embd as u32)),
        (format!("{a}.feed_forward_length"), Value::U32(n_ff as u32)),
        (
            format!("{a}.attention.head_count"),
            Value::U32(n_head as u32),
        ),
    ];
    let mut tensors = Vec::new();
    let mut generated = Vec::new();
    if family == Family::Bert {
        if n_embd % n_head != 0 {
            return Err(ConvertError::BadInput(format!(
                "config.json: hidden_size {n_embd} is not a multiple of num_attention_heads {n_head}"
            )));
        }
        let eps = h.opt_f32("layer_norm_eps")?.unwrap_or(1e-12);
        md.push((format!("{a}.attention.layer_norm_epsilon"), Value::F32(eps)));
        md.push((format!("{a}.attention.causal"), Value::Bool(false)));
        let types = h.opt_usize("type_vocab_size")?.unwrap_or(2);
        let e = n_embd;
        tensors.push(t(
            "embeddings.word_embeddings.weight",
            "token_embd.weight",
            &[n_vocab, e],
        ));
        tensors.push(t(
            "embeddings.token_type_embeddings.weight",
            "token_types.weight",
            &[types, e],
        ));
        tensors.push(t(
            "embeddings.position_embeddings.weight",
            "position_embd.weight",
            &[n_ctx, e],
        ));
        tensors.push(t(
            "embeddings.LayerNorm.weight",
            "token_embd_norm.weight",
            &[e],
        ));
        tensors.push(t("embeddings.LayerNorm.bias", "token_embd_norm.bias", &[e]));
        for il in 0..n_layer {
            let p = format!("encoder.layer.{il}");
            let b = format!("blk.{il}");
            for (hf, g, shape) in [
                ("attention.self.query", "attn_q", [e, e]),
                ("attention.self.key", "attn_k", [e, e]),
                ("attention.self.value", "attn_v", [e, e]),
                ("attention.output.dense", "attn_output", [e, e]),
                ("intermediate.dense", "ffn_up", [n_ff, e]),
                ("output.dense", "ffn_down", [e, n_ff]),
            ] {
                tensors.push(t(
                    format!("{p}.{hf}.weight"),
                    format!("{b}.{g}.weight"),
                    &shape,
                ));
                tensors.push(t(
                    format!("{p}.{hf}.bias"),
                    format!("{b}.{g}.bias"),
                    &shape[..1],
                ));
            }
            for (hf, g) in [
                ("attention.output.LayerNorm", "attn_output_norm"),
                ("output.LayerNorm", "layer_output_norm"),
            ] {
                tensors.push(t(
                    format!("{p}.{hf}.weight"),
                    format!("{b}.{g}.weight"),
                    &[e],
                ));
                tensors.push(t(format!("{p}.{hf}.bias"), format!("{b}.{g}.bias"), &[e]));
            }
        }
        return Ok(ArchPlan {
            metadata: md,
            tensors,
            generated,
            n_vocab,
        });
    }

    // Decoders.
    let n_head_kv = h.opt_usize("num_key_value_heads")?.unwrap_or(n_head);
    if n_head_kv == 0 || n_head % n_head_kv != 0 {
        return Err(ConvertError::BadInput(format!(
            "config.json: num_attention_heads {n_head} is not a multiple of num_key_value_heads {n_head_kv}"
        )));
    }
    let explicit_head_dim = h.opt_usize("head_dim")?;
    let head_dim = explicit_head_dim.unwrap_or(n_embd / n_head);
    if head_dim == 0 || (explicit_head_dim.is_none() && n_embd % n_head != 0) {
        return Err(ConvertError::BadInput(format!(
            "config.json: hidden_size {n_embd} is not a multiple of num_attention_heads {n_head} and no head_dim is given"
        )));
    }
    md.push((
        format!("{a}.attention.head_count_kv"),
        Value::U32(n_head_kv as u32),
    ));
    let default_theta = match family {
        Family::Gemma3 => Some(1_000_000.0),
        _ => None,
    };
    if let Some(theta) = h.opt_f32("rope_theta")?.or(default_theta) {
        md.push((format!("{a}.rope.freq_base"), Value::F32(theta)));
    }
    let eps = h
        .opt_f32("rms_norm_eps")?
        .or(h.opt_f32("layer_norm_eps")?)
        .ok_or_else(|| ConvertError::BadInput("config.json: missing `rms_norm_eps`".into()))?;
    md.push((
        format!("{a}.attention.layer_norm_rms_epsilon"),
        Value::F32(eps),
    ));
    if let Some(hd) = explicit_head_dim {
        md.push((format!("{a}.attention.key_length"), Value::U32(hd as u32)));
        md.push((format!("{a}.attention.value_length"), Value::U32(hd as u32)));
    }
    // RoPE scaling.
    let scaling = &cfg["rope_scaling"];
    let rope_type = scaling["rope_type"].as_str().or(scaling["type"].as_str());
    match rope_type {
        None | Some("default") => {}
        Some("linear") => {
            let f = scaling["factor"].as_f64().ok_or_else(|| {
                ConvertError::BadInput("config.json: rope_scaling.factor missing".into())
            })?;
            md.push((format!("{a}.rope.scaling.type"), "linear".into()));
            md.push((format!("{a}.rope.scaling.factor"), Value::F32(f as f32)));
        }
        Some("llama3") if family == Family::Llama => {
            let theta = h.opt_f32("rope_theta")?.unwrap_or(10_000.0);
            generated.push((
                "rope_freqs.weight".to_string(),
                vec![(head_dim / 2) as u64],
                llama3_rope_factors(scaling, theta, head_dim)?,
            ));
        }
        Some(other) => {
            return Err(ConvertError::BadInput(format!(
                "config.json: rope_scaling type `{other}` is not supported by perch's engine"
            )));
        }
    }
    match family {
        Family::Llama => {
            md.push((format!("{a}.vocab_size"), Value::U32(n_vocab as u32)));
            md.push((
                format!("{a}.rope.dimension_count"),
                Value::U32(head_dim as u32),
            ));
        }
        Family::Gemma2 => {
            for (key, gkey) in [
                ("attn_logit_softcapping", "attn_logit_softcapping"),
                ("final_logit_softcapping", "final_logit_softcapping"),
            ] {
                if let Some(v) = h.opt_f32(key)? {
                    md.push((format!("{a}.{gkey}"), Value::F32(v)));
                }
            }
            md.push((
                format!("{a}.attention.sliding_window"),
                Value::U32(h.opt_usize("sliding_window")?.unwrap_or(4096) as u32),
            ));
        }
        Family::Gemma3 => {
            if let Some(w) = h.opt_usize("sliding_window")? {
                md.push((
                    format!("{a}.attention.sliding_window"),
                    Value::U32(w as u32),
                ));
            }
            if let Some(p) = h.opt_usize("sliding_window_pattern")? {
                md.push((
                    format!("{a}.attention.sliding_window_pattern"),
                    Value::U32(p as u32),
                ));
            }
            if let Some(b) = h.opt_f32("rope_local_base_freq")? {
                md.push((format!("{a}.rope.freq_base_swa"), Value::F32(b)));
            }
        }
        Family::Phi3 => {
            let rot = h.opt_f32("partial_rotary_factor")?.unwrap_or(1.0);
            md.push((
                format!("{a}.rope.dimension_count"),
                Value::U32((rot * head_dim as f32) as u32),
            ));
        }
        _ => {}
    }

    let (e, q_dim, kv_dim) = (n_embd, n_head * head_dim, n_head_kv * head_dim);
    tensors.push(t(
        "model.embed_tokens.weight",
        "token_embd.weight",
        &[n_vocab, e],
    ));
    let norm_tf = if matches!(family, Family::Gemma2 | Family::Gemma3) {
        Transform::PlusOne
    } else {
        Transform::None
    };
    let norm = |hf: String, g: String, n: usize| Planned {
        transform: norm_tf,
        ..t(hf, g, &[n])
    };
    tensors.push(norm(
        "model.norm.weight".into(),
        "output_norm.weight".into(),
        e,
    ));
    let tied = cfg["tie_word_embeddings"].as_bool().unwrap_or(false);
    if !matches!(family, Family::Gemma2 | Family::Gemma3) {
        tensors.push(Planned {
            optional: tied,
            ..t("lm_head.weight", "output.weight", &[n_vocab, e])
        });
    }
    for il in 0..n_layer {
        let p = format!("model.layers.{il}");
        let b = format!("blk.{il}");
        tensors.push(norm(
            format!("{p}.input_layernorm.weight"),
            format!("{b}.attn_norm.weight"),
            e,
        ));
        if family == Family::Phi3 {
            tensors.push(t(
                format!("{p}.self_attn.qkv_proj.weight"),
                format!("{b}.attn_qkv.weight"),
                &[q_dim + 2 * kv_dim, e],
            ));
        } else {
            let permute = |n| {
                if family == Family::Llama {
                    Transform::PermuteRows { n_head: n }
                } else {
                    Transform::None
                }
            };
            tensors.push(Planned {
                transform: permute(n_head),
                ..t(
                    format!("{p}.self_attn.q_proj.weight"),
                    format!("{b}.attn_q.weight"),
                    &[q_dim, e],
                )
            });
            tensors.push(Planned {
                transform: permute(n_head_kv),
                ..t(
                    format!("{p}.self_attn.k_proj.weight"),
                    format!("{b}.attn_k.weight"),
                    &[kv_dim, e],
                )
            });
            tensors.push(t(
                format!("{p}.self_attn.v_proj.weight"),
                format!("{b}.attn_v.weight"),
                &[kv_dim, e],
            ));
        }
        if family == Family::Qwen2 {
            for (x, n) in [("q", q_dim), ("k", kv_dim), ("v", kv_dim)] {
                tensors.push(t(
                    format!("{p}.self_attn.{x}_proj.bias"),
                    format!("{b}.attn_{x}.bias"),
                    &[n],
                ));
            }
        }
        if matches!(family, Family::Qwen3 | Family::Gemma3) {
            for x in ["q", "k"] {
                tensors.push(norm(
                    format!("{p}.self_attn.{x}_norm.weight"),
                    format!("{b}.attn_{x}_norm.weight"),
                    head_dim,
                ));
            }
        }
        tensors.push(t(
            format!("{p}.self_attn.o_proj.weight"),
            format!("{b}.attn_output.weight"),
            &[e, q_dim],
        ));
        if matches!(family, Family::Gemma2 | Family::Gemma3) {
            tensors.push(norm(
                format!("{p}.post_attention_layernorm.weight"),
                format!("{b}.post_attention_norm.weight"),
                e,
            ));
            tensors.push(norm(
                format!("{p}.pre_feedforward_layernorm.weight"),
                format!("{b}.ffn_norm.weight"),
                e,
            ));
            tensors.push(norm(
                format!("{p}.post_feedforward_layernorm.weight"),
                format!("{b}.post_ffw_norm.weight"),
                e,
            ));
        } else {
            tensors.push(norm(
                format!("{p}.post_attention_layernorm.weight"),
                format!("{b}.ffn_norm.weight"),
                e,
            ));
        }
        if family == Family::Phi3 {
            tensors.push(t(
                format!("{p}.mlp.gate_up_proj.weight"),
                format!("{b}.ffn_up.weight"),
                &[2 * n_ff, e],
            ));
        } else {
            tensors.push(t(
                format!("{p}.mlp.gate_proj.weight"),
                format!("{b}.ffn_gate.weight"),
                &[n_ff, e],
            ));
            tensors.push(t(
                format!("{p}.mlp.up_proj.weight"),
                format!("{b}.ffn_up.weight"),
                &[n_ff, e],
            ));
        }
        tensors.push(t(
            format!("{p}.mlp.down_proj.weight"),
            format!("{b}.ffn_down.weight"),
            &[e, n_ff],
        ));
    }
    Ok(ArchPlan {
        metadata: md,
        tensors,
        generated,
        n_vocab,
    })
}

/// llama3's per-dimension RoPE frequency divisors (`rope_freqs.weight`), as convert_hf_to_gguf
/// computes them.
fn llama3_rope_factors(scaling: &Json, base: f32, dim: usize) -> Result<Vec<f32>> {
    let get = |k: &str, d: f64| scaling[k].as_f64().unwrap_or(d);
    let factor = scaling["factor"]
        .as_f64()
        .ok_or_else(|| ConvertError::BadInput("config.json: rope_scaling.factor missing".into()))?;
    let low = get("low_freq_factor", 1.0);
    let high = get("high_freq_factor", 4.0);
    let old_ctx = get("original_max_position_embeddings", 8192.0);
    let low_wavelen = old_ctx / low;
    let high_wavelen = old_ctx / high;
    Ok((0..dim / 2)
        .map(|i| {
            let freq = 1.0 / f64::from(base).powf((2 * i) as f64 / dim as f64);
            let wavelen = 2.0 * std::f64::consts::PI / freq;
            let f = if wavelen < high_wavelen {
                1.0
            } else if wavelen > low_wavelen {
                factor
            } else {
                let smooth = (old_ctx / wavelen - low) / (high - low);
                1.0 / ((1.0 - smooth) / factor + smooth)
            };
            f as f32
        })
        .collect())
}

/// Reorder the rows of a `[n_head * head_dim, cols]` matrix from rotate-half to interleaved
/// pairs, as convert_hf_to_gguf's `LlamaModel.permute`.
pub(crate) fn permute_rows(data: &[f32], rows: usize, cols: usize, n_head: usize) -> Vec<f32> {
    let hd = rows / n_head;
    let half = hd / 2;
    let mut out = vec![0.0f32; data.len()];
    for h in 0..n_head {
        for i in 0..half {
            for two in 0..2 {
                let src = h * hd + two * half + i;
                let dst = h * hd + 2 * i + two;
                out[dst * cols..(dst + 1) * cols]
                    .copy_from_slice(&data[src * cols..(src + 1) * cols]);
            }
        }
    }
    out
}
