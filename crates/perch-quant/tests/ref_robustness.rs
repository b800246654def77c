//! Properties that hold for any input: dequantizing arbitrary bytes and quantizing arbitrary
//! finite rows (subnormals, huge magnitudes, constant blocks) never panics, writes every
//! output, and bad sizes come back as errors. Run in the `ci` profile, overflow checks on.

use perch_quant::types::ALL;
use perch_quant::{
    GgmlType, QuantError, dequantize_row, has_dequantizer, has_quantizer, quantize_row,
};
use proptest::prelude::*;

fn any_value() -> impl Strategy<Value = f32> {
    prop_oneof![
        -1e3f32..1e3,
        Just(0.0f32),
        Just(-0.0f32),
        Just(f32::MAX),
        Just(f32::MIN),
        Just(f32::MIN_POSITIVE),
        Just(1e-40f32),
        Just(-1e-45f32),
        (-1.0f32..1.0).prop_map(|v| v * 1e-38),
        (-1.0f32..1.0).prop_map(|v| v * 3e38),
        (-1.0f32..1.0).prop_map(|v| v * 6.5e4),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn dequantizing_any_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        for &ty in ALL {
            if !has_dequantizer(ty) {
                continue;
            }
            let n_blocks = bytes.len() / ty.type_size();
            let n = n_blocks * ty.block_size();
            let mut out = vec![0f32; n];
            dequantize_row(ty, &bytes[..n_blocks * ty.type_size()], &mut out).unwrap();
            // One byte too many is an error, not a panic.
            if n_blocks * ty.type_size() < bytes.len() {
                let r = dequantize_row(ty, &bytes[..n_blocks * ty.type_size() + 1], &mut out);
                let is_byte_length_error = matches!(r, Err(QuantError::ByteLength { .. }));
                prop_assert!(is_byte_length_error);
            }
        }
    }

    #[test]
    fn quantizing_any_finite_row_never_panics(
        row in proptest::collection::vec(any_value(), 512),
        weights in proptest::collection::vec(0.0f32..100.0, 512),
        constant in any_value(),
    ) {
        let constant_row = vec![constant; 512];
        for &ty in ALL {
            if !has_quantizer(ty) {
                continue;
            }
            let bytes = 512 / ty.block_size() * ty.type_size();
            for src in [&row, &constant_row] {
                for im in [None, Some(&weights[..])] {
                    let mut q = vec![0u8; bytes];
                    quantize_row(ty, src, &mut q, im).unwrap();
                    let mut y = vec![0f32; 512];
                    dequantize_row(ty, &q, &mut y).unwrap();
                }
            }
        }
    }
}

#[test]
fn a_row_of_a_single_block_round_trips() {
    // Quantize one block of each type from a smooth ramp and check the values come back
    // within the type's coarsest step.
    for &ty in ALL {
        if !has_quantizer(ty) || !ty.is_quantized() {
            continue;
        }
        let n = ty.block_size();
        let x: Vec<f32> = (0..n).map(|i| (i as f32 / n as f32) * 2.0 - 1.0).collect();
        let mut q = vec![0u8; ty.type_size()];
        quantize_row(ty, &x, &mut q, None).unwrap();
        let mut y = vec![0f32; n];
        dequantize_row(ty, &q, &mut y).unwrap();
        let max_err = x
            .iter()
            .zip(&y)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        let bound = match ty {
            GgmlType::Q1_0 | GgmlType::Q2_0 | GgmlType::TQ1_0 | GgmlType::TQ2_0 => 1.0,
            _ => 2.0 * 2f32.powf(-(ty.bits_per_weight() as f32 - 2.0)),
        };
        assert!(max_err <= bound, "{ty}: max error {max_err} > {bound}");
    }
}
