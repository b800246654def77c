//! Lexing and parsing Go `text/template` source into a small tree.

use super::GoTemplateError;

/// An operand of a command.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Arg {
    /// `.` (the current value), with a field chain (`.A.B` is `Dot` + `[A, B]`).
    Dot(Vec<String>),
    /// `$name` (`$` alone is the root), with a field chain.
    Var(String, Vec<String>),
    /// A function name.
    Func(String),
    /// A literal.
    Lit(serde_json::Value),
    /// `( pipeline )` with a field chain.
    Sub(Box<Pipe>, Vec<String>),
}

/// One command of a pipeline: an operand and its arguments.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Cmd(pub Vec<Arg>);

/// A pipeline, with an optional variable declaration (`$x :=`) or assignment (`$x =`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Pipe {
    /// Declared or assigned variables (`$i, $m :=` in `range`).
    pub vars: Vec<String>,
    /// `=` rather than `:=`.
    pub assign: bool,
    /// The commands, joined by `|`.
    pub cmds: Vec<Cmd>,
}

/// A template node.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    /// Literal text.
    Text(String),
    /// `{{ pipeline }}`.
    Action(Pipe),
    /// `if`/`with`/`range` with their lists.
    Branch {
        /// Which one.
        kind: BranchKind,
        /// The condition or ranged value.
        pipe: Pipe,
        /// The body.
        list: Vec<Node>,
        /// The `else` part (an `else if` is an `If` node inside it).
        else_list: Option<Vec<Node>>,
    },
    /// `{{ break }}`.
    Break,
    /// `{{ continue }}`.
    Continue,
}

/// The kind of a branch node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BranchKind {
    If,
    With,
    Range,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Field(String),
    Dot,
    Var(String),
    Ident(String),
    Lit(serde_json::Value),
    Pipe,
    LParen,
    RParen,
    Declare,
    Assign,
    Comma,
}

/// A token and whether whitespace came before it.
type Spanned = (Tok, bool);

const MAX_DEPTH: usize = 64;

fn err(line: usize, msg: impl Into<String>) -> GoTemplateError {
    GoTemplateError::Parse {
        line,
        detail: msg.into(),
    }
}

/// A piece of source: its line, and `Ok(text)` or `Err(action source)`.
type Piece = (usize, Result<String, String>);

/// Text and the raw contents of each action, with `{{-`/`-}}` trimming applied.
fn split(src: &str) -> Result<Vec<Piece>, GoTemplateError> {
    let mut out: Vec<Piece> = Vec::new();
    let mut rest = src;
    let mut line = 1;
    let mut trim_next = false;
    while !rest.is_empty() {
        let Some(open) = rest.find("{{") else {
            let mut text = rest.to_string();
            if trim_next {
                text = text.trim_start().to_string();
            }
            out.push((line, Ok(text)));
            break;
        };
        let mut text = rest[..open].to_string();
        if trim_next {
            text = text.trim_start().to_string();
        }
        line += rest[..open].matches('\n').count();
        let after = &rest[open + 2..];
        let trim_left = after.starts_with("- ")
            || after.starts_with("-\n")
            || after.starts_with("-\t")
            || after.starts_with("-\r");
        if trim_left {
            text = text.trim_end().to_string();
        }
        out.push((line, Ok(text)));
        let inner_start = if trim_left { 1 } else { 0 };
        let body = &after[inner_start..];
        // A comment may hold `}}`; otherwise find the closing delimiter outside quotes.
        let close = if body.trim_start().starts_with("/*") {
            let c = body
                .find("*/")
                .ok_or_else(|| err(line, "unclosed comment"))?;
            body[c..]
                .find("}}")
                .map(|x| c + x)
                .ok_or_else(|| err(line, "unclosed action"))?
        } else {
            find_close(body).ok_or_else(|| err(line, "unclosed action"))?
        };
        let mut inner = &body[..close];
        trim_next = false;
        if inner.ends_with(" -") || inner.ends_with("\n-") || inner.ends_with("\t-") {
            inner = &inner[..inner.len() - 1];
            trim_next = true;
        }
        line += body[..close].matches('\n').count();
        out.push((line, Err(inner.to_string())));
        rest = &body[close + 2..];
    }
    Ok(out)
}

