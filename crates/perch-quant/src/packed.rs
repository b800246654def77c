//! Batched products of the 32-element types (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) on repacked
//! weights, for AVX-512 VNNI: what the engine runs for prompt chunks and for many sequences
//! decoding together.
//!
//! The one-row and four-row kernels spend most of their instructions per block and row on
//! the block's scales (convert, multiply, broadcast) and unpacking, around the one `vpdpbusd`
//! that does the arithmetic. Here a group of [`ROWS`] weight rows is repacked first (once per
//! matrix product, into a buffer that stays in L2) so that the four-byte group `k` of one block
//! of all sixteen rows fills one 512-bit vector, lane `j` holding row `j`'s bytes, as unsigned
//! values with a per-type offset (the nibbles of Q4_0 are `q + 8`). One `vpdpbusd` against the
//! activation's four bytes of group `k`, broadcast, then gives all sixteen rows' integer sums
//! for that group at once, and the scale product is one vector multiply per block for all
//! sixteen rows. As in ggml's interleaved layouts, the per-row overhead around the arithmetic
//! is gone.
//!
//! The arithmetic per row is exactly the one-row kernel's (`dot/x86/legacy.rs`). For Q4_1 and
//! Q5_1 the kernel keeps eight accumulators, one per four-byte group `k`, which are the eight
//! lanes of the one-row kernel's accumulator (sixteen for Q5_1, whose one-row kernel
//! alternates two accumulators over even and odd blocks), applies the same FMA with the same
//! scale product per block and the same minimum terms. Q4_0, Q5_0 and Q8_0 ([`exact`]) sum
//! each block exactly, the offset's correction `-offset · Σ block` included, and accumulate
//! block `b` into accumulator `b % 8`. Both end with the one-row kernel's horizontal-sum
//! tree. So a row's result is the same bits whichever
//! path computes it: a sequence's output does not depend on how many others share its batch
//! (the engine's batch invariance).
//!
//! The AVX-512 intrinsics are stable since Rust 1.89, above the workspace's declared
//! `rust-version`; see `dot/x86/mod.rs`.
#![allow(clippy::incompatible_msrv)]

use core::arch::x86_64::*;

use crate::activations::QuantizedActivations;
use crate::blocks::{BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0, BlockQ8_1, as_blocks};
use crate::matmul::WeightMatrix;
use crate::types::GgmlType;

/// Weight rows per repacked group (one 32-bit lane each in a 512-bit vector).
pub(crate) const ROWS: usize = 16;

/// 64 bytes on a cache line of their own.
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C, align(64))]
struct Line([u8; 64]);

/// A byte buffer aligned to cache lines, its length a multiple of 64: every 64-byte vector
/// of the repacked layouts (and every row of an AMX tile) is one line, never two.
#[derive(Default)]
pub(crate) struct AlignedBytes(Vec<Line>);

impl AlignedBytes {
    /// Resizes to `len` bytes (a multiple of 64), new bytes zero.
    pub(crate) fn resize(&mut self, len: usize) {
        assert_eq!(len % 64, 0, "whole lines");
        self.0.resize(len / 64, Line([0; 64]));
    }
}

impl std::ops::Deref for AlignedBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        bytemuck::cast_slice(&self.0)
    }
}

impl std::ops::DerefMut for AlignedBytes {
    fn deref_mut(&mut self) -> &mut [u8] {
        bytemuck::cast_slice_mut(&mut self.0)
    }
}

/// The fewest activation rows for which repacking pays: at 8 rows of a 4096 x 4096 matrix the
/// four-row kernels were as fast (repacking costs about one pass per group), at 64 the packed
/// product was 1.5-1.9x faster (`cargo bench -p perch-quant --bench kernels -- batch`).
pub(crate) const MIN_ACT_ROWS: usize = 12;

/// The fewest activation rows for which weights repacked beforehand serve the product: the
/// repacked kernels cost the same per activation row at any count, and one row reads the
/// file's smaller blocks faster with the one-row kernel.
pub(crate) const MIN_ACT_ROWS_PREPACKED: usize = 2;

/// How a type's values enter the packed product: unsigned bytes `q + offset`, whether the
/// blocks carry a minimum (`x = d·q + m`, activations of type Q8_1 with their sum `s`), and
/// whether the one-row kernel alternates two accumulators (even and odd blocks; the
/// [`exact`] types' one-row kernels sum each block exactly instead).
fn layout(ty: GgmlType) -> Option<(i32, bool, bool)> {
    Some(match ty {
        GgmlType::Q4_0 => (8, false, false),
        GgmlType::Q5_0 => (16, false, false),
        GgmlType::Q8_0 => (128, false, false),
        GgmlType::Q4_1 => (0, true, false),
        GgmlType::Q5_1 => (0, true, true),
        _ => return None,
    })
}

