//! AVX2 and AVX-512 kernels for the 32-element block types (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0,
//! IQ4_NL, MXFP4) against Q8_0 / Q8_1.
//!
//! One body, written once in [`legacy_kernels`], is compiled twice: for AVX2 the 8-bit
//! products go through `vpmaddubsw` + `vpmaddwd`, for AVX-512 through VNNI's `vpdpbusd`
//! (the helpers `mul_sum_us8` / `mul_sum_i8` of each level's module). Per block: the integer
//! dot product in eight `i32` lanes (exact), converted to `f32` and accumulated with one FMA
//! by the block's combined scale; one horizontal sum at the end.
//!
//! Activation quants must lie in `[-127, 127]` (ggml's and perch's quantizers never make
//! -128): the signed products use the `vpsignb` trick, as ggml's do.

macro_rules! legacy_kernels {
    ($feat:literal, $mul:path) => {
        use core::arch::x86_64::*;

        use crate::blocks::{
            BlockIq4Nl, BlockMxfp4, BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0,
            BlockQ8_1,
        };
        use crate::dot::x86::common::*;
        use crate::dot::{KVALUES_IQ4NL, KVALUES_MXFP4, e8m0_to_f32_half};
        use $mul::*;

        /// Q4_0 · Q8_0.
        #[target_feature(enable = $feat)]
        pub(crate) fn q4_0(x: &[BlockQ4_0], y: &[BlockQ8_0]) -> f32 {
            assert_eq!(x.len(), y.len(), "block counts");
            let mut acc = _mm256_setzero_ps();
            let eight = _mm256_set1_epi8(8);
            for (xb, yb) in x.iter().zip(y) {
                let d = _mm256_set1_ps(h2f(xb.d.to_bits()) * h2f(yb.d.to_bits()));
                let qx = _mm256_sub_epi8(nibbles32(&xb.qs), eight);
                let qy = load32(&yb.qs);
                let p = _mm256_cvtepi32_ps(mul_sum_i8(qx, qy));
                acc = _mm256_fmadd_ps(d, p, acc);
            }
            hsum_ps(acc)
        }

        /// Q4_1 · Q8_1.
        #[target_feature(enable = $feat)]
        pub(crate) fn q4_1(x: &[BlockQ4_1], y: &[BlockQ8_1]) -> f32 {
            assert_eq!(x.len(), y.len(), "block counts");
            let mut acc = _mm256_setzero_ps();
            let mut summs = 0.0f32;
            for (xb, yb) in x.iter().zip(y) {
                summs += h2f(xb.m.to_bits()) * h2f(yb.s.to_bits());
                let d = _mm256_set1_ps(h2f(xb.d.to_bits()) * h2f(yb.d.to_bits()));
                let qx = nibbles32(&xb.qs);
                let qy = load32(&yb.qs);
                let p = _mm256_cvtepi32_ps(mul_sum_us8(qx, qy));
                acc = _mm256_fmadd_ps(d, p, acc);
            }
            hsum_ps(acc) + summs
        }

        /// Q5_0 · Q8_0.
        #[target_feature(enable = $feat)]
        pub(crate) fn q5_0(x: &[BlockQ5_0], y: &[BlockQ8_0]) -> f32 {
            assert_eq!(x.len(), y.len(), "block counts");
            let mut acc = _mm256_setzero_ps();
            let f0 = _mm256_set1_epi8(0xf0u8 as i8);
            for (xb, yb) in x.iter().zip(y) {
                let d = _mm256_set1_ps(h2f(xb.d.to_bits()) * h2f(yb.d.to_bits()));
                // Nibble | 0xF0 where the fifth bit is clear: the signed byte q - 16.
                let hi = _mm256_andnot_si256(bits32(u32::from_le_bytes(xb.qh)), f0);
                let qx = _mm256_or_si256(nibbles32(&xb.qs), hi);
                let qy = load32(&yb.qs);
                let p = _mm256_cvtepi32_ps(mul_sum_i8(qx, qy));
                acc = _mm256_fmadd_ps(d, p, acc);
            }
            hsum_ps(acc)
        }

        /// Q5_1 · Q8_1.
        #[target_feature(enable = $feat)]
        pub(crate) fn q5_1(x: &[BlockQ5_1], y: &[BlockQ8_1]) -> f32 {
            assert_eq!(x.len(), y.len(), "block counts");
            let mut acc = _mm256_setzero_ps();
            let mut summs = 0.0f32;
            let b4 = _mm256_set1_epi8(0x10);
            for (xb, yb) in x.iter().zip(y) {
                summs += h2f(xb.m.to_bits()) * h2f(yb.s.to_bits());
                let d = _mm256_set1_ps(h2f(xb.d.to_bits()) * h2f(yb.d.to_bits()));
                let hi = _mm256_and_si256(bits32(u32::from_le_bytes(xb.qh)), b4);
                let qx = _mm256_or_si256(nibbles32(&xb.qs), hi);
                let qy = load32(&yb.qs);
                let p = _mm256_cvtepi32_ps(mul_sum_us8(qx, qy));
                acc = _mm256_fmadd_ps(d, p, acc);
            }
            hsum_ps(acc) + summs
        }

        /// Q8_0 · Q8_0.
        #[target_feature(enable = $feat)]
        pub(crate) fn q8_0(x: &[BlockQ8_0], y: &[BlockQ8_0]) -> f32 {
            assert_eq!(x.len(), y.len(), "block counts");
            let mut acc = _mm256_setzero_ps();
            for (xb, yb) in x.iter().zip(y) {
                let d = _mm256_set1_ps(h2f(xb.d.to_bits()) * h2f(yb.d.to_bits()));
                let p = _mm256_cvtepi32_ps(mul_sum_i8(load32(&xb.qs), load32(&yb.qs)));
                acc = _mm256_fmadd_ps(d, p, acc);
            }
            hsum_ps(acc)
        }

        /// IQ4_NL · Q8_0.
        #[target_feature(enable = $feat)]
        pub(crate) fn iq4_nl(x: &[BlockIq4Nl], y: &[BlockQ8_0]) -> f32 {
            assert_eq!(x.len(), y.len(), "block counts");
            let table = table16(&KVALUES_IQ4NL);
            let mut acc = _mm256_setzero_ps();
            for (xb, yb) in x.iter().zip(y) {
                let d = _mm256_set1_ps(h2f(yb.d.to_bits()) * h2f(xb.d.to_bits()));
                let qx = _mm256_shuffle_epi8(table, nibbles32(&xb.qs));
                let p = _mm256_cvtepi32_ps(mul_sum_i8(qx, load32(&yb.qs)));
                acc = _mm256_fmadd_ps(d, p, acc);
            }
            hsum_ps(acc)
        }

        /// MXFP4 · Q8_0.
        #[target_feature(enable = $feat)]
        pub(crate) fn mxfp4(x: &[BlockMxfp4], y: &[BlockQ8_0]) -> f32 {
            assert_eq!(x.len(), y.len(), "block counts");
            let table = table16(&KVALUES_MXFP4);
            let mut acc = _mm256_setzero_ps();
            for (xb, yb) in x.iter().zip(y) {
                let d = _mm256_set1_ps(h2f(yb.d.to_bits()) * e8m0_to_f32_half(xb.e));
                let qx = _mm256_shuffle_epi8(table, nibbles32(&xb.qs));
                let p = _mm256_cvtepi32_ps(mul_sum_i8(qx, load32(&yb.qs)));
                acc = _mm256_fmadd_ps(d, p, acc);
            }
            hsum_ps(acc)
        }
    };
}

/// The AVX2 + FMA + F16C instantiation.
pub(crate) mod avx2 {
    legacy_kernels!("avx2,fma,f16c", crate::dot::x86::common::mul_avx2);
}

/// The AVX-512 (VNNI) instantiation.
pub(crate) mod avx512 {
    legacy_kernels!(
        "avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni",
        crate::dot::x86::common::mul_vnni
    );
}
