//! The grammar every front end (GBNF, JSON Schema, regex, choices) produces: named rules whose
//! bodies are expressions over byte literals, Unicode character classes, rule references and
//! bounded or unbounded repetition. [`crate::compile`] lowers it to the matcher's program.

use crate::FastMap as HashMap;

use crate::error::{GrammarError, Result};

/// Most repetitions one `{m,n}` may ask for (each one becomes a rule).
pub const MAX_REPEAT: u32 = 10_000;

/// A grammar expression.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Expr {
    /// Every element in order (an empty sequence matches the empty string).
    Seq(Vec<Expr>),
    /// Any one alternative.
    Alt(Vec<Expr>),
    /// These bytes exactly.
    Lit(Vec<u8>),
    /// One Unicode scalar value in (or, when `negated`, outside) the inclusive ranges,
    /// matched as its UTF-8 bytes.
    Class {
        /// Inclusive code point ranges.
        ranges: Vec<(u32, u32)>,
        /// Match code points outside the ranges instead.
        negated: bool,
    },
    /// One byte in the inclusive ranges (regular expressions over bytes).
    Bytes(Vec<(u8, u8)>),
    /// A reference to a named rule.
    Rule(usize),
    /// `min` to `max` (unbounded when `None`) repetitions.
    Repeat {
        /// The repeated expression.
        expr: Box<Expr>,
        /// Fewest repetitions.
        min: u32,
        /// Most repetitions.
        max: Option<u32>,
    },
}

impl Expr {
    /// A literal string.
    pub fn lit(s: impl AsRef<[u8]>) -> Expr {
        Expr::Lit(s.as_ref().to_vec())
    }

    /// The empty string.
    pub fn empty() -> Expr {
        Expr::Seq(Vec::new())
    }

    /// `e?`.
    pub fn opt(e: Expr) -> Expr {
        Expr::Repeat {
            expr: Box::new(e),
            min: 0,
            max: Some(1),
        }
    }

    /// `e*`.
    pub fn star(e: Expr) -> Expr {
        Expr::Repeat {
            expr: Box::new(e),
            min: 0,
            max: None,
        }
    }

    /// `e{min,max}`.
    pub fn repeat(e: Expr, min: u32, max: Option<u32>) -> Expr {
        Expr::Repeat {
            expr: Box::new(e),
            min,
            max,
        }
    }

    /// A character class of single characters and ranges.
    pub fn class(ranges: &[(char, char)], negated: bool) -> Expr {
        Expr::Class {
            ranges: ranges.iter().map(|&(a, b)| (a as u32, b as u32)).collect(),
            negated,
        }
    }
}

/// Named rules under construction. Rules may be referenced before they are defined
/// ([`Rules::id`]); [`Rules::check`] finds any left undefined.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    names: Vec<String>,
    bodies: Vec<Option<Expr>>,
    index: HashMap<String, usize>,
}

impl Rules {
    /// The id of rule `name`, creating an undefined rule if it is new.
    pub fn id(&mut self, name: &str) -> usize {
        if let Some(&i) = self.index.get(name) {
            return i;
        }
        let i = self.names.len();
        self.names.push(name.to_string());
        self.bodies.push(None);
        self.index.insert(name.to_string(), i);
        i
    }

    /// Whether rule `name` exists (defined or referenced).
    pub fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    /// Whether rule `id` has a body.
    pub fn is_defined(&self, id: usize) -> bool {
        self.bodies.get(id).is_some_and(Option::is_some)
    }

    /// Define (or redefine) rule `name`; returns its id.
    pub fn define(&mut self, name: &str, body: Expr) -> usize {
        let i = self.id(name);
        self.bodies[i] = Some(body);
        i
    }

    /// Give an already created rule its body.
    pub fn set(&mut self, id: usize, body: Expr) {
        self.bodies[id] = Some(body);
    }

    /// A fresh rule name starting with `base` (`base`, `base-1`, `base-2`, ...).
    pub fn fresh(&mut self, base: &str) -> usize {
        if !self.contains(base) {
            return self.id(base);
        }
        let mut k = 1;
        loop {
            let name = format!("{base}-{k}");
            if !self.contains(&name) {
                return self.id(&name);
            }
            k += 1;
        }
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Rule names by id.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The body of rule `id`.
    pub fn body(&self, id: usize) -> Option<&Expr> {
        self.bodies.get(id).and_then(Option::as_ref)
    }

    /// Every referenced rule is defined.
    pub fn check(&self) -> Result<()> {
        match self.bodies.iter().position(Option::is_none) {
            Some(i) => Err(GrammarError::UndefinedRule(self.names[i].clone())),
            None => Ok(()),
        }
    }
}
