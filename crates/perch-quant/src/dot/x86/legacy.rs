//! AVX2 and AVX-512 kernels for the 32-element block types (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0,
//! IQ4_NL, MXFP4) against Q8_0 / Q8_1.
//!
//! One body, written once in [`legacy_kernels`], is compiled twice: for AVX2 the 8-bit
//! products go through `vpmaddubsw` + `vpmaddwd`, for AVX-512 through VNNI's `vpdpbusd`
//! (the helpers `mul_sum_us8` / `mul_sum_i8` of each level's module). Blocks are taken eight
//! at a time: their f16 scales are converted together ([`f16_products`]), then per block the
//! integer dot product in eight `i32` lanes (exact) is converted to `f32` and accumulated
//! with one FMA by the block's combined scale, alternating two accumulators; one horizontal
//! sum at the end. The `_x4` forms run one weight row against four activation rows,
//! unpacking each weight block once, with exactly the one-row arithmetic per row.
//!
//! Q4_1 goes block by block instead ([`dot1`] / [`dot4`]): the leading f16 words (scale and
//! minimum, scale and sum) of both blocks are loaded and converted together, one multiply
//! gives the scale product and the minimum term, one FMA chain in ggml's order. Measured with
//! thread CPU time, that made the one-row Q4_1 kernel 1.6x and the four-row one 1.7x faster
//! (the separate pass over the minimum terms is gone). Q4_0, Q5_0 and Q8_0 sum each block
//! exactly ([`blocks8_exact`]: the eight lanes of eight blocks reduced together, then one
//! FMA per chunk of eight blocks, lane `k` for block `k`): per block the repacked batch
//! product then needs one conversion and one FMA for sixteen rows, not eight, the AMX
//! product can reproduce it (`crate::amx_q8`), and the one-row kernel got faster too (Q8_0
//! in L1: 0.87-0.98 of ggml's speed before, 1.09 after). The
//! repacked batch products (`crate::packed`) reproduce each scheme's per-lane arithmetic,
//! so every path gives a row the same bits.
//!
//! Activation quants must lie in `[-127, 127]` (ggml's and perch's quantizers never make
//! -128): the signed products use the `vpsignb` trick, as ggml's do. With VNNI, Q4_0 and
//! Q5_0 skip it: their quants are multiplied as the unsigned `q + offset` they are stored
//! as, and one more `vpdpbusd` takes `offset · Σ y` off (`q4_0_sum`, `q5_0_sum`; Q5_0's fifth
//! bits come from a mask register). The block sums are the same integers; in L1 the one-row
//! Q5_0 product got 13% faster, and unpacking nibbles with a broadcast load and a variable
//! shift instead of a lane insert (`nibbles32`) took another 9% off Q4_0 and 4% off Q5_0.
//!
//! [`f16_products`]: crate::dot::x86::common::f16_products

/// How far past a row's end the software prefetches may reach: into the next weight row,
/// which a matrix × vector product reads next (rows are contiguous). Without it the short
/// rows of small models (SmolLM2's 576 columns are 18 blocks, under the 512-byte prefetch
/// distance) were never prefetched at all; with it, SmolLM2 Q4_1 generation went from 45 to
/// 64-68 tokens/s on one thread and from 94 to 110-114 on two (512 bytes of slack gave 61 and
/// 110). A prefetch is only a hint: it never faults, whatever the address.
const PREFETCH_SLACK: usize = 2048;

/// Weights stream from memory: requests the lines 512 bytes past the start of the chunk of
/// blocks `$xc` (up to `$ahead`, see `dot1`).
macro_rules! prefetch_chunk {
    ($xc:ident, $ahead:ident) => {{
        let base = $xc.as_ptr().cast::<u8>();
        for off in [512, 576, 640, 704] {
            let next = base.wrapping_add(off);
            if next < $ahead {
                _mm_prefetch::<_MM_HINT_T0>(next.cast());
            }
        }
    }};
}

