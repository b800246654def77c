//! `perch perplexity` against llama-perplexity's recorded numbers, KL divergence against a base
//! file, and bad input.
//!
//! The text is the GPL version 3 as Debian's base-files ships it; the peer's numbers come from
//! `scripts/record_peer_perplexity.py` (context 128, 4 chunks).

mod common;
use common::{assert_one_line_error, perch, smollm2, stdout};

const TEXT: &str = "/usr/share/common-licenses/GPL-3";
/// Largest relative difference allowed between perch's and llama.cpp's perplexity: the two
/// compute the same quantized matrix products with different summation orders and F16 KV.
const TOLERANCE: f64 = 0.01;

/// With F32 weights nothing is quantized but the F16 KV cache, so the tools agree closely.
const TOLERANCE_F32: f64 = 0.002;

/// The running estimates llama-perplexity printed, recorded in `tests/data/{name}`.
fn peer_running(name: &str) -> (Vec<f64>, f64) {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    let peer: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let running = peer["running"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    (running, peer["ppl"].as_f64().unwrap())
}

/// `[1]a,[2]b,...` and the final estimate from perch's stdout.
fn parse_ppl(out: &str) -> (Vec<f64>, f64) {
    let mut lines = out.lines();
    let running = lines
        .next()
        .unwrap()
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.split(']').nth(1).unwrap().parse().unwrap())
        .collect();
    let last = lines.next().unwrap();
    let ppl = last
        .strip_prefix("Final estimate: PPL = ")
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    (running, ppl)
}

/// The number after `label` in a `--kl-divergence` report.
fn field(out: &str, label: &str) -> f64 {
    let line = out
        .lines()
        .find(|l| l.starts_with(label))
        .unwrap_or_else(|| panic!("no {label} in {out}"));
    line.split(':')
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn smollm2_q4_1_matches_llama_perplexity() {
    let (want, peer_ppl) = peer_running("peer_perplexity.json");
    let model = smollm2();
    let o = perch(&[
        "perplexity",
        &model,
        "-f",
        TEXT,
        "-c",
        "128",
        "-b",
        "128",
        "--chunks",
        "4",
    ]);
    let (running, ppl) = parse_ppl(&stdout(&o));
    assert_eq!(running.len(), want.len());
    for (i, (a, b)) in running.iter().zip(&want).enumerate() {
        assert!(
            (a / b - 1.0).abs() < TOLERANCE,
            "chunk {}: perch {a} vs llama.cpp {b}",
            i + 1
        );
    }
    assert!(
        (ppl / peer_ppl - 1.0).abs() < TOLERANCE,
        "perch {ppl} vs llama.cpp {peer_ppl}"
    );
}

#[test]
fn kl_divergence_against_itself_and_against_f32() {
    let dir = tempfile::tempdir().unwrap();
    let model = smollm2();
    let base = dir.path().join("q4_1.kld");
    let o = perch(&[
        "perplexity",
        &model,
        "-f",
        TEXT,
        "-c",
        "128",
        "--chunks",
        "2",
        "--kl-divergence-base",
        base.to_str().unwrap(),
    ]);
    let (_, ppl) = parse_ppl(&stdout(&o));
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(names.len(), 1, "no temporary file left");

    // Against itself: nothing differs but the base file's 16-bit rounding.
    let out = stdout(&perch(&[
        "perplexity",
        &model,
        "--kl-divergence",
        base.to_str().unwrap(),
    ]));
    assert!(field(&out, "Mean KLD").abs() < 1e-3, "{out}");
    assert_eq!(field(&out, "Same top token"), 100.0, "{out}");
    assert!(
        (field(&out, "Mean PPL(Q)") / ppl - 1.0).abs() < 1e-4,
        "{out}"
    );
    assert!(
        (field(&out, "Mean PPL(base)") / ppl - 1.0).abs() < 1e-3,
        "{out}"
    );

    // Q4_1 against its F32 dequantization.
    let f32_model = dir.path().join("f32.gguf");
    stdout(&perch(&[
        "quantize",
        &model,
        f32_model.to_str().unwrap(),
        "f32",
        "--allow-requantize",
    ]));
    let f32_base = dir.path().join("f32.kld");
    let o = perch(&[
        "perplexity",
        f32_model.to_str().unwrap(),
        "-f",
        TEXT,
        "-c",
        "128",
        "--chunks",
        "2",
        "--kl-divergence-base",
        f32_base.to_str().unwrap(),
    ]);
    // The F32 run also checks the chunking tightly against llama-perplexity's first two chunks.
    let (running, _) = parse_ppl(&stdout(&o));
    let (want, _) = peer_running("peer_perplexity_f32.json");
    for (i, (a, b)) in running.iter().zip(&want[..2]).enumerate() {
        assert!(
            (a / b - 1.0).abs() < TOLERANCE_F32,
            "F32 chunk {}: perch {a} vs llama.cpp {b}",
            i + 1
        );
    }
    let out = stdout(&perch(&[
        "perplexity",
        &model,
        "--kl-divergence",
        f32_base.to_str().unwrap(),
    ]));
    let kld = field(&out, "Mean KLD");
    assert!(kld > 1e-3 && kld < 1.0, "{out}");
    assert!(field(&out, "99.0% KLD") > kld, "{out}");
    let same = field(&out, "Same top token");
    assert!(same < 100.0 && same > 50.0, "{out}");
}

#[test]
fn bad_input_is_one_clear_line() {
    let model = smollm2();
    let dir = tempfile::tempdir().unwrap();
    let short = dir.path().join("short.txt");
    std::fs::write(&short, "Only a few words here.").unwrap();
    assert_one_line_error(
        &[
            "perplexity",
            &model,
            "-f",
            short.to_str().unwrap(),
            "-c",
            "128",
        ],
        "needs at least 256",
    );
    assert_one_line_error(
        &["perplexity", &model, "-f", TEXT, "-c", "1000000"],
        "training context",
    );
    assert_one_line_error(
        &["perplexity", &model, "-f", "/nonexistent/text"],
        "cannot read /nonexistent/text",
    );
    let junk = dir.path().join("junk.kld");
    std::fs::write(&junk, b"not a base file at all").unwrap();
    assert_one_line_error(
        &[
            "perplexity",
            &model,
            "--kl-divergence",
            junk.to_str().unwrap(),
        ],
        "not a KL-divergence base file",
    );
    assert_one_line_error(
        &[
            "perplexity",
            &model,
            "-f",
            TEXT,
            "-c",
            "128",
            "--chunks",
            "1",
            "--kl-divergence-base",
            "/nonexistent/dir/base.kld",
        ],
        "/nonexistent/dir/base.kld",
    );
}
