//! Ollama's prompt templates: the subset of Go's `text/template` that Modelfile `TEMPLATE`s and
//! the API's `template` field use, rendered the way Ollama renders them.
//!
//! Syntax: text and `{{ ... }}` actions with `{{-`/`-}}` trimming and `{{/* comments */}}`;
//! fields (`.System`, `.Prompt`, `.Response`, `.Messages`, `.Tools`, `$.Var`, `$m.Role`,
//! `(index .Messages 0).Content`), variables (`$x := ...`, `$x = ...`,
//! `range $i, $m := ...`), `if`/`else if`/`else`, `range` (with `else`, `break`, `continue`),
//! `with`, pipelines (`|`), and the functions `eq ne lt le gt ge and or not len index slice
//! print printf println json currentDate`. Values are JSON; a Go field name is looked up as
//! written, then in snake case (`ToolCalls` → `tool_calls`), then in lower case, so
//! OpenAI-shaped messages read as Ollama's `api.Message`. `json` escapes `<`, `>` and `&` as
//! Go's `json.Marshal` does.
//!
//! Rendering follows Ollama's `template.Execute`: consecutive messages of the same role are
//! merged (joined by a blank line) and the system messages collected. A template that uses
//! `.Messages` is executed once with `System`, `Messages`, `Tools` and an empty `Response`.
//! Any other template is executed once per turn with `System`, `Prompt` and `Response`, and
//! the last turn with everything after the `{{ .Response }}` action cut off, so the prompt
//! ends where the model's answer begins.

mod parse;

use std::fmt::Write as _;

use serde_json::{Value, json};

use parse::{Arg, BranchKind, Cmd, Node, Pipe};

/// A Go template that cannot be parsed or executed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GoTemplateError {
    /// The source is not a valid template.
    #[error("Go template line {line}: {detail}")]
    Parse {
        /// 1-based line (0 when unknown).
        line: usize,
        /// What is wrong.
        detail: String,
    },
    /// Executing failed.
    #[error("Go template: {0}")]
    Exec(String),
}

/// The functions templates may call.
const FUNCS: &[&str] = &[
    "and",
    "or",
    "not",
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "len",
    "index",
    "slice",
    "json",
    "print",
    "printf",
    "println",
    "currentDate",
];

/// Parse and check that every function called exists (Go's parser does the same).
fn parse_checked(src: &str) -> Result<Vec<Node>, GoTemplateError> {
    let nodes = parse::parse(src)?;
    let mut unknown = None;
    walk_args(&nodes, &mut |a| {
        if let Arg::Func(f) = a
            && !FUNCS.contains(&f.as_str())
        {
            unknown.get_or_insert_with(|| f.clone());
        }
    });
    match unknown {
        Some(f) => Err(GoTemplateError::Parse {
            line: 0,
            detail: format!("function \"{f}\" not defined"),
        }),
        None => Ok(nodes),
    }
}

/// Most output bytes and execution steps of one render.
const MAX_OUTPUT: usize = crate::MAX_OUTPUT_BYTES;
const MAX_STEPS: u64 = 5_000_000;

/// A parsed Go template.
#[derive(Debug, Clone)]
pub struct GoTemplate {
    nodes: Vec<Node>,
    uses_messages: bool,
}

/// Whether `src` is a Go template rather than Jinja: it has no `{% %}` blocks, and an action
/// in Go's syntax (a field, a variable, a Go keyword), or it parses as a Go template that
/// refers to a field or variable. A broken Go template is still one (its error is Go's).
pub fn is_go_template(src: &str) -> bool {
    if src.contains("{%") || !src.contains("{{") {
        return false;
    }
    if looks_go(src) {
        return true;
    }
    match parse_checked(src) {
        Ok(nodes) => {
            let mut any = false;
            walk_args(&nodes, &mut |a| {
                any |= matches!(a, Arg::Dot(_) | Arg::Var(..));
            });
            any
        }
        Err(_) => false,
    }
}

