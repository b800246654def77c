//! Quantization: `f32` rows into ggml blocks.
//!
//! * Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1, TQ1_0, TQ2_0, MXFP4, Q1_0, Q2_0 and Q8_K: ggml's
//!   reference quantizers, bit for bit (tested against gguf-py and llama.cpp).
//! * Q4_0, Q4_1, Q5_0, Q5_1 with an importance vector: ggml's weighted search (what
//!   llama-quantize runs with an imatrix) or the reference quantizer, whichever is better per
//!   block; tested to be at least as accurate as llama.cpp's. The other reference types
//!   ignore the vector, as ggml's do.
//! * Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS: searched quantizers taking an optional
//!   importance vector (a row of an imatrix: one weight per column), tested to be at least as
//!   accurate as llama.cpp's on the same rows.
//!
//! [`quantize_row`] validates sizes and values and dispatches; the per-type functions
//! underneath take typed blocks.

mod iq4;
mod kquants;
mod legacy;
mod search;
mod ternary;

pub use iq4::{quantize_iq4_nl, quantize_iq4_xs};
pub use kquants::{
    quantize_q2_k, quantize_q3_k, quantize_q4_k, quantize_q5_k, quantize_q6_k, quantize_q8_k,
};
pub use legacy::{
    quantize_mxfp4, quantize_q1_0, quantize_q2_0, quantize_q4_0, quantize_q4_0_imatrix,
    quantize_q4_1, quantize_q4_1_imatrix, quantize_q5_0, quantize_q5_0_imatrix, quantize_q5_1,
    quantize_q5_1_imatrix, quantize_q8_0, quantize_q8_1,
};
pub use ternary::{quantize_tq1_0, quantize_tq2_0};

use crate::blocks::{self, Block};
use crate::dequant::{QuantError, check_sizes};
use crate::types::GgmlType;

/// Whether [`quantize_row`] can produce `ty`.
pub const fn has_quantizer(ty: GgmlType) -> bool {
    use GgmlType::*;
    matches!(
        ty,
        F32 | F16
            | BF16
            | Q4_0
            | Q4_1
            | Q5_0
            | Q5_1
            | Q8_0
            | Q8_1
            | Q2_K
            | Q3_K
            | Q4_K
            | Q5_K
            | Q6_K
            | Q8_K
            | IQ4_NL
            | IQ4_XS
            | TQ1_0
            | TQ2_0
            | MXFP4
            | Q1_0
            | Q2_0
    )
}

/// Whether `ty`'s quantizer uses an importance vector (the others accept and ignore one).
pub const fn uses_imatrix(ty: GgmlType) -> bool {
    use GgmlType::*;
    matches!(
        ty,
        Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q2_K | Q3_K | Q4_K | Q5_K | Q6_K | IQ4_NL | IQ4_XS
    )
}

/// Quantizes one block with each candidate algorithm (`quant(x, out, mode)`) and keeps the
/// one whose dequantized values have the least squared error, weighted by `w` when given.
/// The first candidate wins ties, so it is the result unless another is strictly better.
pub(crate) fn best_of<B: Block, M: Copy>(
    x: &[f32],
    w: Option<&[f32]>,
    modes: &[M],
    quant: impl Fn(&[f32], &mut [B], M),
    deq: fn(&[B], &mut [f32]),
) -> B {
    let mut y = [0f32; crate::types::QK_K];
    let y = &mut y[..x.len()];
    let mut best: Option<(f64, B)> = None;
    for &m in modes {
        let mut b = [B::zeroed()];
        quant(x, &mut b, m);
        deq(&b, y);
        let mut err = 0.0f64;
        for (j, (&a, &q)) in x.iter().zip(y.iter()).enumerate() {
            let e = (a as f64 - q as f64).powi(2);
            err += w.map_or(e, |w| w[j] as f64 * e);
        }
        // NaN errors (a degenerate block) never replace a candidate.
        if best.as_ref().is_none_or(|(be, _)| err < *be) {
            best = Some((err, b[0]));
        }
    }
    best.expect("at least one candidate").1
}

