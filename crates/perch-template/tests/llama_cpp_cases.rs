//! Renders every Jinja case of llama.cpp's tests/test-chat-template.cpp and compares with
//! the output llama.cpp expects (extracted by scripts/gen_template_refs.py into
//! tests/data/llama_cpp_cases.json).

use perch_template::{ChatTemplate, RenderInput};
use serde_json::Value;

#[test]
fn llama_cpp_test_chat_template_cases() {
    let data: Value =
        serde_json::from_str(include_str!("data/llama_cpp_cases.json")).expect("valid JSON");
    let conversation = data["conversation"].as_array().expect("conversation");
    let cases = data["cases"].as_array().expect("cases");
    assert!(
        cases.len() >= 30,
        "expected the ~35 Jinja cases, found {}",
        cases.len()
    );

    let mut failures = Vec::new();
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let template = case["template"].as_str().unwrap();
        let expected = case["expected"].as_str().unwrap();
        let mut messages = conversation.clone();
        messages.extend(case["extra_messages"].as_array().unwrap().iter().cloned());
        let result = ChatTemplate::new(
            template,
            case["bos_token"].as_str().unwrap(),
            case["eos_token"].as_str().unwrap(),
        )
        .and_then(|t| {
            t.render(&RenderInput {
                messages,
                add_generation_prompt: true,
                ..Default::default()
            })
        });
        match result {
            Ok(out) if out == expected => {}
            Ok(out) => failures.push(format!(
                "{name}:\n  expected {expected:?}\n  got      {out:?}"
            )),
            Err(e) => failures.push(format!("{name}: error {e}")),
        }
    }
    eprintln!(
        "llama.cpp chat template cases: {} of {} rendered identically",
        cases.len() - failures.len(),
        cases.len()
    );
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
