//! Dot products of one weight row with one activation row, for every weight type.
//!
//! Each weight type is paired with the activation type ggml pairs it with
//! ([`vec_dot_type`], from ggml-cpu's `type_traits_cpu`): the 32-element types with Q8_0 (or
//! Q8_1 for the ones with a minimum), the 256-element types with Q8_K, and F32/F16/BF16 with
//! themselves. Matching ggml's pairing and its arithmetic is what makes the engine's logits
//! match llama.cpp's.
//!
//! Every kernel has a scalar reference ([`SimdLevel::Scalar`]) equal to ggml's generic C code;
//! the SIMD versions are held to it by the tests (exactly for the integer parts, within a
//! float tolerance for the sums). [`dot_fn`] hands out the kernel for a type at a level,
//! falling back to the best lower level that has one; it never hands out a kernel the CPU
//! cannot run.

mod scalar;
mod scalar_iq;
pub(crate) mod scalar_k;

#[cfg(target_arch = "x86_64")]
pub(crate) mod x86;

use crate::blocks::{Block, as_blocks};
use crate::simd::{SimdLevel, simd_level};
use crate::types::GgmlType;

/// A dot-product kernel: one weight row and one activation row, as bytes, holding the same
/// number of elements in the weight type and its activation type. Returns the dot product.
///
/// Kernels check that the two rows agree and panic (never read out of bounds) when they do
/// not; [`vec_dot`] and the matrix products validate shapes first and return errors instead.
pub type DotFn = fn(w: &[u8], x: &[u8]) -> f32;

/// A kernel for one weight row against four activation rows at once (the weight blocks are
/// unpacked once). Its results are bit-identical to four calls of the [`DotFn`] of the same
/// type and level, so a matrix product does not depend on how activation rows are grouped.
pub type Dot4Fn = fn(w: &[u8], x: [&[u8]; 4]) -> [f32; 4];

/// The `e8m0`-coded power of two halved, as ggml's `GGML_E8M0_TO_FP32_HALF`.
#[inline]
pub(crate) fn e8m0_to_f32_half(x: u8) -> f32 {
    let bits = if x < 2 {
        0x0020_0000u32 << x
    } else {
        u32::from(x - 1) << 23
    };
    f32::from_bits(bits)
}

/// An unsigned E4M3 scale halved, as ggml's `ggml_ue4m3_to_fp32`.
#[inline]
pub(crate) fn ue4m3_to_f32(x: u8) -> f32 {
    if x == 0 || x == 0x7f {
        return 0.0;
    }
    let exp = i32::from((x >> 3) & 0xf);
    let man = f32::from(x & 7);
    let raw = if exp == 0 {
        man * 2f32.powi(-9)
    } else {
        (1.0 + man / 8.0) * 2f32.powi(exp - 7)
    };
    raw * 0.5
}

/// IEEE half bits to `f32` (exact).
#[inline]
pub(crate) fn f16_to_f32(bits: u16) -> f32 {
    half::f16::from_bits(bits).to_f32()
}

/// bfloat16 bits to `f32` (exact).
#[inline]
pub(crate) fn bf16_to_f32(bits: u16) -> f32 {
    f32::from_bits(u32::from(bits) << 16)
}

pub(crate) use crate::tables::{KVALUES_IQ4NL, KVALUES_MXFP4};

/// The activation type ggml multiplies weights of type `w` with (`vec_dot_type` in ggml-cpu's
/// `type_traits_cpu`). Types with no dot product here (the integer types, F64 and Q8_K itself)
/// map to F32; [`dot_fn`] returns `None` for them.
pub fn vec_dot_type(w: GgmlType) -> GgmlType {
    use GgmlType::*;
    match w {
        F32 => F32,
        F16 => F16,
        BF16 => BF16,
        Q1_0 | Q2_0 | Q4_0 | Q5_0 | Q8_0 | MXFP4 | NVFP4 | IQ4_NL => Q8_0,
        Q4_1 | Q5_1 | Q8_1 => Q8_1,
        Q2_K | Q3_K | Q4_K | Q5_K | Q6_K | IQ2_XXS | IQ2_XS | IQ2_S | IQ3_XXS | IQ3_S | IQ1_S
        | IQ1_M | IQ4_XS | TQ1_0 | TQ2_0 => Q8_K,
        Q8_K | I8 | I16 | I32 | I64 | F64 => F32,
    }
}

