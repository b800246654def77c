//! The error of this crate's operations. Each variant names what was wrong: the tensor, the
//! type, the path.

use std::path::PathBuf;

use perch_gguf::GgufError;
use perch_quant::{GgmlType, QuantError};

/// Why a model could not be transformed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConvertError {
    /// Reading or writing a GGUF file failed (the message names the file and the problem).
    #[error(transparent)]
    Gguf(#[from] GgufError),
    /// perch has no quantizer for the requested type.
    #[error("perch cannot quantize to {0}: it has no quantizer for that type")]
    NoQuantizer(GgmlType),
    /// A tensor is already quantized and requantizing was not allowed.
    #[error(
        "tensor {tensor} is already quantized ({from}); requantizing loses quality, so it needs \
         --allow-requantize (better: start from an F32, F16 or BF16 file)"
    )]
    Requantize {
        /// The tensor.
        tensor: String,
        /// Its type in the input.
        from: GgmlType,
    },
    /// A tensor's type cannot be read back to floats.
    #[error("tensor {tensor}: perch cannot dequantize {ty}")]
    NoDequantizer {
        /// The tensor.
        tensor: String,
        /// Its type.
        ty: GgmlType,
    },
    /// A row length does not divide the target's block size and llama.cpp defines no
    /// fallback type for it.
    #[error(
        "tensor {tensor}: rows of {ncols} elements do not divide into {target} blocks of {block}, \
         and there is no fallback type for {target}"
    )]
    NoFallback {
        /// The tensor.
        tensor: String,
        /// Its row length.
        ncols: u64,
        /// The requested type.
        target: GgmlType,
        /// The requested type's block size.
        block: usize,
    },
    /// Quantizing or dequantizing a row failed (e.g. a NaN in the weights).
    #[error("tensor {tensor}: {source}")]
    Quant {
        /// The tensor.
        tensor: String,
        /// What went wrong.
        source: QuantError,
    },
    /// The output would overwrite the input.
    #[error("the output {0} is the input file; write to another path")]
    SameFile(PathBuf),
}

/// This crate's result type.
pub type Result<T, E = ConvertError> = std::result::Result<T, E>;
