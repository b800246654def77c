//! The engine loop: continuous batching, prefix caching, preemption and cancellation, on a
//! tiny synthetic model (greedy decoding, so outputs are deterministic).

use std::sync::Arc;
use std::time::{Duration, Instant};

use perch_engine::draft::DraftConfig;
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
    start_drafting(f, n_blocks, max_batch_tokens, speculative, None).unwrap()
}

fn start_drafting(
    f: &Fixture,
    n_blocks: usize,
    max_batch_tokens: usize,
    speculative: Option<Speculative>,
    draft: Option<DraftConfig>,
) -> perch_engine::Result<Engine> {
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
            draft,
        },
    )
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

/// A synthetic model with the fixture's vocabulary (SmolLM2's), written into `dir`.
fn synth_model(dir: &std::path::Path, name: &str, spec: &SynthSpec) -> Arc<Model> {
    let path = dir.join(name);
    let vocab = GgufFile::open(perch_fixtures::smollm2_q4_1()).unwrap();
    synth::write(spec, &vocab, &path, |_, _| {}).unwrap();
    Arc::new(Model::open(&path).unwrap())
}

/// Drafting with `model`, up to `max` tokens per step, never stopping early.
fn draft_cfg(f: &Fixture, model: Arc<Model>, max: usize) -> DraftConfig {
    let mut d = DraftConfig::new(model, &f.tokenizer).unwrap();
    d.max_draft = max;
    d.p_min = 0.0;
    d
}

/// The draft models of the tests: the target itself (every guess right), the target's own
/// weights quantized to Q4_0 (most guesses right) and an unrelated random model of another
/// architecture and depth (most guesses wrong, so most drafts are rolled back).
fn draft_models(f: &Fixture, dir: &std::path::Path) -> Vec<(&'static str, Arc<Model>)> {
    let mut close = SynthSpec::tiny(Arch::Qwen2, GgmlType::Q4_0, 7);
    close.n_ctx = 4096;
    let mut other = SynthSpec::tiny(Arch::Llama, GgmlType::Q8_0, 99);
    other.n_layer = 1;
    other.n_ctx = 4096;
    vec![
        ("itself", f.model.clone()),
        ("q4_0", synth_model(dir, "close.gguf", &close)),
        ("unrelated", synth_model(dir, "other.gguf", &other)),
    ]
}

/// Runs `reqs` together on an engine and collects the outputs and final counters, after
/// checking that every block of both KV caches came back.
fn run_all(
    f: &Fixture,
    reqs: impl Iterator<Item = GenerationRequest>,
    n_blocks: usize,
    draft: Option<DraftConfig>,
) -> (
    Vec<(Vec<u32>, FinishReason, Usage)>,
    perch_engine::engine::EngineStats,
) {
    let engine = start_drafting(f, n_blocks, 128, None, draft).unwrap();
    let h = engine.handle();
    let rxs: Vec<_> = reqs.map(|r| h.submit(r).unwrap()).collect();
    let outs = rxs.into_iter().map(collect).collect();
    wait_until("blocks freed", || {
        let s = h.stats();
        s.pool.used == 0 && s.draft_blocks_used == 0
    });
    (outs, h.stats())
}

fn mixed_prompts() -> Vec<Vec<u32>> {
    let mut prompts: Vec<Vec<u32>> = (0..3)
        .map(|i| prompt(i, 5 + i as usize).repeat(8))
        .collect();
    prompts.extend((3..8).map(|i| prompt(i, 20 + 3 * i as usize)));
    prompts
}

#[test]
fn draft_model_speculation_keeps_greedy_outputs_exactly() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let prompts = mixed_prompts();
    let reqs = || prompts.iter().map(|p| request(p.clone(), 40));
    let (plain, plain_stats) = run_all(&f, reqs(), 1024, None);
    let n_out: u64 = plain.iter().map(|o| o.0.len() as u64).sum();
    for (name, model) in draft_models(&f, dir.path()) {
        let (outs, stats) = run_all(&f, reqs(), 1024, Some(draft_cfg(&f, model.clone(), 4)));
        for (i, (a, b)) in plain.iter().zip(&outs).enumerate() {
            assert_eq!(
                a.0, b.0,
                "draft {name}, request {i}: the greedy output changed"
            );
            assert_eq!((a.1, a.2), (b.1, b.2), "draft {name}, request {i}");
        }
        eprintln!("draft {name}: {stats:?} (without: {plain_stats:?})");
        assert!(stats.draft_tokens > 0, "draft {name}: {stats:?}");
        assert!(stats.draft_model_steps > 0, "draft {name}: {stats:?}");
        assert!(stats.draft_accepted <= stats.draft_tokens);
        match name {
            "itself" => {
                // Every guess is the target's own greedy choice.
                assert_eq!(stats.draft_accepted, stats.draft_tokens, "{stats:?}");
                // Up to 5 tokens per decode step (4 guesses and the target's next token).
                assert!(
                    stats.steps * 3 < plain_stats.steps,
                    "{stats:?} vs {plain_stats:?}"
                );
            }
            "q4_0" => assert!(
                stats.draft_accepted > 0 && stats.draft_accepted < stats.draft_tokens,
                "some guesses right, some rolled back: {stats:?}"
            ),
            _ => assert!(
                stats.draft_accepted * 2 < stats.draft_tokens,
                "mostly rolled back: {stats:?}"
            ),
        }
        // Under pool pressure, sequences are preempted (their draft state dropped with the
        // rest) and recomputed; the outputs still agree.
        let (tight, stats) = run_all(&f, reqs(), 24, Some(draft_cfg(&f, model, 4)));
        assert!(
            stats.preemptions > 0,
            "draft {name}: no preemption: {stats:?}"
        );
        for (i, (a, b)) in plain.iter().zip(&tight).enumerate() {
            assert_eq!(
                a.0, b.0,
                "draft {name}, request {i}: changed under preemption"
            );
        }
    }
    assert!(n_out > 0);
}