#[inline]
fn cast<B: Block>(b: &[u8]) -> &[B] {
    match as_blocks(b) {
        Ok(v) => v,
        Err(e) => panic!("dot kernel given a partial block: {e}"),
    }
}

/// Wraps a typed kernel `fn(&[W], &[X]) -> f32` as a [`DotFn`].
macro_rules! wrap {
    ($f:path, $w:ty, $x:ty) => {{
        fn w(a: &[u8], b: &[u8]) -> f32 {
            $f(cast::<$w>(a), cast::<$x>(b))
        }
        w as DotFn
    }};
}

/// The scalar reference kernel for weight type `ty`, if there is one.
pub fn scalar_fn(ty: GgmlType) -> Option<DotFn> {
    use crate::blocks::*;
    use GgmlType::*;
    Some(match ty {
        F32 => scalar::f32_f32 as DotFn,
        F16 => scalar::f16_f16,
        BF16 => scalar::bf16_bf16,
        Q4_0 => wrap!(scalar::q4_0_q8_0, BlockQ4_0, BlockQ8_0),
        Q4_1 => wrap!(scalar::q4_1_q8_1, BlockQ4_1, BlockQ8_1),
        Q5_0 => wrap!(scalar::q5_0_q8_0, BlockQ5_0, BlockQ8_0),
        Q5_1 => wrap!(scalar::q5_1_q8_1, BlockQ5_1, BlockQ8_1),
        Q8_0 => wrap!(scalar::q8_0_q8_0, BlockQ8_0, BlockQ8_0),
        Q1_0 => wrap!(scalar::q1_0_q8_0, BlockQ1_0, BlockQ8_0),
        Q2_0 => wrap!(scalar::q2_0_q8_0, BlockQ2_0, BlockQ8_0),
        MXFP4 => wrap!(scalar::mxfp4_q8_0, BlockMxfp4, BlockQ8_0),
        NVFP4 => wrap!(scalar::nvfp4_q8_0, BlockNvfp4, BlockQ8_0),
        IQ4_NL => wrap!(scalar::iq4_nl_q8_0, BlockIq4Nl, BlockQ8_0),
        Q2_K => wrap!(scalar_k::q2_k_q8_k, BlockQ2K, BlockQ8K),
        Q3_K => wrap!(scalar_k::q3_k_q8_k, BlockQ3K, BlockQ8K),
        Q4_K => wrap!(scalar_k::q4_k_q8_k, BlockQ4K, BlockQ8K),
        Q5_K => wrap!(scalar_k::q5_k_q8_k, BlockQ5K, BlockQ8K),
        Q6_K => wrap!(scalar_k::q6_k_q8_k, BlockQ6K, BlockQ8K),
        TQ1_0 => wrap!(scalar_k::tq1_0_q8_k, BlockTq1_0, BlockQ8K),
        TQ2_0 => wrap!(scalar_k::tq2_0_q8_k, BlockTq2_0, BlockQ8K),
        IQ4_XS => wrap!(scalar_k::iq4_xs_q8_k, BlockIq4Xs, BlockQ8K),
        IQ2_XXS => wrap!(scalar_iq::iq2_xxs_q8_k, BlockIq2Xxs, BlockQ8K),
        IQ2_XS => wrap!(scalar_iq::iq2_xs_q8_k, BlockIq2Xs, BlockQ8K),
        IQ2_S => wrap!(scalar_iq::iq2_s_q8_k, BlockIq2S, BlockQ8K),
        IQ3_XXS => wrap!(scalar_iq::iq3_xxs_q8_k, BlockIq3Xxs, BlockQ8K),
        IQ3_S => wrap!(scalar_iq::iq3_s_q8_k, BlockIq3S, BlockQ8K),
        IQ1_S => wrap!(scalar_iq::iq1_s_q8_k, BlockIq1S, BlockQ8K),
        IQ1_M => wrap!(scalar_iq::iq1_m_q8_k, BlockIq1M, BlockQ8K),
        _ => return None,
    })
}

