//! Batched products of the K-quants Q4_K, Q5_K and Q6_K on repacked weights, for AVX-512
//! VNNI: what the engine runs for prompt chunks and for many sequences decoding together on
//! the llama.cpp mixes (Q4_K_M is Q4_K and Q6_K, Q5_K_M is Q5_K and Q6_K).
//!
//! As in `crate::packed`, sixteen weight rows are repacked so that the four-byte group `k` of
//! all sixteen rows fills one 512-bit vector (lane `j` holding row `j`'s bytes, unsigned: the
//! quants as stored, Q6_K's with its `+32`). One `vpdpbusd` against the activation's four
//! bytes of group `k`, broadcast, gives all sixteen rows' sums for that group. Per sub-block
//! (32 elements for Q4_K / Q5_K, 16 for Q6_K) the sums are multiplied by the sixteen rows'
//! scales (`vpmulld`) and added up: the super-block's exact integer `S`. The minimums' term
//! `M = Σ min · (sum of the activation quants)` (Q4_K, Q5_K), and Q6_K's offset term
//! `32 · Σ scale · (sum of 16 quants)`, come from Q8_K's sums of 16 with `vpdpwssd`, the
//! weights' minimums or scales stored as pairs of `i16`. Then one FMA per super-block and
//! row: `acc = fma(d_y · d, S, acc)`, `acc_m += (d_y · dmin) · M`, the result `acc − acc_m`.
//!
//! That is exactly the one-row kernels' arithmetic (`dot/x86/kquants.rs`), so a row's result
//! is the same bits whichever path computes it: a sequence's output does not depend on how
//! many others share its batch. Four activation rows run together, so each weight vector is
//! loaded once for four `vpdpbusd`s.
//!
//! The activations are read as they are (Q8_K rows); nothing is prepared per product.
#![allow(clippy::incompatible_msrv)]

use core::arch::x86_64::*;

use crate::blocks::{BlockQ4K, BlockQ5K, BlockQ6K, BlockQ8K, as_blocks};
use crate::dot::scalar_k::k4_scales_mins;
use crate::matmul::WeightMatrix;
use crate::packed::{AlignedBytes, ROWS, transpose16};
use crate::types::{GgmlType, QK_K};

/// The fewest activation rows for which repacking a K-quant matrix pays.
pub(crate) const MIN_ACT_ROWS: usize = 12;

/// Activation rows computed together (each weight vector is loaded once for all of them).
const TILE: usize = 4;

/// Bytes of repacked quants per super-block of a group: 64 vectors of 64 bytes.
const Q_BYTES: usize = QK_K * ROWS;

/// Whether `ty` has a repacked K-quant batch product.
pub(crate) fn packable(ty: GgmlType) -> bool {
    matches!(ty, GgmlType::Q4_K | GgmlType::Q5_K | GgmlType::Q6_K)
}

/// A group of [`ROWS`] weight rows of a K-quant matrix, repacked. Per super-block: the
/// quants (64 vectors, group `k` of row `j` at bytes `4j..4j + 4` of vector `k`), the
/// sub-block scales as `i32` (one vector of sixteen rows per sub-block), the eight pair
/// vectors for the Q8_K sums (`i16` pairs per row), and the rows' `d` and `dmin` as `f32`.
#[derive(Default)]
pub(crate) struct PackedKGroup {
    ty: Option<GgmlType>,
    /// The AMX form (`crate::amx`): Q4_K's and Q5_K's quants times the low and the high
    /// three bits of their sub-block scales, two sets of 64 vectors per super-block.
    tiles: bool,
    blocks: usize,
    q: AlignedBytes,
    scales: Vec<i32>,
    pairs: Vec<i32>,
    d: Vec<f32>,
    dmin: Vec<f32>,
}

/// Sub-blocks per super-block: the scales per row.
fn subblocks(ty: GgmlType) -> usize {
    if ty == GgmlType::Q6_K { 16 } else { 8 }
}

