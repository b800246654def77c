//! `POST /api/generate` and `POST /api/chat`.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use perch_engine::engine::{Event, Timings, Usage};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{KeepAlive, Options, reject, rfc3339};
use crate::error::{ApiError, Ollama, OllamaJson};
use crate::generation::{
    Launch, PromptInput, Running, finish_name, launch, submit_error, tokenize,
};
use crate::openai::types::{Knobs, Stop, check_bias};
use crate::state::{AppState, LoadedModel, ModelDefaults};
use crate::stream::{chunks, ndjson};
use crate::structured::{add_to_system, from_ollama};
use crate::tools::parse::parse;
use crate::tools::{self, Family};

/// `POST /api/generate` body.
#[derive(Debug, Deserialize)]
pub struct GenerateRequest {
    model: String,
    #[serde(default)]
    prompt: Option<String>,
    #[serde(default)]
    system: Option<String>,
    #[serde(default)]
    template: Option<String>,
    #[serde(default)]
    context: Option<Vec<u32>>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    raw: Option<bool>,
    #[serde(default)]
    options: Option<Options>,
    #[serde(default)]
    keep_alive: Option<KeepAlive>,
    #[serde(default)]
    format: Option<Value>,
    #[serde(default)]
    images: Option<Value>,
    #[serde(default)]
    suffix: Option<Value>,
    #[serde(default)]
    think: Option<Value>,
}

/// A chat message in Ollama's shape.
#[derive(Debug, Deserialize)]
pub struct ChatMessage {
    role: String,
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    images: Option<Value>,
    #[serde(default)]
    tool_calls: Option<Value>,
    #[serde(default)]
    tool_name: Option<String>,
}

/// `POST /api/chat` body.
#[derive(Debug, Deserialize)]
pub struct ChatRequest {
    model: String,
    #[serde(default)]
    messages: Vec<ChatMessage>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    options: Option<Options>,
    #[serde(default)]
    keep_alive: Option<KeepAlive>,
    #[serde(default)]
    format: Option<Value>,
    #[serde(default)]
    tools: Option<Value>,
    #[serde(default)]
    think: Option<Value>,
    #[serde(default)]
    template: Option<String>,
}

/// Render `messages` with a request's own template (an Ollama Go template or Jinja) instead of
/// the model's, and tokenize the prompt, off the runtime.
async fn tokenize_with(
    model: &Arc<LoadedModel>,
    template: String,
    messages: Vec<Value>,
) -> Result<Vec<u32>, ApiError> {
    let m = model.clone();
    tokio::task::spawn_blocking(move || {
        let t = m.chat.template().with_source(&template).map_err(|e| {
            ApiError::invalid_param("template", format!("the template cannot be used: {e}"))
        })?;
        let text = t
            .render(&perch_template::RenderInput {
                messages,
                add_generation_prompt: true,
                ..Default::default()
            })
            .map_err(|e| {
                ApiError::invalid_param(
                    "template",
                    format!("the template cannot render these messages: {e}"),
                )
            })?;
        m.chat
            .encode_rendered(&text, t.is_go())
            .map_err(|e| ApiError::invalid(format!("cannot tokenize the prompt: {e}")))
    })
    .await
    .map_err(ApiError::internal)?
}

/// Validated generation settings from `options`.
struct Plan {
    launch: Launch,
    num_ctx: Option<usize>,
}