/// The kernel written for exactly `level` (no fallback), if there is one. Only called with
/// levels the CPU supports.
fn exact_fn(ty: GgmlType, level: SimdLevel) -> Option<DotFn> {
    match level {
        SimdLevel::Scalar => scalar_fn(ty),
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx2 => x86::avx2_fn(ty),
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx512 => x86::avx512_fn(ty),
        #[cfg(not(target_arch = "x86_64"))]
        _ => None,
    }
}

/// The level whose kernel [`dot_fn`] hands out for `ty` when asked for `level`: the highest
/// level at or below `level` (and supported by this CPU) that has a kernel for `ty`.
pub fn kernel_level(ty: GgmlType, level: SimdLevel) -> Option<SimdLevel> {
    let level = level.min(SimdLevel::detected());
    crate::simd::ALL_LEVELS
        .iter()
        .rev()
        .copied()
        .filter(|l| *l <= level)
        .find(|l| exact_fn(ty, *l).is_some())
}

/// The dot-product kernel for weight type `ty` at `level` (or the best lower level that has
/// one; never a level this CPU lacks). `None` when the type has no dot product.
pub fn dot_fn(ty: GgmlType, level: SimdLevel) -> Option<DotFn> {
    kernel_level(ty, level).and_then(|l| exact_fn(ty, l))
}

/// The four-row kernel for `ty` at the level [`dot_fn`] would use, if that level has one.
pub fn dot4_fn(ty: GgmlType, level: SimdLevel) -> Option<Dot4Fn> {
    match kernel_level(ty, level)? {
        SimdLevel::Scalar => None,
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx2 => x86::avx2_fn4(ty),
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx512 => x86::avx512_fn4(ty),
        #[cfg(not(target_arch = "x86_64"))]
        _ => None,
    }
}

/// Rows that cannot be multiplied.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DotError {
    /// The weight type has no dot-product kernel.
    #[error("no dot product for weight type {0}")]
    Unsupported(GgmlType),
    /// The weight row is not a whole number of blocks.
    #[error("weight row of {len} bytes is not a whole number of {ty} blocks")]
    PartialWeight {
        /// Weight type.
        ty: GgmlType,
        /// Row length in bytes.
        len: usize,
    },
    /// The activation row does not hold as many elements as the weight row.
    #[error(
        "activation row of {got} bytes does not match the weight row: expected {expected} bytes of {act}"
    )]
    ActivationLength {
        /// Activation type.
        act: GgmlType,
        /// Bytes expected.
        expected: usize,
        /// Bytes given.
        got: usize,
    },
}

/// Checks that `w` (type `ty`) and `x` (its activation type) hold the same whole number of
/// blocks; returns the number of elements.
pub fn check_rows(ty: GgmlType, w: &[u8], x: &[u8]) -> Result<usize, DotError> {
    if scalar_fn(ty).is_none() {
        return Err(DotError::Unsupported(ty));
    }
    let ts = ty.type_size();
    if w.len() % ts != 0 {
        return Err(DotError::PartialWeight { ty, len: w.len() });
    }
    let n = w.len() / ts * ty.block_size();
    let act = vec_dot_type(ty);
    let expected = n / act.block_size() * act.type_size();
    if n % act.block_size() != 0 || x.len() != expected {
        return Err(DotError::ActivationLength {
            act,
            expected,
            got: x.len(),
        });
    }
    Ok(n)
}

/// The dot product of weight row `w` (type `ty`) with activation row `x` (type
/// `vec_dot_type(ty)`), at the process's SIMD level.
pub fn vec_dot(ty: GgmlType, w: &[u8], x: &[u8]) -> Result<f32, DotError> {
    vec_dot_at(simd_level(), ty, w, x)
}

/// [`vec_dot`] at a given level (falling back as [`dot_fn`] does).
pub fn vec_dot_at(level: SimdLevel, ty: GgmlType, w: &[u8], x: &[u8]) -> Result<f32, DotError> {
    check_rows(ty, w, x)?;
    let f = dot_fn(ty, level).ok_or(DotError::Unsupported(ty))?;
    Ok(f(w, x))
}
