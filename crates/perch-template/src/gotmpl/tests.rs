use serde_json::json;

use super::*;

fn render(src: &str, data: Value) -> String {
    GoTemplate::parse(src)
        .unwrap_or_else(|e| panic!("{src}: {e}"))
        .execute(&data)
        .unwrap_or_else(|e| panic!("{src}: {e}"))
}

#[test]
fn actions_trimming_and_conditions() {
    let d = json!({"System": "S", "Prompt": "P", "N": 3, "Empty": ""});
    assert_eq!(render("a {{ .System }} b", d.clone()), "a S b");
    assert_eq!(render("a  {{- .System -}}  \n b", d.clone()), "aSb");
    assert_eq!(
        render("{{ if .System }}yes{{ else }}no{{ end }}", d.clone()),
        "yes"
    );
    assert_eq!(
        render(
            "{{ if .Empty }}1{{ else if .Prompt }}2{{ else }}3{{ end }}",
            d.clone()
        ),
        "2"
    );
    assert_eq!(render("{{ if .Missing }}1{{ end }}", d.clone()), "");
    assert_eq!(render("{{/* a comment */}}x", d.clone()), "x");
    assert_eq!(
        render("{{ if and .System (not .Empty) }}ok{{ end }}", d.clone()),
        "ok"
    );
    assert_eq!(
        render(
            "{{ if or .Empty .Missing }}1{{ else }}0{{ end }}",
            d.clone()
        ),
        "0"
    );
    assert_eq!(
        render("{{ if eq .System \"X\" \"S\" }}m{{ end }}", d.clone()),
        "m"
    );
    assert_eq!(
        render("{{ if ne .N 3 }}a{{ else }}b{{ end }}", d.clone()),
        "b"
    );
    assert_eq!(
        render(
            "{{ if lt .N 4 }}lt{{ end }}{{ if ge .N 3 }}ge{{ end }}",
            d.clone()
        ),
        "ltge"
    );
    assert_eq!(render("{{ .System | printf \"<%s>\" }}", d.clone()), "<S>");
    assert_eq!(
        render("{{ $x := .Prompt }}{{ $x = \"Q\" }}{{ $x }}", d.clone()),
        "Q"
    );
    assert_eq!(
        render("{{ with .System }}[{{ . }}]{{ end }}", d.clone()),
        "[S]"
    );
    assert_eq!(render("{{ `raw\\n` }}{{ \"esc\\n\" }}", d), "raw\\nesc\n");
}

#[test]
fn ranges_variables_len_slice_index_json() {
    let d = json!({
        "Messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "yo", "tool_calls": [{"function": {"name": "f", "arguments": {"a": "<b>"}}}]},
            {"role": "user", "content": "bye"},
        ],
        "Tools": [{"type": "function", "function": {"name": "f"}}],
    });
    let t = "{{ range $i, $m := .Messages }}{{ $i }}:{{ .Role }}={{ $m.Content }};{{ end }}";
    assert_eq!(render(t, d.clone()), "0:user=hi;1:assistant=yo;2:user=bye;");
    let last = "{{ range $i, $_ := .Messages }}{{ $last := eq (len (slice $.Messages $i)) 1 }}{{ if $last }}last={{ .Content }}{{ end }}{{ end }}";
    assert_eq!(render(last, d.clone()), "last=bye");
    assert_eq!(render("{{ (index .Messages 1).Content }}", d.clone()), "yo");
    assert_eq!(
        render("{{ len .Messages }} {{ len .Tools }}", d.clone()),
        "3 1"
    );
    assert_eq!(
        render(
            "{{ range .Messages }}{{ range .ToolCalls }}{{ .Function.Name }}{{ json .Function.Arguments }}{{ end }}{{ end }}",
            d.clone()
        ),
        "f{\"a\":\"\\u003cb\\u003e\"}"
    );
    assert_eq!(
        render("{{ json .Tools }}", d.clone()),
        r#"[{"type":"function","function":{"name":"f"}}]"#
    );
    assert_eq!(
        render("{{ range .Nothing }}x{{ else }}empty{{ end }}", d.clone()),
        "empty"
    );
    assert_eq!(
        render(
            "{{ range .Messages }}{{ if eq .Role \"assistant\" }}{{ continue }}{{ end }}{{ .Content }}{{ end }}",
            d.clone()
        ),
        "hibye"
    );
    assert_eq!(
        render("{{ range .Messages }}{{ .Content }}{{ break }}{{ end }}", d),
        "hi"
    );
}