fn find_close(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'`' => {
                i += 1;
                while i < b.len() && b[i] != b'`' {
                    i += 1;
                }
            }
            b'}' if b.get(i + 1) == Some(&b'}') => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

fn lex(src: &str, line: usize) -> Result<Vec<Spanned>, GoTemplateError> {
    let mut toks = Vec::new();
    let chars: Vec<char> = src.chars().collect();
    let mut i = 0;
    let mut space = true;
    let ident_char = |c: char| c.is_alphanumeric() || c == '_';
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            space = true;
            i += 1;
            continue;
        }
        let tok = match c {
            '|' => {
                i += 1;
                Tok::Pipe
            }
            '(' => {
                i += 1;
                Tok::LParen
            }
            ')' => {
                i += 1;
                Tok::RParen
            }
            ',' => {
                i += 1;
                Tok::Comma
            }
            ':' if chars.get(i + 1) == Some(&'=') => {
                i += 2;
                Tok::Declare
            }
            '=' => {
                i += 1;
                Tok::Assign
            }
            '.' if chars
                .get(i + 1)
                .is_some_and(|&n| ident_char(n) && !n.is_ascii_digit()) =>
            {
                let start = i + 1;
                i += 1;
                while i < chars.len() && ident_char(chars[i]) {
                    i += 1;
                }
                Tok::Field(chars[start..i].iter().collect())
            }
            '.' => {
                i += 1;
                Tok::Dot
            }
            '$' => {
                let start = i;
                i += 1;
                while i < chars.len() && ident_char(chars[i]) {
                    i += 1;
                }
                Tok::Var(chars[start..i].iter().collect())
            }
            '"' => {
                let mut s = String::new();
                i += 1;
                loop {
                    let Some(&ch) = chars.get(i) else {
                        return Err(err(line, "unterminated string"));
                    };
                    i += 1;
                    match ch {
                        '"' => break,
                        '\\' => {
                            let e = chars
                                .get(i)
                                .copied()
                                .ok_or_else(|| err(line, "bad escape"))?;
                            i += 1;
                            s.push(match e {
                                'n' => '\n',
                                't' => '\t',
                                'r' => '\r',
                                '\\' => '\\',
                                '"' => '"',
                                '\'' => '\'',
                                '0' => '\0',
                                other => {
                                    return Err(err(line, format!("unsupported escape \\{other}")));
                                }
                            });
                        }
                        other => s.push(other),
                    }
                }
                Tok::Lit(serde_json::Value::String(s))
            }
            '`' => {
                let start = i + 1;
                i += 1;
                while i < chars.len() && chars[i] != '`' {
                    i += 1;
                }
                if i >= chars.len() {
                    return Err(err(line, "unterminated raw string"));
                }
                let s: String = chars[start..i].iter().collect();
                i += 1;
                Tok::Lit(serde_json::Value::String(s))
            }
            c if c.is_ascii_digit()
                || (c == '-' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) =>
            {
                let start = i;
                i += 1;
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
                let s: String = chars[start..i].iter().collect();
                let v = if let Ok(n) = s.parse::<i64>() {
                    serde_json::json!(n)
                } else if let Ok(f) = s.parse::<f64>() {
                    serde_json::json!(f)
                } else {
                    return Err(err(line, format!("bad number `{s}`")));
                };
                Tok::Lit(v)
            }
            c if ident_char(c) => {
                let start = i;
                while i < chars.len() && ident_char(chars[i]) {
                    i += 1;
                }
                let w: String = chars[start..i].iter().collect();
                match w.as_str() {
                    "true" => Tok::Lit(serde_json::Value::Bool(true)),
                    "false" => Tok::Lit(serde_json::Value::Bool(false)),
                    "nil" => Tok::Lit(serde_json::Value::Null),
                    _ => Tok::Ident(w),
                }
            }
            other => return Err(err(line, format!("unexpected `{other}` in action"))),
        };
        toks.push((tok, space));
        space = false;
    }
    Ok(toks)
}

