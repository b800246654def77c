//! Draft-model speculation on the SmolLM2 fixture, loaded as `perch run --draft-model` loads
//! it: greedy outputs are identical with and without a draft, whether the draft is the model
//! itself (every guess right) or a random model with its vocabulary (guesses mostly wrong,
//! rolled back).

use perch_engine::engine::{Event, GenerationRequest};
use perch_engine::loader::{ChatModel, DraftOptions, LoadOptions};
use perch_engine::sampling::SamplingParams;
use perch_engine::synth::{self, SynthSpec};
use perch_engine::{Arch, engine::EngineStats};
use perch_gguf::GgufFile;
use perch_quant::GgmlType;

/// Greedy continuations of `prompts` (submitted together) and the engine's counters.
fn generate(draft: Option<DraftOptions>, prompts: &[&str]) -> (Vec<Vec<u32>>, EngineStats) {
    let opts = LoadOptions {
        n_ctx: Some(512),
        parallel: prompts.len(),
        threads: Some(2),
        draft,
        ..LoadOptions::default()
    };
    let m = ChatModel::load(&perch_fixtures::smollm2_q4_1(), &opts).unwrap();
    let rxs: Vec<_> = prompts
        .iter()
        .map(|p| {
            m.handle()
                .submit(GenerationRequest {
                    prompt: m.raw_prompt(p).unwrap(),
                    sampling: SamplingParams::greedy(),
                    max_tokens: 40,
                    stop: Vec::new(),
                    ignore_eos: true,
                    logprobs: None,
                    constraint: None,
                })
                .unwrap()
        })
        .collect();
    let outs = rxs
        .into_iter()
        .map(|mut rx| {
            let mut ids = Vec::new();
            loop {
                match rx.blocking_recv().expect("stream ended without Done") {
                    Event::Token { id, .. } => ids.push(id),
                    Event::Done { .. } => return ids,
                    Event::Error(e) => panic!("request failed: {e}"),
                }
            }
        })
        .collect();
    // The counters are published after the step that finished the last request.
    let t = std::time::Instant::now();
    while m.handle().stats().running > 0 {
        assert!(t.elapsed().as_secs() < 30, "requests did not finish");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let stats = m.handle().stats();
    assert_eq!(stats.draft_blocks_used, 0, "the draft cache was not freed");
    m.shutdown();
    (outs, stats)
}

#[test]
fn smollm2_outputs_are_the_same_with_a_draft_model() {
    let prompts = [
        "The capital of France is",
        "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
        "Once upon a time, in a small village by the sea,",
    ];
    let (plain, _) = generate(None, &prompts);

    let mut itself = DraftOptions::new(perch_fixtures::smollm2_q4_1());
    itself.max_draft = 6;
    itself.p_min = 0.0;
    let (outs, stats) = generate(Some(itself), &prompts);
    eprintln!("itself: {stats:?}");
    assert_eq!(
        plain, outs,
        "SmolLM2 drafting for itself changed the output"
    );
    assert!(stats.draft_tokens > 0);
    // Its guesses are its own greedy choices: all kept unless kernels round differently
    // for different batch sizes (they do not).
    assert_eq!(stats.draft_accepted, stats.draft_tokens, "{stats:?}");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("random.gguf");
    let vocab = GgufFile::open(perch_fixtures::smollm2_q4_1()).unwrap();
    let spec = SynthSpec::tiny(Arch::Llama, GgmlType::Q8_0, 5);
    synth::write(&spec, &vocab, &path, |_, _| {}).unwrap();
    let mut random = DraftOptions::new(&path);
    random.p_min = 0.0;
    let (outs, stats) = generate(Some(random), &prompts);
    eprintln!("random: {stats:?}");
    assert_eq!(plain, outs, "a random draft changed the output");
    assert!(
        stats.draft_tokens > 0 && stats.draft_accepted * 4 < stats.draft_tokens,
        "mostly rejected: {stats:?}"
    );
}
