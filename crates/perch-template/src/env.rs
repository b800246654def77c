//! The minijinja environment, configured the way Hugging Face transformers configures Jinja2
//! for chat templates: `trim_blocks` and `lstrip_blocks` on, loop controls, Python string and
//! dict methods, `raise_exception`, `strftime_now`, transformers' `tojson`, Python's `str()`
//! for printed values, and the `{% generation %}` tag. Plus limits, so that a hostile
//! template fails with an error instead of hanging or exhausting the stack.

use chrono::{DateTime, Utc};
use minijinja::value::{Kwargs, Rest, Value, ValueKind};
use minijinja::{Environment, Error, ErrorKind, State};

use crate::error::RaisedByTemplate;
use crate::python::{self, DumpOptions};

/// Name under which the template is stored in its environment.
pub(crate) const TEMPLATE_NAME: &str = "chat_template";

/// Context variable holding the render's "now" (seconds since the Unix epoch) for
/// `strftime_now`. Templates never use it by this name.
pub(crate) const NOW_VAR: &str = "__perch_now_unix__";

/// Instruction budget of one render. Measured: the cases of tests/hf_reference.rs take at
/// most ~2,500 instructions, and 401 messages through the heaviest of llama.cpp's templates
/// ~620,000 (about 1,500 per message), so this leaves room for ~6,000-message conversations
/// while stopping a runaway template after a few seconds of CPU at worst.
pub(crate) const FUEL: u64 = 10_000_000;

/// Nesting depth of the template runtime (loops, macros, includes). minijinja's own cap is
/// 500; chat templates nest a handful of levels.
pub(crate) const RECURSION_LIMIT: usize = 200;

/// Builds the environment holding `source` (already preprocessed).
pub(crate) fn build(source: String) -> Result<Environment<'static>, Error> {
    let mut env = Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_keep_trailing_newline(false);
    env.set_fuel(Some(FUEL));
    env.set_recursion_limit(RECURSION_LIMIT);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.set_formatter(|out, _state, value| {
        out.write_str(&python::str_of(value)).map_err(Error::from)
    });
    env.add_function("raise_exception", raise_exception);
    env.add_function("strftime_now", strftime_now);
    env.add_filter("tojson", tojson);
    env.add_filter("string", |v: &Value| Value::from(python::str_of(v)));
    env.add_test("iterable", is_iterable);
    env.add_test("sequence", is_sequence);
    env.add_template_owned(TEMPLATE_NAME, source)?;
    Ok(env)
}

/// Jinja2's `iterable` test (Python's `iter(x)` works): strings, lists, dicts and
/// undefined values (Jinja2's `Undefined` iterates as empty) are; `none` and numbers are not.
fn is_iterable(v: &Value) -> bool {
    matches!(
        v.kind(),
        ValueKind::Undefined
            | ValueKind::String
            | ValueKind::Seq
            | ValueKind::Map
            | ValueKind::Iterable
    )
}

/// Jinja2's `sequence` test (has `len()` and `[]`): strings, lists, dicts and undefined.
fn is_sequence(v: &Value) -> bool {
    matches!(
        v.kind(),
        ValueKind::Undefined | ValueKind::String | ValueKind::Seq | ValueKind::Map
    )
}

/// `raise_exception(message)`: the template rejects its input.
fn raise_exception(message: Rest<Value>) -> Result<Value, Error> {
    let message = message
        .iter()
        .map(python::str_of)
        .collect::<Vec<_>>()
        .join(" ");
    Err(Error::new(ErrorKind::InvalidOperation, message.clone())
        .with_source(RaisedByTemplate(message)))
}

/// `strftime_now(format)`: the render's "now" (UTC) formatted with C/Python `strftime`.
fn strftime_now(state: &State<'_, '_>, format: &str) -> Result<Value, Error> {
    use std::fmt::Write as _;
    let secs = state
        .lookup(NOW_VAR)
        .and_then(|v| v.as_i64())
        .unwrap_or_else(|| Utc::now().timestamp());
    let now: DateTime<Utc> = DateTime::from_timestamp(secs, 0).unwrap_or_default();
    let items = chrono::format::StrftimeItems::new(format);
    let mut out = String::new();
    write!(out, "{}", now.format_with_items(items)).map_err(|_| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("strftime_now: invalid format string {format:?}"),
        )
    })?;
    Ok(Value::from(out))
}

