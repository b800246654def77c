//! The engine loop: continuous batching, prefix caching, preemption and cancellation, on a
//! tiny synthetic model (greedy decoding, so outputs are deterministic).

use std::sync::Arc;
use std::time::{Duration, Instant};

use perch_engine::engine::{Engine, EngineConfig, Event, FinishReason, GenerationRequest, Usage};
use perch_engine::kv::KvType;
use perch_engine::sampling::SamplingParams;
use perch_engine::speculative::Speculative;
use perch_engine::synth::{self, SynthSpec};
use perch_engine::{Arch, Model};
use perch_gguf::GgufFile;
use perch_quant::GgmlType;
use perch_tokenizer::Tokenizer;
use tokio::sync::mpsc::UnboundedReceiver;

struct Fixture {
    _dir: tempfile::TempDir,
    model: Arc<Model>,
    tokenizer: Arc<Tokenizer>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    let vocab = GgufFile::open(perch_fixtures::smollm2_q4_1()).unwrap();
    let mut spec = SynthSpec::tiny(Arch::Qwen2, GgmlType::Q8_0, 7);
    spec.n_ctx = 4096;
    synth::write(&spec, &vocab, &path, |_, _| {}).unwrap();
    let model = Arc::new(Model::open(&path).unwrap());
    let tokenizer = Arc::new(Tokenizer::from_gguf(model.file()).unwrap());
    Fixture {
        _dir: dir,
        model,
        tokenizer,
    }
}

fn start(f: &Fixture, n_blocks: usize, max_batch_tokens: usize) -> Engine {
    start_with(f, n_blocks, max_batch_tokens, None)
}

fn start_with(
    f: &Fixture,
    n_blocks: usize,
    max_batch_tokens: usize,
    speculative: Option<Speculative>,
) -> Engine {
    Engine::start(
        f.model.clone(),
        f.tokenizer.clone(),
        EngineConfig {
            block_size: 16,
            n_blocks,
            max_seq_len: 4096,
            max_batch_tokens,
            max_running: 64,
            threads: 2,
            kv_type: KvType::F16,
            speculative,
        },
    )
    .unwrap()
}

fn request(prompt: Vec<u32>, max_tokens: usize) -> GenerationRequest {
    GenerationRequest {
        prompt,
        sampling: SamplingParams::greedy(),
        max_tokens,
        stop: Vec::new(),
        ignore_eos: true,
        logprobs: None,
        constraint: None,
    }
}

/// A prompt of `n` tokens that differs per `seed`.
fn prompt(seed: u32, n: usize) -> Vec<u32> {
    (0..n as u32)
        .map(|i| 100 + (i * 7919 + seed * 104_729) % 40_000)
        .collect()
}

