//! Quantizing a whole GGUF file to a llama.cpp file type, as `llama-quantize` does.
//!
//! The decisions are llama.cpp's, so that the same input and file type give the same tensor
//! types (`src/llama-quant.cpp`):
//!
//! * which tensors are quantized at all ([`allows_quantization`]): weight matrices of two or
//!   more dimensions, not norms, not positional or token-type embeddings, and a list of small
//!   special tensors; everything else is copied as it is;
//! * which type each quantized tensor gets: the file type's mix ([`crate::mix`]), unless
//!   `--pure`, with `--tensor-type` and the output / token-embedding types overriding it;
//! * what a quantized tensor becomes when its row length does not divide the chosen type's
//!   block size ([`fallback_type`]): a 256-element type falls back to a 32-element one, and
//!   F16 when even that does not divide;
//! * the metadata: all keys are kept, `general.file_type` and `general.quantization_version`
//!   set, split keys removed.
//!
//! A tensor already in the chosen type is copied byte for byte. A quantized tensor that would
//! change type is refused unless requantizing is allowed; it is then dequantized to f32 first.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use perch_gguf::{GgufFile, GgufWriter, TensorInfo, Value, keys};
use perch_quant::{GgmlType, dequantize_row, has_dequantizer, has_quantizer, quantize_row};
use rayon::prelude::*;

use crate::error::{ConvertError, Result};
use crate::imatrix::Imatrix;
use crate::mix::{FileType, MixOptions, Mixer, ModelFacts, llama_order};

/// Keys of split files, which a single output file must not carry.
const SPLIT_KEYS: [&str; 3] = ["split.no", "split.count", "split.tensors.count"];

/// Quantized bytes produced per slab of rows: bounds memory on large tensors.
const SLAB_BYTES: usize = 32 << 20;

/// What to produce.
#[derive(Clone, Debug)]
pub struct QuantizeOptions {
    /// The file type: its default tensor type and mix rules, and `general.file_type`.
    pub ftype: FileType,
    /// Allow tensors that are already quantized to be dequantized and quantized again.
    pub allow_requantize: bool,
    /// `--pure`, `--tensor-type` and the other flags that change the mix.
    pub mix: MixOptions,
    /// `--imatrix`: the importance matrix and the file it came from (recorded in the output's
    /// `quantize.imatrix.*` metadata).
    pub imatrix: Option<(Arc<Imatrix>, PathBuf)>,
}

impl QuantizeOptions {
    /// `ftype` with its mix, no flags, no requantizing.
    pub fn new(ftype: FileType) -> QuantizeOptions {
        QuantizeOptions {
            ftype,
            allow_requantize: false,
            mix: MixOptions::default(),
            imatrix: None,
        }
    }
}

/// The decision for one tensor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorChoice {
    /// The tensor's name.
    pub name: String,
    /// Its type in the input.
    pub from: GgmlType,
    /// Its type in the output.
    pub to: GgmlType,
    /// Whether `to` is a fallback because the rows do not divide into the target's blocks.
    pub fallback: bool,
    /// Whether llama.cpp requires an importance matrix for `to` here.
    pub needs_imatrix: bool,
}

impl TensorChoice {
    /// Whether the tensor's bytes are copied unchanged.
    pub fn is_copy(&self) -> bool {
        self.from == self.to
    }
}

/// Progress of [`quantize_file`], reported after each tensor.
#[derive(Clone, Copy, Debug)]
pub struct Progress<'a> {
    /// The tensor just written.
    pub tensor: &'a TensorChoice,
    /// Tensors written so far, this one included.
    pub done: usize,
    /// Tensors in the file.
    pub total: usize,
    /// Input bytes processed so far.
    pub bytes_done: u64,
    /// Input bytes of all tensors.
    pub bytes_total: u64,
}

/// Sizes before and after.
#[derive(Clone, Debug, PartialEq)]
pub struct QuantizeReport {
    /// The decision for every tensor, in file order.
    pub tensors: Vec<TensorChoice>,
    /// Elements of all tensors.
    pub n_elements: u64,
    /// Tensor data bytes in the input.
    pub bytes_in: u64,
    /// Tensor data bytes in the output.
    pub bytes_out: u64,
    /// The input file's size.
    pub file_in: u64,
    /// The output file's size.
    pub file_out: u64,
    /// Wall time.
    pub elapsed: Duration,
}

