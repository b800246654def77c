//! Tool calling: the request's tools and tool choice, the call format of the model's
//! template family, the prompt (tools passed to the template, or described in the system
//! message when the template has no tool support), the grammar that forces a call when
//! `tool_choice` is `required` or names a function, and the parser that turns the model's
//! output into tool calls ([`parse`]).
//!
//! Families, recognized from the chat template's text:
//!
//! | family  | template mentions        | a call is written as                                        |
//! |---------|--------------------------|-------------------------------------------------------------|
//! | Hermes  | `<tool_call>`            | `<tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>` (Qwen 2.5/3, Hermes) |
//! | Llama 3 | `<\|python_tag\|>`, `ipython` | `{"name": ..., "parameters": {...}}`                        |
//! | Mistral | `[TOOL_CALLS]`           | `[TOOL_CALLS][{"name": ..., "arguments": {...}}]`           |
//! | generic | (no tool support)        | `{"tool_calls": [{"name": ..., "arguments": {...}}]}` or `{"response": "..."}` |
//!
//! The generic format is llama.cpp's for templates without tool support (SmolLM2's among
//! them): the tools and the format are described in the system message, and the output is
//! always constrained to one of the two JSON shapes (with `tool_choice: required` or a named
//! function, to the first).

pub mod parse;

use perch_grammar::{Grammar, Piece};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::structured::grammar_error;

/// Most tool calls one answer may hold when parallel calls are allowed.
pub const MAX_PARALLEL_CALLS: u32 = 8;

/// One function the model may call.
#[derive(Debug, Clone, PartialEq)]
pub struct Tool {
    /// Its name.
    pub name: String,
    /// What it does.
    pub description: Option<String>,
    /// JSON schema of its arguments.
    pub parameters: Value,
    /// The OpenAI-shaped definition, for the template.
    pub definition: Value,
}

/// `tool_choice`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    /// The model decides.
    Auto,
    /// No calls.
    None,
    /// At least one call.
    Required,
    /// A call of this function.
    Named(String),
}

/// How a template family writes tool calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `<tool_call>` JSON `</tool_call>` (Hermes, Qwen).
    Hermes,
    /// A bare JSON object with `name` and `parameters` (Llama 3.1+).
    Llama3,
    /// `[TOOL_CALLS]` and a JSON array (Mistral).
    Mistral,
    /// llama.cpp's generic JSON format, described in the system message.
    Generic,
}

impl Family {
    /// The family of a chat template.
    pub fn of_template(source: &str) -> Family {
        if !source.contains("tools") && !source.contains("tool_calls") {
            return Family::Generic;
        }
        if source.contains("<tool_call>") {
            Family::Hermes
        } else if source.contains("[TOOL_CALLS]") {
            Family::Mistral
        } else if source.contains("<|python_tag|>") || source.contains("ipython") {
            Family::Llama3
        } else {
            Family::Generic
        }
    }

    /// Whether the template itself renders the tools (else they go in the system message).
    pub fn template_renders_tools(self) -> bool {
        self != Family::Generic
    }
}

/// The tools part of a request, validated.
#[derive(Debug, Clone)]
pub struct ToolPlan {
    /// The tools.
    pub tools: Vec<Tool>,
    /// What the model must do.
    pub choice: ToolChoice,
    /// Several calls per answer.
    pub parallel: bool,
    /// The template family.
    pub family: Family,
}

/// Parse OpenAI's `tools`, `tool_choice` and `parallel_tool_calls` (Ollama's `tools` have
/// the same shape). `None` when no tools are in play (none given, or `tool_choice: none`).
pub fn plan(
    tools: Option<&Value>,
    tool_choice: Option<&Value>,
    parallel: Option<bool>,
    template_source: &str,
) -> Result<Option<ToolPlan>, ApiError> {
    let tools = parse_tools(tools)?;
    let choice = parse_choice(tool_choice)?;
    if tools.is_empty() {
        return match choice {
            ToolChoice::Auto | ToolChoice::None => Ok(None),
            _ => Err(ApiError::invalid_param(
                "tool_choice",
                "`tool_choice` requires `tools`",
            )),
        };
    }
    if let ToolChoice::Named(n) = &choice
        && !tools.iter().any(|t| &t.name == n)
    {
        return Err(ApiError::invalid_param(
            "tool_choice",
            format!("`tool_choice` names `{n}`, which is not among the tools"),
        ));
    }
    if choice == ToolChoice::None {
        return Ok(None);
    }
    let plan = ToolPlan {
        tools,
        choice,
        parallel: parallel.unwrap_or(true),
        family: Family::of_template(template_source),
    };
    // Compile the call grammar now so a bad parameter schema is a 400 before any work.
    plan.grammar()?;
    Ok(Some(plan))
}