/// An action starting with a field, a variable, a comment or a Go keyword (`{{ .X`,
/// `{{- $x`, `{{ if `, `{{ range `, `{{ end`): Go's syntax, never Jinja's.
fn looks_go(src: &str) -> bool {
    src.match_indices("{{").any(|(i, _)| {
        let rest = src[i + 2..].trim_start_matches('-').trim_start();
        rest.starts_with('.')
            || rest.starts_with('$')
            || rest.starts_with("/*")
            || ["if ", "range ", "with ", "end"]
                .iter()
                .any(|k| rest.starts_with(k))
    })
}

fn walk_args(nodes: &[Node], f: &mut dyn FnMut(&Arg)) {
    fn pipe(p: &Pipe, f: &mut dyn FnMut(&Arg)) {
        for Cmd(args) in &p.cmds {
            for a in args {
                f(a);
                if let Arg::Sub(sub, _) = a {
                    pipe(sub, f);
                }
            }
        }
    }
    for n in nodes {
        match n {
            Node::Action(p) => pipe(p, f),
            Node::Branch {
                pipe: p,
                list,
                else_list,
                ..
            } => {
                pipe(p, f);
                walk_args(list, f);
                if let Some(e) = else_list {
                    walk_args(e, f);
                }
            }
            _ => {}
        }
    }
}

impl GoTemplate {
    /// Parse `src`.
    pub fn parse(src: &str) -> Result<GoTemplate, GoTemplateError> {
        let nodes = parse_checked(src)?;
        let mut uses_messages = false;
        walk_args(&nodes, &mut |a| match a {
            Arg::Dot(chain) | Arg::Var(_, chain) => {
                uses_messages |= chain.first().is_some_and(|f| f == "Messages");
            }
            _ => {}
        });
        Ok(GoTemplate {
            nodes,
            uses_messages,
        })
    }

    /// Execute with `data` as the root value (`.` and `$`).
    pub fn execute(&self, data: &Value) -> Result<String, GoTemplateError> {
        let mut ex = Exec {
            out: String::new(),
            vars: vec![("$".into(), data.clone())],
            steps: 0,
        };
        ex.list(&self.nodes, data)?;
        Ok(ex.out)
    }

    /// Render a conversation (OpenAI-shaped messages) as Ollama does.
    pub fn render_chat(
        &self,
        messages: &[Value],
        tools: Option<&[Value]>,
    ) -> Result<String, GoTemplateError> {
        let (system, collated) = collate(messages);
        if self.uses_messages {
            let data = json!({
                "System": system,
                "Messages": collated,
                "Tools": tools.map(<[Value]>::to_vec).unwrap_or_default(),
                "Response": "",
            });
            return self.execute(&data);
        }
        let mut out = String::new();
        let (mut sys, mut prompt, mut response) = (String::new(), String::new(), String::new());
        let turn = |out: &mut String, s: &mut String, p: &mut String, r: &mut String| {
            let data = json!({"System": s, "Prompt": p, "Response": r});
            let text = self.execute(&data)?;
            out.push_str(&text);
            s.clear();
            p.clear();
            r.clear();
            Ok::<(), GoTemplateError>(())
        };
        for m in &collated {
            let content = m["content"].as_str().unwrap_or("").to_string();
            match m["role"].as_str().unwrap_or("") {
                "system" => {
                    if !prompt.is_empty() || !response.is_empty() {
                        turn(&mut out, &mut sys, &mut prompt, &mut response)?;
                    }
                    sys = content;
                }
                "user" => {
                    if !response.is_empty() {
                        turn(&mut out, &mut sys, &mut prompt, &mut response)?;
                    }
                    prompt = content;
                }
                "assistant" => response = content,
                _ => {}
            }
        }
        // The last turn ends where the answer begins.
        let mut cut = false;
        let nodes = cut_after_response(&self.nodes, &mut cut);
        let last = GoTemplate {
            nodes,
            uses_messages: false,
        };
        out.push_str(
            &last.execute(&json!({"System": sys, "Prompt": prompt, "Response": response}))?,
        );
        Ok(out)
    }
}