/// Runs `$body` (which yields the block's `__m256` of eight lane products) for every pair
/// of blocks, with `$d` bound to the block's combined scale; returns the sum.
macro_rules! blocks8 {
    ($x:ident, $y:ident, |$xb:ident, $yb:ident, $d:ident| $scales:expr, $body:expr) => {{
        // Two accumulators, even blocks of a chunk into the first, odd into the second,
        // as named variables (an array indexed by `k % 2` would live in memory).
        let mut acc0 = _mm256_setzero_ps();
        let mut acc1 = _mm256_setzero_ps();
        let ahead = $x
            .as_ptr_range()
            .end
            .cast::<u8>()
            .wrapping_add(super::PREFETCH_SLACK);
        for (xc, yc) in $x.chunks(8).zip($y.chunks(8)) {
            prefetch_chunk!(xc, ahead);
            let ds: [f32; 8] = {
                let mut a = [0u16; 8];
                let mut b = [0u16; 8];
                for (k, ($xb, $yb)) in xc.iter().zip(yc).enumerate() {
                    (a[k], b[k]) = $scales;
                }
                f16_products(&a, &b)
            };
            let mut it = xc.iter().zip(yc).enumerate();
            while let Some((k, ($xb, $yb))) = it.next() {
                let $d = _mm256_set1_ps(ds[k]);
                let p: __m256 = $body;
                acc0 = _mm256_fmadd_ps($d, p, acc0);
                let Some((k, ($xb, $yb))) = it.next() else {
                    break;
                };
                let $d = _mm256_set1_ps(ds[k]);
                let p: __m256 = $body;
                acc1 = _mm256_fmadd_ps($d, p, acc1);
            }
        }
        hsum_ps(_mm256_add_ps(acc0, acc1))
    }};
}

/// Q8_0's scheme: per block the exact integer dot product (its eight lanes summed, eight
/// blocks at a time by [`hsum8x8_i32`]), converted and accumulated with one FMA by the
/// block's combined scale into lane `k` of one accumulator for block `k` of each chunk of
/// eight; one horizontal sum at the end. `$body` yields the block's `__m256i` of eight lane
/// sums. The repacked batch products (`crate::packed`, `crate::amx`) compute the same exact
/// block sums, so they reproduce it bit for bit with their eight accumulators per row.
///
/// [`hsum8x8_i32`]: crate::dot::x86::common::hsum8x8_i32
macro_rules! blocks8_exact {
    ($x:ident, $y:ident, |$xb:ident, $yb:ident| $scales:expr, $body:expr) => {{
        let mut acc = _mm256_setzero_ps();
        let ahead = $x
            .as_ptr_range()
            .end
            .cast::<u8>()
            .wrapping_add(super::PREFETCH_SLACK);
        for (xc, yc) in $x.chunks(8).zip($y.chunks(8)) {
            prefetch_chunk!(xc, ahead);
            let mut a = [0u16; 8];
            let mut b = [0u16; 8];
            let mut s = [_mm256_setzero_si256(); 8];
            for (k, ($xb, $yb)) in xc.iter().zip(yc).enumerate() {
                (a[k], b[k]) = $scales;
                s[k] = $body;
            }
            let ds = f16_products(&a, &b);
            // SAFETY: `ds` is 8 readable floats; unaligned load.
            let d = unsafe { _mm256_loadu_ps(ds.as_ptr()) };
            acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(hsum8x8_i32(&s)), acc);
        }
        hsum_ps(acc)
    }};
}