impl QuantizeReport {
    /// Bits per weight of the input's tensor data.
    pub fn bpw_in(&self) -> f64 {
        bits_per_weight(self.bytes_in, self.n_elements)
    }

    /// Bits per weight of the output's tensor data.
    pub fn bpw_out(&self) -> f64 {
        bits_per_weight(self.bytes_out, self.n_elements)
    }

    /// Tensors that were quantized (type changed).
    pub fn n_quantized(&self) -> usize {
        self.tensors.iter().filter(|t| !t.is_copy()).count()
    }

    /// Tensors that got a fallback type.
    pub fn n_fallback(&self) -> usize {
        self.tensors.iter().filter(|t| t.fallback).count()
    }
}

fn bits_per_weight(bytes: u64, n: u64) -> f64 {
    if n == 0 {
        0.0
    } else {
        bytes as f64 * 8.0 / n as f64
    }
}

/// Whether llama.cpp would quantize tensor `name` of `n_dims` dimensions
/// (`tensor_allows_quantization` in `llama-quant.cpp`): only weight matrices, never norms,
/// positional or token-type embeddings, expert gates, or the small special tensors of
/// recurrent, vision and audio models.
pub fn allows_quantization(name: &str, n_dims: usize) -> bool {
    const NEVER: &[&str] = &[
        "_norm.weight",
        "ffn_gate_inp.weight",
        "ffn_gate_tid2eid.weight",
        "altup",
        "laurel",
        "per_layer_model_proj",
        "ssm_conv1d",
        "shortconv.conv.weight",
        "indexer.k_proj.weight",
        "indexer.q_proj.weight",
        "time_mix_first.weight",
        "time_mix_w0.weight",
        "time_mix_w1.weight",
        "time_mix_w2.weight",
        "time_mix_v0.weight",
        "time_mix_v1.weight",
        "time_mix_v2.weight",
        "time_mix_a0.weight",
        "time_mix_a1.weight",
        "time_mix_a2.weight",
        "time_mix_g1.weight",
        "time_mix_g2.weight",
        "time_mix_decay_w1.weight",
        "time_mix_decay_w2.weight",
        "time_mix_lerp_fused.weight",
        "attn_rel_b.weight",
        ".position_embd",
        "sam.pos_embd",
        "sam.neck.",
        "sam.net_",
        ".rel_pos",
        ".patch_embd",
        ".patch_merger",
        "a.rvq.codebook",
        "mm.a.code_embd",
    ];
    n_dims >= 2
        && name.ends_with("weight")
        && name != "position_embd.weight"
        && name != "token_types.weight"
        && !NEVER.iter().any(|p| name.contains(p))
}

/// The type a tensor with rows of `ncols` elements gets when `target` is asked for
/// (`tensor_type_fallback` in `llama-quant.cpp`): `target` when the rows divide into its
/// blocks; else a 32-element type of similar quality (`Some` with `fallback = true`), and F16
/// when even that does not divide. `None` when llama.cpp defines no fallback for `target`.
pub fn fallback_type(target: GgmlType, ncols: u64) -> Option<(GgmlType, bool)> {
    use GgmlType as T;
    let fits = |ty: GgmlType| ncols % ty.block_size() as u64 == 0;
    if fits(target) {
        return Some((target, false));
    }
    let demoted = match target {
        T::IQ1_S
        | T::IQ1_M
        | T::IQ2_XXS
        | T::IQ2_XS
        | T::IQ2_S
        | T::IQ3_XXS
        | T::IQ3_S
        | T::IQ4_XS => T::IQ4_NL,
        T::Q2_0 | T::Q2_K | T::Q3_K | T::TQ1_0 | T::TQ2_0 => T::Q4_0,
        T::Q4_K => T::Q5_0,
        T::Q5_K => T::Q5_1,
        T::Q6_K => T::Q8_0,
        other if other.block_size() <= 32 => other,
        _ => return None,
    };
    Some((if fits(demoted) { demoted } else { T::F16 }, true))
}

