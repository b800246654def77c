//! AVX2 and AVX-512 kernels for the 256-element super-block types against Q8_K: Q2_K, Q3_K,
//! Q4_K, Q5_K, Q6_K and IQ4_XS.
//!
//! Per 32 elements: the weights' quants as unsigned bytes (or, for IQ4_XS, signed table
//! values through the `vpsignb` trick) times the activation bytes with `vpmaddubsw` (pairs
//! never saturate: at most 2 · 63 · 127), then `vpmaddwd` with the sub-block scales as `i16`
//! (one per 16 elements, so each 128-bit lane gets its own). Offsets of the signed quants
//! (Q3_K's 4, Q6_K's 32) and the minimums (Q2_K, Q4_K, Q5_K) come from Q8_K's sums of 16,
//! exactly as integers. One `f32` FMA per super-block; one horizontal sum per row.
//!
//! Q4_K, Q5_K and Q6_K instead sum each super-block's integer products to one exact `i32`
//! (`S`, and the minimums' `M` for Q4_K / Q5_K) and apply one scalar FMA per super-block:
//! `acc = fma(d_y · d, S, acc)`, `acc_m += (d_y · dmin) · M`, result `acc − acc_m`. That is
//! the arithmetic the repacked batch product (`crate::packed_k`) can repeat per row with
//! sixteen rows per vector, so a row's result does not depend on which path computed it.
//! Only the float steps have to match there: integer sums are exact in any order, so the
//! one-row kernels form `S` their own, cheaper way. Four products of a quant and an
//! activation byte are summed per `i32` lane (`mul_sum_us8`: one `vpdpbusd` with AVX-512
//! VNNI), two such vectors of different sub-blocks are packed to `i16` (lossless: at most
//! 4 · 63 · 127 per lane) and multiplied by their two scales with one `vpmaddwd`
//! (`scaled_pair`); `S` and `M`, or two super-blocks' `S`, share one horizontal reduction.
//! Under VNNI the scaled pairs are added with one `vpdpwssd`, and Q6_K's merge of low and
//! high bits is one `vpternlogd`. In L1 the one-row Q4_K, Q5_K and Q6_K products now take
//! about 27%, 21% and 18% less time: 1.10, 1.32 and 1.11 of ggml's speed, from 0.82, 1.02
//! and 0.89 (`cargo xtask bench kernels`).
//!
//! Activation quants must lie in `[-127, 127]`, as ggml's and perch's Q8_K quantizer makes
//! them.

/// The one-row product of a type with minimums (Q4_K, Q5_K) from `$ints(block, q8k)`, its
/// super-block's `(S, M)` lanes: two super-blocks reduced together (`hsum4_f32`), then
/// per super-block, in order, `acc = fma(d_y · d, S, acc)` and `acc_m += d_y · dmin · M`;
/// `acc - acc_m`. A macro, not a function taking `$ints`: a function pointer or closure would
/// not inline into the target-feature code.
macro_rules! with_minimums {
    ($x:ident, $y:ident, $ints:ident) => {{
        assert_eq!($x.len(), $y.len(), "block counts");
        let mut acc = 0.0f32;
        let mut acc_m = 0.0f32;
        let mut xs = $x.chunks_exact(2);
        let mut ys = $y.chunks_exact(2);
        for (xp, yp) in xs.by_ref().zip(ys.by_ref()) {
            prefetch_ahead(&xp[0]);
            prefetch_ahead(&xp[1]);
            let (s0, m0) = $ints(&xp[0], &yp[0]);
            let (s1, m1) = $ints(&xp[1], &yp[1]);
            let [s0, m0, s1, m1] = hsum4_f32(s0, m0, s1, m1);
            for (xb, yb, s, m) in [(&xp[0], &yp[0], s0, m0), (&xp[1], &yp[1], s1, m1)] {
                let yd = yb.d.get();
                let (xd, xmin) = h2f2(xb.d.to_bits(), xb.dmin.to_bits());
                acc = fma1(yd * xd, s, acc);
                acc_m += yd * xmin * m;
            }
        }
        for (xb, yb) in xs.remainder().iter().zip(ys.remainder()) {
            let (si, mi) = $ints(xb, yb);
            let (s, m) = hsum2_f32(si, mi);
            let yd = yb.d.get();
            let (xd, xmin) = h2f2(xb.d.to_bits(), xb.dmin.to_bits());
            acc = fma1(yd * xd, s, acc);
            acc_m += yd * xmin * m;
        }
        acc - acc_m
    }};
}