/// transformers' `tojson(x, ensure_ascii=False, indent=None, separators=None,
/// sort_keys=False)`: `json.dumps` with those options (no HTML escaping).
fn tojson(value: &Value, args: Rest<Value>, kwargs: Kwargs) -> Result<Value, Error> {
    let names = ["ensure_ascii", "indent", "separators", "sort_keys"];
    if args.len() > names.len() {
        return Err(Error::new(
            ErrorKind::TooManyArguments,
            "tojson takes at most 4 arguments",
        ));
    }
    let arg = |i: usize| -> Result<Option<Value>, Error> {
        match args.get(i) {
            Some(v) => Ok(Some(v.clone())),
            None => kwargs.get::<Option<Value>>(names[i]),
        }
    };
    let ensure_ascii = arg(0)?.is_some_and(|v| v.is_true());
    let indent = match arg(1)? {
        None => None,
        Some(v) if v.is_none() || v.is_undefined() => None,
        Some(v) => match v.kind() {
            ValueKind::String => Some(v.as_str().unwrap_or_default().to_string()),
            ValueKind::Number => {
                let n = v
                    .as_i64()
                    .ok_or_else(|| bad_arg("indent must be an integer or a string"))?;
                Some(" ".repeat(n.clamp(0, 64) as usize))
            }
            _ => return Err(bad_arg("indent must be an integer or a string")),
        },
    };
    let sort_keys = arg(3)?.is_some_and(|v| v.is_true());
    let mut opts = DumpOptions::new(ensure_ascii, indent, sort_keys);
    if let Some(seps) = arg(2)?.filter(|v| !v.is_none() && !v.is_undefined()) {
        let parts: Vec<Value> = seps
            .try_iter()
            .map_err(|_| bad_arg("separators must be a pair of strings"))?
            .collect();
        match parts.as_slice() {
            [item, key] if item.as_str().is_some() && key.as_str().is_some() => {
                opts.item_sep = item.as_str().unwrap_or_default().to_string();
                opts.key_sep = key.as_str().unwrap_or_default().to_string();
            }
            _ => return Err(bad_arg("separators must be a pair of strings")),
        }
    }
    kwargs.assert_all_used()?;
    python::dumps(value, &opts)
        .map(Value::from)
        .map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("tojson: {e}")))
}

fn bad_arg(detail: &'static str) -> Error {
    Error::new(ErrorKind::InvalidOperation, format!("tojson: {detail}"))
}

/// Rewrites the `{% generation %}` / `{% endgeneration %}` tags (transformers'
/// AssistantTracker extension, which marks assistant text and otherwise renders its body)
/// as `{% if true %}` / `{% endif %}`, keeping their whitespace-control markers so the
/// output is the same.
pub(crate) fn rewrite_generation_tags(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(start) = rest.find("{%") {
        out.push_str(&rest[..start]);
        let tag = &rest[start..];
        match parse_generation_tag(tag) {
            Some((len, open_ctl, close_ctl, is_end)) => {
                out.push_str("{%");
                out.push_str(open_ctl);
                out.push_str(if is_end { " endif " } else { " if true " });
                out.push_str(close_ctl);
                out.push_str("%}");
                rest = &tag[len..];
            }
            None => {
                out.push_str("{%");
                rest = &tag[2..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// If `tag` starts with a `generation` or `endgeneration` block tag, returns (its length,
/// opening control marker, closing control marker, is it the end tag).
fn parse_generation_tag(tag: &str) -> Option<(usize, &str, &str, bool)> {
    let body = tag.strip_prefix("{%")?;
    let (open_ctl, body) = match body.as_bytes().first() {
        Some(b'-') => ("-", &body[1..]),
        Some(b'+') => ("+", &body[1..]),
        _ => ("", body),
    };
    let trimmed = body.trim_start();
    let (is_end, after) = if let Some(a) = trimmed.strip_prefix("endgeneration") {
        (true, a)
    } else if let Some(a) = trimmed.strip_prefix("generation") {
        (false, a)
    } else {
        return None;
    };
    let after_ws = after.trim_start();
    if after_ws.len() == after.len() && !after.starts_with(['-', '+', '%']) {
        return None; // e.g. `{% generation_x %}`
    }
    let (close_ctl, after_ctl) = match after_ws.as_bytes().first() {
        Some(b'-') => ("-", &after_ws[1..]),
        Some(b'+') => ("+", &after_ws[1..]),
        _ => ("", after_ws),
    };
    let after_close = after_ctl.strip_prefix("%}")?;
    Some((tag.len() - after_close.len(), open_ctl, close_ctl, is_end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_tags_become_if_blocks() {
        assert_eq!(
            rewrite_generation_tags("a{% generation %}b{%- endgeneration -%}c"),
            "a{% if true %}b{%- endif -%}c"
        );
        assert_eq!(
            rewrite_generation_tags("{%generation%}x{%endgeneration%}"),
            "{% if true %}x{% endif %}"
        );
        // Other tags are untouched.
        let src = "{% if generation %}{% generation_x %}{{ '{%' }}";
        assert_eq!(rewrite_generation_tags(src), src);
    }
}
