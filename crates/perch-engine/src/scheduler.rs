//! Continuous batching: which tokens of which sequences go into the next forward step.
//!
//! One rule drives everything: each step, every sequence tries to bring the tokens whose K and
//! V are computed (`num_computed`) up to all its tokens (prompt plus generated), under a token
//! budget per step. A decoding sequence wants one token; a new prompt wants all of its tokens
//! and gets them in chunks. Prefix caching, chunked prefill and decoding all follow from it.
//!
//! Decode tokens are scheduled before prompt chunks, so a long prompt never stalls the streams
//! already running. Waiting sequences are admitted first come, first served while blocks and
//! budget allow; a new sequence first takes back the cached blocks of its longest matching
//! prefix. When a running sequence needs a block and none is free, the newest running sequence
//! is preempted: its blocks are released (their cached contents usually survive, so it
//! recomputes cheaply) and it goes back to the front of the queue. A sequence that could never
//! fit the pool is refused when it is added.
//!
//! The scheduler only plans ([`Scheduler::schedule`] returns a [`StepPlan`]); the engine runs
//! the model and reports back with [`Scheduler::step_done`] and [`Scheduler::append_token`].

use std::collections::VecDeque;

use crate::kv::{BlockHash, BlockPool, BlockTable, PoolStats};

/// Identifies a sequence.
pub type SeqId = u64;

/// Scheduler limits.
#[derive(Clone, Debug)]
pub struct SchedulerConfig {
    /// Most tokens in one forward step.
    pub max_batch_tokens: usize,
    /// Most sequences running at once.
    pub max_running: usize,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            max_batch_tokens: 512,
            max_running: 64,
        }
    }
}

/// Why a sequence was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdmitError {
    /// It needs more blocks than the whole pool has.
    #[error("request needs {needed} tokens of KV cache but the cache holds {capacity} tokens")]
    TooLarge {
        /// Tokens needed (prompt plus the most it may generate).
        needed: usize,
        /// Tokens the pool holds.
        capacity: usize,
    },
    /// The prompt is empty.
    #[error("empty prompt")]
    Empty,
    /// A sequence with this id exists.
    #[error("sequence {0} already exists")]
    Duplicate(SeqId),
}

/// A sequence under the scheduler's care.
#[derive(Debug, Clone)]
pub struct Sequence {
    /// Its id.
    pub id: SeqId,
    /// Prompt and generated tokens.
    pub tokens: Vec<u32>,
    /// Length of the original prompt.
    pub prompt_len: usize,
    /// Most tokens it may hold in total (prompt plus generation).
    pub max_len: usize,
    /// Tokens whose K and V are in the cache.
    pub num_computed: usize,
    /// Its blocks.
    pub table: BlockTable,
    /// Prompt tokens served from the prefix cache at admission.
    pub num_cached: usize,
    /// How often it was preempted.
    pub preemptions: u32,
    /// Trailing tokens of `tokens` that are speculative drafts, not yet verified.
    pub num_draft: usize,
    /// Hashes of its full blocks committed to the prefix cache so far.
    hashes: Vec<BlockHash>,
}

impl Sequence {
    fn wanted(&self) -> usize {
        self.tokens.len() - self.num_computed
    }

    /// Tokens known to be part of the output (everything but the drafts).
    pub fn verified_len(&self) -> usize {
        self.tokens.len() - self.num_draft
    }
}

/// One sequence's share of a step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scheduled {
    /// The sequence.
    pub id: SeqId,
    /// Position of the first token to compute.
    pub start: usize,
    /// How many tokens to compute.
    pub len: usize,
    /// Whether the step reaches the sequence's last token, so its logits give the next one.
    pub sample: bool,
    /// Speculative drafts among the scheduled tokens (the last `draft` ones): every
    /// scheduled token's logits are wanted, to verify them.
    pub draft: usize,
}

/// The plan of one step.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StepPlan {
    /// Sequences and their token ranges, decode tokens first.
    pub seqs: Vec<Scheduled>,
    /// Sequences preempted while planning (their computed state was dropped).
    pub preempted: Vec<SeqId>,
}

impl StepPlan {
    /// Tokens in the step.
    pub fn n_tokens(&self) -> usize {
        self.seqs.iter().map(|s| s.len).sum()
    }
}