/// The four-row form of [`blocks8_exact`]: per row exactly its operations in its order, each
/// weight block's quants (`$prep`, bound to `$p`) loaded once.
macro_rules! blocks8_exact_x4 {
    ($x:ident, $y:ident, |$xb:ident, $yr:ident, $p:ident| $xd:expr, $yd:expr, $prep:expr, $body:expr) => {{
        for yr in $y {
            assert_eq!($x.len(), yr.len(), "block counts");
        }
        let mut acc = [_mm256_setzero_ps(); 4];
        for (c, xc) in $x.chunks(8).enumerate() {
            let base = 8 * c;
            let mut a = [0u16; 8];
            let mut q = [_mm256_setzero_si256(); 8];
            for (k, $xb) in xc.iter().enumerate() {
                a[k] = $xd;
                q[k] = $prep;
            }
            for r in 0..4 {
                let mut b = [0u16; 8];
                let mut s = [_mm256_setzero_si256(); 8];
                for (k, $yr) in $y[r][base..base + xc.len()].iter().enumerate() {
                    b[k] = $yd;
                    let $p = q[k];
                    s[k] = $body;
                }
                let ds = f16_products(&a, &b);
                // SAFETY: `ds` is 8 readable floats; unaligned load.
                let d = unsafe { _mm256_loadu_ps(ds.as_ptr()) };
                acc[r] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(hsum8x8_i32(&s)), acc[r]);
            }
        }
        let mut out = [0f32; 4];
        for r in 0..4 {
            out[r] = hsum_ps(acc[r]);
        }
        out
    }};
}

/// The four-row form of [`blocks8`]: `$body` yields the lane products of weight block `$xb`
/// with activation block `$yr` of row `r`; per row the operations and their order are
/// exactly [`blocks8`]'s. `$prep` is computed once per weight block.
macro_rules! blocks8_x4 {
    ($x:ident, $y:ident, |$xb:ident, $yr:ident, $p:ident| $xd:expr, $yd:expr, $prep:expr, $body:expr) => {{
        for yr in $y {
            assert_eq!($x.len(), yr.len(), "block counts");
        }
        let mut acc0 = [_mm256_setzero_ps(); 4];
        let mut acc1 = [_mm256_setzero_ps(); 4];
        for (c, xc) in $x.chunks(8).enumerate() {
            let base = 8 * c;
            let mut a = [0u16; 8];
            for (k, $xb) in xc.iter().enumerate() {
                a[k] = $xd;
            }
            // Plain loops, not `array::from_fn`: a closure does not inherit the target
            // features, so the helpers and intrinsics inside it would not be inlined.
            let mut ds = [[0f32; 8]; 4];
            for r in 0..4 {
                let mut b = [0u16; 8];
                for (k, $yr) in $y[r][base..base + xc.len()].iter().enumerate() {
                    b[k] = $yd;
                }
                ds[r] = f16_products(&a, &b);
            }
            let mut k = 0;
            while k < xc.len() {
                let $xb = &xc[k];
                let $p = $prep;
                for r in 0..4 {
                    let $yr = &$y[r][base + k];
                    let v: __m256 = $body;
                    acc0[r] = _mm256_fmadd_ps(_mm256_set1_ps(ds[r][k]), v, acc0[r]);
                }
                if k + 1 < xc.len() {
                    let $xb = &xc[k + 1];
                    let $p = $prep;
                    for r in 0..4 {
                        let $yr = &$y[r][base + k + 1];
                        let v: __m256 = $body;
                        acc1[r] = _mm256_fmadd_ps(_mm256_set1_ps(ds[r][k + 1]), v, acc1[r]);
                    }
                }
                k += 2;
            }
        }
        let mut out = [0f32; 4];
        for r in 0..4 {
            out[r] = hsum_ps(_mm256_add_ps(acc0[r], acc1[r]));
        }
        out
    }};
}

