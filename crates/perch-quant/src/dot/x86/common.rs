//! Small AVX2 building blocks shared by the x86 kernels, and the two ways of multiplying
//! 8-bit vectors (`mul_avx2`: `vpmaddubsw` + `vpmaddwd`; `mul_vnni`: AVX-512 VNNI `vpdpbusd`).
//!
//! All helpers are `#[target_feature]` functions, so they inline into kernels compiled with
//! the same or more features.

use core::arch::x86_64::*;

/// Two halves to `f32` with F16C (see [`f16_products`] for why not one lane at a time).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn h2f2(a: u16, b: u16) -> (f32, f32) {
    let v = f16x8(&[a, b, 0, 0, 0, 0, 0, 0]);
    (v[0], v[1])
}

/// `f32(a[k]) * f32(b[k])` for eight pairs of f16 scales, converted together with one
/// `vcvtph2ps` each: converting block scales one at a time through a 128-bit register lets
/// the compiler merge into a live accumulator register (a false dependency that serializes
/// the block loop), which converting all eight lanes at once avoids.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn f16_products(a: &[u16; 8], b: &[u16; 8]) -> [f32; 8] {
    // SAFETY: each array is 16 readable bytes; unaligned loads.
    let (va, vb) = unsafe {
        (
            _mm256_cvtph_ps(_mm_loadu_si128(a.as_ptr().cast())),
            _mm256_cvtph_ps(_mm_loadu_si128(b.as_ptr().cast())),
        )
    };
    let mut out = [0f32; 8];
    // SAFETY: `out` is 32 writable bytes; unaligned store.
    unsafe { _mm256_storeu_ps(out.as_mut_ptr(), _mm256_mul_ps(va, vb)) };
    out
}

/// Eight f16 values as `f32` (see [`f16_products`]).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn f16x8(a: &[u16; 8]) -> [f32; 8] {
    // SAFETY: `a` is 16 readable bytes; unaligned load.
    let v = unsafe { _mm256_cvtph_ps(_mm_loadu_si128(a.as_ptr().cast())) };
    let mut out = [0f32; 8];
    // SAFETY: `out` is 32 writable bytes; unaligned store.
    unsafe { _mm256_storeu_ps(out.as_mut_ptr(), v) };
    out
}

/// Loads 32 bytes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn load32<T: bytemuck::Pod>(a: &[T; 32]) -> __m256i {
    const { assert!(size_of::<T>() == 1) };
    // SAFETY: `a` is 32 readable bytes (T is one byte, checked at compile time); the load is
    // unaligned.
    unsafe { _mm256_loadu_si256(a.as_ptr().cast()) }
}

/// Loads 16 bytes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn load16(a: &[u8; 16]) -> __m128i {
    // SAFETY: `a` is 16 readable bytes; the load is unaligned.
    unsafe { _mm_loadu_si128(a.as_ptr().cast()) }
}

/// 16 bytes of nibbles to 32 bytes: low nibbles in bytes 0..16, high nibbles in 16..32
/// (ggml's `bytes_from_nibbles_32`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn nibbles32(qs: &[u8; 16]) -> __m256i {
    // The 16 bytes in both lanes (a broadcast load, no shuffle), the high lane's shifted
    // right by four (one variable shift), then masked.
    let both = _mm256_broadcastsi128_si256(load16(qs));
    let both = _mm256_srlv_epi64(both, _mm256_setr_epi64x(0, 0, 4, 4));
    _mm256_and_si256(both, _mm256_set1_epi8(0x0f))
}

/// 32 bits to 32 bytes, each `0xFF` where its bit is set (ggml's `bytes_from_bits_32`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn bits32(x: u32) -> __m256i {
    let shuf = _mm256_setr_epi64x(
        0x0000_0000_0000_0000,
        0x0101_0101_0101_0101,
        0x0202_0202_0202_0202,
        0x0303_0303_0303_0303,
    );
    let bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(x as i32), shuf);
    let bytes = _mm256_or_si256(bytes, _mm256_set1_epi64x(0x7fbf_dfef_f7fb_fdfe));
    _mm256_cmpeq_epi8(bytes, _mm256_set1_epi64x(-1))
}

