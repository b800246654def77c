//! Tests of the sampler chain. Expected values are computed here independently (f64 softmax,
//! full sorts, llama.cpp's formulas written out), never taken from the code under test.

use super::*;

/// Deterministic pseudo-random logits in [-8, 8) (xorshift64*), for hand-made inputs.
fn logits(n: usize, seed: u64) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            let u = (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64;
            (u * 16.0 - 8.0) as f32
        })
        .collect()
}

fn softmax64(l: &[f32]) -> Vec<f64> {
    let max = l.iter().fold(f64::NEG_INFINITY, |m, &x| m.max(x as f64));
    let e: Vec<f64> = l.iter().map(|&x| (x as f64 - max).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|v| v / s).collect()
}

/// Token ids sorted by descending logit, ties by id.
fn ranked(l: &[f32]) -> Vec<u32> {
    let mut ids: Vec<u32> = (0..l.len() as u32).collect();
    ids.sort_by(|&a, &b| l[b as usize].total_cmp(&l[a as usize]).then(a.cmp(&b)));
    ids
}

fn ids(c: &Candidates) -> Vec<u32> {
    c.as_slice().iter().map(|d| d.id).collect()
}

fn sorted_ids(c: &Candidates) -> Vec<u32> {
    let mut v = ids(c);
    v.sort();
    v
}

#[test]
fn penalties_follow_llama_cpp_formulas() {
    let raw = [2.0f32, -1.0, 0.5, 3.0, 0.0, -2.0];
    let (repeat, freq, presence) = (1.5f32, 0.25f32, 0.5f32);
    let mut pen = Penalties::new(4, repeat, freq, presence);
    // Window of 4: the first 3 falls out; counts {0: 2, 1: 1, 4: 1}.
    for t in [3, 0, 1, 0, 4] {
        pen.accept(t);
    }
    let mut c = Candidates::from_logits(&raw);
    pen.apply(&mut c);
    let counts = [2.0f32, 1.0, 0.0, 0.0, 1.0, 0.0];
    for (i, d) in c.as_slice().iter().enumerate() {
        let l = raw[i];
        let want = if counts[i] == 0.0 {
            l
        } else {
            // llama_sampler_penalties_apply: divide positive, multiply non-positive, then
            // subtract count * frequency + presence.
            let r = if l <= 0.0 { l * repeat } else { l / repeat };
            r - (counts[i] * freq + presence)
        };
        assert_eq!(d.logit, want, "token {i}");
    }
    pen.reset();
    let mut c = Candidates::from_logits(&raw);
    pen.apply(&mut c);
    assert_eq!(
        c.as_slice().iter().map(|d| d.logit).collect::<Vec<_>>(),
        raw
    );
}

#[test]
fn top_k_keeps_the_k_highest_in_order() {
    for &(n, k) in &[
        (1000usize, 1usize),
        (1000, 40),
        (151_936, 40),
        (50, 50),
        (50, 80),
    ] {
        let l = logits(n, k as u64 + n as u64);
        let mut c = Candidates::from_logits(&l);
        TopK::new(k).apply(&mut c);
        let want: Vec<u32> = ranked(&l).into_iter().take(k).collect();
        assert_eq!(ids(&c), want, "n={n} k={k}");
        assert!(c.is_sorted());
    }
}

fn top_p_expected(l: &[f32], p: f64) -> Vec<u32> {
    let probs = softmax64(l);
    let mut out = Vec::new();
    let mut cum = 0.0;
    for id in ranked(l) {
        out.push(id);
        cum += probs[id as usize];
        if cum >= p {
            break;
        }
    }
    out.sort();
    out
}

#[test]
fn top_p_keeps_smallest_set_reaching_the_mass() {
    for &(n, p, scale) in &[
        (100usize, 0.5f32, 1.0f32),
        (1000, 0.9, 1.0),
        (32_000, 0.95, 1.0),
        // Flat logits: the mass needs far more than the first 256 tokens.
        (5000, 0.9, 0.01),
    ] {
        let l: Vec<f32> = logits(n, 7 + n as u64).iter().map(|x| x * scale).collect();
        let mut c = Candidates::from_logits(&l);
        TopP::new(p).apply(&mut c);
        let want = top_p_expected(&l, p as f64);
        // f32 accumulation may differ from f64 at the boundary by one token at most.
        let got = sorted_ids(&c);
        assert!(
            got == want || got.len().abs_diff(want.len()) == 1,
            "n={n} p={p}: kept {} tokens, expected {}",
            got.len(),
            want.len()
        );
        let common = got.len().min(want.len());
        let r = ranked(&l);
        assert_eq!(
            ids(&c)[..common],
            r[..common],
            "kept tokens are the most likely, in order"
        );
        if scale < 1.0 {
            assert!(got.len() > 256, "flat case must go past the first try");
        }
    }
}