fn typed_mut<B: Block>(dst: &mut [u8]) -> &mut [B] {
    // check_sizes ran first, so the length is a whole number of blocks.
    blocks::as_blocks_mut::<B>(dst).expect("length checked by check_sizes")
}

fn check_finite(ty: GgmlType, what: &'static str, v: &[f32]) -> Result<(), QuantError> {
    match v.iter().position(|x| !x.is_finite()) {
        None => Ok(()),
        Some(index) => Err(QuantError::NonFinite {
            ty,
            what,
            index,
            value: v[index].to_string(),
        }),
    }
}

/// Quantizes one row: `dst` receives exactly the bytes of `src.len()` elements of type `ty`.
///
/// `imatrix`, when given, holds one non-negative importance weight per element of `src` (for
/// a row of a weight matrix, the imatrix entry of its columns); see [`uses_imatrix`].
/// Fails, without writing, when `ty` has no quantizer, `src.len()` is not a whole number of
/// blocks, `dst` is not exactly the row's size, the importance vector's length differs from
/// the row's, or any value is NaN or infinite.
pub fn quantize_row(
    ty: GgmlType,
    src: &[f32],
    dst: &mut [u8],
    imatrix: Option<&[f32]>,
) -> Result<(), QuantError> {
    use crate::blocks::*;
    if !has_quantizer(ty) {
        return Err(QuantError::NoQuantizer(ty));
    }
    check_sizes(ty, src.len(), dst.len())?;
    if let Some(w) = imatrix {
        if w.len() != src.len() {
            return Err(QuantError::ImatrixLength {
                ty,
                expected: src.len(),
                actual: w.len(),
            });
        }
        check_finite(ty, "importance weight", w)?;
    }
    if ty != GgmlType::F32 && ty != GgmlType::F16 && ty != GgmlType::BF16 {
        check_finite(ty, "element", src)?;
    }
    let im = if uses_imatrix(ty) { imatrix } else { None };
    match ty {
        GgmlType::F32 => {
            for (d, v) in dst.chunks_exact_mut(4).zip(src) {
                d.copy_from_slice(&v.to_le_bytes());
            }
        }
        GgmlType::F16 => {
            for (d, v) in dst.chunks_exact_mut(2).zip(src) {
                d.copy_from_slice(&F16Le::from_f32(*v).0);
            }
        }
        GgmlType::BF16 => {
            for (d, v) in dst.chunks_exact_mut(2).zip(src) {
                d.copy_from_slice(&f32_to_bf16(*v).to_le_bytes());
            }
        }
        GgmlType::Q4_0 => match im {
            None => quantize_q4_0(src, typed_mut::<BlockQ4_0>(dst)),
            Some(w) => quantize_q4_0_imatrix(src, typed_mut::<BlockQ4_0>(dst), w),
        },
        GgmlType::Q4_1 => match im {
            None => quantize_q4_1(src, typed_mut::<BlockQ4_1>(dst)),
            Some(w) => quantize_q4_1_imatrix(src, typed_mut::<BlockQ4_1>(dst), w),
        },
        GgmlType::Q5_0 => match im {
            None => quantize_q5_0(src, typed_mut::<BlockQ5_0>(dst)),
            Some(w) => quantize_q5_0_imatrix(src, typed_mut::<BlockQ5_0>(dst), w),
        },
        GgmlType::Q5_1 => match im {
            None => quantize_q5_1(src, typed_mut::<BlockQ5_1>(dst)),
            Some(w) => quantize_q5_1_imatrix(src, typed_mut::<BlockQ5_1>(dst), w),
        },
        GgmlType::Q8_0 => quantize_q8_0(src, typed_mut::<BlockQ8_0>(dst)),
        GgmlType::Q8_1 => quantize_q8_1(src, typed_mut::<BlockQ8_1>(dst)),
        GgmlType::MXFP4 => quantize_mxfp4(src, typed_mut::<BlockMxfp4>(dst)),
        GgmlType::Q1_0 => quantize_q1_0(src, typed_mut::<BlockQ1_0>(dst)),
        GgmlType::Q2_0 => quantize_q2_0(src, typed_mut::<BlockQ2_0>(dst)),
        GgmlType::TQ1_0 => quantize_tq1_0(src, typed_mut::<BlockTq1_0>(dst)),
        GgmlType::TQ2_0 => quantize_tq2_0(src, typed_mut::<BlockTq2_0>(dst)),
        GgmlType::Q8_K => quantize_q8_k(src, typed_mut::<BlockQ8K>(dst)),
        GgmlType::Q2_K => quantize_q2_k(src, typed_mut::<BlockQ2K>(dst), im),
        GgmlType::Q3_K => quantize_q3_k(src, typed_mut::<BlockQ3K>(dst), im),
        GgmlType::Q4_K => quantize_q4_k(src, typed_mut::<BlockQ4K>(dst), im),
        GgmlType::Q5_K => quantize_q5_k(src, typed_mut::<BlockQ5K>(dst), im),
        GgmlType::Q6_K => quantize_q6_k(src, typed_mut::<BlockQ6K>(dst), im),
        GgmlType::IQ4_NL => quantize_iq4_nl(src, typed_mut::<BlockIq4Nl>(dst), im),
        GgmlType::IQ4_XS => quantize_iq4_xs(src, typed_mut::<BlockIq4Xs>(dst), im),
        _ => unreachable!("rejected by has_quantizer"),
    }
    Ok(())
}