/// `Σ_blocks (dx·dy)·p + [Σ_blocks m·s]` for one weight row and one activation row, block by
/// block in ggml's order: per block the two leading f16 words of each side (scale and minimum
/// or sum) are loaded and converted together (`head2`), one multiply gives `[dx·dy, m·s, …]`,
/// the scale product is broadcast into the FMA accumulator and, for the `*_1` types
/// (`$min`), the minimum term is added to a running sum. One accumulator, as ggml has: the
/// same order of additions keeps results close to llama.cpp's on models whose outputs are
/// sensitive to rounding (SmolLM2's greedy answers change with a two-chain order).
macro_rules! dot1 {
    ($x:ident, $y:ident, $min:expr, |$xb:ident, $yb:ident| $p:expr) => {{
        assert_eq!($x.len(), $y.len(), "block counts");
        let mut acc = _mm256_setzero_ps();
        let mut m = _mm_setzero_ps();
        let ahead = $x
            .as_ptr_range()
            .end
            .cast::<u8>()
            .wrapping_add(super::PREFETCH_SLACK);
        for ($xb, $yb) in $x.iter().zip($y) {
            // Weights stream from memory: ask for the blocks 512 bytes ahead now, which keeps
            // more cache-line fetches in flight than the hardware prefetcher does alone (the
            // one-row Q4_1 product over 64 MiB went from 5 to 10 GiB/s on one thread).
            let next = ($xb as *const _ as *const u8).wrapping_add(512);
            if next < ahead {
                _mm_prefetch::<_MM_HINT_T0>(next.cast());
            }
            let v = _mm_mul_ps(head2($xb), head2($yb));
            if $min {
                m = _mm_add_ps(m, v);
            }
            let p: __m256 = $p;
            acc = _mm256_fmadd_ps(_mm256_broadcastss_ps(v), p, acc);
        }
        let mut sum = hsum_ps(acc);
        if $min {
            sum += _mm_cvtss_f32(_mm_movehdup_ps(m));
        }
        sum
    }};
}