/// Waiting and running queues over a block pool.
#[derive(Debug)]
pub struct Scheduler {
    cfg: SchedulerConfig,
    pool: BlockPool,
    waiting: VecDeque<Sequence>,
    running: Vec<Sequence>,
}

impl Scheduler {
    /// A scheduler over `pool`.
    pub fn new(cfg: SchedulerConfig, pool: BlockPool) -> Scheduler {
        Scheduler {
            cfg,
            pool,
            waiting: VecDeque::new(),
            running: Vec::new(),
        }
    }

    /// The block pool.
    pub fn pool(&self) -> &BlockPool {
        &self.pool
    }

    /// Pool counters for metrics.
    pub fn pool_stats(&self) -> PoolStats {
        self.pool.stats()
    }

    /// Sequences waiting for admission.
    pub fn n_waiting(&self) -> usize {
        self.waiting.len()
    }

    /// Sequences admitted.
    pub fn n_running(&self) -> usize {
        self.running.len()
    }

    /// Whether nothing is waiting or running.
    pub fn is_idle(&self) -> bool {
        self.waiting.is_empty() && self.running.is_empty()
    }

    /// Tokens the whole pool can hold.
    pub fn capacity_tokens(&self) -> usize {
        self.pool.n_blocks() * self.pool.block_size()
    }

    /// Queue a new sequence with `prompt`, allowed to grow to `max_len` tokens in total.
    pub fn add(&mut self, id: SeqId, prompt: Vec<u32>, max_len: usize) -> Result<(), AdmitError> {
        if prompt.is_empty() {
            return Err(AdmitError::Empty);
        }
        if self.get(id).is_some() {
            return Err(AdmitError::Duplicate(id));
        }
        let max_len = max_len.max(prompt.len());
        if self.pool.blocks_for(max_len) > self.pool.n_blocks() {
            return Err(AdmitError::TooLarge {
                needed: max_len,
                capacity: self.capacity_tokens(),
            });
        }
        self.waiting.push_back(Sequence {
            id,
            prompt_len: prompt.len(),
            tokens: prompt,
            max_len,
            num_computed: 0,
            table: BlockTable::new(),
            num_cached: 0,
            preemptions: 0,
            num_draft: 0,
            hashes: Vec::new(),
        });
        Ok(())
    }

    /// The sequence with `id`, waiting or running.
    pub fn get(&self, id: SeqId) -> Option<&Sequence> {
        self.running
            .iter()
            .find(|s| s.id == id)
            .or_else(|| self.waiting.iter().find(|s| s.id == id))
    }

    /// Plan the next step.
    pub fn schedule(&mut self) -> StepPlan {
        let mut plan = StepPlan::default();
        let mut budget = self.cfg.max_batch_tokens;
        // Decoding sequences first, then running prompts that still have chunks to go;
        // oldest first within each.
        for decode_pass in [true, false] {
            let mut i = 0;
            while i < self.running.len() && budget > 0 {
                let want = self.running[i].wanted();
                let draft = self.running[i].num_draft;
                let decoding = self.running[i].num_computed
                    >= self.running[i].prompt_len.max(1) - 1
                    && want == 1 + draft;
                if want == 0
                    || decoding != decode_pass
                    || plan.seqs.iter().any(|s| s.id == self.running[i].id)
                {
                    i += 1;
                    continue;
                }
                // Drafts only ride along whole; when they do not fit they are dropped.
                if decoding && draft > 0 && want > budget {
                    self.drop_drafts(i);
                    continue;
                }
                let n = want.min(budget);
                let target = self.running[i].num_computed + n;
                if self.make_room(i, target, &mut plan).is_none() {
                    // `i` itself was preempted: the element now at `i` is the next one.
                    continue;
                }
                let s = &self.running[i];
                plan.seqs.push(Scheduled {
                    id: s.id,
                    start: s.num_computed,
                    len: n,
                    sample: target == s.tokens.len(),
                    draft: if decoding { draft } else { 0 },
                });
                budget -= n;
                i += 1;
            }
        }
        // Admit waiting sequences while budget, slots and blocks allow.
        while budget > 0 && self.running.len() < self.cfg.max_running {
            let Some(mut seq) = self.waiting.pop_front() else {
                break;
            };
            if seq.table.blocks.is_empty() {
                self.take_cached_prefix(&mut seq);
            }
            let n = seq.wanted().min(budget);
            let target = seq.num_computed + n;
            if !self.pool.ensure_capacity(&mut seq.table, target) {
                // Not now: give back what it took and keep it at the front.
                self.pool.free_table(&mut seq.table);
                seq.num_computed = 0;
                seq.num_cached = 0;
                seq.hashes.clear();
                self.waiting.push_front(seq);
                break;
            }
            plan.seqs.push(Scheduled {
                id: seq.id,
                start: seq.num_computed,
                len: n,
                sample: target == seq.tokens.len(),
                draft: 0,
            });
            budget -= n;
            self.running.push(seq);
        }
        plan
    }