fn plan(opts: Option<&Options>, defaults: &ModelDefaults) -> Result<Plan, ApiError> {
    let o = opts.cloned().unwrap_or_default().with_defaults(defaults);
    let stop = o.stop.map(Stop::Many);
    let v = Knobs {
        max_tokens: None,
        temperature: o.temperature,
        top_p: o.top_p,
        n: None,
        stop: stop.as_ref(),
        seed: o.seed,
        presence_penalty: o.presence_penalty,
        frequency_penalty: o.frequency_penalty,
        logit_bias: None,
        top_k: o.top_k,
        min_p: o.min_p,
        repeat_penalty: o.repeat_penalty,
    }
    .validate(1)?;
    let mut sampling = v.sampling;
    let max_tokens = match o.num_predict {
        None | Some(-1) | Some(-2) => None,
        Some(n) if n >= 1 => Some(n as usize),
        Some(n) => {
            return Err(ApiError::invalid_param(
                "options.num_predict",
                format!("`num_predict` must be positive, -1 or -2, got {n}"),
            ));
        }
    };
    let num_ctx = match o.num_ctx {
        None => None,
        Some(n) if n >= 1 => Some(n as usize),
        Some(n) => {
            return Err(ApiError::invalid_param(
                "options.num_ctx",
                format!("`num_ctx` must be positive, got {n}"),
            ));
        }
    };
    match o.repeat_last_n {
        None => {}
        // The whole context: set once the model is known.
        Some(-1) => sampling.penalty_last_n = usize::MAX,
        Some(n) if n >= 0 => sampling.penalty_last_n = n as usize,
        Some(n) => {
            return Err(ApiError::invalid_param(
                "options.repeat_last_n",
                format!("`repeat_last_n` must be -1 or more, got {n}"),
            ));
        }
    }
    Ok(Plan {
        launch: Launch {
            sampling,
            max_tokens,
            stop: v.stop,
            logprobs: None,
            n: 1,
            grammar: None,
            ignore_eos: false,
        },
        num_ctx,
    })
}

/// Cap the request to `num_ctx` when given: the prompt must fit it and generation stops at it.
fn fit(model: &LoadedModel, prompt: usize, p: &mut Plan) -> Result<(), ApiError> {
    let s = &mut p.launch.sampling;
    s.penalty_last_n = s.penalty_last_n.min(model.chat.n_ctx());
    let Some(ctx) = p.num_ctx else { return Ok(()) };
    let ctx = ctx.min(model.chat.n_ctx());
    if prompt >= ctx {
        return Err(ApiError::context_overflow(prompt, ctx));
    }
    let room = ctx - prompt;
    p.launch.max_tokens = Some(p.launch.max_tokens.map_or(room, |m| m.min(room)));
    Ok(())
}

fn durations(
    load: Duration,
    started: Instant,
    usage: &Usage,
    timings: &Timings,
) -> serde_json::Map<String, Value> {
    let ns = |d: Duration| d.as_nanos() as u64;
    let mut m = serde_json::Map::new();
    m.insert("total_duration".into(), json!(ns(started.elapsed())));
    m.insert("load_duration".into(), json!(ns(load)));
    m.insert("prompt_eval_count".into(), json!(usage.prompt_tokens));
    m.insert(
        "prompt_eval_duration".into(),
        json!(ns(timings.queued + timings.prompt)),
    );
    m.insert("eval_count".into(), json!(usage.completion_tokens));
    m.insert("eval_duration".into(), json!(ns(timings.generation)));
    m
}

/// Get the model, timing a load this request caused.
async fn model_for(state: &AppState, name: &str) -> Result<(Arc<LoadedModel>, Duration), ApiError> {
    let was_loaded = state
        .registry
        .spec(Some(name))
        .ok()
        .and_then(|s| state.registry.loaded_model(&s.name))
        .is_some();
    let model = state.registry.get(Some(name)).await?;
    let load = if was_loaded {
        Duration::ZERO
    } else {
        model.load_time
    };
    Ok((model, load))
}

fn apply_keep_alive(model: &LoadedModel, ka: Option<&KeepAlive>) -> Result<bool, ApiError> {
    let Some(ka) = ka else { return Ok(false) };
    let policy = match ka.duration()? {
        Some(d) => crate::state::KeepAlive::For(d),
        None => crate::state::KeepAlive::Forever,
    };
    // Unloading is an admin action: an inference key must not evict everyone's model.
    if policy == crate::state::KeepAlive::For(Duration::ZERO) && !crate::auth::may_administer() {
        return Err(ApiError::forbidden(
            "unloading a model (`keep_alive: 0`) needs an API key with the `admin` role",
        ));
    }
    model.set_keep_alive(policy);
    // The reaper unloads it once idle; zero means as soon as this request is done.
    Ok(policy == crate::state::KeepAlive::For(Duration::ZERO))
}

/// The answer when there is nothing to generate: Ollama loads (or unloads) the model.
fn load_only(model: &LoadedModel, chat: bool, unload: bool) -> Response {
    let mut v = json!({
        "model": model.name,
        "created_at": rfc3339(SystemTime::now()),
        "done": true,
        "done_reason": if unload { "unload" } else { "load" },
    });
    if chat {
        v["message"] = json!({"role": "assistant", "content": ""});
    } else {
        v["response"] = json!("");
    }
    Json(v).into_response()
}