/// Collect a stream: generated ids, finish reason, usage.
fn collect(mut rx: UnboundedReceiver<Event>) -> (Vec<u32>, FinishReason, Usage) {
    let mut ids = Vec::new();
    loop {
        match rx.blocking_recv().expect("stream ended without Done") {
            Event::Token { id, .. } => ids.push(id),
            Event::Done { finish, usage, .. } => return (ids, finish, usage),
            Event::Error(e) => panic!("request failed: {e}"),
        }
    }
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let t = Instant::now();
    while !cond() {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn outputs_do_not_depend_on_the_batch() {
    let f = fixture();
    let engine = start(&f, 1024, 512);
    let h = engine.handle();
    let alone = collect(h.submit(request(prompt(0, 40), 24)).unwrap()).0;
    assert_eq!(alone.len(), 24);
    // The same request among 16 others of different lengths, all submitted at once.
    let mut rxs = Vec::new();
    for i in 1..=8 {
        rxs.push(
            h.submit(request(prompt(i, 10 + 9 * i as usize), 20))
                .unwrap(),
        );
    }
    let target = h.submit(request(prompt(0, 40), 24)).unwrap();
    for i in 9..=16 {
        rxs.push(
            h.submit(request(prompt(i, 5 + 3 * i as usize), 30))
                .unwrap(),
        );
    }
    assert_eq!(
        collect(target).0,
        alone,
        "greedy output changed when batched with 16 others"
    );
    for rx in rxs {
        let (_, finish, _) = collect(rx);
        assert_eq!(finish, FinishReason::Length);
    }
    wait_until("blocks freed", || h.stats().pool.used == 0);
}

#[test]
fn a_tiny_pool_preempts_and_still_gives_the_same_outputs() {
    let f = fixture();
    let prompts: Vec<Vec<u32>> = (0..6).map(|i| prompt(i, 30 + 5 * i as usize)).collect();
    let run = |n_blocks: usize| {
        let engine = start(&f, n_blocks, 64);
        let h = engine.handle();
        let rxs: Vec<_> = prompts
            .iter()
            .map(|p| h.submit(request(p.clone(), 40)).unwrap())
            .collect();
        let outs: Vec<Vec<u32>> = rxs.into_iter().map(|rx| collect(rx).0).collect();
        wait_until("blocks freed", || h.stats().pool.used == 0);
        (outs, h.stats().preemptions)
    };
    let (ample, none) = run(1024);
    assert_eq!(none, 0);
    // 12 blocks = 192 tokens: enough for any one request (at most 95 tokens) but not for all
    // six at once, so sequences get preempted and recomputed.
    let (tight, preempted) = run(12);
    assert!(preempted > 0, "the pool was meant to run out");
    assert_eq!(tight, ample);
}

#[test]
fn a_shared_prefix_is_served_from_the_cache() {
    let f = fixture();
    let engine = start(&f, 1024, 512);
    let h = engine.handle();
    let p = prompt(3, 200);
    let (first, _, u1) = collect(h.submit(request(p.clone(), 8)).unwrap());
    assert_eq!(u1.cached_tokens, 0);
    let (second, _, u2) = collect(h.submit(request(p.clone(), 8)).unwrap());
    // 200 tokens = 12 full blocks + 8; every full block before the last token is reused.
    assert_eq!(u2.cached_tokens, 192);
    assert_eq!(first, second);
    // A longer prompt sharing the prefix reuses it too.
    let mut longer = p.clone();
    longer.extend(prompt(9, 50));
    let (_, _, u3) = collect(h.submit(request(longer, 4)).unwrap());
    assert!(u3.cached_tokens >= 192, "cached {}", u3.cached_tokens);
    assert!(h.stats().pool.hits >= 24);
}

#[test]
fn dropping_the_stream_cancels_and_frees_the_blocks() {
    let f = fixture();
    let engine = start(&f, 1024, 512);
    let h = engine.handle();
    let mut rx = h.submit(request(prompt(1, 100), 3000)).unwrap();
    // Wait for it to start producing, then walk away.
    assert!(matches!(rx.blocking_recv(), Some(Event::Token { .. })));
    wait_until("the request to hold blocks", || h.stats().pool.used > 0);
    drop(rx);
    wait_until("blocks freed after cancellation", || {
        let s = h.stats();
        s.pool.used == 0 && s.running == 0
    });
}

#[test]
fn requests_that_cannot_fit_are_refused_clearly() {
    let f = fixture();
    let engine = start(&f, 8, 64); // 128 tokens of KV
    let h = engine.handle();
    let err = h.submit(request(prompt(1, 200), 10)).unwrap_err();
    assert!(err.to_string().contains("200"), "{err}");
    // Fits the pool alone at submission, but prompt + max_tokens does not.
    let mut rx = h.submit(request(prompt(1, 100), 100)).unwrap();
    match rx.blocking_recv() {
        Some(Event::Error(e)) => assert!(e.contains("KV cache"), "{e}"),
        other => panic!("expected an error, got {other:?}"),
    }
    assert!(h.submit(request(vec![], 4)).is_err());
    assert!(h.submit(request(vec![u32::MAX], 4)).is_err());
}

#[test]
fn prompt_lookup_speculation_keeps_greedy_outputs_exactly() {
    let f = fixture();
    // Prompts that repeat themselves (where lookup finds drafts) and ones that do not.
    let mut prompts: Vec<Vec<u32>> = (0..4)
        .map(|i| {
            let unit = prompt(i, 5 + i as usize);
            unit.iter().cycle().take(60).copied().collect()
        })
        .collect();
    prompts.extend((4..8).map(|i| prompt(i, 20 + 3 * i as usize)));
    let run = |spec: Option<Speculative>, n_blocks: usize| {
        let engine = start_with(&f, n_blocks, 128, spec);
        let h = engine.handle();
        let rxs: Vec<_> = prompts
            .iter()
            .map(|p| h.submit(request(p.clone(), 48)).unwrap())
            .collect();
        let outs: Vec<(Vec<u32>, FinishReason, Usage)> = rxs.into_iter().map(collect).collect();
        wait_until("blocks freed", || h.stats().pool.used == 0);
        (outs, h.stats())
    };
    let (plain, _) = run(None, 1024);
    let (spec, stats) = run(Some(Speculative::ngram(4)), 1024);
    for (i, (a, b)) in plain.iter().zip(&spec).enumerate() {
        assert_eq!(
            a.0, b.0,
            "request {i}: speculation changed the greedy output"
        );
        assert_eq!(a.1, b.1);
        assert_eq!(a.2.completion_tokens, b.2.completion_tokens);
    }
    assert!(stats.draft_tokens > 0, "no drafts were tried");
    assert!(
        stats.draft_accepted > 0 && stats.draft_accepted <= stats.draft_tokens,
        "{stats:?}"
    );
    assert!(
        stats.steps < plain.iter().map(|o| o.0.len() as u64).sum::<u64>(),
        "fewer steps than tokens"
    );
    // Under pool pressure (preemption drops drafts with the rest) the outputs still agree.
    let (tight, _) = run(Some(Speculative::ngram(4)), 24);
    for (i, (a, b)) in plain.iter().zip(&tight).enumerate() {
        assert_eq!(a.0, b.0, "request {i}: changed under preemption");
    }
}

/// A constraint that allows only `allowed` (and end-of-generation never), and is complete
/// after `len` tokens (never when `len` is `None`).
#[derive(Debug)]
struct OnlyTokens {
    allowed: Vec<u32>,
    len: Option<usize>,
    seen: usize,
}

impl perch_engine::sampling::Constraint for OnlyTokens {
    fn mask(&mut self, logits: &mut [f32]) {
        for (i, l) in logits.iter_mut().enumerate() {
            if !self.allowed.contains(&(i as u32)) {
                *l = f32::NEG_INFINITY;
            }
        }
    }
    fn accept(&mut self, token: u32) -> Result<(), String> {
        if !self.allowed.contains(&token) {
            return Err(format!("token {token} is not allowed"));
        }
        self.seen += 1;
        Ok(())
    }
    fn is_finished(&self) -> bool {
        self.len.is_some_and(|n| self.seen >= n)
    }
}

#[test]
fn a_constraint_masks_and_ends_generation() {
    let f = fixture();
    let engine = start(&f, 1024, 512);
    let h = engine.handle();
    let allowed = vec![500, 600, 700];
    let constrained = |len: Option<usize>, max_tokens: usize, sampling: SamplingParams| {
        let mut r = request(prompt(3, 20), max_tokens);
        r.ignore_eos = false;
        r.sampling = sampling;
        r.constraint = Some(Box::new(OnlyTokens {
            allowed: allowed.clone(),
            len,
            seen: 0,
        }));
        r
    };
    // Complete after 5 tokens: stops there, with only allowed tokens.
    let (ids, finish, _) = collect(
        h.submit(constrained(Some(5), 50, SamplingParams::greedy()))
            .unwrap(),
    );
    assert_eq!(finish, FinishReason::Stop);
    assert_eq!(ids.len(), 5);
    assert!(ids.iter().all(|t| allowed.contains(t)), "{ids:?}");
    // Sampled (not greedy) too.
    let sampled = SamplingParams {
        seed: Some(9),
        temperature: 1.5,
        top_k: 0,
        top_p: 1.0,
        min_p: 0.0,
        ..Default::default()
    };
    let (ids, _, _) = collect(h.submit(constrained(Some(12), 50, sampled)).unwrap());
    assert!(ids.iter().all(|t| allowed.contains(t)), "{ids:?}");
    // Never complete: max_tokens ends it with Length.
    let (ids, finish, _) = collect(
        h.submit(constrained(None, 7, SamplingParams::greedy()))
            .unwrap(),
    );
    assert_eq!((ids.len(), finish), (7, FinishReason::Length));
    // The constrained sequence is the same alone and batched with unconstrained ones.
    let alone = collect(
        h.submit(constrained(Some(8), 50, SamplingParams::greedy()))
            .unwrap(),
    )
    .0;
    let others: Vec<_> = (0..4)
        .map(|i| {
            h.submit(request(prompt(10 + i, 15 + 7 * i as usize), 12))
                .unwrap()
        })
        .collect();
    let batched = collect(
        h.submit(constrained(Some(8), 50, SamplingParams::greedy()))
            .unwrap(),
    )
    .0;
    assert_eq!(alone, batched);
    for rx in others {
        assert_eq!(collect(rx).1, FinishReason::Length);
    }
    wait_until("blocks freed", || h.stats().pool.used == 0);
}
