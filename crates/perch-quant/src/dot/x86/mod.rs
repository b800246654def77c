//! x86-64 kernels: the per-level tables and the safe wrappers around the
//! `#[target_feature]` functions.
//!
//! Soundness rests on one rule: the wrappers here are private to the crate and handed out
//! only by [`avx2_fn`] / [`avx512_fn`], which `dot_fn` calls only for levels
//! [`SimdLevel::is_supported`](crate::simd::SimdLevel::is_supported) confirmed on this CPU.
//!
//! The AVX-512 intrinsics used here are stable since Rust 1.89, above the workspace's declared
//! `rust-version` (1.85); the toolchain the project builds with is newer. Raising the
//! workspace's `rust-version` to 1.89 would make the lint allowance below unnecessary.
#![allow(clippy::incompatible_msrv)]

pub(crate) mod common;
mod float;
pub(crate) mod kquants;
mod legacy;
mod ternary;

use super::{Dot4Fn, DotFn, cast};
use crate::blocks::*;
use crate::simd::cpu;
use crate::types::GgmlType;

/// Wraps a typed `#[target_feature]` kernel as a [`DotFn`].
macro_rules! tf_wrap {
    ($f:path, $w:ty, $x:ty) => {{
        fn w(a: &[u8], b: &[u8]) -> f32 {
            // SAFETY: handed out only for a level the CPU supports (see the module docs),
            // which includes every feature `$f` is compiled with.
            unsafe { $f(cast::<$w>(a), cast::<$x>(b)) }
        }
        w as DotFn
    }};
    ($f:path) => {{
        fn w(a: &[u8], b: &[u8]) -> f32 {
            // SAFETY: handed out only for a level the CPU supports (see the module docs),
            // which includes every feature `$f` is compiled with.
            unsafe { $f(a, b) }
        }
        w as DotFn
    }};
}

/// Wraps a typed four-row `#[target_feature]` kernel as a [`Dot4Fn`].
macro_rules! tf_wrap4 {
    ($f:path, $w:ty, $x:ty) => {{
        fn w(a: &[u8], b: [&[u8]; 4]) -> [f32; 4] {
            // SAFETY: handed out only for a level the CPU supports (see the module docs),
            // which includes every feature `$f` is compiled with.
            unsafe { $f(cast::<$w>(a), b.map(cast::<$x>)) }
        }
        w as Dot4Fn
    }};
}

/// The AVX2 four-row kernel for `ty`, if there is one.
pub(super) fn avx2_fn4(ty: GgmlType) -> Option<Dot4Fn> {
    use GgmlType::*;
    Some(match ty {
        Q4_0 => tf_wrap4!(legacy::avx2::q4_0_x4, BlockQ4_0, BlockQ8_0),
        Q8_0 => tf_wrap4!(legacy::avx2::q8_0_x4, BlockQ8_0, BlockQ8_0),
        Q4_1 => tf_wrap4!(legacy::avx2::q4_1_x4, BlockQ4_1, BlockQ8_1),
        Q5_0 => tf_wrap4!(legacy::avx2::q5_0_x4, BlockQ5_0, BlockQ8_0),
        Q5_1 => tf_wrap4!(legacy::avx2::q5_1_x4, BlockQ5_1, BlockQ8_1),
        Q4_K => tf_wrap4!(kquants::avx2::q4_k_x4, BlockQ4K, BlockQ8K),
        Q6_K => tf_wrap4!(kquants::avx2::q6_k_x4, BlockQ6K, BlockQ8K),
        _ => return None,
    })
}

/// The AVX-512 four-row kernel for `ty`, if there is one.
pub(super) fn avx512_fn4(ty: GgmlType) -> Option<Dot4Fn> {
    use GgmlType::*;
    Some(match ty {
        Q4_0 => tf_wrap4!(legacy::avx512::q4_0_x4, BlockQ4_0, BlockQ8_0),
        Q8_0 => tf_wrap4!(legacy::avx512::q8_0_x4, BlockQ8_0, BlockQ8_0),
        Q4_1 => tf_wrap4!(legacy::avx512::q4_1_x4, BlockQ4_1, BlockQ8_1),
        Q5_0 => tf_wrap4!(legacy::avx512::q5_0_x4, BlockQ5_0, BlockQ8_0),
        Q5_1 => tf_wrap4!(legacy::avx512::q5_1_x4, BlockQ5_1, BlockQ8_1),
        Q4_K => tf_wrap4!(kquants::avx512::q4_k_x4, BlockQ4K, BlockQ8K),
        Q6_K => tf_wrap4!(kquants::avx512::q6_k_x4, BlockQ6K, BlockQ8K),
        _ => return None,
    })
}