    /// Take back the cached blocks of `seq`'s longest cached prefix. At least the last token
    /// is always left to compute (its logits are needed), so only blocks lying wholly before
    /// it count: no block shared with another sequence is ever written.
    fn take_cached_prefix(&mut self, seq: &mut Sequence) {
        let bs = self.pool.block_size();
        let usable = (seq.tokens.len() - 1) / bs;
        let hashes = BlockHash::chain(&seq.tokens[..usable * bs], bs);
        for h in hashes {
            match self.pool.lookup(h) {
                Some(b) => {
                    seq.table.blocks.push(b);
                    seq.hashes.push(h);
                }
                None => break,
            }
        }
        seq.num_computed = seq.table.blocks.len() * bs;
        seq.num_cached = seq.num_computed;
    }

    /// Make sure running sequence `i` has blocks for `target` tokens, preempting newer running
    /// sequences (newest first) as needed; when no newer one is left, `i` itself is
    /// preempted and `None` returned.
    fn make_room(&mut self, i: usize, target: usize, plan: &mut StepPlan) -> Option<usize> {
        loop {
            let (pool, running) = (&mut self.pool, &mut self.running);
            if pool.ensure_capacity(&mut running[i].table, target) {
                return Some(i);
            }
            let victim = (i + 1..self.running.len())
                .rev()
                .find(|&j| !plan.seqs.iter().any(|s| s.id == self.running[j].id));
            match victim {
                Some(j) => self.preempt(j, plan),
                None => {
                    self.preempt(i, plan);
                    return None;
                }
            }
        }
    }

    /// Forget running sequence `i`'s drafts (nothing of them is computed yet).
    fn drop_drafts(&mut self, i: usize) {
        let seq = &mut self.running[i];
        let keep = seq.verified_len();
        seq.tokens.truncate(keep);
        seq.num_draft = 0;
    }

    fn preempt(&mut self, j: usize, plan: &mut StepPlan) {
        let mut seq = self.running.remove(j);
        let keep = seq.verified_len();
        seq.tokens.truncate(keep);
        seq.num_draft = 0;
        tracing::debug!(seq = seq.id, computed = seq.num_computed, "preempted");
        self.pool.free_table(&mut seq.table);
        seq.num_computed = 0;
        seq.hashes.clear();
        seq.preemptions += 1;
        plan.preempted.push(seq.id);
        self.waiting.push_front(seq);
    }

    /// Record that the planned step ran: every scheduled sequence's tokens are computed.
    /// Newly filled blocks join the prefix cache.
    pub fn step_done(&mut self, plan: &StepPlan) {
        for sch in &plan.seqs {
            let Some(seq) = self.running.iter_mut().find(|s| s.id == sch.id) else {
                continue;
            };
            debug_assert_eq!(seq.num_computed, sch.start);
            seq.num_computed = sch.start + sch.len;
            Self::commit_full_blocks(&mut self.pool, seq);
        }
    }

    /// Offer the sequence's newly filled blocks to the prefix cache: only blocks whose tokens
    /// are all computed and verified (a block holding a draft may still be rewritten).
    fn commit_full_blocks(pool: &mut BlockPool, seq: &mut Sequence) {
        let bs = pool.block_size();
        let full = seq.num_computed.min(seq.verified_len()) / bs;
        while seq.hashes.len() < full {
            let k = seq.hashes.len();
            let h = BlockHash::new(
                seq.hashes.last().copied(),
                &seq.tokens[k * bs..(k + 1) * bs],
            );
            pool.commit(seq.table.blocks[k], h);
            seq.hashes.push(h);
        }
    }

