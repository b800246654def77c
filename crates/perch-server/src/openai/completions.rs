//! `POST /v1/completions` (the legacy text completion API).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use futures_util::future::try_join_all;
use perch_engine::engine::Event;
use serde_json::{Map, Value, json};

use super::types::{CompletionRequest, PromptField, Stop, check_bias};
use super::{FINGERPRINT, usage_json};
use crate::error::{ApiError, ApiJson};
use crate::generation::{
    Completed, Launch, PromptInput, Running, TokenOut, finish_name, launch, new_id, token_piece,
    tokenize, unix_now,
};
use crate::state::{AppState, LoadedModel};
use crate::stream::{chunks, sse};

/// Legacy `logprobs` object for `tokens`, with text offsets counted from `offset`.
fn legacy_logprobs(model: &LoadedModel, tokens: &[TokenOut], mut offset: usize) -> Value {
    let mut toks = Vec::new();
    let mut lps = Vec::new();
    let mut tops = Vec::new();
    let mut offsets = Vec::new();
    for t in tokens {
        let Some(lp) = &t.logprobs else { continue };
        let (piece, _) = token_piece(model, lp.chosen.token);
        offsets.push(offset);
        offset += t.text.len();
        toks.push(json!(piece));
        lps.push(json!(lp.chosen.logprob));
        let mut top = Map::new();
        for alt in &lp.top {
            top.insert(token_piece(model, alt.token).0, json!(alt.logprob));
        }
        tops.push(Value::Object(top));
    }
    json!({"tokens": toks, "token_logprobs": lps, "top_logprobs": tops, "text_offset": offsets})
}

