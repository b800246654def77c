//! Batched products of the repacked K-quants Q4_K, Q5_K and Q6_K on Intel AMX tiles, where
//! the CPU has AMX-INT8 and the kernel grants the tile state (Linux's `ARCH_REQ_XCOMP_PERM`);
//! the tile session, the availability check and the tiled activations that `crate::amx_q8`
//! (Q4_0, Q5_0, Q8_0) shares.
//!
//! `crate::packed_k` lays sixteen weight rows out so that the four-byte group `k` of all
//! sixteen rows fills one 64-byte vector: exactly the layout AMX wants for its second operand
//! (`B`, "VNNI" form: `K/4` rows of sixteen four-byte columns). The activations, rearranged
//! once per product ([`TiledActivations`]), are the first operand (`A`): sixteen rows of 64
//! quants, 1 KiB contiguous. One `tdpbsud` (signed activations × unsigned weights) adds
//! 16 × 16 × 64 products.
//!
//! A super-block's exact integer is `S = Σ_sub scale · Σ a·q` with six-bit sub-block scales.
//! Multiplying each sub-block's tile of sums by its scales afterwards costs more than the
//! tile product itself (a tile store, sixteen loads and sixteen `vpmulld`s per 32 elements),
//! so the AMX form of a group stores the quants already multiplied, twice: by the low three
//! bits of the scale and by the high three (each product fits a byte: 7 · 31). Then
//! `S = Σ a·(q·lo) + 8 · Σ a·(q·hi)`: two tiles, accumulated over the whole super-block.
//! The minimums' term comes from Q8_K's sums of 32 with `vpdpwssd`, and the float arithmetic
//! is `packed_k`'s, in the same order. Integer sums are exact however they are grouped, so
//! every result is the same bits as the one-row and VNNI kernels': a sequence's output still
//! does not depend on how many others share its batch, or on whether the machine has AMX.
//!
//! Q6_K's scales are signed bytes. Its AMX form stores the quants minus 32 times each of the
//! three balanced base-7 digits of the scale (`s = d0 + 7·d1 + 49·d2`, digits in `-3..=3`,
//! products in `-96..=96`): three signed × signed tile accumulations per super-block, and
//! no offset term at all.
//!
//! `PERCH_AMX=0` turns the tiles off (comparisons); `PERCH_SIMD` below `avx512` does too.
#![allow(clippy::incompatible_msrv)]

use core::arch::asm;
use core::arch::x86_64::*;
use std::cell::RefCell;
use std::sync::OnceLock;

use crate::activations::QuantizedActivations;
use crate::blocks::{BlockQ8_0, BlockQ8K, as_blocks};
use crate::packed::{AlignedBytes, ROWS};
use crate::packed_k::PackedKGroup;
use crate::types::{GgmlType, QK_K};

/// Runs a tile kernel's `units` in order through the two slots of a [`Slots`]:
/// `|unit, slot| issue` starts a unit's tile products, storing their sums into one slot, and
/// `|unit, slot| finish` runs a unit's integer and float arithmetic after the next unit is
/// issued, from the other slot. So its loads never wait on the tile stores just made, and
/// the vector units work while the tile unit does. (A macro, not a function taking closures:
/// the bodies must inline into the kernel, and a closure called from a generic helper did
/// not, which cost 10-15% of the product.)
macro_rules! pipelined {
    ($units:expr, $slots:expr, |$iu:pat_param, $now:pat_param| $issue:block,
     |$fu:pat_param, $before:pat_param| $finish:block $(,)?) => {{
        let slots = $slots;
        let mut pending = None;
        for (u, unit) in $units.map(Some).chain([None]).enumerate() {
            let prev = std::mem::replace(&mut pending, unit);
            let [even, odd] = &mut slots.0;
            let (now, before) = if u % 2 == 0 {
                (even, &*odd)
            } else {
                (odd, &*even)
            };
            if let Some($iu) = unit {
                let $now = now;
                $issue
            }
            if let Some($fu) = prev {
                let $before = before;
                $finish
            }
        }
    }};
}
pub(crate) use pipelined;

/// Activation rows per tile product (the rows of an AMX tile).
pub(crate) const TILE_ROWS: usize = 16;

/// The environment variable that turns AMX off when set to `0`.
pub(crate) const ENV_VAR: &str = "PERCH_AMX";

/// Whether the tile products run: the CPU has AMX-TILE and AMX-INT8, the operating system
/// granted this process the tile state, and `PERCH_AMX` is not `0`. Decided once.
pub(crate) fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        if std::env::var(ENV_VAR).is_ok_and(|v| v.trim() == "0") {
            tracing::debug!("AMX turned off by {ENV_VAR}=0");
            return false;
        }
        let ok = cpu_has_amx_int8() && request_tile_state();
        tracing::debug!(amx = ok, "AMX tile products");
        ok
    })
}