#[test]
fn min_p_drops_tokens_below_fraction_of_max() {
    let l = logits(5000, 3);
    for &p in &[0.05f32, 0.2, 0.9] {
        let mut c = Candidates::from_logits(&l);
        MinP::new(p).apply(&mut c);
        let probs = softmax64(&l);
        let pmax = probs.iter().cloned().fold(0.0, f64::max);
        let want: Vec<u32> = (0..l.len() as u32)
            .filter(|&i| probs[i as usize] >= p as f64 * pmax * (1.0 - 1e-6))
            .collect();
        assert_eq!(sorted_ids(&c), want, "min_p={p}");
    }
}

#[test]
fn typical_keeps_locally_typical_tokens() {
    let l = logits(300, 11);
    let p = 0.5;
    let mut c = Candidates::from_logits(&l);
    Typical::new(p).apply(&mut c);
    // Written out from the definition: entropy H, score |-ln p_i - H|, take tokens by
    // ascending score until their mass exceeds p.
    let probs = softmax64(&l);
    let h: f64 = probs
        .iter()
        .filter(|&&q| q > 0.0)
        .map(|q| -q * q.ln())
        .sum();
    let mut order: Vec<u32> = (0..l.len() as u32).collect();
    order.sort_by(|&a, &b| {
        let sa = (-probs[a as usize].ln() - h).abs();
        let sb = (-probs[b as usize].ln() - h).abs();
        sa.total_cmp(&sb)
    });
    let mut want = Vec::new();
    let mut cum = 0.0;
    for id in order {
        want.push(id);
        cum += probs[id as usize];
        if cum > p as f64 {
            break;
        }
    }
    want.sort();
    assert_eq!(sorted_ids(&c), want);
}

#[test]
fn temperature_divides_logits() {
    let l = [1.0f32, -2.0, 0.5];
    let mut c = Candidates::from_logits(&l);
    Temperature::new(0.5).apply(&mut c);
    assert_eq!(
        c.as_slice().iter().map(|d| d.logit).collect::<Vec<_>>(),
        vec![2.0, -4.0, 1.0]
    );
}

#[test]
fn greedy_picks_argmax_lowest_id_on_ties() {
    let l = [0.5f32, 3.0, -1.0, 3.0, 2.9];
    for seed in [1, 2, 3] {
        let params = SamplingParams {
            seed: Some(seed),
            ..SamplingParams::greedy()
        };
        let mut s = Sampler::new(&params, l.len()).unwrap();
        assert_eq!(s.sample(&l).unwrap(), 1);
    }
}

#[test]
fn logit_bias_shifts_and_bans() {
    let l = [0.5f32, 3.0, -1.0, 2.0];
    let params = SamplingParams {
        logit_bias: vec![(1, f32::NEG_INFINITY), (2, 2.75)],
        ..SamplingParams::greedy()
    };
    let mut s = Sampler::new(&params, l.len()).unwrap();
    // Token 1 banned; token 2 becomes -1 + 2.75 = 1.75 < 2.0, so token 3 wins.
    assert_eq!(s.sample(&l).unwrap(), 3);
    let params = SamplingParams {
        logit_bias: vec![(2, 5.0)],
        ..SamplingParams::greedy()
    };
    let mut s = Sampler::new(&params, l.len()).unwrap();
    assert_eq!(s.sample(&l).unwrap(), 2);
    // Banning everything is an error, not a panic or a banned token.
    let params = SamplingParams {
        logit_bias: (0..4).map(|t| (t, f32::NEG_INFINITY)).collect(),
        ..Default::default()
    };
    let mut s = Sampler::new(&params, l.len()).unwrap();
    assert_eq!(s.sample(&l), Err(SamplingError::NoCandidates));
}

#[test]
fn repeat_penalty_changes_greedy_choice_after_accept() {
    let l = [1.0f32, 2.0, 1.5];
    let params = SamplingParams {
        repeat_penalty: 2.0,
        penalty_last_n: 8,
        ..SamplingParams::greedy()
    };
    let mut s = Sampler::new(&params, 3).unwrap();
    assert_eq!(s.sample(&l).unwrap(), 1);
    s.accept(1); // 2.0 / 2 = 1.0 < 1.5
    assert_eq!(s.sample(&l).unwrap(), 2);
    s.reset();
    assert_eq!(s.sample(&l).unwrap(), 1);
}

