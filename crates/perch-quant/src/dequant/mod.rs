//! Dequantization: blocks of any ggml type back to `f32`, bit for bit as ggml's
//! `dequantize_row_*` (ggml-quants.c) computes them.
//!
//! "Bit for bit" means the same `f32` operations in the same order: each value is an integer
//! (or a table value) converted to `f32` and multiplied by scales in the order ggml's C code
//! multiplies them, with no fused multiply-add. Tests hold every type to gguf-py's numpy
//! reference and, for the types gguf-py lacks, to values recorded from llama.cpp.
//!
//! [`dequantize_row`] dispatches on the type; the per-type functions take typed blocks.

mod error;
mod iquants;
mod kquants;
mod legacy;

pub use error::QuantError;
pub use iquants::{
    dequantize_iq1_m, dequantize_iq1_s, dequantize_iq2_s, dequantize_iq2_xs, dequantize_iq2_xxs,
    dequantize_iq3_s, dequantize_iq3_xxs, dequantize_iq4_nl, dequantize_iq4_xs,
};
pub(crate) use kquants::q3k_scales;
pub use kquants::{
    dequantize_q2_k, dequantize_q3_k, dequantize_q4_k, dequantize_q5_k, dequantize_q6_k,
    dequantize_q8_k, dequantize_tq1_0, dequantize_tq2_0, scale_min_k4,
};
pub use legacy::{
    dequantize_bf16, dequantize_f16, dequantize_f32, dequantize_mxfp4, dequantize_nvfp4,
    dequantize_q1_0, dequantize_q2_0, dequantize_q4_0, dequantize_q4_1, dequantize_q5_0,
    dequantize_q5_1, dequantize_q8_0, dequantize_q8_1, e8m0_to_f32_half, ue4m3_to_f32_half,
};

use crate::blocks::{self, Block};
use crate::types::GgmlType;

/// Whether [`dequantize_row`] handles `ty` (every float and block type; not the integer types).
pub const fn has_dequantizer(ty: GgmlType) -> bool {
    !matches!(
        ty,
        GgmlType::I8 | GgmlType::I16 | GgmlType::I32 | GgmlType::I64
    )
}

/// Checks that `src` holds exactly the bytes of `n` elements of `ty`.
pub(crate) fn check_sizes(ty: GgmlType, n: usize, bytes: usize) -> Result<(), QuantError> {
    let bs = ty.block_size();
    if n % bs != 0 {
        return Err(QuantError::PartialBlock {
            ty,
            elements: n,
            block_size: bs,
        });
    }
    let expected = n / bs * ty.type_size();
    if bytes != expected {
        return Err(QuantError::ByteLength {
            ty,
            elements: n,
            expected,
            actual: bytes,
        });
    }
    Ok(())
}

fn typed<B: Block>(src: &[u8]) -> &[B] {
    // check_sizes ran first, so the length is a whole number of blocks.
    blocks::as_blocks::<B>(src).expect("length checked by check_sizes")
}

