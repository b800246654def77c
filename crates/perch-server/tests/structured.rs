//! Structured outputs and tool calls on SmolLM2 through the router: every constrained answer
//! parses and validates against its schema (checked with the `jsonschema` crate, an
//! independent validator), over varied schemas and seeds; a grammar that cannot finish ends
//! with `length`; tool calls come back in OpenAI's and Ollama's shapes, streamed too.

mod common;

use axum::http::StatusCode;
use common::*;
use futures_util::future::join_all;
use serde_json::{Value, json};

fn config_1k() -> perch_server::ServerConfig {
    let mut c = config();
    c.load.n_ctx = Some(1024);
    c.load.parallel = 8;
    c
}

fn validator(schema: &Value) -> jsonschema::Validator {
    jsonschema::options()
        .should_validate_formats(true)
        .build(schema)
        .unwrap_or_else(|e| panic!("test schema {schema} is invalid: {e}"))
}

fn schemas() -> Vec<(&'static str, &'static str, Value)> {
    vec![
        (
            "person",
            "Describe a fictional person.",
            json!({"type": "object", "properties": {
                "name": {"type": "string", "maxLength": 20},
                "age": {"type": "integer", "minimum": 0, "maximum": 120}},
                "required": ["name", "age"], "additionalProperties": false}),
        ),
        (
            "sentiment",
            "Classify the sentiment of: I love this phone!",
            json!({"type": "object", "properties": {
                "sentiment": {"enum": ["positive", "negative", "neutral"]},
                "confident": {"type": "boolean"}},
                "required": ["sentiment", "confident"]}),
        ),
        (
            "colors",
            "List some colors.",
            json!({"type": "object", "properties": {
                "colors": {"type": "array", "items": {"type": "string", "maxLength": 12}, "minItems": 2, "maxItems": 4}},
                "required": ["colors"]}),
        ),
        (
            "refs",
            "Where is the Eiffel Tower?",
            json!({"$defs": {"place": {"type": "object", "properties": {
                    "name": {"type": "string", "maxLength": 20},
                    "country": {"type": "string", "maxLength": 20}},
                    "required": ["name", "country"]}},
                "type": "object", "properties": {"city": {"$ref": "#/$defs/place"}},
                "required": ["city"]}),
        ),
        (
            "anyof",
            "Give me a value.",
            json!({"type": "object", "properties": {
                "value": {"anyOf": [{"type": "integer"}, {"type": "string", "maxLength": 10}, {"type": "null"}]}},
                "required": ["value"]}),
        ),
        (
            "formats",
            "Make up an event.",
            json!({"type": "object", "properties": {
                "date": {"type": "string", "format": "date"},
                "id": {"type": "string", "format": "uuid"},
                "at": {"type": "string", "format": "time"}},
                "required": ["date", "id", "at"]}),
        ),
        (
            "weather",
            "What is the weather like in Paris?",
            json!({"type": "object", "properties": {
                "temperature": {"type": "number"},
                "unit": {"enum": ["celsius", "fahrenheit"]},
                "note": {"type": "string", "maxLength": 20}},
                "required": ["temperature", "unit"]}),
        ),
        (
            "digits",
            "Pick three digits.",
            json!({"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 9}, "minItems": 3, "maxItems": 3}),
        ),
        (
            "pattern",
            "Make up a flight code.",
            json!({"type": "object", "properties": {
                "code": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{2}$"},
                "gate": {"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 50}},
                "required": ["code", "gate"]}),
        ),
        (
            "list of objects",
            "List two books.",
            json!({"type": "array", "items": {"type": "object", "properties": {
                "title": {"type": "string", "maxLength": 16},
                "year": {"type": "integer", "minimum": 1000, "maximum": 2030}},
                "required": ["title", "year"], "additionalProperties": false},
                "minItems": 1, "maxItems": 2}),
        ),
    ]
}

#[tokio::test]
async fn schema_constrained_answers_always_validate() {
    let (app, state) = app_with(config_1k()).await;
    let requests = schemas().into_iter().flat_map(|(name, q, schema)| {
        // Two sampled choices (seeds 7 and 8) and a greedy answer per schema.
        [(0.8, 2), (0.0, 1)].into_iter().map(move |(temperature, n)| {
            let body = json!({
                "model": MODEL,
                "messages": [{"role": "user", "content": q}],
                "max_tokens": 200,
                "temperature": temperature,
                "seed": 7,
                "n": n,
                "response_format": {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": true}},
            });
            (name, schema.clone(), body)
        })
    });
    let requests: Vec<_> = requests.collect();
    let answers = join_all(requests.iter().map(|(_, _, body)| {
        let app = app.clone();
        async move { send_json(&app, post("/v1/chat/completions", body)).await }
    }))
    .await;
    let mut checked = 0;
    for ((name, schema, _), (status, v)) in requests.iter().zip(answers) {
        assert_eq!(status, StatusCode::OK, "{name}: {v}");
        let val = validator(schema);
        for choice in v["choices"].as_array().unwrap() {
            let text = choice["message"]["content"].as_str().unwrap();
            assert_eq!(
                choice["finish_reason"], "stop",
                "{name}: did not finish: {text:?}"
            );
            let parsed: Value = serde_json::from_str(text)
                .unwrap_or_else(|e| panic!("{name}: not JSON ({e}): {text:?}"));
            let errors: Vec<String> = val.iter_errors(&parsed).map(|e| e.to_string()).collect();
            assert!(errors.is_empty(), "{name}: {text} is invalid: {errors:?}");
            checked += 1;
        }
    }
    assert_eq!(checked, 30);
    wait_idle(&state).await;
}

#[tokio::test]
async fn json_object_mode_and_other_constraints() {
    let (app, _) = app_with(config_1k()).await;
    // json_object: any JSON object.
    let (status, v) = send_json(
        &app,
        post(
            "/v1/chat/completions",
            &json!({"model": MODEL, "messages": [{"role": "user", "content": "Describe a cat in JSON."}],
                "max_tokens": 150, "temperature": 0, "response_format": {"type": "json_object"}}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let text = v["choices"][0]["message"]["content"].as_str().unwrap();
    if v["choices"][0]["finish_reason"] == "stop" {
        let parsed: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"));
        assert!(parsed.is_object(), "{text}");
    } else {
        assert!(text.starts_with('{'), "{text}");
    }
    // Completions with a regex, a choice list and a GBNF grammar.
    for (field, value, check) in [
        ("guided_regex", json!("[0-9]{3}-[a-z]{2}"), "regex"),
        ("guided_choice", json!(["red", "green", "blue"]), "choice"),
        (
            "grammar",
            json!("root ::= (\"yes\" | \"no\") \", \" [a-z]{2,5} \".\""),
            "gbnf",
        ),
    ] {
        let (status, v) = send_json(
            &app,
            post(
                "/v1/completions",
                &json!({"model": MODEL, "prompt": "Answer:", "max_tokens": 20, "seed": 3, field: value}),
            ),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{v}");
        let text = v["choices"][0]["text"].as_str().unwrap();
        assert_eq!(
            v["choices"][0]["finish_reason"], "stop",
            "{check}: {text:?}"
        );
        let ok = match check {
            "regex" => {
                let b = text.as_bytes();
                b.len() == 6
                    && b[..3].iter().all(u8::is_ascii_digit)
                    && b[3] == b'-'
                    && b[4..].iter().all(u8::is_ascii_lowercase)
            }
            "choice" => ["red", "green", "blue"].contains(&text),
            _ => {
                let rest = text
                    .strip_prefix("yes, ")
                    .or_else(|| text.strip_prefix("no, "));
                rest.and_then(|r| r.strip_suffix('.')).is_some_and(|w| {
                    (2..=5).contains(&w.len()) && w.bytes().all(|c| c.is_ascii_lowercase())
                })
            }
        };
        assert!(ok, "{check}: {text:?}");
    }
}

#[tokio::test]
async fn a_grammar_that_cannot_finish_ends_with_length() {
    let (app, state) = app().await;
    // A required property and too few tokens to write it.
    let (status, v) = send_json(
        &app,
        post(
            "/v1/chat/completions",
            &json!({"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4,
                "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema":
                    {"type": "object", "properties": {"a_long_property_name": {"type": "string"}}, "required": ["a_long_property_name"]}}}}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["choices"][0]["finish_reason"], "length", "{v}");
    assert_eq!(v["usage"]["completion_tokens"], 4);
    // A grammar with no end at all, streamed.
    let (status, _, body) = send(
        &app,
        post(
            "/v1/completions",
            &json!({"model": MODEL, "prompt": "x", "max_tokens": 6, "stream": true, "grammar": "root ::= \"ab\" root"}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let events = sse_data(&body);
    let text: String = events
        .iter()
        .filter(|e| *e != "[DONE]")
        .map(|e| serde_json::from_str::<Value>(e).unwrap())
        .map(|c| c["choices"][0]["text"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(
        text.starts_with("ab") && text.chars().all(|c| c == 'a' || c == 'b'),
        "{text:?}"
    );
    let last: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "length", "{last}");
    wait_idle(&state).await;
}

fn weather_tool() -> Value {
    json!({"type": "function", "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string", "maxLength": 30},
            "unit": {"enum": ["celsius", "fahrenheit"]}},
            "required": ["city", "unit"], "additionalProperties": false}}})
}

#[tokio::test]
async fn forced_tool_calls_validate_and_stream_in_openais_shape() {
    let (app, state) = app_with(config_1k()).await;
    let params = weather_tool()["function"]["parameters"].clone();
    let val = validator(&params);
    let body = |stream: bool| {
        json!({"model": MODEL, "max_tokens": 120, "temperature": 0, "stream": stream,
            "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
            "tools": [weather_tool()], "tool_choice": "required", "parallel_tool_calls": false})
    };
    let (status, v) = send_json(&app, post("/v1/chat/completions", &body(false))).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let choice = &v["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls", "{v}");
    let calls = choice["message"]["tool_calls"]
        .as_array()
        .expect("tool_calls");
    assert_eq!(calls.len(), 1, "{v}");
    assert_eq!(calls[0]["type"], "function");
    assert!(calls[0]["id"].as_str().unwrap().starts_with("call_"));
    assert_eq!(calls[0]["function"]["name"], "get_weather");
    let args: Value =
        serde_json::from_str(calls[0]["function"]["arguments"].as_str().unwrap()).unwrap();
    assert!(val.is_valid(&args), "{args}");

    // Streamed: the same call, rebuilt from its deltas.
    let (status, _, raw) = send(&app, post("/v1/chat/completions", &body(true))).await;
    assert_eq!(status, StatusCode::OK);
    let events = sse_data(&raw);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let mut name = String::new();
    let mut arguments = String::new();
    let mut ids = Vec::new();
    for c in &chunks {
        for tc in c["choices"][0]["delta"]["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
        {
            assert_eq!(tc["index"], 0);
            if let Some(id) = tc["id"].as_str() {
                ids.push(id.to_string());
                assert_eq!(tc["type"], "function");
            }
            name.push_str(tc["function"]["name"].as_str().unwrap_or(""));
            arguments.push_str(tc["function"]["arguments"].as_str().unwrap_or(""));
        }
    }
    assert_eq!(ids.len(), 1);
    assert_eq!(name, "get_weather");
    let streamed: Value = serde_json::from_str(&arguments).unwrap();
    assert_eq!(streamed, args, "greedy: the same call streamed and not");
    let last = &chunks[chunks.len() - 1]["choices"][0];
    assert_eq!(last["finish_reason"], "tool_calls");

    // The tool's result fed back: the model answers in text.
    let (status, v) = send_json(
        &app,
        post(
            "/v1/chat/completions",
            &json!({"model": MODEL, "max_tokens": 60, "temperature": 0,
                "messages": [
                    {"role": "user", "content": "What is the weather in Paris?"},
                    {"role": "assistant", "content": null, "tool_calls": calls},
                    {"role": "tool", "tool_call_id": calls[0]["id"], "content": "{\"temperature\": 21, \"sky\": \"sunny\"}"},
                ],
                "tools": [weather_tool()]}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let msg = &v["choices"][0]["message"];
    assert!(
        msg["content"].as_str().is_some_and(|c| !c.is_empty()) || msg["tool_calls"].is_array(),
        "{v}"
    );
    wait_idle(&state).await;
}

#[tokio::test]
async fn ollama_format_and_tools() {
    let (app, _) = app_with(config_1k()).await;
    let schema = json!({"type": "object", "properties": {"capital": {"type": "string", "maxLength": 20}, "population": {"type": "integer", "minimum": 0}}, "required": ["capital", "population"]});
    let (status, v) = send_json(
        &app,
        post(
            "/api/chat",
            &json!({"model": MODEL, "stream": false, "format": schema, "options": {"temperature": 0, "num_predict": 100},
                "messages": [{"role": "user", "content": "Tell me about France."}]}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let text = v["message"]["content"].as_str().unwrap();
    let parsed: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert!(validator(&schema).is_valid(&parsed), "{text}");

    let (status, v) = send_json(
        &app,
        post(
            "/api/generate",
            &json!({"model": MODEL, "stream": false, "format": "json", "prompt": "A JSON object about dogs:",
                "options": {"temperature": 0, "num_predict": 100}}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    if v["done_reason"] == "stop" {
        let r = v["response"].as_str().unwrap();
        assert!(
            serde_json::from_str::<Value>(r).is_ok_and(|x| x.is_object()),
            "{r}"
        );
    }

    // Tools, streamed as NDJSON: a call's arguments are an object.
    let (status, _, raw) = send(
        &app,
        post(
            "/api/chat",
            &json!({"model": MODEL, "options": {"temperature": 0, "num_predict": 120},
                "messages": [{"role": "user", "content": "Use the tool to get the weather in Oslo."}],
                "tools": [weather_tool()]}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let lines = ndjson(&raw);
    assert_eq!(lines.last().unwrap()["done"], true);
    let params = weather_tool()["function"]["parameters"].clone();
    let val = validator(&params);
    let mut saw = 0;
    for l in &lines {
        for c in l["message"]["tool_calls"].as_array().into_iter().flatten() {
            assert_eq!(c["function"]["name"], "get_weather");
            assert!(c["function"]["arguments"].is_object(), "{c}");
            assert!(val.is_valid(&c["function"]["arguments"]), "{c}");
            saw += 1;
        }
    }
    let content: String = lines
        .iter()
        .map(|l| l["message"]["content"].as_str().unwrap_or(""))
        .collect();
    assert!(saw > 0 || !content.is_empty(), "{lines:?}");
}