fn run(params: &SamplingParams, n: usize, steps: usize) -> Vec<u32> {
    let mut s = Sampler::new(params, n).unwrap();
    (0..steps)
        .map(|i| {
            let t = s.sample(&logits(n, 100 + i as u64)).unwrap();
            s.accept(t);
            t
        })
        .collect()
}

#[test]
fn same_seed_same_tokens_different_seed_differs() {
    let params = |seed| SamplingParams {
        temperature: 1.0,
        top_k: 0,
        top_p: 1.0,
        min_p: 0.0,
        seed: Some(seed),
        ..Default::default()
    };
    let a = run(&params(42), 2000, 64);
    assert_eq!(a, run(&params(42), 2000, 64));
    assert_ne!(a, run(&params(43), 2000, 64));
    // reset() restarts the generator.
    let mut s = Sampler::new(&params(42), 2000).unwrap();
    let l = logits(2000, 5);
    let first: Vec<u32> = (0..10).map(|_| s.sample(&l).unwrap()).collect();
    s.reset();
    let again: Vec<u32> = (0..10).map(|_| s.sample(&l).unwrap()).collect();
    assert_eq!(first, again);
    assert_eq!(s.seed(), 42);
}

#[test]
fn draws_follow_the_softmax() {
    // p = [0.1, 0.2, 0.3, 0.4]
    let l: Vec<f32> = [1.0f32, 2.0, 3.0, 4.0].iter().map(|x| x.ln()).collect();
    let params = SamplingParams {
        temperature: 1.0,
        top_k: 0,
        top_p: 1.0,
        min_p: 0.0,
        seed: Some(7),
        ..Default::default()
    };
    let mut s = Sampler::new(&params, 4).unwrap();
    let n = 40_000;
    let mut counts = [0usize; 4];
    for _ in 0..n {
        counts[s.sample(&l).unwrap() as usize] += 1;
    }
    for (i, &c) in counts.iter().enumerate() {
        let want = (i + 1) as f64 / 10.0;
        let got = c as f64 / n as f64;
        // 5 standard deviations of a binomial proportion.
        let tol = 5.0 * (want * (1.0 - want) / n as f64).sqrt();
        assert!((got - want).abs() < tol, "token {i}: {got} vs {want}");
    }

    // Temperature 2 flattens: p ∝ sqrt([1, 2, 3, 4]).
    let params = SamplingParams {
        temperature: 2.0,
        ..params
    };
    let mut s = Sampler::new(&params, 4).unwrap();
    let mut counts = [0usize; 4];
    for _ in 0..n {
        counts[s.sample(&l).unwrap() as usize] += 1;
    }
    let z: f64 = (1..=4).map(|k| (k as f64).sqrt()).sum();
    for (i, &c) in counts.iter().enumerate() {
        let want = ((i + 1) as f64).sqrt() / z;
        let got = c as f64 / n as f64;
        let tol = 5.0 * (want * (1.0 - want) / n as f64).sqrt();
        assert!((got - want).abs() < tol, "T=2 token {i}: {got} vs {want}");
    }
}

#[test]
fn chain_samples_only_from_surviving_tokens() {
    let n = 151_936;
    let l = logits(n, 99);
    let params = SamplingParams {
        temperature: 1.0,
        top_k: 20,
        top_p: 0.95,
        min_p: 0.05,
        seed: Some(1),
        ..Default::default()
    };
    let allowed: Vec<u32> = ranked(&l).into_iter().take(20).collect();
    let mut s = Sampler::new(&params, n).unwrap();
    for _ in 0..200 {
        let t = s.sample(&l).unwrap();
        assert!(allowed.contains(&t), "{t} is not in the top 20");
    }
    assert_eq!(
        s.stage_names(),
        vec!["top-k", "top-p", "min-p", "dist"],
        "temperature 1 is a no-op stage and is left out"
    );
}

#[test]
fn default_order_is_llama_cpp_order() {
    let params = SamplingParams {
        temperature: 0.7,
        top_k: 40,
        top_p: 0.9,
        min_p: 0.05,
        typical_p: 0.95,
        repeat_penalty: 1.1,
        logit_bias: vec![(0, 1.0)],
        seed: Some(1),
        ..Default::default()
    };
    let s = Sampler::new(&params, 10).unwrap();
    assert_eq!(
        s.stage_names(),
        vec![
            "logit-bias",
            "penalties",
            "top-k",
            "typical",
            "top-p",
            "min-p",
            "temperature",
            "dist"
        ]
    );
}

