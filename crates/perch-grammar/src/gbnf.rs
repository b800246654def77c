//! GBNF, llama.cpp's grammar format (`grammars/README.md` there):
//!
//! ```text
//! root   ::= "yes" | "no" | item+      # comments run to the end of the line
//! item   ::= [a-z0-9_-]{1,8} ("," ws)?
//! ws     ::= [ \t\n]*
//! ```
//!
//! Rules are `name ::= alternatives`, one per line (as in llama.cpp, a rule continues on
//! the next line after a `|` and inside parentheses);
//! names are ASCII letters, digits and `-`. Terminals are string literals and character
//! classes (`[^...]`, ranges) with llama.cpp's escapes (`\x41`, `\u00e9`, `\U0001F600`,
//! `\t \r \n \\ \" \[ \]`), and `.` (any character). Postfix `* + ?`, `{m}`, `{m,}`, `{m,n}`.
//! The start rule is `root`. Token references (`<[id]>`, `<token>`) are refused: their meaning
//! depends on one model's vocabulary.

use crate::ast::{Expr, Rules};
use crate::error::{GrammarError, Result};

/// Parses GBNF text into rules; returns them with the id of `root`.
pub fn parse(src: &str) -> Result<(Rules, usize)> {
    let mut p = Parser {
        chars: src.chars().collect(),
        i: 0,
        rules: Rules::default(),
    };
    p.space(true);
    let mut defined = crate::FastSet::default();
    while !p.eof() {
        let (line, col) = p.position();
        let name = p.name()?;
        p.space(false);
        if !p.eat_str("::=") {
            return Err(p.err("expecting `::=` after the rule name"));
        }
        p.space(true);
        let body = p.alternatives(&name, false)?;
        if !defined.insert(name.clone()) {
            return Err(GrammarError::Gbnf {
                line,
                column: col,
                message: format!("rule `{name}` is defined twice"),
            });
        }
        p.rules.define(&name, body);
        if !p.eof() && !p.eat_eol() {
            return Err(p.err("expecting a newline or the end after a rule"));
        }
        p.space(true);
    }
    if p.rules.is_empty() {
        return Err(GrammarError::Empty("the grammar is empty".into()));
    }
    if !p.rules.contains("root") {
        return Err(GrammarError::NoRoot);
    }
    p.rules.check()?;
    let root = p.rules.id("root");
    Ok((p.rules, root))
}

struct Parser {
    chars: Vec<char>,
    i: usize,
    rules: Rules,
}

fn is_word(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-'
}

