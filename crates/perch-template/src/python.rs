//! Python's spellings of values, because chat templates are written against Jinja2 running
//! in Python (Hugging Face transformers):
//!
//! - [`dumps`] is `json.dumps(x, ensure_ascii=..., indent=..., separators=..., sort_keys=...)`,
//!   which transformers installs as the `tojson` filter (Jinja's own escapes HTML).
//! - [`str_of`] is Python's `str(x)`, what `{{ x }}` prints in Jinja2: `True`, `None`,
//!   `['a', 1]`, `{'k': 'v'}`, `1.0`.

use std::fmt::Write as _;

use minijinja::value::{Value, ValueKind};

/// Options of `json.dumps` that templates pass to `tojson`.
#[derive(Debug, Clone)]
pub(crate) struct DumpOptions {
    /// `ensure_ascii`: escape every non-ASCII character as `\uXXXX`.
    pub ensure_ascii: bool,
    /// `indent`: `None` for one line, else the string put before each nested line.
    pub indent: Option<String>,
    /// `separators`: (item separator, key separator).
    pub item_sep: String,
    /// Key separator.
    pub key_sep: String,
    /// `sort_keys`.
    pub sort_keys: bool,
}

impl DumpOptions {
    /// Python's defaults for the given indent: `(", ", ": ")` on one line, `(",", ": ")`
    /// when indenting.
    pub fn new(ensure_ascii: bool, indent: Option<String>, sort_keys: bool) -> Self {
        let item_sep = if indent.is_some() { "," } else { ", " }.to_string();
        DumpOptions {
            ensure_ascii,
            indent,
            item_sep,
            key_sep: ": ".to_string(),
            sort_keys,
        }
    }
}

/// Nesting deeper than this is refused (Python raises RecursionError near 1000).
const MAX_DEPTH: usize = 256;

/// `json.dumps(value, ...)`. Undefined values are written as `null`.
pub(crate) fn dumps(value: &Value, opts: &DumpOptions) -> Result<String, String> {
    let mut out = String::new();
    dump_into(&mut out, value, opts, 0)?;
    Ok(out)
}

fn dump_into(
    out: &mut String,
    value: &Value,
    opts: &DumpOptions,
    depth: usize,
) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err("value nested too deeply for tojson".into());
    }
    match value.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if value.is_true() { "true" } else { "false" }),
        ValueKind::Number => out.push_str(&number_repr(value)),
        ValueKind::String => {
            json_string(out, value.as_str().unwrap_or_default(), opts.ensure_ascii)
        }
        ValueKind::Map => {
            let mut entries = map_entries(value)?;
            if entries.is_empty() {
                out.push_str("{}");
                return Ok(());
            }
            if opts.sort_keys {
                entries.sort_by(|a, b| a.0.cmp(&b.0));
            }
            out.push('{');
            for (i, (key, item)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push_str(&opts.item_sep);
                }
                newline_indent(out, opts, depth + 1);
                json_string(out, key, opts.ensure_ascii);
                out.push_str(&opts.key_sep);
                dump_into(out, item, opts, depth + 1)?;
            }
            newline_indent(out, opts, depth);
            out.push('}');
        }
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = value.try_iter().map_err(|e| e.to_string())?.collect();
            if items.is_empty() {
                out.push_str("[]");
                return Ok(());
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(&opts.item_sep);
                }
                newline_indent(out, opts, depth + 1);
                dump_into(out, item, opts, depth + 1)?;
            }
            newline_indent(out, opts, depth);
            out.push(']');
        }
        ValueKind::Bytes => return Err("bytes are not JSON serializable".into()),
        _ => {
            // Plain objects (e.g. a namespace) that still enumerate as maps.
            if value.try_iter().is_ok() && value.len().is_some() {
                let entries = map_entries(value)?;
                let map: Value =
                    Value::from_iter(entries.into_iter().map(|(k, v)| (Value::from(k), v)));
                return dump_into(out, &map, opts, depth);
            }
            return Err(format!(
                "object of kind {} is not JSON serializable",
                value.kind()
            ));
        }
    }
    Ok(())
}

