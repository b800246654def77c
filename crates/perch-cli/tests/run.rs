//! `perch run` as a user runs it, on the SmolLM2 fixture.

mod common;
use common::{assert_one_line_error, perch, smollm2, stdout};

/// With a system message, SmolLM2 (Q4_1) answers Paris under greedy decoding. (Without one,
/// its chat template inserts a long default system prompt, after which this Q4_1 file
/// answers "L'Étoile, la Marseillaise, …" — in llama.cpp too, with `--jinja`.)
#[test]
fn smollm2_knows_the_capital_of_france() {
    let model = smollm2();
    let o = perch(&[
        "run",
        &model,
        "What is the capital of France?",
        "--system",
        "You are a helpful assistant.",
        "--temp",
        "0",
        "-n",
        "32",
    ]);
    let text = stdout(&o);
    assert!(text.contains("Paris"), "answer: {text:?}");
    // The answer ends at the end-of-turn token, well before the token limit.
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("ended by end of generation"), "stderr: {err}");
    // Timings go to stderr, like llama.cpp's.
    assert!(err.contains("tokens/s"), "stderr: {err}");
    assert!(
        !text.contains("tokens/s"),
        "stdout holds only the answer: {text:?}"
    );
}

#[test]
fn raw_greedy_runs_are_repeatable_and_stop_strings_are_not_printed() {
    let model = smollm2();
    let args = [
        "run",
        &model,
        "--raw",
        "--temp",
        "0",
        "-n",
        "24",
        "The capital of France is",
    ];
    let a = stdout(&perch(&args));
    let b = stdout(&perch(&args));
    assert_eq!(a, b, "greedy decoding is deterministic");
    assert!(a.contains("Paris"), "{a:?}");
    let mut stopped = args.to_vec();
    stopped.extend(["--stop", "Paris"]);
    let c = stdout(&perch(&stopped));
    assert!(!c.contains("Paris"), "{c:?}");
    assert!(a.starts_with(c.trim_end()), "{c:?} is a prefix of {a:?}");
}

#[test]
fn bad_run_input_is_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.gguf");
    assert_one_line_error(&["run", missing.to_str().unwrap(), "hi"], "No such file");
    let model = smollm2();
    assert_one_line_error(&["run", &model, "hi", "--ctx-size", "0"], "--ctx-size");
    let long = "word ".repeat(400);
    assert_one_line_error(&["run", &model, &long, "--ctx-size", "64"], "context");
}
