//! Input adjustments between what API clients send and what templates expect, and the
//! probes that decide which adjustments a template needs (see the crate docs).

use serde_json::{Map, Value as Json, json};

use crate::{ChatTemplate, TemplateCaps, TemplateError};

/// Marker texts the probes look for in the output; unlikely to occur in any template.
const SYSTEM_MARKER: &str = "<<perch-system-probe-7f3a>>";
const CONTENT_MARKER: &str = "<<perch-content-probe-7f3a>>";

/// Probes what `tmpl` does with a system message and with string or typed content, by
/// rendering small conversations and looking for marker texts in the output. A probe that
/// fails to render counts as "not supported".
pub(crate) fn probe_caps(tmpl: &ChatTemplate) -> TemplateCaps {
    let probe = |messages: Json| -> Option<String> {
        tmpl.render_raw(messages, Json::Null, true, &Map::new(), None, "", "")
            .ok()
    };
    let supports_system_role = probe(json!([
        {"role": "system", "content": SYSTEM_MARKER},
        {"role": "user", "content": "User message"},
    ]))
    .is_some_and(|out| out.contains(SYSTEM_MARKER));
    let supports_string_content = probe(json!([{"role": "user", "content": CONTENT_MARKER}]))
        .is_some_and(|out| out.contains(CONTENT_MARKER));
    // A template that prints the whole list shows the marker too, but inside the list's
    // repr (`[{'type': 'text', 'text': '...'}]`): that is not typed-content support.
    let supports_typed_content = probe(json!([
        {"role": "user", "content": [{"type": "text", "text": CONTENT_MARKER}]}
    ]))
    .is_some_and(|out| out.contains(CONTENT_MARKER) && !out.contains("'type'"));
    TemplateCaps {
        supports_system_role,
        supports_string_content,
        supports_typed_content,
    }
}

/// Validates the messages and applies the adjustments `caps` calls for.
pub(crate) fn messages(input: &[Json], caps: &TemplateCaps) -> Result<Vec<Json>, TemplateError> {
    let only_string = caps.supports_string_content && !caps.supports_typed_content;
    let only_typed = !caps.supports_string_content && caps.supports_typed_content;
    let mut out = Vec::with_capacity(input.len());
    for (i, message) in input.iter().enumerate() {
        let Json::Object(obj) = message else {
            return Err(invalid(i, "is not a JSON object"));
        };
        let mut obj = obj.clone();
        match obj.get("role") {
            Some(Json::String(role)) if role == "developer" => {
                obj.insert("role".into(), Json::String("system".into()));
            }
            Some(Json::String(_)) => {}
            Some(_) => return Err(invalid(i, "has a `role` that is not a string")),
            None => return Err(invalid(i, "has no `role`")),
        }
        if let Some(content) = obj.get_mut("content") {
            normalize_content(content, only_string, only_typed).map_err(|e| invalid(i, &e))?;
        }
        if let Some(calls) = obj.get_mut("tool_calls") {
            parse_tool_call_arguments(calls).map_err(|e| invalid(i, &e))?;
        }
        out.push(Json::Object(obj));
    }
    if !caps.supports_system_role {
        merge_leading_system(&mut out);
    }
    Ok(out)
}

fn invalid(index: usize, what: &str) -> TemplateError {
    TemplateError::InvalidInput(format!("message {index} {what}"))
}

fn normalize_content(
    content: &mut Json,
    only_string: bool,
    only_typed: bool,
) -> Result<(), String> {
    match content {
        Json::Null => {}
        Json::String(s) => {
            if only_typed {
                *content = json!([{"type": "text", "text": s}]);
            }
        }
        Json::Array(parts) => {
            let mut texts = Vec::with_capacity(parts.len());
            for (j, part) in parts.iter().enumerate() {
                match (part.get("type").and_then(Json::as_str), part.get("text")) {
                    (Some("text"), Some(Json::String(text))) => texts.push(text.as_str()),
                    (Some("text"), _) => {
                        return Err(format!(
                            "has content part {j} of type text without a string `text`"
                        ));
                    }
                    (Some(other), _) => {
                        return Err(format!(
                            "has content part {j} of unsupported type {other:?}"
                        ));
                    }
                    (None, _) => return Err(format!("has content part {j} without a `type`")),
                }
            }
            if only_string {
                *content = Json::String(texts.join("\n"));
            }
        }
        _ => return Err("has `content` that is neither a string, a list of parts nor null".into()),
    }
    Ok(())
}

/// OpenAI sends tool-call arguments as a JSON string; templates expect an object.
fn parse_tool_call_arguments(calls: &mut Json) -> Result<(), String> {
    let Json::Array(calls) = calls else {
        return Err("has `tool_calls` that is not a list".into());
    };
    for call in calls.iter_mut() {
        let Some(function) = call.get_mut("function") else {
            continue;
        };
        let Some(args) = function.get_mut("arguments") else {
            continue;
        };
        if let Json::String(text) = args {
            if let Ok(parsed @ Json::Object(_)) = serde_json::from_str::<Json>(text) {
                *args = parsed;
            }
        }
    }
    Ok(())
}

/// llama.cpp's workaround for templates without a system role: the system text goes in
/// front of the next message's text, separated by a newline; alone, it is dropped.
fn merge_leading_system(messages: &mut Vec<Json>) {
    let is_system = messages
        .first()
        .is_some_and(|m| m.get("role").and_then(Json::as_str) == Some("system"));
    if !is_system {
        return;
    }
    let system = messages.remove(0);
    let Some(next) = messages.first_mut() else {
        tracing::warn!("dropping the system message: the chat template has no system role");
        return;
    };
    let system_text = content_text(system.get("content"));
    match next.get_mut("content") {
        Some(Json::Array(parts)) => {
            parts.insert(0, json!({"type": "text", "text": system_text}));
        }
        Some(content) => {
            let text = content_text(Some(content));
            *content = Json::String(format!("{system_text}\n{text}"));
        }
        None => {
            next["content"] = Json::String(system_text);
        }
    }
}

fn content_text(content: Option<&Json>) -> String {
    match content {
        Some(Json::String(s)) => s.clone(),
        Some(Json::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Json::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}
