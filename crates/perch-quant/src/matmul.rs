//! Matrix products the engine calls: a weight matrix (rows = output features, each row
//! `cols` elements of one ggml type) times a batch of activation rows, parallel over output
//! rows with rayon.
//!
//! `out[r * w.rows() + o] = dot(W row o, x row r)`. Work is split into chunks of consecutive
//! weight rows; within a chunk, each activation row is run against every weight row of the
//! chunk, so a chunk's weights are read from memory once and then served from cache for all
//! activation rows (where batching wins on a memory-bound CPU), and each activation row stays
//! in L1 across the chunk.

use rayon::prelude::*;

use crate::activations::QuantizedActivations;
use crate::dot::{Dot4Fn, DotFn, dot_fn, dot4_fn, scalar_fn, vec_dot_type};
use crate::simd::{SimdLevel, simd_level};
use crate::types::GgmlType;

/// A matrix product that cannot be done.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MatmulError {
    /// The weight type has no dot-product kernel.
    #[error("no matrix product for weight type {0}")]
    Unsupported(GgmlType),
    /// The row length is not a whole number of the weight type's blocks (or of its
    /// activation type's blocks).
    #[error("{cols} columns are not a whole number of {ty} blocks (and of its activation type's)")]
    PartialBlock {
        /// Weight type.
        ty: GgmlType,
        /// Columns.
        cols: usize,
    },
    /// The data is not `rows` rows of `cols` elements.
    #[error("weight data of {got} bytes, expected {expected} for {rows} x {cols} {ty}")]
    DataLength {
        /// Weight type.
        ty: GgmlType,
        /// Rows.
        rows: usize,
        /// Columns.
        cols: usize,
        /// Bytes expected.
        expected: usize,
        /// Bytes given.
        got: usize,
    },
    /// The activations are of the wrong type for the weights.
    #[error("weights of type {weight} need {expected} activations, got {got}")]
    ActivationType {
        /// Weight type.
        weight: GgmlType,
        /// `vec_dot_type(weight)`.
        expected: GgmlType,
        /// The activations' type.
        got: GgmlType,
    },
    /// The activations' row length differs from the weights'.
    #[error("activations have {got} columns, weights {expected}")]
    Columns {
        /// Weight columns.
        expected: usize,
        /// Activation columns.
        got: usize,
    },
    /// [`matmul_multi`] was given a different number of outputs than of weight matrices.
    #[error("{weights} weight matrices but {outputs} outputs")]
    OutputCount {
        /// Weight matrices.
        weights: usize,
        /// Outputs.
        outputs: usize,
    },
    /// The output slice has the wrong length.
    #[error(
        "output holds {got} values, expected {expected} ({rows} activation rows x {outputs} outputs)"
    )]
    OutputLength {
        /// Activation rows.
        rows: usize,
        /// Weight rows.
        outputs: usize,
        /// `rows * outputs`.
        expected: usize,
        /// Given.
        got: usize,
    },
}

/// A weight matrix: `rows` output features of `cols` elements of type `ty`, row after row
/// (a GGUF tensor of shape `[cols, rows]`). Validated on construction.
#[derive(Clone, Copy, Debug)]
pub struct WeightMatrix<'a> {
    ty: GgmlType,
    rows: usize,
    cols: usize,
    row_bytes: usize,
    data: &'a [u8],
    packed: Option<&'a PackedWeights>,
}

impl<'a> WeightMatrix<'a> {
    /// Checks that `data` is exactly `rows x cols` elements of `ty`, that `cols` is a whole
    /// number of blocks of `ty` and of its activation type, and that `ty` has a kernel.
    pub fn new(
        ty: GgmlType,
        rows: usize,
        cols: usize,
        data: &'a [u8],
    ) -> Result<Self, MatmulError> {
        if scalar_fn(ty).is_none() {
            return Err(MatmulError::Unsupported(ty));
        }
        let act = vec_dot_type(ty);
        if cols % ty.block_size() != 0 || cols % act.block_size() != 0 {
            return Err(MatmulError::PartialBlock { ty, cols });
        }
        let row_bytes = cols / ty.block_size() * ty.type_size();
        let expected = row_bytes.checked_mul(rows);
        if expected != Some(data.len()) {
            return Err(MatmulError::DataLength {
                ty,
                rows,
                cols,
                expected: expected.unwrap_or(usize::MAX),
                got: data.len(),
            });
        }
        Ok(WeightMatrix {
            ty,
            rows,
            cols,
            row_bytes,
            data,
            packed: None,
        })
    }