#[test]
fn bad_params_and_logits_are_errors() {
    let bad = [
        SamplingParams {
            top_p: 0.0,
            ..Default::default()
        },
        SamplingParams {
            top_p: 1.5,
            ..Default::default()
        },
        SamplingParams {
            min_p: -0.1,
            ..Default::default()
        },
        SamplingParams {
            typical_p: 0.0,
            ..Default::default()
        },
        SamplingParams {
            temperature: f32::NAN,
            ..Default::default()
        },
        SamplingParams {
            repeat_penalty: 0.0,
            ..Default::default()
        },
        SamplingParams {
            frequency_penalty: f32::INFINITY,
            ..Default::default()
        },
        SamplingParams {
            logit_bias: vec![(0, f32::NAN)],
            ..Default::default()
        },
    ];
    for p in &bad {
        assert!(
            matches!(Sampler::new(p, 10), Err(SamplingError::InvalidParam { .. })),
            "{p:?}"
        );
    }
    let p = SamplingParams {
        logit_bias: vec![(10, 1.0)],
        ..Default::default()
    };
    assert_eq!(
        Sampler::new(&p, 10).unwrap_err(),
        SamplingError::BiasTokenOutOfRange {
            token: 10,
            n_vocab: 10
        }
    );
    let mut s = Sampler::new(&SamplingParams::default(), 10).unwrap();
    assert_eq!(
        s.sample(&[0.0; 9]),
        Err(SamplingError::LogitsLength {
            got: 9,
            n_vocab: 10
        })
    );
    // NaN logits are never chosen.
    let mut l = vec![f32::NAN; 10];
    l[6] = -3.0;
    assert_eq!(s.sample(&l).unwrap(), 6);
    assert_eq!(s.sample(&[f32::NAN; 10]), Err(SamplingError::NoCandidates));
}

