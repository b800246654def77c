//! JSON Schema to grammar, after llama.cpp's `json-schema-to-grammar`.
//!
//! Supported: `type` (one or a list), `properties` / `required` / `additionalProperties`,
//! `enum`, `const`, `anyOf` / `oneOf`, `allOf` of object schemas (merged), `$ref` within the
//! document (`#`, `#/$defs/...`, `#/definitions/...`, any JSON pointer), arrays with `items`,
//! `prefixItems`, `minItems` / `maxItems`, strings with `minLength` / `maxLength`, `pattern`
//! and the formats `date`, `time`, `date-time`, `uuid`, `email`, `ipv4`, `hostname`, `uri`,
//! integers with `minimum` / `maximum` / `exclusiveMinimum` / `exclusiveMaximum`, and
//! OpenAPI's `nullable`. Annotations (`title`, `description`, `default`, ...) are ignored.
//! Keywords that constrain values in ways the grammar cannot enforce (`not`, `if`,
//! `uniqueItems`, `multipleOf`, `patternProperties`, ...) are errors naming them.
//!
//! Objects are written with their properties in the schema's order: required ones must
//! appear, optional ones may. When `properties` is given and `additionalProperties` is not,
//! no other properties are generated (as llama.cpp does; OpenAI's strict mode requires
//! `additionalProperties: false` anyway). Whitespace between tokens is limited to one space,
//! or one or two newlines and up to 20 spaces or tabs of indentation, so a model cannot loop
//! on whitespace; the document ends at its last character.

use crate::FastMap as HashMap;
use serde_json::{Map, Value};

use crate::ast::{Expr, Rules};
use crate::error::{GrammarError, Result};
use crate::regex::{Embed, regex_expr};

/// Keywords that constrain values in ways perch cannot enforce.
const UNSUPPORTED: &[&str] = &[
    "not",
    "if",
    "then",
    "else",
    "patternProperties",
    "dependentRequired",
    "dependentSchemas",
    "dependencies",
    "propertyNames",
    "minProperties",
    "maxProperties",
    "contains",
    "minContains",
    "maxContains",
    "multipleOf",
    "unevaluatedProperties",
    "unevaluatedItems",
    "$dynamicRef",
    "$recursiveRef",
];

const MAX_DEPTH: usize = 64;

/// Rules for the JSON primitives, shared by the schema compiler and the plain JSON grammar.
pub struct Json {
    /// The rules built so far.
    pub rules: Rules,
    cache: HashMap<&'static str, usize>,
}

impl Default for Json {
    fn default() -> Self {
        Self::new()
    }
}

impl Json {
    /// Empty rules.
    pub fn new() -> Json {
        Json {
            rules: Rules::default(),
            cache: HashMap::default(),
        }
    }

    /// The named primitive rule (`ws`, `string`, `number`, `integer`, `boolean`, `null`,
    /// `value`, `object`, `array`, `char`).
    pub fn prim(&mut self, name: &'static str) -> Expr {
        if let Some(&id) = self.cache.get(name) {
            return Expr::Rule(id);
        }
        let id = self.rules.fresh(name);
        self.cache.insert(name, id);
        let body = match name {
            "ws" => Expr::Alt(vec![
                Expr::empty(),
                Expr::lit(" "),
                Expr::Seq(vec![
                    Expr::repeat(Expr::lit("\n"), 1, Some(2)),
                    Expr::repeat(Expr::class(&[(' ', ' '), ('\t', '\t')], false), 0, Some(20)),
                ]),
            ]),
            "char" => Expr::Alt(vec![
                Expr::Class {
                    ranges: vec![(0, 0x1F), (0x22, 0x22), (0x5C, 0x5C), (0x7F, 0x7F)],
                    negated: true,
                },
                Expr::Seq(vec![
                    Expr::lit("\\"),
                    Expr::Alt(vec![
                        Expr::class(
                            &[
                                ('"', '"'),
                                ('\\', '\\'),
                                ('/', '/'),
                                ('b', 'b'),
                                ('f', 'f'),
                                ('n', 'n'),
                                ('r', 'r'),
                                ('t', 't'),
                            ],
                            false,
                        ),
                        Expr::Seq(vec![Expr::lit("u"), Expr::repeat(hex(), 4, Some(4))]),
                    ]),
                ]),
            ]),
            "string" => {
                let c = self.prim("char");
                Expr::Seq(vec![Expr::lit("\""), Expr::star(c), Expr::lit("\"")])
            }
            "integer" => Expr::Seq(vec![Expr::opt(Expr::lit("-")), integral()]),
            "number" => Expr::Seq(vec![
                Expr::opt(Expr::lit("-")),
                integral(),
                Expr::opt(Expr::Seq(vec![
                    Expr::lit("."),
                    Expr::repeat(digit(), 1, Some(16)),
                ])),
                Expr::opt(Expr::Seq(vec![
                    Expr::class(&[('e', 'e'), ('E', 'E')], false),
                    Expr::opt(Expr::class(&[('-', '-'), ('+', '+')], false)),
                    Expr::repeat(digit(), 1, Some(3)),
                ])),
            ]),
            "boolean" => Expr::Alt(vec![Expr::lit("true"), Expr::lit("false")]),
            "null" => Expr::lit("null"),
            "value" => Expr::Alt(vec![
                self.prim("object"),
                self.prim("array"),
                self.prim("string"),
                self.prim("number"),
                self.prim("boolean"),
                self.prim("null"),
            ]),
            "object" => {
                let ws = self.prim("ws");
                let kv = Expr::Seq(vec![
                    self.prim("string"),
                    ws.clone(),
                    Expr::lit(":"),
                    ws.clone(),
                    self.prim("value"),
                    ws.clone(),
                ]);
                list("{", "}", kv, ws)
            }
            "array" => {
                let ws = self.prim("ws");
                let item = Expr::Seq(vec![self.prim("value"), ws.clone()]);
                list("[", "]", item, ws)
            }
            other => unreachable!("no primitive {other}"),
        };
        self.rules.set(id, body);
        Expr::Rule(id)
    }
}

