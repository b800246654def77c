//! Quantizers against references recorded by `scripts/gen_quant_refs.py` on shared rows
//! (random rows of several spreads, heavy tails, all-zero and half-zero rows, maximal and
//! tiny magnitudes, constant rows, values on level boundaries):
//!
//! * bit-exact: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, TQ1_0, TQ2_0, MXFP4 against gguf-py 0.19.0
//!   (which the generator checked equal to llama.cpp), Q8_1, Q8_K, Q1_0, Q2_0 against
//!   llama.cpp's ggml-quants.c;
//! * accuracy: Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS against llama.cpp's
//!   `quantize_<type>` on the same rows, without and with the same importance vector, and
//!   Q4_0, Q4_1, Q5_0, Q5_1 with it (their importance-weighted quantizers): per row, perch's
//!   squared error (importance-weighted when a vector is given) must not exceed llama.cpp's
//!   by more than a factor 1.0001 (plus 1e-30 for all-zero rows);
//! * and beyond that, Q4_K, Q5_K and Q6_K without a vector bit-exact against llama.cpp's
//!   `quantize_<type>` (ggml's reference search; `src/quantize/kquants.rs` says why).

mod common;

use common::*;
use perch_quant::{GgmlType, dequantize_row, quantize_row};

struct Data {
    n_rows: usize,
    n: usize,
    rows: Vec<f32>,
    imatrix: Vec<f32>,
    types: serde_json::Map<String, serde_json::Value>,
}

fn data() -> Data {
    let m = manifest("quant/manifest.json");
    let n_rows = m["n_rows"].as_u64().unwrap() as usize;
    let n = m["n_per_row"].as_u64().unwrap() as usize;
    let rows = f32s(&read("quant/rows.f32"));
    assert_eq!(rows.len(), n_rows * n);
    let imatrix = f32s(&read("quant/imatrix.f32"));
    assert_eq!(imatrix.len(), n);
    let types = m["types"].as_object().unwrap().clone();
    Data {
        n_rows,
        n,
        rows,
        imatrix,
        types,
    }
}

fn row_bytes(ty: GgmlType, n: usize) -> usize {
    n / ty.block_size() * ty.type_size()
}

#[test]
fn manifest_covers_every_quantizer() {
    let d = data();
    for name in [
        "q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q8_1", "tq1_0", "tq2_0", "mxfp4", "q8_K", "q1_0",
        "q2_0", "q2_K", "q3_K", "q4_K", "q5_K", "q6_K", "iq4_nl", "iq4_xs",
    ] {
        assert!(
            d.types.contains_key(name),
            "no quantizer reference for {name}"
        );
        assert!(perch_quant::has_quantizer(ty(name)), "{name}");
    }
}

