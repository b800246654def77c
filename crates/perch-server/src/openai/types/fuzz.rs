//! Arbitrary JSON bodies never panic the parsing and validation a request goes through
//! before it reaches the engine; they are accepted or refused with a 4xx naming a cause.

use proptest::prelude::*;
use serde_json::{Map, Value, json};

use super::*;
use crate::error::parse_json;

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|i| json!(i)),
        (-1e6f64..1e6).prop_map(|f| json!(f)),
        "[a-z \\-:<>|]{0,12}".prop_map(Value::String),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

const FIELDS: &[&str] = &[
    "model",
    "messages",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "n",
    "stop",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "stream",
    "stream_options",
    "top_k",
    "min_p",
    "repeat_penalty",
    "response_format",
    "tools",
    "tool_choice",
    "prompt",
    "echo",
    "suffix",
    "best_of",
];

fn body() -> impl Strategy<Value = Value> {
    let message = (
        prop_oneof![
            Just(json!("user")),
            Just(json!("system")),
            Just(json!("assistant")),
            Just(json!("tool")),
            value()
        ],
        prop_oneof![value(), Just(json!([{"type": "text", "text": "hi"}]))],
    )
        .prop_map(|(role, content)| json!({"role": role, "content": content}));
    (
        prop::collection::vec(message, 0..3),
        prop::collection::vec((prop::sample::select(FIELDS), value()), 0..6),
    )
        .prop_map(|(messages, fields)| {
            let mut m = Map::new();
            m.insert("messages".into(), Value::Array(messages));
            m.insert("prompt".into(), json!("hi"));
            for (k, v) in fields {
                m.insert(k.to_string(), v);
            }
            Value::Object(m)
        })
}

fn check(r: Result<(), ApiError>) {
    if let Err(e) = r {
        assert!(e.status.is_client_error(), "{e:?}");
        assert!(!e.message.is_empty());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn chat_bodies_are_accepted_or_refused_cleanly(b in body()) {
        let bytes = b.to_string().into_bytes();
        check((|| {
            let req: ChatRequest = parse_json(&bytes)?;
            reject_unsupported(req.functions.as_ref())?;
            if let Some(f) = crate::structured::from_openai(req.response_format.as_ref(), &req.guided)? {
                f.compile()?;
            }
            crate::tools::plan(req.tools.as_ref(), req.tool_choice.as_ref(), req.parallel_tool_calls, "")?;
            let v = req.knobs().validate(8)?;
            check_bias(&v.sampling, 49_152)?;
            req.logprobs()?;
            messages_to_template(&req.messages)?;
            Ok(())
        })());
    }

    #[test]
    fn completion_bodies_are_accepted_or_refused_cleanly(b in body()) {
        let bytes = b.to_string().into_bytes();
        check((|| {
            let req: CompletionRequest = parse_json(&bytes)?;
            req.knobs().validate(8)?;
            Ok(())
        })());
    }

    #[test]
    fn arbitrary_bytes_are_refused_cleanly(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        check(parse_json::<ChatRequest>(&bytes).map(|_| ()));
    }
}
