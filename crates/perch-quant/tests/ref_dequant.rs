//! Dequantization of every type against references recorded by `scripts/gen_quant_refs.py`:
//! gguf-py 0.19.0's numpy code for every type it implements (cross-checked there against
//! llama.cpp's ggml-quants.c), llama.cpp's ggml-quants.c for Q8_K, Q1_0 and Q2_0.
//!
//! The inputs are random blocks with sane scales, edge-case blocks (all zero, maximal and
//! tiny scales, every quant bit set) and, for the I-quants, blocks whose grid indices run
//! through the whole grid, so every entry of every lookup table is exercised. The first
//! blocks are compared value by value, all blocks through a hash of their output bits.

mod common;

use common::*;
use perch_quant::{GgmlType, dequantize_row};

/// Every type the manifest must cover: all types with a dequantizer except Q8_1 (which ggml
/// does not define; see `q8_1_dequantizes_as_q8_0`) and F32/F64 (plain conversions).
const EXPECTED: &[&str] = &[
    "f16", "bf16", "q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q2_K", "q3_K", "q4_K", "q5_K", "q6_K",
    "q8_K", "iq2_xxs", "iq2_xs", "iq3_xxs", "iq1_s", "iq4_nl", "iq3_s", "iq2_s", "iq4_xs", "iq1_m",
    "tq1_0", "tq2_0", "mxfp4", "nvfp4", "q1_0", "q2_0",
];

#[test]
fn manifest_covers_every_type() {
    let m = manifest("dequant/manifest.json");
    for name in EXPECTED {
        assert!(m.contains_key(*name), "no dequant reference for {name}");
    }
}

#[test]
fn dequantization_matches_references_bit_for_bit() {
    let m = manifest("dequant/manifest.json");
    let mut failures = Vec::new();
    for (name, entry) in &m {
        let ty = ty(name);
        let n_blocks = entry["n_blocks"].as_u64().unwrap() as usize;
        let full_blocks = entry["full_blocks"].as_u64().unwrap() as usize;
        let hash_unit = entry["hash_unit"].as_u64().unwrap() as usize;
        let blocks = read(&format!("dequant/{name}.blocks"));
        let n = n_blocks * ty.block_size();
        let mut out = vec![0f32; n];
        dequantize_row(ty, &blocks, &mut out).unwrap();

        let want = f32s(&read(&format!("dequant/{name}.f32")));
        assert_eq!(want.len(), full_blocks * ty.block_size());
        if let Some(i) = (0..want.len()).find(|&i| out[i].to_bits() != want[i].to_bits()) {
            failures.push(format!(
                "{name}: value {i} (block {}) is {:e}, reference {:e}",
                i / ty.block_size(),
                out[i],
                want[i]
            ));
            continue;
        }
        let hashes = entry["fnv1a64"].as_array().unwrap();
        assert_eq!(hashes.len(), n / hash_unit, "{name}");
        for (k, (chunk, h)) in out.chunks(hash_unit).zip(hashes).enumerate() {
            if fnv1a64(chunk) != h.as_str().unwrap() {
                failures.push(format!(
                    "{name}: output of values {}..{} differs from the reference ({})",
                    k * hash_unit,
                    (k + 1) * hash_unit,
                    entry["reference"]
                ));
                break;
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn rows_of_a_single_block_and_unaligned_input() {
    // One block at a time, from an odd address, gives the same values as the whole row.
    let m = manifest("dequant/manifest.json");
    for name in ["q4_K", "iq2_xs", "mxfp4", "q8_0"] {
        let ty = ty(name);
        let n_blocks = m[name]["full_blocks"].as_u64().unwrap() as usize;
        let bytes = read(&format!("dequant/{name}.blocks"));
        let want = f32s(&read(&format!("dequant/{name}.f32")));
        let mut shifted = vec![0u8; ty.type_size() + 1];
        for b in 0..n_blocks {
            shifted[1..].copy_from_slice(&bytes[b * ty.type_size()..(b + 1) * ty.type_size()]);
            let mut out = vec![0f32; ty.block_size()];
            dequantize_row(ty, &shifted[1..], &mut out).unwrap();
            let w = &want[b * ty.block_size()..(b + 1) * ty.block_size()];
            assert!(
                out.iter().zip(w).all(|(a, b)| a.to_bits() == b.to_bits()),
                "{name} block {b}"
            );
        }
    }
}

#[test]
fn q8_1_dequantizes_as_q8_0() {
    // ggml defines no Q8_1 dequantizer; a Q8_1 block means d * q like Q8_0, whose
    // dequantization is checked against gguf-py above. Reuse those Q8_0 blocks.
    let q8_0 = read("dequant/q8_0.blocks");
    let n_blocks = q8_0.len() / 34;
    let mut q8_1 = Vec::new();
    for b in q8_0.chunks_exact(34) {
        q8_1.extend_from_slice(&b[..2]);
        q8_1.extend_from_slice(&[0x00, 0x7c]); // s = +inf: must be ignored
        q8_1.extend_from_slice(&b[2..]);
    }
    let mut a = vec![0f32; n_blocks * 32];
    let mut b = vec![0f32; n_blocks * 32];
    dequantize_row(GgmlType::Q8_0, &q8_0, &mut a).unwrap();
    dequantize_row(GgmlType::Q8_1, &q8_1, &mut b).unwrap();
    assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()));
}

#[test]
fn f32_and_f64_rows() {
    let vals = [
        0.0f32,
        -0.0,
        1.5,
        f32::MAX,
        f32::MIN_POSITIVE,
        -1e-45,
        f32::INFINITY,
    ];
    let bytes: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
    let mut out = [0f32; 7];
    dequantize_row(GgmlType::F32, &bytes, &mut out).unwrap();
    assert_eq!(out.map(f32::to_bits), vals.map(f32::to_bits));
    let bytes: Vec<u8> = [1.0f64 / 3.0, 1e300, -2.5]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let mut out = [0f32; 3];
    dequantize_row(GgmlType::F64, &bytes, &mut out).unwrap();
    assert_eq!(out, [1.0f32 / 3.0, f32::INFINITY, -2.5]);
}

#[test]
fn f16_nan_stays_nan() {
    let mut out = [0f32; 2];
    dequantize_row(GgmlType::F16, &[0x01, 0x7e, 0x00, 0xfe], &mut out).unwrap();
    assert!(out[0].is_nan() && out[1].is_nan());
    dequantize_row(GgmlType::BF16, &[0xc1, 0x7f, 0xc0, 0xff], &mut out).unwrap();
    assert!(out[0].is_nan() && out[1].is_nan());
}