fn parse_tools(tools: Option<&Value>) -> Result<Vec<Tool>, ApiError> {
    let Some(v) = tools.filter(|v| !v.is_null()) else {
        return Ok(Vec::new());
    };
    let list = v
        .as_array()
        .ok_or_else(|| ApiError::invalid_param("tools", "`tools` must be an array"))?;
    let mut out: Vec<Tool> = Vec::with_capacity(list.len());
    for (i, t) in list.iter().enumerate() {
        let p = |f: &str| format!("tools[{i}].{f}");
        let kind = t.get("type").and_then(Value::as_str).unwrap_or("function");
        if kind != "function" {
            return Err(ApiError::invalid_param(
                p("type"),
                format!("`tools[{i}].type` must be `function`, got `{kind}`"),
            ));
        }
        let f = t.get("function").ok_or_else(|| {
            ApiError::invalid_param(p("function"), format!("`tools[{i}].function` is required"))
        })?;
        let name = f
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| {
                ApiError::invalid_param(
                    p("function.name"),
                    format!("`tools[{i}].function.name` must be a non-empty string"),
                )
            })?;
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
            || name.len() > 64
        {
            return Err(ApiError::invalid_param(
                p("function.name"),
                format!(
                    "`tools[{i}].function.name` must be letters, digits, `_`, `-` or `.`, at most 64, got `{name}`"
                ),
            ));
        }
        if out.iter().any(|t| t.name == name) {
            return Err(ApiError::invalid_param(
                p("function.name"),
                format!("two tools are named `{name}`"),
            ));
        }
        let parameters = match f.get("parameters") {
            None | Some(Value::Null) => json!({"type": "object", "properties": {}}),
            Some(v @ Value::Object(_)) => v.clone(),
            Some(_) => {
                return Err(ApiError::invalid_param(
                    p("function.parameters"),
                    format!("`tools[{i}].function.parameters` must be a JSON schema object"),
                ));
            }
        };
        Grammar::from_json_schema(&parameters)
            .map_err(|e| grammar_error(&p("function.parameters"), e))?;
        out.push(Tool {
            name: name.to_string(),
            description: f
                .get("description")
                .and_then(Value::as_str)
                .map(str::to_string),
            parameters: parameters.clone(),
            definition: json!({"type": "function", "function": {
                "name": name,
                "description": f.get("description").cloned().unwrap_or(Value::Null),
                "parameters": parameters,
            }}),
        });
    }
    Ok(out)
}

fn parse_choice(v: Option<&Value>) -> Result<ToolChoice, ApiError> {
    let bad = || {
        ApiError::invalid_param(
            "tool_choice",
            "`tool_choice` must be `auto`, `none`, `required` or {\"type\": \"function\", \"function\": {\"name\": ...}}",
        )
    };
    Ok(match v {
        None | Some(Value::Null) => ToolChoice::Auto,
        Some(Value::String(s)) => match s.as_str() {
            "auto" => ToolChoice::Auto,
            "none" => ToolChoice::None,
            "required" | "any" => ToolChoice::Required,
            _ => return Err(bad()),
        },
        Some(Value::Object(o)) => {
            let name = o
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .ok_or_else(bad)?;
            ToolChoice::Named(name.to_string())
        }
        Some(_) => return Err(bad()),
    })
}

/// `#`-references inside a function's parameters, moved under `$defs/<key>` of an enclosing
/// schema so they still resolve.
fn rebase_refs(v: &Value, key: &str) -> Value {
    match v {
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| {
                    let x = match (k.as_str(), x) {
                        ("$ref", Value::String(r)) if r.starts_with('#') => {
                            Value::String(format!("#/$defs/{key}{}", &r[1..]))
                        }
                        _ => rebase_refs(x, key),
                    };
                    (k.clone(), x)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(|x| rebase_refs(x, key)).collect()),
        other => other.clone(),
    }
}

impl ToolPlan {
    /// The tools the model may call now (one when `tool_choice` names it).
    fn callable(&self) -> Vec<&Tool> {
        match &self.choice {
            ToolChoice::Named(n) => self.tools.iter().filter(|t| &t.name == n).collect(),
            _ => self.tools.iter().collect(),
        }
    }

    /// Whether a call is forced.
    pub fn forced(&self) -> bool {
        matches!(self.choice, ToolChoice::Required | ToolChoice::Named(_))
    }