/// The AVX2 kernel for `ty`, if there is one.
pub(super) fn avx2_fn(ty: GgmlType) -> Option<DotFn> {
    use GgmlType::*;
    use legacy::avx2 as l;
    Some(match ty {
        F32 => tf_wrap!(float::f32_avx2),
        F16 => tf_wrap!(float::f16_avx2),
        BF16 => tf_wrap!(float::bf16_avx2),
        Q4_0 => tf_wrap!(l::q4_0, BlockQ4_0, BlockQ8_0),
        Q4_1 => tf_wrap!(l::q4_1, BlockQ4_1, BlockQ8_1),
        Q5_0 => tf_wrap!(l::q5_0, BlockQ5_0, BlockQ8_0),
        Q5_1 => tf_wrap!(l::q5_1, BlockQ5_1, BlockQ8_1),
        Q8_0 => tf_wrap!(l::q8_0, BlockQ8_0, BlockQ8_0),
        IQ4_NL => tf_wrap!(l::iq4_nl, BlockIq4Nl, BlockQ8_0),
        MXFP4 => tf_wrap!(l::mxfp4, BlockMxfp4, BlockQ8_0),
        Q2_K => tf_wrap!(kquants::avx2::q2_k, BlockQ2K, BlockQ8K),
        Q3_K => tf_wrap!(kquants::avx2::q3_k, BlockQ3K, BlockQ8K),
        Q4_K => tf_wrap!(kquants::avx2::q4_k, BlockQ4K, BlockQ8K),
        Q5_K => tf_wrap!(kquants::avx2::q5_k, BlockQ5K, BlockQ8K),
        Q6_K => tf_wrap!(kquants::avx2::q6_k, BlockQ6K, BlockQ8K),
        IQ4_XS => tf_wrap!(kquants::avx2::iq4_xs, BlockIq4Xs, BlockQ8K),
        TQ1_0 => tf_wrap!(ternary::avx2::tq1_0, BlockTq1_0, BlockQ8K),
        TQ2_0 => tf_wrap!(ternary::avx2::tq2_0, BlockTq2_0, BlockQ8K),
        _ => return None,
    })
}

/// The AVX-512 kernel for `ty`, if there is one.
pub(super) fn avx512_fn(ty: GgmlType) -> Option<DotFn> {
    use GgmlType::*;
    use legacy::avx512 as l;
    Some(match ty {
        F32 => tf_wrap!(float::f32_avx512),
        F16 => tf_wrap!(float::f16_avx512),
        BF16 if cpu().avx512_bf16 => tf_wrap!(float::bf16_avx512bf16),
        BF16 => tf_wrap!(float::bf16_avx512),
        Q4_0 => tf_wrap!(l::q4_0, BlockQ4_0, BlockQ8_0),
        Q4_1 => tf_wrap!(l::q4_1, BlockQ4_1, BlockQ8_1),
        Q5_0 => tf_wrap!(l::q5_0, BlockQ5_0, BlockQ8_0),
        Q5_1 => tf_wrap!(l::q5_1, BlockQ5_1, BlockQ8_1),
        Q8_0 => tf_wrap!(l::q8_0, BlockQ8_0, BlockQ8_0),
        IQ4_NL => tf_wrap!(l::iq4_nl, BlockIq4Nl, BlockQ8_0),
        MXFP4 => tf_wrap!(l::mxfp4, BlockMxfp4, BlockQ8_0),
        Q2_K => tf_wrap!(kquants::avx512::q2_k, BlockQ2K, BlockQ8K),
        Q3_K => tf_wrap!(kquants::avx512::q3_k, BlockQ3K, BlockQ8K),
        Q4_K => tf_wrap!(kquants::avx512::q4_k, BlockQ4K, BlockQ8K),
        Q5_K => tf_wrap!(kquants::avx512::q5_k, BlockQ5K, BlockQ8K),
        Q6_K => tf_wrap!(kquants::avx512::q6_k, BlockQ6K, BlockQ8K),
        IQ4_XS => tf_wrap!(kquants::avx512::iq4_xs, BlockIq4Xs, BlockQ8K),
        TQ1_0 => tf_wrap!(ternary::avx512::tq1_0, BlockTq1_0, BlockQ8K),
        TQ2_0 => tf_wrap!(ternary::avx512::tq2_0, BlockTq2_0, BlockQ8K),
        _ => return None,
    })
}