fn digit() -> Expr {
    Expr::class(&[('0', '9')], false)
}

fn hex() -> Expr {
    Expr::class(&[('0', '9'), ('a', 'f'), ('A', 'F')], false)
}

fn integral() -> Expr {
    Expr::Alt(vec![
        Expr::lit("0"),
        Expr::Seq(vec![
            Expr::class(&[('1', '9')], false),
            Expr::repeat(digit(), 0, Some(15)),
        ]),
    ])
}

/// `open ws (item ("," ws item)*)? close` (each item carries its trailing whitespace).
fn list(open: &str, close: &str, item: Expr, ws: Expr) -> Expr {
    Expr::Seq(vec![
        Expr::lit(open),
        ws.clone(),
        Expr::opt(Expr::Seq(vec![
            item.clone(),
            Expr::star(Expr::Seq(vec![Expr::lit(","), ws, item])),
        ])),
        Expr::lit(close),
    ])
}

/// Compiles `schema` into rules; returns them with the root rule's id.
pub fn compile_schema(schema: &Value) -> Result<(Rules, usize)> {
    let mut c = Compiler {
        doc: schema,
        json: Json::new(),
        refs: HashMap::default(),
        depth: 0,
    };
    let root = c.json.rules.fresh("root");
    let body = c.visit(schema, "#")?;
    c.json.rules.set(root, body);
    Ok((c.json.rules, root))
}

/// A piece of a composed grammar ([`compile_pieces`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Piece {
    /// Literal text.
    Text(String),
    /// A JSON document valid for this schema (its `$ref`s resolve within it).
    Json(Value),
}

/// The pieces in order, the whole repeated `min` to `max` times with `sep` in between
/// (e.g. tool calls: `<tool_call>\n`, a JSON schema, `\n</tool_call>`, one or more times).
pub fn compile_pieces(
    pieces: &[Piece],
    min: u32,
    max: Option<u32>,
    sep: &str,
) -> Result<(Rules, usize)> {
    if max.is_some_and(|m| m < min || m == 0) {
        return Err(GrammarError::Empty(
            "a repetition that allows nothing".into(),
        ));
    }
    let null = Value::Null;
    let mut c = Compiler {
        doc: &null,
        json: Json::new(),
        refs: HashMap::default(),
        depth: 0,
    };
    let root = c.json.rules.fresh("root");
    let mut seq = Vec::with_capacity(pieces.len());
    for p in pieces {
        match p {
            Piece::Text(t) => seq.push(Expr::lit(t)),
            Piece::Json(schema) => {
                c.doc = schema;
                c.refs.clear();
                seq.push(c.visit(schema, "#")?);
            }
        }
    }
    let unit_id = c.json.rules.fresh("item");
    c.json.rules.set(unit_id, Expr::Seq(seq));
    let unit = Expr::Rule(unit_id);
    let rest = Expr::repeat(
        Expr::Seq(vec![Expr::lit(sep), unit.clone()]),
        min.saturating_sub(1),
        max.map(|m| m - 1),
    );
    let body = Expr::Seq(vec![unit, rest]);
    let body = if min == 0 { Expr::opt(body) } else { body };
    c.json.rules.set(root, body);
    Ok((c.json.rules, root))
}

struct Compiler<'a> {
    doc: &'a Value,
    json: Json,
    refs: HashMap<String, usize>,
    depth: usize,
}

fn unsupported(path: &str, feature: impl Into<String>) -> GrammarError {
    GrammarError::UnsupportedSchema {
        path: path.to_string(),
        feature: feature.into(),
    }
}