    /// Schema of one call `{"name": <one of the tools>, <args_key>: <its parameters>}`.
    fn call_schema(&self, args_key: &str) -> Value {
        let mut defs = serde_json::Map::new();
        let alts: Vec<Value> = self
            .callable()
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let key = format!("tool{i}");
                defs.insert(key.clone(), rebase_refs(&t.parameters, &key));
                json!({
                    "type": "object",
                    "properties": {
                        "name": {"const": t.name},
                        args_key: {"$ref": format!("#/$defs/{key}")},
                    },
                    "required": ["name", args_key],
                })
            })
            .collect();
        json!({"anyOf": alts, "$defs": defs})
    }

    fn max_calls(&self) -> u32 {
        if self.parallel { MAX_PARALLEL_CALLS } else { 1 }
    }

    /// The generic format's schema: tool calls, or (unless forced) a plain response.
    fn generic_schema(&self) -> Value {
        let call = self.call_schema("arguments");
        let defs = call["$defs"].clone();
        let calls = json!({
            "type": "object",
            "properties": {"tool_calls": {
                "type": "array",
                "items": {"anyOf": call["anyOf"]},
                "minItems": 1,
                "maxItems": self.max_calls(),
            }},
            "required": ["tool_calls"],
        });
        if self.forced() {
            let mut s = calls;
            s["$defs"] = defs;
            s
        } else {
            json!({
                "anyOf": [
                    calls,
                    {"type": "object", "properties": {"response": {"type": "string"}}, "required": ["response"]},
                ],
                "$defs": defs,
            })
        }
    }

    /// The grammar the output must follow: always for the generic format, and for the others
    /// when a call is forced (with `auto` their output is free text that may hold calls).
    pub fn grammar(&self) -> Result<Option<Grammar>, ApiError> {
        let g = match self.family {
            Family::Generic => Grammar::from_json_schema(&self.generic_schema()),
            _ if !self.forced() => return Ok(None),
            Family::Hermes => Grammar::from_pieces(
                &[
                    Piece::Text("<tool_call>\n".into()),
                    Piece::Json(self.call_schema("arguments")),
                    Piece::Text("\n</tool_call>".into()),
                ],
                1,
                Some(self.max_calls()),
                "\n",
            ),
            Family::Llama3 => Grammar::from_pieces(
                &[Piece::Json(self.call_schema("parameters"))],
                1,
                Some(1),
                "",
            ),
            Family::Mistral => {
                let call = self.call_schema("arguments");
                let array = json!({
                    "type": "array",
                    "items": {"anyOf": call["anyOf"]},
                    "minItems": 1,
                    "maxItems": self.max_calls(),
                    "$defs": call["$defs"],
                });
                Grammar::from_pieces(
                    &[Piece::Text("[TOOL_CALLS]".into()), Piece::Json(array)],
                    1,
                    Some(1),
                    "",
                )
            }
        };
        g.map(Some).map_err(|e| grammar_error("tools", e))
    }

    /// The tool definitions for the template, when it renders them.
    pub fn template_tools(&self) -> Option<Vec<Value>> {
        self.family
            .template_renders_tools()
            .then(|| self.tools.iter().map(|t| t.definition.clone()).collect())
    }

    /// Text for the system message: the tools and the answer format (generic family only;
    /// the other templates describe tools themselves).
    pub fn instructions(&self) -> Option<String> {
        if self.family != Family::Generic {
            return None;
        }
        let mut s = String::from("You can call these tools (JSON schemas of their arguments):\n");
        for t in &self.tools {
            s.push_str(&format!(
                "- {}: {}\n  arguments: {}\n",
                t.name,
                t.description.as_deref().unwrap_or(""),
                serde_json::to_string(&t.parameters).unwrap_or_default()
            ));
        }
        let call_example =
            r#"{"tool_calls": [{"name": "<tool name>", "arguments": {<arguments>}}]}"#;
        if self.forced() {
            s.push_str(&format!(
                "Respond by calling a tool, as JSON: {call_example}"
            ));
        } else {
            s.push_str(&format!(
                "To call tools, respond with JSON: {call_example}\nOtherwise respond with JSON: {{\"response\": \"<your answer>\"}}"
            ));
        }
        Some(s)
    }
}

/// The prompt for `messages` with `tools` (when any): the generic format's message
/// rewriting, the tool instructions in the system message, and the tool definitions passed
/// to the chat template when its family takes them.
pub fn prompt_input(
    tools: Option<&ToolPlan>,
    mut messages: Vec<Value>,
) -> crate::generation::PromptInput {
    use crate::generation::PromptInput;
    let Some(t) = tools else {
        return PromptInput::Chat(messages);
    };
    if t.family == Family::Generic {
        generic_messages(&mut messages);
    }
    if let Some(text) = t.instructions() {
        crate::structured::add_to_system(&mut messages, &text);
    }
    match t.template_tools() {
        Some(defs) => PromptInput::ChatTools(messages, defs),
        None => PromptInput::Chat(messages),
    }
}