struct P<'a> {
    toks: &'a [Spanned],
    pos: usize,
    line: usize,
}

impl P<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|t| &t.0)
    }

    /// A field chain directly attached (no space) to the previous token.
    fn chain(&mut self) -> Vec<String> {
        let mut fields = Vec::new();
        while let Some((Tok::Field(f), false)) = self.toks.get(self.pos) {
            fields.push(f.clone());
            self.pos += 1;
        }
        fields
    }

    fn pipe(&mut self, allow_decl: bool, depth: usize) -> Result<Pipe, GoTemplateError> {
        if depth > MAX_DEPTH {
            return Err(err(self.line, "expression nested too deeply"));
        }
        let mut vars = Vec::new();
        let mut assign = false;
        if allow_decl {
            // `$a :=`, `$a =`, or `$i, $m :=`.
            let save = self.pos;
            let mut names = Vec::new();
            while let Some(Tok::Var(v)) = self.peek() {
                names.push(v.clone());
                self.pos += 1;
                if self.peek() == Some(&Tok::Comma) {
                    self.pos += 1;
                } else {
                    break;
                }
            }
            match self.peek() {
                Some(Tok::Declare) if !names.is_empty() => {
                    self.pos += 1;
                    vars = names;
                }
                Some(Tok::Assign) if names.len() == 1 => {
                    self.pos += 1;
                    vars = names;
                    assign = true;
                }
                _ => self.pos = save,
            }
        }
        let mut cmds = Vec::new();
        loop {
            let mut args = Vec::new();
            while let Some(t) = self.peek() {
                match t {
                    Tok::Pipe | Tok::RParen => break,
                    _ => args.push(self.arg(depth)?),
                }
            }
            if args.is_empty() {
                return Err(err(self.line, "missing value in pipeline"));
            }
            cmds.push(Cmd(args));
            if self.peek() == Some(&Tok::Pipe) {
                self.pos += 1;
            } else {
                break;
            }
        }
        Ok(Pipe { vars, assign, cmds })
    }

    fn arg(&mut self, depth: usize) -> Result<Arg, GoTemplateError> {
        let (t, _) = self.toks[self.pos].clone();
        self.pos += 1;
        Ok(match t {
            Tok::Field(f) => {
                let mut chain = vec![f];
                chain.extend(self.chain());
                Arg::Dot(chain)
            }
            Tok::Dot => Arg::Dot(Vec::new()),
            Tok::Var(v) => {
                let chain = self.chain();
                Arg::Var(v, chain)
            }
            Tok::Ident(name) => {
                if [
                    "if", "else", "end", "range", "with", "define", "template", "block", "break",
                    "continue",
                ]
                .contains(&name.as_str())
                {
                    return Err(err(self.line, format!("unexpected `{name}`")));
                }
                Arg::Func(name)
            }
            Tok::Lit(v) => Arg::Lit(v),
            Tok::LParen => {
                let p = self.pipe(false, depth + 1)?;
                if self.peek() != Some(&Tok::RParen) {
                    return Err(err(self.line, "missing `)`"));
                }
                self.pos += 1;
                let chain = self.chain();
                Arg::Sub(Box::new(p), chain)
            }
            other => return Err(err(self.line, format!("unexpected {other:?}"))),
        })
    }
}