/// Whether `ty`'s one-row kernel sums each block's products exactly and accumulates the
/// block into lane `b % 8` (`dot/x86/legacy.rs`, `blocks8_exact`): Q4_0, Q5_0 and Q8_0.
pub(crate) fn exact(ty: GgmlType) -> bool {
    matches!(ty, GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::Q8_0)
}

/// The unsigned offset of a packed type's stored quants (`q + offset`).
pub(crate) fn offset(ty: GgmlType) -> i32 {
    layout(ty).map_or(0, |l| l.0)
}

/// Whether `ty` has a packed batch product.
pub(crate) fn packable(ty: GgmlType) -> bool {
    layout(ty).is_some()
}

/// The activations, prepared once per product: per row and block the scale (and Q8_1's sum)
/// as `f32`, the eight four-byte groups of quants as `i32`, and `-offset · Σ block` (the
/// offset types). Every array is laid out row by row (`blocks` entries per row, eight for the
/// groups); `s` and `correction` are zero where the type has no minimums or no offset.
pub(crate) struct PreparedActivations {
    /// The weights' offset and whether they carry minimums: all the preparation depends on.
    key: (i32, bool),
    blocks: usize,
    d: Vec<f32>,
    s: Vec<f32>,
    groups: Vec<i32>,
    correction: Vec<i32>,
}

/// One row's parts of the prepared arrays, zipped: `((d, s), groups), correction`.
type RowParts<'a> = (
    ((&'a mut [f32], &'a mut [f32]), &'a mut [i32]),
    &'a mut [i32],
);

/// Blocks of activations per parallel task when preparing them: below this a product's rows
/// are prepared on the calling thread (a fork costs about as much as this many blocks).
const PREPARE_BLOCKS_PER_TASK: usize = 128;

impl PreparedActivations {
    /// Prepares `x` for products with weights of type `ty` (which must be packable and take
    /// `x`'s type), rows in parallel when there are enough blocks: on the calling thread it
    /// was a serial stretch of every batched product (5% of a 16-sequence decoding step).
    pub(crate) fn new(ty: GgmlType, x: &QuantizedActivations) -> Self {
        use rayon::prelude::*;
        let (offset, with_min, _) = layout(ty).expect("packable type");
        let nb = x.cols() / 32;
        let n = x.rows() * nb;
        let mut p = PreparedActivations {
            key: (offset, with_min),
            blocks: nb,
            d: vec![0.0; n],
            s: vec![0.0; n],
            groups: vec![0; 8 * n],
            correction: vec![0; n],
        };
        if n == 0 {
            return p;
        }
        let row = |(r, (((d, s), groups), correction)): (usize, RowParts<'_>)| {
            let bytes = x.row(r);
            if with_min {
                let blocks = as_blocks::<BlockQ8_1>(bytes).expect("Q8_1 rows");
                for (b, blk) in blocks.iter().enumerate() {
                    d[b] = blk.d.to_f32();
                    s[b] = blk.s.to_f32();
                    prepare_block(
                        &blk.qs,
                        offset,
                        &mut groups[8 * b..8 * b + 8],
                        &mut correction[b],
                    );
                }
            } else {
                let blocks = as_blocks::<BlockQ8_0>(bytes).expect("Q8_0 rows");
                for (b, blk) in blocks.iter().enumerate() {
                    d[b] = blk.d.to_f32();
                    prepare_block(
                        &blk.qs,
                        offset,
                        &mut groups[8 * b..8 * b + 8],
                        &mut correction[b],
                    );
                }
            }
        };
        // Below two tasks' worth of blocks, one task: rayon runs it on the calling thread.
        let min_rows = if n >= 2 * PREPARE_BLOCKS_PER_TASK {
            PREPARE_BLOCKS_PER_TASK.div_ceil(nb)
        } else {
            x.rows()
        };
        p.d.par_chunks_mut(nb)
            .zip(p.s.par_chunks_mut(nb))
            .zip(p.groups.par_chunks_mut(8 * nb))
            .zip(p.correction.par_chunks_mut(nb))
            .enumerate()
            .with_min_len(min_rows)
            .for_each(row);
        p
    }