    /// The same matrix with its rows already repacked ([`PackedWeights::build`] of this very
    /// matrix): batched products then read the repacked rows instead of repacking them on
    /// every call. The results are the same bits either way.
    ///
    /// # Panics
    /// When `packed` was built from a matrix of another type or shape.
    pub fn with_packed(mut self, packed: &'a PackedWeights) -> Self {
        assert_eq!(
            (packed.ty, packed.rows, packed.cols),
            (self.ty, self.rows, self.cols),
            "repacked weights of another matrix"
        );
        self.packed = Some(packed);
        self
    }

    /// The weight type.
    pub fn ty(&self) -> GgmlType {
        self.ty
    }

    /// Output features (rows).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Elements per row.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Bytes per row.
    pub fn row_bytes(&self) -> usize {
        self.row_bytes
    }

    /// The bytes of row `o`.
    ///
    /// # Panics
    /// When `o >= self.rows()`.
    pub fn row(&self, o: usize) -> &'a [u8] {
        &self.data[o * self.row_bytes..(o + 1) * self.row_bytes]
    }

    /// All the bytes.
    pub fn data(&self) -> &'a [u8] {
        self.data
    }
}

/// A raw output pointer shared by the tasks of one product; each task writes a disjoint set
/// of indices.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: the pointer is only used to write indices that no other task writes (disjoint
// weight-row ranges of one output), while the `&mut [f32]` it came from is borrowed by
// `matmul_multi_at` (each output slice is a distinct `&mut`, so outputs never overlap).
unsafe impl Send for OutPtr {}
// SAFETY: as above; tasks never read through it nor write the same index.
unsafe impl Sync for OutPtr {}

/// A weight matrix repacked once for the batched products (sixteen rows per 512-bit vector,
/// see `packed.rs` and `packed_k.rs`), to be kept beside the model and handed to
/// [`WeightMatrix::with_packed`]. Without it every batched product repacks the rows it reads,
/// which costs about a quarter of a step that decodes sixteen sequences together. It takes
/// about one byte per weight (the 4-bit types unpacked to bytes), so the caller decides which
/// matrices are worth the memory ([`PackedWeights::size_for`]).
#[derive(Debug)]
pub struct PackedWeights {
    ty: GgmlType,
    rows: usize,
    cols: usize,
    groups: batch::Groups,
}

impl PackedWeights {
    /// The fewest activation rows for which a product with weights of type `ty` may run
    /// repacked at the process's SIMD level, and from which a repacked form is worth building,
    /// or `None` when it never does (no AVX-512 VNNI, or a type without a repacked product).
    /// (With AMX, Q8_0 products of 2-11 short rows run repacked only when the weights were
    /// repacked already: see `amx_q8::runs_on_tiles`.)
    pub fn min_rows(ty: GgmlType) -> Option<usize> {
        batch::min_rows(simd_level(), ty)
    }

    /// The fewest activation rows for which a product uses weights of type `ty` that were
    /// repacked already ([`WeightMatrix::with_packed`]): from two rows for the 32-element
    /// types, whose repacked kernels cost the same per activation row at any count (the
    /// threshold of [`PackedWeights::min_rows`] weighs repacking against the four-row kernels;
    /// done beforehand, it costs nothing). 4 SmolLM2 Q4_1 sequences decoding together went
    /// from 184 to about 300 tokens/s with it.
    pub fn min_rows_prepacked(ty: GgmlType) -> Option<usize> {
        batch::min_rows_prepacked(simd_level(), ty)
    }

    /// The bytes [`PackedWeights::build`] would take for `w`, or `None` when `w` has no
    /// repacked form at the process's SIMD level.
    pub fn size_for(w: &WeightMatrix<'_>) -> Option<usize> {
        Self::min_rows(w.ty)?;
        Some(batch::packed_size(w))
    }

    /// Repacks every row of `w` (in parallel on the current rayon pool), or `None` when `w`
    /// has no repacked form at the process's SIMD level.
    pub fn build(w: &WeightMatrix<'_>) -> Option<PackedWeights> {
        Self::min_rows(w.ty)?;
        Some(PackedWeights {
            ty: w.ty,
            rows: w.rows,
            cols: w.cols,
            groups: batch::build(w),
        })
    }

    /// The bytes held.
    pub fn bytes(&self) -> usize {
        batch::groups_size(&self.groups)
    }
}