/// Decides every tensor's output type (in file order). Fails when the file type's default
/// type has no quantizer, when a chosen type has none, when a quantized tensor would change
/// type without `allow_requantize`, or when a tensor's type cannot be read back.
pub fn plan(file: &GgufFile, opts: &QuantizeOptions) -> Result<Vec<TensorChoice>> {
    let default = opts.ftype.default_type();
    if !has_quantizer(default) {
        return Err(ConvertError::UnsupportedFileType {
            ftype: opts.ftype.name().to_string(),
            ty: default,
        });
    }
    decide_types(file, opts)?
        .into_iter()
        .zip(file.tensors())
        .map(|(c, t)| check(t, c, opts))
        .collect()
}

/// llama-quantize's choice of type for every tensor (in file order), whether or not perch can
/// quantize to it: [`plan`] without its checks, e.g. to show what an I-quant mix would be.
/// Fails only on a flag that does not fit a tensor or a tensor whose layer cannot be told.
pub fn decide_types(file: &GgufFile, opts: &QuantizeOptions) -> Result<Vec<TensorChoice>> {
    let tensors = file.tensors();
    let facts = ModelFacts::from_file(file);
    let mix = MixOptions {
        has_imatrix: opts.mix.has_imatrix || opts.imatrix.is_some(),
        ..opts.mix.clone()
    };
    let mut mixer = Mixer::new(
        opts.ftype,
        &facts,
        &mix,
        tensors.iter().map(|t| t.name.as_str()),
    );
    let mut order: Vec<usize> = (0..tensors.len()).collect();
    order.sort_by(|&a, &b| llama_order(&tensors[a].name, &tensors[b].name));
    let mut choices: Vec<Option<TensorChoice>> = vec![None; tensors.len()];
    for i in order {
        let t = &tensors[i];
        let d = mixer.decide(&t.name, &t.dims, t.ty)?;
        choices[i] = Some(TensorChoice {
            name: t.name.clone(),
            from: t.ty,
            to: d.ty,
            fallback: d.fallback,
            needs_imatrix: d.needs_imatrix,
        });
    }
    Ok(choices.into_iter().flatten().collect())
}

/// Whether the choice for `t` can be carried out.
fn check(t: &TensorInfo, choice: TensorChoice, opts: &QuantizeOptions) -> Result<TensorChoice> {
    if choice.is_copy() {
        return Ok(choice);
    }
    if t.ty.is_quantized() && !opts.allow_requantize {
        return Err(ConvertError::Requantize {
            tensor: t.name.clone(),
            from: t.ty,
        });
    }
    if !has_dequantizer(t.ty) {
        return Err(ConvertError::NoDequantizer {
            tensor: t.name.clone(),
            ty: t.ty,
        });
    }
    if !has_quantizer(choice.to) {
        return Err(ConvertError::NoQuantizer(choice.to));
    }
    Ok(choice)
}

