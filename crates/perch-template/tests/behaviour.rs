//! Behaviour beyond the reference renderings: input adjustments, tool messages, errors,
//! limits against hostile templates, the ChatML fallback.

use std::time::{Duration, UNIX_EPOCH};

use perch_template::{CHATML_TEMPLATE, ChatTemplate, RenderInput, TemplateError};
use serde_json::{Value, json};

fn render(src: &str, messages: Value) -> Result<String, TemplateError> {
    ChatTemplate::new(src, "<s>", "</s>")?.render(&RenderInput {
        messages: messages.as_array().unwrap().clone(),
        add_generation_prompt: true,
        ..Default::default()
    })
}

fn fixture_template(name: &str) -> String {
    let path = perch_fixtures::chat_templates_dir().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "fixture missing: {} ({e}); run `cargo xtask fixtures`",
            path.display()
        )
    })
}

#[test]
fn chatml_fallback() {
    let msgs = json!([
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
    ]);
    let want = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n\
                <|im_start|>assistant\n";
    assert_eq!(render(CHATML_TEMPLATE, msgs.clone()).unwrap(), want);
    for model in [None, Some(""), Some("chatml")] {
        let t = ChatTemplate::for_model(None, model, "", "").unwrap();
        assert_eq!(t.source(), CHATML_TEMPLATE);
    }
    // An override wins over the model's template.
    let t = ChatTemplate::for_model(
        Some("{% for m in messages %}{{ m.role }}:{{ m.content }};{% endfor %}"),
        Some("{{ 1 }}"),
        "",
        "",
    )
    .unwrap();
    let out = t
        .render(&RenderInput {
            messages: msgs.as_array().unwrap().clone(),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(out, "system:Be brief.;user:Hi;");
    let err = ChatTemplate::read_file(std::path::Path::new("/nonexistent/t.jinja")).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/t.jinja"), "{err}");
}

#[test]
fn tool_messages_pass_through() {
    let src = "{% for m in messages %}[{{ m.role }}|{{ m.name }}|{{ m.tool_call_id }}|\
               {% for c in m.tool_calls or [] %}{{ c.id }}:{{ c.function.name }}\
               {{ c.function.arguments|tojson }}:{{ c.function.arguments.city }}{% endfor %}|\
               {{ m.content }}]{% endfor %}{{ tools|map(attribute='function')|map(attribute='name')|join(',') }}";
    let t = ChatTemplate::new(src, "", "").unwrap();
    let input = RenderInput {
        messages: json!([
            {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function",
              "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
            {"role": "tool", "tool_call_id": "c1", "name": "get_weather", "content": "21C"},
        ])
        .as_array()
        .unwrap()
        .clone(),
        tools: Some(vec![
            json!({"type": "function", "function": {"name": "get_weather"}}),
            json!({"type": "function", "function": {"name": "search"}}),
        ]),
        ..Default::default()
    };
    assert_eq!(
        t.render(&input).unwrap(),
        // OpenAI's string arguments arrive as an object (tojson prints it, .city reads it).
        "[assistant|||c1:get_weather{\"city\": \"Paris\"}:Paris|None][tool|get_weather|c1||21C]\
         get_weather,search"
    );
}

#[test]
fn string_arguments_render_like_object_arguments_in_real_templates() {
    let data: Value = serde_json::from_str(include_str!("data/hf_reference.json")).unwrap();
    for name in [
        "Qwen-Qwen2.5-7B-Instruct.jinja",
        "meta-llama-Llama-3.1-8B-Instruct.jinja",
    ] {
        let case = data["cases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["template"] == name && c["conversation"] == "tool_chat")
            .unwrap();
        let mut messages = data["conversations"]["tool_chat"]
            .as_array()
            .unwrap()
            .clone();
        // As an OpenAI client sends them: arguments as a JSON string.
        let args = &mut messages[1]["tool_calls"][0]["function"]["arguments"];
        *args = Value::String(args.to_string());
        let t = ChatTemplate::new(&fixture_template(name), "<BOS>", "<EOS>").unwrap();
        let out = t
            .render(&RenderInput {
                messages,
                tools: Some(data["tools"].as_array().unwrap().clone()),
                add_generation_prompt: true,
                now: Some(UNIX_EPOCH + Duration::from_secs(data["now_unix"].as_u64().unwrap())),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(out, case["expected"].as_str().unwrap(), "{name}");
    }
}

#[test]
fn typed_content_and_developer_role() {
    // ChatML prints string content: text parts are joined with newlines.
    let out = render(
        CHATML_TEMPLATE,
        json!([
            {"role": "developer", "content": "Rules."},
            {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        ]),
    )
    .unwrap();
    assert_eq!(
        out,
        "<|im_start|>system\nRules.<|im_end|>\n<|im_start|>user\na\nb<|im_end|>\n<|im_start|>assistant\n"
    );
    // A template that walks content parts gets them as they are.
    let src =
        "{% for m in messages %}{% for p in m.content %}<{{ p.text }}>{% endfor %}{% endfor %}";
    let t = ChatTemplate::new(src, "", "").unwrap();
    assert!(t.caps().supports_typed_content && !t.caps().supports_string_content);
    let out = t
        .render(&RenderInput {
            messages: vec![
                json!({"role": "user", "content": [{"type": "text", "text": "x"}, {"type": "text", "text": "y"}]}),
                json!({"role": "user", "content": "plain"}),
            ],
            ..Default::default()
        })
        .unwrap();
    assert_eq!(out, "<x><y><plain>");
    // Unsupported parts are an input error naming the message and part.
    let err = render(
        CHATML_TEMPLATE,
        json!([{"role": "user", "content": [{"type": "image_url"}]}]),
    )
    .unwrap_err();
    assert!(matches!(err, TemplateError::InvalidInput(_)), "{err}");
    assert!(
        err.to_string().contains("message 0") && err.to_string().contains("image_url"),
        "{err}"
    );
}

#[test]
fn system_message_merged_when_template_has_no_system_role() {
    // gemma-2 raises on a system message: the system text goes in front of the first turn.
    let t = ChatTemplate::new(
        &fixture_template("google-gemma-2-2b-it.jinja"),
        "<bos>",
        "<eos>",
    )
    .unwrap();
    assert!(!t.caps().supports_system_role);
    let out = t
        .render(&RenderInput {
            messages: vec![
                json!({"role": "system", "content": "Be brief."}),
                json!({"role": "user", "content": "Hi"}),
            ],
            add_generation_prompt: true,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        out,
        "<bos><start_of_turn>user\nBe brief.\nHi<end_of_turn>\n<start_of_turn>model\n"
    );
    let qwen =
        ChatTemplate::new(&fixture_template("Qwen-Qwen2.5-7B-Instruct.jinja"), "", "").unwrap();
    assert!(qwen.caps().supports_system_role);
}

#[test]
fn python_methods_filters_and_functions() {
    let src = "{{ '  a,b  '.strip().split(',') }}|{{ 'Hi'.startswith('H') }}|\
               {% for k, v in {'x': 1}.items() %}{{ k }}={{ v }}{% endfor %}|\
               {{ {'b': [1, 2.5, none, true], 'a': 'é'}|tojson }}|\
               {{ {'b': 1, 'a': 'é'}|tojson(indent=2, ensure_ascii=true, sort_keys=true) }}|\
               {{ [1, 2]|tojson(separators=(',', ':')) }}|\
               {{ strftime_now('%Y-%m-%d %d %b %Y') }}|{{ true }} {{ none }} {{ 1.0 }}|\
               {% generation %}gen{% endgeneration %}|\
               {% for i in range(5) %}{% if i == 1 %}{% continue %}{% endif %}{% if i == 3 %}{% break %}{% endif %}{{ i }}{% endfor %}";
    let t = ChatTemplate::new(src, "", "").unwrap();
    let out = t
        .render(&RenderInput {
            now: Some(UNIX_EPOCH + Duration::from_secs(1_721_995_200)),
            ..Default::default()
        })
        .unwrap();
    // Expected strings are what Python's Jinja2 prints with transformers' configuration.
    assert_eq!(
        out,
        "['a', 'b']|True|x=1|{\"b\": [1, 2.5, null, true], \"a\": \"é\"}|\
         {\n  \"a\": \"\\u00e9\",\n  \"b\": 1\n}|[1,2]|2024-07-26 26 Jul 2024|True None 1.0|gen|02"
    );
}

#[test]
fn errors_name_the_problem() {
    let err = ChatTemplate::new("line1\n{% if x %}\n{{ a + }}\n", "", "").unwrap_err();
    match &err {
        TemplateError::Syntax { line, .. } => assert_eq!(*line, Some(3), "{err}"),
        other => panic!("expected a syntax error, got {other:?}"),
    }
    assert!(err.to_string().contains("line 3"), "{err}");

    let t = ChatTemplate::new(
        "{% if messages[0].role != 'user' %}{{ raise_exception('Only user messages') }}{% endif %}",
        "",
        "",
    )
    .unwrap();
    let err = t
        .render(&RenderInput {
            messages: vec![json!({"role": "assistant", "content": "x"})],
            ..Default::default()
        })
        .unwrap_err();
    match &err {
        TemplateError::Raised { message, line } => {
            assert_eq!(message, "Only user messages");
            assert_eq!(*line, Some(1));
        }
        other => panic!("expected Raised, got {other:?}"),
    }

    let err = render(
        "ok\n{{ messages[0].content + 1 }}",
        json!([{"role": "user", "content": "x"}]),
    )
    .unwrap_err();
    match &err {
        TemplateError::Render { line, .. } => assert_eq!(*line, Some(2), "{err}"),
        other => panic!("expected a render error, got {other:?}"),
    }

    for bad in [
        json!([1]),
        json!([{"content": "x"}]),
        json!([{"role": 3}]),
        json!([{"role": "user", "content": 5}]),
    ] {
        let err = render(CHATML_TEMPLATE, bad.clone()).unwrap_err();
        assert!(
            matches!(err, TemplateError::InvalidInput(_)),
            "{bad}: {err}"
        );
    }
}

#[test]
fn hostile_templates_fail_cleanly() {
    let cases = [
        // Endless work: 10^10 iterations.
        (
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
            "fuel",
        ),
        // Unbounded recursion.
        (
            "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
            "recursion",
        ),
        // A gigabyte of output.
        (
            "{% for i in range(100000) %}{{ 'x' * 10000 }}{% endfor %}",
            "output",
        ),
    ];
    for (src, what) in cases {
        let t = ChatTemplate::new(src, "", "").unwrap();
        let err = t.render(&RenderInput::default()).unwrap_err();
        assert!(
            matches!(err, TemplateError::LimitExceeded { .. }) && err.to_string().contains(what),
            "{src}: {err}"
        );
    }
    // Deeply nested syntax is refused by the parser instead of overflowing the stack.
    let deep = format!("{{{{ {}1{} }}}}", "(".repeat(100_000), ")".repeat(100_000));
    assert!(matches!(
        ChatTemplate::new(&deep, "", ""),
        Err(TemplateError::Syntax { .. })
    ));
    let deep = "{% if true %}".repeat(10_000) + &"{% endif %}".repeat(10_000);
    assert!(ChatTemplate::new(&deep, "", "").is_err());
}

#[test]
fn long_conversations_fit_the_limits_of_real_templates() {
    // 400 turns through the largest templates of llama.cpp's collection.
    let mut messages = vec![json!({"role": "system", "content": "You are helpful."})];
    for i in 0..200 {
        messages
            .push(json!({"role": "user", "content": format!("Question {i}: what is {i} + {i}?")}));
        messages.push(json!({"role": "assistant", "content": format!("It is {}.", 2 * i)}));
    }
    messages.push(json!({"role": "user", "content": "Thanks"}));
    for name in [
        "openai-gpt-oss-120b.jinja",
        "google-gemma-4-31B-it.jinja",
        "Kimi-K3.jinja",
        "Apertus-8B-Instruct.jinja",
        "NVIDIA-Nemotron-3-Nano-30B-A3B-BF16.jinja",
        "Qwen3.5-4B.jinja",
    ] {
        let t = ChatTemplate::new(&fixture_template(name), "<s>", "</s>").unwrap();
        let out = t
            .render(&RenderInput {
                messages: messages.clone(),
                add_generation_prompt: true,
                ..Default::default()
            })
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(out.contains("Question 199: what is 199 + 199?"), "{name}");
    }
}
