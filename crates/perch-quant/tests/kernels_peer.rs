//! Dot products and activation quantization against vectors recorded from llama.cpp's own
//! ggml CPU library by scripts/record_peer_kernels.py (kernels_data/*.txt):
//!
//! * perch's activation quantizer equals ggml's CPU `from_float` byte for byte;
//! * perch's scalar kernel equals ggml's `ggml_vec_dot_*_generic` (bit for bit where ggml's C
//!   compiler did not contract the scaling into FMAs; within one or two ulps of the largest
//!   partial sum otherwise — measured and bounded below);
//! * every SIMD level agrees with ggml's native kernel within the float tolerance.

mod kernels_util;

use std::path::PathBuf;

use kernels_util::*;
use perch_quant::dot::{dot_fn, scalar_fn};
use perch_quant::simd::SimdLevel;
use perch_quant::{GgmlType, QuantizedActivations, vec_dot_type};

struct Case {
    w: Vec<u8>,
    x: Vec<f32>,
    xq: Vec<u8>,
    generic: Option<f32>,
    native: f32,
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn f32_hex(s: &str) -> f32 {
    let b = hex(s);
    f32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

fn load(name: &str) -> (GgmlType, usize, Vec<Case>) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/kernels_data")
        .join(format!("{name}.txt"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; regenerate with scripts/record_peer_kernels.py",
            path.display()
        )
    });
    let mut ty = None;
    let mut n = 0;
    let mut cases = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (k, v) = line.split_once(' ').unwrap_or((line, ""));
        match k {
            "type" => ty = GgmlType::from_name(v),
            "n" => n = v.parse().unwrap(),
            "w" => cases.push(Case {
                w: hex(v),
                x: Vec::new(),
                xq: Vec::new(),
                generic: None,
                native: f32::NAN,
            }),
            "x" => {
                let (seed, kind) = v.split_once(' ').unwrap();
                cases.last_mut().unwrap().x =
                    Rng::peer_row(seed.parse().unwrap(), n, kind == "cube");
            }
            "xq" => cases.last_mut().unwrap().xq = hex(v),
            "generic" => cases.last_mut().unwrap().generic = Some(f32_hex(v)),
            "native" => cases.last_mut().unwrap().native = f32_hex(v),
            "" => {}
            other => panic!("{name}: unknown key {other}"),
        }
    }
    (ty.expect("type line"), n, cases)
}

const FILES: &[&str] = &[
    "f32", "f16", "bf16", "q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "mxfp4", "iq4_nl", "q2_K",
    "q3_K", "q4_K", "q5_K", "q6_K", "tq1_0", "tq2_0", "iq4_xs", "iq2_xxs", "iq2_xs", "iq2_s",
    "iq3_xxs", "iq3_s", "iq1_s", "iq1_m",
];

#[test]
fn activation_quantizers_equal_ggml_cpu_from_float() {
    for name in FILES {
        let (ty, n, cases) = load(name);
        let act = vec_dot_type(ty);
        for (i, c) in cases.iter().enumerate() {
            let mut q = QuantizedActivations::new();
            q.quantize(act, &c.x, 1, n).unwrap();
            assert_eq!(
                q.data(),
                &c.xq[..],
                "{name} case {i}: {act} activations differ"
            );
        }
    }
}

#[test]
fn kernels_match_ggml() {
    let mut missing = Vec::new();
    for name in FILES {
        let (ty, n, cases) = load(name);
        let act = vec_dot_type(ty);
        let Some(scalar) = scalar_fn(ty) else {
            missing.push(ty);
            continue;
        };
        for (i, c) in cases.iter().enumerate() {
            let (_, abs) = reference_dot(ty, &c.w, act, &c.xq, n);
            let ulp = abs * 2f64.powi(-24);
            let s = scalar(&c.w, &c.xq);
            // The peer build's `ggml_vec_dot_q5_0_q8_0_generic` returns values that match
            // neither ggml's own native kernel nor the dequantized reference (e.g. -217.77
            // where both give 119.51); its native kernel is the one llama.cpp runs, and perch
            // is held to that below.
            let generic = c.generic.filter(|_| ty != GgmlType::Q5_0);
            if let Some(g) = generic {
                // ggml's generic C may fuse `sumf += d * sumi` into an FMA; a few ulps of the
                // sum of magnitudes covers that, and nothing else.
                assert!(
                    f64::from((s - g).abs()) <= 4.0 * ulp + 1e-30,
                    "{name} case {i}: scalar {s} vs ggml generic {g} (ulp {ulp})"
                );
            }
            let tol = n as f64 * 2f64.powi(-23) * abs
                + match ty {
                    GgmlType::Q4_1 | GgmlType::Q5_1 => 2e-3 * abs,
                    _ => 0.0,
                }
                + 1e-30;
            for level in SimdLevel::supported() {
                let f = dot_fn(ty, level).unwrap();
                let v = f(&c.w, &c.xq);
                assert!(
                    f64::from((v - c.native).abs()) <= tol,
                    "{name} case {i} at {level}: {v} vs ggml native {} (tol {tol})",
                    c.native
                );
            }
        }
    }
    // Types recorded from ggml that have no kernel here yet.
    let expected_missing: &[GgmlType] = &[];
    assert_eq!(missing, expected_missing, "kernels missing");
}

#[test]
fn scalar_equals_ggml_generic_bit_for_bit_on_most_types() {
    // Where ggml's generic code is a plain sum of per-block products, perch's scalar kernel
    // repeats its operations exactly; count the exact matches so a drift in operation order
    // shows up even when it stays inside the tolerance above.
    let mut exact = 0;
    let mut total = 0;
    for name in FILES {
        let (ty, _, cases) = load(name);
        let Some(scalar) = scalar_fn(ty) else {
            continue;
        };
        for c in &cases {
            if let Some(g) = c.generic.filter(|_| ty != GgmlType::Q5_0) {
                total += 1;
                if scalar(&c.w, &c.xq).to_bits() == g.to_bits() {
                    exact += 1;
                }
            }
        }
    }
    eprintln!("scalar == ggml generic bit for bit in {exact} of {total} cases");
    assert!(total > 0);
    assert!(exact * 2 >= total, "only {exact} of {total} bit-exact");
}
