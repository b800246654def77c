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
use crate::generation::{
    Launch, PromptInput, finish_name, launch, new_id, token_piece, tokenize, unix_now,
};
use crate::state::{AppState, LoadedModel};
use crate::stream::{chunks, sse};

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
    reject_unsupported(
        req.response_format.as_ref(),
        req.tools.as_ref(),
        req.tool_choice.as_ref(),
        req.functions.as_ref(),
    )?;
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
    let prompt = tokenize(&model, PromptInput::Chat(messages)).await?;
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
                json!({
                    "index": i,
                    "message": {"role": "assistant", "content": c.text, "refusal": null},
                    "logprobs": lp,
                    "finish_reason": finish_name(c.finish),
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
    let body = chunks(
        runs,
        head,
        move |i, ev, out| match ev {
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