/// CPUID leaf 7: AMX-TILE (EDX bit 24) and AMX-INT8 (EDX bit 25).
fn cpu_has_amx_int8() -> bool {
    // Leaf 0 reports the highest leaf; leaf 7 is only read when it exists.
    if __cpuid(0).eax < 7 {
        return false;
    }
    let edx = __cpuid_count(7, 0).edx;
    edx & (1 << 24) != 0 && edx & (1 << 25) != 0
}

/// Asks Linux for the AMX tile data state (`arch_prctl(ARCH_REQ_XCOMP_PERM,
/// XFEATURE_XTILEDATA)`); without it the first tile instruction faults.
#[cfg(target_os = "linux")]
fn request_tile_state() -> bool {
    const SYS_ARCH_PRCTL: i64 = 158;
    const ARCH_REQ_XCOMP_PERM: i64 = 0x1023;
    const XFEATURE_XTILEDATA: i64 = 18;
    let ret: i64;
    // SAFETY: the `arch_prctl` system call with these arguments only changes the process's
    // permitted extended state (or fails with an error code); it reads and writes no memory
    // of ours. `syscall` clobbers rcx and r11, declared.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") SYS_ARCH_PRCTL => ret,
            in("rdi") ARCH_REQ_XCOMP_PERM,
            in("rsi") XFEATURE_XTILEDATA,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    if ret != 0 {
        tracing::debug!(errno = -ret, "the kernel refused the AMX tile state");
    }
    ret == 0
}

#[cfg(not(target_os = "linux"))]
fn request_tile_state() -> bool {
    false
}

/// The tile configuration (palette 1): every tile's rows and bytes per row.
#[repr(C, align(64))]
pub(crate) struct TileConfig {
    palette: u8,
    start_row: u8,
    reserved: [u8; 14],
    colsb: [u16; 16],
    rows: [u8; 16],
    reserved2: [u8; 16],
}

impl TileConfig {
    /// Tiles `tmm0..tmm8` with `colsb[t]` bytes per row and `rows[t]` rows (at most 64 and
    /// 16; zero for a tile left unused).
    pub(crate) const fn new(colsb: [u16; 8], rows: [u8; 8]) -> TileConfig {
        let mut c = TileConfig {
            palette: 1,
            start_row: 0,
            reserved: [0; 14],
            colsb: [0; 16],
            rows: [0; 16],
            reserved2: [0; 16],
        };
        let mut t = 0;
        while t < 8 {
            assert!(colsb[t] <= 64 && rows[t] <= 16);
            c.colsb[t] = colsb[t];
            c.rows[t] = rows[t];
            t += 1;
        }
        c
    }
}

/// The K-quant kernels' tiles, every one 16 rows of 64 bytes: `tmm0`, `tmm1` the sums (low
/// and high scale bits); `tmm2`, `tmm5` activations; `tmm3`, `tmm4`, `tmm6`, `tmm7` weights.
pub(crate) static CONFIG: TileConfig = TileConfig::new([64; 8], [16; 8]);