#[test]
fn bad_templates_are_errors_not_panics() {
    for bad in [
        "{{ if .X }}",
        "{{ end }}",
        "{{ .X",
        "{{ nope .X }}",
        "{{ else }}",
        "{{ \"x }}",
        "{{ template \"x\" }}",
        "{{ ( .X }}",
        "{{ range $i, $m := }}{{ end }}",
    ] {
        assert!(GoTemplate::parse(bad).is_err(), "{bad:?} parsed");
    }
    let t = GoTemplate::parse("{{ index .A 5 }}").unwrap();
    assert!(t.execute(&json!({"A": [1]})).is_err());
    let t =
        GoTemplate::parse("{{ range 100000000 }}{{ range 100000000 }}x{{ end }}{{ end }}").unwrap();
    assert!(t.execute(&json!({})).is_err());
}

#[test]
fn detection() {
    assert!(is_go_template("{{ .Prompt }}"));
    assert!(is_go_template(
        "{{- range .Messages }}{{ .Content }}{{ end }}"
    ));
    assert!(!is_go_template(
        "{% for m in messages %}{{ m.content }}{% endfor %}"
    ));
    assert!(!is_go_template(
        "{{ bos_token }}{{ messages[0]['content'] }}"
    ));
    assert!(!is_go_template("plain text"));
    assert!(
        is_go_template("{{ range .Messages }}"),
        "a broken Go template is still Go"
    );
}

/// Ollama's ChatML template (as in its library's qwen and smollm models).
const CHATML_GO: &str = "{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}{{ if .Prompt }}<|im_start|>user\n{{ .Prompt }}<|im_end|>\n{{ end }}<|im_start|>assistant\n{{ .Response }}<|im_end|>\n";

#[test]
fn legacy_templates_render_turn_by_turn_and_cut_at_the_response() {
    let t = GoTemplate::parse(CHATML_GO).unwrap();
    let msgs = [
        json!({"role": "system", "content": "S"}),
        json!({"role": "user", "content": "U1"}),
        json!({"role": "assistant", "content": "A1"}),
        json!({"role": "user", "content": "U2"}),
    ];
    assert_eq!(
        t.render_chat(&msgs, None).unwrap(),
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU1<|im_end|>\n<|im_start|>assistant\nA1<|im_end|>\n<|im_start|>user\nU2<|im_end|>\n<|im_start|>assistant\n"
    );
    // Consecutive user messages merge with a blank line, as Ollama's collate does.
    let two = [
        json!({"role": "user", "content": "a"}),
        json!({"role": "user", "content": "b"}),
    ];
    assert_eq!(
        t.render_chat(&two, None).unwrap(),
        "<|im_start|>user\na\n\nb<|im_end|>\n<|im_start|>assistant\n"
    );
}

/// The same prompt as the model's own Jinja ChatML template (an independent renderer).
#[test]
fn legacy_chatml_matches_the_jinja_chatml_template() {
    let jinja = crate::ChatTemplate::chatml("", "<|im_end|>").unwrap();
    let go = GoTemplate::parse(CHATML_GO).unwrap();
    let msgs = vec![
        json!({"role": "system", "content": "You are helpful."}),
        json!({"role": "user", "content": "What is 2+2?"}),
        json!({"role": "assistant", "content": "4"}),
        json!({"role": "user", "content": "And 3+3?"}),
    ];
    let j = jinja
        .render(&crate::RenderInput {
            messages: msgs.clone(),
            add_generation_prompt: true,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(go.render_chat(&msgs, None).unwrap(), j);
}

#[test]
fn messages_templates_get_the_whole_conversation() {
    // In the style of Ollama's llama3.x templates.
    let src = "{{- if .System }}<|start_header_id|>system<|end_header_id|>\n\n{{ .System }}<|eot_id|>{{ end }}\n{{- range $i, $_ := .Messages }}\n{{- $last := eq (len (slice $.Messages $i)) 1 }}\n{{- if ne .Role \"system\" }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n{{ .Content }}<|eot_id|>{{ if $last }}<|start_header_id|>assistant<|end_header_id|>\n\n{{ end }}{{ end }}\n{{- end }}";
    let t = GoTemplate::parse(src).unwrap();
    let msgs = [
        json!({"role": "system", "content": "S"}),
        json!({"role": "user", "content": [{"type": "text", "text": "Hi"}]}),
    ];
    assert_eq!(
        t.render_chat(&msgs, None).unwrap(),
        "<|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
    );
}