/// `out = x · Wᵀ` at the process's SIMD level: `out[r * w.rows() + o] = dot(W row o, x row r)`,
/// parallel over weight rows on the current rayon pool (run it inside the engine's pool with
/// `install`).
pub fn matmul(
    w: &WeightMatrix<'_>,
    x: &QuantizedActivations,
    out: &mut [f32],
) -> Result<(), MatmulError> {
    matmul_at(simd_level(), w, x, out)
}

/// [`matmul`] at a given SIMD level (tests and comparisons).
pub fn matmul_at(
    level: SimdLevel,
    w: &WeightMatrix<'_>,
    x: &QuantizedActivations,
    out: &mut [f32],
) -> Result<(), MatmulError> {
    matmul_multi_at(level, &[*w], x, &mut [out])
}

/// Several weight matrices against the same activations in one parallel pass:
/// `outs[i]` receives `ws[i] × x` exactly as [`matmul`] would write it. One pass instead of
/// one per matrix saves a fork and join of the compute threads per matrix, which is what
/// decoding one token at a time pays for most (the query, key and value projections, or the
/// gate and up projections, read the same activations).
pub fn matmul_multi(
    ws: &[WeightMatrix<'_>],
    x: &QuantizedActivations,
    outs: &mut [&mut [f32]],
) -> Result<(), MatmulError> {
    matmul_multi_at(simd_level(), ws, x, outs)
}

/// [`matmul_multi`] at a given SIMD level.
pub fn matmul_multi_at(
    level: SimdLevel,
    ws: &[WeightMatrix<'_>],
    x: &QuantizedActivations,
    outs: &mut [&mut [f32]],
) -> Result<(), MatmulError> {
    if ws.len() != outs.len() {
        return Err(MatmulError::OutputCount {
            weights: ws.len(),
            outputs: outs.len(),
        });
    }
    let threads = rayon::current_num_threads().max(1);
    // Every matrix is checked before anything is computed.
    let mut jobs = Vec::with_capacity(ws.len());
    // Activations prepared for the repacked path, once per weight layout (Q, K and V share).
    let mut prepared = batch::Prepared::default();
    for (w, out) in ws.iter().zip(outs.iter_mut()) {
        if let Some(kernels) = check(level, w, x, out)? {
            let mut chunk = chunk_rows(w, threads);
            let packed = batch::prepare(level, w.ty, w.packed.is_some(), x, &mut prepared);
            if let Some(plan) = packed {
                chunk = batch::chunk_rows(plan, w, threads, chunk);
            }
            jobs.push((w, kernels, OutPtr(out.as_mut_ptr()), chunk, packed));
        }
    }
    // The chunks of all matrices, as (job, first row, end row).
    let chunks: Vec<(usize, usize, usize)> = jobs
        .iter()
        .enumerate()
        .flat_map(|(j, (w, _, _, chunk, _))| {
            (0..w.rows.div_ceil(*chunk)).map(move |c| (j, c * chunk, ((c + 1) * chunk).min(w.rows)))
        })
        .collect();
    let run = |&(j, o0, o1): &(usize, usize, usize)| {
        let (w, (f, f4), ptr, _, packed) = &jobs[j];
        match packed {
            Some(plan) => batch::chunk_product(w, *plan, &prepared, x, o0, o1, *ptr),
            None => chunk_product(*f, *f4, w, x, o0, o1, *ptr),
        }
    };
    if chunks.len() == 1 {
        run(&chunks[0]);
    } else {
        chunks.par_iter().for_each(run);
    }
    Ok(())
}

/// The repacked batch products (`crate::packed`, `crate::packed_k`) where the CPU has them.
#[cfg(target_arch = "x86_64")]
mod batch {
    use std::cell::RefCell;

    use super::{OutPtr, WeightMatrix};
    use crate::activations::QuantizedActivations;
    use crate::amx::{self, TILE_ROWS};
    use crate::amx_q8;
    use crate::blocks::{BlockQ8K, as_blocks};
    pub(super) use crate::packed::ROWS;
    use crate::packed::{
        MIN_ACT_ROWS, MIN_ACT_ROWS_PREPACKED, PackedGroup, PreparedActivations, exact, group_dot,
        offset, packable,
    };
    use crate::packed_k::{self, PackedKGroup};
    use crate::simd::SimdLevel;
    use crate::types::GgmlType;

    thread_local! {
        static GROUP: RefCell<PackedGroup> = RefCell::new(PackedGroup::default());
        static GROUP_K: RefCell<PackedKGroup> = RefCell::new(PackedKGroup::default());
        static GROUPS_K: RefCell<Vec<PackedKGroup>> = const { RefCell::new(Vec::new()) };
        static GROUPS: RefCell<Vec<PackedGroup>> = const { RefCell::new(Vec::new()) };
    }

    /// How a product runs repacked.
    #[derive(Clone, Copy)]
    pub(super) enum Plan {
        /// A 32-element type, with the index of its prepared activations.
        Legacy(usize),
        /// A K-quant (the activations are read as they are).
        K,
        /// A K-quant on AMX tiles (the activations rearranged into tiles once per product).
        KTiles,
        /// Q8_0 on AMX tiles (likewise).
        Tiles8,
    }

    /// The activations as the repacked products want them, prepared once per product call
    /// (and shared by its matrices).
    #[derive(Default)]
    pub(super) struct Prepared {
        legacy: Vec<PreparedActivations>,
        /// For the AMX products (of Q8_K or Q8_0 rows: a product has one activation type).
        tiles: Option<amx::TiledActivations>,
    }

    /// Every group of a repacked matrix.
    pub(super) enum Groups {
        Legacy(Vec<PackedGroup>),
        K(Vec<PackedKGroup>),
    }

    impl std::fmt::Debug for Groups {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            match self {
                Groups::Legacy(g) => write!(f, "{} packed groups", g.len()),
                Groups::K(g) => write!(f, "{} packed K-quant groups", g.len()),
            }
        }
    }

    /// See [`super::PackedWeights::min_rows`].
    pub(super) fn min_rows(level: SimdLevel, ty: GgmlType) -> Option<usize> {
        if level != SimdLevel::Avx512 {
            None
        } else if packed_k::packable(ty) {
            Some(packed_k::MIN_ACT_ROWS)
        } else if ty == GgmlType::Q8_0 && amx::available() {
            Some(amx_q8::MIN_ACT_ROWS)
        } else if packable(ty) {
            Some(MIN_ACT_ROWS)
        } else {
            None
        }
    }

    /// [`super::PackedWeights::min_rows_prepacked`] at `level`.
    pub(super) fn min_rows_prepacked(level: SimdLevel, ty: GgmlType) -> Option<usize> {
        let min = min_rows(level, ty)?;
        Some(if packable(ty) {
            MIN_ACT_ROWS_PREPACKED
        } else {
            min
        })
    }

    /// Bytes of the repacked form of `w` (a packable type).
    pub(super) fn packed_size(w: &WeightMatrix<'_>) -> usize {
        let groups = w.rows().div_ceil(ROWS);
        let per_group = if packed_k::packable(w.ty()) {
            packed_k::group_bytes(w.ty(), w.cols())
        } else {
            PackedGroup::bytes_for(w.cols())
        };
        groups * per_group
    }

    /// Repacks every group of `w` (a packable type), in parallel.
    pub(super) fn build(w: &WeightMatrix<'_>) -> Groups {
        if packed_k::packable(w.ty()) {
            Groups::K(build_groups(w, PackedKGroup::fill))
        } else {
            Groups::Legacy(build_groups(w, PackedGroup::fill))
        }
    }

    /// Every group of ROWS rows of `w`, each filled by `fill(group, w, first row, rows)`.
    fn build_groups<G: Default + Send>(
        w: &WeightMatrix<'_>,
        fill: impl Fn(&mut G, &WeightMatrix<'_>, usize, usize) + Sync,
    ) -> Vec<G> {
        use rayon::prelude::*;
        (0..w.rows().div_ceil(ROWS))
            .into_par_iter()
            .map(|gi| {
                let mut g = G::default();
                fill(&mut g, w, gi * ROWS, ROWS.min(w.rows() - gi * ROWS));
                g
            })
            .collect()
    }

    /// Bytes held by `groups`.
    pub(super) fn groups_size(groups: &Groups) -> usize {
        match groups {
            Groups::Legacy(g) => g.iter().map(PackedGroup::bytes).sum(),
            Groups::K(g) => g.iter().map(PackedKGroup::bytes).sum(),
        }
    }

    /// When `ty × x` runs repacked at `level`, how (preparing the activations of the
    /// 32-element types now unless an earlier matrix's serve).
    pub(super) fn prepare(
        level: SimdLevel,
        ty: GgmlType,
        prepacked: bool,
        x: &QuantizedActivations,
        prepared: &mut Prepared,
    ) -> Option<Plan> {
        let min = if prepacked {
            min_rows_prepacked(level, ty)?
        } else {
            min_rows(level, ty)?
        };
        if x.rows() < min {
            return None;
        }
        if packed_k::tiles_for(ty) {
            prepared
                .tiles
                .get_or_insert_with(|| amx::TiledActivations::new(x));
            return Some(Plan::KTiles);
        }
        if packed_k::packable(ty) {
            return Some(Plan::K);
        }
        if exact(ty) && amx::available() {
            if amx_q8::runs_on_tiles(x.rows(), x.cols()) {
                prepared
                    .tiles
                    .get_or_insert_with(|| amx::TiledActivations::new(x));
                return Some(Plan::Tiles8);
            }
            // Too few rows x columns for the tiles: the AVX-512 repacked kernels when the
            // weights are repacked already or the rows pay for repacking them here (the
            // repacked products' own twelve), else the four-row kernels.
            if !prepacked && x.rows() < MIN_ACT_ROWS {
                return None;
            }
        }
        let legacy = &mut prepared.legacy;
        Some(Plan::Legacy(
            match legacy.iter().position(|p| p.serves(ty)) {
                Some(i) => i,
                None => {
                    legacy.push(PreparedActivations::new(ty, x));
                    legacy.len() - 1
                }
            },
        ))
    }

    /// Weight rows per task for a repacked product: whole groups; on AMX tiles, groups whose
    /// weights (two bytes each there) stay in L2 while every activation row runs by, and
    /// about two tasks per thread (fewer, larger tasks reuse each activation block more).
    pub(super) fn chunk_rows(
        plan: Plan,
        w: &WeightMatrix<'_>,
        threads: usize,
        rows: usize,
    ) -> usize {
        match plan {
            Plan::KTiles | Plan::Tiles8 => {
                // Two bytes per weight in the K-quants' AMX form, about one for Q8_0.
                let per_weight = if matches!(plan, Plan::KTiles) { 2 } else { 1 };
                let by_cache = 1024 * 1024 / (per_weight * w.cols().max(1));
                let by_balance = w.rows().div_ceil(2 * threads);
                by_cache.min(by_balance).next_multiple_of(ROWS)
            }
            // Two tasks per thread: each runs its groups in order, fetching the next while
            // this one computes, so fewer, longer runs leave fewer groups unfetched.
            Plan::Legacy(_) => w.rows().div_ceil(2 * threads).next_multiple_of(ROWS),
            _ => rows.next_multiple_of(ROWS),
        }
    }

    /// Weight rows `o0..o1` against every activation row, sixteen weight rows at a time.
    pub(super) fn chunk_product(
        w: &WeightMatrix<'_>,
        plan: Plan,
        prepared: &Prepared,
        x: &QuantizedActivations,
        o0: usize,
        o1: usize,
        out: OutPtr,
    ) {
        let n_out = w.rows();
        let n_act = x.rows();
        let store = |r: usize, o: usize, v: &[f32]| {
            let idx = r * n_out + o;
            assert!(r < n_act && o + v.len() <= n_out);
            // SAFETY: indices `idx..idx + v.len()` are below (r + 1) * n_out <= rows * n_out =
            // out.len() (checked by `matmul_at`), and this task alone writes indices with
            // `o + j` in its range `o0..o1`; `v` is a separate buffer. One copy, not a store
            // per float: the rows of `out` are far apart, and each is written once.
            unsafe {
                let dst = out.0.add(idx);
                match <&[f32; ROWS]>::try_from(v) {
                    Ok(whole) => dst.cast::<[f32; ROWS]>().write_unaligned(*whole),
                    Err(_) => std::ptr::copy_nonoverlapping(v.as_ptr(), dst, v.len()),
                }
            };
        };
        // Fetches the output line of row `r` at weight row `o` for writing: a hint only.
        let prefetch = |r: usize, o: usize| {
            let idx = (r * n_out + o).min(n_act * n_out - 1);
            // SAFETY: a prefetch never faults; `idx` is inside `out` anyway.
            unsafe {
                core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_ET0 }>(
                    out.0.add(idx).cast::<i8>(),
                )
            };
        };
        // The repacked group of rows `o..o + n`: the matrix's own when it was repacked
        // beforehand (chunks start at multiples of ROWS), else `scratch` filled now.
        match (plan, w.packed.map(|p| &p.groups)) {
            (Plan::Legacy(p), packed) => GROUP.with_borrow_mut(|scratch| {
                for o in (o0..o1).step_by(ROWS) {
                    let n = ROWS.min(o1 - o);
                    let g = match packed {
                        Some(Groups::Legacy(gs)) => &gs[o / ROWS],
                        _ => {
                            scratch.fill(w, o, n);
                            &*scratch
                        }
                    };
                    let next = match packed {
                        Some(Groups::Legacy(gs)) if o + ROWS < o1 => gs.get(o / ROWS + 1),
                        _ => None,
                    };
                    for r in 0..n_act {
                        if let Some(next) = next {
                            next.prefetch(r, n_act);
                        }
                        let v = group_dot(w.ty(), g, &prepared.legacy[p], r);
                        store(r, o, &v[..n]);
                    }
                }
            }),
            (Plan::KTiles, packed) => GROUPS_K.with_borrow_mut(|scratch| {
                let own = match packed {
                    Some(Groups::K(gs)) => Some(&gs[..]),
                    _ => None,
                };
                let groups = chunk_groups(own, scratch, o0, o1, |g, o, n| g.fill(w, o, n));
                let tiled = prepared.tiles.as_ref().expect("tiled activations");
                let mut acc = Vec::new();
                tiled_chunk(
                    &groups,
                    &amx::CONFIG,
                    w.cols(),
                    n_act,
                    o0,
                    o1,
                    &store,
                    &prefetch,
                    |s, g, t0, v| s.group_dot(g, tiled, t0, v, &mut acc),
                );
            }),
            (Plan::Tiles8, packed) => GROUPS.with_borrow_mut(|scratch| {
                let own = match packed {
                    Some(Groups::Legacy(gs)) => Some(&gs[..]),
                    _ => None,
                };
                let groups = chunk_groups(own, scratch, o0, o1, |g, o, n| g.fill(w, o, n));
                let tiled = prepared.tiles.as_ref().expect("tiled activations");
                let offset = offset(w.ty());
                let mut acc = Vec::new();
                tiled_chunk(
                    &groups,
                    &amx_q8::CONFIG,
                    w.cols(),
                    n_act,
                    o0,
                    o1,
                    &store,
                    &prefetch,
                    |s, g, t0, v| amx_q8::group_dot(s, g, offset, tiled, t0, v, &mut acc),
                );
            }),
            (Plan::K, packed) => GROUP_K.with_borrow_mut(|scratch| {
                let rows: Vec<&[BlockQ8K]> = (0..n_act)
                    .map(|r| as_blocks::<BlockQ8K>(x.row(r)).expect("Q8_K rows"))
                    .collect();
                let mut v = [[0f32; ROWS]; 4];
                for o in (o0..o1).step_by(ROWS) {
                    let n = ROWS.min(o1 - o);
                    let g = group_at(packed, scratch, w, o, n);
                    for (t, acts) in rows.chunks(4).enumerate() {
                        packed_k::group_dot(g, acts, &mut v);
                        for (i, vi) in v[..acts.len()].iter().enumerate() {
                            store(4 * t + i, o, &vi[..n]);
                        }
                    }
                }
            }),
        }
    }

    /// The groups of weight rows `o0..o1` (sixteen per group): the matrix's own (`own`, when
    /// it was repacked beforehand), or `scratch` filled now by `fill(group, first row, rows)`
    /// (once for all the activation blocks of the chunk).
    fn chunk_groups<'g, G: Default>(
        own: Option<&'g [G]>,
        scratch: &'g mut Vec<G>,
        o0: usize,
        o1: usize,
        fill: impl Fn(&mut G, usize, usize),
    ) -> Vec<&'g G> {
        match own {
            Some(gs) => (o0..o1).step_by(ROWS).map(|o| &gs[o / ROWS]).collect(),
            None => {
                scratch.resize_with((o1 - o0).div_ceil(ROWS), G::default);
                for (g, o) in scratch.iter_mut().zip((o0..o1).step_by(ROWS)) {
                    fill(g, o, ROWS.min(o1 - o));
                }
                scratch.iter().collect()
            }
        }
    }

    /// The AMX products of a chunk, in one tile session with `config`: the activation rows in
    /// blocks of about 512 KiB of quants, each block running by every group of the chunk
    /// (weight rows `o0..o1`, sixteen per group) while it stays in L2.
    /// `dot(session, group, first tile, out)` computes a group against the block's rows;
    /// `store(row, first weight row, values)` writes results.
    #[allow(clippy::too_many_arguments)]
    fn tiled_chunk<G>(
        groups: &[&G],
        config: &'static amx::TileConfig,
        cols: usize,
        n_act: usize,
        o0: usize,
        o1: usize,
        store: &impl Fn(usize, usize, &[f32]),
        prefetch: &impl Fn(usize, usize),
        mut dot: impl FnMut(&amx::TileSession, &G, usize, &mut [[f32; ROWS]]),
    ) {
        let session = amx::TileSession::start(config);
        let block_tiles = (512 * 1024 / (cols * TILE_ROWS)).max(1);
        let mut v = vec![[0f32; ROWS]; (block_tiles * TILE_ROWS).min(n_act)];
        for t0 in (0..n_act.div_ceil(TILE_ROWS)).step_by(block_tiles) {
            let r0 = t0 * TILE_ROWS;
            let rows = (block_tiles * TILE_ROWS).min(n_act - r0);
            for (g, o) in groups.iter().zip((o0..o1).step_by(ROWS)) {
                let n = ROWS.min(o1 - o);
                // The output lines this group will write, fetched for writing while the tiles
                // compute: written once each, far apart, they would otherwise stall the
                // stores below on their misses.
                for i in 0..rows {
                    prefetch(r0 + i, o);
                }
                dot(&session, g, t0, &mut v[..rows]);
                for (i, vi) in v[..rows].iter().enumerate() {
                    store(r0 + i, o, &vi[..n]);
                }
            }
        }
    }

    /// The repacked K-quant group of weight rows `o..o + n`: the matrix's own when it was
    /// repacked beforehand (chunks start at multiples of ROWS), else `scratch` filled now.
    fn group_at<'g>(
        packed: Option<&'g Groups>,
        scratch: &'g mut PackedKGroup,
        w: &WeightMatrix<'_>,
        o: usize,
        n: usize,
    ) -> &'g PackedKGroup {
        match packed {
            Some(Groups::K(gs)) => &gs[o / ROWS],
            _ => {
                scratch.fill(w, o, n);
                scratch
            }
        }
    }
}