/// Quantizes the GGUF file at `input` into `output` (written to a temporary file in the same
/// folder and renamed at the end). `on_progress` is called after each tensor.
pub fn quantize_file(
    input: &Path,
    output: &Path,
    opts: &QuantizeOptions,
    mut on_progress: impl FnMut(Progress<'_>),
) -> Result<QuantizeReport> {
    let started = Instant::now();
    if let (Ok(a), Ok(b)) = (input.canonicalize(), output.canonicalize())
        && a == b
    {
        return Err(ConvertError::SameFile(output.to_path_buf()));
    }
    let file = GgufFile::open(input)?;
    let choices = plan(&file, opts)?;
    let imatrix = opts.imatrix.as_ref().map(|(m, _)| m.as_ref());
    // Each quantized tensor's importance weights (columns × experts), checked up front so a
    // wrong file fails before anything is written.
    let mut weights: Vec<Option<Vec<f32>>> = Vec::with_capacity(choices.len());
    for (t, c) in file.tensors().iter().zip(&choices) {
        let w = match imatrix {
            Some(m) if !c.is_copy() => tensor_importance(m, t)?,
            _ => None,
        };
        if w.is_none() && c.needs_imatrix {
            return Err(ConvertError::NeedsImatrix {
                tensor: c.name.clone(),
                ty: c.to,
                ftype: opts.ftype.name().to_string(),
            });
        }
        weights.push(w);
    }

    let mut md = file.metadata().clone();
    md.set(keys::GENERAL_QUANTIZATION_VERSION, Value::U32(2));
    md.set(keys::GENERAL_FILE_TYPE, Value::U32(opts.ftype.id()));
    for k in SPLIT_KEYS {
        md.remove(k);
    }
    if let Some((m, path)) = &opts.imatrix {
        md.set("quantize.imatrix.file", path.to_string_lossy().into_owned());
        if let Some(d) = m.datasets.first() {
            md.set("quantize.imatrix.dataset", d.clone());
        }
        md.set(
            "quantize.imatrix.entries_count",
            Value::U32(m.entries.len() as u32),
        );
        md.set("quantize.imatrix.chunks_count", Value::U32(m.chunk_count));
    }
    let infos = file
        .tensors()
        .iter()
        .zip(&choices)
        .map(|(t, c)| TensorInfo::new(t.name.clone(), c.to, t.dims.clone()))
        .collect::<perch_gguf::Result<Vec<_>>>()?;
    let mut writer = GgufWriter::create(output, &md, infos)?;

    let bytes_total: u64 = file.tensors().iter().map(|t| t.n_bytes).sum();
    let mut bytes_done = 0;
    let mut buf = Vec::new();
    for (i, (t, c)) in file.tensors().iter().zip(&choices).enumerate() {
        let view = file.require_tensor(&t.name)?;
        if c.is_copy() {
            writer.write_tensor(&t.name, view.data)?;
        } else {
            convert_tensor(
                t,
                c,
                weights[i].as_deref(),
                view.data,
                &mut buf,
                &mut writer,
            )?;
        }
        bytes_done += t.n_bytes;
        on_progress(Progress {
            tensor: c,
            done: i + 1,
            total: choices.len(),
            bytes_done,
            bytes_total,
        });
    }
    let bytes_out = writer.tensors().iter().map(|t| t.n_bytes).sum();
    writer.finish()?;
    let file_out = std::fs::metadata(output).map_or(0, |m| m.len());
    Ok(QuantizeReport {
        n_elements: file.tensors().iter().map(|t| t.n_elements).sum(),
        tensors: choices,
        bytes_in: bytes_total,
        bytes_out,
        file_in: file.len(),
        file_out,
        elapsed: started.elapsed(),
    })
}

/// The importance weights for tensor `t` (its columns times its experts), `None` when the
/// matrix has no entry (as llama-quantize, which then quantizes without); an entry of the
/// wrong size is an error, except for the token embeddings, which llama-quantize skips.
fn tensor_importance(m: &Imatrix, t: &TensorInfo) -> Result<Option<Vec<f32>>> {
    let Some(w) = m.importance(&t.name) else {
        tracing::info!(tensor = %t.name, "no importance weights in the imatrix");
        return Ok(None);
    };
    let n_mat = t.dims.get(2).copied().unwrap_or(1) as usize;
    let want = t.dims[0] as usize * n_mat;
    if w.len() == want {
        Ok(Some(w))
    } else if t.name == "token_embd.weight" {
        Ok(None)
    } else {
        Err(ConvertError::ImatrixSize {
            tensor: t.name.clone(),
            got: w.len(),
            want,
        })
    }
}

/// Converts one tensor row by row, in slabs of rows, in parallel over the rows of a slab.
/// `importance`, when given, holds each expert's column weights one after the other.
fn convert_tensor(
    t: &TensorInfo,
    c: &TensorChoice,
    importance: Option<&[f32]>,
    src: &[u8],
    buf: &mut Vec<u8>,
    writer: &mut GgufWriter,
) -> Result<()> {
    let ncols = t.dims[0] as usize;
    let row_in = t.row_bytes() as usize;
    let row_out =
        c.to.bytes_for(ncols as u64)
            .ok_or(ConvertError::Indivisible {
                tensor: t.name.clone(),
                ncols: ncols as u64,
                ty: c.to,
            })? as usize;
    let rows_per_slab = (SLAB_BYTES / row_out.max(1)).max(1);
    let quant_err = |source| ConvertError::Quant {
        tensor: t.name.clone(),
        source,
    };
    // Rows per expert: importance weights change every this many rows.
    let rows_per_mat = t.dims.get(1).copied().unwrap_or(1).max(1) as usize;
    let mut first_row = 0;
    for slab in src.chunks(rows_per_slab * row_in) {
        let n_rows = slab.len() / row_in;
        buf.clear();
        buf.resize(n_rows * row_out, 0);
        buf.par_chunks_mut(row_out)
            .zip(slab.par_chunks(row_in))
            .enumerate()
            .try_for_each_init(
                || vec![0f32; ncols],
                |row, (r, (dst, src))| {
                    dequantize_row(c.from, src, row)?;
                    let mat = (first_row + r) / rows_per_mat;
                    let w = importance.map(|w| &w[mat * ncols..(mat + 1) * ncols]);
                    quantize_row(c.to, row, dst, w)
                },
            )
            .map_err(quant_err)?;
        first_row += n_rows;
        writer.write_tensor_chunk(buf)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use perch_gguf::GgufBuilder;

    #[test]
    fn norms_vectors_and_embeddings_of_positions_stay() {
        assert!(allows_quantization("blk.0.attn_q.weight", 2));
        assert!(allows_quantization("token_embd.weight", 2));
        assert!(allows_quantization("output.weight", 2));
        assert!(!allows_quantization("blk.0.attn_norm.weight", 1));
        assert!(!allows_quantization("blk.0.attn_q_norm.weight", 2));
        assert!(!allows_quantization("blk.0.attn_q.bias", 2));
        assert!(!allows_quantization("position_embd.weight", 2));
        assert!(!allows_quantization("token_types.weight", 2));
        assert!(!allows_quantization("blk.0.ffn_gate_inp.weight", 2));
    }

    #[test]
    fn fallbacks_follow_llama_quant() {
        use GgmlType as T;
        assert_eq!(fallback_type(T::Q4_K, 512), Some((T::Q4_K, false)));
        assert_eq!(fallback_type(T::Q4_K, 576), Some((T::Q5_0, true)));
        assert_eq!(fallback_type(T::Q5_K, 576), Some((T::Q5_1, true)));
        assert_eq!(fallback_type(T::Q6_K, 576), Some((T::Q8_0, true)));
        assert_eq!(fallback_type(T::Q2_K, 576), Some((T::Q4_0, true)));
        assert_eq!(fallback_type(T::TQ1_0, 576), Some((T::Q4_0, true)));
        assert_eq!(fallback_type(T::IQ4_XS, 576), Some((T::IQ4_NL, true)));
        assert_eq!(fallback_type(T::Q4_K, 100), Some((T::F16, true)));
        assert_eq!(fallback_type(T::Q4_0, 100), Some((T::F16, true)));
        assert_eq!(fallback_type(T::Q8_K, 576), None);
    }

    fn small_model(ty: GgmlType) -> GgufFile {
        let w: Vec<f32> = (0..64 * 4).map(|i| (i as f32 * 0.37).sin()).collect();
        let mut bytes = vec![0u8; ty.bytes_for(w.len() as u64).unwrap() as usize];
        quantize_row(ty, &w, &mut bytes, None).unwrap();
        GgufBuilder::new()
            .kv("general.architecture", "llama")
            .tensor("blk.0.attn_q.weight", ty, vec![64, 4], bytes)
            .unwrap()
            .tensor_f32("blk.0.attn_norm.weight", vec![64], &[1.0; 64])
            .unwrap()
            .build()
            .unwrap()
    }

    #[test]
    fn quantized_input_needs_allow_requantize() {
        let f = small_model(GgmlType::Q8_0);
        let mut opts = QuantizeOptions::new(FileType::Q4_0);
        let err = plan(&f, &opts).unwrap_err();
        assert!(
            matches!(&err, ConvertError::Requantize { tensor, from: GgmlType::Q8_0 } if tensor == "blk.0.attn_q.weight"),
            "{err}"
        );
        opts.allow_requantize = true;
        let p = plan(&f, &opts).unwrap();
        assert_eq!(p[0].to, GgmlType::Q4_0);
        assert_eq!(p[1].to, GgmlType::F32, "the norm is not quantized");
        // Asking for the type a tensor already has copies it, no permission needed.
        opts = QuantizeOptions::new(FileType::Q8_0);
        assert!(plan(&f, &opts).unwrap()[0].is_copy());
    }

    #[test]
    fn types_without_a_quantizer_are_refused() {
        let f = small_model(GgmlType::F32);
        let opts = QuantizeOptions::new(FileType::IQ2_XXS);
        let err = plan(&f, &opts).unwrap_err();
        assert!(
            matches!(
                &err,
                ConvertError::UnsupportedFileType { ftype, ty: GgmlType::IQ2_XXS } if ftype == "IQ2_XXS"
            ),
            "{err}"
        );
        assert!(err.to_string().contains("IQ2_XXS"), "{err}");
    }
}