fn newline_indent(out: &mut String, opts: &DumpOptions, level: usize) {
    if let Some(indent) = &opts.indent {
        out.push('\n');
        for _ in 0..level {
            out.push_str(indent);
        }
    }
}

/// The (key as a JSON key, value) pairs of a map, in its order. Keys that are not strings
/// become strings the way `json.dumps` converts them (`1` → `"1"`, `True` → `"true"`).
fn map_entries(value: &Value) -> Result<Vec<(String, Value)>, String> {
    let mut entries = Vec::new();
    for key in value.try_iter().map_err(|e| e.to_string())? {
        let item = value.get_item(&key).map_err(|e| e.to_string())?;
        let key = match key.kind() {
            ValueKind::String => key.as_str().unwrap_or_default().to_string(),
            ValueKind::Number => number_repr(&key),
            ValueKind::Bool => if key.is_true() { "true" } else { "false" }.to_string(),
            ValueKind::None => "null".to_string(),
            other => {
                return Err(format!(
                    "keys must be str, int, float, bool or None, not {other}"
                ));
            }
        };
        entries.push((key, item));
    }
    Ok(entries)
}

/// Writes `s` as a JSON string literal the way Python's `json` module does.
fn json_string(out: &mut String, s: &str, ensure_ascii: bool) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if ensure_ascii && (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// An integer's digits, or a float as Python's `repr(float)` spells it.
fn number_repr(value: &Value) -> String {
    if value.is_integer() {
        return value.to_string();
    }
    match f64::try_from(value.clone()) {
        Ok(f) => float_repr(f),
        Err(_) => value.to_string(),
    }
}

/// Python's `repr(x)` for a float: the shortest digits that round-trip, in fixed notation
/// when the decimal exponent is in (-4, 16], else in scientific notation (`1e+16`,
/// `1.5e-05`); integers keep a `.0`.
pub(crate) fn float_repr(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0.0" } else { "0.0" }.into();
    }
    // Rust's `{:e}` gives the shortest round-trip digits: "-1.2345e-7".
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (neg, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| c.is_ascii_digit()).collect();
    let decpt = exp + 1; // position of the decimal point relative to the digits
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    if -4 < decpt && decpt <= 16 {
        let n = digits.len() as i32;
        if decpt <= 0 {
            out.push_str("0.");
            for _ in 0..(-decpt) {
                out.push('0');
            }
            out.push_str(&digits);
        } else if decpt >= n {
            out.push_str(&digits);
            for _ in 0..(decpt - n) {
                out.push('0');
            }
            out.push_str(".0");
        } else {
            out.push_str(&digits[..decpt as usize]);
            out.push('.');
            out.push_str(&digits[decpt as usize..]);
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let _ = write!(out, "e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs());
    }
    out
}

/// Python's `str(value)`: what Jinja2 prints for `{{ value }}`.
pub(crate) fn str_of(value: &Value) -> String {
    match value.kind() {
        ValueKind::Undefined => String::new(),
        ValueKind::String => value.as_str().unwrap_or_default().to_string(),
        _ => {
            let mut out = String::new();
            repr_into(&mut out, value, 0);
            out
        }
    }
}

/// Python's `repr(value)` (strings quoted, containers recursively).
fn repr_into(out: &mut String, value: &Value, depth: usize) {
    if depth > MAX_DEPTH {
        out.push_str("...");
        return;
    }
    match value.kind() {
        ValueKind::Undefined => {}
        ValueKind::None => out.push_str("None"),
        ValueKind::Bool => out.push_str(if value.is_true() { "True" } else { "False" }),
        ValueKind::Number => out.push_str(&number_repr(value)),
        ValueKind::String => string_repr(out, value.as_str().unwrap_or_default()),
        ValueKind::Seq => {
            out.push('[');
            if let Ok(iter) = value.try_iter() {
                for (i, item) in iter.enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    repr_into(out, &item, depth + 1);
                }
            }
            out.push(']');
        }
        ValueKind::Map => {
            out.push('{');
            if let Ok(iter) = value.try_iter() {
                for (i, key) in iter.enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    repr_into(out, &key, depth + 1);
                    out.push_str(": ");
                    let item = value.get_item(&key).unwrap_or_default();
                    repr_into(out, &item, depth + 1);
                }
            }
            out.push('}');
        }
        _ => out.push_str(&value.to_string()),
    }
}