    /// Whether these prepared activations also serve weights of type `ty` (the same offset
    /// and minimums), so products of several matrices prepare them once.
    pub(crate) fn serves(&self, ty: GgmlType) -> bool {
        layout(ty).is_some_and(|(offset, with_min, _)| (offset, with_min) == self.key)
    }
}

/// One block's quants as eight little-endian `i32` groups of four, and `-offset · Σ quants`
/// (zero for the types without an offset).
fn prepare_block(qs: &[i8; 32], offset: i32, groups: &mut [i32], correction: &mut i32) {
    for (g, q) in groups.iter_mut().zip(qs.chunks_exact(4)) {
        *g = i32::from_le_bytes([q[0] as u8, q[1] as u8, q[2] as u8, q[3] as u8]);
    }
    if offset != 0 {
        *correction = -offset * qs.iter().map(|&q| i32::from(q)).sum::<i32>();
    }
}

/// A group of [`ROWS`] weight rows, repacked: per block eight vectors of 64 bytes (group `k`
/// of row `j` at bytes `4j..4j + 4` of vector `k`), then the rows' scales and minimums as f32.
#[derive(Default)]
pub(crate) struct PackedGroup {
    q: AlignedBytes,
    d: Vec<f32>,
    m: Vec<f32>,
}

impl PackedGroup {
    /// Fetches part `part` of `parts` of the group's lines into L2: a hint only. The
    /// batched product fetches the next group while this one computes, spread over the
    /// activation rows, so that a group streamed from L3 or memory, as in a small batch where
    /// each group serves a few rows only, is not waited for (16 sequences decoding SmolLM2
    /// Q4_1: +4-7%). On the AMX tiles, fetching the next group at once gained nothing.
    pub(crate) fn prefetch(&self, part: usize, parts: usize) {
        prefetch_part(
            &[
                &self.q,
                bytemuck::cast_slice(&self.d),
                bytemuck::cast_slice(&self.m),
            ],
            part,
            parts,
        );
    }

    /// The quants (eight 64-byte vectors per block) and the rows' scales (ROWS per block).
    pub(crate) fn parts(&self) -> (&[u8], &[f32]) {
        assert_eq!(
            self.q.len() / 512 * ROWS,
            self.d.len(),
            "packed group layout"
        );
        (&self.q, &self.d)
    }

    /// Bytes of a group of rows of `cols` elements.
    pub(crate) fn bytes_for(cols: usize) -> usize {
        cols / 32 * (8 * 64 + 2 * ROWS * 4)
    }

    /// Bytes held.
    pub(crate) fn bytes(&self) -> usize {
        self.q.len() + 4 * (self.d.len() + self.m.len())
    }

    /// Repacks weight rows `o0..o0 + n` (`n <= ROWS`; missing rows are zero) of `w`.
    pub(crate) fn fill(&mut self, w: &WeightMatrix<'_>, o0: usize, n: usize) {
        let blocks = w.cols() / 32;
        self.q.resize(blocks * 8 * 64);
        self.d.resize(blocks * ROWS, 0.0);
        self.m.resize(blocks * ROWS, 0.0);
        let rows: [&[u8]; ROWS] = std::array::from_fn(|j| if j < n { w.row(o0 + j) } else { &[] });
        // SAFETY: only called when the process's SIMD level is AVX-512 (see `group_dot`).
        unsafe { fill_avx512(self, w.ty(), &rows, blocks) }
    }
}

/// Part `part` of `parts` of each of `bytes`' cache lines, fetched into L2.
fn prefetch_part(bytes: &[&[u8]], part: usize, parts: usize) {
    for bytes in bytes {
        let lines = bytes.len().div_ceil(64);
        let per = lines.div_ceil(parts.max(1));
        for l in (part * per).min(lines)..((part + 1) * per).min(lines) {
            // SAFETY: a prefetch never faults, and the address is inside `bytes`.
            unsafe { _mm_prefetch::<_MM_HINT_T1>(bytes.as_ptr().add(64 * l).cast()) };
        }
    }
}

