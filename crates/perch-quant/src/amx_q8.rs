//! Q4_0, Q5_0 and Q8_0 batch products on AMX tiles (see `crate::amx` for when the tiles
//! are there).
//!
//! `crate::packed` stores a block of sixteen weight rows as eight 64-byte vectors, the
//! four-byte group `k` of every row in vector `k`, each byte `q + offset` (8, 16, 128): that
//! is an AMX weight tile of 8 rows × 64 bytes as it is. The activations (Q8_0) are
//! rearranged once per product so that a block of sixteen activation rows is 512 contiguous
//! bytes (an activation tile of 16 rows × 32 bytes). One `tdpbsud` (signed activations ×
//! unsigned weights) gives the block's sums for 16 × 16 row pairs; adding
//! `-offset · Σ a` makes them the exact integer products, which is what these types'
//! one-row kernels sum per block (`dot/x86/legacy.rs`, `blocks8_exact`). Then, as there, one FMA per block by the scale
//! product into accumulator `b % 8`, and the same horizontal-sum tree: the same bits on
//! every path.
#![allow(clippy::incompatible_msrv)]

use core::arch::asm;
use core::arch::x86_64::*;

use crate::amx::{Slots, TILE_ROWS, TileConfig, TileSession, TiledActivations, pipelined};
use crate::packed::{PackedGroup, ROWS, hsum_tree};

/// The fewest activation rows for which Q8_0 products may run repacked, and from which the
/// engine's repack cache builds their repacked form (Q4_0 and Q5_0 keep the repacked
/// products' twelve: their repacked weights are twice their own size). The tiles read the
/// repacked weights once, as many bytes as the one-row kernels read, however few rows there
/// are (a tile pads them to sixteen); with short rows ([`runs_on_tiles`]) the same repacked
/// weights serve the AVX-512 repacked kernels instead, which cost the same per activation row
/// at any count. Without a repacked form, a product of short rows below the repacked
/// products' twelve runs on the four-row kernels.
pub(crate) const MIN_ACT_ROWS: usize = 2;

/// Activation rows × columns from which a Q4_0, Q5_0 or Q8_0 product runs on tiles rather
/// than the repacked AVX-512 kernels (`crate::packed`), which read the same weights.
const MIN_TILE_ELEMENTS: usize = 24 * 1024;

/// Whether a product of `rows` activation rows of `cols` columns runs on tiles. Each group
/// of sixteen weight rows costs the tiles a fixed set-up and finish (accumulators, the sums'
/// horizontal tree) besides its blocks, so a short row pays it over few blocks; the repacked
/// kernels have no such cost but pay per activation row. Measured with the weights streamed
/// from memory, as in decoding (Q8_0, 2 threads, the crossover in activation rows): 576
/// columns between 32 and 64, 1536 and 2048 columns about 12-16, 4096 columns about 4-8.
/// SmolLM2's 49152 x 576 output matrix at 16 rows: 3.2 ms on tiles, 2.5 ms repacked. Q4_0
/// and Q5_0, on the same tile kernel and repacked layout, measured alike: at 16 x 576 3.1
/// and 3.0 ms on tiles against 2.4 and 2.5 repacked, about even at 8 x 2048 and 4 x 4096, the
/// tiles ahead or even at 16 x 2048.
pub(crate) fn runs_on_tiles(rows: usize, cols: usize) -> bool {
    rows >= MIN_ACT_ROWS && rows * cols >= MIN_TILE_ELEMENTS
}

/// Bytes of one block of one activation tile: sixteen rows of 32 quants.
const TILE_BLOCK: usize = TILE_ROWS * 32;

/// `tmm0`, `tmm1`: the sums of two activation tiles (16 rows of 64 bytes); `tmm4`, `tmm5`:
/// their quants of one block (16 rows of 32 bytes); `tmm6`: the weights' block (8 rows of
/// 64 bytes).
pub(crate) static CONFIG: TileConfig =
    TileConfig::new([64, 64, 0, 0, 32, 32, 64, 0], [16, 16, 0, 0, 16, 16, 8, 0]);

/// `out[i][j] = dot(weight row j of g, activation row 16·t0 + i)` for the `out.len()` rows
/// from tile `t0` on, `offset` the weights' (`crate::packed::offset`), in a `session`
/// configured as [`CONFIG`]. `acc` is scratch, reused between calls.
pub(crate) fn group_dot(
    session: &TileSession,
    g: &PackedGroup,
    offset: i32,
    tiled: &TiledActivations,
    t0: usize,
    out: &mut [[f32; ROWS]],
    acc: &mut Vec<[__m512; 8]>,
) {
    assert!(session.has(&CONFIG), "a tile session configured for Q8_0");
    let (q, d) = g.parts();
    assert!(
        q.len() == tiled.blocks * 512
            && d.len() == tiled.blocks * ROWS
            && TILE_ROWS * t0 + out.len() <= tiled.rows
            && tiled.data.len() == tiled.blocks * tiled.tiles * TILE_BLOCK
            && tiled.meta.len() == tiled.blocks * tiled.rows,
        "a Q8_0 group and its tiled activations"
    );
    // SAFETY: the session configured the tiles as CONFIG on this thread (AMX available; a
    // session never leaves its thread), and the buffers hold what the kernel reads (checked
    // above).
    unsafe { tile_dot(q, d, offset, tiled, t0, out, acc) }
}

