//! AVX2 and AVX-512 kernels for the ternary types TQ1_0 and TQ2_0 against Q8_K.
//!
//! Trits are decoded to unsigned `0..=2` (the stored `t + 1`), multiplied with the
//! activations by `vpmaddubsw`, and `Σ y` (from Q8_K's sums of 16) is subtracted, so the
//! integer sum is exact and the one float step per block is the scalar reference's: these
//! kernels equal the scalar ones bit for bit.

macro_rules! ternary_kernels {
    ($feat:literal) => {
        use core::arch::x86_64::*;

        use crate::blocks::{BlockQ8K, BlockTq1_0, BlockTq2_0};
        use crate::dot::scalar_k::tq1_trit;
        use crate::dot::x86::common::*;

        #[inline]
        #[target_feature(enable = $feat)]
        fn sum_y(yb: &BlockQ8K) -> i32 {
            // SAFETY: `bsums` is 32 readable bytes; unaligned load.
            let b = unsafe { _mm256_loadu_si256(yb.bsums.as_ptr().cast()) };
            hsum_i32(_mm256_madd_epi16(b, _mm256_set1_epi16(1)))
        }

        #[inline]
        #[target_feature(enable = $feat)]
        fn dot_u8(acc: __m256i, q: __m256i, y: __m256i) -> __m256i {
            _mm256_add_epi32(
                acc,
                _mm256_madd_epi16(_mm256_maddubs_epi16(q, y), _mm256_set1_epi16(1)),
            )
        }

        #[inline]
        #[target_feature(enable = $feat)]
        fn y32(yb: &BlockQ8K, off: usize) -> __m256i {
            let a: &[i8; 32] = yb.qs[off..off + 32].try_into().unwrap();
            load32(a)
        }

        /// TQ2_0 · Q8_K.
        #[target_feature(enable = $feat)]
        pub(crate) fn tq2_0(x: &[BlockTq2_0], y: &[BlockQ8K]) -> f32 {
            assert_eq!(x.len(), y.len(), "block counts");
            let m3 = _mm256_set1_epi8(3);
            let mut sumf = 0.0f32;
            for (xb, yb) in x.iter().zip(y) {
                let mut acc = _mm256_setzero_si256();
                for j in 0..2 {
                    let a: &[u8; 32] = xb.qs[32 * j..32 * j + 32].try_into().unwrap();
                    let q = load32(a);
                    for l in 0..4 {
                        let t = _mm256_and_si256(
                            _mm256_srl_epi16(q, _mm_cvtsi32_si128(2 * l as i32)),
                            m3,
                        );
                        acc = dot_u8(acc, t, y32(yb, 128 * j + 32 * l));
                    }
                }
                let sumi = hsum_i32(acc) - sum_y(yb);
                let d = yb.d.get() * h2f2(xb.d.to_bits(), 0).0;
                sumf += sumi as f32 * d;
            }
            sumf
        }

        /// Trits `l` of 16 bytes, as 16 `i16` lanes holding `t + 1` in `0..=2`.
        #[inline]
        #[target_feature(enable = $feat)]
        fn trits16(q: __m128i, pow3: i16) -> __m256i {
            let w = _mm256_cvtepu8_epi16(q);
            let m = _mm256_and_si256(
                _mm256_mullo_epi16(w, _mm256_set1_epi16(pow3)),
                _mm256_set1_epi16(0xff),
            );
            _mm256_srli_epi16::<8>(_mm256_mullo_epi16(m, _mm256_set1_epi16(3)))
        }

        /// Two sets of 16 trits packed to 32 bytes, in order.
        #[inline]
        #[target_feature(enable = $feat)]
        fn pack_trits(a: __m256i, b: __m256i) -> __m256i {
            _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_packus_epi16(a, b))
        }

        /// TQ1_0 · Q8_K.
        #[target_feature(enable = $feat)]
        pub(crate) fn tq1_0(x: &[BlockTq1_0], y: &[BlockQ8K]) -> f32 {
            assert_eq!(x.len(), y.len(), "block counts");
            const POW3: [i16; 5] = [1, 3, 9, 27, 81];
            let mut sumf = 0.0f32;
            for (xb, yb) in x.iter().zip(y) {
                let mut acc = _mm256_setzero_si256();
                // SAFETY: `qs` is 48 readable bytes: loads at 0, 16 and 32 stay inside.
                let (q0, q1, q2) = unsafe {
                    (
                        _mm_loadu_si128(xb.qs.as_ptr().cast()),
                        _mm_loadu_si128(xb.qs.as_ptr().add(16).cast()),
                        _mm_loadu_si128(xb.qs.as_ptr().add(32).cast()),
                    )
                };
                for (l, &p) in POW3.iter().enumerate() {
                    // Bytes 0..32: elements 32l..32l + 32.
                    let t = pack_trits(trits16(q0, p), trits16(q1, p));
                    acc = dot_u8(acc, t, y32(yb, 32 * l));
                }
                // Bytes 32..48: elements 160 + 16l..; two trit positions per 32 lanes.
                for l in [0usize, 2] {
                    let t = pack_trits(trits16(q2, POW3[l]), trits16(q2, POW3[l + 1]));
                    acc = dot_u8(acc, t, y32(yb, 160 + 16 * l));
                }
                let t4 = _mm256_packus_epi16(trits16(q2, POW3[4]), _mm256_setzero_si256());
                let t4 = _mm256_permute4x64_epi64::<0b11_01_10_00>(t4);
                // SAFETY: 16 readable bytes at 224 (elements 224..240), zero-extended to 32.
                let y4 = _mm256_castsi128_si256(unsafe {
                    _mm_loadu_si128(yb.qs.as_ptr().add(224).cast())
                });
                let y4 = _mm256_permute2x128_si256::<0x80>(y4, y4);
                acc = dot_u8(acc, t4, y4);
                let mut sumi = hsum_i32(acc);
                // The last 16 elements, four trits in each of the 4 `qh` bytes.
                for l in 0..4 {
                    for j in 0..4 {
                        sumi += (tq1_trit(xb.qh[j], l) + 1) * i32::from(yb.qs[240 + 4 * l + j]);
                    }
                }
                sumi -= sum_y(yb);
                sumf += sumi as f32 * (h2f2(xb.d.to_bits(), 0).0 * yb.d.get());
            }
            sumf
        }
    };
}

/// The AVX2 + FMA + F16C instantiation.
pub(crate) mod avx2 {
    ternary_kernels!("avx2,fma,f16c");
}

/// The AVX-512 instantiation.
pub(crate) mod avx512 {
    ternary_kernels!("avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni");
}
