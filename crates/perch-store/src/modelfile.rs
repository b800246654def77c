//! Modelfiles in Ollama's syntax: `FROM`, `PARAMETER`, `SYSTEM`, `TEMPLATE`, `#` comments, and
//! `"""` quoting for values that span lines.
//!
//! `TEMPLATE` takes an Ollama Go template (`{{ .Prompt }}`, rendered as Ollama does) or a
//! Jinja chat template (like the one inside a GGUF); perch-template tells them apart.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::StoreError;

/// A parsed Modelfile.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Modelfile {
    /// A GGUF path or a model name in the store.
    pub from: String,
    /// Default parameters (Ollama option names).
    pub parameters: BTreeMap<String, Value>,
    /// Default system prompt.
    pub system: Option<String>,
    /// A chat template (Ollama Go or Jinja).
    pub template: Option<String>,
}

const FLOAT_PARAMS: &[&str] = &[
    "temperature",
    "top_p",
    "min_p",
    "repeat_penalty",
    "presence_penalty",
    "frequency_penalty",
];
const INT_PARAMS: &[&str] = &["top_k", "seed", "num_predict", "num_ctx", "repeat_last_n"];

fn parse_param(line: usize, key: &str, value: &str) -> Result<Value, StoreError> {
    let bad = |why: String| StoreError::BadModelfile { line, why };
    if FLOAT_PARAMS.contains(&key) {
        let v: f64 = value
            .parse()
            .map_err(|_| bad(format!("PARAMETER {key} needs a number, got `{value}`")))?;
        if !v.is_finite() {
            return Err(bad(format!("PARAMETER {key} must be finite")));
        }
        Ok(json!(v))
    } else if INT_PARAMS.contains(&key) {
        let v: i64 = value
            .parse()
            .map_err(|_| bad(format!("PARAMETER {key} needs an integer, got `{value}`")))?;
        Ok(json!(v))
    } else if key == "stop" {
        Ok(json!(value))
    } else {
        Err(bad(format!(
            "unknown PARAMETER `{key}` (perch knows {}, {} and stop)",
            FLOAT_PARAMS.join(", "),
            INT_PARAMS.join(", ")
        )))
    }
}

/// Parse a Modelfile.
pub fn parse_modelfile(text: &str) -> Result<Modelfile, StoreError> {
    let mut mf = Modelfile::default();
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let lineno = i + 1;
        let line = lines[i].trim();
        i += 1;
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (cmd, rest) = line
            .split_once(char::is_whitespace)
            .map_or((line, ""), |(c, r)| (c, r.trim()));
        // A value in triple quotes may span lines.
        let value = if let Some(start) = rest.strip_prefix("\"\"\"") {
            if let Some(end) = start.strip_suffix("\"\"\"") {
                end.to_string()
            } else {
                let mut v = start.to_string();
                loop {
                    let Some(next) = lines.get(i) else {
                        return Err(StoreError::BadModelfile {
                            line: lineno,
                            why: "unterminated \"\"\"".into(),
                        });
                    };
                    i += 1;
                    v.push('\n');
                    if let Some(end) = next.strip_suffix("\"\"\"") {
                        v.push_str(end);
                        break;
                    }
                    v.push_str(next);
                }
                v.trim_start_matches('\n').to_string()
            }
        } else if rest.len() >= 2 && rest.starts_with('"') && rest.ends_with('"') {
            rest[1..rest.len() - 1].to_string()
        } else {
            rest.to_string()
        };
        match cmd.to_ascii_uppercase().as_str() {
            "FROM" => {
                if value.is_empty() {
                    return Err(StoreError::BadModelfile {
                        line: lineno,
                        why: "FROM needs a GGUF file or a model name".into(),
                    });
                }
                mf.from = value;
            }
            "PARAMETER" => {
                let (key, v) = value.split_once(char::is_whitespace).ok_or_else(|| {
                    StoreError::BadModelfile {
                        line: lineno,
                        why: "PARAMETER needs a name and a value".into(),
                    }
                })?;
                let v = v.trim();
                let v = v
                    .strip_prefix('"')
                    .and_then(|x| x.strip_suffix('"'))
                    .unwrap_or(v);
                let parsed = parse_param(lineno, key, v)?;
                if key == "stop" {
                    let entry = mf
                        .parameters
                        .entry("stop".into())
                        .or_insert_with(|| json!([]));
                    if let Value::Array(a) = entry {
                        a.push(parsed);
                    }
                } else {
                    mf.parameters.insert(key.to_string(), parsed);
                }
            }
            "SYSTEM" => mf.system = Some(value),
            "TEMPLATE" => mf.template = Some(value),
            "LICENSE" | "MESSAGE" | "ADAPTER" => {
                return Err(StoreError::BadModelfile {
                    line: lineno,
                    why: format!("{cmd} is not supported by perch yet"),
                });
            }
            other => {
                return Err(StoreError::BadModelfile {
                    line: lineno,
                    why: format!("unknown instruction `{other}`"),
                });
            }
        }
    }
    if mf.from.is_empty() {
        return Err(StoreError::BadModelfile {
            line: lines.len().max(1),
            why: "a Modelfile needs a FROM line".into(),
        });
    }
    Ok(mf)
}