/// The final object's extra fields.
fn finish_fields(
    last: &mut Value,
    chat: bool,
    end: (&'static str, &Usage, &Timings),
    load: Duration,
    started: Instant,
    context: impl FnOnce() -> Vec<u32>,
) {
    last["done_reason"] = json!(end.0);
    if let Value::Object(m) = last {
        m.extend(durations(load, started, end.1, end.2));
        if !chat {
            m.insert("context".into(), json!(context()));
        }
    }
}

/// Build the response (an NDJSON stream or one object) for one running generation.
#[allow(clippy::too_many_arguments)]
async fn respond(
    run: Running,
    stream: bool,
    chat: bool,
    load: Duration,
    started: Instant,
    prompt: Vec<u32>,
    tools: Option<Family>,
) -> Result<Response, ApiError> {
    let name = run.model().name.clone();
    let piece = move |text: &str, done: bool| {
        let mut v = json!({
            "model": name,
            "created_at": rfc3339(SystemTime::now()),
        });
        if chat {
            v["message"] = json!({"role": "assistant", "content": text});
        } else {
            v["response"] = json!(text);
        }
        v["done"] = json!(done);
        v
    };
    // With tools, the answer is parsed as a whole: its calls go in `message.tool_calls`.
    let piece_of_calls = piece.clone();
    let with_calls = move |text: &str, done: bool| {
        let piece = &piece_of_calls;
        let Some(family) = tools else {
            return piece(text, done);
        };
        let parsed = parse(text, family);
        let mut v = piece(parsed.content.as_deref().unwrap_or(""), done);
        if !parsed.calls.is_empty() {
            let calls: Vec<Value> = parsed.calls.iter().map(|c| c.ollama()).collect();
            v["message"]["tool_calls"] = Value::Array(calls);
        }
        v
    };
    if !stream {
        let c = run.collect().await?;
        let mut last = with_calls(&c.text, true);
        finish_fields(
            &mut last,
            chat,
            (finish_name(c.finish), &c.usage, &c.timings),
            load,
            started,
            || {
                prompt
                    .iter()
                    .copied()
                    .chain(c.tokens.iter().map(|t| t.id))
                    .collect()
            },
        );
        return Ok(Json(last).into_response());
    }
    let mut generated: Vec<u32> = Vec::new();
    let mut held = String::new();
    let items = chunks(
        vec![run],
        Vec::new(),
        move |_, ev, out| match ev {
            Event::Token { id, text, .. } => {
                generated.push(id);
                if tools.is_some() {
                    held.push_str(&text);
                } else if !text.is_empty() {
                    out.push_back(piece(&text, false).to_string());
                }
            }
            Event::Done {
                text,
                finish,
                usage,
                timings,
            } => {
                if tools.is_some() {
                    held.push_str(&text);
                    out.push_back(with_calls(&held, false).to_string());
                } else if !text.is_empty() {
                    out.push_back(piece(&text, false).to_string());
                }
                let mut last = piece("", true);
                finish_fields(
                    &mut last,
                    chat,
                    (finish_name(finish), &usage, &timings),
                    load,
                    started,
                    || {
                        prompt
                            .iter()
                            .copied()
                            .chain(generated.iter().copied())
                            .collect()
                    },
                );
                out.push_back(last.to_string());
            }
            Event::Error(e) => {
                tracing::error!(error = %e, "generation failed mid-stream");
                out.push_back(json!({"error": "the server failed to generate"}).to_string());
            }
        },
        |_| {},
    );
    Ok(ndjson(items))
}

/// `POST /api/generate`.
pub async fn generate(
    State(state): State<AppState>,
    OllamaJson(req): OllamaJson<GenerateRequest>,
) -> Result<Response, Ollama> {
    let started = Instant::now();
    let format = from_ollama(req.format.as_ref())?;
    let grammar = format.as_ref().map(|f| f.compile()).transpose()?;
    reject(
        "images",
        req.images.as_ref(),
        "this server runs text models only",
    )?;
    reject(
        "suffix",
        req.suffix.as_ref(),
        "fill-in-the-middle is not built yet",
    )?;
    reject(
        "think",
        req.think.as_ref(),
        "thinking mode is not built yet",
    )?;
    let spec = state.registry.spec(Some(&req.model))?;
    let mut p = plan(req.options.as_ref(), &spec.defaults)?;
    p.launch.grammar = grammar;
    let (model, load) = model_for(&state, &spec.name).await?;
    let unload = apply_keep_alive(&model, req.keep_alive.as_ref())?;
    let prompt_text = req.prompt.unwrap_or_default();
    if prompt_text.is_empty() && req.context.as_ref().is_none_or(Vec::is_empty) {
        return Ok(load_only(&model, false, unload));
    }
    let template = req.template.filter(|t| !t.is_empty());
    let new = if req.raw == Some(true) {
        // Raw: the prompt as it is; no template (not even a request's own).
        tokenize(&model, PromptInput::Text(prompt_text)).await?
    } else {
        let mut messages = Vec::new();
        if let Some(sys) = req
            .system
            .or_else(|| spec.defaults.system.clone())
            .filter(|s| !s.is_empty())
        {
            messages.push(json!({"role": "system", "content": sys}));
        }
        messages.extend(spec.defaults.messages.iter().cloned());
        messages.push(json!({"role": "user", "content": prompt_text}));
        if let Some(text) = format.as_ref().and_then(|f| f.instructions()) {
            add_to_system(&mut messages, &text);
        }
        match template {
            Some(t) => tokenize_with(&model, t, messages).await?,
            None => tokenize(&model, PromptInput::Chat(messages)).await?,
        }
    };
    let mut ids = req.context.unwrap_or_default();
    // A continued conversation: the context already holds BOS.
    let bos = model.chat.tokenizer().bos();
    let skip = usize::from(!ids.is_empty() && bos.is_some() && new.first().copied() == bos);
    ids.extend_from_slice(&new[skip..]);
    check_bias(&p.launch.sampling, model.chat.model().config().n_vocab)?;
    fit(&model, ids.len(), &mut p)?;
    let mut runs = launch(&state, &model, &ids, &p.launch)?;
    let run = runs
        .pop()
        .ok_or_else(|| submit_error(perch_engine::EngineError::BadConfig("no run".into())))?;
    Ok(respond(
        run,
        req.stream != Some(false),
        false,
        load,
        started,
        ids,
        None,
    )
    .await?)
}

/// `POST /api/chat`.
pub async fn chat(
    State(state): State<AppState>,
    OllamaJson(req): OllamaJson<ChatRequest>,
) -> Result<Response, Ollama> {
    let started = Instant::now();
    let format = from_ollama(req.format.as_ref())?;
    let format_grammar = format.as_ref().map(|f| f.compile()).transpose()?;
    reject(
        "think",
        req.think.as_ref(),
        "thinking mode is not built yet",
    )?;
    let spec = state.registry.spec(Some(&req.model))?;
    let mut p = plan(req.options.as_ref(), &spec.defaults)?;
    let mut messages = Vec::with_capacity(req.messages.len());
    for (i, m) in req.messages.iter().enumerate() {
        if !["system", "user", "assistant", "tool"].contains(&m.role.as_str()) {
            return Err(ApiError::invalid_param(
                format!("messages[{i}].role"),
                format!(
                    "`messages[{i}].role` must be system, user, assistant or tool, got `{}`",
                    m.role
                ),
            )
            .into());
        }
        reject(
            &format!("messages[{i}].images"),
            m.images.as_ref(),
            "this server runs text models only",
        )?;
        let mut msg = json!({"role": m.role, "content": m.content.clone().unwrap_or_default()});
        if let Some(tc) = &m.tool_calls {
            msg["tool_calls"] = tc.clone();
        }
        if let Some(name) = &m.tool_name {
            msg["name"] = json!(name);
        }
        messages.push(msg);
    }
    let (model, load) = model_for(&state, &spec.name).await?;
    let unload = apply_keep_alive(&model, req.keep_alive.as_ref())?;
    if messages.is_empty() {
        return Ok(load_only(&model, true, unload));
    }
    spec.defaults.add_system(&mut messages);
    let tools = tools::plan(
        req.tools.as_ref(),
        None,
        None,
        model.chat.template().source(),
    )?;
    if tools.is_some() && format.is_some() {
        return Err(
            ApiError::invalid_param("format", "`format` cannot be combined with `tools`").into(),
        );
    }
    if let Some(text) = format.as_ref().and_then(|f| f.instructions()) {
        add_to_system(&mut messages, &text);
    }
    p.launch.grammar = match &tools {
        Some(t) => t.grammar()?,
        None => format_grammar,
    };
    let input = tools::prompt_input(tools.as_ref(), messages);
    let ids = match (req.template.filter(|t| !t.is_empty()), input) {
        // A request's own template renders the messages (tools, if any, are described in
        // the system message).
        (Some(t), PromptInput::Chat(m) | PromptInput::ChatTools(m, _)) => {
            tokenize_with(&model, t, m).await?
        }
        (_, input) => tokenize(&model, input).await?,
    };
    fit(&model, ids.len(), &mut p)?;
    let mut runs = launch(&state, &model, &ids, &p.launch)?;
    let run = runs
        .pop()
        .ok_or_else(|| submit_error(perch_engine::EngineError::BadConfig("no run".into())))?;
    let family = tools.as_ref().map(|t| t.family);
    Ok(respond(
        run,
        req.stream != Some(false),
        true,
        load,
        started,
        ids,
        family,
    )
    .await?)
}

/// What [`generate`] checks of a body before it needs a model (for [`crate::validate`]).
pub(crate) fn precheck_generate(req: &GenerateRequest) -> Result<(), ApiError> {
    plan(req.options.as_ref(), &ModelDefaults::default())?;
    if let Some(k) = &req.keep_alive {
        k.duration()?;
    }
    Ok(())
}

/// What [`chat`] checks of a body before it needs a model (for [`crate::validate`]).
pub(crate) fn precheck_chat(req: &ChatRequest) -> Result<(), ApiError> {
    plan(req.options.as_ref(), &ModelDefaults::default())?;
    if let Some(k) = &req.keep_alive {
        k.duration()?;
    }
    for (i, m) in req.messages.iter().enumerate() {
        if !["system", "user", "assistant", "tool"].contains(&m.role.as_str()) {
            return Err(ApiError::invalid_param(
                format!("messages[{i}].role"),
                "unknown role",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::error::parse_json;

    fn num() -> impl Strategy<Value = serde_json::Value> {
        prop_oneof![
            any::<i64>().prop_map(|i| json!(i)),
            (-1e3f64..1e3).prop_map(|f| json!(f)),
            Just(json!(null)),
            Just(json!("x")),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Any options are turned into a plan or refused with a 4xx naming a cause.
        #[test]
        fn options_plan_or_refuse(
            t in num(), k in num(), p in num(), m in num(), seed in num(),
            np in num(), ctx in num(), rp in num(), rln in num(),
        ) {
            let body = json!({
                "temperature": t, "top_k": k, "top_p": p, "min_p": m, "seed": seed,
                "num_predict": np, "num_ctx": ctx, "repeat_penalty": rp, "repeat_last_n": rln,
                "stop": ["a"], "num_gpu": 3,
            });
            let r = parse_json::<Options>(body.to_string().as_bytes())
                .and_then(|o| plan(Some(&o), &ModelDefaults::default()).map(|_| ()));
            if let Err(e) = r {
                prop_assert!(e.status.is_client_error());
            }
        }
    }

    #[test]
    fn defaults_fill_what_options_leave_out() {
        let d = ModelDefaults {
            parameters: [
                ("temperature".to_string(), json!(0.0)),
                ("num_predict".to_string(), json!(7)),
                ("stop".to_string(), json!(["END"])),
            ]
            .into_iter()
            .collect(),
            ..ModelDefaults::default()
        };
        let p = plan(None, &d).unwrap();
        assert_eq!(p.launch.sampling.temperature, 0.0);
        assert_eq!(p.launch.max_tokens, Some(7));
        assert_eq!(p.launch.stop, vec!["END".to_string()]);
        let o = Options {
            num_predict: Some(3),
            ..Options::default()
        };
        assert_eq!(plan(Some(&o), &d).unwrap().launch.max_tokens, Some(3));
    }
}