fn parse_pipe(src: &str, line: usize, allow_decl: bool) -> Result<Pipe, GoTemplateError> {
    let toks = lex(src, line)?;
    let mut p = P {
        toks: &toks,
        pos: 0,
        line,
    };
    let pipe = p.pipe(allow_decl, 0)?;
    if p.pos != toks.len() {
        return Err(err(
            line,
            format!("unexpected tokens after the pipeline in `{src}`"),
        ));
    }
    Ok(pipe)
}

/// What closed a list.
enum Close {
    Eof,
    End,
    Else(Option<String>),
}

struct Parser {
    items: Vec<Piece>,
    pos: usize,
}

impl Parser {
    fn list(&mut self, depth: usize) -> Result<(Vec<Node>, Close), GoTemplateError> {
        if depth > MAX_DEPTH {
            return Err(err(0, "blocks nested too deeply"));
        }
        let mut nodes = Vec::new();
        while self.pos < self.items.len() {
            let (line, item) = self.items[self.pos].clone();
            self.pos += 1;
            let action = match item {
                Ok(text) => {
                    if !text.is_empty() {
                        nodes.push(Node::Text(text));
                    }
                    continue;
                }
                Err(a) => a,
            };
            let a = action.trim();
            if a.starts_with("/*") {
                continue;
            }
            let (word, rest) = a
                .split_once(char::is_whitespace)
                .map_or((a, ""), |(w, r)| (w, r.trim()));
            match word {
                "end" if rest.is_empty() => return Ok((nodes, Close::End)),
                "else" => {
                    return Ok((
                        nodes,
                        Close::Else((!rest.is_empty()).then(|| rest.to_string())),
                    ));
                }
                "if" | "with" | "range" => {
                    let kind = match word {
                        "if" => BranchKind::If,
                        "with" => BranchKind::With,
                        _ => BranchKind::Range,
                    };
                    nodes.push(self.branch(kind, rest, line, depth)?);
                }
                "break" if rest.is_empty() => nodes.push(Node::Break),
                "continue" if rest.is_empty() => nodes.push(Node::Continue),
                "define" | "template" | "block" => {
                    return Err(err(line, format!("`{word}` is not supported")));
                }
                _ => nodes.push(Node::Action(parse_pipe(a, line, true)?)),
            }
        }
        Ok((nodes, Close::Eof))
    }

    fn branch(
        &mut self,
        kind: BranchKind,
        src: &str,
        line: usize,
        depth: usize,
    ) -> Result<Node, GoTemplateError> {
        let pipe = parse_pipe(src, line, kind != BranchKind::If)?;
        let (list, end) = self.list(depth + 1)?;
        let else_list = match end {
            Close::End => None,
            Close::Eof => return Err(err(line, "missing {{ end }}")),
            Close::Else(None) => {
                let (l, e) = self.list(depth + 1)?;
                if !matches!(e, Close::End) {
                    return Err(err(line, "missing {{ end }} after {{ else }}"));
                }
                Some(l)
            }
            Close::Else(Some(chained)) => {
                // `else if ...` / `else with ...`: a nested branch sharing our `end`.
                let (w, r) = chained
                    .split_once(char::is_whitespace)
                    .map_or((chained.as_str(), ""), |(w, r)| (w, r.trim()));
                let k = match w {
                    "if" => BranchKind::If,
                    "with" => BranchKind::With,
                    _ => return Err(err(line, format!("unexpected `else {chained}`"))),
                };
                Some(vec![self.branch(k, r, line, depth + 1)?])
            }
        };
        Ok(Node::Branch {
            kind,
            pipe,
            list,
            else_list,
        })
    }
}

/// Parse a template.
pub(crate) fn parse(src: &str) -> Result<Vec<Node>, GoTemplateError> {
    let mut p = Parser {
        items: split(src)?,
        pos: 0,
    };
    let (nodes, end) = p.list(0)?;
    match end {
        Close::Eof => Ok(nodes),
        Close::End => Err(err(0, "unexpected {{ end }}")),
        Close::Else(_) => Err(err(0, "unexpected {{ else }}")),
    }
}