#[test]
fn draft_model_speculation_keeps_seeded_sampling_exactly() {
    // Each emitted token is still one draw of the request's sampler from the target's logits
    // at its position, so a seeded sampler gives the same tokens with or without drafts.
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let prompts = mixed_prompts();
    let reqs = || {
        prompts.iter().enumerate().map(|(i, p)| {
            let mut r = request(p.clone(), 32);
            r.sampling = SamplingParams {
                temperature: 1.5,
                top_k: 0,
                top_p: 1.0,
                min_p: 0.0,
                seed: Some(i as u64),
                ..SamplingParams::default()
            };
            r
        })
    };
    let (plain, _) = run_all(&f, reqs(), 1024, None);
    for (name, model) in draft_models(&f, dir.path()) {
        let (outs, stats) = run_all(&f, reqs(), 1024, Some(draft_cfg(&f, model, 4)));
        assert!(stats.draft_tokens > 0);
        for (i, (a, b)) in plain.iter().zip(&outs).enumerate() {
            assert_eq!(
                a.0, b.0,
                "draft {name}, request {i}: the sampled output changed"
            );
        }
    }
}

#[test]
fn cancelling_a_drafting_request_frees_the_draft_cache() {
    let f = fixture();
    let engine =
        start_drafting(&f, 1024, 128, None, Some(draft_cfg(&f, f.model.clone(), 6))).unwrap();
    let h = engine.handle();
    let mut rx = h.submit(request(prompt(3, 50), 3000)).unwrap();
    for _ in 0..20 {
        match rx.blocking_recv() {
            Some(Event::Token { .. }) => {}
            other => panic!("expected tokens, got {other:?}"),
        }
    }
    let s = h.stats();
    assert!(s.draft_blocks_used > 0 && s.draft_model_steps > 0, "{s:?}");
    drop(rx);
    wait_until("both caches freed", || {
        let s = h.stats();
        s.running == 0 && s.pool.used == 0 && s.draft_blocks_used == 0
    });
}

#[test]
fn draft_settings_are_checked() {
    let f = fixture();
    let d = draft_cfg(&f, f.model.clone(), 4);
    let Err(e) = start_drafting(&f, 64, 128, Some(Speculative::ngram(4)), Some(d.clone())) else {
        panic!("prompt lookup and a draft model together were accepted");
    };
    assert!(e.to_string().contains("--draft-ngram"), "{e}");
    let mut zero = d.clone();
    zero.max_draft = 0;
    let Err(e) = start_drafting(&f, 64, 128, None, Some(zero)) else {
        panic!("a zero draft length was accepted");
    };
    assert!(e.to_string().contains("--draft-max"), "{e}");
    let mut min = d;
    min.min_draft = 5;
    let Err(e) = start_drafting(&f, 64, 128, None, Some(min)) else {
        panic!("a minimum above the maximum was accepted");
    };
    assert!(e.to_string().contains("--draft-min"), "{e}");
}

#[test]
fn the_draft_cache_reuses_known_prefixes() {
    let f = fixture();
    let engine =
        start_drafting(&f, 1024, 128, None, Some(draft_cfg(&f, f.model.clone(), 4))).unwrap();
    let h = engine.handle();
    let p = prompt(11, 100);
    let first = collect(h.submit(request(p.clone(), 20)).unwrap());
    wait_until("finished", || h.stats().running == 0);
    let before = h.stats();
    // The prompt again, then a longer conversation starting with the first exchange.
    let again = collect(h.submit(request(p.clone(), 20)).unwrap());
    wait_until("finished", || h.stats().running == 0);
    let after = h.stats();
    assert_eq!(first.0, again.0);
    // The draft model computed only what its cache lacked: the prompt's last partial block
    // (100 = 6 × 16 + 4) and the guesses, not the whole prompt again.
    let recomputed = after.draft_model_tokens - before.draft_model_tokens;
    let first_time = before.draft_model_tokens;
    assert!(
        recomputed + 90 <= first_time,
        "computed {recomputed} tokens the second time, {first_time} the first"
    );
    let mut longer = p.clone();
    longer.extend(&first.0);
    longer.extend(prompt(12, 30));
    let alone = {
        let e = start(&f, 1024, 128);
        collect(e.handle().submit(request(longer.clone(), 20)).unwrap()).0
    };
    assert_eq!(collect(h.submit(request(longer, 20)).unwrap()).0, alone);
    wait_until("freed", || {
        let s = h.stats();
        s.running == 0 && s.pool.used == 0 && s.draft_blocks_used == 0
    });
}