#[test]
fn reference_quantizers_are_bit_exact() {
    let d = data();
    let mut failures = Vec::new();
    let mut checked = 0;
    for (name, entry) in &d.types {
        if !entry["files"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "ref")
        {
            continue;
        }
        let ty = ty(name);
        let want = read(&format!("quant/{name}.ref"));
        let rb = row_bytes(ty, d.n);
        assert_eq!(want.len(), rb * d.n_rows, "{name}");
        for r in 0..d.n_rows {
            let src = &d.rows[r * d.n..(r + 1) * d.n];
            let mut got = vec![0u8; rb];
            // Types that do not use an importance vector accept one and ignore it.
            let im = (!perch_quant::quantize::uses_imatrix(ty)).then_some(&d.imatrix[..]);
            quantize_row(ty, src, &mut got, im).unwrap();
            let w = &want[r * rb..(r + 1) * rb];
            if let Some(b) = (0..rb / ty.type_size()).find(|&b| {
                got[b * ty.type_size()..][..ty.type_size()]
                    != w[b * ty.type_size()..][..ty.type_size()]
            }) {
                failures.push(format!(
                    "{name}: row {r} block {b} differs from {}\n  got  {:02x?}\n  want {:02x?}",
                    entry["reference"],
                    &got[b * ty.type_size()..][..ty.type_size()],
                    &w[b * ty.type_size()..][..ty.type_size()]
                ));
            }
            // Rows of a single block give the same blocks.
            let bs = ty.block_size();
            let mut one = vec![0u8; ty.type_size()];
            quantize_row(ty, &src[..bs], &mut one, None).unwrap();
            assert_eq!(one, got[..ty.type_size()], "{name}: single-block row {r}");
            checked += 1;
        }
    }
    assert!(checked >= 12 * d.n_rows);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Without an importance vector, Q4_K, Q5_K and Q6_K run ggml's reference search alone
/// (`quantize_row_qX_K_ref`, what llama-quantize writes then): the same bytes as llama.cpp.
#[test]
fn k_quants_without_imatrix_are_llama_cpp_bit_for_bit() {
    let d = data();
    for name in ["q4_K", "q5_K", "q6_K"] {
        let ty = ty(name);
        let rb = row_bytes(ty, d.n);
        let theirs = read(&format!("quant/{name}.ggml"));
        assert_eq!(theirs.len(), rb * d.n_rows, "{name}.ggml");
        for r in 0..d.n_rows {
            let mut ours = vec![0u8; rb];
            quantize_row(ty, &d.rows[r * d.n..(r + 1) * d.n], &mut ours, None).unwrap();
            assert!(
                ours == theirs[r * rb..(r + 1) * rb],
                "{name} row {r} differs from llama.cpp's quantize_{name}"
            );
        }
    }
}

/// Per-row squared error of a quantized row, weighted by `w` when given.
fn row_error(ty: GgmlType, x: &[f32], q: &[u8], w: Option<&[f32]>) -> f64 {
    let mut y = vec![0f32; x.len()];
    dequantize_row(ty, q, &mut y).unwrap();
    x.iter()
        .zip(&y)
        .enumerate()
        .map(|(j, (&a, &b))| {
            let e = (a as f64 - b as f64).powi(2);
            w.map_or(e, |w| w[j] as f64 * e)
        })
        .sum()
}

#[test]
fn searched_quantizers_are_at_least_as_accurate_as_llama_cpp() {
    let d = data();
    let mut failures = Vec::new();
    let mut report = Vec::new();
    for (name, entry) in &d.types {
        let files = entry["files"].as_array().unwrap();
        let ty = ty(name);
        let rb = row_bytes(ty, d.n);
        for (suffix, im) in [("ggml", None), ("ggml_im", Some(&d.imatrix[..]))] {
            if !files.iter().any(|f| f == suffix) {
                continue;
            }
            let theirs = read(&format!("quant/{name}.{suffix}"));
            assert_eq!(theirs.len(), rb * d.n_rows, "{name}.{suffix}");
            // Mean over rows of the error relative to the row's (weighted) energy, over the
            // rows llama.cpp represents at all (the tiny rows underflow the f16 scales of
            // both to zero, a relative error of 1).
            let (mut sum_ours, mut sum_theirs, mut identical, mut counted) = (0.0, 0.0, 0, 0);
            for r in 0..d.n_rows {
                let x = &d.rows[r * d.n..(r + 1) * d.n];
                let mut ours = vec![0u8; rb];
                quantize_row(ty, x, &mut ours, im).unwrap();
                let t = &theirs[r * rb..(r + 1) * rb];
                identical += (ours == t) as usize;
                let e_ours = row_error(ty, x, &ours, im);
                let e_theirs = row_error(ty, x, t, im);
                assert!(e_ours.is_finite(), "{name} row {r}: error {e_ours}");
                let energy: f64 = x
                    .iter()
                    .enumerate()
                    .map(|(j, &v)| (v as f64).powi(2) * im.map_or(1.0, |w| w[j] as f64))
                    .sum();
                if energy > 0.0 && e_theirs / energy < 0.5 {
                    sum_ours += e_ours / energy;
                    sum_theirs += e_theirs / energy;
                    counted += 1;
                }
                if e_ours > e_theirs * 1.0001 + 1e-30 {
                    failures.push(format!(
                        "{name} ({suffix}) row {r}: squared error {e_ours:e} > llama.cpp's {e_theirs:e}"
                    ));
                }
            }
            report.push(format!(
                "{name:7} {suffix:7}: mean relative squared error {:.5e} vs llama.cpp {:.5e} ({:+.2}%) over {counted} rows; {identical}/{} rows identical",
                sum_ours / counted as f64,
                sum_theirs / counted as f64,
                100.0 * (sum_ours / sum_theirs - 1.0),
                d.n_rows
            ));
        }
    }
    println!("{}", report.join("\n"));
    assert!(report.len() >= 18);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn quantize_dequantize_round_trip_error_is_bounded() {
    // A sanity bound per type on the first (unit-variance) row, from the bits per weight:
    // relative RMS error below 2^-(bpw-2) (Q8_0: 0.8%, Q4_0: 18%, Q2_K: 65%).
    let d = data();
    let x = &d.rows[..d.n];
    let energy: f64 = x.iter().map(|&v| (v as f64).powi(2)).sum();
    for &ty in perch_quant::types::ALL {
        if !perch_quant::has_quantizer(ty) || !ty.is_quantized() {
            continue;
        }
        let mut q = vec![0u8; row_bytes(ty, d.n)];
        quantize_row(ty, x, &mut q, None).unwrap();
        let rel = (row_error(ty, x, &q, None) / energy).sqrt();
        let bound = if matches!(
            ty,
            GgmlType::Q1_0 | GgmlType::Q2_0 | GgmlType::TQ1_0 | GgmlType::TQ2_0
        ) {
            0.9 // one or two levels per sign: only a coarse bound applies
        } else {
            2f64.powf(-(ty.bits_per_weight() - 2.0))
        };
        assert!(rel < bound, "{ty}: relative RMS error {rel} >= {bound}");
    }
}