/// `f32` to bfloat16 bits, rounding to nearest-even and quieting NaNs, as ggml's
/// `ggml_compute_fp32_to_bf16`.
pub fn f32_to_bf16(x: f32) -> u16 {
    let u = x.to_bits();
    if (u & 0x7fff_ffff) > 0x7f80_0000 {
        return ((u >> 16) | 64) as u16;
    }
    ((u + (0x7fff + ((u >> 16) & 1))) >> 16) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_problem() {
        let src = [0.5f32; 64];
        let mut dst = [0u8; 36];
        let e = quantize_row(GgmlType::Q4_0, &src[..33], &mut dst, None).unwrap_err();
        assert!(
            matches!(e, QuantError::PartialBlock { elements: 33, .. }),
            "{e}"
        );
        let e = quantize_row(GgmlType::Q4_0, &src, &mut dst[..35], None).unwrap_err();
        assert!(
            matches!(
                e,
                QuantError::ByteLength {
                    expected: 36,
                    actual: 35,
                    ..
                }
            ),
            "{e}"
        );
        let e = quantize_row(GgmlType::Q4_0, &src, &mut dst, Some(&[1.0; 32])).unwrap_err();
        assert!(
            matches!(
                e,
                QuantError::ImatrixLength {
                    expected: 64,
                    actual: 32,
                    ..
                }
            ),
            "{e}"
        );
        let mut bad = src;
        bad[40] = f32::NAN;
        let e = quantize_row(GgmlType::Q4_0, &bad, &mut dst, None).unwrap_err();
        assert!(matches!(e, QuantError::NonFinite { index: 40, .. }), "{e}");
        assert!(e.to_string().starts_with("Q4_0: element 40"), "{e}");
        let mut w = [1.0f32; 64];
        w[3] = f32::INFINITY;
        let e = quantize_row(GgmlType::Q4_0, &src, &mut dst, Some(&w)).unwrap_err();
        assert!(matches!(
            e,
            QuantError::NonFinite {
                index: 3,
                what: "importance weight",
                ..
            }
        ));
        let e = quantize_row(GgmlType::IQ2_XXS, &[0.0; 256], &mut [0u8; 66], None).unwrap_err();
        assert_eq!(e, QuantError::NoQuantizer(GgmlType::IQ2_XXS));
    }

    #[test]
    fn bf16_rounding_matches_ggml() {
        assert_eq!(f32_to_bf16(1.0), 0x3f80);
        // 1 + 2^-8 is halfway between two bf16 values: ties to even (down).
        assert_eq!(f32_to_bf16(1.0 + 2f32.powi(-8)), 0x3f80);
        assert_eq!(f32_to_bf16(1.0 + 3.0 * 2f32.powi(-8)), 0x3f82);
        assert_eq!(f32_to_bf16(f32::from_bits(0x7f80_0001)), 0x7fc0);
    }
}