/// Without x86-64 kernels there is no repacked path.
#[cfg(not(target_arch = "x86_64"))]
mod batch {
    use super::{OutPtr, WeightMatrix};
    use crate::activations::QuantizedActivations;
    use crate::simd::SimdLevel;
    use crate::types::GgmlType;

    pub(super) const ROWS: usize = 1;

    /// Never prepared here.
    #[derive(Default)]
    pub(super) struct Prepared;

    /// Never planned here.
    #[derive(Clone, Copy)]
    pub(super) enum Plan {}

    /// Never built here.
    #[derive(Debug)]
    pub(super) enum Groups {}

    pub(super) fn min_rows(_: SimdLevel, _: GgmlType) -> Option<usize> {
        None
    }

    pub(super) fn min_rows_prepacked(_: SimdLevel, _: GgmlType) -> Option<usize> {
        None
    }

    pub(super) fn chunk_rows(plan: Plan, _: &WeightMatrix<'_>, _: usize, _: usize) -> usize {
        match plan {}
    }

    pub(super) fn packed_size(_: &WeightMatrix<'_>) -> usize {
        0
    }

    pub(super) fn build(_: &WeightMatrix<'_>) -> Groups {
        unreachable!("no repacked form without x86-64 kernels")
    }

    pub(super) fn groups_size(g: &Groups) -> usize {
        match *g {}
    }

