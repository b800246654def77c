//! ONNX quantization, the way `onnxruntime.quantization` does it, in Rust.
//!
//! * [`Mode::DynamicInt8`] (`quantize_dynamic`): MatMul and Gemm weights become int8
//!   initializers; each float activation goes through `DynamicQuantizeLinear` (uint8, range
//!   measured at run time) into `MatMulInteger`, whose int32 result is cast to float and
//!   scaled by the product of the two scales. Gather tables (embeddings) become int8 with a
//!   `DequantizeLinear` after the Gather, as ONNX Runtime's dynamic mode does.
//! * [`Mode::Int4`] (`MatMulNBits` quantizer): MatMul and Gemm weights in 4-bit blocks of
//!   32, 64 or 128 along K (`com.microsoft.MatMulNBits`), symmetric or with zero points;
//!   Gather tables as `com.microsoft.GatherBlockQuantized`.
//! * [`Mode::StaticInt8`] (`quantize_static`, QDQ format): activation ranges measured by
//!   running ONNX Runtime on calibration texts (min-max or percentile), then
//!   QuantizeLinear/DequantizeLinear pairs before MatMul and Gemm inputs, int8 weights with
//!   a DequantizeLinear, which ONNX Runtime fuses into integer kernels.
//!
//! Every mode keeps the original node outputs' names, so the rest of the graph is
//! untouched. [`quantize_file`] checks that ONNX Runtime loads the result before it replaces
//! anything and reports sizes.

mod calibrate;
mod rewrite;
mod targets;
mod weights;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use calibrate::{CalibrationMethod, Ranges, calibrate};

use crate::error::{OnnxError, Result};
use crate::model::{OnnxModel, SaveOptions};
use crate::runtime::SessionConfig;

/// What to quantize to.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    /// int8 weights, activations quantized at run time (DynamicQuantizeLinear +
    /// MatMulInteger).
    DynamicInt8,
    /// 4-bit block-quantized weights (MatMulNBits, GatherBlockQuantized).
    Int4 {
        /// Elements per block along K: 32, 64 or 128.
        block_size: usize,
        /// No zero points (values in -8..7 around 0) instead of a zero point per block.
        symmetric: bool,
    },
    /// int8 QDQ with calibrated activation ranges.
    StaticInt8 {
        /// Calibration inputs and how ranges are taken.
        calibration: Calibration,
    },
}

/// Calibration data for [`Mode::StaticInt8`].
#[derive(Debug, Clone, PartialEq)]
pub struct Calibration {
    /// Texts to run through the model (one input each).
    pub texts: Vec<String>,
    /// tokenizer.json (default: beside the model or one folder up).
    pub tokenizer: Option<PathBuf>,
    /// How a tensor's range is taken from the values seen.
    pub method: CalibrationMethod,
}

/// Options of [`quantize_model`] / [`quantize_file`].
#[derive(Debug, Clone, PartialEq)]
pub struct QuantizeOptions {
    /// The mode.
    pub mode: Mode,
    /// Node names or operator types to leave in float.
    pub exclude: Vec<String>,
    /// Also quantize Gather tables (token embeddings), as ONNX Runtime's dynamic mode does
    /// (default true).
    pub quantize_gather: bool,
    /// int8 weight scales per output column instead of one per tensor (default true; ONNX
    /// Runtime's default is per tensor).
    pub per_channel: bool,
}

impl QuantizeOptions {
    /// Options for `mode` with the defaults.
    pub fn new(mode: Mode) -> Self {
        Self {
            mode,
            exclude: Vec::new(),
            quantize_gather: true,
            per_channel: true,
        }
    }
}

/// What a quantization did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QuantizeReport {
    /// Nodes rewritten, by original operator type.
    pub quantized: BTreeMap<String, usize>,
    /// Candidate nodes left in float (excluded, non-constant or unsupported weights).
    pub skipped: Vec<String>,
    /// Initializer bytes before.
    pub weight_bytes_in: u64,
    /// Initializer bytes after.
    pub weight_bytes_out: u64,
    /// Input model size (file plus external data).
    pub file_bytes_in: u64,
    /// Output model size (file plus external data; 0 from [`quantize_model`]).
    pub file_bytes_out: u64,
}