    /// Sets a running sequence's speculative drafts: `tokens` (after its verified tokens)
    /// are to be computed with the next token and checked against its logits. Drafts that
    /// would pass the sequence's length limit are cut. Returns how many were kept.
    pub fn set_drafts(&mut self, id: SeqId, drafts: &[u32]) -> usize {
        let Some(seq) = self.running.iter_mut().find(|s| s.id == id) else {
            return 0;
        };
        let keep = seq.verified_len();
        seq.tokens.truncate(keep);
        // The last verified token is computed in the same step, so room for it is kept.
        let room = seq.max_len.saturating_sub(seq.tokens.len() + 1);
        let n = drafts.len().min(room);
        seq.tokens.extend_from_slice(&drafts[..n]);
        seq.num_draft = n;
        n
    }

    /// After a step verified a sequence's drafts: the first `accepted` drafts become
    /// verified tokens, the rest are dropped, their computed K and V forgotten (the slots are
    /// rewritten later; blocks no longer needed go back to the pool).
    pub fn resolve_drafts(&mut self, id: SeqId, accepted: usize) {
        let Some(seq) = self.running.iter_mut().find(|s| s.id == id) else {
            return;
        };
        let accepted = accepted.min(seq.num_draft);
        let len = seq.verified_len() + accepted;
        seq.tokens.truncate(len);
        seq.num_draft = 0;
        seq.num_computed = seq.num_computed.min(len);
        let keep = self.pool.blocks_for(len);
        for b in seq.table.blocks.drain(keep.min(seq.table.blocks.len())..) {
            self.pool.release(b);
        }
        Self::commit_full_blocks(&mut self.pool, seq);
    }

    /// Append a sampled token to a running sequence. Returns false if the sequence reached its
    /// length limit (the caller should finish it).
    pub fn append_token(&mut self, id: SeqId, token: u32) -> bool {
        match self.running.iter_mut().find(|s| s.id == id) {
            Some(seq) => {
                debug_assert_eq!(seq.num_draft, 0, "drafts are resolved before appending");
                seq.tokens.push(token);
                seq.tokens.len() < seq.max_len
            }
            None => false,
        }
    }

