//! Renders llama.cpp's collection of real chat templates (models/templates/*.jinja in the
//! llama-cpp-python fixture) and SmolLM2's own template, and compares with Python Jinja2
//! configured as Hugging Face transformers renders chat templates (recorded by
//! scripts/gen_template_refs.py into tests/data/hf_reference.json).

use std::collections::HashMap;
use std::time::{Duration, UNIX_EPOCH};

use perch_template::{ChatTemplate, RenderInput, TemplateError};
use serde_json::Value;

const SMOLLM2: &str = "SmolLM2-135M-Instruct (GGUF)";

fn reference() -> Value {
    serde_json::from_str(include_str!("data/hf_reference.json")).expect("valid JSON")
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

/// The template sources by name: the fixture's .jinja files and SmolLM2's template.
fn sources(data: &Value) -> HashMap<String, String> {
    let dir = perch_fixtures::chat_templates_dir();
    let mut out = HashMap::new();
    for t in data["templates"].as_array().unwrap() {
        let name = t["file"].as_str().unwrap();
        let src = if name == SMOLLM2 {
            smollm2_template()
        } else {
            let path = dir.join(name);
            std::fs::read_to_string(&path).unwrap_or_else(|e| {
                panic!(
                    "fixture missing: {} ({e}); run `cargo xtask fixtures`",
                    path.display()
                )
            })
        };
        assert_eq!(
            sha256_hex(src.as_bytes()),
            t["sha256"].as_str().unwrap(),
            "template {name} differs from the one the reference was recorded with"
        );
        out.insert(name.to_string(), src);
    }
    out
}

/// SmolLM2's `tokenizer.chat_template`, read from the GGUF fixture with perch-gguf.
fn smollm2_template() -> String {
    let path = perch_fixtures::smollm2_q4_1();
    let file = perch_gguf::GgufFile::open(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    file.metadata()
        .get_str(perch_gguf::keys::TOKENIZER_CHAT_TEMPLATE)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .to_string()
}

#[test]
fn real_templates_match_transformers() {
    let data = reference();
    let srcs = sources(&data);
    let bos = data["bos_token"].as_str().unwrap();
    let eos = data["eos_token"].as_str().unwrap();
    let now = UNIX_EPOCH + Duration::from_secs(data["now_unix"].as_u64().unwrap());
    let tools: Vec<Value> = data["tools"].as_array().unwrap().clone();

    let mut compiled: HashMap<&str, Result<ChatTemplate, TemplateError>> = HashMap::new();
    let (mut same, mut same_but_markup, mut raised_both, mut python_errors) = (0, 0, 0, 0);
    let mut failures = Vec::new();
    for case in data["cases"].as_array().unwrap() {
        let name = case["template"].as_str().unwrap();
        let label = format!(
            "{name} [{}{}{}]",
            case["conversation"].as_str().unwrap(),
            if case["tools"].as_bool().unwrap() {
                ", tools"
            } else {
                ""
            },
            if case["add_generation_prompt"].as_bool().unwrap() {
                ", generation prompt"
            } else {
                ""
            },
        );
        let tmpl = compiled
            .entry(name)
            .or_insert_with(|| ChatTemplate::new(&srcs[name], bos, eos));
        let tmpl = match tmpl {
            Ok(t) => t,
            Err(e) => {
                failures.push(format!("{label}: does not compile: {e}"));
                continue;
            }
        };
        let messages = data["conversations"][case["conversation"].as_str().unwrap()]
            .as_array()
            .unwrap()
            .clone();
        let input = RenderInput {
            messages,
            tools: case["tools"].as_bool().unwrap().then(|| tools.clone()),
            add_generation_prompt: case["add_generation_prompt"].as_bool().unwrap(),
            now: Some(now),
            ..Default::default()
        };
        let got = tmpl.render(&input);
        if let Some(expected) = case["expected_without_markup_escaping"].as_str() {
            // transformers HTML-escapes text concatenated to a `|safe` string (MarkupSafe's
            // `Markup + str`); perch does not, and must give the unescaped rendering.
            match got {
                Ok(out) if out == expected => same_but_markup += 1,
                Ok(out) => failures.push(format!(
                    "{label}: output differs\n--- transformers without Markup escaping\n\
                     {expected}\n--- perch\n{out}\n---"
                )),
                Err(e) => failures.push(format!("{label}: perch failed: {e}")),
            }
        } else if let Some(expected) = case["expected"].as_str() {
            match got {
                Ok(out) if out == expected => same += 1,
                Ok(out) => failures.push(format!(
                    "{label}: output differs\n--- transformers\n{expected}\n--- perch\n{out}\n---"
                )),
                Err(e) => failures.push(format!("{label}: perch failed: {e}")),
            }
        } else if let Some(message) = case["raises"].as_str() {
            // The template calls raise_exception: perch must fail the same way.
            match got {
                Err(TemplateError::Raised { message: m, .. }) if m == message => raised_both += 1,
                other => failures.push(format!(
                    "{label}: transformers raises {message:?}, perch gives {other:?}"
                )),
            }
        } else {
            // Jinja2 failed with a Python-level error (e.g. iterating `tools = None`, or a
            // sandbox refusal): there is no reference output to compare with.
            python_errors += 1;
        }
    }
    eprintln!(
        "real templates: {same} renderings identical to transformers, {same_but_markup} identical \
         but for transformers' Markup escaping, {raised_both} rejections identical, \
         {python_errors} cases where Jinja2 itself errors (not compared), {} failures",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