/// Whether groups of `ty` are built in the AMX form: Q4_K and Q5_K when the process runs
/// tile products.
pub(crate) fn tiles_for(ty: GgmlType) -> bool {
    packable(ty) && crate::amx::available()
}

/// Sets of 64 vectors per super-block: the quants; in the AMX form, Q4_K's and Q5_K's times
/// the two halves of their scales, Q6_K's times the three digits of theirs.
fn quant_sets(ty: GgmlType, tiles: bool) -> usize {
    match (tiles, ty) {
        (false, _) => 1,
        (true, GgmlType::Q6_K) => 3,
        (true, _) => 2,
    }
}

/// Vectors of sixteen 32-bit values per super-block beside the quants: the sub-block scales,
/// the eight `i16` pair vectors, `d` and `dmin`. The AMX form has the scales in its quants
/// and keeps only what its kernel reads: `d` (Q6_K); for Q4_K and Q5_K `d`, `dmin` and four
/// pair vectors, the minimums of sub-blocks `2t` and `2t + 1` (against Q8_K's sums of 32).
fn meta_vectors(ty: GgmlType, tiles: bool) -> [usize; 4] {
    match (tiles, ty) {
        (false, _) => [subblocks(ty), 8, 1, 1],
        (true, GgmlType::Q6_K) => [0, 0, 1, 0],
        (true, _) => [0, 4, 1, 1],
    }
}

/// Bytes of a group of rows of `cols` elements of `ty`.
pub(crate) fn group_bytes(ty: GgmlType, cols: usize) -> usize {
    let tiles = tiles_for(ty);
    let q = quant_sets(ty, tiles) * Q_BYTES;
    let meta: usize = meta_vectors(ty, tiles).iter().sum();
    cols / QK_K * (q + 4 * ROWS * meta)
}

/// Q6_K's signed scale `s` as three balanced base-7 digits `[d0, d1, d2]`, each in `-3..=3`,
/// with `s = d0 + 7·d1 + 49·d2`: times a quant minus 32 (`-32..=31`) each fits a signed byte.
pub(crate) fn digits7(s: i32) -> [i32; 3] {
    let bal = |v: i32| (v + 3).rem_euclid(7) - 3;
    let d0 = bal(s);
    let s1 = (s - d0) / 7;
    let d1 = bal(s1);
    let d2 = (s1 - d1) / 7;
    [d0, d1, d2]
}

impl PackedKGroup {
    /// Bytes held.
    pub(crate) fn bytes(&self) -> usize {
        self.q.len() + 4 * (self.scales.len() + self.pairs.len() + self.d.len() + self.dmin.len())
    }

    /// Super-blocks per row.
    pub(crate) fn blocks(&self) -> usize {
        self.blocks
    }

    /// Whether the group is in the AMX form (only [`crate::amx`] computes with it).
    pub(crate) fn is_tiles(&self) -> bool {
        self.tiles
    }

    /// Whether the group holds Q6_K rows.
    pub(crate) fn is_six(&self) -> bool {
        self.ty == Some(GgmlType::Q6_K)
    }

    /// The quants, sub-block scales, `i16` pairs, `d` and `dmin`, checked against the
    /// layout per super-block ([`quant_sets`] sets of `QK_K · ROWS` quant bytes, then
    /// [`meta_vectors`] vectors of ROWS values).
    #[allow(clippy::type_complexity)]
    pub(crate) fn parts(&self) -> (&[u8], &[i32], &[i32], &[f32], &[f32]) {
        let nb = self.blocks;
        let ty = self.ty.expect("a filled group");
        let qb = quant_sets(ty, self.tiles) * Q_BYTES;
        let [ns, np, nd, nm] = meta_vectors(ty, self.tiles);
        assert!(
            self.q.len() == nb * qb
                && self.scales.len() == nb * ns * ROWS
                && self.pairs.len() == nb * np * ROWS
                && self.d.len() == nb * nd * ROWS
                && self.dmin.len() == nb * nm * ROWS,
            "packed group layout"
        );
        (&self.q, &self.scales, &self.pairs, &self.d, &self.dmin)
    }