    /// Remove a sequence (finished, cancelled or failed), releasing its blocks. Returns it.
    pub fn remove(&mut self, id: SeqId) -> Option<Sequence> {
        let mut seq = if let Some(i) = self.running.iter().position(|s| s.id == id) {
            self.running.remove(i)
        } else {
            let i = self.waiting.iter().position(|s| s.id == id)?;
            self.waiting.remove(i)?
        };
        self.pool.free_table(&mut seq.table);
        Some(seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sched(blocks: usize, budget: usize) -> Scheduler {
        Scheduler::new(
            SchedulerConfig {
                max_batch_tokens: budget,
                max_running: 16,
            },
            BlockPool::new(blocks, 4),
        )
    }

    /// Run plans to completion, "sampling" token `id * 1000 + position` each time.
    fn drive(s: &mut Scheduler, max_steps: usize) -> Vec<StepPlan> {
        let mut plans = Vec::new();
        for _ in 0..max_steps {
            if s.is_idle() {
                break;
            }
            let plan = s.schedule();
            assert!(plan.n_tokens() <= s.cfg.max_batch_tokens);
            s.step_done(&plan);
            for sch in &plan.seqs {
                if sch.sample {
                    let len = s.get(sch.id).unwrap().tokens.len();
                    if !s.append_token(sch.id, (sch.id * 1000) as u32 + len as u32) {
                        s.remove(sch.id);
                    }
                }
            }
            plans.push(plan);
        }
        plans
    }

    #[test]
    fn prompts_are_chunked_and_decodes_go_first() {
        let mut s = sched(64, 8);
        s.add(1, vec![7; 3], 6).unwrap();
        let p = s.schedule();
        assert_eq!(
            p.seqs,
            vec![Scheduled {
                id: 1,
                start: 0,
                len: 3,
                sample: true,
                draft: 0
            }]
        );
        s.step_done(&p);
        s.append_token(1, 9);
        s.add(2, vec![5; 20], 24).unwrap();
        let p = s.schedule();
        // Sequence 1 decodes one token; sequence 2's prompt gets the remaining 7.
        assert_eq!(
            p.seqs[0],
            Scheduled {
                id: 1,
                start: 3,
                len: 1,
                sample: true,
                draft: 0
            }
        );
        assert_eq!(
            p.seqs[1],
            Scheduled {
                id: 2,
                start: 0,
                len: 7,
                sample: false,
                draft: 0
            }
        );
    }

    #[test]
    fn cached_prefix_is_reused_but_the_last_token_is_recomputed() {
        let mut s = sched(64, 64);
        let prompt: Vec<u32> = (0..12).collect(); // 3 full blocks of 4
        s.add(1, prompt.clone(), 13).unwrap();
        drive(&mut s, 10);
        assert!(s.is_idle());
        s.add(2, prompt.clone(), 13).unwrap();
        let p = s.schedule();
        // Blocks 0 and 1 come from the cache; block 2 holds the last token: recomputed.
        assert_eq!(
            p.seqs,
            vec![Scheduled {
                id: 2,
                start: 8,
                len: 4,
                sample: true,
                draft: 0
            }]
        );
        assert_eq!(s.get(2).unwrap().num_cached, 8);
        assert_eq!(s.pool_stats().hits, 2);
    }

    #[test]
    fn a_request_larger_than_the_pool_is_refused() {
        let mut s = sched(4, 64);
        assert_eq!(
            s.add(1, vec![1; 10], 17),
            Err(AdmitError::TooLarge {
                needed: 17,
                capacity: 16
            })
        );
        assert_eq!(s.add(1, vec![], 4), Err(AdmitError::Empty));
    }

    #[test]
    fn pool_exhaustion_preempts_the_newest_and_everything_completes() {
        // 6 blocks of 4 = 24 tokens; three sequences that each grow to 12 tokens.
        let mut s = sched(6, 64);
        for id in 1..=3 {
            s.add(id, vec![id as u32; 5], 12).unwrap();
        }
        let plans = drive(&mut s, 200);
        assert!(s.is_idle(), "every sequence finished");
        assert!(
            plans.iter().any(|p| !p.preempted.is_empty()),
            "the pool was too small for all three"
        );
        assert_eq!(s.pool().n_used(), 0);
    }

    proptest! {
        /// Random arrivals on a small pool: the budget is never exceeded, no sequence is both
        /// waiting and running, every sequence completes with exactly the tokens it would
        /// have had alone, and no block leaks.
        #[test]
        fn invariants_hold(reqs in proptest::collection::vec((1usize..30, 1usize..12, 0u32..3), 1..12),
                           blocks in 8usize..40, budget in 1usize..40) {
            let mut s = sched(blocks, budget);
            let mut expected = Vec::new();
            for (i, &(plen, n_gen, seed)) in reqs.iter().enumerate() {
                let id = i as u64 + 1;
                let prompt: Vec<u32> = (0..plen as u32).map(|t| t % 5 + seed).collect();
                let max_len = plen + n_gen;
                if s.add(id, prompt.clone(), max_len).is_ok() {
                    let mut want = prompt;
                    while want.len() < max_len {
                        want.push((id * 1000) as u32 + want.len() as u32);
                    }
                    expected.push((id, want));
                }
            }
            let mut finished = std::collections::HashMap::new();
            for _ in 0..5000 {
                if s.is_idle() { break; }
                let plan = s.schedule();
                prop_assert!(plan.n_tokens() <= budget);
                for w in s.waiting.iter() {
                    prop_assert!(!s.running.iter().any(|r| r.id == w.id));
                }
                s.step_done(&plan);
                for sch in &plan.seqs {
                    if sch.sample {
                        let len = s.get(sch.id).unwrap().tokens.len();
                        if !s.append_token(sch.id, (sch.id * 1000) as u32 + len as u32) {
                            let seq = s.remove(sch.id).unwrap();
                            finished.insert(seq.id, seq.tokens);
                        }
                    }
                }
            }
            prop_assert!(s.is_idle(), "did not finish");
            for (id, want) in expected {
                prop_assert_eq!(finished.get(&id), Some(&want));
            }
            prop_assert_eq!(s.pool().n_used(), 0);
        }
    }
}