/// The kernel: block by block (its weights stay in L1 while every activation tile runs by),
/// two activation tiles at a time into two tiles of sums; the float arithmetic runs
/// [`pipelined`].
///
/// # Safety
/// The tiles must be configured as [`CONFIG`], and the buffers must be as `group_dot`
/// checks.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")]
unsafe fn tile_dot(
    q: &[u8],
    d: &[f32],
    offset: i32,
    tiled: &TiledActivations,
    t0: usize,
    out: &mut [[f32; ROWS]],
    acc: &mut Vec<[__m512; 8]>,
) {
    acc.clear();
    acc.resize(out.len(), [_mm512_setzero_ps(); 8]);
    let (nb, tiles) = (tiled.blocks, tiled.tiles);
    let mut sums = Slots([[[[0; ROWS]; TILE_ROWS]; 2]; 2]);
    let nt = out.len().div_ceil(TILE_ROWS);
    let units = (0..nb).flat_map(|b| (0..nt).step_by(2).map(move |t| (b, t, 2.min(nt - t))));
    pipelined!(
        units,
        &mut sums,
        |(b, t, n), now| {
            let w = q[b * 512..(b + 1) * 512].as_ptr();
            let at = (b * tiles + t0 + t) * TILE_BLOCK;
            let a = tiled.data[at..at + n * TILE_BLOCK].as_ptr();
            // SAFETY: the weight tile reads 8 rows of 64 bytes, block `b`'s 512 bytes; the
            // activation tiles read 16 rows of 32 bytes at `a` (and `a + 512`), inside the
            // unit's `n · 512` bytes (sliced above); the sums go to `now`, two tiles of 16
            // rows of 64 bytes.
            unsafe {
                if n == 2 {
                    asm!(
                        "tilezero tmm0",
                        "tilezero tmm1",
                        "tileloadd tmm6, [{w} + {sf}*1]",
                        "tileloadd tmm4, [{a} + {tt}*1]",
                        "tileloadd tmm5, [{a} + {tt}*1 + 512]",
                        "tdpbsud tmm0, tmm4, tmm6",
                        "tdpbsud tmm1, tmm5, tmm6",
                        "tilestored [{c0} + {sf}*1], tmm0",
                        "tilestored [{c1} + {sf}*1], tmm1",
                        w = in(reg) w,
                        a = in(reg) a,
                        sf = in(reg) 64usize,
                        tt = in(reg) 32usize,
                        c0 = in(reg) now[0].as_mut_ptr(),
                        c1 = in(reg) now[1].as_mut_ptr(),
                        options(nostack),
                    );
                } else {
                    asm!(
                        "tilezero tmm0",
                        "tileloadd tmm6, [{w} + {sf}*1]",
                        "tileloadd tmm4, [{a} + {tt}*1]",
                        "tdpbsud tmm0, tmm4, tmm6",
                        "tilestored [{c0} + {sf}*1], tmm0",
                        w = in(reg) w,
                        a = in(reg) a,
                        sf = in(reg) 64usize,
                        tt = in(reg) 32usize,
                        c0 = in(reg) now[0].as_mut_ptr(),
                        options(nostack),
                    );
                }
            }
        },
        |(b, t, n), before| {
            let first = b * tiled.rows + TILE_ROWS * t0;
            let meta = &tiled.meta[first..first + out.len()];
            // SAFETY: `d` holds ROWS floats per block (checked by the caller), sliced here.
            let dx = unsafe { _mm512_loadu_ps(d[b * ROWS..(b + 1) * ROWS].as_ptr()) };
            let k = b % 8;
            for (i, ci) in before[..n].iter().enumerate() {
                for (r, cr) in ci.iter().enumerate() {
                    let row = TILE_ROWS * (t + i) + r;
                    if row >= acc.len() {
                        break;
                    }
                    let y = meta[row];
                    // SAFETY: `cr` is 16 i32; unaligned load.
                    let s = unsafe { _mm512_loadu_si512(cr.as_ptr().cast()) };
                    let s = _mm512_add_epi32(s, _mm512_set1_epi32(-offset * y.ints[0]));
                    let sc = _mm512_mul_ps(dx, _mm512_set1_ps(y.d));
                    let a = &mut acc[row][k];
                    *a = _mm512_fmadd_ps(sc, _mm512_cvtepi32_ps(s), *a);
                }
            }
        },
    );
    for (o, a) in out.iter_mut().zip(acc.iter()) {
        let v = hsum_tree(a);
        // SAFETY: `o` is ROWS = 16 writable floats; unaligned store.
        unsafe { _mm512_storeu_ps(o.as_mut_ptr(), v) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The measured crossovers: SmolLM2's 576 columns stay on the repacked kernels up to
    /// 42 rows, 4096 columns go to the tiles from 6, and a single row never does.
    #[test]
    fn tiles_take_long_rows_or_many_of_them() {
        assert!(!runs_on_tiles(16, 576));
        assert!(!runs_on_tiles(42, 576));
        assert!(runs_on_tiles(43, 576));
        assert!(runs_on_tiles(64, 576));
        assert!(!runs_on_tiles(5, 4096));
        assert!(runs_on_tiles(6, 4096));
        assert!(runs_on_tiles(35, 768));
        assert!(!runs_on_tiles(1, 1 << 20));
    }
}
