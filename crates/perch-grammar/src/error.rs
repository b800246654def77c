//! Errors of grammar building and matching.

/// Why a grammar, schema or pattern was refused, or a token could not be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GrammarError {
    /// A GBNF grammar does not parse.
    #[error("GBNF parse error at line {line}, column {column}: {message}")]
    Gbnf {
        /// 1-based line.
        line: usize,
        /// 1-based column (in characters).
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// A rule is used but never defined.
    #[error("undefined rule `{0}`")]
    UndefinedRule(String),
    /// The grammar has no `root` rule.
    #[error("the grammar has no `root` rule")]
    NoRoot,
    /// A rule can reach itself without consuming input.
    #[error("rule `{0}` is left-recursive (it can reach itself without consuming input)")]
    LeftRecursion(String),
    /// A JSON Schema keyword or value perch cannot enforce.
    #[error("unsupported JSON Schema feature at {path}: {feature}")]
    UnsupportedSchema {
        /// JSON pointer of the schema node.
        path: String,
        /// The feature, named.
        feature: String,
    },
    /// A JSON Schema that is not valid.
    #[error("invalid JSON Schema at {path}: {message}")]
    InvalidSchema {
        /// JSON pointer of the schema node.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// A regular expression that does not parse or uses an unsupported feature.
    #[error("invalid regular expression: {0}")]
    Regex(String),
    /// An empty choice list, or another empty input.
    #[error("{0}")]
    Empty(String),
    /// The grammar is too large (repetition counts, rule count).
    #[error("the grammar is too large: {0}")]
    TooLarge(String),
    /// A token the matcher cannot accept in its current state.
    #[error("token {0} is not allowed by the grammar here")]
    Rejected(u32),
}

/// Result with [`GrammarError`].
pub type Result<T, E = GrammarError> = std::result::Result<T, E>;