    /// Repacks weight rows `o0..o0 + n` (`n <= ROWS`; missing rows are zero) of `w`, whose
    /// type must be [`packable`].
    pub(crate) fn fill(&mut self, w: &WeightMatrix<'_>, o0: usize, n: usize) {
        let ty = w.ty();
        assert!(packable(ty) && n <= ROWS, "a packable K-quant group");
        let blocks = w.cols() / QK_K;
        let ns = subblocks(ty);
        self.ty = Some(ty);
        self.tiles = tiles_for(ty);
        self.blocks = blocks;
        self.q.resize(blocks * Q_BYTES * quant_sets(ty, self.tiles));
        self.scales.clear();
        self.scales.resize(blocks * ns * ROWS, 0);
        self.pairs.clear();
        self.pairs.resize(blocks * 8 * ROWS, 0);
        self.d.clear();
        self.d.resize(blocks * ROWS, 0.0);
        self.dmin.clear();
        self.dmin.resize(blocks * ROWS, 0.0);
        let rows: [&[u8]; ROWS] = std::array::from_fn(|j| if j < n { w.row(o0 + j) } else { &[] });
        for (j, row) in rows.iter().enumerate().take(n) {
            self.fill_scales(ty, j, row);
        }
        // SAFETY: only called when the process's SIMD level is AVX-512 (see `matmul`'s batch
        // module), which includes every feature the function is compiled with.
        unsafe { fill_quants(self, ty, &rows) }
        // The AMX form keeps only what its kernel reads (the scales are in its quants).
        if self.tiles {
            let [_, np, _, nm] = meta_vectors(ty, true);
            self.scales = Vec::new();
            if np == 0 {
                self.pairs = Vec::new();
            } else {
                // Pair vector `t` held sub-block `t`'s minimum twice; now (min 2t, min 2t + 1).
                let old = std::mem::take(&mut self.pairs);
                self.pairs = vec![0; blocks * np * ROWS];
                for b in 0..blocks {
                    for t in 0..np {
                        for j in 0..ROWS {
                            let lo = old[(b * 8 + 2 * t) * ROWS + j] & 0xffff;
                            let hi = old[(b * 8 + 2 * t + 1) * ROWS + j] & 0xffff;
                            self.pairs[(b * np + t) * ROWS + j] = lo | (hi << 16);
                        }
                    }
                }
            }
            if nm == 0 {
                self.dmin = Vec::new();
            }
        }
    }

    /// Row `j`'s scales, minimums and super-block scales, in the group's layout.
    fn fill_scales(&mut self, ty: GgmlType, j: usize, row: &[u8]) {
        match ty {
            GgmlType::Q4_K => {
                for (b, x) in as_blocks::<BlockQ4K>(row)
                    .expect("whole blocks")
                    .iter()
                    .enumerate()
                {
                    self.put_k4(b, j, &x.scales, x.d.to_f32(), x.dmin.to_f32());
                }
            }
            GgmlType::Q5_K => {
                for (b, x) in as_blocks::<BlockQ5K>(row)
                    .expect("whole blocks")
                    .iter()
                    .enumerate()
                {
                    self.put_k4(b, j, &x.scales, x.d.to_f32(), x.dmin.to_f32());
                }
            }
            GgmlType::Q6_K => {
                for (b, x) in as_blocks::<BlockQ6K>(row)
                    .expect("whole blocks")
                    .iter()
                    .enumerate()
                {
                    let sc: [i32; 16] = x.scales.map(i32::from);
                    let pairs = std::array::from_fn(|t| pair(sc[2 * t], sc[2 * t + 1]));
                    self.put(b, j, &sc, pairs, x.d.to_f32(), 0.0);
                }
            }
            _ => unreachable!("packable types only"),
        }
    }

