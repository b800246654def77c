//! What any embedding backend offers the server: the [`Embedder`] trait.
//!
//! perch's own BERT encoder ([`crate::embedding::EmbeddingModel`]) implements it, and so can
//! any other backend (ONNX Runtime): the server batches requests and calls
//! [`Embedder::embed`] on a worker thread, never knowing which one runs. Backends do their own
//! tokenization (a GGUF vocabulary, a `tokenizer.json`) so a text input means the same thing
//! however the model is stored.

/// One input to embed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EmbedInput {
    /// Text, tokenized by the backend with the model's special tokens (`[CLS] ... [SEP]`).
    Text(String),
    /// Token ids, used as they are.
    Tokens(Vec<u32>),
}

impl EmbedInput {
    /// A short description for logs and errors.
    pub fn kind(&self) -> &'static str {
        match self {
            EmbedInput::Text(_) => "text",
            EmbedInput::Tokens(_) => "token array",
        }
    }
}

/// One input's result.
#[derive(Clone, Debug, PartialEq)]
pub struct Embedding {
    /// The sentence vector, `dimension()` values, L2-normalized.
    pub vector: Vec<f32>,
    /// Tokens the model read for this input (after truncation).
    pub n_tokens: usize,
    /// Whether the input was cut to the model's maximum.
    pub truncated: bool,
}

/// Why a batch could not be embedded. Errors about one input name its index in the batch.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EmbedError {
    /// An input has more tokens than the model reads and truncation was not asked for.
    #[error(
        "input {index} has {tokens} tokens, more than the model's maximum of {max} tokens \
         (shorten it or ask for truncation)"
    )]
    TooLong {
        /// Position of the input in the batch.
        index: usize,
        /// Its token count.
        tokens: usize,
        /// The model's maximum.
        max: usize,
    },
    /// An input has no tokens at all.
    #[error("input {index} is empty")]
    Empty {
        /// Position of the input in the batch.
        index: usize,
    },
    /// A token id outside the vocabulary.
    #[error("input {index}: token id {id} is outside the vocabulary (size {n_vocab})")]
    BadToken {
        /// Position of the input in the batch.
        index: usize,
        /// The id.
        id: u32,
        /// Vocabulary size.
        n_vocab: usize,
    },
    /// The tokenizer refused the text.
    #[error("input {index}: {message}")]
    Tokenizer {
        /// Position of the input in the batch.
        index: usize,
        /// Why.
        message: String,
    },
    /// The backend failed (not the input's fault).
    #[error("embedding backend failed: {0}")]
    Backend(String),
}

impl EmbedError {
    /// Whether the caller's input is at fault (a 400 rather than a 500).
    pub fn is_input_error(&self) -> bool {
        !matches!(self, EmbedError::Backend(_))
    }
}

/// An embedding model, whatever runs it.
pub trait Embedder: Send + Sync {
    /// A short name of the model and backend for logs (`"bert (perch)"`, `"onnxruntime"`).
    fn name(&self) -> &str;

    /// Length of the vectors [`Embedder::embed`] returns.
    fn dimension(&self) -> usize;

    /// The most tokens one input may have (special tokens included).
    fn max_tokens(&self) -> usize;

    /// Embed `inputs` as one batch, in order. With `truncate`, inputs longer than
    /// [`Embedder::max_tokens`] are cut to it (keeping the closing special token);
    /// without, they are an [`EmbedError::TooLong`] error and nothing is embedded.
    fn embed(&self, inputs: &[EmbedInput], truncate: bool) -> Result<Vec<Embedding>, EmbedError>;
}

/// Scale `v` to unit L2 norm (left as is when it is all zeros).
pub fn l2_normalize(v: &mut [f32]) {
    let norm = v
        .iter()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        .sqrt();
    if norm > 0.0 {
        let inv = (1.0 / norm) as f32;
        v.iter_mut().for_each(|x| *x *= inv);
    }
}
