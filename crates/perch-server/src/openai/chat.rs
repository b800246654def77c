//! `POST /v1/chat/completions`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use futures_util::future::try_join_all;
use perch_engine::engine::Event;
use perch_engine::sampling::Logprobs;
use serde_json::{Value, json};

use super::types::{ChatRequest, Stop, check_bias, messages_to_template, reject_unsupported};
use super::{FINGERPRINT, usage, usage_json};
use crate::error::{ApiError, ApiJson};
use crate::generation::{Launch, finish_name, launch, new_id, token_piece, tokenize, unix_now};
use crate::state::{AppState, LoadedModel};
use crate::stream::{chunks, sse};
use crate::structured::{self, add_to_system};
use crate::tools::parse::{Parsed, parse};
use crate::tools::{self, ToolPlan};

/// One token's entry in a chat `logprobs.content` list.
fn logprob_entry(model: &LoadedModel, lp: &Logprobs) -> Value {
    let (token, bytes) = token_piece(model, lp.chosen.token);
    let top: Vec<Value> = lp
        .top
        .iter()
        .map(|t| {
            let (tok, b) = token_piece(model, t.token);
            json!({"token": tok, "logprob": t.logprob, "bytes": b})
        })
        .collect();
    json!({"token": token, "logprob": lp.chosen.logprob, "bytes": bytes, "top_logprobs": top})
}

