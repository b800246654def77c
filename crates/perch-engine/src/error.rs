//! The engine's error type.

use perch_gguf::GgufError;

/// What can go wrong loading or running a model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The GGUF file could not be read or its metadata is not what the model needs.
    #[error(transparent)]
    Gguf(#[from] GgufError),
    /// `general.architecture` names an architecture the engine does not run.
    #[error(
        "unsupported architecture `{0}` (perch runs llama, mistral, qwen2, qwen3, gemma2, gemma3, phi3)"
    )]
    UnsupportedArch(String),
    /// The hyper-parameters are inconsistent.
    #[error("bad model configuration: {0}")]
    BadConfig(String),
    /// A tensor the architecture needs is not in the file.
    #[error("missing tensor `{0}`")]
    MissingTensor(String),
    /// A tensor has the wrong shape.
    #[error("tensor `{name}` has shape {found:?}, expected {expected:?}")]
    WrongShape {
        /// Tensor name.
        name: String,
        /// Dims in the file (ggml order).
        found: Vec<u64>,
        /// Dims the architecture needs (ggml order).
        expected: Vec<u64>,
    },
    /// A tensor has a type the kernels cannot use in that role.
    #[error("tensor `{name}` has type {ty}, which perch cannot use there: {why}")]
    UnsupportedType {
        /// Tensor name.
        name: String,
        /// The tensor's type.
        ty: perch_quant::GgmlType,
        /// Why not.
        why: String,
    },
    /// A token id outside the vocabulary.
    #[error("token id {id} is outside the vocabulary (size {n_vocab})")]
    BadToken {
        /// The id.
        id: u32,
        /// Vocabulary size.
        n_vocab: usize,
    },
    /// The KV cache has no room for the request.
    #[error("KV cache full: {0}")]
    KvFull(String),
    /// A request that can never fit in the context.
    #[error("prompt of {prompt} tokens does not fit the context of {ctx} tokens")]
    ContextOverflow {
        /// Tokens requested.
        prompt: usize,
        /// Context size.
        ctx: usize,
    },
    /// A kernel rejected its operands.
    #[error("kernel error: {0}")]
    Kernel(String),
}

/// Result with [`EngineError`].
pub type Result<T, E = EngineError> = std::result::Result<T, E>;