/// Rewrite messages for the generic format, whose template knows nothing of tools: an
/// assistant message's calls become its content in the generic JSON, and a tool result is
/// shown as a `tool_response`.
pub fn generic_messages(messages: &mut [Value]) {
    for m in messages.iter_mut() {
        let role = m
            .get("role")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if role == "assistant"
            && let Some(calls) = m.get("tool_calls").and_then(Value::as_array).cloned()
        {
            let calls: Vec<Value> = calls
                .iter()
                .map(|c| {
                    let f = c.get("function").unwrap_or(c);
                    let args = match f.get("arguments") {
                        Some(Value::String(s)) => serde_json::from_str(s).unwrap_or(json!(s)),
                        Some(v) => v.clone(),
                        None => json!({}),
                    };
                    json!({"name": f.get("name").cloned().unwrap_or(Value::Null), "arguments": args})
                })
                .collect();
            m["content"] = Value::String(json!({"tool_calls": calls}).to_string());
            if let Some(o) = m.as_object_mut() {
                o.remove("tool_calls");
            }
        } else if role == "tool" {
            let content = m.get("content").cloned().unwrap_or(Value::Null);
            let content = match content {
                Value::Array(parts) => Value::String(
                    parts
                        .iter()
                        .filter_map(|p| p.get("text").and_then(Value::as_str))
                        .collect::<Vec<_>>()
                        .join("\n"),
                ),
                c => c,
            };
            let mut resp = json!({"content": content});
            if let Some(id) = m.get("tool_call_id") {
                resp["tool_call_id"] = id.clone();
            }
            if let Some(name) = m.get("name") {
                resp["name"] = name.clone();
            }
            m["content"] = Value::String(json!({"tool_response": resp}).to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weather() -> Value {
        json!([{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}}, "required": ["city"]}}}])
    }

    #[test]
    fn plans_and_grammars() {
        assert!(plan(None, None, None, "").unwrap().is_none());
        assert!(
            plan(Some(&weather()), Some(&json!("none")), None, "")
                .unwrap()
                .is_none()
        );
        let e = plan(
            Some(&weather()),
            Some(&json!({"type": "function", "function": {"name": "nope"}})),
            None,
            "",
        )
        .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("tool_choice"));
        let e = plan(Some(&json!([{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "not": {}}}}])), None, None, "")
            .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("tools[0].function.parameters"));
        assert!(e.message.contains("`not`"));

        let p = plan(
            Some(&weather()),
            Some(&json!("required")),
            Some(false),
            "{{ messages }}",
        )
        .unwrap()
        .unwrap();
        assert_eq!(p.family, Family::Generic);
        let g = p.grammar().unwrap().unwrap();
        assert!(g.accepts(
            r#"{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}]}"#
        ));
        assert!(!g.accepts(r#"{"response": "hi"}"#));
        assert!(!g.accepts(r#"{"tool_calls": [{"name": "get_weather", "arguments": {}}]}"#));
        let auto = plan(Some(&weather()), None, None, "").unwrap().unwrap();
        assert!(
            auto.grammar()
                .unwrap()
                .unwrap()
                .accepts(r#"{"response": "hi"}"#)
        );

        let hermes = "{% if tools %}<tools>{% endif %}<tool_call>";
        let p = plan(Some(&weather()), Some(&json!("required")), None, hermes)
            .unwrap()
            .unwrap();
        assert_eq!(p.family, Family::Hermes);
        let g = p.grammar().unwrap().unwrap();
        let call = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\", \"unit\": \"c\"}}\n</tool_call>";
        assert!(g.accepts(call));
        assert!(g.accepts(&format!("{call}\n{call}")));
        let p = plan(Some(&weather()), None, None, hermes).unwrap().unwrap();
        assert!(p.grammar().unwrap().is_none());
    }

    #[test]
    fn generic_history() {
        let mut m = vec![
            json!({"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{\"a\": 1}"}}]}),
            json!({"role": "tool", "tool_call_id": "c1", "content": "42"}),
        ];
        generic_messages(&mut m);
        let c: Value = serde_json::from_str(m[0]["content"].as_str().unwrap()).unwrap();
        assert_eq!(
            c,
            json!({"tool_calls": [{"name": "f", "arguments": {"a": 1}}]})
        );
        let t: Value = serde_json::from_str(m[1]["content"].as_str().unwrap()).unwrap();
        assert_eq!(t["tool_response"]["content"], "42");
    }
}