    /// Q4_K's and Q5_K's packed 6-bit scales and minimums of super-block `b`, row `j`.
    fn put_k4(&mut self, b: usize, j: usize, scales: &[u8; 12], d: f32, dmin: f32) {
        let (sc, mn) = k4_scales_mins(scales);
        // Sub-block g covers Q8_K's sums 2g and 2g + 1: its minimum twice.
        let pairs = mn.map(|m| pair(i32::from(m), i32::from(m)));
        self.put(b, j, &sc.map(i32::from), pairs, d, dmin);
    }

    /// Stores super-block `b` of row `j`: sub-block scales, `i16` pairs, `d` and `dmin`.
    fn put(&mut self, b: usize, j: usize, sc: &[i32], pairs: [i32; 8], d: f32, dmin: f32) {
        let ns = sc.len();
        for (s, &v) in sc.iter().enumerate() {
            self.scales[(b * ns + s) * ROWS + j] = v;
        }
        for (t, &v) in pairs.iter().enumerate() {
            self.pairs[(b * 8 + t) * ROWS + j] = v;
        }
        self.d[b * ROWS + j] = d;
        self.dmin[b * ROWS + j] = dmin;
    }
}

/// An `i16` pair in one `i32` lane, as `vpdpwssd` reads it.
fn pair(lo: i32, hi: i32) -> i32 {
    (lo as i16 as u16 as i32) | ((hi as i16 as u16 as i32) << 16)
}

/// The first 32 bytes of `s` (a named function: a closure would not inherit the caller's
/// target features, so the load would not inline).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")]
fn load32u(s: &[u8]) -> __m256i {
    crate::dot::x86::common::load32(s[..32].try_into().unwrap())
}