/// Ollama's `collate`: merge consecutive messages of one role; collect the system messages.
fn collate(messages: &[Value]) -> (String, Vec<Value>) {
    let mut system = Vec::new();
    let mut out: Vec<Value> = Vec::new();
    for m in messages {
        let mut m = m.clone();
        let text = content_text(&m["content"]);
        if let Value::Object(o) = &mut m {
            o.insert("content".into(), Value::String(text.clone()));
            if let Some(Value::Array(calls)) = o.get_mut("tool_calls") {
                for c in calls {
                    // OpenAI sends arguments as a JSON string; Ollama's are an object.
                    if let Some(a) = c.pointer_mut("/function/arguments")
                        && let Some(s) = a.as_str()
                        && let Ok(v) = serde_json::from_str::<Value>(s)
                    {
                        *a = v;
                    }
                }
            }
        }
        let role = m["role"].as_str().unwrap_or("").to_string();
        if role == "system" || role == "developer" {
            system.push(text.clone());
            m["role"] = json!("system");
        }
        match out.last_mut() {
            Some(prev) if prev["role"] == m["role"] => {
                let joined = format!("{}\n\n{}", prev["content"].as_str().unwrap_or(""), text);
                prev["content"] = json!(joined);
            }
            _ => out.push(m),
        }
    }
    (system.join("\n\n"), out)
}

fn content_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// Ollama's `deleteNode` cut: everything after the first `.Response` field of an action goes.
fn cut_after_response(nodes: &[Node], cut: &mut bool) -> Vec<Node> {
    let mut out = Vec::new();
    for n in nodes {
        if *cut {
            break;
        }
        match n {
            Node::Action(p) => {
                let mut found = false;
                walk_args(std::slice::from_ref(n), &mut |a| {
                    found |= matches!(a, Arg::Dot(c) | Arg::Var(_, c) if c.iter().any(|f| f == "Response"));
                });
                let _ = p;
                out.push(n.clone());
                if found {
                    *cut = true;
                }
            }
            Node::Branch {
                kind,
                pipe,
                list,
                else_list,
            } => {
                let list = cut_after_response(list, cut);
                let else_list = else_list.as_ref().map(|e| cut_after_response(e, cut));
                out.push(Node::Branch {
                    kind: *kind,
                    pipe: pipe.clone(),
                    list,
                    else_list,
                });
            }
            other => out.push(other.clone()),
        }
    }
    out
}

enum Flow {
    Normal,
    Break,
    Continue,
}

struct Exec {
    out: String,
    vars: Vec<(String, Value)>,
    steps: u64,
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// Go's `%v`-style printing of a value.
fn print(v: &Value, out: &mut String) {
    match v {
        Value::Null => {}
        Value::String(s) => out.push_str(s),
        Value::Bool(b) => {
            let _ = write!(out, "{b}");
        }
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                let _ = write!(out, "{i}");
            } else if let Some(f) = n.as_f64() {
                let _ = write!(out, "{f}");
            }
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                print(x, out);
            }
            out.push(']');
        }
        Value::Object(o) => {
            out.push_str("map[");
            let mut keys: Vec<&String> = o.keys().collect();
            keys.sort();
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                out.push_str(k);
                out.push(':');
                print(&o[k], out);
            }
            out.push(']');
        }
    }
}

fn snake(name: &str) -> String {
    let mut s = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_uppercase() {
            if i > 0 {
                s.push('_');
            }
            s.extend(c.to_lowercase());
        } else {
            s.push(c);
        }
    }
    s
}

fn field(v: &Value, name: &str) -> Value {
    let Value::Object(o) = v else {
        return Value::Null;
    };
    o.get(name)
        .or_else(|| o.get(&snake(name)))
        .or_else(|| o.get(&name.to_lowercase()))
        .cloned()
        .unwrap_or(Value::Null)
}

fn chain(mut v: Value, fields: &[String]) -> Value {
    for f in fields {
        v = field(&v, f);
    }
    v
}

fn cmp(a: &Value, b: &Value) -> Result<std::cmp::Ordering, GoTemplateError> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .zip(y.as_f64())
            .and_then(|(x, y)| x.partial_cmp(&y))
            .ok_or_else(|| GoTemplateError::Exec("incomparable numbers".into())),
        (Value::String(x), Value::String(y)) => Ok(x.cmp(y)),
        _ => Err(GoTemplateError::Exec(format!("cannot compare {a} and {b}"))),
    }
}