/// One block's 32 unsigned values as `nibbles32` orders them, with its scale and minimum.
macro_rules! unpack {
    ($blk:ty, $row:expr, $b:expr, |$x:ident| $u:expr, $m:expr) => {{
        let $x = &as_blocks::<$blk>($row).expect("whole blocks")[$b];
        ($u, $x.d.to_bits(), $m)
    }};
}

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")]
fn fill_avx512(g: &mut PackedGroup, ty: GgmlType, rows: &[&[u8]; ROWS], blocks: usize) {
    use crate::dot::x86::common::{bits32, load32, nibbles32};
    let b4 = _mm256_set1_epi8(0x10);
    let x80 = _mm256_set1_epi8(0x80u8 as i8);
    for b in 0..blocks {
        let mut u = [_mm256_setzero_si256(); ROWS];
        let mut d = [0u16; ROWS];
        let mut m = [0u16; ROWS];
        for (j, row) in rows.iter().enumerate() {
            if row.is_empty() {
                continue;
            }
            (u[j], d[j], m[j]) = match ty {
                GgmlType::Q4_0 => unpack!(BlockQ4_0, row, b, |x| nibbles32(&x.qs), 0),
                GgmlType::Q4_1 => unpack!(BlockQ4_1, row, b, |x| nibbles32(&x.qs), x.m.to_bits()),
                GgmlType::Q5_0 => unpack!(
                    BlockQ5_0,
                    row,
                    b,
                    |x| {
                        let hi = _mm256_and_si256(bits32(u32::from_le_bytes(x.qh)), b4);
                        _mm256_or_si256(nibbles32(&x.qs), hi)
                    },
                    0
                ),
                GgmlType::Q5_1 => unpack!(
                    BlockQ5_1,
                    row,
                    b,
                    |x| {
                        let hi = _mm256_and_si256(bits32(u32::from_le_bytes(x.qh)), b4);
                        _mm256_or_si256(nibbles32(&x.qs), hi)
                    },
                    x.m.to_bits()
                ),
                GgmlType::Q8_0 => unpack!(
                    BlockQ8_0,
                    row,
                    b,
                    |x| _mm256_xor_si256(load32(&x.qs), x80),
                    0
                ),
                _ => unreachable!("packable types only"),
            };
        }
        let v = transpose16(&u);
        let q = &mut g.q[b * 512..(b + 1) * 512];
        for (k, vk) in v.into_iter().enumerate() {
            // SAFETY: `q` is 512 writable bytes, so bytes `64k..64k + 64` (k < 8) are in it;
            // unaligned store.
            unsafe { _mm512_storeu_si512(q[64 * k..64 * k + 64].as_mut_ptr().cast(), vk) };
        }
        // SAFETY: `d` and `m` are 32 readable bytes; `g.d` / `g.m` hold 16 floats at
        // `b * ROWS`; unaligned loads and stores.
        unsafe {
            let df = _mm512_cvtph_ps(_mm256_loadu_si256(d.as_ptr().cast()));
            _mm512_storeu_ps(g.d[b * ROWS..(b + 1) * ROWS].as_mut_ptr(), df);
            let mf = _mm512_cvtph_ps(_mm256_loadu_si256(m.as_ptr().cast()));
            _mm512_storeu_ps(g.m[b * ROWS..(b + 1) * ROWS].as_mut_ptr(), mf);
        }
    }
}

/// Sixteen rows of 32 bytes (eight four-byte groups each) to eight vectors: vector `k` holds
/// group `k` of row `j` in its 32-bit lane `j`.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")]
pub(crate) fn transpose16(u: &[__m256i; ROWS]) -> [__m512i; 8] {
    // Rows i and i + 8 side by side, then an 8 x 8 transpose of 32-bit groups within each
    // 256-bit half: vector k gets group k of rows 0..8 (low half) and 8..16 (high half).
    let mut z = [_mm512_setzero_si512(); 8];
    for i in 0..8 {
        z[i] = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(u[i]), u[i + 8]);
    }
    let t = [
        _mm512_unpacklo_epi32(z[0], z[1]),
        _mm512_unpackhi_epi32(z[0], z[1]),
        _mm512_unpacklo_epi32(z[2], z[3]),
        _mm512_unpackhi_epi32(z[2], z[3]),
        _mm512_unpacklo_epi32(z[4], z[5]),
        _mm512_unpackhi_epi32(z[4], z[5]),
        _mm512_unpacklo_epi32(z[6], z[7]),
        _mm512_unpackhi_epi32(z[6], z[7]),
    ];
    let s = [
        _mm512_unpacklo_epi64(t[0], t[2]),
        _mm512_unpackhi_epi64(t[0], t[2]),
        _mm512_unpacklo_epi64(t[1], t[3]),
        _mm512_unpackhi_epi64(t[1], t[3]),
        _mm512_unpacklo_epi64(t[4], t[6]),
        _mm512_unpackhi_epi64(t[4], t[6]),
        _mm512_unpacklo_epi64(t[5], t[7]),
        _mm512_unpackhi_epi64(t[5], t[7]),
    ];
    let lo_idx = _mm512_setr_epi64(0, 1, 8, 9, 4, 5, 12, 13);
    let hi_idx = _mm512_setr_epi64(2, 3, 10, 11, 6, 7, 14, 15);
    let mut out = [_mm512_setzero_si512(); 8];
    for k in 0..4 {
        out[k] = _mm512_permutex2var_epi64(s[k], lo_idx, s[k + 4]);
        out[k + 4] = _mm512_permutex2var_epi64(s[k], hi_idx, s[k + 4]);
    }
    out
}

