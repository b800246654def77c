//! Hugging Face model folders to GGUF, as llama.cpp's `convert_hf_to_gguf.py` writes them.
//!
//! A folder holds `config.json` (architecture and hyper-parameters), `tokenizer.json` and
//! `tokenizer_config.json` (vocabulary, special tokens, chat template) and the weights in
//! safetensors (one file, or shards listed by `model.safetensors.index.json`). [`convert_hf`]
//! checks every tensor against the shape config.json implies before writing anything, then
//! streams tensor by tensor (each read from the memory map, converted to f32, transformed,
//! converted to the output type) into a [`GgufWriter`], which writes a temporary file renamed
//! at the end.
//!
//! Output types follow llama.cpp's rules: 1-D tensors, norms, biases, `position_embd` and
//! `token_types` stay F32; other weights take the output type, and Q8_0 falls back to F16 for
//! rows that are not a whole number of 32-element blocks.

mod arch;
mod pre_hashes;
mod source;
mod vocab;

use std::path::Path;

use perch_gguf::{GgufWriter, Metadata, TensorInfo, Value};
use perch_quant::GgmlType;
use rayon::prelude::*;

use crate::error::{ConvertError, Result};
use arch::{Family, Transform, canonical, ignored, permute_rows};
pub use source::Tensors;

/// The element type of the converted weights (`--outtype`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutType {
    /// 32-bit floats (lossless from F32 checkpoints).
    F32,
    /// 16-bit floats.
    F16,
    /// bfloat16.
    Bf16,
    /// 8-bit blocks of 32 with an f16 scale.
    Q8_0,
}

impl OutType {
    /// Parse `f32`, `f16`, `bf16` or `q8_0` (any case).
    pub fn parse(s: &str) -> Option<OutType> {
        Some(match s.to_ascii_lowercase().as_str() {
            "f32" => OutType::F32,
            "f16" => OutType::F16,
            "bf16" => OutType::Bf16,
            "q8_0" => OutType::Q8_0,
            _ => return None,
        })
    }

    /// The ggml type of the converted weights.
    pub fn ggml_type(self) -> GgmlType {
        match self {
            OutType::F32 => GgmlType::F32,
            OutType::F16 => GgmlType::F16,
            OutType::Bf16 => GgmlType::BF16,
            OutType::Q8_0 => GgmlType::Q8_0,
        }
    }

    /// llama.cpp's `general.file_type` (`LlamaFileType`).
    pub fn file_type(self) -> u32 {
        match self {
            OutType::F32 => 0,
            OutType::F16 => 1,
            OutType::Q8_0 => 7,
            OutType::Bf16 => 32,
        }
    }
}

/// Progress of a conversion, reported after each tensor.
#[derive(Clone, Copy, Debug)]
pub struct ConvertProgress<'a> {
    /// The tensor just written (GGUF name).
    pub tensor: &'a str,
    /// Tensors written so far.
    pub done: usize,
    /// Tensors in the output.
    pub total: usize,
}

/// What a conversion wrote.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvertReport {
    /// `general.architecture`.
    pub arch: String,
    /// Tensors written.
    pub n_tensors: usize,
    /// Elements of all tensors.
    pub n_elements: u64,
    /// Bytes of tensor data written.
    pub bytes: u64,
}

/// The type a tensor gets in the output, by llama.cpp's rules.
pub fn tensor_type(gguf_name: &str, dims: &[u64], out: OutType) -> GgmlType {
    let keep_f32 = dims.len() <= 1
        || gguf_name.ends_with("_norm.weight")
        || !gguf_name.ends_with(".weight")
        || gguf_name == "position_embd.weight"
        || gguf_name == "token_types.weight";
    if keep_f32 {
        return GgmlType::F32;
    }
    let ty = out.ggml_type();
    if dims[0] % ty.block_size() as u64 != 0 {
        GgmlType::F16
    } else {
        ty
    }
}

