//! Fuzzes chat-template rendering. Even first byte: the rest is a template (hostile Jinja:
//! loops, recursion, huge output) rendered over a small conversation; it must compile or fail,
//! and render or fail within minijinja's fuel, recursion and output limits (run with
//! `-timeout=10` so a hang is a crash). Odd first byte: the rest becomes a conversation
//! (roles, string or part-list contents, tool calls) rendered by real templates from
//! llama.cpp's `models/templates`, which must render or fail with an error.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use perch_template::{ChatTemplate, RenderInput};
use serde_json::{Value, json};

fn real_templates() -> &'static [ChatTemplate] {
    static T: OnceLock<Vec<ChatTemplate>> = OnceLock::new();
    T.get_or_init(|| {
        let dir = perch_fixtures::chat_templates_dir();
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}; run `cargo xtask fixtures`", dir.display()))
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "jinja"))
            .collect();
        names.sort();
        let mut out = vec![ChatTemplate::chatml("<s>", "</s>").unwrap()];
        out.extend(names.iter().filter_map(|p| {
            let src = std::fs::read_to_string(p).ok()?;
            ChatTemplate::new(&src, "<s>", "</s>").ok()
        }));
        assert!(out.len() > 10, "too few templates in {}", dir.display());
        out
    })
}

fn conversation(bytes: &[u8]) -> Vec<Value> {
    let roles = ["system", "user", "assistant", "tool", "developer", "", "{{x}}"];
    bytes
        .split(|&b| b == 1)
        .take(16)
        .enumerate()
        .map(|(i, chunk)| {
            let (&r, text) = chunk.split_first().unwrap_or((&0, &[]));
            let text = String::from_utf8_lossy(text).into_owned();
            let role = roles[usize::from(r) % roles.len()];
            let content = match r >> 4 {
                0 => Value::Null,
                1 => json!([{"type": "text", "text": text}, {"type": "text", "text": "b"}]),
                2 => json!({"nested": text}),
                _ => Value::String(text.clone()),
            };
            let mut m = json!({"role": role, "content": content});
            if r & 8 != 0 {
                m["tool_calls"] = json!([{"id": format!("c{i}"), "type": "function",
                    "function": {"name": text, "arguments": "{\"a\": 1}"}}]);
            }
            m
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    if sel % 2 == 0 {
        let Ok(src) = std::str::from_utf8(rest) else {
            return;
        };
        let Ok(t) = ChatTemplate::new(src, "<s>", "</s>") else {
            return;
        };
        let _ = t.render(&RenderInput {
            messages: vec![
                json!({"role": "system", "content": "sys"}),
                json!({"role": "user", "content": "hi"}),
            ],
            add_generation_prompt: sel & 2 != 0,
            ..Default::default()
        });
    } else {
        let all = real_templates();
        let t = &all[usize::from(sel >> 1) % all.len()];
        let _ = t.render(&RenderInput {
            messages: conversation(rest),
            add_generation_prompt: sel & 2 != 0,
            tools: (sel & 4 != 0).then(|| vec![json!({"type": "function", "function": {"name": "f", "parameters": {}}})]),
            ..Default::default()
        });
    }
});