fn invalid(path: &str, message: impl Into<String>) -> GrammarError {
    GrammarError::InvalidSchema {
        path: path.to_string(),
        message: message.into(),
    }
}

fn literal(v: &Value) -> Expr {
    Expr::lit(serde_json::to_string(v).expect("JSON values serialize"))
}

fn rule_name(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    if out.is_empty() {
        out.push_str("prop");
    }
    out
}

impl<'a> Compiler<'a> {
    fn visit(&mut self, schema: &Value, path: &str) -> Result<Expr> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(GrammarError::TooLarge(format!(
                "schemas nested deeper than {MAX_DEPTH} at {path}"
            )));
        }
        let r = self.visit_inner(schema, path);
        self.depth -= 1;
        r
    }

    fn visit_inner(&mut self, schema: &Value, path: &str) -> Result<Expr> {
        let obj = match schema {
            Value::Bool(true) => return Ok(self.json.prim("value")),
            Value::Bool(false) => {
                return Err(invalid(path, "the schema `false` allows no value"));
            }
            Value::Object(o) => o,
            _ => return Err(invalid(path, "a schema must be an object or a boolean")),
        };
        for &kw in UNSUPPORTED {
            if obj.contains_key(kw) {
                return Err(unsupported(path, format!("`{kw}`")));
            }
        }
        if obj.get("uniqueItems") == Some(&Value::Bool(true)) {
            return Err(unsupported(path, "`uniqueItems`"));
        }
        if obj.get("nullable") == Some(&Value::Bool(true)) {
            let mut inner = obj.clone();
            inner.remove("nullable");
            let e = self.visit(&Value::Object(inner), path)?;
            return Ok(Expr::Alt(vec![e, self.json.prim("null")]));
        }
        if let Some(r) = obj.get("$ref") {
            let r = r
                .as_str()
                .ok_or_else(|| invalid(path, "`$ref` must be a string"))?;
            return self.reference(r, path);
        }
        if let Some(c) = obj.get("const") {
            return Ok(literal(c));
        }
        if let Some(e) = obj.get("enum") {
            let vals = e
                .as_array()
                .ok_or_else(|| invalid(path, "`enum` must be an array"))?;
            if vals.is_empty() {
                return Err(invalid(path, "`enum` must not be empty"));
            }
            return Ok(Expr::Alt(vals.iter().map(literal).collect()));
        }
        for kw in ["anyOf", "oneOf"] {
            if let Some(v) = obj.get(kw) {
                let alts = v
                    .as_array()
                    .filter(|a| !a.is_empty())
                    .ok_or_else(|| invalid(path, format!("`{kw}` must be a non-empty array")))?;
                let mut out = Vec::with_capacity(alts.len());
                for (i, s) in alts.iter().enumerate() {
                    out.push(self.visit(s, &format!("{path}/{kw}/{i}"))?);
                }
                return Ok(Expr::Alt(out));
            }
        }
        if let Some(v) = obj.get("allOf") {
            let merged = self.merge_all_of(obj, v, path)?;
            return self.visit(&Value::Object(merged), path);
        }
        match obj.get("type") {
            Some(Value::String(t)) => self.typed(t, obj, path),
            Some(Value::Array(ts)) => {
                if ts.is_empty() {
                    return Err(invalid(path, "`type` must not be an empty list"));
                }
                let mut out = Vec::with_capacity(ts.len());
                for t in ts {
                    let t = t
                        .as_str()
                        .ok_or_else(|| invalid(path, "`type` entries must be strings"))?;
                    out.push(self.typed(t, obj, path)?);
                }
                Ok(Expr::Alt(out))
            }
            Some(_) => Err(invalid(
                path,
                "`type` must be a string or a list of strings",
            )),
            None => {
                if obj.contains_key("properties") || obj.contains_key("additionalProperties") {
                    self.typed("object", obj, path)
                } else if obj.contains_key("items") || obj.contains_key("prefixItems") {
                    self.typed("array", obj, path)
                } else if ["pattern", "format", "minLength", "maxLength"]
                    .iter()
                    .any(|k| obj.contains_key(*k))
                {
                    self.typed("string", obj, path)
                } else {
                    Ok(self.json.prim("value"))
                }
            }
        }
    }

    fn merge_all_of(
        &mut self,
        obj: &Map<String, Value>,
        all: &Value,
        path: &str,
    ) -> Result<Map<String, Value>> {
        let parts = all
            .as_array()
            .filter(|a| !a.is_empty())
            .ok_or_else(|| invalid(path, "`allOf` must be a non-empty array"))?;
        let mut merged = obj.clone();
        merged.remove("allOf");
        let mut props = merged
            .remove("properties")
            .and_then(|p| p.as_object().cloned())
            .unwrap_or_default();
        let mut required: Vec<Value> = merged
            .remove("required")
            .and_then(|r| r.as_array().cloned())
            .unwrap_or_default();
        for (i, part) in parts.iter().enumerate() {
            let part_path = format!("{path}/allOf/{i}");
            let mut part = part.clone();
            // Follow references to the object schema they name.
            let mut hops = 0;
            while let Some(r) = part.get("$ref").and_then(Value::as_str) {
                part = self.resolve(r, &part_path)?.clone();
                hops += 1;
                if hops > 32 {
                    return Err(invalid(&part_path, "`$ref` cycle"));
                }
            }
            let Some(po) = part.as_object() else {
                return Err(invalid(&part_path, "`allOf` entries must be schemas"));
            };
            for (k, v) in po {
                match k.as_str() {
                    "properties" => {
                        if let Some(p) = v.as_object() {
                            props.extend(p.clone());
                        }
                    }
                    "required" => {
                        if let Some(r) = v.as_array() {
                            required.extend(r.iter().cloned());
                        }
                    }
                    "type" if v == "object" => {
                        merged.insert("type".into(), v.clone());
                    }
                    "additionalProperties" => {
                        merged.insert(k.clone(), v.clone());
                    }
                    "title" | "description" | "$comment" | "examples" | "default" => {}
                    other => {
                        return Err(unsupported(
                            &part_path,
                            format!(
                                "`allOf` of schemas with `{other}` (only object schemas are merged)"
                            ),
                        ));
                    }
                }
            }
        }
        merged.insert("type".into(), Value::from("object"));
        merged.insert("properties".into(), Value::Object(props));
        merged.insert("required".into(), Value::Array(required));
        Ok(merged)
    }

    fn resolve(&self, r: &str, path: &str) -> Result<&'a Value> {
        let doc: &'a Value = self.doc;
        let Some(pointer) = r.strip_prefix('#') else {
            return Err(unsupported(
                path,
                format!(
                    "`$ref` to `{r}` (only references within the schema, starting with `#`, are supported)"
                ),
            ));
        };
        let pointer = percent_decode(pointer);
        doc.pointer(&pointer).ok_or_else(|| {
            invalid(
                path,
                format!("`$ref` `{r}` points to nothing in the schema"),
            )
        })
    }

    fn reference(&mut self, r: &str, path: &str) -> Result<Expr> {
        if let Some(&id) = self.refs.get(r) {
            return Ok(Expr::Rule(id));
        }
        let target = self.resolve(r, path)?;
        let name = r
            .rsplit('/')
            .next()
            .filter(|s| !s.is_empty())
            .unwrap_or("ref");
        let id = self.json.rules.fresh(&format!("ref-{}", rule_name(name)));
        self.refs.insert(r.to_string(), id);
        let body = self.visit(target, r)?;
        self.json.rules.set(id, body);
        Ok(Expr::Rule(id))
    }

    fn typed(&mut self, t: &str, obj: &Map<String, Value>, path: &str) -> Result<Expr> {
        match t {
            "string" => self.string(obj, path),
            "integer" => self.integer(obj, path),
            "number" => self.number(obj, path),
            "boolean" => Ok(self.json.prim("boolean")),
            "null" => Ok(self.json.prim("null")),
            "object" => self.object(obj, path),
            "array" => self.array(obj, path),
            other => Err(invalid(path, format!("unknown type `{other}`"))),
        }
    }

    fn count(&self, obj: &Map<String, Value>, key: &str, path: &str) -> Result<Option<u32>> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => match v.as_u64() {
                Some(n) if n <= crate::ast::MAX_REPEAT as u64 => Ok(Some(n as u32)),
                Some(n) => Err(GrammarError::TooLarge(format!(
                    "`{key}` = {n} at {path} (at most {})",
                    crate::ast::MAX_REPEAT
                ))),
                None => Err(invalid(
                    path,
                    format!("`{key}` must be a non-negative integer"),
                )),
            },
        }
    }

    fn string(&mut self, obj: &Map<String, Value>, path: &str) -> Result<Expr> {
        let min = self.count(obj, "minLength", path)?;
        let max = self.count(obj, "maxLength", path)?;
        if let (Some(a), Some(b)) = (min, max)
            && b < a
        {
            return Err(invalid(path, "`maxLength` is below `minLength`"));
        }
        let q = Expr::lit("\"");
        if let Some(p) = obj.get("pattern") {
            if min.is_some() || max.is_some() {
                return Err(unsupported(
                    path,
                    "`pattern` together with `minLength`/`maxLength`",
                ));
            }
            let p = p
                .as_str()
                .ok_or_else(|| invalid(path, "`pattern` must be a string"))?;
            let e = regex_expr(p, Embed::JsonString).map_err(|e| match e {
                GrammarError::Regex(m) => invalid(path, format!("`pattern`: {m}")),
                other => other,
            })?;
            return Ok(Expr::Seq(vec![q.clone(), e, q]));
        }
        if let Some(f) = obj.get("format") {
            let f = f
                .as_str()
                .ok_or_else(|| invalid(path, "`format` must be a string"))?;
            let body =
                format_expr(f).ok_or_else(|| unsupported(path, format!("string format `{f}`")))?;
            if min.is_some() || max.is_some() {
                return Err(unsupported(
                    path,
                    "`format` together with `minLength`/`maxLength`",
                ));
            }
            let id = self.json.rules.fresh(&rule_name(f));
            self.json.rules.set(id, body);
            return Ok(Expr::Seq(vec![q.clone(), Expr::Rule(id), q]));
        }
        if min.is_none() && max.is_none() {
            return Ok(self.json.prim("string"));
        }
        let c = self.json.prim("char");
        Ok(Expr::Seq(vec![
            q.clone(),
            Expr::repeat(c, min.unwrap_or(0), max),
            q,
        ]))
    }

    fn bound(&self, obj: &Map<String, Value>, key: &str, path: &str) -> Result<Option<f64>> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            // Draft 4's boolean exclusive bounds modify minimum/maximum.
            Some(Value::Bool(_)) if key.starts_with("exclusive") => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| invalid(path, format!("`{key}` must be a number"))),
        }
    }

    fn integer(&mut self, obj: &Map<String, Value>, path: &str) -> Result<Expr> {
        let draft4_excl = |k: &str| obj.get(k) == Some(&Value::Bool(true));
        let mut lo: Option<f64> = self.bound(obj, "minimum", path)?;
        let mut hi: Option<f64> = self.bound(obj, "maximum", path)?;
        let mut lo_i = lo.map(|v| v.ceil());
        let mut hi_i = hi.map(|v| v.floor());
        if draft4_excl("exclusiveMinimum") {
            lo_i = lo.map(|v| v.floor() + 1.0);
        }
        if draft4_excl("exclusiveMaximum") {
            hi_i = hi.map(|v| v.ceil() - 1.0);
        }
        if let Some(x) = self.bound(obj, "exclusiveMinimum", path)? {
            let v = x.floor() + 1.0;
            lo_i = Some(lo_i.map_or(v, |l| l.max(v)));
            lo = Some(x);
        }
        if let Some(x) = self.bound(obj, "exclusiveMaximum", path)? {
            let v = x.ceil() - 1.0;
            hi_i = Some(hi_i.map_or(v, |h| h.min(v)));
            hi = Some(x);
        }
        let _ = (lo, hi);
        if lo_i.is_none() && hi_i.is_none() {
            return Ok(self.json.prim("integer"));
        }
        const LIMIT: f64 = 1e15;
        let cvt = |v: Option<f64>| -> Result<Option<i64>> {
            match v {
                None => Ok(None),
                Some(x) if x.abs() <= LIMIT => Ok(Some(x as i64)),
                Some(_) => Err(unsupported(path, "integer bounds beyond ±10^15")),
            }
        };
        let (lo, hi) = (cvt(lo_i)?, cvt(hi_i)?);
        if let (Some(a), Some(b)) = (lo, hi)
            && a > b
        {
            return Err(invalid(
                path,
                "no integer lies between the minimum and the maximum",
            ));
        }
        Ok(int_range(lo, hi))
    }

    fn number(&mut self, obj: &Map<String, Value>, path: &str) -> Result<Expr> {
        let keys = ["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"];
        let present: Vec<&str> = keys
            .iter()
            .copied()
            .filter(|k| obj.contains_key(*k))
            .collect();
        if present.is_empty() {
            return Ok(self.json.prim("number"));
        }
        // `minimum: 0` alone: a number without a minus sign.
        if present == ["minimum"] && self.bound(obj, "minimum", path)? == Some(0.0) {
            let Expr::Seq(mut parts) = self.number_body() else {
                unreachable!()
            };
            parts.remove(0);
            return Ok(Expr::Seq(parts));
        }
        Err(unsupported(
            path,
            format!(
                "`{}` on a `number` (bounds are supported on integers, and `minimum: 0` on numbers)",
                present.join("`, `")
            ),
        ))
    }

    fn number_body(&mut self) -> Expr {
        let id = self.json.prim("number");
        let Expr::Rule(i) = id else { unreachable!() };
        self.json.rules.body(i).cloned().expect("defined")
    }

    fn object(&mut self, obj: &Map<String, Value>, path: &str) -> Result<Expr> {
        let ws = self.json.prim("ws");
        let props = match obj.get("properties") {
            None | Some(Value::Null) => None,
            Some(Value::Object(p)) => Some(p),
            Some(_) => return Err(invalid(path, "`properties` must be an object")),
        };
        let required: Vec<&str> = match obj.get("required") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(r)) => r
                .iter()
                .map(|v| {
                    v.as_str()
                        .ok_or_else(|| invalid(path, "`required` must list property names"))
                })
                .collect::<Result<_>>()?,
            Some(_) => return Err(invalid(path, "`required` must be an array")),
        };
        let additional = match obj.get("additionalProperties") {
            None => props.is_none().then(|| Value::Bool(true)),
            Some(Value::Bool(false)) => None,
            Some(v @ (Value::Bool(true) | Value::Object(_))) => Some(v.clone()),
            Some(_) => {
                return Err(invalid(
                    path,
                    "`additionalProperties` must be a boolean or a schema",
                ));
            }
        };
        if let Some(p) = props {
            for r in &required {
                if !p.contains_key(*r) && additional.is_none() {
                    return Err(invalid(
                        path,
                        format!(
                            "required property `{r}` is not among the properties and no others are allowed"
                        ),
                    ));
                }
            }
        }
        // Each element: its key-value expression and whether it must appear.
        let mut elems: Vec<(Expr, bool)> = Vec::new();
        if let Some(p) = props {
            for (name, sub) in p {
                let sub_path = format!(
                    "{path}/properties/{}",
                    name.replace('~', "~0").replace('/', "~1")
                );
                let value = self.visit(sub, &sub_path)?;
                let id = self.json.rules.fresh(&format!("{}-value", rule_name(name)));
                self.json.rules.set(id, value);
                let kv = Expr::Seq(vec![
                    literal(&Value::String(name.clone())),
                    ws.clone(),
                    Expr::lit(":"),
                    ws.clone(),
                    Expr::Rule(id),
                    ws.clone(),
                ]);
                elems.push((kv, required.contains(&name.as_str())));
            }
        }
        let extra = match &additional {
            None => None,
            Some(s) => {
                let value = self.visit(s, &format!("{path}/additionalProperties"))?;
                Some(Expr::Seq(vec![
                    self.json.prim("string"),
                    ws.clone(),
                    Expr::lit(":"),
                    ws.clone(),
                    value,
                    ws.clone(),
                ]))
            }
        };
        let comma = |e: &Expr| Expr::Seq(vec![Expr::lit(","), ws.clone(), e.clone()]);
        // After something was written: each later element with a leading comma.
        let after = |from: usize| -> Expr {
            let mut seq = Vec::new();
            for (kv, req) in &elems[from..] {
                seq.push(if *req {
                    comma(kv)
                } else {
                    Expr::opt(comma(kv))
                });
            }
            if let Some(x) = &extra {
                seq.push(Expr::star(comma(x)));
            }
            Expr::Seq(seq)
        };
        // Nothing written yet, choosing the first element from `from` on.
        let mut first: Expr = match &extra {
            Some(x) => Expr::opt(Expr::Seq(vec![x.clone(), Expr::star(comma(x))])),
            None => Expr::empty(),
        };
        for i in (0..elems.len()).rev() {
            let (kv, req) = &elems[i];
            let take = Expr::Seq(vec![kv.clone(), after(i + 1)]);
            first = if *req {
                take
            } else {
                Expr::Alt(vec![take, first])
            };
        }
        Ok(Expr::Seq(vec![Expr::lit("{"), ws, first, Expr::lit("}")]))
    }

    fn array(&mut self, obj: &Map<String, Value>, path: &str) -> Result<Expr> {
        let ws = self.json.prim("ws");
        if let Some(p) = obj.get("prefixItems") {
            let items = p
                .as_array()
                .ok_or_else(|| invalid(path, "`prefixItems` must be an array"))?;
            let mut seq = vec![Expr::lit("["), ws.clone()];
            for (i, s) in items.iter().enumerate() {
                if i > 0 {
                    seq.push(Expr::lit(","));
                    seq.push(ws.clone());
                }
                seq.push(self.visit(s, &format!("{path}/prefixItems/{i}"))?);
                seq.push(ws.clone());
            }
            seq.push(Expr::lit("]"));
            return Ok(Expr::Seq(seq));
        }
        let min = self.count(obj, "minItems", path)?.unwrap_or(0);
        let max = self.count(obj, "maxItems", path)?;
        if max.is_some_and(|m| m < min) {
            return Err(invalid(path, "`maxItems` is below `minItems`"));
        }
        let item = match obj.get("items") {
            None | Some(Value::Null) => self.json.prim("value"),
            Some(Value::Array(_)) => {
                return Err(unsupported(path, "`items` as an array (use `prefixItems`)"));
            }
            Some(s) => self.visit(s, &format!("{path}/items"))?,
        };
        let id = self.json.rules.fresh("item");
        self.json.rules.set(id, Expr::Seq(vec![item, ws.clone()]));
        let item = Expr::Rule(id);
        if max == Some(0) {
            return Ok(Expr::Seq(vec![Expr::lit("["), ws, Expr::lit("]")]));
        }
        let rest = Expr::repeat(
            Expr::Seq(vec![Expr::lit(","), ws.clone(), item.clone()]),
            min.saturating_sub(1),
            max.map(|m| m - 1),
        );
        let body = Expr::Seq(vec![item, rest]);
        let body = if min == 0 { Expr::opt(body) } else { body };
        Ok(Expr::Seq(vec![Expr::lit("["), ws, body, Expr::lit("]")]))
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) =
                u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or(""), 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The text (without quotes) of a string format.