/// `POST /v1/chat/completions`.
pub async fn chat_completions(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<ChatRequest>,
) -> Result<Response, ApiError> {
    reject_unsupported(req.functions.as_ref())?;
    let format = structured::from_openai(req.response_format.as_ref(), &req.guided)?;
    // A bad schema or grammar is a 400 before any work.
    let format_grammar = format.as_ref().map(|f| f.compile()).transpose()?;
    let spec = state.registry.spec(req.model.as_deref())?;
    let default_stop = spec.defaults.stop().map(Stop::Many);
    let v = req
        .knobs()
        .with_defaults(&spec.defaults, default_stop.as_ref())
        .validate(state.config.max_n)?;
    let logprobs = req.logprobs()?;
    let mut messages = messages_to_template(&req.messages)?;
    spec.defaults.add_system(&mut messages);
    let model = state.registry.get(Some(&spec.name)).await?;
    check_bias(&v.sampling, model.chat.model().config().n_vocab)?;
    if let Some(user) = &req.user {
        tracing::debug!(user = %user, "end user");
    }
    let tools = tools::plan(
        req.tools.as_ref(),
        req.tool_choice.as_ref(),
        req.parallel_tool_calls,
        model.chat.template().source(),
    )?;
    if tools.is_some() && format.is_some() {
        return Err(ApiError::invalid_param(
            "response_format",
            "`response_format` and other output constraints cannot be combined with `tools`",
        ));
    }
    if let Some(text) = format.as_ref().and_then(|f| f.instructions()) {
        add_to_system(&mut messages, &text);
    }
    let grammar = match &tools {
        Some(t) => t.grammar()?,
        None => format_grammar,
    };
    let input = tools::prompt_input(tools.as_ref(), messages);
    let prompt = tokenize(&model, input).await?;
    let runs = launch(
        &state,
        &model,
        &prompt,
        &Launch {
            sampling: v.sampling,
            max_tokens: v.max_tokens,
            stop: v.stop,
            logprobs,
            n: v.n,
            grammar,
            ignore_eos: req.ignore_eos,
        },
    )?;
    let id = new_id("chatcmpl-");
    let created = unix_now();
    if req.stream != Some(true) {
        let done = try_join_all(runs.into_iter().map(|r| r.collect())).await?;
        let choices: Vec<Value> = done
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let lp = logprobs.map(|_| {
                    let content: Vec<Value> = c
                        .tokens
                        .iter()
                        .filter_map(|t| t.logprobs.as_ref())
                        .map(|lp| logprob_entry(&model, lp))
                        .collect();
                    json!({"content": content})
                });
                let (message, finish) = match &tools {
                    None => (
                        json!({"role": "assistant", "content": c.text, "refusal": null}),
                        finish_name(c.finish),
                    ),
                    Some(t) => {
                        let parsed = parse(&c.text, t.family);
                        tool_message(&parsed, finish_name(c.finish))
                    }
                };
                json!({
                    "index": i,
                    "message": message,
                    "logprobs": lp,
                    "finish_reason": finish,
                })
            })
            .collect();
        return Ok(Json(json!({
            "id": id,
            "object": "chat.completion",
            "created": created,
            "model": model.name,
            "system_fingerprint": FINGERPRINT,
            "choices": choices,
            "usage": usage(&done),
        }))
        .into_response());
    }

    let include_usage = req
        .stream_options
        .as_ref()
        .and_then(|o| o.include_usage)
        .unwrap_or(false);
    let n = runs.len();
    let chunk = {
        let (id, name) = (id.clone(), model.name.clone());
        move |choice: Value| {
            let mut c = json!({
                "id": id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": name,
                "system_fingerprint": FINGERPRINT,
                "choices": [choice],
            });
            if include_usage {
                c["usage"] = Value::Null;
            }
            c.to_string()
        }
    };
    let head: Vec<String> = (0..n)
        .map(|i| {
            chunk(json!({
                "index": i,
                "delta": {"role": "assistant", "content": ""},
                "logprobs": null,
                "finish_reason": null,
            }))
        })
        .collect();
    let totals = Arc::new(std::sync::Mutex::new((0usize, 0usize, 0usize)));
    let totals_end = totals.clone();
    let (id_end, name_end) = (id.clone(), model.name.clone());
    let m = model.clone();
    let mut held: Vec<String> = vec![String::new(); n];
    let body = chunks(
        runs,
        head,
        move |i, ev, out| match ev {
            Event::Token { text, .. } if tools.is_some() => held[i].push_str(&text),
            Event::Done {
                text,
                finish,
                usage,
                ..
            } if tools.is_some() => {
                held[i].push_str(&text);
                let t: &ToolPlan = tools.as_ref().expect("tool mode");
                let parsed = parse(&held[i], t.family);
                let (deltas, finish) = tool_deltas(&parsed, finish_name(finish));
                for d in deltas {
                    out.push_back(chunk(json!({
                        "index": i,
                        "delta": d,
                        "logprobs": null,
                        "finish_reason": null,
                    })));
                }
                out.push_back(chunk(json!({
                    "index": i,
                    "delta": {},
                    "logprobs": null,
                    "finish_reason": finish,
                })));
                let mut t = totals.lock().unwrap_or_else(|e| e.into_inner());
                t.0 = usage.prompt_tokens;
                t.1 = usage.cached_tokens;
                t.2 += usage.completion_tokens;
            }
            Event::Token {
                text, logprobs: lp, ..
            } => {
                if text.is_empty() && lp.is_none() {
                    return;
                }
                let lp = lp.map(|lp| json!({"content": [logprob_entry(&m, &lp)]}));
                out.push_back(chunk(json!({
                    "index": i,
                    "delta": {"content": text},
                    "logprobs": lp,
                    "finish_reason": null,
                })));
            }
            Event::Done {
                text,
                finish,
                usage,
                ..
            } => {
                if !text.is_empty() {
                    out.push_back(chunk(json!({
                        "index": i,
                        "delta": {"content": text},
                        "logprobs": null,
                        "finish_reason": null,
                    })));
                }
                out.push_back(chunk(json!({
                    "index": i,
                    "delta": {},
                    "logprobs": null,
                    "finish_reason": finish_name(finish),
                })));
                let mut t = totals.lock().unwrap_or_else(|e| e.into_inner());
                t.0 = usage.prompt_tokens;
                t.1 = usage.cached_tokens;
                t.2 += usage.completion_tokens;
            }
            Event::Error(e) => {
                tracing::error!(error = %e, "generation failed mid-stream");
                out.push_back(ApiError::internal(e).body().to_string());
            }
        },
        move |out| {
            if include_usage {
                let t = *totals_end.lock().unwrap_or_else(|e| e.into_inner());
                out.push_back(
                    json!({
                        "id": id_end,
                        "object": "chat.completion.chunk",
                        "created": created,
                        "model": name_end,
                        "system_fingerprint": FINGERPRINT,
                        "choices": [],
                        "usage": usage_json(t.0, t.1, t.2),
                    })
                    .to_string(),
                );
            }
            out.push_back("[DONE]".to_string());
        },
    );
    Ok(sse(body))
}

