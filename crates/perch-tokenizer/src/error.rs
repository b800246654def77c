//! The error type of this crate.

/// Why a tokenizer could not be built, or a call could not be served.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenizerError {
    /// Reading the vocabulary's metadata failed (missing key, wrong type, ...).
    #[error("reading the vocabulary from GGUF metadata: {0}")]
    Gguf(#[from] perch_gguf::GgufError),

    /// `tokenizer.ggml.model` names a tokenizer this crate does not know.
    #[error("unknown tokenizer model '{0}' (tokenizer.ggml.model)")]
    UnknownModel(String),

    /// `tokenizer.ggml.model` names a tokenizer llama.cpp knows but this crate does not
    /// implement (yet).
    #[error("tokenizer model '{0}' is not supported by perch (tokenizer.ggml.model)")]
    UnsupportedModel(String),

    /// `tokenizer.ggml.pre` names a pre-tokenizer this crate does not know.
    #[error("unknown pre-tokenizer '{0}' (tokenizer.ggml.pre)")]
    UnknownPreTokenizer(String),

    /// The vocabulary has no tokens.
    #[error("the vocabulary has no tokens (tokenizer.ggml.tokens is empty)")]
    EmptyVocab,

    /// The vocabulary has more tokens than a `u32` id (minus the reserved ids) can name.
    #[error("the vocabulary has {0} tokens, more than perch supports")]
    VocabTooLarge(usize),

    /// A per-token array is shorter than the token list.
    #[error("{key} has {len} entries but the vocabulary has {n_tokens} tokens")]
    ShortArray {
        /// The metadata key.
        key: &'static str,
        /// Its length.
        len: usize,
        /// The number of tokens.
        n_tokens: usize,
    },

    /// A metadata value has a type llama.cpp does not accept either.
    #[error("{key}: {message}")]
    BadValue {
        /// The metadata key.
        key: &'static str,
        /// What is wrong.
        message: String,
    },

    /// A pre-tokenizer pattern failed to compile or to run.
    #[error("pre-tokenizer pattern {pattern:?}: {message}")]
    Regex {
        /// The pattern.
        pattern: String,
        /// The regex engine's message.
        message: String,
    },

    /// Encoding needs a special token the vocabulary does not define (for example
    /// `add_bos_token` is set but there is no BOS token).
    #[error("the vocabulary asks for a {which} token but defines none")]
    MissingSpecialToken {
        /// Which token (`"BOS"`, `"EOS"`, `"SEP"`).
        which: &'static str,
    },

    /// A token id outside the vocabulary.
    #[error("token id {id} is out of range (the vocabulary has {n_vocab} tokens)")]
    InvalidTokenId {
        /// The id.
        id: u32,
        /// The vocabulary size.
        n_vocab: u32,
    },
}
