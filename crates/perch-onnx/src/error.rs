//! The one error type of perch-onnx.

use std::path::PathBuf;

/// What went wrong reading, checking, writing or running an ONNX model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OnnxError {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The bytes are not a protobuf `ModelProto` (truncated, garbage, or another format).
    #[error("{}: not a valid ONNX model (the protobuf does not decode: {source}); the file is truncated or not ONNX", path.display())]
    Decode {
        /// The file (or `<memory>`).
        path: PathBuf,
        /// prost's description of the failure.
        source: prost::DecodeError,
    },
    /// The model breaks a rule of the ONNX format.
    #[error("invalid ONNX model: {0}")]
    Invalid(String),
    /// A node reads a value nothing produces (typically a missing initializer).
    #[error(
        "invalid ONNX model: node {node:?} ({op_type}) reads {input:?}, which is neither a graph input, an initializer nor the output of a node (missing initializer?)"
    )]
    MissingInput {
        /// The node's name (or `#index` when it has none).
        node: String,
        /// The node's operator.
        op_type: String,
        /// The value name nothing defines.
        input: String,
    },
    /// An operator set the model imports is newer than this build understands.
    #[error(
        "unsupported opset: the model imports {domain} version {version}; perch supports {domain} versions 1 to {max}"
    )]
    UnsupportedOpset {
        /// The domain (`ai.onnx` for the default one).
        domain: String,
        /// The version the model asks for.
        version: i64,
        /// The newest version perch supports for that domain.
        max: i64,
    },
    /// A tensor's external data is missing or does not fit its file.
    #[error("tensor {tensor:?}: external data {}: {reason}", path.display())]
    ExternalData {
        /// The tensor.
        tensor: String,
        /// The data file it names.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A tensor's contents cannot be used as asked (type, size, storage).
    #[error("tensor {name:?}: {reason}")]
    Tensor {
        /// The tensor.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// The ONNX Runtime shared library could not be found or loaded.
    #[error(
        "cannot load the ONNX Runtime library: {reason}. Set ORT_DYLIB_PATH to a libonnxruntime.so (1.24 or newer), or run `cargo xtask fixtures` to fetch ONNX Runtime 1.32.0 into models/cache/"
    )]
    RuntimeLibrary {
        /// Where perch looked and what failed.
        reason: String,
    },
    /// ONNX Runtime refused or failed an operation.
    #[error("ONNX Runtime: {context}: {message}")]
    Runtime {
        /// What perch was doing.
        context: String,
        /// ONNX Runtime's message.
        message: String,
    },
    /// The tokenizer or sentence-transformers configuration could not be used.
    #[error("{}: {reason}", path.display())]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A request the model cannot serve (empty text, too many tokens, bad token id...).
    #[error("{0}")]
    Input(String),
    /// Quantization could not be carried out as asked.
    #[error("cannot quantize: {0}")]
    Quantize(String),
}

/// Result with [`OnnxError`].
pub type Result<T, E = OnnxError> = std::result::Result<T, E>;

impl OnnxError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn runtime(context: impl Into<String>, e: impl std::fmt::Display) -> Self {
        Self::Runtime {
            context: context.into(),
            message: e.to_string(),
        }
    }

    pub(crate) fn tensor(name: &str, reason: impl Into<String>) -> Self {
        Self::Tensor {
            name: name.to_string(),
            reason: reason.into(),
        }
    }
}