macro_rules! k_kernels {
    ($feat:literal, $mul:path) => {
        use core::arch::x86_64::*;

        use crate::blocks::{
            BlockIq4Xs, BlockQ2K, BlockQ3K, BlockQ4K, BlockQ5K, BlockQ6K, BlockQ8K,
        };
        use crate::dot::KVALUES_IQ4NL;
        use crate::dot::scalar_k::{iq4xs_scales, k4_scales_mins_u64, q3k_scales};
        use crate::dot::x86::common::*;
        use $mul::*;

        /// Loads the 16 `i16` sums of a Q8_K block.
        #[inline]
        #[target_feature(enable = $feat)]
        fn bsums(y: &BlockQ8K) -> __m256i {
            // SAFETY: `bsums` is 16 `I16Le` = 32 readable bytes; unaligned load.
            unsafe { _mm256_loadu_si256(y.bsums.as_ptr().cast()) }
        }

        /// `Σ_g scale[g] * bsums[g]` over the 16 groups, scales given as 16 `i16`.
        #[inline]
        #[target_feature(enable = $feat)]
        fn bsum_dot(y: &BlockQ8K, scales16: __m256i) -> i32 {
            hsum_i32(_mm256_madd_epi16(bsums(y), scales16))
        }

        /// The `i16` scales of chunk `c` (groups `2c` and `2c + 1`) from all sixteen: group
        /// `2c`'s in the low 128-bit lane, `2c + 1`'s in the high one.
        #[inline]
        #[target_feature(enable = $feat)]
        fn chunk_scales(sc16: __m256i, c: usize) -> __m256i {
            let pair = _mm256_permutevar8x32_epi32(sc16, _mm256_set1_epi32(c as i32));
            let mask = _mm256_setr_epi8(
                0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3,
                2, 3, 2, 3,
            );
            _mm256_shuffle_epi8(pair, mask)
        }

        /// `acc += maddwd(maddubs(q, y), sc)`.
        #[inline]
        #[target_feature(enable = $feat)]
        fn acc_chunk(acc: __m256i, q: __m256i, y: __m256i, sc: __m256i) -> __m256i {
            _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(q, y), sc))
        }

        #[inline]
        #[target_feature(enable = $feat)]
        fn q8(y: &BlockQ8K, chunk: usize) -> __m256i {
            let a: &[i8; 32] = y.qs[32 * chunk..32 * chunk + 32].try_into().unwrap();
            load32(a)
        }

        #[inline]
        #[target_feature(enable = $feat)]
        fn load32u(s: &[u8]) -> __m256i {
            let a: &[u8; 32] = s[..32].try_into().unwrap();
            load32(a)
        }

        /// A Q4_K / Q5_K block's scales (low 128 bits) and minimums (high 128 bits) as
        /// sixteen `i16`.
        #[inline]
        #[target_feature(enable = $feat)]
        fn k4_sm16(scales: &[u8; 12]) -> __m256i {
            let [sc, mn] = k4_scales_mins_u64(scales);
            _mm256_cvtepu8_epi16(_mm_set_epi64x(mn as i64, sc as i64))
        }

        /// `M = Σ_g min[g / 2] · bsums[g]`: Q8_K's sums of 16 added in pairs (sub-block `g`'s
        /// 32 quants), times the minimums.
        #[inline]
        #[target_feature(enable = $feat)]
        fn mins_dot(y: &BlockQ8K, sm16: __m256i) -> i32 {
            let bs = bsums(y);
            let pairs = _mm_hadd_epi16(
                _mm256_castsi256_si128(bs),
                _mm256_extracti128_si256::<1>(bs),
            );
            let p = _mm_madd_epi16(pairs, _mm256_extracti128_si256::<1>(sm16));
            let p = _mm_add_epi32(p, _mm_unpackhi_epi64(p, p));
            let p = _mm_add_epi32(p, _mm_shuffle_epi32::<0b10_11_00_01>(p));
            _mm_cvtsi128_si32(p)
        }

        /// Scale `k` of `sm16` (see [`k4_sm16`]; both halves hold the scales) in every lane.
        #[inline]
        #[target_feature(enable = $feat)]
        fn scale_k(scb: __m256i, k: usize) -> __m256i {
            let lo = (2 * k) as i16;
            _mm256_shuffle_epi8(scb, _mm256_set1_epi16(lo | ((lo + 1) << 8)))
        }

        /// Eight `u8` values (a word of [`k4_scales_mins_u64`]) as `i16` in both 128-bit
        /// lanes.
        #[inline]
        #[target_feature(enable = $feat)]
        fn u8x8_both(w: u64) -> __m256i {
            _mm256_cvtepu8_epi16(_mm_set1_epi64x(w as i64))
        }

        /// Eight `u8` minimums as sixteen `i16`, each twice: minimum `g / 2` at `g`, beside
        /// Q8_K's sums of 16 (sub-block `k` holds the groups of 16 `2k` and `2k + 1`).
        #[inline]
        #[target_feature(enable = $feat)]
        fn u8x8_twice(w: u64) -> __m256i {
            let v = _mm_cvtsi64_si128(w as i64);
            _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(v, v))
        }

        /// `[s[a] ×4, s[b] ×4]` in each 128-bit lane, from eight `i16` per lane `s`.
        #[inline]
        #[target_feature(enable = $feat)]
        fn scale_pair(s: __m256i, a: usize, b: usize) -> __m256i {
            let (a, b) = ((2 * a) as i8, (2 * b) as i8);
            let (a1, b1) = (a + 1, b + 1);
            _mm256_shuffle_epi8(
                s,
                _mm256_setr_epi8(
                    a, a1, a, a1, a, a1, a, a1, b, b1, b, b1, b, b1, b, b1, a, a1, a, a1, a, a1, a,
                    a1, b, b1, b, b1, b, b1, b, b1,
                ),
            )
        }

        /// `acc +` the sum of two vectors of four-product sums, each lane times its scale:
        /// `pa`'s lanes (per 128-bit lane) by the first scale of `sc`'s lane, `pb`'s by the
        /// second (see [`scale_pair`]). Exact: a lane of four products of a 6-bit unsigned
        /// quant and a Q8_K quant is at most 4 · 63 · 127 = 32004, so the packing to 16 bits
        /// is lossless.
        #[inline]
        #[target_feature(enable = $feat)]
        fn scaled_pair(acc: __m256i, pa: __m256i, pb: __m256i, sc: __m256i) -> __m256i {
            madd_acc(acc, _mm256_packs_epi32(pa, pb), sc)
        }

        /// The sums of `a`'s and `b`'s eight lanes, exactly, as `f32` (the nearest to each
        /// integer, as `sum as f32` rounds it).
        #[inline]
        #[target_feature(enable = $feat)]
        fn hsum2_f32(a: __m256i, b: __m256i) -> (f32, f32) {
            let h = _mm256_hadd_epi32(a, b);
            let s = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256::<1>(h));
            let f = _mm_cvtepi32_ps(_mm_hadd_epi32(s, s));
            (_mm_cvtss_f32(f), _mm_cvtss_f32(_mm_movehdup_ps(f)))
        }

        /// The sums of the eight lanes of `a`, `b`, `c` and `d`, exactly, as `f32` (see
        /// [`hsum2_f32`]): two super-blocks' integers reduced together.
        #[inline]
        #[target_feature(enable = $feat)]
        fn hsum4_f32(a: __m256i, b: __m256i, c: __m256i, d: __m256i) -> [f32; 4] {
            let h = _mm256_hadd_epi32(_mm256_hadd_epi32(a, b), _mm256_hadd_epi32(c, d));
            let s = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256::<1>(h));
            let mut out = [0f32; 4];
            // SAFETY: `out` is 16 writable bytes; unaligned store.
            unsafe { _mm_storeu_ps(out.as_mut_ptr(), _mm_cvtepi32_ps(s)) };
            out
        }

        /// Requests the cache lines of the super-block `DIST` bytes past `xb` (weights stream
        /// from memory in a matrix × vector product), without a bound: a prefetch never
        /// faults, and past a row's end it fetches the next row, which the product reads next.
        #[inline]
        #[target_feature(enable = $feat)]
        fn prefetch_ahead<B>(xb: &B) {
            const DIST: usize = 1024;
            let base = (xb as *const B).cast::<u8>().wrapping_add(DIST);
            let mut off = 0;
            while off < core::mem::size_of::<B>() + 63 {
                _mm_prefetch::<_MM_HINT_T0>(base.wrapping_add(off).cast());
                off += 64;
            }
        }

        /// One Q4_K super-block's integers against Q8_K: the quants × scales `S` and the
        /// minimums × Q8_K's sums `M`, each as eight lanes whose sums are exact.
        #[inline]
        #[target_feature(enable = $feat)]
        fn q4_k_ints(xb: &BlockQ4K, yb: &BlockQ8K) -> (__m256i, __m256i) {
            let m4 = _mm256_set1_epi8(0x0f);
            let mut q = [[_mm256_setzero_si256(); 2]; 4];
            for (j, qj) in q.iter_mut().enumerate() {
                let v = load32u(&xb.qs[32 * j..]);
                *qj = [
                    _mm256_and_si256(v, m4),
                    _mm256_and_si256(_mm256_srli_epi16::<4>(v), m4),
                ];
            }
            min_type_ints(&xb.scales, yb, &q)
        }

        /// `S` and `M` of a Q4_K or Q5_K super-block from its packed scales and minimums and
        /// its quants `q[j]` (sub-blocks `2j` and `2j + 1`, unsigned bytes), as eight lanes
        /// each whose sums are exact.
        #[inline]
        #[target_feature(enable = $feat)]
        fn min_type_ints(
            scales: &[u8; 12],
            yb: &BlockQ8K,
            q: &[[__m256i; 2]; 4],
        ) -> (__m256i, __m256i) {
            let [sc, mn] = k4_scales_mins_u64(scales);
            let scb = u8x8_both(sc);
            let mvec = _mm256_madd_epi16(bsums(yb), u8x8_twice(mn));
            let mut sumi = _mm256_setzero_si256();
            for (j, [lo, hi]) in q.iter().enumerate() {
                let pa = mul_sum_us8(*lo, q8(yb, 2 * j));
                let pb = mul_sum_us8(*hi, q8(yb, 2 * j + 1));
                sumi = scaled_pair(sumi, pa, pb, scale_pair(scb, 2 * j, 2 * j + 1));
            }
            (sumi, mvec)
        }

        /// Q4_K · Q8_K. Per super-block the exact integers `S` (quants × scales) and `M`
        /// (minimums × Q8_K's sums), two super-blocks' reduced together, then per
        /// super-block in order `acc = fma(d_y · d, S, acc)` and `acc_m += d_y · dmin · M`.
        #[target_feature(enable = $feat)]
        pub(crate) fn q4_k(x: &[BlockQ4K], y: &[BlockQ8K]) -> f32 {
            with_minimums!(x, y, q4_k_ints)
        }

        /// Q4_K against four activation rows at once: each super-block's quants and scales
        /// are unpacked once. Bit-identical to four [`q4_k`] calls.
        #[target_feature(enable = $feat)]
        pub(crate) fn q4_k_x4(x: &[BlockQ4K], y: [&[BlockQ8K]; 4]) -> [f32; 4] {
            for yr in y {
                assert_eq!(x.len(), yr.len(), "block counts");
            }
            let m4 = _mm256_set1_epi8(0x0f);
            let mut acc = [0.0f32; 4];
            let mut acc_m = [0.0f32; 4];
            for (i, xb) in x.iter().enumerate() {
                let (xd, xmin) = h2f2(xb.d.to_bits(), xb.dmin.to_bits());
                let sm16 = k4_sm16(&xb.scales);
                let scb = _mm256_permute2x128_si256::<0>(sm16, sm16);
                let mut sumi = [_mm256_setzero_si256(); 4];
                for r in 0..4 {
                    let yd = y[r][i].d.get();
                    acc_m[r] += yd * xmin * mins_dot(&y[r][i], sm16) as f32;
                }
                for j in 0..4 {
                    let q = load32u(&xb.qs[32 * j..]);
                    let lo = _mm256_and_si256(q, m4);
                    let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(q), m4);
                    let s0 = scale_k(scb, 2 * j);
                    let s1 = scale_k(scb, 2 * j + 1);
                    for r in 0..4 {
                        sumi[r] = acc_chunk(sumi[r], lo, q8(&y[r][i], 2 * j), s0);
                        sumi[r] = acc_chunk(sumi[r], hi, q8(&y[r][i], 2 * j + 1), s1);
                    }
                }
                for r in 0..4 {
                    let d = y[r][i].d.get() * xd;
                    acc[r] = fma1(d, hsum_i32(sumi[r]) as f32, acc[r]);
                }
            }
            let mut out = [0f32; 4];
            for r in 0..4 {
                out[r] = acc[r] - acc_m[r];
            }
            out
        }

        /// Q6_K against four activation rows at once (bit-identical to four [`q6_k`] calls).
        #[target_feature(enable = $feat)]
        pub(crate) fn q6_k_x4(x: &[BlockQ6K], y: [&[BlockQ8K]; 4]) -> [f32; 4] {
            for yr in y {
                assert_eq!(x.len(), yr.len(), "block counts");
            }
            let m4 = _mm256_set1_epi8(0x0f);
            let m3 = _mm256_set1_epi8(0x30);
            let mut acc = [0.0f32; 4];
            for (i, xb) in x.iter().enumerate() {
                let xd = h2f2(xb.d.to_bits(), 0).0;
                // SAFETY: `scales` is 16 readable bytes; unaligned load.
                let sc16 =
                    _mm256_cvtepi8_epi16(unsafe { _mm_loadu_si128(xb.scales.as_ptr().cast()) });
                // A loop, not `array::from_fn`: a closure does not inherit the target
                // features, so the intrinsics inside it would not be inlined.
                let mut sumi = [_mm256_setzero_si256(); 4];
                for r in 0..4 {
                    sumi[r] = _mm256_sub_epi32(
                        _mm256_setzero_si256(),
                        _mm256_slli_epi32::<5>(_mm256_madd_epi16(bsums(&y[r][i]), sc16)),
                    );
                }
                for h in 0..2 {
                    let ql0 = load32u(&xb.ql[64 * h..]);
                    let ql1 = load32u(&xb.ql[64 * h + 32..]);
                    let qh = load32u(&xb.qh[32 * h..]);
                    let q = q6_quants(ql0, ql1, qh, m4, m3);
                    for (k, qk) in q.into_iter().enumerate() {
                        let c = 4 * h + k;
                        let s = chunk_scales(sc16, c);
                        for r in 0..4 {
                            sumi[r] = acc_chunk(sumi[r], qk, q8(&y[r][i], c), s);
                        }
                    }
                }
                for r in 0..4 {
                    let d = y[r][i].d.get() * xd;
                    acc[r] = fma1(d, hsum_i32(sumi[r]) as f32, acc[r]);
                }
            }
            acc
        }

        /// The four 32-byte chunks of unsigned 6-bit quants of one Q6_K half (elements
        /// `32c..32c + 32` of the half in chunk `c`), from its `ql` and `qh` bytes.
        #[inline]
        #[target_feature(enable = $feat)]
        pub(crate) fn q6_quants(
            ql0: __m256i,
            ql1: __m256i,
            qh: __m256i,
            m4: __m256i,
            m3: __m256i,
        ) -> [__m256i; 4] {
            // The two high bits of quant `k` are bits `2k, 2k + 1` of each `qh` byte. Split
            // into the bits of quants 0 and 2 and those of 1 and 3, every shift below leaves
            // zeros at bits 6 and 7 of each byte (what `q6_merge` takes from `hi`), including
            // the bits a 16-bit shift carries across bytes.
            let even = _mm256_and_si256(qh, _mm256_set1_epi8(0x33));
            let odd = _mm256_and_si256(qh, _mm256_set1_epi8(0xccu8 as i8));
            [
                q6_merge(ql0, _mm256_slli_epi16::<4>(even), m4, m3),
                q6_merge(ql1, _mm256_slli_epi16::<2>(odd), m4, m3),
                q6_merge(_mm256_srli_epi16::<4>(ql0), even, m4, m3),
                q6_merge(
                    _mm256_srli_epi16::<4>(ql1),
                    _mm256_srli_epi16::<2>(odd),
                    m4,
                    m3,
                ),
            ]
        }

        /// One Q5_K super-block's integers against Q8_K, as [`q4_k_ints`] with the fifth
        /// bits.
        #[inline]
        #[target_feature(enable = $feat)]
        fn q5_k_ints(xb: &BlockQ5K, yb: &BlockQ8K) -> (__m256i, __m256i) {
            let m4 = _mm256_set1_epi8(0x0f);
            let one = _mm256_set1_epi8(1);
            let two = _mm256_set1_epi8(2);
            let mut hb = load32(&xb.qh);
            let mut q = [[_mm256_setzero_si256(); 2]; 4];
            for (j, qj) in q.iter_mut().enumerate() {
                let v = load32u(&xb.qs[32 * j..]);
                let h0 = _mm256_slli_epi16::<4>(_mm256_and_si256(hb, one));
                let h1 = _mm256_slli_epi16::<3>(_mm256_and_si256(hb, two));
                hb = _mm256_srli_epi16::<2>(hb);
                *qj = [
                    _mm256_or_si256(_mm256_and_si256(v, m4), h0),
                    _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(v), m4), h1),
                ];
            }
            min_type_ints(&xb.scales, yb, &q)
        }

        /// Q5_K · Q8_K, as [`q4_k`].
        #[target_feature(enable = $feat)]
        pub(crate) fn q5_k(x: &[BlockQ5K], y: &[BlockQ8K]) -> f32 {
            with_minimums!(x, y, q5_k_ints)
        }

        /// One Q6_K super-block's integer products with Q8_K (the +32 offset taken off) as
        /// eight lanes whose sum is exact. Chunks `c` and `c + 1` (groups of 16 `2c ..= 2c + 3`)
        /// share one packing and one scale multiply.
        #[inline]
        #[target_feature(enable = $feat)]
        fn q6_k_ints(xb: &BlockQ6K, yb: &BlockQ8K) -> __m256i {
            let m4 = _mm256_set1_epi8(0x0f);
            let m3 = _mm256_set1_epi8(0x30);
            let evens_odds = _mm_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
            // SAFETY: `scales` is 16 readable bytes; unaligned load.
            let raw = unsafe { _mm_loadu_si128(xb.scales.as_ptr().cast()) };
            let sc16 = _mm256_cvtepi8_epi16(raw);
            // The even groups' scales in the low lane, the odd groups' in the high one: a
            // chunk's first 16 quants (low lane) belong to an even group.
            let eo = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(raw, evens_odds));
            // Quants are stored +32: start from -32 * Σ scale * bsum (lane-wise).
            let mut sumi = _mm256_sub_epi32(
                _mm256_setzero_si256(),
                _mm256_slli_epi32::<5>(_mm256_madd_epi16(bsums(yb), sc16)),
            );
            for h in 0..2 {
                let ql0 = load32u(&xb.ql[64 * h..]);
                let ql1 = load32u(&xb.ql[64 * h + 32..]);
                let qh = load32u(&xb.qh[32 * h..]);
                let q = q6_quants(ql0, ql1, qh, m4, m3);
                for k in (0..4).step_by(2) {
                    let c = 4 * h + k;
                    let pa = mul_sum_us8(q[k], q8(yb, c));
                    let pb = mul_sum_us8(q[k + 1], q8(yb, c + 1));
                    sumi = scaled_pair(sumi, pa, pb, scale_pair(eo, c, c + 1));
                }
            }
            sumi
        }

        /// Q6_K · Q8_K: per super-block its exact integer `S` (two super-blocks' reduced
        /// together), then in order `acc = fma(d_y · d, S, acc)`.
        #[target_feature(enable = $feat)]
        pub(crate) fn q6_k(x: &[BlockQ6K], y: &[BlockQ8K]) -> f32 {
            assert_eq!(x.len(), y.len(), "block counts");
            let mut acc = 0.0f32;
            let mut xs = x.chunks_exact(2);
            let mut ys = y.chunks_exact(2);
            for (xp, yp) in xs.by_ref().zip(ys.by_ref()) {
                prefetch_ahead(&xp[0]);
                prefetch_ahead(&xp[1]);
                let s0 = q6_k_ints(&xp[0], &yp[0]);
                let s1 = q6_k_ints(&xp[1], &yp[1]);
                let (s0, s1) = hsum2_f32(s0, s1);
                acc = fma1(yp[0].d.get() * h2f2(xp[0].d.to_bits(), 0).0, s0, acc);
                acc = fma1(yp[1].d.get() * h2f2(xp[1].d.to_bits(), 0).0, s1, acc);
            }
            for (xb, yb) in xs.remainder().iter().zip(ys.remainder()) {
                let s = hsum_i32(q6_k_ints(xb, yb)) as f32;
                acc = fma1(yb.d.get() * h2f2(xb.d.to_bits(), 0).0, s, acc);
            }
            acc
        }

        /// Q3_K · Q8_K.
        #[target_feature(enable = $feat)]
        pub(crate) fn q3_k(x: &[BlockQ3K], y: &[BlockQ8K]) -> f32 {
            assert_eq!(x.len(), y.len(), "block counts");
            let m3 = _mm256_set1_epi8(3);
            let one = _mm256_set1_epi8(1);
            let mut acc = _mm256_setzero_ps();
            for (xb, yb) in x.iter().zip(y) {
                prefetch_ahead(xb);
                let d = h2f2(xb.d.to_bits(), 0).0 * yb.d.get();
                let sc = q3k_scales(&xb.scales);
                // SAFETY: `sc` is 16 readable bytes; unaligned load.
                let sc16 = _mm256_cvtepi8_epi16(unsafe { _mm_loadu_si128(sc.as_ptr().cast()) });
                // Quants are taken as q + 4 (0..7): start from -4 * Σ scale * bsum.
                let hm = load32(&xb.hmask);
                let mut sumi = _mm256_sub_epi32(
                    _mm256_setzero_si256(),
                    _mm256_slli_epi32::<2>(_mm256_madd_epi16(bsums(yb), sc16)),
                );
                for n in 0..8 {
                    let q3 = load32u(&xb.qs[32 * (n / 4)..]);
                    let lo = _mm256_and_si256(
                        _mm256_srl_epi16(q3, _mm_cvtsi32_si128((2 * (n % 4)) as i32)),
                        m3,
                    );
                    let hb =
                        _mm256_and_si256(_mm256_srl_epi16(hm, _mm_cvtsi32_si128((n) as i32)), one);
                    let q = _mm256_or_si256(lo, _mm256_slli_epi16::<2>(hb));
                    sumi = acc_chunk(sumi, q, q8(yb, n), chunk_scales(sc16, n));
                }
                acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
            }
            hsum_ps(acc)
        }

        /// Q2_K · Q8_K.
        #[target_feature(enable = $feat)]
        pub(crate) fn q2_k(x: &[BlockQ2K], y: &[BlockQ8K]) -> f32 {
            assert_eq!(x.len(), y.len(), "block counts");
            let m3 = _mm256_set1_epi8(3);
            let m4 = _mm_set1_epi8(0x0f);
            let mut acc = _mm256_setzero_ps();
            let mut acc_m = 0.0f32;
            for (xb, yb) in x.iter().zip(y) {
                prefetch_ahead(xb);
                let yd = yb.d.get();
                let (xd, xmin) = h2f2(xb.d.to_bits(), xb.dmin.to_bits());
                let dall = yd * xd;
                let dmin = yd * xmin;
                // SAFETY: `scales` is 16 readable bytes; unaligned load.
                let scb = unsafe { _mm_loadu_si128(xb.scales.as_ptr().cast()) };
                let mins16 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16::<4>(scb), m4));
                acc_m += dmin * bsum_dot(yb, mins16) as f32;
                let sc16 = _mm256_cvtepu8_epi16(_mm_and_si128(scb, m4));
                let mut sumi = _mm256_setzero_si256();
                for n in 0..8 {
                    let q2 = load32u(&xb.qs[32 * (n / 4)..]);
                    let q = _mm256_and_si256(
                        _mm256_srl_epi16(q2, _mm_cvtsi32_si128((2 * (n % 4)) as i32)),
                        m3,
                    );
                    let s = chunk_scales(sc16, n);
                    sumi = acc_chunk(sumi, q, q8(yb, n), s);
                }
                acc = _mm256_fmadd_ps(_mm256_set1_ps(dall), _mm256_cvtepi32_ps(sumi), acc);
            }
            hsum_ps(acc) - acc_m
        }

        /// IQ4_XS · Q8_K.
        #[target_feature(enable = $feat)]
        pub(crate) fn iq4_xs(x: &[BlockIq4Xs], y: &[BlockQ8K]) -> f32 {
            assert_eq!(x.len(), y.len(), "block counts");
            let table = table16(&KVALUES_IQ4NL);
            let mut acc = _mm256_setzero_ps();
            for (xb, yb) in x.iter().zip(y) {
                prefetch_ahead(xb);
                let d = h2f2(xb.d.to_bits(), 0).0 * yb.d.get();
                let ls = iq4xs_scales(xb);
                let mut sumi = _mm256_setzero_si256();
                for (ib, l) in ls.iter().enumerate() {
                    let qs: &[u8; 16] = xb.qs[16 * ib..16 * ib + 16].try_into().unwrap();
                    let v = _mm256_shuffle_epi8(table, nibbles32(qs));
                    let yv = q8(yb, ib);
                    let p16 = _mm256_maddubs_epi16(_mm256_sign_epi8(v, v), _mm256_sign_epi8(yv, v));
                    sumi = madd_acc(sumi, p16, _mm256_set1_epi16(*l as i16));
                }
                acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
            }
            hsum_ps(acc)
        }
    };
}

/// The AVX2 + FMA + F16C instantiation.
pub(crate) mod avx2 {
    k_kernels!("avx2,fma,f16c", crate::dot::x86::common::mul_avx2);
}

/// The AVX-512 instantiation (same algorithm; AVX-512 encodings and registers).
pub(crate) mod avx512 {
    k_kernels!(
        "avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni",
        crate::dot::x86::common::mul_vnni
    );
}
