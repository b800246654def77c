//! The model's output turned into text content and tool calls, per template family. Output
//! that does not hold a well-formed call is content, as it is.

use serde_json::{Value, json};

use super::Family;

/// One tool call the model made.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    /// The call id (`call_...`), made up by the server as OpenAI does.
    pub id: String,
    /// The function.
    pub name: String,
    /// Its arguments (a JSON object as the model wrote it).
    pub arguments: Value,
}

/// Content and calls of one answer.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Parsed {
    /// Text for the user (`None` when the answer is only calls).
    pub content: Option<String>,
    /// The calls, in order.
    pub calls: Vec<ToolCall>,
}

impl ToolCall {
    /// OpenAI's shape: `arguments` as a JSON string.
    pub fn openai(&self) -> Value {
        json!({
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments.to_string()},
        })
    }

    /// Ollama's shape: `arguments` as an object.
    pub fn ollama(&self) -> Value {
        json!({"function": {"name": self.name, "arguments": self.arguments}})
    }
}

fn call(name: &Value, args: Option<&Value>) -> Option<ToolCall> {
    let name = name.as_str()?.to_string();
    let arguments = match args {
        None | Some(Value::Null) => json!({}),
        // Some models write the arguments as a JSON string.
        Some(Value::String(s)) => serde_json::from_str(s).unwrap_or_else(|_| json!(s)),
        Some(v) => v.clone(),
    };
    Some(ToolCall {
        id: crate::generation::new_id("call_"),
        name,
        arguments,
    })
}

/// A `{"name": ..., "arguments"|"parameters": ...}` object as a call.
fn object_call(v: &Value) -> Option<ToolCall> {
    let o = v.as_object()?;
    let f = o.get("function").filter(|f| f.is_object()).unwrap_or(v);
    let args = f.get("arguments").or_else(|| f.get("parameters"));
    call(f.get("name")?, args)
}

fn non_empty(s: &str) -> Option<String> {
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_string())
}

/// Parse `text` written by a model of `family`.
pub fn parse(text: &str, family: Family) -> Parsed {
    let parsed = match family {
        Family::Hermes => hermes(text),
        Family::Mistral => mistral(text),
        Family::Llama3 => llama3(text),
        Family::Generic => generic(text),
    };
    parsed.unwrap_or_else(|| Parsed {
        content: Some(text.to_string()),
        calls: Vec::new(),
    })
}

fn hermes(text: &str) -> Option<Parsed> {
    const OPEN: &str = "<tool_call>";
    const CLOSE: &str = "</tool_call>";
    let first = text.find(OPEN)?;
    let mut calls = Vec::new();
    let mut content = text[..first].to_string();
    let mut rest = &text[first..];
    while let Some(start) = rest.find(OPEN) {
        content.push_str(&rest[..start]);
        let body_start = start + OPEN.len();
        let (body, next) = match rest[body_start..].find(CLOSE) {
            Some(end) => (
                &rest[body_start..body_start + end],
                &rest[body_start + end + CLOSE.len()..],
            ),
            None => (&rest[body_start..], ""),
        };
        let v: Value = serde_json::from_str(body.trim()).ok()?;
        calls.push(object_call(&v)?);
        rest = next;
    }
    content.push_str(rest);
    Some(Parsed {
        content: non_empty(&content),
        calls,
    })
}

fn mistral(text: &str) -> Option<Parsed> {
    let at = text.find("[TOOL_CALLS]")?;
    let body = text[at + "[TOOL_CALLS]".len()..].trim();
    let mut calls = Vec::new();
    if body.starts_with('[') {
        let mut de = serde_json::Deserializer::from_str(body).into_iter::<Value>();
        let v = de.next()?.ok()?;
        for c in v.as_array()? {
            calls.push(object_call(c)?);
        }
    } else {
        // Newer templates: `[TOOL_CALLS]name[ARGS]{...}`, repeated.
        for part in body.split("[TOOL_CALLS]") {
            let (name, args) = part.split_once("[ARGS]")?;
            let args: Value = serde_json::from_str(args.trim()).ok()?;
            calls.push(call(&json!(name.trim()), Some(&args))?);
        }
    }
    Some(Parsed {
        content: non_empty(&text[..at]),
        calls,
    })
}

