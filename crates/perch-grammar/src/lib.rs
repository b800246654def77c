//! # perch-grammar
//!
//! Constrained decoding: a grammar that says which outputs are allowed, and a matcher that
//! turns it into a mask over the vocabulary at every step, so the sampler can only pick
//! tokens that keep the output valid.
//!
//! Every input becomes the same thing, a set of rules over bytes ([`ast`]):
//!
//! - a JSON Schema ([`Grammar::from_json_schema`], after llama.cpp's json-schema-to-grammar;
//!   see [`schema`] for what is supported; anything else is an error naming the keyword),
//! - any JSON object ([`Grammar::json_object`]) or value ([`Grammar::json_value`]),
//! - a regular expression ([`Grammar::from_regex`]; the whole output must match),
//! - a list of choices ([`Grammar::from_choices`]),
//! - a GBNF grammar as llama.cpp accepts it ([`Grammar::from_gbnf`]).
//!
//! The rules are lowered ([`compile`]) to llama.cpp's flat program of alternatives, and run by
//! a stack-based pushdown matcher over *bytes* (character classes become UTF-8 byte
//! sequences, so a token that ends in the middle of a character is handled). The matcher
//! ([`Matcher`]) interns stacks and stack sets, building a DFA lazily as it goes, and computes
//! token masks by walking a trie of the vocabulary's token bytes ([`TokenVocab`]), cutting
//! whole subtrees at the first impossible byte; masks are cached per state.
//!
//! ```
//! use std::sync::Arc;
//! use perch_grammar::{Grammar, TokenVocab};
//!
//! let g = Grammar::from_gbnf(r#"root ::= "yes" | "no""#).unwrap();
//! let vocab = Arc::new(TokenVocab::new(
//!     vec![Some(b"y".to_vec()), Some(b"es".to_vec()), Some(b"no".to_vec()), None],
//!     &[3],
//! ));
//! let mut m = g.matcher(vocab);
//! let mask = m.mask();
//! assert!(mask.is_allowed(0) && mask.is_allowed(2) && !mask.is_allowed(1));
//! m.accept_token(0).unwrap();
//! m.accept_token(1).unwrap();
//! assert!(m.is_finished());
//! ```
#![deny(missing_docs)]

pub mod ast;
pub mod compile;
mod error;
pub mod gbnf;
mod matcher;
pub mod regex;
pub mod schema;
mod vocab;

use std::sync::Arc;

use serde_json::Value;

pub use error::{GrammarError, Result};
pub use matcher::Matcher;
pub use schema::Piece;
pub use vocab::{TokenMask, TokenVocab};

use crate::ast::{Expr, Rules};
use crate::compile::Program;

/// Hash map with a fast fixed hasher (keys are the grammar's own numbers, not user input).
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::FixedState>;
/// Hash set with a fast fixed hasher.
pub(crate) type FastSet<K> = std::collections::HashSet<K, foldhash::fast::FixedState>;

/// A compiled grammar, cheap to clone and share between the matchers of many requests.
#[derive(Debug, Clone)]
pub struct Grammar {
    prog: Arc<Program>,
}

impl Grammar {
    /// Compiles named rules with `root` as the start rule.
    pub fn from_rules(rules: &Rules, root: usize) -> Result<Grammar> {
        Ok(Grammar {
            prog: Arc::new(compile::compile(rules, root)?),
        })
    }

    /// A grammar whose only rule is `root ::= expr` (plus the rules `expr` refers to).
    fn from_expr(mut rules: Rules, expr: Expr) -> Result<Grammar> {
        let root = rules.fresh("root");
        rules.set(root, expr);
        Self::from_rules(&rules, root)
    }

    /// A GBNF grammar (llama.cpp's format; the start rule is `root`).
    pub fn from_gbnf(src: &str) -> Result<Grammar> {
        let (rules, root) = gbnf::parse(src)?;
        Self::from_rules(&rules, root)
    }

    /// Output that is valid JSON for `schema`.
    pub fn from_json_schema(schema: &Value) -> Result<Grammar> {
        let (rules, root) = schema::compile_schema(schema)?;
        Self::from_rules(&rules, root)
    }

    /// Pieces of text and JSON documents (each valid for its schema) in order, the whole
    /// repeated `min` to `max` times with `sep` in between. Tool calls in a model's own
    /// format (`<tool_call>\n{...}\n</tool_call>`) are built this way.
    pub fn from_pieces(
        pieces: &[schema::Piece],
        min: u32,
        max: Option<u32>,
        sep: &str,
    ) -> Result<Grammar> {
        let (rules, root) = schema::compile_pieces(pieces, min, max, sep)?;
        Self::from_rules(&rules, root)
    }

    /// Any JSON object (OpenAI's `json_object`, Ollama's `format: "json"`).
    pub fn json_object() -> Grammar {
        let mut j = schema::Json::new();
        let obj = j.prim("object");
        Self::from_expr(j.rules, obj).expect("the JSON grammar compiles")
    }

    /// Any JSON value.
    pub fn json_value() -> Grammar {
        let mut j = schema::Json::new();
        let v = j.prim("value");
        Self::from_expr(j.rules, v).expect("the JSON grammar compiles")
    }

    /// Output that matches `pattern` as a whole (Rust `regex` syntax).
    pub fn from_regex(pattern: &str) -> Result<Grammar> {
        let e = regex::regex_expr(pattern, regex::Embed::Raw)?;
        Self::from_expr(Rules::default(), e)
    }

    /// Exactly one of `choices`.
    pub fn from_choices<S: AsRef<str>>(choices: &[S]) -> Result<Grammar> {
        if choices.is_empty() {
            return Err(GrammarError::Empty("the choice list is empty".into()));
        }
        let alts = choices.iter().map(|c| Expr::lit(c.as_ref())).collect();
        Self::from_expr(Rules::default(), Expr::Alt(alts))
    }

    /// A matcher at the start of the grammar, masking over `vocab`.
    pub fn matcher(&self, vocab: Arc<TokenVocab>) -> Matcher {
        Matcher::new(self.prog.clone(), vocab)
    }

    /// Whether `text` is a complete match (for tests and checks; no vocabulary needed).
    pub fn accepts(&self, text: &str) -> bool {
        let mut m = self.matcher(Arc::new(TokenVocab::new(Vec::new(), &[])));
        m.accept_bytes(text.as_bytes()) && m.is_accepting()
    }

    /// Whether `text` can be continued into a complete match.
    pub fn accepts_prefix(&self, text: &str) -> bool {
        let mut m = self.matcher(Arc::new(TokenVocab::new(Vec::new(), &[])));
        m.accept_bytes(text.as_bytes())
    }

    /// The compiled program (for diagnostics).
    pub fn program(&self) -> &Program {
        &self.prog
    }
}