/// The assistant message of a tool-enabled answer, and its finish reason (`tool_calls`
/// when the model called tools and was not cut off).
fn tool_message(p: &Parsed, finish: &'static str) -> (Value, &'static str) {
    if p.calls.is_empty() {
        return (
            json!({"role": "assistant", "content": p.content.clone().unwrap_or_default(), "refusal": null}),
            finish,
        );
    }
    let calls: Vec<Value> = p.calls.iter().map(|c| c.openai()).collect();
    (
        json!({"role": "assistant", "content": p.content, "refusal": null, "tool_calls": calls}),
        if finish == "stop" {
            "tool_calls"
        } else {
            finish
        },
    )
}

/// Bytes of arguments per streamed fragment.
const ARGUMENT_FRAGMENT: usize = 24;

/// The streamed deltas of a tool-enabled answer, in OpenAI's shape: any content, then per
/// call one delta with its index, id, type, name and empty arguments, then the arguments
/// in fragments; and the finish reason.
fn tool_deltas(p: &Parsed, finish: &'static str) -> (Vec<Value>, &'static str) {
    let mut out = Vec::new();
    if let Some(c) = p.content.as_ref().filter(|c| !c.is_empty()) {
        out.push(json!({"content": c}));
    }
    for (k, c) in p.calls.iter().enumerate() {
        out.push(json!({"tool_calls": [{
            "index": k,
            "id": c.id,
            "type": "function",
            "function": {"name": c.name, "arguments": ""},
        }]}));
        let args = c.arguments.to_string();
        let mut rest = args.as_str();
        while !rest.is_empty() {
            let mut cut = rest.len().min(ARGUMENT_FRAGMENT);
            while !rest.is_char_boundary(cut) {
                cut += 1;
            }
            out.push(
                json!({"tool_calls": [{"index": k, "function": {"arguments": &rest[..cut]}}]}),
            );
            rest = &rest[cut..];
        }
    }
    let finish = if !p.calls.is_empty() && finish == "stop" {
        "tool_calls"
    } else {
        finish
    };
    (out, finish)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::parse::ToolCall;

    #[test]
    fn tool_call_deltas_rebuild_the_arguments() {
        let p = Parsed {
            content: None,
            calls: vec![ToolCall {
                id: "call_1".into(),
                name: "get_weather".into(),
                arguments: json!({"city": "Zürich, Switzerland", "unit": "celsius", "days": 3}),
            }],
        };
        let (d, finish) = tool_deltas(&p, "stop");
        assert_eq!(finish, "tool_calls");
        assert_eq!(d[0]["tool_calls"][0]["id"], "call_1");
        assert_eq!(d[0]["tool_calls"][0]["function"]["name"], "get_weather");
        let args: String = d[1..]
            .iter()
            .map(|x| {
                x["tool_calls"][0]["function"]["arguments"]
                    .as_str()
                    .unwrap()
            })
            .collect();
        assert_eq!(
            serde_json::from_str::<Value>(&args).unwrap(),
            p.calls[0].arguments
        );
        assert!(d.len() > 2);
        let (m, f) = tool_message(&p, "length");
        assert_eq!(
            (m["tool_calls"][0]["type"].as_str(), f),
            (Some("function"), "length")
        );
    }
}