fn llama3(text: &str) -> Option<Parsed> {
    let t = text.trim();
    let t = t.strip_prefix("<|python_tag|>").unwrap_or(t).trim();
    if !t.starts_with('{') {
        return None;
    }
    let mut calls = Vec::new();
    for piece in t.split(';') {
        let v: Value = serde_json::from_str(piece.trim()).ok()?;
        calls.push(object_call(&v)?);
    }
    Some(Parsed {
        content: None,
        calls,
    })
}

fn generic(text: &str) -> Option<Parsed> {
    let v: Value = serde_json::from_str(text.trim()).ok()?;
    if let Some(list) = v.get("tool_calls").and_then(Value::as_array) {
        let calls = list.iter().map(object_call).collect::<Option<Vec<_>>>()?;
        return Some(Parsed {
            content: None,
            calls,
        });
    }
    if let Some(c) = v.get("tool_call") {
        return Some(Parsed {
            content: None,
            calls: vec![object_call(c)?],
        });
    }
    if let Some(r) = v.get("response") {
        let content = match r {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        return Some(Parsed {
            content: Some(content),
            calls: Vec::new(),
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(p: &Parsed) -> Vec<(&str, &Value)> {
        p.calls
            .iter()
            .map(|c| (c.name.as_str(), &c.arguments))
            .collect()
    }

    #[test]
    fn families() {
        let p = parse(
            "Let me check.\n<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": 1}}\n</tool_call>\n<tool_call>\n{\"name\": \"g\", \"arguments\": \"{\\\"b\\\": 2}\"}\n</tool_call>",
            Family::Hermes,
        );
        assert_eq!(p.content.as_deref(), Some("Let me check."));
        assert_eq!(
            names(&p),
            vec![("f", &json!({"a": 1})), ("g", &json!({"b": 2}))]
        );
        assert!(p.calls[0].id.starts_with("call_"));
        assert_ne!(p.calls[0].id, p.calls[1].id);

        let p = parse(
            "[TOOL_CALLS][{\"name\": \"f\", \"arguments\": {}}]",
            Family::Mistral,
        );
        assert_eq!(names(&p), vec![("f", &json!({}))]);
        let p = parse("[TOOL_CALLS]f[ARGS]{\"x\": true}", Family::Mistral);
        assert_eq!(names(&p), vec![("f", &json!({"x": true}))]);

        let p = parse(
            "<|python_tag|>{\"name\": \"f\", \"parameters\": {\"q\": \"x\"}}",
            Family::Llama3,
        );
        assert_eq!(names(&p), vec![("f", &json!({"q": "x"}))]);

        let p = parse(
            "{\"tool_calls\": [{\"name\": \"f\", \"arguments\": {}}]}",
            Family::Generic,
        );
        assert_eq!(p.content, None);
        assert_eq!(names(&p), vec![("f", &json!({}))]);
        let p = parse("{\"response\": \"Hello\"}", Family::Generic);
        assert_eq!((p.content.as_deref(), p.calls.len()), (Some("Hello"), 0));

        // Not a call: the text as it is.
        for fam in [
            Family::Hermes,
            Family::Mistral,
            Family::Llama3,
            Family::Generic,
        ] {
            let p = parse("Just text {", fam);
            assert_eq!(
                (p.content.as_deref(), p.calls.len()),
                (Some("Just text {"), 0)
            );
        }
        let p = parse("<tool_call>\n{\"name\": \"f\", \"argu", Family::Hermes);
        assert_eq!(p.calls.len(), 0);
    }

    #[test]
    fn shapes() {
        let c = ToolCall {
            id: "call_1".into(),
            name: "f".into(),
            arguments: json!({"a": 1}),
        };
        assert_eq!(c.openai()["function"]["arguments"], "{\"a\":1}");
        assert_eq!(c.ollama()["function"]["arguments"]["a"], 1);
    }
}