fn eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// Go's `json.Marshal` output: compact, with `<`, `>`, `&` escaped.
fn go_json(v: &Value) -> String {
    serde_json::to_string(v)
        .unwrap_or_default()
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

fn index_of(v: &Value, i: &Value) -> Result<Value, GoTemplateError> {
    match (v, i) {
        (Value::Array(a), Value::Number(n)) => {
            let k = n.as_i64().filter(|&k| k >= 0 && (k as usize) < a.len());
            k.map(|k| a[k as usize].clone()).ok_or_else(|| {
                GoTemplateError::Exec(format!("index {n} out of range (length {})", a.len()))
            })
        }
        (Value::Object(o), Value::String(k)) => Ok(o.get(k).cloned().unwrap_or(Value::Null)),
        (Value::Null, _) => Ok(Value::Null),
        _ => Err(GoTemplateError::Exec(format!("cannot index {v} with {i}"))),
    }
}

fn bound(v: Option<&Value>, len: usize) -> Result<usize, GoTemplateError> {
    match v {
        None => Ok(len),
        Some(x) => x
            .as_i64()
            .filter(|&k| k >= 0 && (k as usize) <= len)
            .map(|k| k as usize)
            .ok_or_else(|| {
                GoTemplateError::Exec(format!("slice bound {x} out of range (length {len})"))
            }),
    }
}

fn printf(args: &[Value]) -> Result<String, GoTemplateError> {
    let Some(Value::String(fmt)) = args.first() else {
        return Err(GoTemplateError::Exec("printf needs a format string".into()));
    };
    let mut out = String::new();
    let mut rest = args[1..].iter();
    let mut chars = fmt.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('%') => out.push('%'),
            Some('q') => out.push_str(
                &serde_json::to_string(rest.next().unwrap_or(&Value::Null)).unwrap_or_default(),
            ),
            Some(_) => print(rest.next().unwrap_or(&Value::Null), &mut out),
            None => out.push('%'),
        }
    }
    Ok(out)
}

impl Exec {
    fn step(&mut self) -> Result<(), GoTemplateError> {
        self.steps += 1;
        if self.steps > MAX_STEPS {
            return Err(GoTemplateError::Exec("the template runs too long".into()));
        }
        if self.out.len() > MAX_OUTPUT {
            return Err(GoTemplateError::Exec(
                "the template output is too large".into(),
            ));
        }
        Ok(())
    }