#[test]
fn logprobs_are_log_softmax_of_raw_logits() {
    let l = logits(3000, 17);
    let probs = softmax64(&l);
    let lp = logprobs(&l, 123, 5).unwrap();
    assert_eq!(lp.chosen.token, 123);
    assert!((lp.chosen.logprob as f64 - probs[123].ln()).abs() < 1e-4);
    let want: Vec<u32> = ranked(&l).into_iter().take(5).collect();
    assert_eq!(lp.top.iter().map(|t| t.token).collect::<Vec<_>>(), want);
    for t in &lp.top {
        assert!((t.logprob as f64 - probs[t.token as usize].ln()).abs() < 1e-4);
    }
    // Ties: lower id first.
    let lp = logprobs(&[1.0, 2.0, 2.0, 0.0], 0, 2).unwrap();
    assert_eq!(
        lp.top.iter().map(|t| t.token).collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert!((lp.top[0].logprob - lp.top[1].logprob).abs() == 0.0);
    assert!(logprobs(&l, 3000, 5).is_none());
    assert!(logprobs(&[f32::NEG_INFINITY; 3], 0, 1).is_none());
    assert_eq!(logprobs(&l, 1, 0).unwrap().top, vec![]);
}

mod stop_matcher {
    use super::super::stop::*;

    fn feed(m: &mut StopMatcher, deltas: &[&str]) -> (String, bool) {
        let mut out = String::new();
        for d in deltas {
            let o = m.push(d);
            out.push_str(&o.emit);
            if o.stopped {
                return (out, true);
            }
        }
        out.push_str(&m.finish());
        (out, false)
    }

    #[test]
    fn stop_split_over_three_deltas() {
        let mut m = StopMatcher::new(["<|end|>"]);
        assert_eq!(
            m.push("Hello <|"),
            StopOutcome {
                emit: "Hello ".into(),
                stopped: false,
                stop: None
            }
        );
        assert_eq!(
            m.push("en"),
            StopOutcome {
                emit: "".into(),
                stopped: false,
                stop: None
            }
        );
        assert_eq!(
            m.push("d|> trailing"),
            StopOutcome {
                emit: "".into(),
                stopped: true,
                stop: Some(Stop::String("<|end|>".into()))
            }
        );
        assert!(m.is_stopped());
        assert_eq!(m.push("more").emit, "");
        assert_eq!(m.finish(), "");
    }

    #[test]
    fn false_start_is_released() {
        let mut m = StopMatcher::new(["STOP"]);
        assert_eq!(m.push("a ST").emit, "a ");
        assert_eq!(m.push("OR").emit, "STOR");
        assert_eq!(m.push("e ST").emit, "e ");
        assert_eq!(m.push("O").emit, "");
        // The stream ends without the stop string: finish() releases the held-back "STO".
        assert_eq!(m.finish(), "STO");
        let mut m = StopMatcher::new(["STOP"]);
        assert_eq!(feed(&mut m, &["x ST", "O"]), ("x STO".to_string(), false));
    }

    #[test]
    fn overlapping_candidates() {
        // "abcd" and "bc": "bc" completes first, while "abcd" is still open.
        let mut m = StopMatcher::new(["abcd", "bc"]);
        assert_eq!(feed(&mut m, &["xa", "bc", "d"]), ("xa".to_string(), true));
        // Both complete in the same delta: the earlier start ("abcd") wins.
        let mut m = StopMatcher::new(["abcd", "bc"]);
        assert_eq!(feed(&mut m, &["xa", "b", "cd"]), ("x".to_string(), true));
        // Self-overlapping stop string: "aab" inside "aaab".
        let mut m = StopMatcher::new(["aab"]);
        assert_eq!(feed(&mut m, &["a", "a", "a", "b"]), ("a".to_string(), true));
        // The earliest match wins even if another stop string is listed first.
        let mut m = StopMatcher::new(["world", "lo"]);
        assert_eq!(feed(&mut m, &["hello world"]), ("hel".to_string(), true));
    }

    #[test]
    fn multibyte_characters() {
        let mut m = StopMatcher::new(["日本"]);
        assert_eq!(m.push("こんにちは日").emit, "こんにちは");
        assert_eq!(m.push("本語").emit, "");
        assert!(m.is_stopped());
        // A tail sharing bytes with a stop string's first character but not the character.
        let mut m = StopMatcher::new(["é!"]);
        assert_eq!(feed(&mut m, &["café", "?"]), ("café?".to_string(), false));
        let mut m = StopMatcher::new(["é!"]);
        assert_eq!(feed(&mut m, &["café", "!x"]), ("caf".to_string(), true));
    }

    #[test]
    fn stop_tokens_end_without_their_text() {
        let eos = 2;
        let mut m = StopMatcher::new(["STOP"]).with_stop_tokens([eos, 7]);
        assert_eq!(m.push_token(5, "ok ST").emit, "ok ");
        // EOS arrives while "ST" is held back: it is released, EOS's text is not emitted.
        assert_eq!(
            m.push_token(eos, "</s>"),
            StopOutcome {
                emit: "ST".into(),
                stopped: true,
                stop: Some(Stop::Token(eos))
            }
        );
        let after = m.push_token(5, "more");
        assert!(after.stopped && after.emit.is_empty());
        // Without stop tokens, push_token is push.
        let mut m = StopMatcher::new(["x"]);
        assert_eq!(m.push_token(2, "</s>").emit, "</s>");
        // On a tie at the same position, the longest stop string is reported.
        let mut m = StopMatcher::new(["ab", "abc"]);
        assert_eq!(m.push("zabc").stop, Some(Stop::String("abc".into())));
    }

    #[test]
    fn stop_at_start_and_no_stops() {
        let mut m = StopMatcher::new(["\n\n"]);
        assert_eq!(m.push("\n\nHi").emit, "");
        assert!(m.is_stopped());
        let mut m = StopMatcher::new(Vec::<String>::new());
        assert_eq!(m.push("anything <|").emit, "anything <|");
        let mut m = StopMatcher::new([""]);
        assert_eq!(m.push("x").emit, "x");
    }
}

/// The lane-wise argmax against a plain scan (strictly greater wins, so the lowest index of
/// the maximum, NaN skipped): ties across lanes and in the tail, NaN, all `-inf`, lengths
/// not divisible by sixteen.
#[test]
fn argmax_matches_a_plain_scan() {
    fn scan(l: &[f32]) -> Option<u32> {
        let (mut best, mut best_l) = (None, f32::NEG_INFINITY);
        for (i, &x) in l.iter().enumerate() {
            if x > best_l {
                best = Some(i as u32);
                best_l = x;
            }
        }
        best
    }
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for len in [0usize, 1, 5, 15, 16, 17, 33, 100, 1000] {
        for case in 0..20 {
            let mut l: Vec<f32> = (0..len).map(|_| (next() % 7) as f32 - 3.0).collect();
            for v in l.iter_mut() {
                match (next() % 10, case % 4) {
                    (0, 1) => *v = f32::NAN,
                    (0, 2) => *v = f32::NEG_INFINITY,
                    (_, 3) => *v = f32::NEG_INFINITY,
                    _ => {}
                }
            }
            assert_eq!(super::argmax(&l), scan(&l), "len {len} case {case}: {l:?}");
        }
    }
    assert_eq!(super::argmax(&[f32::NAN, 1.0, f32::NAN]), Some(1));
    assert_eq!(super::argmax(&[f32::NAN; 20]), None);
}