/// `POST /v1/completions`.
pub async fn completions(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<CompletionRequest>,
) -> Result<Response, ApiError> {
    // A bad schema or grammar is a 400 before any work.
    let grammar = crate::structured::from_openai(req.response_format.as_ref(), &req.guided)?
        .map(|f| f.compile())
        .transpose()?;
    if req.suffix.as_deref().is_some_and(|s| !s.is_empty()) {
        return Err(ApiError::unsupported(
            "suffix",
            "fill-in-the-middle is not built yet",
        ));
    }
    let spec = state.registry.spec(req.model.as_deref())?;
    let default_stop = spec.defaults.stop().map(Stop::Many);
    let mut knobs = req
        .knobs()
        .with_defaults(&spec.defaults, default_stop.as_ref());
    // OpenAI's default for completions.
    knobs.max_tokens = knobs.max_tokens.or(Some((16, "max_tokens")));
    let v = knobs.validate(state.config.max_n)?;
    if let Some(b) = req.best_of
        && b != 1
        && b != v.n as i64
    {
        return Err(ApiError::unsupported(
            "best_of",
            "server-side best-of is not built; use n",
        ));
    }
    let logprobs = match req.logprobs {
        None => None,
        Some(k) if (0..=5).contains(&k) => Some(k as usize),
        Some(k) => {
            return Err(ApiError::invalid_param(
                "logprobs",
                format!("`logprobs` must be between 0 and 5, got {k}"),
            ));
        }
    };
    let echo = req.echo == Some(true);
    let prompts: Vec<PromptInput> = match &req.prompt {
        PromptField::Text(t) => vec![PromptInput::Text(t.clone())],
        PromptField::Texts(ts) => ts.iter().cloned().map(PromptInput::Text).collect(),
        PromptField::Tokens(ids) => vec![PromptInput::Tokens(ids.clone())],
        PromptField::TokenLists(l) => l.iter().cloned().map(PromptInput::Tokens).collect(),
    };
    if prompts.is_empty() || prompts.len() * v.n > state.config.max_n {
        return Err(ApiError::invalid_param(
            "prompt",
            format!(
                "give between 1 and {} prompts × choices per request",
                state.config.max_n
            ),
        ));
    }
    let model = state.registry.get(Some(&spec.name)).await?;
    check_bias(&v.sampling, model.chat.model().config().n_vocab)?;
    let mut echoes = Vec::new();
    let mut runs: Vec<Running> = Vec::new();
    for p in prompts {
        let echo_text = match (&p, echo) {
            (PromptInput::Text(t), true) => t.clone(),
            (PromptInput::Tokens(ids), true) => model
                .chat
                .tokenizer()
                .decode(ids, false)
                .map_err(|e| ApiError::invalid_param("prompt", e.to_string()))?,
            _ => String::new(),
        };
        let ids = tokenize(&model, p).await?;
        let l = Launch {
            sampling: v.sampling.clone(),
            max_tokens: v.max_tokens,
            stop: v.stop.clone(),
            logprobs,
            n: v.n,
            grammar: grammar.clone(),
            ignore_eos: req.ignore_eos,
        };
        runs.extend(launch(&state, &model, &ids, &l)?);
        echoes.extend(std::iter::repeat_n(echo_text, v.n));
    }
    let id = new_id("cmpl-");
    let created = unix_now();
    if req.stream != Some(true) {
        let done: Vec<Completed> = try_join_all(runs.into_iter().map(|r| r.collect())).await?;
        let choices: Vec<Value> = done
            .iter()
            .zip(&echoes)
            .enumerate()
            .map(|(i, (c, echo))| {
                json!({
                    "index": i,
                    "text": format!("{echo}{}", c.text),
                    "logprobs": logprobs.map(|_| legacy_logprobs(&model, &c.tokens, echo.len())),
                    "finish_reason": finish_name(c.finish),
                })
            })
            .collect();
        // Each distinct prompt counts once.
        let prompt: usize = done
            .iter()
            .step_by(v.n)
            .map(|c| c.usage.prompt_tokens)
            .sum();
        let cached: usize = done
            .iter()
            .step_by(v.n)
            .map(|c| c.usage.cached_tokens)
            .sum();
        let completion: usize = done.iter().map(|c| c.usage.completion_tokens).sum();
        return Ok(Json(json!({
            "id": id,
            "object": "text_completion",
            "created": created,
            "model": model.name,
            "system_fingerprint": FINGERPRINT,
            "choices": choices,
            "usage": usage_json(prompt, cached, completion),
        }))
        .into_response());
    }

    let include_usage = req
        .stream_options
        .as_ref()
        .and_then(|o| o.include_usage)
        .unwrap_or(false);
    let chunk = {
        let (id, name) = (id.clone(), model.name.clone());
        move |choice: Value, usage: Option<Value>| {
            let mut c = json!({
                "id": id,
                "object": "text_completion",
                "created": created,
                "model": name,
                "system_fingerprint": FINGERPRINT,
                "choices": choice,
            });
            if include_usage {
                c["usage"] = usage.unwrap_or(Value::Null);
            }
            c.to_string()
        }
    };
    let head: Vec<String> = echoes
        .iter()
        .enumerate()
        .filter(|(_, e)| !e.is_empty())
        .map(|(i, e)| {
            chunk(
                json!([{"index": i, "text": e, "logprobs": null, "finish_reason": null}]),
                None,
            )
        })
        .collect();
    let n_choices = v.n;
    let totals = Arc::new(std::sync::Mutex::new((0usize, 0usize, 0usize)));
    let totals_end = totals.clone();
    let chunk_end = chunk.clone();
    let m = model.clone();
    let body = chunks(
        runs,
        head,
        move |i, ev, out| match ev {
            Event::Token {
                id,
                text,
                logprobs: lp,
            } => {
                if text.is_empty() && lp.is_none() {
                    return;
                }
                let lp = lp.map(|lp| {
                    legacy_logprobs(
                        &m,
                        &[TokenOut {
                            id,
                            text: text.clone(),
                            logprobs: Some(lp),
                        }],
                        0,
                    )
                });
                out.push_back(chunk(
                    json!([{"index": i, "text": text, "logprobs": lp, "finish_reason": null}]),
                    None,
                ));
            }
            Event::Done {
                text,
                finish,
                usage,
                ..
            } => {
                out.push_back(chunk(
                    json!([{
                        "index": i,
                        "text": text,
                        "logprobs": null,
                        "finish_reason": finish_name(finish),
                    }]),
                    None,
                ));
                let mut t = totals.lock().unwrap_or_else(|e| e.into_inner());
                if i % n_choices == 0 {
                    t.0 += usage.prompt_tokens;
                    t.1 += usage.cached_tokens;
                }
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
                out.push_back(chunk_end(json!([]), Some(usage_json(t.0, t.1, t.2))));
            }
            out.push_back("[DONE]".to_string());
        },
    );
    Ok(sse(body))
}