fn format_expr(f: &str) -> Option<Expr> {
    let d = digit;
    let c = |a: char, b: char| Expr::class(&[(a, b)], false);
    let date = || {
        Expr::Seq(vec![
            Expr::repeat(d(), 4, Some(4)),
            Expr::lit("-"),
            Expr::Alt(vec![
                Expr::Seq(vec![Expr::lit("0"), c('1', '9')]),
                Expr::Seq(vec![Expr::lit("1"), c('0', '2')]),
            ]),
            Expr::lit("-"),
            Expr::Alt(vec![
                Expr::Seq(vec![Expr::lit("0"), c('1', '9')]),
                Expr::Seq(vec![c('1', '2'), d()]),
                Expr::Seq(vec![Expr::lit("3"), c('0', '1')]),
            ]),
        ])
    };
    let hour = || {
        Expr::Alt(vec![
            Expr::Seq(vec![c('0', '1'), d()]),
            Expr::Seq(vec![Expr::lit("2"), c('0', '3')]),
        ])
    };
    let minute = || Expr::Seq(vec![c('0', '5'), d()]);
    let time = || {
        Expr::Seq(vec![
            hour(),
            Expr::lit(":"),
            minute(),
            Expr::lit(":"),
            minute(),
            Expr::opt(Expr::Seq(vec![
                Expr::lit("."),
                Expr::repeat(d(), 1, Some(6)),
            ])),
            Expr::Alt(vec![
                Expr::lit("Z"),
                Expr::Seq(vec![
                    Expr::class(&[('+', '+'), ('-', '-')], false),
                    hour(),
                    Expr::lit(":"),
                    minute(),
                ]),
            ]),
        ])
    };
    let alnum = || Expr::class(&[('a', 'z'), ('A', 'Z'), ('0', '9')], false);
    let label = || {
        Expr::Seq(vec![
            Expr::repeat(alnum(), 1, Some(20)),
            Expr::repeat(
                Expr::Seq(vec![Expr::lit("-"), Expr::repeat(alnum(), 1, Some(20))]),
                0,
                Some(3),
            ),
        ])
    };
    let hostname = || {
        Expr::Seq(vec![
            label(),
            Expr::repeat(Expr::Seq(vec![Expr::lit("."), label()]), 0, Some(4)),
        ])
    };
    Some(match f {
        "date" => date(),
        "time" => time(),
        "date-time" => Expr::Seq(vec![date(), Expr::lit("T"), time()]),
        "uuid" => {
            let h = |n| Expr::repeat(hex(), n, Some(n));
            Expr::Seq(vec![
                h(8),
                Expr::lit("-"),
                h(4),
                Expr::lit("-"),
                h(4),
                Expr::lit("-"),
                h(4),
                Expr::lit("-"),
                h(12),
            ])
        }
        "email" => {
            let atom = || {
                Expr::repeat(
                    Expr::class(
                        &[
                            ('a', 'z'),
                            ('A', 'Z'),
                            ('0', '9'),
                            ('_', '_'),
                            ('+', '+'),
                            ('-', '-'),
                        ],
                        false,
                    ),
                    1,
                    Some(32),
                )
            };
            Expr::Seq(vec![
                atom(),
                Expr::repeat(Expr::Seq(vec![Expr::lit("."), atom()]), 0, Some(3)),
                Expr::lit("@"),
                label(),
                Expr::repeat(Expr::Seq(vec![Expr::lit("."), label()]), 1, Some(4)),
            ])
        }
        "ipv4" => {
            let octet = || {
                Expr::Alt(vec![
                    Expr::Seq(vec![Expr::lit("25"), c('0', '5')]),
                    Expr::Seq(vec![Expr::lit("2"), c('0', '4'), d()]),
                    Expr::Seq(vec![Expr::lit("1"), d(), d()]),
                    Expr::Seq(vec![c('1', '9'), d()]),
                    d(),
                ])
            };
            Expr::Seq(vec![
                octet(),
                Expr::lit("."),
                octet(),
                Expr::lit("."),
                octet(),
                Expr::lit("."),
                octet(),
            ])
        }
        "hostname" => hostname(),
        "uri" => Expr::Seq(vec![
            Expr::class(&[('a', 'z'), ('A', 'Z')], false),
            Expr::repeat(
                Expr::class(
                    &[
                        ('a', 'z'),
                        ('A', 'Z'),
                        ('0', '9'),
                        ('+', '+'),
                        ('.', '.'),
                        ('-', '-'),
                    ],
                    false,
                ),
                0,
                Some(15),
            ),
            Expr::lit("://"),
            hostname(),
            Expr::opt(Expr::Seq(vec![
                Expr::lit("/"),
                Expr::repeat(
                    Expr::class(
                        &[
                            ('a', 'z'),
                            ('A', 'Z'),
                            ('0', '9'),
                            ('-', '/'),
                            ('_', '_'),
                            ('~', '~'),
                            ('=', '='),
                            ('?', '?'),
                            ('&', '&'),
                            ('#', '#'),
                        ],
                        false,
                    ),
                    0,
                    Some(200),
                ),
            ])),
        ]),
        _ => return None,
    })
}

