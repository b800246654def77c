//! Weights repacked once for the batched products, kept beside the model.
//!
//! perch-quant's batched products (a prompt chunk, or many sequences decoding together) read
//! weights repacked sixteen rows per vector. Repacking on every product costs about a quarter
//! of a step that decodes sixteen sequences of SmolLM2; a matrix repacked once is reused by
//! every later step. The repacked form takes about one byte per weight (two for Q4_K and Q5_K,
//! three for Q6_K in the AMX form, `perch_quant::PackedWeights`), so the cache holds
//! matrices only up to a memory budget (`PERCH_REPACK_MEMORY`, bytes, default 4 GiB; `0`
//! turns it off); past it the products repack on the fly as before. The results are the same
//! bits either way.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use perch_quant::{PackedWeights, WeightMatrix};

/// The default memory budget of the cache.
const DEFAULT_BUDGET: usize = 4 << 30;

/// Repacked matrices of one model, built on first batched use.
#[derive(Debug)]
pub(crate) struct RepackCache {
    budget: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    used: usize,
    /// By the matrix's byte offset in the file; `None`: over budget, never repacked.
    matrices: HashMap<usize, Option<Arc<PackedWeights>>>,
}

impl RepackCache {
    /// A cache with the budget from `PERCH_REPACK_MEMORY` (bytes) or the default.
    pub(crate) fn from_env() -> RepackCache {
        let budget = match std::env::var("PERCH_REPACK_MEMORY") {
            Ok(v) => match v.trim().parse::<usize>() {
                Ok(b) => b,
                Err(_) => {
                    tracing::warn!(
                        value = %v,
                        "PERCH_REPACK_MEMORY is not a byte count; using the default"
                    );
                    DEFAULT_BUDGET
                }
            },
            Err(_) => DEFAULT_BUDGET,
        };
        RepackCache::with_budget(budget)
    }

    /// A cache that holds at most `budget` bytes.
    pub(crate) fn with_budget(budget: usize) -> RepackCache {
        RepackCache {
            budget,
            state: Mutex::new(State::default()),
        }
    }

    /// The repacked form of `w` (found at byte `offset` of the file) for a product with `rows`
    /// activation rows: built now on first use (in parallel on the current pool) when the
    /// product runs repacked and the budget allows, else `None`. A smaller product that can
    /// use a repacked form (`PackedWeights::min_rows_prepacked`) gets it when it was built
    /// already, and never builds it.
    pub(crate) fn get(
        &self,
        offset: usize,
        w: &WeightMatrix<'_>,
        rows: usize,
    ) -> Option<Arc<PackedWeights>> {
        if PackedWeights::min_rows_prepacked(w.ty()).is_none_or(|min| rows < min)
            || self.budget == 0
        {
            return None;
        }
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = st.matrices.get(&offset) {
            return p.clone();
        }
        if PackedWeights::min_rows(w.ty()).is_none_or(|min| rows < min) {
            return None;
        }
        let size = PackedWeights::size_for(w)?;
        let packed = if st.used + size <= self.budget {
            let p = PackedWeights::build(w).map(Arc::new);
            if p.is_some() {
                st.used += size;
            }
            p
        } else {
            tracing::debug!(offset, size, used = st.used, "repack budget reached");
            None
        };
        st.matrices.insert(offset, packed.clone());
        packed
    }

    /// Bytes held.
    #[cfg(test)]
    fn used(&self) -> usize {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).used
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use perch_quant::GgmlType;

    /// A Q8_0 matrix of `rows` x 64 (all-zero blocks are valid).
    fn matrix(data: &[u8], rows: usize) -> WeightMatrix<'_> {
        WeightMatrix::new(GgmlType::Q8_0, rows, 64, &data[..rows * 2 * 34]).unwrap()
    }

    #[test]
    fn builds_once_within_budget_and_never_past_it() {
        let data = vec![0u8; 40 * 2 * 34];
        let w = matrix(&data, 40);
        let Some(min) = PackedWeights::min_rows(GgmlType::Q8_0) else {
            // No AVX-512 VNNI: nothing is ever repacked, whatever the budget.
            assert!(
                RepackCache::with_budget(usize::MAX)
                    .get(0, &w, 64)
                    .is_none()
            );
            return;
        };
        let size = PackedWeights::size_for(&w).unwrap();

        let cache = RepackCache::with_budget(size);
        assert!(
            cache.get(0, &w, min - 1).is_none(),
            "too few rows to repack"
        );
        assert_eq!(cache.used(), 0);
        let a = cache.get(0, &w, min).expect("within budget");
        let b = cache.get(0, &w, 64).expect("cached");
        assert!(Arc::ptr_eq(&a, &b), "built once");
        assert_eq!(cache.used(), size);
        // A second matrix does not fit any more: products repack it on the fly.
        let w2 = matrix(&data, 24);
        assert!(cache.get(4096, &w2, min).is_none());
        assert_eq!(cache.used(), size);

        assert!(
            RepackCache::with_budget(0).get(0, &w, min).is_none(),
            "0 turns it off"
        );
    }

    /// Below the rows that pay for repacking, a product gets the repacked form only when an
    /// earlier, larger product built it (a few sequences decoding after their prompts).
    #[test]
    fn small_products_use_but_never_build() {
        let data = vec![0u8; 32 * 2 * 20];
        let w = WeightMatrix::new(GgmlType::Q4_1, 32, 64, &data).unwrap();
        let (Some(min), Some(small)) = (
            PackedWeights::min_rows(GgmlType::Q4_1),
            PackedWeights::min_rows_prepacked(GgmlType::Q4_1),
        ) else {
            assert!(
                RepackCache::with_budget(usize::MAX)
                    .get(0, &w, 64)
                    .is_none()
            );
            return;
        };
        assert!(small < min, "{small} < {min}");
        let cache = RepackCache::with_budget(usize::MAX);
        assert!(
            cache.get(0, &w, small).is_none(),
            "not built by a small product"
        );
        assert_eq!(cache.used(), 0);
        assert!(cache.get(0, &w, 1).is_none());
        let a = cache.get(0, &w, min).expect("built");
        let b = cache.get(0, &w, small).expect("used once built");
        assert!(Arc::ptr_eq(&a, &b));
        assert!(
            cache.get(0, &w, small - 1).is_none(),
            "below even the small threshold"
        );
    }
}