/// The 256 quants of every row, unpacked to bytes in element order and transposed.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")]
fn fill_quants(g: &mut PackedKGroup, ty: GgmlType, rows: &[&[u8]; ROWS]) {
    use crate::dot::x86::kquants::avx512::q6_quants;
    let m4 = _mm256_set1_epi8(0x0f);
    let m3 = _mm256_set1_epi8(0x30);
    let one = _mm256_set1_epi8(1);
    let two = _mm256_set1_epi8(2);
    for b in 0..g.blocks {
        // Piece p (elements 32p..32p + 32) of every row.
        let mut u = [[_mm256_setzero_si256(); ROWS]; 8];
        for (j, row) in rows.iter().enumerate() {
            if row.is_empty() {
                continue;
            }
            match ty {
                GgmlType::Q4_K => {
                    let x = &as_blocks::<BlockQ4K>(row).expect("whole blocks")[b];
                    for c in 0..4 {
                        let q = load32u(&x.qs[32 * c..]);
                        u[2 * c][j] = _mm256_and_si256(q, m4);
                        u[2 * c + 1][j] = _mm256_and_si256(_mm256_srli_epi16::<4>(q), m4);
                    }
                }
                GgmlType::Q5_K => {
                    let x = &as_blocks::<BlockQ5K>(row).expect("whole blocks")[b];
                    let mut hb = load32u(&x.qh);
                    for c in 0..4 {
                        let q = load32u(&x.qs[32 * c..]);
                        let h0 = _mm256_slli_epi16::<4>(_mm256_and_si256(hb, one));
                        let h1 = _mm256_slli_epi16::<3>(_mm256_and_si256(hb, two));
                        hb = _mm256_srli_epi16::<2>(hb);
                        u[2 * c][j] = _mm256_or_si256(_mm256_and_si256(q, m4), h0);
                        u[2 * c + 1][j] =
                            _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(q), m4), h1);
                    }
                }
                GgmlType::Q6_K => {
                    let x = &as_blocks::<BlockQ6K>(row).expect("whole blocks")[b];
                    for h in 0..2 {
                        let (ql0, ql1) = (load32u(&x.ql[64 * h..]), load32u(&x.ql[64 * h + 32..]));
                        let q = q6_quants(ql0, ql1, load32u(&x.qh[32 * h..]), m4, m3);
                        for (c, qc) in q.into_iter().enumerate() {
                            u[4 * h + c][j] = qc;
                        }
                    }
                }
                _ => unreachable!("packable types only"),
            }
        }
        if g.tiles && ty == GgmlType::Q6_K {
            // The quants minus 32, times each digit of their sub-block's scale (sixteen
            // elements each: two per piece of 32).
            let x20 = _mm256_set1_epi8(32);
            for m in 0..3 {
                let mut v = u;
                for (p, vp) in v.iter_mut().enumerate() {
                    for (j, vj) in vp.iter_mut().enumerate() {
                        let d = |s: usize| digits7(g.scales[(b * 16 + 2 * p + s) * ROWS + j])[m];
                        let (d0, d1) = (d(0) as i8, d(1) as i8);
                        // The digit of each byte: the first sixteen bytes' sub-block, then the
                        // second's.
                        let k = _mm256_setr_m128i(_mm_set1_epi8(d0), _mm_set1_epi8(d1));
                        *vj = times_digit(_mm256_sub_epi8(*vj, x20), k);
                    }
                }
                let at = (3 * b + m) * Q_BYTES;
                store_transposed(&mut g.q[at..at + Q_BYTES], &v);
            }
        } else if g.tiles {
            // Quants times the low three bits of their sub-block's scale, then times the high
            // three: `scale · q = lo + 8 · hi`, each at most 7 · 31 = 217, a byte.
            let mut hi = u;
            for (p, (up, hp)) in u.iter_mut().zip(hi.iter_mut()).enumerate() {
                for j in 0..ROWS {
                    let sc = g.scales[(b * 8 + p) * ROWS + j];
                    hp[j] = mul_bytes(up[j], (sc >> 3) as i16);
                    up[j] = mul_bytes(up[j], (sc & 7) as i16);
                }
            }
            store_transposed(&mut g.q[2 * b * Q_BYTES..(2 * b + 1) * Q_BYTES], &u);
            store_transposed(&mut g.q[(2 * b + 1) * Q_BYTES..(2 * b + 2) * Q_BYTES], &hi);
        } else {
            store_transposed(&mut g.q[b * Q_BYTES..(b + 1) * Q_BYTES], &u);
        }
    }
}

/// Signed bytes `v` (in `-32..=31`) times the signed bytes `k` (in `-3..=3`), byte by byte:
/// `|k|` copies of `v` added up (at most 96 in magnitude), then `k`'s sign applied.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")]
fn times_digit(v: __m256i, k: __m256i) -> __m256i {
    let a = _mm256_abs_epi8(k);
    let v2 = _mm256_add_epi8(v, v);
    let v3 = _mm256_add_epi8(v2, v);
    let pick = |n: i8| _mm256_cmpeq_epi8(a, _mm256_set1_epi8(n));
    let r = _mm256_and_si256(pick(1), v);
    let r = _mm256_blendv_epi8(r, v2, pick(2));
    let r = _mm256_blendv_epi8(r, v3, pick(3));
    _mm256_sign_epi8(r, k)
}

/// Bytes `u` (each at most 255 / `k`) times `k`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")]
fn mul_bytes(u: __m256i, k: i16) -> __m256i {
    let lo8 = _mm256_set1_epi16(0x00ff);
    let k = _mm256_set1_epi16(k);
    let even = _mm256_mullo_epi16(_mm256_and_si256(u, lo8), k);
    let odd = _mm256_mullo_epi16(_mm256_srli_epi16::<8>(u), k);
    _mm256_or_si256(_mm256_and_si256(even, lo8), _mm256_slli_epi16::<8>(odd))
}

