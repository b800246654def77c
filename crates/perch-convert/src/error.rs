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
    /// The file type's tensors need a type perch has no quantizer for.
    #[error(
        "perch cannot make {ftype} files: they are mostly {ty}, which perch cannot quantize to \
         (the 1- to 3-bit I-quants need an importance matrix and quantizers perch does not have \
         yet)"
    )]
    UnsupportedFileType {
        /// The file type's name.
        ftype: String,
        /// Its default tensor type.
        ty: GgmlType,
    },
    /// llama.cpp requires an importance matrix for this tensor's type in this file type.
    #[error(
        "tensor {tensor} would be {ty} in a {ftype} file, which needs an importance matrix \
         for it (give one with --imatrix, made by `perch imatrix`), or choose another file type \
         or --tensor-type"
    )]
    NeedsImatrix {
        /// The tensor.
        tensor: String,
        /// Its chosen type.
        ty: GgmlType,
        /// The file type's name.
        ftype: String,
    },
    /// The importance matrix does not fit a tensor.
    #[error(
        "the importance matrix has {got} values for tensor {tensor}, which needs {want} \
         (was it made for another model?)"
    )]
    ImatrixSize {
        /// The tensor.
        tensor: String,
        /// Values in the imatrix.
        got: usize,
        /// Columns times experts of the tensor.
        want: usize,
    },
    /// The importance-matrix file could not be used.
    #[error(transparent)]
    Imatrix(#[from] crate::imatrix::ImatrixError),
    /// A type given by a flag does not fit the tensor's rows.
    #[error("tensor {tensor}: rows of {ncols} elements do not divide into {ty} blocks")]
    Indivisible {
        /// The tensor.
        tensor: String,
        /// Its row length.
        ncols: u64,
        /// The type asked for.
        ty: GgmlType,
    },
    /// A mixture-of-experts tensor whose block number cannot be read or is out of range.
    #[error("tensor {tensor}: cannot tell its layer (expected blk.N. with N below {n_layer})")]
    NoLayer {
        /// The tensor.
        tensor: String,
        /// Layers in the model.
        n_layer: u32,
    },
    /// A flag's value cannot be used.
    #[error("{flag} {value:?}: {why}")]
    BadFlag {
        /// The flag.
        flag: &'static str,
        /// Its value.
        value: String,
        /// What is wrong.
        why: String,
    },
    /// A file of the model folder is missing or cannot be read.
    #[error("{path}: {why}")]
    MissingFile {
        /// The file.
        path: PathBuf,
        /// Why it cannot be used.
        why: String,
    },
    /// The input is malformed or inconsistent (the message names the file and the problem).
    #[error("{0}")]
    BadInput(String),
    /// The model's architecture is not one perch converts.
    #[error(
        "unsupported architecture `{0}`: perch converts llama (and mistral), qwen2, qwen3, gemma2, gemma3, phi3 and bert"
    )]
    UnsupportedArch(String),
    /// A tensor the architecture needs is not in the checkpoint.
    #[error("missing tensor `{0}` in the checkpoint")]
    MissingTensor(String),
    /// A tensor the architecture does not use is in the checkpoint.
    #[error("unexpected tensor `{0}` in the checkpoint: perch does not know where it goes")]
    UnexpectedTensor(String),
    /// A tensor's shape disagrees with the configuration.
    #[error("tensor `{tensor}` has shape {found:?}, but config.json implies {expected:?}")]
    WrongShape {
        /// The tensor (checkpoint name).
        tensor: String,
        /// Its shape (outermost first).
        found: Vec<usize>,
        /// The shape the configuration implies.
        expected: Vec<usize>,
    },
    /// The output would overwrite the input.
    #[error("the output {0} is the input file; write to another path")]
    SameFile(PathBuf),
}

/// This crate's result type.
pub type Result<T, E = ConvertError> = std::result::Result<T, E>;