/// [`dot1`] for one weight row against four activation rows: per row exactly its operations
/// in its order (so the results are bit-identical to four one-row calls), with each weight
/// block's quants (`$qx`, bound to `$q`) and scales unpacked once.
macro_rules! dot4 {
    ($x:ident, $y:ident, $min:expr, |$xb:ident| $qx:expr, |$q:ident, $yb:ident| $p:expr) => {{
        for yr in $y {
            assert_eq!($x.len(), yr.len(), "block counts");
        }
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut m = [_mm_setzero_ps(); 4];
        for (k, $xb) in $x.iter().enumerate() {
            let ($q, xv) = ($qx, head2($xb));
            for r in 0..4 {
                let $yb = &$y[r][k];
                let v = _mm_mul_ps(xv, head2($yb));
                if $min {
                    m[r] = _mm_add_ps(m[r], v);
                }
                let p: __m256 = $p;
                acc[r] = _mm256_fmadd_ps(_mm256_broadcastss_ps(v), p, acc[r]);
            }
        }
        let mut out = [0f32; 4];
        for r in 0..4 {
            out[r] = hsum_ps(acc[r]);
            if $min {
                out[r] += _mm_cvtss_f32(_mm_movehdup_ps(m[r]));
            }
        }
        out
    }};
}

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

        /// `Σ f16(m) * f16(s)` of the `*_1` types, eight blocks at a time, in block order.
        #[inline]
        #[target_feature(enable = $feat)]
        fn min_terms<X, Y>(x: &[X], y: &[Y], ms: impl Fn(&X, &Y) -> (u16, u16)) -> f32 {
            let mut summs = 0.0f32;
            for (xc, yc) in x.chunks(8).zip(y.chunks(8)) {
                let mut a = [0u16; 8];
                let mut b = [0u16; 8];
                for (k, (xb, yb)) in xc.iter().zip(yc).enumerate() {
                    (a[k], b[k]) = ms(xb, yb);
                }
                let p = f16_products(&a, &b);
                for v in &p[..xc.len()] {
                    summs += v;
                }
            }
            summs
        }

        /// The first two f16 words of a block (scale and minimum, or scale and scaled sum, or
        /// the scale and two bytes of quants) as f32 in lanes 0 and 1. An 8-byte load
        /// (`vmovq`), not an insert: built from `_mm_cvtsi32_si128`, the compiler emitted
        /// `vpinsrw` into whatever register held a running sum, chaining every block to it.
        #[inline]
        #[target_feature(enable = $feat)]
        fn head2<B: bytemuck::Pod>(b: &B) -> __m128 {
            const { assert!(size_of::<B>() >= 8) };
            // SAFETY: `B` is at least 8 bytes (checked at compile time); unaligned load.
            _mm_cvtph_ps(unsafe { _mm_loadl_epi64((b as *const B).cast()) })
        }

        /// Q4_0 · Q8_0.
        #[target_feature(enable = $feat)]
        pub(crate) fn q4_0(x: &[BlockQ4_0], y: &[BlockQ8_0]) -> f32 {
            assert_eq!(x.len(), y.len(), "block counts");
            blocks8_exact!(x, y, |xb, yb| (xb.d.to_bits(), yb.d.to_bits()), {
                q4_0_sum(nibbles32(&xb.qs), load32(&yb.qs))
            })
        }

        /// Q4_0 against four activation rows at once: each weight block is unpacked once.
        /// Per row, the same operations in the same order as [`q4_0`], so the results are
        /// bit-identical to four calls of it.
        #[target_feature(enable = $feat)]
        pub(crate) fn q4_0_x4(x: &[BlockQ4_0], y: [&[BlockQ8_0]; 4]) -> [f32; 4] {
            let eight = _mm256_set1_epi8(8);
            blocks8_exact_x4!(
                x,
                y,
                |xb, yb, qx| xb.d.to_bits(),
                yb.d.to_bits(),
                _mm256_sub_epi8(nibbles32(&xb.qs), eight),
                mul_sum_i8(qx, load32(&yb.qs))
            )
        }

        /// Q8_0 against four activation rows at once (bit-identical to four [`q8_0`] calls).
        #[target_feature(enable = $feat)]
        pub(crate) fn q8_0_x4(x: &[BlockQ8_0], y: [&[BlockQ8_0]; 4]) -> [f32; 4] {
            blocks8_exact_x4!(
                x,
                y,
                |xb, yb, qx| xb.d.to_bits(),
                yb.d.to_bits(),
                load32(&xb.qs),
                mul_sum_i8(qx, load32(&yb.qs))
            )
        }

        /// Q4_1 · Q8_1.
        #[target_feature(enable = $feat)]
        pub(crate) fn q4_1(x: &[BlockQ4_1], y: &[BlockQ8_1]) -> f32 {
            dot1!(x, y, true, |xb, yb| {
                _mm256_cvtepi32_ps(mul_sum_us8(nibbles32(&xb.qs), load32(&yb.qs)))
            })
        }

        /// Q4_1 against four activation rows (bit-identical to four [`q4_1`] calls).
        #[target_feature(enable = $feat)]
        pub(crate) fn q4_1_x4(x: &[BlockQ4_1], y: [&[BlockQ8_1]; 4]) -> [f32; 4] {
            dot4!(x, y, true, |xb| nibbles32(&xb.qs), |qx, yb| {
                _mm256_cvtepi32_ps(mul_sum_us8(qx, load32(&yb.qs)))
            })
        }

        /// Q5_0 · Q8_0.
        #[target_feature(enable = $feat)]
        pub(crate) fn q5_0(x: &[BlockQ5_0], y: &[BlockQ8_0]) -> f32 {
            assert_eq!(x.len(), y.len(), "block counts");
            blocks8_exact!(x, y, |xb, yb| (xb.d.to_bits(), yb.d.to_bits()), {
                q5_0_sum(&xb.qs, u32::from_le_bytes(xb.qh), load32(&yb.qs))
            })
        }

        /// Q5_0 against four activation rows at once (bit-identical to four [`q5_0`] calls).
        #[target_feature(enable = $feat)]
        pub(crate) fn q5_0_x4(x: &[BlockQ5_0], y: [&[BlockQ8_0]; 4]) -> [f32; 4] {
            let f0 = _mm256_set1_epi8(0xf0u8 as i8);
            blocks8_exact_x4!(
                x,
                y,
                |xb, yb, qx| xb.d.to_bits(),
                yb.d.to_bits(),
                {
                    let hi = _mm256_andnot_si256(bits32(u32::from_le_bytes(xb.qh)), f0);
                    _mm256_or_si256(nibbles32(&xb.qs), hi)
                },
                mul_sum_i8(qx, load32(&yb.qs))
            )
        }

        /// Q5_1 · Q8_1.
        #[target_feature(enable = $feat)]
        pub(crate) fn q5_1(x: &[BlockQ5_1], y: &[BlockQ8_1]) -> f32 {
            assert_eq!(x.len(), y.len(), "block counts");
            let b4 = _mm256_set1_epi8(0x10);
            let dot = blocks8!(x, y, |xb, yb, d| (xb.d.to_bits(), yb.d.to_bits()), {
                let hi = _mm256_and_si256(bits32(u32::from_le_bytes(xb.qh)), b4);
                let qx = _mm256_or_si256(nibbles32(&xb.qs), hi);
                _mm256_cvtepi32_ps(mul_sum_us8(qx, load32(&yb.qs)))
            });
            dot + min_terms(x, y, |xb, yb| (xb.m.to_bits(), yb.s.to_bits()))
        }

        /// Q5_1 against four activation rows at once (bit-identical to four [`q5_1`] calls).
        #[target_feature(enable = $feat)]
        pub(crate) fn q5_1_x4(x: &[BlockQ5_1], y: [&[BlockQ8_1]; 4]) -> [f32; 4] {
            let b4 = _mm256_set1_epi8(0x10);
            let dots: [f32; 4] = blocks8_x4!(
                x,
                y,
                |xb, yb, qx| xb.d.to_bits(),
                yb.d.to_bits(),
                {
                    let hi = _mm256_and_si256(bits32(u32::from_le_bytes(xb.qh)), b4);
                    _mm256_or_si256(nibbles32(&xb.qs), hi)
                },
                _mm256_cvtepi32_ps(mul_sum_us8(qx, load32(&yb.qs)))
            );
            let mut out = dots;
            for r in 0..4 {
                out[r] += min_terms(x, y[r], |xb, yb| (xb.m.to_bits(), yb.s.to_bits()));
            }
            out
        }

        /// Q8_0 · Q8_0.
        #[target_feature(enable = $feat)]
        pub(crate) fn q8_0(x: &[BlockQ8_0], y: &[BlockQ8_0]) -> f32 {
            assert_eq!(x.len(), y.len(), "block counts");
            blocks8_exact!(x, y, |xb, yb| (xb.d.to_bits(), yb.d.to_bits()), {
                mul_sum_i8(load32(&xb.qs), load32(&yb.qs))
            })
        }

        /// IQ4_NL · Q8_0.
        #[target_feature(enable = $feat)]
        pub(crate) fn iq4_nl(x: &[BlockIq4Nl], y: &[BlockQ8_0]) -> f32 {
            assert_eq!(x.len(), y.len(), "block counts");
            let table = table16(&KVALUES_IQ4NL);
            blocks8!(x, y, |xb, yb, d| (yb.d.to_bits(), xb.d.to_bits()), {
                let qx = _mm256_shuffle_epi8(table, nibbles32(&xb.qs));
                _mm256_cvtepi32_ps(mul_sum_i8(qx, load32(&yb.qs)))
            })
        }

        /// MXFP4 · Q8_0.
        #[target_feature(enable = $feat)]
        pub(crate) fn mxfp4(x: &[BlockMxfp4], y: &[BlockQ8_0]) -> f32 {
            assert_eq!(x.len(), y.len(), "block counts");
            let table = table16(&KVALUES_MXFP4);
            let mut acc = _mm256_setzero_ps();
            for (xc, yc) in x.chunks(8).zip(y.chunks(8)) {
                let mut b = [0u16; 8];
                for (k, yb) in yc.iter().enumerate() {
                    b[k] = yb.d.to_bits();
                }
                let dy = f16x8(&b);
                for (k, (xb, yb)) in xc.iter().zip(yc).enumerate() {
                    let d = _mm256_set1_ps(dy[k] * e8m0_to_f32_half(xb.e));
                    let qx = _mm256_shuffle_epi8(table, nibbles32(&xb.qs));
                    let p = _mm256_cvtepi32_ps(mul_sum_i8(qx, load32(&yb.qs)));
                    acc = _mm256_fmadd_ps(d, p, acc);
                }
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