/// Convert values to `ty`'s bytes.
pub(crate) fn encode(ty: GgmlType, values: &[f32], row_len: usize, name: &str) -> Result<Vec<u8>> {
    let row_bytes = ty.bytes_for(row_len as u64).expect("row length checked") as usize;
    let n_rows = values.len() / row_len.max(1);
    let mut out = vec![0u8; n_rows * row_bytes];
    out.par_chunks_mut(row_bytes)
        .zip(values.par_chunks(row_len))
        .try_for_each(|(dst, src)| perch_quant::quantize_row(ty, src, dst, None))
        .map_err(|source| ConvertError::Quant {
            tensor: name.to_string(),
            source,
        })?;
    Ok(out)
}

/// A JSON file of the folder; a missing file and bad JSON are errors naming it.
pub(crate) fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).map_err(|e| ConvertError::MissingFile {
        path: path.to_path_buf(),
        why: e.to_string(),
    })?;
    serde_json::from_str(&text)
        .map_err(|e| ConvertError::BadInput(format!("{}: {e}", path.display())))
}

/// The model's name for `general.name`: config.json's `_name_or_path` (its last part), else
/// the folder's name.
fn model_name(dir: &Path, cfg: &serde_json::Value) -> String {
    cfg["_name_or_path"]
        .as_str()
        .and_then(|p| p.rsplit('/').next())
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .or_else(|| {
            dir.canonicalize()
                .ok()
                .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        })
        .unwrap_or_else(|| "model".into())
}

/// The pooling sentence-transformers applies (`modules.json` → the Pooling module's
/// config.json), as llama.cpp's `_try_set_pooling_type`: 1 mean, 2 CLS, 3 last token.
fn pooling_type(dir: &Path) -> Result<Option<u32>> {
    let modules = dir.join("modules.json");
    if !modules.is_file() {
        return Ok(None);
    }
    let list = read_json(&modules)?;
    let Some(pool) = list
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["type"].as_str().is_some_and(|t| t.ends_with("Pooling")))
    else {
        return Ok(None);
    };
    let sub = pool["path"].as_str().unwrap_or_default();
    if sub.contains("..") || sub.starts_with('/') {
        return Err(ConvertError::BadInput(format!(
            "{}: pooling path `{sub}` leaves the folder",
            modules.display()
        )));
    }
    let cfg = read_json(&dir.join(sub).join("config.json"))?;
    let t = if cfg["pooling_mode_mean_tokens"] == true {
        1
    } else if cfg["pooling_mode_cls_token"] == true {
        2
    } else if cfg["pooling_mode_lasttoken"] == true {
        3
    } else {
        match cfg["pooling_mode"].as_str() {
            Some("mean") => 1,
            Some("cls") => 2,
            Some("lasttoken") => 3,
            _ => {
                return Err(ConvertError::BadInput(format!(
                    "{}: perch (like llama.cpp) pools by mean, CLS or last token only",
                    dir.join(sub).join("config.json").display()
                )));
            }
        }
    };
    Ok(Some(t))
}

/// One tensor of the output with where its values come from.
struct Job {
    info: TensorInfo,
    /// Checkpoint name, or `None` for a generated tensor (values in `generated`).
    hf: Option<String>,
    transform: Transform,
    generated: Vec<f32>,
}