/// The eight pieces of sixteen rows, transposed into 64 vectors of `q` (`Q_BYTES`).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")]
fn store_transposed(q: &mut [u8], u: &[[__m256i; ROWS]; 8]) {
    assert_eq!(q.len(), Q_BYTES);
    for (p, up) in u.iter().enumerate() {
        for (k, v) in transpose16(up).into_iter().enumerate() {
            let at = 64 * (8 * p + k);
            // SAFETY: `q` is Q_BYTES = 64 · 64 writable bytes and `8p + k < 64`, so bytes
            // `at..at + 64` are in it; unaligned store.
            unsafe { _mm512_storeu_si512(q[at..at + 64].as_mut_ptr().cast(), v) };
        }
    }
}

/// `out[r][j] = dot(weight row j of the group, activation row r)` for up to [`TILE`]
/// activation rows `acts` (each a row of Q8_K blocks) and the group's sixteen rows.
pub(crate) fn group_dot(g: &PackedKGroup, acts: &[&[BlockQ8K]], out: &mut [[f32; ROWS]]) {
    assert!(acts.len() <= TILE && out.len() >= acts.len());
    for a in acts {
        assert_eq!(a.len(), g.blocks, "packed group and activations disagree");
    }
    let six = g.ty == Some(GgmlType::Q6_K);
    assert!(!g.tiles, "an AMX-form group goes through crate::amx");
    macro_rules! run {
        ($r:literal) => {{
            let a: [&[BlockQ8K]; $r] = std::array::from_fn(|i| acts[i]);
            // SAFETY: only called when the process's SIMD level is AVX-512 (checked by the
            // caller, `matmul`, through `SimdLevel::is_supported`), which includes every
            // feature the kernel is compiled with.
            let o = unsafe {
                if six {
                    group_dot_avx512::<$r, true>(g, a)
                } else {
                    group_dot_avx512::<$r, false>(g, a)
                }
            };
            out[..$r].copy_from_slice(&o);
        }};
    }
    match acts.len() {
        0 => {}
        1 => run!(1),
        2 => run!(2),
        3 => run!(3),
        _ => run!(4),
    }
}

/// The activation's four quants of group `k` as one `i32`.
#[inline(always)]
fn group4(y: &BlockQ8K, k: usize) -> i32 {
    let q = &y.qs[4 * k..4 * k + 4];
    i32::from_le_bytes([q[0] as u8, q[1] as u8, q[2] as u8, q[3] as u8])
}

/// Q8_K's sums of 16 number `2t` and `2t + 1` as an `i16` pair.
#[inline(always)]
fn bsum_pair(y: &BlockQ8K, t: usize) -> i32 {
    let lo = y.bsums[2 * t].get() as u16 as i32;
    let hi = y.bsums[2 * t + 1].get() as u16 as i32;
    lo | (hi << 16)
}