/// Integers in `[lo, hi]` (either end open when `None`), as JSON writes them.
pub fn int_range(lo: Option<i64>, hi: Option<i64>) -> Expr {
    let mut alts = Vec::new();
    // Negative part: -x for x in [max(1, -hi), -lo].
    let neg_hi = lo.map(|l| if l < 0 { Some(l.unsigned_abs()) } else { None });
    let neg_lo = hi.map_or(1, |h| if h < 0 { h.unsigned_abs() } else { 1 });
    match neg_hi {
        None => alts.push(Expr::Seq(vec![Expr::lit("-"), nonneg_range(neg_lo, None)])),
        Some(Some(nh)) if nh >= neg_lo => alts.push(Expr::Seq(vec![
            Expr::lit("-"),
            nonneg_range(neg_lo, Some(nh)),
        ])),
        _ => {}
    }
    // Non-negative part: [max(0, lo), hi].
    let pos_lo = lo.map_or(0, |l| l.max(0) as u64);
    match hi {
        Some(h) if h < 0 => {}
        Some(h) if (h as u64) < pos_lo => {}
        Some(h) => alts.push(nonneg_range(pos_lo, Some(h as u64))),
        None => alts.push(nonneg_range(pos_lo, None)),
    }
    Expr::Alt(alts)
}