/// `out[j] = dot(weight row j of the group, activation row r)` for the group's sixteen rows.
pub(crate) fn group_dot(
    ty: GgmlType,
    g: &PackedGroup,
    a: &PreparedActivations,
    r: usize,
) -> [f32; ROWS] {
    let (_, with_min, two) = layout(ty).expect("packable type");
    // SAFETY: only called when the process's SIMD level is AVX-512 (checked by the caller,
    // `matmul`, through `SimdLevel::is_supported`), which includes every feature the kernel is
    // compiled with.
    unsafe {
        match (exact(ty), with_min, two) {
            (true, _, _) => group_dot_exact(g, a, r),
            (false, true, false) => group_dot_min::<false>(g, a, r),
            (false, true, true) => group_dot_min::<true>(g, a, r),
            (false, false, _) => unreachable!("{ty}: every type without minimums is exact"),
        }
    }
}

/// Adds block `$b`'s products to the eight accumulators `$acc`.
macro_rules! block_step {
    ($acc:ident, $b:expr, $g:ident, $d:ident, $groups:ident) => {{
        let b = $b;
        let q: &[u8; 512] = $g.q[b * 512..(b + 1) * 512].try_into().unwrap();
        let gr: &[i32; 8] = $groups[b * 8..b * 8 + 8].try_into().unwrap();
        // SAFETY: `g.d` holds ROWS floats per block (its length matches `g.q`'s, checked by the
        // caller), so 16 floats at `b * ROWS` are readable; unaligned load.
        let dx = unsafe { _mm512_loadu_ps($g.d[b * ROWS..(b + 1) * ROWS].as_ptr()) };
        let sc = _mm512_mul_ps(dx, _mm512_set1_ps($d[b]));
        for k in 0..8 {
            // SAFETY: `q` is 512 bytes, so bytes `64k..64k + 64` are readable; unaligned load.
            let w = unsafe { _mm512_loadu_si512(q[64 * k..64 * k + 64].as_ptr().cast()) };
            let p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w, _mm512_set1_epi32(gr[k]));
            $acc[k] = _mm512_fmadd_ps(sc, _mm512_cvtepi32_ps(p), $acc[k]);
        }
    }};
}

/// The product of the types with minimums (Q4_1, Q5_1, stored unsigned as they are): the
/// one-row kernel's eight lane accumulators (two sets of them when it alternates blocks,
/// `TWO`), its minimum terms, its horizontal-sum tree.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")]
fn group_dot_min<const TWO: bool>(
    g: &PackedGroup,
    a: &PreparedActivations,
    r: usize,
) -> [f32; ROWS] {
    let nb = a.blocks;
    assert!(
        g.q.len() == nb * 8 * 64 && g.d.len() == nb * ROWS && g.m.len() == nb * ROWS && a.key.1,
        "packed group and activations disagree"
    );
    let d = &a.d[r * nb..(r + 1) * nb];
    let groups = &a.groups[r * nb * 8..(r + 1) * nb * 8];
    let s = &a.s[r * nb..(r + 1) * nb];
    let mut acc = [_mm512_setzero_ps(); 8];
    if TWO {
        // Even blocks into `acc`, odd ones into `acc1`, as the one-row kernel's two chains.
        let mut acc1 = [_mm512_setzero_ps(); 8];
        let mut b = 0;
        while b + 1 < nb {
            block_step!(acc, b, g, d, groups);
            block_step!(acc1, b + 1, g, d, groups);
            b += 2;
        }
        if b < nb {
            block_step!(acc, b, g, d, groups);
        }
        for k in 0..8 {
            acc[k] = _mm512_add_ps(acc[k], acc1[k]);
        }
    } else {
        for b in 0..nb {
            block_step!(acc, b, g, d, groups);
        }
    }
    let mut macc = _mm512_setzero_ps();
    for (m, &sb) in g.m.chunks_exact(ROWS).zip(s) {
        // SAFETY: `m` is ROWS = 16 readable floats; unaligned load.
        let m = unsafe { _mm512_loadu_ps(m.as_ptr()) };
        macc = _mm512_add_ps(macc, _mm512_mul_ps(m, _mm512_set1_ps(sb)));
    }
    let sum = _mm512_add_ps(hsum_tree(&acc), macc);
    let mut out = [0f32; ROWS];
    // SAFETY: `out` is 16 writable floats; unaligned store.
    unsafe { _mm512_storeu_ps(out.as_mut_ptr(), sum) };
    out
}