    pub(super) fn prepare(
        _: SimdLevel,
        _: GgmlType,
        _: &QuantizedActivations,
        _: &mut Prepared,
    ) -> Option<Plan> {
        None
    }

    pub(super) fn chunk_product(
        _: &WeightMatrix<'_>,
        plan: Plan,
        _: &Prepared,
        _: &QuantizedActivations,
        _: usize,
        _: usize,
        _: OutPtr,
    ) {
        match plan {}
    }
}

/// Validates one product; `None` when there is nothing to compute (the output is then
/// already complete).
fn check(
    level: SimdLevel,
    w: &WeightMatrix<'_>,
    x: &QuantizedActivations,
    out: &mut [f32],
) -> Result<Option<(DotFn, Option<Dot4Fn>)>, MatmulError> {
    let expected_act = vec_dot_type(w.ty);
    if x.ty() != expected_act && x.rows() > 0 {
        return Err(MatmulError::ActivationType {
            weight: w.ty,
            expected: expected_act,
            got: x.ty(),
        });
    }
    if x.rows() > 0 && x.cols() != w.cols {
        return Err(MatmulError::Columns {
            expected: w.cols,
            got: x.cols(),
        });
    }
    let n_out = w.rows;
    let n_act = x.rows();
    if out.len() != n_out * n_act {
        return Err(MatmulError::OutputLength {
            rows: n_act,
            outputs: n_out,
            expected: n_out * n_act,
            got: out.len(),
        });
    }
    if n_out == 0 || n_act == 0 {
        return Ok(None);
    }
    let f = dot_fn(w.ty, level).ok_or(MatmulError::Unsupported(w.ty))?;
    if w.cols == 0 {
        out.fill(0.0);
        return Ok(None);
    }
    Ok(Some((f, dot4_fn(w.ty, level))))
}