fn ndigits(x: u64) -> usize {
    x.to_string().len()
}

/// Non-negative integers in `[lo, hi]` without leading zeros (at most 16 digits when open).
fn nonneg_range(lo: u64, hi: Option<u64>) -> Expr {
    let mut alts = Vec::new();
    let dlo = ndigits(lo);
    let dhi = match hi {
        Some(h) => ndigits(h),
        None => 16.max(dlo),
    };
    for k in dlo..=dhi {
        let start = if k == 1 { 0 } else { 10u64.pow(k as u32 - 1) };
        let end = 10u64.saturating_pow(k as u32).saturating_sub(1);
        let a = lo.max(start);
        let b = hi.map_or(end, |h| h.min(end));
        if a > b {
            continue;
        }
        alts.push(same_len(a.to_string().as_bytes(), b.to_string().as_bytes()));
    }
    Expr::Alt(alts)
}

/// Digit strings of one length between `lo` and `hi` inclusive.
fn same_len(lo: &[u8], hi: &[u8]) -> Expr {
    if lo.is_empty() {
        return Expr::empty();
    }
    let dc = |a: u8, b: u8| Expr::class(&[(a as char, b as char)], false);
    if lo[0] == hi[0] {
        return Expr::Seq(vec![Expr::Lit(vec![lo[0]]), same_len(&lo[1..], &hi[1..])]);
    }
    let n = lo.len() - 1;
    if lo[1..].iter().all(|&c| c == b'0') && hi[1..].iter().all(|&c| c == b'9') {
        return Expr::Seq(vec![
            dc(lo[0], hi[0]),
            Expr::repeat(dc(b'0', b'9'), n as u32, Some(n as u32)),
        ]);
    }
    let nines = vec![b'9'; n];
    let zeros = vec![b'0'; n];
    let mut alts = vec![Expr::Seq(vec![
        Expr::Lit(vec![lo[0]]),
        same_len(&lo[1..], &nines),
    ])];
    if hi[0] - lo[0] > 1 {
        alts.push(Expr::Seq(vec![
            dc(lo[0] + 1, hi[0] - 1),
            Expr::repeat(dc(b'0', b'9'), n as u32, Some(n as u32)),
        ]));
    }
    alts.push(Expr::Seq(vec![
        Expr::Lit(vec![hi[0]]),
        same_len(&zeros, &hi[1..]),
    ]));
    Expr::Alt(alts)
}
