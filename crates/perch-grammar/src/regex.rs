//! Regular expressions (Rust `regex` syntax, parsed by `regex-syntax`) as grammar expressions.
//! The whole output must match (the pattern is implicitly anchored; `^` and `$` at its ends
//! are accepted and mean the same). Look-around other than those anchors (word boundaries,
//! anchors in the middle) cannot be enforced by a left-to-right matcher and are refused.

use regex_syntax::hir::{Class, Hir, HirKind, Look};

use crate::ast::Expr;
use crate::compile::code_point_set;
use crate::error::{GrammarError, Result};

/// How the matched text is embedded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Embed {
    /// As it is.
    Raw,
    /// Inside a JSON string: `"`, `\` and control characters in literals are written as JSON
    /// escapes, and character classes never produce them raw.
    JsonString,
}

/// Parses `pattern` into an expression.
pub fn regex_expr(pattern: &str, embed: Embed) -> Result<Expr> {
    let hir = regex_syntax::ParserBuilder::new()
        .utf8(true)
        .build()
        .parse(pattern)
        .map_err(|e| GrammarError::Regex(e.to_string()))?;
    let mut parts: Vec<&Hir> = match hir.kind() {
        HirKind::Concat(v) => v.iter().collect(),
        _ => vec![&hir],
    };
    // Anchors at the ends: the match is whole-output anyway.
    while parts
        .first()
        .is_some_and(|h| matches!(h.kind(), HirKind::Look(Look::Start | Look::StartLF)))
    {
        parts.remove(0);
    }
    while parts
        .last()
        .is_some_and(|h| matches!(h.kind(), HirKind::Look(Look::End | Look::EndLF)))
    {
        parts.pop();
    }
    let items = parts
        .into_iter()
        .map(|h| lower(h, embed))
        .collect::<Result<Vec<_>>>()?;
    Ok(Expr::Seq(items))
}

fn lower(h: &Hir, embed: Embed) -> Result<Expr> {
    Ok(match h.kind() {
        HirKind::Empty => Expr::empty(),
        HirKind::Literal(lit) => match embed {
            Embed::Raw => Expr::Lit(lit.0.to_vec()),
            Embed::JsonString => {
                let text = String::from_utf8_lossy(&lit.0);
                let quoted = serde_json::to_string(&*text).expect("strings serialize");
                Expr::lit(&quoted[1..quoted.len() - 1])
            }
        },
        HirKind::Class(Class::Unicode(c)) => {
            let ranges: Vec<(u32, u32)> = c
                .ranges()
                .iter()
                .map(|r| (r.start() as u32, r.end() as u32))
                .collect();
            let ranges = match embed {
                Embed::Raw => ranges,
                Embed::JsonString => json_safe(&ranges),
            };
            if ranges.is_empty() {
                return Err(GrammarError::Regex(
                    "a character class that matches nothing (inside a JSON string, `\"`, `\\` and control characters only come as escapes)".into(),
                ));
            }
            Expr::Class {
                ranges,
                negated: false,
            }
        }
        HirKind::Class(Class::Bytes(c)) => {
            if embed == Embed::JsonString {
                return Err(GrammarError::Regex(
                    "byte classes cannot be used inside a JSON string".into(),
                ));
            }
            Expr::Bytes(c.ranges().iter().map(|r| (r.start(), r.end())).collect())
        }
        HirKind::Look(l) => {
            return Err(GrammarError::Regex(format!(
                "look-around `{l:?}` is not supported (only `^` and `$` at the ends of the pattern)"
            )));
        }
        HirKind::Repetition(r) => Expr::repeat(lower(&r.sub, embed)?, r.min, r.max),
        HirKind::Capture(c) => lower(&c.sub, embed)?,
        HirKind::Concat(v) => Expr::Seq(
            v.iter()
                .map(|h| lower(h, embed))
                .collect::<Result<Vec<_>>>()?,
        ),
        HirKind::Alternation(v) => Expr::Alt(
            v.iter()
                .map(|h| lower(h, embed))
                .collect::<Result<Vec<_>>>()?,
        ),
    })
}

/// `ranges` without the characters a JSON string cannot hold raw.
fn json_safe(ranges: &[(u32, u32)]) -> Vec<(u32, u32)> {
    let set = code_point_set(ranges, false);
    let banned = [(0u32, 0x1Fu32), (0x22, 0x22), (0x5C, 0x5C), (0x7F, 0x7F)];
    let mut out = Vec::new();
    for (mut a, b) in set {
        for &(x, y) in &banned {
            if y < a || x > b {
                continue;
            }
            if x > a {
                out.push((a, x - 1));
            }
            a = y + 1;
        }
        if a <= b {
            out.push((a, b));
        }
    }
    out
}
