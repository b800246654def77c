//! The candidate list the stages work on (llama.cpp's `llama_token_data_array`).

use std::cmp::Ordering;

/// One candidate token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenData {
    /// Token id.
    pub id: u32,
    /// Its (transformed) logit.
    pub logit: f32,
    /// Its probability, when a stage computed one (see [`Candidates::softmax`]).
    pub p: f32,
}

/// The tokens still in the running, with their logits; possibly sorted by descending logit.
#[derive(Debug, Clone, Default)]
pub struct Candidates {
    data: Vec<TokenData>,
    sorted: bool,
    selected: Option<usize>,
}

/// Descending logit, then ascending id: the one order every sort here uses, so results do
/// not depend on the sort algorithm.
pub(crate) fn by_logit_desc(a: &TokenData, b: &TokenData) -> Ordering {
    b.logit.total_cmp(&a.logit).then(a.id.cmp(&b.id))
}

impl Candidates {
    /// Candidates from raw logits, one per token id, in id order. NaN logits are left out.
    pub fn from_logits(logits: &[f32]) -> Self {
        let mut c = Candidates::default();
        c.fill(logits);
        c
    }

    /// Refills from `logits` (reusing the allocation).
    pub fn fill(&mut self, logits: &[f32]) {
        self.data.clear();
        self.data
            .extend(
                logits
                    .iter()
                    .enumerate()
                    .filter(|(_, l)| !l.is_nan())
                    .map(|(i, &logit)| TokenData {
                        id: i as u32,
                        logit,
                        p: 0.0,
                    }),
            );
        self.sorted = false;
        self.selected = None;
    }

    /// The candidates in their current order.
    pub fn as_slice(&self) -> &[TokenData] {
        &self.data
    }

    /// Mutable access to the candidates. Changing logits may break the sorted order:
    /// call [`Candidates::set_sorted`]`(false)` after doing so.
    pub fn as_mut_slice(&mut self) -> &mut [TokenData] {
        &mut self.data
    }

    /// Number of candidates.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether no candidate is left.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Whether the candidates are sorted by descending logit.
    pub fn is_sorted(&self) -> bool {
        self.sorted
    }

    /// Declares whether the candidates are sorted by descending logit.
    pub fn set_sorted(&mut self, sorted: bool) {
        self.sorted = sorted;
    }

    /// Keeps the first `n` candidates.
    pub fn truncate(&mut self, n: usize) {
        self.data.truncate(n);
    }

    /// Keeps the candidates for which `keep` holds, in order.
    pub fn retain(&mut self, keep: impl FnMut(&TokenData) -> bool) {
        self.data.retain(keep);
    }

    /// Replaces the candidates (their order is taken as unsorted).
    pub fn replace(&mut self, data: Vec<TokenData>) {
        self.data = data;
        self.sorted = false;
    }

    /// The candidate with id `token`: O(1) while the list is still in id order (the stages
    /// before any truncation), else a linear search.
    pub fn find_mut(&mut self, token: u32) -> Option<&mut TokenData> {
        let i = token as usize;
        if self.data.get(i).is_some_and(|d| d.id == token) {
            return self.data.get_mut(i);
        }
        self.data.iter_mut().find(|d| d.id == token)
    }

    /// Puts the `k` highest logits first, sorted, leaving the rest after them unordered.
    /// Costs O(n + k log k), not a full sort.
    pub fn partial_sort(&mut self, k: usize) {
        self.partial_sort_from(0, k);
    }

    /// Given that the first `start` candidates are the best ones, sorted, extends that to
    /// the first `end`: partitions the rest and sorts the new part.
    pub fn partial_sort_from(&mut self, start: usize, end: usize) {
        let end = end.min(self.data.len());
        if start >= end {
            return;
        }
        let rest = &mut self.data[start..];
        let k = end - start;
        if k < rest.len() {
            rest.select_nth_unstable_by(k - 1, by_logit_desc);
        }
        rest[..k].sort_unstable_by(by_logit_desc);
        if end == self.data.len() {
            self.sorted = true;
        }
    }

    /// Sorts all candidates by descending logit.
    pub fn sort(&mut self) {
        if !self.sorted {
            self.data.sort_unstable_by(by_logit_desc);
            self.sorted = true;
        }
    }

    /// The largest logit (`-inf` when empty).
    pub fn max_logit(&self) -> f32 {
        if self.sorted {
            return self.data.first().map_or(f32::NEG_INFINITY, |d| d.logit);
        }
        self.data
            .iter()
            .fold(f32::NEG_INFINITY, |m, d| m.max(d.logit))
    }

    /// Sets each candidate's `p` to the softmax of the logits over the current candidates.
    /// Returns false (leaving `p` at 0) when every logit is `-inf`.
    pub fn softmax(&mut self) -> bool {
        let max = self.max_logit();
        if max == f32::NEG_INFINITY {
            for d in &mut self.data {
                d.p = 0.0;
            }
            return false;
        }
        let mut sum = 0.0f64;
        for d in &mut self.data {
            d.p = (d.logit - max).exp();
            sum += d.p as f64;
        }
        for d in &mut self.data {
            d.p = (d.p as f64 / sum) as f32;
        }
        true
    }

    /// Marks the candidate at `index` as the chosen one.
    pub fn select(&mut self, index: usize) {
        self.selected = (index < self.data.len()).then_some(index);
    }

    /// The chosen token, once a final stage picked one.
    pub fn selected(&self) -> Option<u32> {
        self.selected.map(|i| self.data[i].id)
    }
}