/// Tile products from [`TileSession::start`] until dropped (which releases the tiles), on
/// the thread that started it (tile state is per thread: a session is neither `Send` nor
/// `Sync`).
pub(crate) struct TileSession(&'static TileConfig, std::marker::PhantomData<*const ()>);

impl TileSession {
    /// Loads the tile configuration `config` on this thread ([`CONFIG`] for the K-quant
    /// products of this module). Only when [`available`].
    pub(crate) fn start(config: &'static TileConfig) -> TileSession {
        assert!(available(), "AMX tile products are not available");
        // SAFETY: AMX is available and this process holds the tile state (`available`);
        // `config` is a valid palette-1 configuration (`TileConfig::new` checks the shapes).
        unsafe { asm!("ldtilecfg [{}]", in(reg) config, options(nostack, readonly)) };
        TileSession(config, std::marker::PhantomData)
    }

    /// Whether the session's tiles are configured as `config`.
    pub(crate) fn has(&self, config: &'static TileConfig) -> bool {
        std::ptr::eq(self.0, config)
    }

    /// `out[i][j] = dot(weight row j of g, activation row 16·t0 + i)`: the activation rows
    /// from tile `t0` on (`out.len()` of them) of `tiled`, and a group in the AMX form. `acc`
    /// is scratch, reused between calls. The session must have started with [`CONFIG`].
    pub(crate) fn group_dot(
        &self,
        g: &PackedKGroup,
        tiled: &TiledActivations,
        t0: usize,
        out: &mut [[f32; ROWS]],
        acc: &mut Vec<[__m512; 2]>,
    ) {
        assert!(
            self.has(&CONFIG),
            "a tile session configured for the K-quants"
        );
        assert!(
            g.is_tiles() && tiled.blocks == g.blocks() && TILE_ROWS * t0 + out.len() <= tiled.rows,
            "a group in the AMX form and its activations"
        );
        // SAFETY: the session configured the tiles on this thread (AMX available) and `g` is
        // in the AMX form with `tiled`'s blocks, whose rows include the range (checked).
        unsafe {
            if g.is_six() {
                tile_dot_six(g, tiled, t0, out, acc)
            } else {
                tile_dot(g, tiled, t0, out, acc)
            }
        }
    }
}

/// Activations rearranged for tile loads, once per product: per block (Q8_K's 256 elements
/// or Q8_0's 32), per tile of sixteen rows (the last padded), per 64 elements (32 for Q8_0),
/// the sixteen rows' quants one after the other: 1 KiB (512 bytes) read by one `tileloadd`.
/// Contiguous tiles stream from L2 where rows `row_bytes` apart would not.
pub(crate) struct TiledActivations {
    pub(crate) rows: usize,
    pub(crate) tiles: usize,
    pub(crate) blocks: usize,
    pub(crate) data: AlignedBytes,
    /// Per block and row.
    pub(crate) meta: Vec<RowMeta>,
}

/// A row's block scale and sums: for Q8_K its sums of 32 as `i16` pairs (sums `2t`, `2t + 1`,
/// as `vpdpwssd` reads them); for Q8_0 the sum of its quants in `ints[0]`.
#[derive(Clone, Copy, Default)]
pub(crate) struct RowMeta {
    pub(crate) d: f32,
    pub(crate) ints: [i32; 4],
}

thread_local! {
    /// The buffers of this thread's last tiled activations, for the next.
    static SPARE: RefCell<(AlignedBytes, Vec<RowMeta>)> = RefCell::default();
}

impl Drop for TiledActivations {
    fn drop(&mut self) {
        let data = std::mem::take(&mut self.data);
        let meta = std::mem::take(&mut self.meta);
        SPARE.with_borrow_mut(|spare| *spare = (data, meta));
    }
}

impl TiledActivations {
    /// Rearranges `x` (rows of Q8_K or Q8_0), reusing the buffers this thread's last one
    /// left: a prompt's products would otherwise fault in and zero fresh pages for every
    /// matrix. (The padding rows of the last tile are left as they are: their sums are never
    /// read.)
    pub(crate) fn new(x: &QuantizedActivations) -> TiledActivations {
        let bs = match x.ty() {
            GgmlType::Q8_K => QK_K,
            GgmlType::Q8_0 => 32,
            ty => panic!("no tiled activations of {ty}"),
        };
        let cw = bs.min(64);
        let rows = x.rows();
        let tiles = rows.div_ceil(TILE_ROWS);
        let blocks = x.cols() / bs;
        let (mut data, mut meta) = SPARE.with_borrow_mut(std::mem::take);
        data.resize(blocks * tiles * TILE_ROWS * bs);
        meta.resize(blocks * rows, RowMeta::default());
        let mut place = |b: usize, r: usize, qs: &[i8], m: RowMeta| {
            let (t, i) = (r / TILE_ROWS, r % TILE_ROWS);
            meta[b * rows + r] = m;
            for (k, q) in qs.chunks_exact(cw).enumerate() {
                let at = (b * tiles + t) * TILE_ROWS * bs + k * TILE_ROWS * cw + cw * i;
                data[at..at + cw].copy_from_slice(bytemuck::cast_slice(q));
            }
        };
        for r in 0..rows {
            if bs == QK_K {
                for (b, y) in as_blocks::<BlockQ8K>(x.row(r))
                    .expect("Q8_K rows")
                    .iter()
                    .enumerate()
                {
                    let sum32 = |g: usize| y.bsums[2 * g].get() + y.bsums[2 * g + 1].get();
                    let ints = std::array::from_fn(|t| {
                        (sum32(2 * t) as u16 as i32) | ((sum32(2 * t + 1) as u16 as i32) << 16)
                    });
                    place(b, r, &y.qs, RowMeta { d: y.d.get(), ints });
                }
            } else {
                for (b, y) in as_blocks::<BlockQ8_0>(x.row(r))
                    .expect("Q8_0 rows")
                    .iter()
                    .enumerate()
                {
                    let sum = y.qs.iter().map(|&q| i32::from(q)).sum();
                    place(
                        b,
                        r,
                        &y.qs,
                        RowMeta {
                            d: y.d.to_f32(),
                            ints: [sum, 0, 0, 0],
                        },
                    );
                }
            }
        }
        TiledActivations {
            rows,
            tiles,
            blocks,
            data,
            meta,
        }
    }
}

impl Drop for TileSession {
    fn drop(&mut self) {
        // SAFETY: the tiles were configured by `start` (AMX available); releasing them only
        // returns the tile state to its initial, unconfigured form.
        unsafe { asm!("tilerelease", options(nostack, nomem)) };
    }
}

/// Two units' tiles of sums, every tile row on a cache line of its own.
#[repr(C, align(64))]
pub(crate) struct Slots<S>(pub(crate) [S; 2]);

/// Checks that `tiled` holds `g`'s blocks for `rows` rows from tile `t0` on, and zeroes the
/// kernels' `rows` accumulators.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")]
fn start(
    g: &PackedKGroup,
    tiled: &TiledActivations,
    t0: usize,
    rows: usize,
    acc: &mut Vec<[__m512; 2]>,
) {
    let nb = g.blocks();
    assert!(
        tiled.blocks == nb
            && TILE_ROWS * t0 + rows <= tiled.rows
            && tiled.data.len() == nb * tiled.tiles * TILE_ROWS * QK_K
            && tiled.meta.len() == nb * tiled.rows,
        "tiled activations of the group's blocks"
    );
    acc.clear();
    acc.resize(rows, [_mm512_setzero_ps(); 2]);
}

/// The kernel. Super-block by super-block (its weights stay in L1 while every activation
/// tile runs by), two activation tiles at a time: per 64 elements two weight tiles (low and
/// high scale bits) and two activation tiles feed four tile products into four tiles of sums;
/// their integer and float arithmetic runs [`pipelined`].
///
/// # Safety
/// The tiles must be configured as [`CONFIG`] and `g` must be in the AMX form.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")]
unsafe fn tile_dot(
    g: &PackedKGroup,
    tiled: &TiledActivations,
    t0: usize,
    out: &mut [[f32; ROWS]],
    acc: &mut Vec<[__m512; 2]>,
) {
    start(g, tiled, t0, out.len(), acc);
    let (q, _, pairs, d, dmin) = g.parts();
    let (nb, tiles) = (g.blocks(), tiled.tiles);
    // The sums of a unit: `[tile][low or high][r][j]`.
    let mut sums = Slots([[[[[0; ROWS]; TILE_ROWS]; 2]; 2]; 2]);
    let q_block = 2 * QK_K * ROWS;
    // Units in order: (block, first tile from t0, tiles), the last of a block single when odd.
    let nt = out.len().div_ceil(TILE_ROWS);
    let units = (0..nb).flat_map(|b| (0..nt).step_by(2).map(move |t| (b, t, 2.min(nt - t))));
    pipelined!(
        units,
        &mut sums,
        |(b, t, n), [c0, c1]| {
            let w = q[b * q_block..(b + 1) * q_block].as_ptr();
            let at = (b * tiles + t0 + t) * TILE_ROWS * QK_K;
            let a = tiled.data[at..at + n * TILE_ROWS * QK_K].as_ptr();
            // SAFETY: the activation tiles read 1 KiB at `1024·k` (and `4096 + 1024·k` for the
            // second tile) inside the unit's `n · 4096` bytes of `tiled` (sliced above); the
            // weight tiles read 1 KiB at `1024·k` (low) and `4096 + 1024·k` (high) inside
            // block `b`'s `2 · QK_K · ROWS` bytes (sliced above); the sums go to `c0`, `c1`,
            // each two tiles of 16 rows of 64 bytes.
            unsafe {
                if n == 2 {
                    asm!(
                        "tilezero tmm0",
                        "tilezero tmm1",
                        "tilezero tmm6",
                        "tilezero tmm7",
                        "tileloadd tmm3, [{w} + {sf}*1]",
                        "tileloadd tmm4, [{w} + {sf}*1 + 4096]",
                        "tileloadd tmm2, [{a} + {sf}*1]",
                        "tileloadd tmm5, [{a} + {sf}*1 + 4096]",
                        "tdpbsud tmm0, tmm2, tmm3",
                        "tdpbsud tmm1, tmm2, tmm4",
                        "tdpbsud tmm6, tmm5, tmm3",
                        "tdpbsud tmm7, tmm5, tmm4",
                        "tileloadd tmm3, [{w} + {sf}*1 + 1024]",
                        "tileloadd tmm4, [{w} + {sf}*1 + 5120]",
                        "tileloadd tmm2, [{a} + {sf}*1 + 1024]",
                        "tileloadd tmm5, [{a} + {sf}*1 + 5120]",
                        "tdpbsud tmm0, tmm2, tmm3",
                        "tdpbsud tmm1, tmm2, tmm4",
                        "tdpbsud tmm6, tmm5, tmm3",
                        "tdpbsud tmm7, tmm5, tmm4",
                        "tileloadd tmm3, [{w} + {sf}*1 + 2048]",
                        "tileloadd tmm4, [{w} + {sf}*1 + 6144]",
                        "tileloadd tmm2, [{a} + {sf}*1 + 2048]",
                        "tileloadd tmm5, [{a} + {sf}*1 + 6144]",
                        "tdpbsud tmm0, tmm2, tmm3",
                        "tdpbsud tmm1, tmm2, tmm4",
                        "tdpbsud tmm6, tmm5, tmm3",
                        "tdpbsud tmm7, tmm5, tmm4",
                        "tileloadd tmm3, [{w} + {sf}*1 + 3072]",
                        "tileloadd tmm4, [{w} + {sf}*1 + 7168]",
                        "tileloadd tmm2, [{a} + {sf}*1 + 3072]",
                        "tileloadd tmm5, [{a} + {sf}*1 + 7168]",
                        "tdpbsud tmm0, tmm2, tmm3",
                        "tdpbsud tmm1, tmm2, tmm4",
                        "tdpbsud tmm6, tmm5, tmm3",
                        "tdpbsud tmm7, tmm5, tmm4",
                        "tilestored [{c00} + {sf}*1], tmm0",
                        "tilestored [{c01} + {sf}*1], tmm1",
                        "tilestored [{c10} + {sf}*1], tmm6",
                        "tilestored [{c11} + {sf}*1], tmm7",
                        a = in(reg) a,
                        w = in(reg) w,
                        sf = in(reg) 64usize,
                        c00 = in(reg) c0[0].as_mut_ptr(),
                        c01 = in(reg) c0[1].as_mut_ptr(),
                        c10 = in(reg) c1[0].as_mut_ptr(),
                        c11 = in(reg) c1[1].as_mut_ptr(),
                        options(nostack),
                    );
                } else {
                    asm!(
                        "tilezero tmm0",
                        "tilezero tmm1",
                        "tileloadd tmm3, [{w} + {sf}*1]",
                        "tileloadd tmm4, [{w} + {sf}*1 + 4096]",
                        "tileloadd tmm2, [{a} + {sf}*1]",
                        "tdpbsud tmm0, tmm2, tmm3",
                        "tdpbsud tmm1, tmm2, tmm4",
                        "tileloadd tmm3, [{w} + {sf}*1 + 1024]",
                        "tileloadd tmm4, [{w} + {sf}*1 + 5120]",
                        "tileloadd tmm2, [{a} + {sf}*1 + 1024]",
                        "tdpbsud tmm0, tmm2, tmm3",
                        "tdpbsud tmm1, tmm2, tmm4",
                        "tileloadd tmm3, [{w} + {sf}*1 + 2048]",
                        "tileloadd tmm4, [{w} + {sf}*1 + 6144]",
                        "tileloadd tmm2, [{a} + {sf}*1 + 2048]",
                        "tdpbsud tmm0, tmm2, tmm3",
                        "tdpbsud tmm1, tmm2, tmm4",
                        "tileloadd tmm3, [{w} + {sf}*1 + 3072]",
                        "tileloadd tmm4, [{w} + {sf}*1 + 7168]",
                        "tileloadd tmm2, [{a} + {sf}*1 + 3072]",
                        "tdpbsud tmm0, tmm2, tmm3",
                        "tdpbsud tmm1, tmm2, tmm4",
                        "tilestored [{c00} + {sf}*1], tmm0",
                        "tilestored [{c01} + {sf}*1], tmm1",
                        a = in(reg) a,
                        w = in(reg) w,
                        sf = in(reg) 64usize,
                        c00 = in(reg) c0[0].as_mut_ptr(),
                        c01 = in(reg) c0[1].as_mut_ptr(),
                        options(nostack),
                    );
                }
            }
        },
        |(b, t, n), before| {
            let first = b * tiled.rows + TILE_ROWS * t0;
            let meta = &tiled.meta[first..first + out.len()];
            finish_unit(&before[..n], pairs, d, dmin, meta, b, t, acc);
        },
    );
    for (o, a) in out.iter_mut().zip(acc.iter()) {
        let v = _mm512_sub_ps(a[0], a[1]);
        // SAFETY: `o` is ROWS = 16 writable floats; unaligned store.
        unsafe { _mm512_storeu_ps(o.as_mut_ptr(), v) };
    }
}

/// The Q6_K kernel: per super-block and activation tile, three tile products per 64
/// elements (the quants minus 32 times each base-7 digit of their scales, signed × signed)
/// into three tiles of sums `C0, C1, C2`, whose super-block integer is
/// `S = C0 + 7 · (C1 + 7 · C2)`, exactly `packed_k`'s `S − 32 · Σ scale · sum of 16`. Then
/// one FMA per super-block, `packed_k`'s, [`pipelined`].
///
/// # Safety
/// The tiles must be configured as [`CONFIG`] and `g` must be a Q6_K group in the AMX form.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")]
unsafe fn tile_dot_six(
    g: &PackedKGroup,
    tiled: &TiledActivations,
    t0: usize,
    out: &mut [[f32; ROWS]],
    acc: &mut Vec<[__m512; 2]>,
) {
    start(g, tiled, t0, out.len(), acc);
    let (q, _, _, d, _) = g.parts();
    let (nb, tiles) = (g.blocks(), tiled.tiles);
    // The sums of a unit: `[digit][r][j]`.
    let mut sums = Slots([[[[0; ROWS]; TILE_ROWS]; 3]; 2]);
    let q_block = 3 * QK_K * ROWS;
    let nt = out.len().div_ceil(TILE_ROWS);
    let units = (0..nb).flat_map(|b| (0..nt).map(move |t| (b, t)));
    pipelined!(
        units,
        &mut sums,
        |(b, t), now| {
            let w = q[b * q_block..(b + 1) * q_block].as_ptr();
            let at = (b * tiles + t0 + t) * TILE_ROWS * QK_K;
            let a = tiled.data[at..at + TILE_ROWS * QK_K].as_ptr();
            // SAFETY: the activation tiles read 1 KiB at `1024·k` inside the unit's 4096 bytes
            // of `tiled` (sliced above); the weight tiles read 1 KiB at `4096·m + 1024·k`
            // inside block `b`'s `3 · QK_K · ROWS` bytes (sliced above); the sums go to
            // `now`, three tiles of 16 rows of 64 bytes.
            unsafe {
                asm!(
                    "tilezero tmm0",
                    "tilezero tmm1",
                    "tilezero tmm2",
                    "tileloadd tmm3, [{a} + {sf}*1]",
                    "tileloadd tmm4, [{w} + {sf}*1]",
                    "tileloadd tmm5, [{w} + {sf}*1 + 4096]",
                    "tileloadd tmm6, [{w} + {sf}*1 + 8192]",
                    "tdpbssd tmm0, tmm3, tmm4",
                    "tdpbssd tmm1, tmm3, tmm5",
                    "tdpbssd tmm2, tmm3, tmm6",
                    "tileloadd tmm7, [{a} + {sf}*1 + 1024]",
                    "tileloadd tmm4, [{w} + {sf}*1 + 1024]",
                    "tileloadd tmm5, [{w} + {sf}*1 + 5120]",
                    "tileloadd tmm6, [{w} + {sf}*1 + 9216]",
                    "tdpbssd tmm0, tmm7, tmm4",
                    "tdpbssd tmm1, tmm7, tmm5",
                    "tdpbssd tmm2, tmm7, tmm6",
                    "tileloadd tmm3, [{a} + {sf}*1 + 2048]",
                    "tileloadd tmm4, [{w} + {sf}*1 + 2048]",
                    "tileloadd tmm5, [{w} + {sf}*1 + 6144]",
                    "tileloadd tmm6, [{w} + {sf}*1 + 10240]",
                    "tdpbssd tmm0, tmm3, tmm4",
                    "tdpbssd tmm1, tmm3, tmm5",
                    "tdpbssd tmm2, tmm3, tmm6",
                    "tileloadd tmm7, [{a} + {sf}*1 + 3072]",
                    "tileloadd tmm4, [{w} + {sf}*1 + 3072]",
                    "tileloadd tmm5, [{w} + {sf}*1 + 7168]",
                    "tileloadd tmm6, [{w} + {sf}*1 + 11264]",
                    "tdpbssd tmm0, tmm7, tmm4",
                    "tdpbssd tmm1, tmm7, tmm5",
                    "tdpbssd tmm2, tmm7, tmm6",
                    "tilestored [{c0} + {sf}*1], tmm0",
                    "tilestored [{c1} + {sf}*1], tmm1",
                    "tilestored [{c2} + {sf}*1], tmm2",
                    a = in(reg) a,
                    w = in(reg) w,
                    sf = in(reg) 64usize,
                    c0 = in(reg) now[0].as_mut_ptr(),
                    c1 = in(reg) now[1].as_mut_ptr(),
                    c2 = in(reg) now[2].as_mut_ptr(),
                    options(nostack),
                );
            }
        },
        |(b, t), before| {
            let first = b * tiled.rows + TILE_ROWS * t0;
            let meta = &tiled.meta[first..first + out.len()];
            // SAFETY: `d` holds ROWS floats per block (`PackedKGroup::parts`), sliced here.
            let dx = unsafe { _mm512_loadu_ps(d[b * ROWS..(b + 1) * ROWS].as_ptr()) };
            let [r0, r1, r2] = before;
            for (r, ((s0, s1), s2)) in r0.iter().zip(r1).zip(r2).enumerate() {
                let row_index = TILE_ROWS * t + r;
                if row_index >= acc.len() {
                    break;
                }
                // SAFETY: `s0`, `s1`, `s2` are 16 i32 each; unaligned loads.
                let (c0, c1, c2) = unsafe {
                    (
                        _mm512_loadu_si512(s0.as_ptr().cast()),
                        _mm512_loadu_si512(s1.as_ptr().cast()),
                        _mm512_loadu_si512(s2.as_ptr().cast()),
                    )
                };
                // S = c0 + 7 · (c1 + 7 · c2), with 7x = 8x − x (no closure: it would not
                // inherit the target features).
                let t2 = _mm512_sub_epi32(_mm512_slli_epi32::<3>(c2), c2);
                let t1 = _mm512_add_epi32(c1, t2);
                let t1 = _mm512_sub_epi32(_mm512_slli_epi32::<3>(t1), t1);
                let s = _mm512_add_epi32(c0, t1);
                let dy = _mm512_set1_ps(meta[row_index].d);
                let a = &mut acc[row_index][0];
                *a = _mm512_fmadd_ps(_mm512_mul_ps(dy, dx), _mm512_cvtepi32_ps(s), *a);
            }
        },
    );
    for (o, a) in out.iter_mut().zip(acc.iter()) {
        // SAFETY: `o` is ROWS = 16 writable floats; unaligned store.
        unsafe { _mm512_storeu_ps(o.as_mut_ptr(), a[0]) };
    }
}

/// The integer and float arithmetic of one unit: block `b` of activation tiles `t..`, their
/// sums in `c` (one entry per tile), into `acc` (`acc[row][0]` the scaled sums, `[1]` the
/// minimums' term), in `packed_k`'s order. Tiles and rows count from the call's first tile;
/// `meta` is block `b` of every real row (the padding of the last tile is skipped).
#[allow(clippy::too_many_arguments)]
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")]
fn finish_unit(
    c: &[[[[i32; ROWS]; TILE_ROWS]; 2]],
    pairs: &[i32],
    d: &[f32],
    dmin: &[f32],
    meta: &[RowMeta],
    b: usize,
    t: usize,
    acc: &mut [[__m512; 2]],
) {
    let at = b * ROWS;
    // SAFETY: `pairs` holds 4 vectors of ROWS i32 per block, `d` and `dmin` ROWS floats
    // (`PackedKGroup::parts`), sliced here; unaligned loads. (No closures here: they would
    // not inherit the target features.)
    let pb = &pairs[b * 4 * ROWS..(b + 1) * 4 * ROWS];
    let (dx, dminx, p) = unsafe {
        (
            _mm512_loadu_ps(d[at..at + ROWS].as_ptr()),
            _mm512_loadu_ps(dmin[at..at + ROWS].as_ptr()),
            [
                _mm512_loadu_si512(pb.as_ptr().cast()),
                _mm512_loadu_si512(pb[ROWS..].as_ptr().cast()),
                _mm512_loadu_si512(pb[2 * ROWS..].as_ptr().cast()),
                _mm512_loadu_si512(pb[3 * ROWS..].as_ptr().cast()),
            ],
        )
    };
    for (i, ci) in c.iter().enumerate() {
        for (r, (lo, hi)) in ci[0].iter().zip(&ci[1]).enumerate() {
            let row_index = 16 * (t + i) + r;
            if row_index >= acc.len() {
                break;
            }
            // SAFETY: `lo` and `hi` are 16 i32 each; unaligned loads.
            let (lo, hi) = unsafe {
                (
                    _mm512_loadu_si512(lo.as_ptr().cast()),
                    _mm512_loadu_si512(hi.as_ptr().cast()),
                )
            };
            let y = &meta[row_index];
            let s1 = _mm512_add_epi32(lo, _mm512_slli_epi32::<3>(hi));
            let mut s2 = _mm512_setzero_si512();
            for (&pk, &yk) in p.iter().zip(&y.ints) {
                s2 = _mm512_dpwssd_epi32(s2, pk, _mm512_set1_epi32(yk));
            }
            let dy = _mm512_set1_ps(y.d);
            let a = &mut acc[row_index];
            a[0] = _mm512_fmadd_ps(_mm512_mul_ps(dy, dx), _mm512_cvtepi32_ps(s1), a[0]);
            let m = _mm512_mul_ps(_mm512_mul_ps(dy, dminx), _mm512_cvtepi32_ps(s2));
            a[1] = _mm512_add_ps(a[1], m);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where the CPU and Linux offer AMX, the tile products are on (unless turned off): the
    /// matmul tests then hold them to the one-row kernels bit for bit
    /// (`tests/kernels_matmul.rs`), so this pins that they are the path those tests take.
    #[test]
    fn tiles_are_used_where_the_machine_has_them() {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let has = cpuinfo.contains(" amx_int8") && cpuinfo.contains(" amx_tile");
        let off = std::env::var(ENV_VAR).is_ok_and(|v| v.trim() == "0");
        assert_eq!(cpu_has_amx_int8(), has, "CPUID and /proc/cpuinfo disagree");
        if has && !off && cfg!(target_os = "linux") {
            assert!(
                available(),
                "the CPU has AMX-INT8 but the tile state was refused"
            );
        }
        if off {
            assert!(!available());
        }
    }

    /// Every Q6_K scale splits into three digits in `-3..=3` that give it back, so every
    /// quant minus 32 times a digit is a signed byte.
    #[test]
    fn q6_k_scale_digits() {
        for s in -128..=127 {
            let d = crate::packed_k::digits7(s);
            assert!(d.iter().all(|x| (-3..=3).contains(x)), "{s}: {d:?}");
            assert_eq!(d[0] + 7 * d[1] + 49 * d[2], s);
            assert!(
                d.iter()
                    .all(|x| (-32 * x).abs() <= 127 && (31 * x).abs() <= 127)
            );
        }
    }

    /// 19 rows of `cols` test values quantized to `ty`, and their tiles.
    fn tiled(ty: GgmlType, cols: usize) -> (usize, QuantizedActivations, TiledActivations) {
        let rows = 19;
        let x: Vec<f32> = (0..rows * cols)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
            .collect();
        let mut q = QuantizedActivations::new();
        q.quantize(ty, &x, rows, cols).unwrap();
        let t = TiledActivations::new(&q);
        (rows, q, t)
    }

    /// The activations' tile layout: row `r`'s quants `64k..64k + 64` of block `b` at
    /// `((b · tiles + r / 16) · 4 + k) · 1024 + 64 · (r % 16)`, with its scale and sums.
    #[test]
    fn tiled_activations_layout() {
        let (rows, q, t) = tiled(GgmlType::Q8_K, 512);
        assert_eq!((t.rows, t.tiles, t.blocks), (19, 2, 2));
        for r in 0..rows {
            let blocks = as_blocks::<BlockQ8K>(q.row(r)).unwrap();
            for (b, y) in blocks.iter().enumerate() {
                for k in 0..4 {
                    let at = ((b * t.tiles + r / 16) * 4 + k) * 1024 + 64 * (r % 16);
                    let want: &[u8] = bytemuck::cast_slice(&y.qs[64 * k..64 * k + 64]);
                    assert_eq!(&t.data[at..at + 64], want, "row {r} block {b} step {k}");
                }
                let m = t.meta[b * rows + r];
                assert_eq!(m.d.to_bits(), y.d.get().to_bits());
                let sum: i32 = m
                    .ints
                    .iter()
                    .map(|&p| i32::from(p as i16) + i32::from((p >> 16) as i16))
                    .sum();
                assert_eq!(sum, y.bsums.iter().map(|s| i32::from(s.get())).sum::<i32>());
            }
        }
    }

    /// Row `r`'s quants of block `b` at `(b · tiles + r / 16) · 512 + 32 · (r % 16)`, with
    /// its scale and the sum of its quants.
    #[test]
    fn tiled_q8_0_activations_layout() {
        let (rows, q, t) = tiled(GgmlType::Q8_0, 96);
        assert_eq!((t.rows, t.tiles, t.blocks), (19, 2, 3));
        for r in 0..rows {
            for (b, y) in as_blocks::<BlockQ8_0>(q.row(r)).unwrap().iter().enumerate() {
                let at = (b * t.tiles + r / 16) * 512 + 32 * (r % 16);
                let want: &[u8] = bytemuck::cast_slice(&y.qs);
                assert_eq!(&t.data[at..at + 32], want, "row {r} block {b}");
                let m = t.meta[b * rows + r];
                assert_eq!(m.d.to_bits(), y.d.to_f32().to_bits());
                assert_eq!(m.ints[0], y.qs.iter().map(|&v| i32::from(v)).sum::<i32>());
            }
        }
    }
}