/// A 16-entry byte table repeated in both 128-bit lanes, for `vpshufb` look-ups.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn table16(t: &[i8; 16]) -> __m256i {
    // SAFETY: `t` is 16 readable bytes; the load is unaligned.
    let v = unsafe { _mm_loadu_si128(t.as_ptr().cast()) };
    _mm256_set_m128i(v, v)
}

/// Sum of the eight lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn hsum_ps(x: __m256) -> f32 {
    let r = _mm_add_ps(_mm256_extractf128_ps::<1>(x), _mm256_castps256_ps128(x));
    let r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    let r = _mm_add_ss(r, _mm_movehdup_ps(r));
    _mm_cvtss_f32(r)
}

/// Lane `k` = the sum of the eight `i32` lanes of `v[k]` (exact: integer adds).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn hsum8x8_i32(v: &[__m256i; 8]) -> __m256i {
    // Pairwise sums within 128-bit halves, twice: lanes 0..4 hold v[0..4]'s low-half sums
    // and lanes 4..8 their high-half sums (likewise for v[4..8]); then the halves are added.
    let h0 = _mm256_hadd_epi32(v[0], v[1]);
    let h1 = _mm256_hadd_epi32(v[2], v[3]);
    let h2 = _mm256_hadd_epi32(v[4], v[5]);
    let h3 = _mm256_hadd_epi32(v[6], v[7]);
    let g0 = _mm256_hadd_epi32(h0, h1);
    let g1 = _mm256_hadd_epi32(h2, h3);
    _mm256_add_epi32(
        _mm256_permute2x128_si256::<0x20>(g0, g1),
        _mm256_permute2x128_si256::<0x31>(g0, g1),
    )
}

/// Sum of the eight `i32` lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn hsum_i32(a: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(a), _mm256_extracti128_si256::<1>(a));
    let s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
    _mm_cvtsi128_si32(s)
}

/// 8-bit products with `vpmaddubsw` + `vpmaddwd`.
pub(crate) mod mul_avx2 {
    use core::arch::x86_64::*;

    /// Unsigned `u` (each byte < 128, or pairs that cannot saturate 16 bits) times signed `s`,
    /// each group of four summed into an `i32` lane.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) fn mul_sum_us8(u: __m256i, s: __m256i) -> __m256i {
        _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1))
    }

    /// Signed `x` times signed `y` (`y` in `[-127, 127]`), each group of four summed into an
    /// `i32` lane.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) fn mul_sum_i8(x: __m256i, y: __m256i) -> __m256i {
        mul_sum_us8(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x))
    }

    /// `acc + vpmaddwd(a, b)`: pairs of `i16` products summed into `i32` lanes, added on.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) fn madd_acc(acc: __m256i, a: __m256i, b: __m256i) -> __m256i {
        _mm256_add_epi32(acc, _mm256_madd_epi16(a, b))
    }

    /// Six-bit quants from four low bits of `lo` and two high bits of `hi` (already at bits
    /// 4 and 5, and bits 6 and 7 of `hi` zero): `(lo & m4) | (hi & m3)`, `m4` = 0x0F and
    /// `m3` = 0x30 in every byte.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) fn q6_merge(lo: __m256i, hi: __m256i, m4: __m256i, m3: __m256i) -> __m256i {
        _mm256_or_si256(_mm256_and_si256(lo, m4), _mm256_and_si256(hi, m3))
    }

    /// A Q4_0 block's products: its nibbles `nib` (unpacked, `0..16`) minus 8, times `y`,
    /// in eight `i32` lanes whose sum is exact.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) fn q4_0_sum(nib: __m256i, y: __m256i) -> __m256i {
        mul_sum_i8(_mm256_sub_epi8(nib, _mm256_set1_epi8(8)), y)
    }

    /// A Q5_0 block's products: its quants (nibbles `qs`, fifth bits `qh`) minus 16, times
    /// `y`, in eight `i32` lanes whose sum is exact.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) fn q5_0_sum(qs: &[u8; 16], qh: u32, y: __m256i) -> __m256i {
        // Nibble | 0xF0 where the fifth bit is clear: the signed byte q - 16.
        let hi = _mm256_andnot_si256(super::bits32(qh), _mm256_set1_epi8(0xf0u8 as i8));
        mul_sum_i8(_mm256_or_si256(super::nibbles32(qs), hi), y)
    }
}