impl QuantizeReport {
    /// Output size over input size (files when known, else initializers).
    pub fn ratio(&self) -> f64 {
        if self.file_bytes_in > 0 && self.file_bytes_out > 0 {
            self.file_bytes_out as f64 / self.file_bytes_in as f64
        } else {
            self.weight_bytes_out as f64 / self.weight_bytes_in.max(1) as f64
        }
    }
}

fn initializer_bytes(model: &OnnxModel) -> u64 {
    model.proto.graph.as_ref().map_or(0, |g| {
        g.initializer.iter().map(crate::tensor::data_bytes).sum()
    })
}

/// Quantizes a validated model in memory. `model_path` is used by static mode to find the
/// tokenizer and run calibration.
pub fn quantize_model(
    model: &OnnxModel,
    opts: &QuantizeOptions,
    model_path: &Path,
) -> Result<(OnnxModel, QuantizeReport)> {
    model.validate()?;
    let opset = model.opset("").unwrap_or(0);
    if opset < 13 {
        return Err(OnnxError::Quantize(format!(
            "the model imports ai.onnx opset {opset}; quantization needs 13 or newer (per-axis DequantizeLinear)"
        )));
    }
    if let Mode::Int4 { block_size, .. } = opts.mode
        && ![32, 64, 128].contains(&block_size)
    {
        return Err(OnnxError::Quantize(format!(
            "block size {block_size}: use 32, 64 or 128"
        )));
    }
    let ranges = match &opts.mode {
        Mode::StaticInt8 { calibration } => {
            let targets = targets::static_targets(model, opts)?;
            Some(calibrate(model_path, &targets, calibration)?)
        }
        _ => None,
    };
    let mut out = model.clone();
    out.inline_external_data()?;
    let mut report = QuantizeReport {
        weight_bytes_in: initializer_bytes(model),
        ..Default::default()
    };
    rewrite::rewrite(&mut out, opts, ranges.as_ref(), &mut report)?;
    report.weight_bytes_out = initializer_bytes(&out);
    if report.quantized.is_empty() {
        return Err(OnnxError::Quantize(
            "no node could be quantized (no MatMul, Gemm or Gather with a constant float weight, or all excluded)".into(),
        ));
    }
    Ok((out, report))
}

fn file_size(path: &Path, model: &OnnxModel) -> u64 {
    let mut size = std::fs::metadata(path).map_or(0, |m| m.len());
    let mut seen = Vec::new();
    if let Some(g) = &model.proto.graph {
        for t in g
            .initializer
            .iter()
            .filter(|t| crate::tensor::is_external(t))
        {
            if let Ok(r) = crate::external::reference(t)
                && !seen.contains(&r.location)
            {
                size +=
                    std::fs::metadata(model.base_dir().join(&r.location)).map_or(0, |m| m.len());
                seen.push(r.location);
            }
        }
    }
    size
}

/// Quantizes the model file `input` into `output`: the result is written to a temporary
/// file, loaded by ONNX Runtime (so a model it refuses is never kept), then renamed.
pub fn quantize_file(
    input: &Path,
    output: &Path,
    opts: &QuantizeOptions,
) -> Result<QuantizeReport> {
    let model = OnnxModel::open(input)?;
    // The runtime must be there before any work is done.
    crate::runtime::environment()?;
    let (quantized, mut report) = quantize_model(&model, opts, input)?;
    report.file_bytes_in = file_size(input, &model);
    let dir = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let tmp = tempfile::Builder::new()
        .prefix(".perch-quantize.")
        .suffix(".onnx")
        .tempfile_in(&dir)
        .map_err(|e| OnnxError::io(&dir, e))?
        .into_temp_path();
    let saved = quantized.save(&tmp, &SaveOptions::default())?;
    SessionConfig::default().open(&tmp).map_err(|e| {
        OnnxError::Quantize(format!(
            "ONNX Runtime does not load the quantized model: {e}"
        ))
    })?;
    tmp.persist(output)
        .map_err(|e| OnnxError::io(output, e.error))?;
    report.file_bytes_out = saved.total();
    Ok(report)
}