/// The product of the [`exact`] types: per block the exact integer sum of all eight groups
/// (the offset's correction included) for the sixteen rows, then one FMA by the block's
/// scale product into accumulator `b % 8`, and the one-row kernel's horizontal-sum tree over
/// the eight accumulators: its lanes, row by row.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")]
fn group_dot_exact(g: &PackedGroup, a: &PreparedActivations, r: usize) -> [f32; ROWS] {
    let nb = a.blocks;
    assert!(
        g.q.len() == nb * 8 * 64 && g.d.len() == nb * ROWS && !a.key.1,
        "packed group and activations disagree"
    );
    let d = &a.d[r * nb..(r + 1) * nb];
    let groups = &a.groups[r * nb * 8..(r + 1) * nb * 8];
    let corr = &a.correction[r * nb..(r + 1) * nb];
    let mut acc = [_mm512_setzero_ps(); 8];
    for c in 0..nb.div_ceil(8) {
        for (k, acc_k) in acc.iter_mut().enumerate().take(nb - 8 * c) {
            let b = 8 * c + k;
            let q: &[u8; 512] = g.q[b * 512..(b + 1) * 512].try_into().unwrap();
            let gr: &[i32; 8] = groups[b * 8..b * 8 + 8].try_into().unwrap();
            // Two chains (even and odd groups) of exact integer sums, then their sum.
            let mut p0 = _mm512_set1_epi32(corr[b]);
            let mut p1 = _mm512_setzero_si512();
            for j in (0..8).step_by(2) {
                // SAFETY: `q` is 512 bytes, so bytes `64j..64j + 128` are readable.
                let (w0, w1) = unsafe {
                    (
                        _mm512_loadu_si512(q[64 * j..].as_ptr().cast()),
                        _mm512_loadu_si512(q[64 * j + 64..].as_ptr().cast()),
                    )
                };
                p0 = _mm512_dpbusd_epi32(p0, w0, _mm512_set1_epi32(gr[j]));
                p1 = _mm512_dpbusd_epi32(p1, w1, _mm512_set1_epi32(gr[j + 1]));
            }
            let p = _mm512_add_epi32(p0, p1);
            // SAFETY: `g.d` holds ROWS floats per block (checked above); unaligned load.
            let dx = unsafe { _mm512_loadu_ps(g.d[b * ROWS..(b + 1) * ROWS].as_ptr()) };
            let sc = _mm512_mul_ps(dx, _mm512_set1_ps(d[b]));
            *acc_k = _mm512_fmadd_ps(sc, _mm512_cvtepi32_ps(p), *acc_k);
        }
    }
    let sum = hsum_tree(&acc);
    let mut out = [0f32; ROWS];
    // SAFETY: `out` is 16 writable floats; unaligned store.
    unsafe { _mm512_storeu_ps(out.as_mut_ptr(), sum) };
    out
}

/// Sixteen rows' sums of eight accumulators, lane by lane in the one-row kernels' `hsum_ps`
/// order: (a0 + a4, a1 + a5, a2 + a6, a3 + a7), then (.0 + .2, .1 + .3), then their sum.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")]
pub(crate) fn hsum_tree(acc: &[__m512; 8]) -> __m512 {
    let t0 = _mm512_add_ps(acc[4], acc[0]);
    let t1 = _mm512_add_ps(acc[5], acc[1]);
    let t2 = _mm512_add_ps(acc[6], acc[2]);
    let t3 = _mm512_add_ps(acc[7], acc[3]);
    _mm512_add_ps(_mm512_add_ps(t0, t2), _mm512_add_ps(t1, t3))
}