/// 8-bit products with AVX-512 VNNI `vpdpbusd` (256-bit form, AVX-512 VL).
pub(crate) mod mul_vnni {
    use core::arch::x86_64::*;

    /// Unsigned `u` times signed `s`, each group of four summed into an `i32` lane (no
    /// intermediate saturation).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")]
    pub(crate) fn mul_sum_us8(u: __m256i, s: __m256i) -> __m256i {
        _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s)
    }

    /// Signed `x` times signed `y` (`y` in `[-127, 127]`), each group of four summed into an
    /// `i32` lane.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")]
    pub(crate) fn mul_sum_i8(x: __m256i, y: __m256i) -> __m256i {
        mul_sum_us8(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x))
    }

    /// `Σ (u - offset) · y` in eight `i32` lanes for unsigned `u`: the unsigned products
    /// minus `offset` times the activations' sum, two `vpdpbusd` and a subtraction where the
    /// signed products' `vpsignb` trick takes four instructions. The lanes' sum is exact.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")]
    fn offset_sum(u: __m256i, offset: i8, y: __m256i) -> __m256i {
        _mm256_sub_epi32(mul_sum_us8(u, y), mul_sum_us8(_mm256_set1_epi8(offset), y))
    }

    /// `acc + vpmaddwd(a, b)` as one `vpdpwssd`: pairs of `i16` products summed into `i32`
    /// lanes, added on (without saturation, as the two instructions).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")]
    pub(crate) fn madd_acc(acc: __m256i, a: __m256i, b: __m256i) -> __m256i {
        _mm256_dpwssd_epi32(acc, a, b)
    }

    /// Six-bit quants from four low bits of `lo` and two high bits of `hi` (already at bits
    /// 4 and 5, and bits 6 and 7 of `hi` zero): `(lo & m4) | (hi & m3)` as one bitwise select
    /// under `m4` (`vpternlogd`), `m4` = 0x0F in every byte.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")]
    pub(crate) fn q6_merge(lo: __m256i, hi: __m256i, m4: __m256i, _m3: __m256i) -> __m256i {
        // 0xE4: `m4 ? lo : hi`, bit by bit.
        _mm256_ternarylogic_epi32::<0xE4>(lo, hi, m4)
    }

    /// A Q4_0 block's products: its nibbles `nib` (unpacked, `0..16`) minus 8, times `y`,
    /// in eight `i32` lanes whose sum is exact.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")]
    pub(crate) fn q4_0_sum(nib: __m256i, y: __m256i) -> __m256i {
        offset_sum(nib, 8, y)
    }

    /// A Q5_0 block's products: its quants (nibbles `qs`, fifth bits `qh`) minus 16, times
    /// `y`, in eight `i32` lanes whose sum is exact. The fifth bits become 16s through a
    /// mask register (`vmovdqu8` under the 32-bit mask `qh`).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")]
    pub(crate) fn q5_0_sum(qs: &[u8; 16], qh: u32, y: __m256i) -> __m256i {
        let hi = _mm256_maskz_mov_epi8(qh, _mm256_set1_epi8(0x10));
        offset_sum(_mm256_or_si256(super::nibbles32(qs), hi), 16, y)
    }
}

/// `a * b + c` with one rounding: a scalar `vfmadd`, the same operation each lane of a
/// vector FMA performs, so a one-row kernel and a sixteen-rows-per-vector kernel that apply
/// it to the same values agree bit for bit.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn fma1(a: f32, b: f32, c: f32) -> f32 {
    _mm_cvtss_f32(_mm_fmadd_ss(_mm_set_ss(a), _mm_set_ss(b), _mm_set_ss(c)))
}