/// Convert the Hugging Face folder `dir` to a GGUF file at `out`.
pub fn convert_hf(
    dir: &Path,
    out: &Path,
    outtype: OutType,
    mut on_progress: impl FnMut(ConvertProgress<'_>),
) -> Result<ConvertReport> {
    if !dir.is_dir() {
        return Err(ConvertError::MissingFile {
            path: dir.to_path_buf(),
            why: "not a folder (expected a Hugging Face model folder with config.json)".into(),
        });
    }
    let cfg = read_json(&dir.join("config.json"))?;
    let family = Family::from_config(&cfg)?;
    let plan = arch::plan(family, &cfg)?;
    let tok = vocab::HfTokenizer::open(dir)?;
    let tensors = Tensors::open(dir)?;

    // Every checkpoint tensor must be known, every needed one present with its shape.
    let mut by_canonical = std::collections::HashMap::new();
    for name in tensors.index.keys() {
        if ignored(family, &canonical(family, name)) {
            continue;
        }
        by_canonical.insert(canonical(family, name), name.clone());
    }
    let mut jobs = Vec::new();
    let mut used = std::collections::HashSet::new();
    for p in &plan.tensors {
        let Some(real) = by_canonical.get(&p.hf) else {
            if p.optional {
                continue;
            }
            return Err(ConvertError::MissingTensor(p.hf.clone()));
        };
        used.insert(p.hf.clone());
        let meta = &tensors.index[real];
        if meta.shape != p.shape {
            return Err(ConvertError::WrongShape {
                tensor: real.clone(),
                found: meta.shape.clone(),
                expected: p.shape.clone(),
            });
        }
        let dims: Vec<u64> = p.shape.iter().rev().map(|&d| d as u64).collect();
        let ty = tensor_type(&p.gguf, &dims, outtype);
        jobs.push(Job {
            info: TensorInfo::new(p.gguf.clone(), ty, dims)?,
            hf: Some(real.clone()),
            transform: p.transform,
            generated: Vec::new(),
        });
    }
    if let Some(extra) = by_canonical.keys().filter(|k| !used.contains(*k)).min() {
        return Err(ConvertError::UnexpectedTensor(by_canonical[extra].clone()));
    }
    for (name, dims, values) in plan.generated {
        jobs.push(Job {
            info: TensorInfo::new(name, GgmlType::F32, dims)?,
            hf: None,
            transform: Transform::None,
            generated: values,
        });
    }

    // Metadata: general.*, the architecture's, then the tokenizer's.
    let h = arch::Hparams(&cfg);
    let mut md = Metadata::default();
    md.set("general.architecture", family.gguf_name());
    md.set("general.name", model_name(dir, &cfg));
    for (k, v) in plan.metadata {
        md.set(k, v);
    }
    if family == Family::Bert {
        if let Some(p) = pooling_type(dir)? {
            md.set("bert.pooling_type", Value::U32(p));
        }
    }
    md.set("general.file_type", Value::U32(outtype.file_type()));
    md.set("general.quantization_version", Value::U32(2));
    let tok_md = if family == Family::Bert {
        let types = h.opt_usize("type_vocab_size")?.unwrap_or(1) as u32;
        tok.bert_metadata(Some(plan.n_vocab), types)?
    } else {
        let id = |k: &str| cfg[k].as_u64().map(|v| v as u32);
        tok.bpe_metadata(Some(plan.n_vocab), id("bos_token_id"), id("eos_token_id"))?
    };
    for (k, v) in tok_md {
        md.set(k, v);
    }

    let infos: Vec<TensorInfo> = jobs.iter().map(|j| j.info.clone()).collect();
    let mut writer = GgufWriter::create(out, &md, infos)?;
    let total = jobs.len();
    let mut report = ConvertReport {
        arch: family.gguf_name().to_string(),
        n_tensors: total,
        n_elements: 0,
        bytes: 0,
    };
    for (i, job) in jobs.into_iter().enumerate() {
        let info = &job.info;
        let mut values = match &job.hf {
            Some(name) => tensors.f32(name)?,
            None => job.generated,
        };
        let row_len = info.dims.first().copied().unwrap_or(1) as usize;
        let n_rows = values.len() / row_len.max(1);
        match job.transform {
            Transform::None => {}
            Transform::PlusOne => values.iter_mut().for_each(|v| *v += 1.0),
            Transform::PermuteRows { n_head } => {
                values = permute_rows(&values, n_rows, row_len, n_head);
            }
        }
        let bytes = encode(info.ty, &values, row_len, &info.name)?;
        writer.write_tensor(&info.name, &bytes)?;
        report.n_elements += values.len() as u64;
        report.bytes += bytes.len() as u64;
        on_progress(ConvertProgress {
            tensor: &info.name,
            done: i + 1,
            total,
        });
    }
    writer.finish()?;
    Ok(report)
}