/// Dequantizes one row: `src` holds the bytes of `dst.len()` elements of type `ty`.
///
/// Handles F32, F16, BF16, F64 and every block type. Fails, without writing, when
/// `dst.len()` is not a whole number of blocks, when `src` is not exactly the bytes of
/// `dst.len()` elements, or for the integer types.
pub fn dequantize_row(ty: GgmlType, src: &[u8], dst: &mut [f32]) -> Result<(), QuantError> {
    use crate::blocks::*;
    if !has_dequantizer(ty) {
        return Err(QuantError::NoDequantizer(ty));
    }
    check_sizes(ty, dst.len(), src.len())?;
    match ty {
        GgmlType::F32 => dequantize_f32(src, dst),
        GgmlType::F16 => dequantize_f16(src, dst),
        GgmlType::BF16 => dequantize_bf16(src, dst),
        GgmlType::F64 => legacy::dequantize_f64(src, dst),
        GgmlType::Q1_0 => dequantize_q1_0(typed::<BlockQ1_0>(src), dst),
        GgmlType::Q2_0 => dequantize_q2_0(typed::<BlockQ2_0>(src), dst),
        GgmlType::Q4_0 => dequantize_q4_0(typed::<BlockQ4_0>(src), dst),
        GgmlType::Q4_1 => dequantize_q4_1(typed::<BlockQ4_1>(src), dst),
        GgmlType::Q5_0 => dequantize_q5_0(typed::<BlockQ5_0>(src), dst),
        GgmlType::Q5_1 => dequantize_q5_1(typed::<BlockQ5_1>(src), dst),
        GgmlType::Q8_0 => dequantize_q8_0(typed::<BlockQ8_0>(src), dst),
        GgmlType::Q8_1 => dequantize_q8_1(typed::<BlockQ8_1>(src), dst),
        GgmlType::MXFP4 => dequantize_mxfp4(typed::<BlockMxfp4>(src), dst),
        GgmlType::NVFP4 => dequantize_nvfp4(typed::<BlockNvfp4>(src), dst),
        GgmlType::Q2_K => dequantize_q2_k(typed::<BlockQ2K>(src), dst),
        GgmlType::Q3_K => dequantize_q3_k(typed::<BlockQ3K>(src), dst),
        GgmlType::Q4_K => dequantize_q4_k(typed::<BlockQ4K>(src), dst),
        GgmlType::Q5_K => dequantize_q5_k(typed::<BlockQ5K>(src), dst),
        GgmlType::Q6_K => dequantize_q6_k(typed::<BlockQ6K>(src), dst),
        GgmlType::Q8_K => dequantize_q8_k(typed::<BlockQ8K>(src), dst),
        GgmlType::TQ1_0 => dequantize_tq1_0(typed::<BlockTq1_0>(src), dst),
        GgmlType::TQ2_0 => dequantize_tq2_0(typed::<BlockTq2_0>(src), dst),
        GgmlType::IQ2_XXS => dequantize_iq2_xxs(typed::<BlockIq2Xxs>(src), dst),
        GgmlType::IQ2_XS => dequantize_iq2_xs(typed::<BlockIq2Xs>(src), dst),
        GgmlType::IQ2_S => dequantize_iq2_s(typed::<BlockIq2S>(src), dst),
        GgmlType::IQ3_XXS => dequantize_iq3_xxs(typed::<BlockIq3Xxs>(src), dst),
        GgmlType::IQ3_S => dequantize_iq3_s(typed::<BlockIq3S>(src), dst),
        GgmlType::IQ1_S => dequantize_iq1_s(typed::<BlockIq1S>(src), dst),
        GgmlType::IQ1_M => dequantize_iq1_m(typed::<BlockIq1M>(src), dst),
        GgmlType::IQ4_NL => dequantize_iq4_nl(typed::<BlockIq4Nl>(src), dst),
        GgmlType::IQ4_XS => dequantize_iq4_xs(typed::<BlockIq4Xs>(src), dst),
        GgmlType::I8 | GgmlType::I16 | GgmlType::I32 | GgmlType::I64 => {
            unreachable!("rejected by has_dequantizer")
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_errors_name_the_type_and_the_sizes() {
        let mut out = [0f32; 32];
        let err = dequantize_row(GgmlType::Q4_0, &[0u8; 17], &mut out).unwrap_err();
        assert_eq!(
            err,
            QuantError::ByteLength {
                ty: GgmlType::Q4_0,
                elements: 32,
                expected: 18,
                actual: 17
            }
        );
        assert!(err.to_string().contains("Q4_0"), "{err}");
        let err = dequantize_row(GgmlType::Q4_K, &[0u8; 144], &mut out).unwrap_err();
        assert!(matches!(
            err,
            QuantError::PartialBlock {
                block_size: 256,
                ..
            }
        ));
        let err = dequantize_row(GgmlType::I32, &[0u8; 128], &mut out).unwrap_err();
        assert_eq!(err, QuantError::NoDequantizer(GgmlType::I32));
    }

    #[test]
    fn empty_rows_are_fine() {
        for &ty in crate::types::ALL {
            if has_dequantizer(ty) {
                dequantize_row(ty, &[], &mut []).unwrap();
            }
        }
    }

    #[test]
    fn all_zero_blocks_dequantize_to_zero() {
        // Every block type whose zero bytes mean zero scales gives zeros; IQ1_M's scale is
        // spread over its scales words, so zero bytes mean d = 0 there too.
        for &ty in crate::types::ALL {
            if !has_dequantizer(ty) {
                continue;
            }
            let n = ty.block_size().max(8) * 2;
            let n = n / ty.block_size() * ty.block_size();
            let bytes = vec![0u8; n / ty.block_size() * ty.type_size()];
            let mut out = vec![f32::NAN; n];
            dequantize_row(ty, &bytes, &mut out).unwrap();
            assert!(out.iter().all(|&v| v == 0.0), "{ty}: {out:?}");
        }
    }
}