impl Parser {
    fn eof(&self) -> bool {
        self.i >= self.chars.len()
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.i).copied()
    }

    fn position(&self) -> (usize, usize) {
        let mut line = 1;
        let mut col = 1;
        for &c in &self.chars[..self.i.min(self.chars.len())] {
            if c == '\n' {
                line += 1;
                col = 1;
            } else {
                col += 1;
            }
        }
        (line, col)
    }

    fn err(&self, message: impl Into<String>) -> GrammarError {
        let (line, column) = self.position();
        GrammarError::Gbnf {
            line,
            column,
            message: message.into(),
        }
    }

    /// Skips blanks and comments; newlines too when `newlines`.
    fn space(&mut self, newlines: bool) {
        while let Some(c) = self.peek() {
            match c {
                ' ' | '\t' => self.i += 1,
                '#' => {
                    while let Some(c) = self.peek() {
                        if c == '\n' || c == '\r' {
                            break;
                        }
                        self.i += 1;
                    }
                }
                '\r' | '\n' if newlines => self.i += 1,
                _ => break,
            }
        }
    }

    fn eat_eol(&mut self) -> bool {
        let mut any = false;
        while let Some('\r' | '\n') = self.peek() {
            self.i += 1;
            any = true;
        }
        any
    }

    fn eat_str(&mut self, s: &str) -> bool {
        let n = s.chars().count();
        if self.chars.len() >= self.i + n
            && self.chars[self.i..self.i + n].iter().copied().eq(s.chars())
        {
            self.i += n;
            true
        } else {
            false
        }
    }

    fn name(&mut self) -> Result<String> {
        let start = self.i;
        while self.peek().is_some_and(is_word) {
            self.i += 1;
        }
        if self.i == start {
            return Err(self.err(match self.peek() {
                Some(c) => format!("expecting a rule name, found `{c}`"),
                None => "expecting a rule name".into(),
            }));
        }
        Ok(self.chars[start..self.i].iter().collect())
    }

    fn alternatives(&mut self, rule: &str, nested: bool) -> Result<Expr> {
        let mut alts = vec![self.sequence(rule, nested)?];
        while self.peek() == Some('|') {
            self.i += 1;
            self.space(true);
            alts.push(self.sequence(rule, nested)?);
        }
        Ok(if alts.len() == 1 {
            alts.pop().expect("one")
        } else {
            Expr::Alt(alts)
        })
    }

    fn sequence(&mut self, rule: &str, nested: bool) -> Result<Expr> {
        let mut items: Vec<Expr> = Vec::new();
        while let Some(c) = self.peek() {
            let item = match c {
                '"' => {
                    self.i += 1;
                    let mut bytes = Vec::new();
                    loop {
                        match self.peek() {
                            None | Some('\n') | Some('\r') => {
                                return Err(self.err("unterminated string literal"));
                            }
                            Some('"') => {
                                self.i += 1;
                                break;
                            }
                            Some(_) => {
                                let ch = self.char_in_literal()?;
                                let mut buf = [0; 4];
                                bytes.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                            }
                        }
                    }
                    Expr::Lit(bytes)
                }
                '[' => {
                    self.i += 1;
                    let negated = self.peek() == Some('^');
                    if negated {
                        self.i += 1;
                    }
                    let mut ranges = Vec::new();
                    loop {
                        match self.peek() {
                            None => return Err(self.err("unterminated character class")),
                            Some(']') => {
                                self.i += 1;
                                break;
                            }
                            Some(_) => {
                                let lo = self.char_in_literal()?;
                                let hi = if self.peek() == Some('-')
                                    && self.chars.get(self.i + 1).is_some_and(|&c| c != ']')
                                {
                                    self.i += 1;
                                    self.char_in_literal()?
                                } else {
                                    lo
                                };
                                if hi < lo {
                                    return Err(self
                                        .err(format!("character range `{lo}-{hi}` is reversed")));
                                }
                                ranges.push((lo as u32, hi as u32));
                            }
                        }
                    }
                    Expr::Class { ranges, negated }
                }
                '.' => {
                    self.i += 1;
                    Expr::Class {
                        ranges: Vec::new(),
                        negated: true,
                    }
                }
                '(' => {
                    self.i += 1;
                    self.space(true);
                    let inner = self.alternatives(rule, true)?;
                    if self.peek() != Some(')') {
                        return Err(self.err("expecting `)`"));
                    }
                    self.i += 1;
                    match inner {
                        Expr::Alt(_) => inner,
                        other => Expr::Seq(vec![other]),
                    }
                }
                '<' | '!' => {
                    return Err(self.err(
                        "token references (`<...>`) are not supported: they depend on one model's vocabulary",
                    ));
                }
                c if is_word(c) => {
                    let name = self.name()?;
                    // A name followed by `::=` starts the next rule: the sequence ended.
                    let save = self.i;
                    self.space(false);
                    if self.eat_str("::=") {
                        return Err(self.err(format!(
                            "expecting a newline before the definition of `{name}`"
                        )));
                    }
                    self.i = save;
                    Expr::Rule(self.rules.id(&name))
                }
                '*' | '+' | '?' | '{' => {
                    let Some(last) = items.pop() else {
                        return Err(self.err(format!("`{c}` with nothing before it")));
                    };
                    let (min, max) = self.repetition()?;
                    Expr::repeat(last, min, max)
                }
                _ => break,
            };
            items.push(item);
            self.space(nested);
        }
        let _ = rule;
        Ok(if items.len() == 1 {
            items.pop().expect("one")
        } else {
            Expr::Seq(items)
        })
    }

    fn repetition(&mut self) -> Result<(u32, Option<u32>)> {
        let c = self.peek().expect("caller peeked");
        self.i += 1;
        Ok(match c {
            '*' => (0, None),
            '+' => (1, None),
            '?' => (0, Some(1)),
            _ => {
                self.space(false);
                let min = self.number()?;
                self.space(false);
                let max = if self.peek() == Some(',') {
                    self.i += 1;
                    self.space(false);
                    if self.peek().is_some_and(|c| c.is_ascii_digit()) {
                        Some(self.number()?)
                    } else {
                        None
                    }
                } else {
                    Some(min)
                };
                self.space(false);
                if self.peek() != Some('}') {
                    return Err(self.err("expecting `}` to close a repetition"));
                }
                self.i += 1;
                if max.is_some_and(|m| m < min) {
                    return Err(self.err(format!(
                        "repetition {{{min},{}}} has its maximum below its minimum",
                        max.unwrap_or(0)
                    )));
                }
                (min, max)
            }
        })
    }

    fn number(&mut self) -> Result<u32> {
        let start = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
        if start == self.i {
            return Err(self.err("expecting a number"));
        }
        let s: String = self.chars[start..self.i].iter().collect();
        s.parse()
            .map_err(|_| self.err(format!("repetition count `{s}` is too large")))
    }

    /// One character of a literal or class, with escapes.
    fn char_in_literal(&mut self) -> Result<char> {
        let c = self.peek().ok_or_else(|| self.err("unexpected end"))?;
        self.i += 1;
        if c != '\\' {
            return Ok(c);
        }
        let e = self
            .peek()
            .ok_or_else(|| self.err("unexpected end after `\\`"))?;
        self.i += 1;
        let hex = |p: &mut Parser, n: usize| -> Result<char> {
            let mut v: u32 = 0;
            for _ in 0..n {
                let d = p
                    .peek()
                    .and_then(|c| c.to_digit(16))
                    .ok_or_else(|| p.err(format!("expecting {n} hex digits in an escape")))?;
                v = v * 16 + d;
                p.i += 1;
            }
            char::from_u32(v).ok_or_else(|| p.err(format!("`{v:#x}` is not a character")))
        };
        Ok(match e {
            'x' => hex(self, 2)?,
            'u' => hex(self, 4)?,
            'U' => hex(self, 8)?,
            't' => '\t',
            'r' => '\r',
            'n' => '\n',
            '\\' | '"' | '[' | ']' => e,
            other => return Err(self.err(format!("unknown escape `\\{other}`"))),
        })
    }
}