    fn var(&self, name: &str) -> Result<Value, GoTemplateError> {
        self.vars
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| GoTemplateError::Exec(format!("undefined variable {name}")))
    }

    fn list(&mut self, nodes: &[Node], dot: &Value) -> Result<Flow, GoTemplateError> {
        let scope = self.vars.len();
        let r = self.list_inner(nodes, dot);
        self.vars.truncate(scope);
        r
    }

    fn list_inner(&mut self, nodes: &[Node], dot: &Value) -> Result<Flow, GoTemplateError> {
        for n in nodes {
            self.step()?;
            match n {
                Node::Text(t) => self.out.push_str(t),
                Node::Action(p) => {
                    let v = self.pipe(p, dot)?;
                    if p.vars.is_empty() {
                        print(&v, &mut self.out);
                    }
                }
                Node::Break => return Ok(Flow::Break),
                Node::Continue => return Ok(Flow::Continue),
                Node::Branch {
                    kind,
                    pipe,
                    list,
                    else_list,
                } => {
                    let scope = self.vars.len();
                    let flow = self.branch(*kind, pipe, list, else_list.as_deref(), dot);
                    self.vars.truncate(scope);
                    match flow? {
                        Flow::Normal => {}
                        other => return Ok(other),
                    }
                }
            }
        }
        Ok(Flow::Normal)
    }

    fn branch(
        &mut self,
        kind: BranchKind,
        pipe: &Pipe,
        list: &[Node],
        else_list: Option<&[Node]>,
        dot: &Value,
    ) -> Result<Flow, GoTemplateError> {
        match kind {
            BranchKind::If | BranchKind::With => {
                let v = self.pipe(pipe, dot)?;
                if truthy(&v) {
                    let d = if kind == BranchKind::With { &v } else { dot };
                    self.list(list, d)
                } else if let Some(e) = else_list {
                    self.list(e, dot)
                } else {
                    Ok(Flow::Normal)
                }
            }
            BranchKind::Range => {
                let v = self.eval_cmds(&pipe.cmds, dot)?;
                let items: Vec<(Value, Value)> = match &v {
                    Value::Array(a) => a
                        .iter()
                        .enumerate()
                        .map(|(i, x)| (json!(i), x.clone()))
                        .collect(),
                    Value::Object(o) => {
                        let mut keys: Vec<&String> = o.keys().collect();
                        keys.sort();
                        keys.into_iter().map(|k| (json!(k), o[k].clone())).collect()
                    }
                    Value::Number(n) => {
                        let n = n.as_i64().unwrap_or(0).clamp(0, MAX_STEPS as i64);
                        (0..n).map(|i| (json!(i), json!(i))).collect()
                    }
                    Value::Null => Vec::new(),
                    other => {
                        return Err(GoTemplateError::Exec(format!(
                            "range can't iterate over {other}"
                        )));
                    }
                };
                if items.is_empty() {
                    return match else_list {
                        Some(e) => self.list(e, dot),
                        None => Ok(Flow::Normal),
                    };
                }
                for (k, x) in items {
                    self.step()?;
                    let scope = self.vars.len();
                    match pipe.vars.as_slice() {
                        [] => {}
                        [one] => self.vars.push((one.clone(), x.clone())),
                        [a, b, ..] => {
                            self.vars.push((a.clone(), k));
                            self.vars.push((b.clone(), x.clone()));
                        }
                    }
                    let flow = self.list(list, &x);
                    self.vars.truncate(scope);
                    match flow? {
                        Flow::Break => break,
                        Flow::Continue | Flow::Normal => {}
                    }
                }
                Ok(Flow::Normal)
            }
        }
    }

    fn pipe(&mut self, p: &Pipe, dot: &Value) -> Result<Value, GoTemplateError> {
        let v = self.eval_cmds(&p.cmds, dot)?;
        if p.assign {
            let name = &p.vars[0];
            let slot = self
                .vars
                .iter_mut()
                .rev()
                .find(|(n, _)| n == name)
                .ok_or_else(|| GoTemplateError::Exec(format!("undefined variable {name}")))?;
            slot.1 = v.clone();
        } else if let Some(name) = p.vars.last() {
            self.vars.push((name.clone(), v.clone()));
        }
        Ok(v)
    }

    fn eval_cmds(&mut self, cmds: &[Cmd], dot: &Value) -> Result<Value, GoTemplateError> {
        let mut piped: Option<Value> = None;
        for c in cmds {
            piped = Some(self.cmd(c, dot, piped)?);
        }
        Ok(piped.unwrap_or(Value::Null))
    }

    fn arg(&mut self, a: &Arg, dot: &Value) -> Result<Value, GoTemplateError> {
        self.step()?;
        Ok(match a {
            Arg::Dot(c) => chain(dot.clone(), c),
            Arg::Var(n, c) => chain(self.var(n)?, c),
            Arg::Lit(v) => v.clone(),
            Arg::Sub(p, c) => {
                let v = self.eval_cmds(&p.cmds, dot)?;
                chain(v, c)
            }
            Arg::Func(f) => self.call(f, &[], dot, None)?,
        })
    }

    fn cmd(
        &mut self,
        c: &Cmd,
        dot: &Value,
        piped: Option<Value>,
    ) -> Result<Value, GoTemplateError> {
        let Cmd(args) = c;
        match &args[0] {
            Arg::Func(f) => self.call(f, &args[1..], dot, piped),
            first => {
                if args.len() > 1 || piped.is_some() {
                    return Err(GoTemplateError::Exec(
                        "can't give an argument to a non-function".into(),
                    ));
                }
                self.arg(first, dot)
            }
        }
    }

    fn call(
        &mut self,
        f: &str,
        args: &[Arg],
        dot: &Value,
        piped: Option<Value>,
    ) -> Result<Value, GoTemplateError> {
        // `and` and `or` stop at the first deciding argument, as Go's do.
        if f == "and" || f == "or" {
            let mut last = Value::Null;
            for a in args {
                last = self.arg(a, dot)?;
                if truthy(&last) == (f == "or") {
                    return Ok(last);
                }
            }
            if let Some(p) = piped {
                last = p;
            }
            return Ok(last);
        }
        let mut vals = Vec::with_capacity(args.len() + 1);
        for a in args {
            vals.push(self.arg(a, dot)?);
        }
        if let Some(p) = piped {
            vals.push(p);
        }
        let need = |n: usize| {
            if vals.len() < n {
                Err(GoTemplateError::Exec(format!("{f} needs {n} argument(s)")))
            } else {
                Ok(())
            }
        };
        Ok(match f {
            "not" => {
                need(1)?;
                json!(!truthy(&vals[0]))
            }
            "eq" => {
                need(2)?;
                json!(vals[1..].iter().any(|b| eq(&vals[0], b)))
            }
            "ne" => {
                need(2)?;
                json!(!eq(&vals[0], &vals[1]))
            }
            "lt" | "le" | "gt" | "ge" => {
                need(2)?;
                let o = cmp(&vals[0], &vals[1])?;
                json!(match f {
                    "lt" => o.is_lt(),
                    "le" => o.is_le(),
                    "gt" => o.is_gt(),
                    _ => o.is_ge(),
                })
            }
            "len" => {
                need(1)?;
                json!(match &vals[0] {
                    Value::String(s) => s.len(),
                    Value::Array(a) => a.len(),
                    Value::Object(o) => o.len(),
                    Value::Null => 0,
                    other => return Err(GoTemplateError::Exec(format!("len of {other}"))),
                })
            }
            "index" => {
                need(1)?;
                let mut v = vals[0].clone();
                for i in &vals[1..] {
                    v = index_of(&v, i)?;
                }
                v
            }
            "slice" => {
                need(1)?;
                match &vals[0] {
                    Value::Array(a) => {
                        let lo = bound(vals.get(1), a.len())?.min(a.len());
                        let lo = if vals.len() > 1 { lo } else { 0 };
                        let hi = bound(vals.get(2), a.len())?;
                        if lo > hi {
                            return Err(GoTemplateError::Exec("slice bounds out of order".into()));
                        }
                        Value::Array(a[lo..hi].to_vec())
                    }
                    Value::String(s) => {
                        let lo = if vals.len() > 1 {
                            bound(vals.get(1), s.len())?
                        } else {
                            0
                        };
                        let hi = bound(vals.get(2), s.len())?;
                        json!(
                            s.get(lo..hi)
                                .ok_or_else(|| GoTemplateError::Exec("bad string slice".into()))?
                        )
                    }
                    other => return Err(GoTemplateError::Exec(format!("can't slice {other}"))),
                }
            }
            "json" => {
                need(1)?;
                json!(go_json(&vals[0]))
            }
            "print" => {
                let mut s = String::new();
                for (i, v) in vals.iter().enumerate() {
                    // Go's Sprint puts spaces between operands when neither is a string.
                    if i > 0 && !vals[i - 1].is_string() && !v.is_string() {
                        s.push(' ');
                    }
                    print(v, &mut s);
                }
                json!(s)
            }
            "println" => {
                let mut s = String::new();
                for (i, v) in vals.iter().enumerate() {
                    if i > 0 {
                        s.push(' ');
                    }
                    print(v, &mut s);
                }
                s.push('\n');
                json!(s)
            }
            "printf" => json!(printf(&vals)?),
            "currentDate" => json!(chrono::Utc::now().format("%Y-%m-%d").to_string()),
            other => {
                return Err(GoTemplateError::Exec(format!(
                    "function \"{other}\" not defined"
                )));
            }
        })
    }
}

#[cfg(test)]
mod tests;