// Parallel per-activation-row arrays, indexed together.
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")]
fn group_dot_avx512<const R: usize, const SIX: bool>(
    g: &PackedKGroup,
    y: [&[BlockQ8K]; R],
) -> [[f32; ROWS]; R] {
    let ns = if SIX { 16 } else { 8 };
    let gps = 64 / ns;
    let nb = g.blocks;
    assert!(
        g.q.len() == nb * Q_BYTES
            && g.scales.len() == nb * ns * ROWS
            && g.pairs.len() == nb * 8 * ROWS
            && g.d.len() == nb * ROWS
            && g.dmin.len() == nb * ROWS,
        "packed group layout"
    );
    let mut acc = [_mm512_setzero_ps(); R];
    let mut acc_m = [_mm512_setzero_ps(); R];
    for b in 0..nb {
        let q: &[u8; Q_BYTES] = g.q[b * Q_BYTES..(b + 1) * Q_BYTES].try_into().unwrap();
        let mut s1 = [_mm512_setzero_si512(); R];
        for s in 0..ns {
            // Two chains per row (even and odd groups) halve the dependent `vpdpbusd`s.
            let mut t = [_mm512_setzero_si512(); R];
            let mut t1 = [_mm512_setzero_si512(); R];
            for k in (s * gps..(s + 1) * gps).step_by(2) {
                // SAFETY: `q` is 64 · 64 bytes and k + 1 < 64; unaligned loads.
                let (w0, w1) = unsafe {
                    (
                        _mm512_loadu_si512(q[64 * k..64 * k + 64].as_ptr().cast()),
                        _mm512_loadu_si512(q[64 * k + 64..64 * k + 128].as_ptr().cast()),
                    )
                };
                for r in 0..R {
                    t[r] = _mm512_dpbusd_epi32(t[r], w0, _mm512_set1_epi32(group4(&y[r][b], k)));
                    t1[r] =
                        _mm512_dpbusd_epi32(t1[r], w1, _mm512_set1_epi32(group4(&y[r][b], k + 1)));
                }
            }
            for r in 0..R {
                t[r] = _mm512_add_epi32(t[r], t1[r]);
            }
            let at = (b * ns + s) * ROWS;
            // SAFETY: `scales` holds `ns` vectors of ROWS i32 per block (checked above), so
            // 16 i32 at `at` are readable; unaligned load.
            let sc = unsafe { _mm512_loadu_si512(g.scales[at..at + ROWS].as_ptr().cast()) };
            for r in 0..R {
                s1[r] = _mm512_add_epi32(s1[r], _mm512_mullo_epi32(t[r], sc));
            }
        }
        let mut s2 = [_mm512_setzero_si512(); R];
        for t in 0..8 {
            let at = (b * 8 + t) * ROWS;
            // SAFETY: `pairs` holds 8 vectors of ROWS i32 per block (checked above).
            let p = unsafe { _mm512_loadu_si512(g.pairs[at..at + ROWS].as_ptr().cast()) };
            for r in 0..R {
                s2[r] = _mm512_dpwssd_epi32(s2[r], p, _mm512_set1_epi32(bsum_pair(&y[r][b], t)));
            }
        }
        // SAFETY: `d` and `dmin` hold ROWS floats per block (checked above).
        let (dx, dminx) = unsafe {
            (
                _mm512_loadu_ps(g.d[b * ROWS..(b + 1) * ROWS].as_ptr()),
                _mm512_loadu_ps(g.dmin[b * ROWS..(b + 1) * ROWS].as_ptr()),
            )
        };
        for r in 0..R {
            let dy = _mm512_set1_ps(y[r][b].d.get());
            if SIX {
                // The quants are stored +32: S − 32 · Σ scale · sum of 16.
                let s = _mm512_sub_epi32(s1[r], _mm512_slli_epi32::<5>(s2[r]));
                acc[r] = _mm512_fmadd_ps(_mm512_mul_ps(dy, dx), _mm512_cvtepi32_ps(s), acc[r]);
            } else {
                acc[r] = _mm512_fmadd_ps(_mm512_mul_ps(dy, dx), _mm512_cvtepi32_ps(s1[r]), acc[r]);
                let m = _mm512_mul_ps(_mm512_mul_ps(dy, dminx), _mm512_cvtepi32_ps(s2[r]));
                acc_m[r] = _mm512_add_ps(acc_m[r], m);
            }
        }
    }
    let mut out = [[0f32; ROWS]; R];
    for r in 0..R {
        let v = if SIX {
            acc[r]
        } else {
            _mm512_sub_ps(acc[r], acc_m[r])
        };
        // SAFETY: `out[r]` is ROWS = 16 writable floats; unaligned store.
        unsafe { _mm512_storeu_ps(out[r].as_mut_ptr(), v) };
    }
    out
}