/// Python's `repr(str)`: single quotes unless the string holds a single quote and no double
/// quote; backslash escapes for the quote, backslash, `\n`, `\r`, `\t` and other
/// non-printable characters.
fn string_repr(out: &mut String, s: &str) {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for c in s.chars() {
        match c {
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push(quote);
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected strings are what CPython 3.11 prints for the same values.
    #[test]
    fn float_repr_matches_python() {
        let cases = [
            (1.0, "1.0"),
            (21.5, "21.5"),
            (0.1, "0.1"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-5, "1.5e-05"),
            (-2.5e100, "-2.5e+100"),
            (123456.789, "123456.789"),
            (-0.0, "-0.0"),
            (f64::INFINITY, "Infinity"),
        ];
        for (f, want) in cases {
            assert_eq!(float_repr(f), want, "repr({f})");
        }
    }

    fn v(json: &str) -> Value {
        Value::from_serialize(serde_json::from_str::<serde_json::Value>(json).unwrap())
    }

    #[test]
    fn dumps_matches_python_json() {
        // json.dumps({"b": [1, 2.5, None, True], "a": "é\"\n<"}) and variants.
        let x = v(r#"{"b": [1, 2.5, null, true], "a": "é\"\n<"}"#);
        let o = DumpOptions::new(false, None, false);
        assert_eq!(
            dumps(&x, &o).unwrap(),
            r#"{"b": [1, 2.5, null, true], "a": "é\"\n<"}"#
        );
        let o = DumpOptions::new(true, None, true);
        assert_eq!(
            dumps(&x, &o).unwrap(),
            r#"{"a": "\u00e9\"\n<", "b": [1, 2.5, null, true]}"#
        );
        let o = DumpOptions::new(false, Some("  ".into()), false);
        assert_eq!(
            dumps(&x, &o).unwrap(),
            "{\n  \"b\": [\n    1,\n    2.5,\n    null,\n    true\n  ],\n  \"a\": \"é\\\"\\n<\"\n}"
        );
        assert_eq!(dumps(&v("{}"), &o).unwrap(), "{}");
        assert_eq!(dumps(&v("[]"), &o).unwrap(), "[]");
        // json.dumps("😀\x01", ensure_ascii=True) == '"\\ud83d\\ude00\\u0001"'
        let o = DumpOptions::new(true, None, false);
        assert_eq!(
            dumps(&Value::from("😀\u{1}"), &o).unwrap(),
            r#""\ud83d\ude00\u0001""#
        );
    }

    #[test]
    fn str_matches_python() {
        assert_eq!(str_of(&v("true")), "True");
        assert_eq!(str_of(&v("null")), "None");
        assert_eq!(str_of(&v("1.0")), "1.0");
        assert_eq!(str_of(&v(r#""plain""#)), "plain");
        // str([{'type': 'text', 'text': "it's"}, None, False])
        assert_eq!(
            str_of(&v(r#"[{"type": "text", "text": "it's"}, null, false]"#)),
            r#"[{'type': 'text', 'text': "it's"}, None, False]"#
        );
        assert_eq!(str_of(&Value::UNDEFINED), "");
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        // A list nested 1000 deep (serde_json itself refuses 128+).
        let mut value = Value::from(Vec::<Value>::new());
        for _ in 0..1000 {
            value = Value::from(vec![value]);
        }
        let o = DumpOptions::new(false, None, false);
        assert!(dumps(&value, &o).is_err());
    }
}