/// Weight rows per task: enough chunks to balance the threads, few enough that a task is
/// worth its fork, and small enough that a chunk of weights stays in L2 while every
/// activation row runs by.
fn chunk_rows(w: &WeightMatrix<'_>, threads: usize) -> usize {
    let max_chunk_bytes = 256 * 1024;
    let by_cache = (max_chunk_bytes / w.row_bytes.max(1)).max(1);
    let by_balance = w.rows.div_ceil(threads * 8).max(1);
    by_balance.min(by_cache).min(256)
}

#[inline]
fn chunk_product(
    f: DotFn,
    f4: Option<Dot4Fn>,
    w: &WeightMatrix<'_>,
    x: &QuantizedActivations,
    o0: usize,
    o1: usize,
    out: OutPtr,
) {
    let n_out = w.rows;
    let mut r0 = 0;
    if let Some(f4) = f4 {
        while r0 + 4 <= x.rows() {
            let xs = [x.row(r0), x.row(r0 + 1), x.row(r0 + 2), x.row(r0 + 3)];
            for o in o0..o1 {
                let v = f4(w.row(o), xs);
                for (k, vk) in v.into_iter().enumerate() {
                    let idx = (r0 + k) * n_out + o;
                    debug_assert!(idx < x.rows() * n_out);
                    // SAFETY: idx < rows * n_out = out.len() (checked by `matmul_at`), and
                    // this task alone writes indices with `o` in its range `o0..o1`.
                    unsafe { out.0.add(idx).write(vk) };
                }
            }
            r0 += 4;
        }
    }
    for r in r0..x.rows() {
        let xr = x.row(r);
        for o in o0..o1 {
            let v = f(w.row(o), xr);
            let idx = r * n_out + o;
            debug_assert!(idx < x.rows() * n_out);
            // SAFETY: idx < rows * n_out = out.len() (checked by `matmul_at`), and index
            // `r * n_out + o` with `o` in this task's range `o0..o1` is written by this task
            // only: the chunks' ranges are disjoint.
            unsafe { out.0.add(idx).write(v) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weight_matrix_validation() {
        let data = vec![0u8; 18 * 4];
        assert!(WeightMatrix::new(GgmlType::Q4_0, 2, 64, &data).is_ok());
        assert!(matches!(
            WeightMatrix::new(GgmlType::Q4_0, 2, 48, &data),
            Err(MatmulError::PartialBlock { .. })
        ));
        assert!(matches!(
            WeightMatrix::new(GgmlType::Q4_0, 3, 64, &data),
            Err(MatmulError::DataLength { .. })
        ));
        assert!(matches!(
            WeightMatrix::new(GgmlType::I32, 1, 18, &data),
            Err(MatmulError::Unsupported(GgmlType::I32))
        ));
        assert!(matches!(
            WeightMatrix::new(GgmlType::Q4_0, usize::MAX, 64, &data),
            Err(MatmulError::DataLength { .. })
        ));
    }

    #[test]
    fn matmul_validation() {
        let data = vec![0u8; 18 * 4];
        let w = WeightMatrix::new(GgmlType::Q4_0, 2, 64, &data).unwrap();
        let mut x = QuantizedActivations::new();
        x.quantize(GgmlType::Q8_1, &[0.0; 64], 1, 64).unwrap();
        let mut out = [0.0f32; 2];
        assert!(matches!(
            matmul(&w, &x, &mut out),
            Err(MatmulError::ActivationType { .. })
        ));
        x.quantize(GgmlType::Q8_0, &[0.0; 32], 1, 32).unwrap();
        assert!(matches!(
            matmul(&w, &x, &mut out),
            Err(MatmulError::Columns { .. })
        ));
        x.quantize(GgmlType::Q8_0, &[0.0; 128], 2, 64).unwrap();
        assert!(matches!(
            matmul(&w, &x, &mut out),
            Err(MatmulError::OutputLength { .. })
        ));
        let mut out = [1.0f32; 4];
        matmul(&w, &x, &mut out).unwrap();
        assert_eq!(out, [0.0; 4]);
    }
}
