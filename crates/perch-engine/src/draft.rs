//! Speculative decoding with a draft model: a smaller model with the same vocabulary guesses
//! the next tokens greedily, and the target model checks the guesses in one batched step,
//! exactly as it checks prompt-lookup drafts ([`crate::speculative`]). A guess is kept only
//! when the target's own sampler, given the logits at its position, picks exactly it, so the
//! output is the one decoding without a draft gives (token for token under greedy decoding,
//! and distributed exactly as the target's sampler says under temperature sampling: every
//! emitted token is still one draw from the target's distribution at its position).
//!
//! The draft model keeps its own paged KV cache. Each sequence that drafts has a mirror here:
//! the tokens whose draft-model K and V are computed, and their block table. Before drafting,
//! the mirror is brought in line with the target sequence (the longest common prefix is kept,
//! anything past it truncated and its blocks released, the rest computed), so rejected
//! guesses are rolled back and a sequence whose target state was dropped catches up by
//! itself. Drafting is batched across sequences: one draft-model forward pass per drafted
//! position computes the next guess of every sequence still drafting. Full blocks of verified
//! tokens join the draft cache's own prefix cache, so a new sequence with a known prefix (the
//! next turn of a chat, a shared system prompt, a preempted sequence coming back) takes them
//! instead of recomputing them.
//!
//! A sequence stops drafting early, as llama.cpp's speculative drafting does, when the draft
//! model's top token has a probability below `p_min` (softmax over its 10 best logits, the
//! draft sampler llama.cpp uses), and a draft shorter than `min_draft` is dropped.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use perch_tokenizer::Tokenizer;

use crate::error::{EngineError, Result};
use crate::kv::{BlockHash, BlockPool, BlockTable, KvStorage, KvType};
use crate::model::{LogitsWanted, Model, SeqStep, Workspace};
use crate::scheduler::SeqId;

/// Most tokens the two vocabularies may differ by (padding rows), as in llama.cpp.
const MAX_VOCAB_SIZE_DIFFERENCE: usize = 128;
/// Token texts are compared from this id on (the first ids are specials that models name
/// differently without meaning anything different), as in llama.cpp.
const CHECK_START_TOKEN_ID: usize = 5;
/// The draft's top probability is taken over its this many best tokens.
const DRAFT_TOP_K: usize = 10;

/// Settings of draft-model speculation.
#[derive(Clone, Debug)]
pub struct DraftConfig {
    model: Arc<Model>,
    /// Most tokens drafted per step and sequence.
    pub max_draft: usize,
    /// Drafts shorter than this are not verified (0: any length).
    pub min_draft: usize,
    /// Drafting stops at a token whose draft probability is below this (0: never).
    pub p_min: f32,
}

/// Why a draft model cannot serve a target model.
#[derive(Debug, thiserror::Error)]
pub enum DraftError {
    /// The draft model could not be opened.
    #[error(transparent)]
    Model(EngineError),
    /// The draft model's tokenizer could not be read.
    #[error("cannot read the draft model's vocabulary: {0}")]
    Tokenizer(#[from] perch_tokenizer::TokenizerError),
    /// The vocabularies differ.
    #[error(
        "the draft model's vocabulary does not match the target model's ({0}); a draft model must share the target's tokenizer"
    )]
    Vocab(String),
    /// A setting is out of range.
    #[error("{0}")]
    Setting(String),
}

impl DraftConfig {
    /// The draft model `model` for a target whose tokenizer is `target`: up to 8 tokens per
    /// step, no minimum, stopping below a top probability of 0.75. Refuses a draft whose
    /// vocabulary differs from the target's ([`check_vocab`]).
    pub fn new(model: Arc<Model>, target: &Tokenizer) -> Result<DraftConfig, DraftError> {
        let draft = Tokenizer::from_gguf(model.file())?;
        check_vocab(target, &draft).map_err(DraftError::Vocab)?;
        Ok(DraftConfig {
            model,
            max_draft: 8,
            min_draft: 0,
            p_min: 0.75,
        })
    }

    /// The draft model.
    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    /// Checks the settings' ranges.
    pub fn validate(&self) -> Result<(), DraftError> {
        if self.max_draft == 0 {
            return Err(DraftError::Setting(
                "the draft length (--draft-max) must be at least 1".into(),
            ));
        }
        if self.min_draft > self.max_draft {
            return Err(DraftError::Setting(format!(
                "the minimum draft length (--draft-min {}) exceeds the maximum (--draft-max {})",
                self.min_draft, self.max_draft
            )));
        }
        if !(0.0..=1.0).contains(&self.p_min) {
            return Err(DraftError::Setting(format!(
                "the draft probability threshold (--draft-p-min {}) must be between 0 and 1",
                self.p_min
            )));
        }
        Ok(())
    }
}

/// Whether a draft model's vocabulary can stand in for the target's, by llama.cpp's rules
/// (`common_speculative_are_compatible`): the same tokenizer family, the same BOS and EOS
/// handling and ids, sizes at most 128 apart, and the same text for every token both have
/// from id 5 on. The error names the first difference.
pub fn check_vocab(target: &Tokenizer, draft: &Tokenizer) -> Result<(), String> {
    if target.kind() != draft.kind() {
        return Err(format!(
            "the target's tokenizer is {:?} ({}), the draft's {:?} ({})",
            target.kind(),
            target.model(),
            draft.kind(),
            draft.model()
        ));
    }
    // Whether each adds the token, and which: the same, or the id does not matter.
    let special = |name: &str, t: (bool, Option<u32>), d: (bool, Option<u32>)| {
        if t.0 != d.0 || (t.0 && t.1 != d.1) {
            return Err(format!(
                "{name} differs: the target adds {} (id {:?}), the draft {} (id {:?})",
                t.0, t.1, d.0, d.1
            ));
        }
        Ok(())
    };
    special(
        "BOS",
        (target.add_bos(), target.bos()),
        (draft.add_bos(), draft.bos()),
    )?;
    special(
        "EOS",
        (target.add_eos(), target.eos()),
        (draft.add_eos(), draft.eos()),
    )?;
    let (nt, nd) = (target.n_vocab() as usize, draft.n_vocab() as usize);
    if nt.abs_diff(nd) > MAX_VOCAB_SIZE_DIFFERENCE {
        return Err(format!(
            "the target has {nt} tokens, the draft {nd} (at most {MAX_VOCAB_SIZE_DIFFERENCE} apart)"
        ));
    }
    for id in CHECK_START_TOKEN_ID..nt.min(nd) {
        let (t, d) = (target.token_text(id as u32), draft.token_text(id as u32));
        if t != d {
            let show =
                |b: Option<&[u8]>| String::from_utf8_lossy(b.unwrap_or_default()).into_owned();
            return Err(format!(
                "token {id} is {:?} in the target but {:?} in the draft",
                show(t),
                show(d)
            ));
        }
    }
    Ok(())
}

/// The draft model's greedy choice from `logits`: the best token and its probability in a
/// softmax over the `DRAFT_TOP_K` best logits (ties go to the lowest id).
pub fn greedy_choice(logits: &[f32]) -> (u32, f32) {
    let mut top: Vec<(f32, u32)> = Vec::with_capacity(DRAFT_TOP_K + 1);
    for (i, &l) in logits.iter().enumerate() {
        if top.len() == DRAFT_TOP_K && l <= top[DRAFT_TOP_K - 1].0 {
            continue;
        }
        let at = top.partition_point(|&(v, _)| v >= l);
        top.insert(at, (l, i as u32));
        top.truncate(DRAFT_TOP_K);
    }
    let Some(&(best, id)) = top.first() else {
        return (0, 0.0);
    };
    if !best.is_finite() {
        return (id, 0.0);
    }
    let sum: f32 = top.iter().map(|&(l, _)| (l - best).exp()).sum();
    (id, 1.0 / sum)
}

/// One target sequence's draft request: its verified tokens (the last one not yet computed
/// by the target) and the most tokens it may draft.
pub(crate) struct DraftRequest<'a> {
    pub id: SeqId,
    pub tokens: &'a [u32],
    pub limit: usize,
    /// Whether an end-of-generation token ends the request (so nothing after it is drafted).
    pub eog_ends: bool,
}

/// A sequence's mirror in the draft model's cache.
#[derive(Default)]
struct Mirror {
    /// Tokens whose draft-model K and V are computed.
    tokens: Vec<u32>,
    table: BlockTable,
    /// Hashes of its leading full blocks committed to the draft cache's prefix cache.
    hashes: Vec<BlockHash>,
}

/// Counters of the draft model.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct DrafterStats {
    pub steps: u64,
    pub tokens_computed: u64,
    pub time: Duration,
}

/// The draft model at work inside the engine loop: its KV cache and the mirrors.
pub(crate) struct Drafter {
    cfg: DraftConfig,
    kv: KvStorage,
    pool: BlockPool,
    ws: Workspace,
    mirrors: HashMap<SeqId, Mirror>,
    max_batch_tokens: usize,
    /// Draft tokens must be ids the target knows.
    target_vocab: usize,
    /// End-of-generation tokens: drafting stops after one.
    eog: Vec<u32>,
    pub stats: DrafterStats,
}

/// What one sequence is doing during a [`Drafter::propose`] call.
struct Work {
    id: SeqId,
    /// Tokens still to feed (the catch-up, then each new guess).
    pending: Vec<u32>,
    /// How many of `pending` are fed.
    fed: usize,
    out: Vec<u32>,
    limit: usize,
    eog_ends: bool,
    done: bool,
}

impl Drafter {
    /// A drafter whose cache holds `n_blocks` blocks of `block_size` tokens.
    pub fn new(
        cfg: DraftConfig,
        eog: Vec<u32>,
        n_blocks: usize,
        block_size: usize,
        kv_type: KvType,
        max_batch_tokens: usize,
        target_vocab: usize,
    ) -> Result<Drafter> {
        cfg.validate()
            .map_err(|e| EngineError::BadConfig(e.to_string()))?;
        let layout = crate::engine::kv_layout(&cfg.model, block_size, n_blocks, kv_type);
        let kv = KvStorage::new(layout).map_err(EngineError::BadConfig)?;
        Ok(Drafter {
            cfg,
            kv,
            pool: BlockPool::new(n_blocks, block_size),
            ws: Workspace::default(),
            mirrors: HashMap::new(),
            max_batch_tokens: max_batch_tokens.max(1),
            target_vocab,
            eog,
            stats: DrafterStats::default(),
        })
    }

    /// Blocks of the draft cache in use.
    pub fn blocks_used(&self) -> usize {
        self.pool.n_used()
    }

    /// Forget sequence `id` (finished, cancelled, failed or preempted), releasing its blocks.
    pub fn remove(&mut self, id: SeqId) {
        if let Some(mut m) = self.mirrors.remove(&id) {
            self.pool.free_table(&mut m.table);
        }
    }

    /// Roll sequence `id` back to its first `len` tokens (after verification rejected the
    /// guesses past them): later positions are forgotten and blocks past them released.
    pub fn truncate(&mut self, id: SeqId, len: usize) {
        if let Some(m) = self.mirrors.get_mut(&id) {
            Self::truncate_mirror(&mut self.pool, m, len);
        }
    }

    fn truncate_mirror(pool: &mut BlockPool, m: &mut Mirror, len: usize) {
        if len >= m.tokens.len() {
            return;
        }
        // A committed block (which other sequences may share) is never written again: when
        // `len` falls inside one, it goes too.
        let bs = pool.block_size();
        let len = if len / bs < m.hashes.len() {
            len / bs * bs
        } else {
            len
        };
        m.hashes.truncate(len / bs);
        m.tokens.truncate(len);
        let keep = pool.blocks_for(len);
        for b in m.table.blocks.drain(keep.min(m.table.blocks.len())..) {
            pool.release(b);
        }
    }

    /// Start an empty mirror with the cached blocks of the longest cached prefix of `tokens`
    /// (leaving at least the last token to compute), as the scheduler does for the target.
    fn take_cached_prefix(pool: &mut BlockPool, m: &mut Mirror, tokens: &[u32]) {
        let bs = pool.block_size();
        let usable = tokens.len().saturating_sub(1) / bs;
        for h in BlockHash::chain(&tokens[..usable * bs], bs) {
            match pool.lookup(h) {
                Some(b) => {
                    m.table.blocks.push(b);
                    m.hashes.push(h);
                }
                None => break,
            }
        }
        m.tokens = tokens[..m.hashes.len() * bs].to_vec();
    }

    /// Commit the mirror's full blocks that lie wholly within its first `verified` tokens.
    fn commit_full_blocks(pool: &mut BlockPool, m: &mut Mirror, verified: usize) {
        let bs = pool.block_size();
        let full = m.tokens.len().min(verified) / bs;
        while m.hashes.len() < full {
            let k = m.hashes.len();
            let h = BlockHash::new(m.hashes.last().copied(), &m.tokens[k * bs..(k + 1) * bs]);
            pool.commit(m.table.blocks[k], h);
            m.hashes.push(h);
        }
    }

    /// Drafts for every request, computed together: one forward pass of the draft model per
    /// drafted position (after any catch-up, in chunks of at most the batch size). Returns
    /// one draft per request, possibly empty.
    pub fn propose(
        &mut self,
        threads: &rayon::ThreadPool,
        reqs: &[DraftRequest<'_>],
    ) -> Result<Vec<Vec<u32>>> {
        let started = Instant::now();
        let draft_vocab = self.cfg.model.config().n_vocab;
        let mut works: Vec<Work> = Vec::with_capacity(reqs.len());
        for r in reqs {
            let mut w = Work {
                id: r.id,
                pending: Vec::new(),
                fed: 0,
                out: Vec::new(),
                limit: r.limit.min(self.cfg.max_draft),
                eog_ends: r.eog_ends,
                done: true,
            };
            // A token the draft model does not have (vocabularies may differ in padding)
            // cannot be fed to it: no draft for this sequence.
            if w.limit > 0
                && !r.tokens.is_empty()
                && r.tokens.iter().all(|&t| (t as usize) < draft_vocab)
            {
                let m = self.mirrors.entry(r.id).or_default();
                if m.table.blocks.is_empty() {
                    Self::take_cached_prefix(&mut self.pool, m, r.tokens);
                }
                let common = m
                    .tokens
                    .iter()
                    .zip(r.tokens)
                    .take_while(|(a, b)| a == b)
                    .count();
                // At least the last token is computed again: its logits give the first guess.
                let keep = common.min(r.tokens.len() - 1);
                Self::truncate_mirror(&mut self.pool, m, keep);
                // Room for the catch-up and every guess fed back (the last one is not).
                let room = r.tokens.len() + w.limit - 1;
                if self.pool.ensure_capacity(&mut m.table, room) {
                    w.pending = r.tokens[keep..].to_vec();
                    w.done = false;
                } else {
                    tracing::debug!(seq = r.id, "draft KV cache full; not drafting this step");
                }
            }
            works.push(w);
        }

        loop {
            // This pass: every sequence still drafting feeds its pending tokens, up to the
            // batch budget; a sequence whose pending tokens all fit gets its next guess.
            let mut budget = self.max_batch_tokens;
            let mut fed: Vec<(usize, usize, bool)> = Vec::new();
            for (i, w) in works.iter().enumerate() {
                if w.done || budget == 0 {
                    continue;
                }
                let n = (w.pending.len() - w.fed).min(budget);
                budget -= n;
                fed.push((i, n, w.fed + n == w.pending.len()));
            }
            if fed.is_empty() {
                break;
            }
            let logits = {
                let steps: Vec<SeqStep<'_>> = fed
                    .iter()
                    .map(|&(i, n, last)| {
                        let w = &works[i];
                        let m = &self.mirrors[&w.id];
                        SeqStep {
                            tokens: &w.pending[w.fed..w.fed + n],
                            start_pos: m.tokens.len(),
                            table: &m.table,
                            logits: if last {
                                LogitsWanted::Last
                            } else {
                                LogitsWanted::None
                            },
                        }
                    })
                    .collect();
                let (model, kv, ws) = (&self.cfg.model, &mut self.kv, &mut self.ws);
                threads.install(|| model.forward(&steps, kv, ws))?
            };
            self.stats.steps += 1;
            self.stats.tokens_computed += fed.iter().map(|f| f.1 as u64).sum::<u64>();
            let mut rows = logits.chunks_exact(draft_vocab);
            for &(i, n, last) in &fed {
                let w = &mut works[i];
                let m = self.mirrors.get_mut(&w.id).expect("mirror exists");
                m.tokens.extend_from_slice(&w.pending[w.fed..w.fed + n]);
                w.fed += n;
                if !last {
                    continue;
                }
                let row = rows.next().expect("one logits row per finished sequence");
                let (token, p) = greedy_choice(row);
                if p < self.cfg.p_min || token as usize >= self.target_vocab {
                    w.done = true;
                    continue;
                }
                w.out.push(token);
                if w.out.len() >= w.limit || (w.eog_ends && self.eog.contains(&token)) {
                    w.done = true;
                } else {
                    w.pending = vec![token];
                    w.fed = 0;
                }
            }
        }
        // Blocks wholly within the verified tokens join the draft cache's prefix cache (a
        // block holding guesses may still be rolled back and rewritten).
        for r in reqs {
            if let Some(m) = self.mirrors.get_mut(&r.id) {
                Self::commit_full_blocks(&mut self.pool, m, r.tokens.len());
            }
        }
        self.stats.time += started.elapsed();
        Ok(works
            .into_iter()
            .map(|w| {
                if w.out.len() < self.cfg.min_draft {
                    Vec::new()
                } else {
                    w.out
                }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_choice_takes_the_best_and_its_top_k_probability() {
        let (id, p) = greedy_choice(&[0.0, 2.0, 1.0, 2.0]);
        assert_eq!(id, 1, "ties go to the lowest id");
        let e = |x: f32| x.exp();
        let want = e(2.0) / (e(0.0) + 2.0 * e(2.0) + e(1.0));
        assert!((p - want).abs() < 1e-6, "{p} vs {want}");
        // Only the 10 best logits count.
        let mut logits = vec![0.0f32; 100];
        logits[42] = 5.0;
        let (id, p) = greedy_choice(&logits);
        assert_eq!(id, 42);
        let want = e(5.0) / (e(5.0) + 9.0);
        assert!((p - want).abs() < 1e-6, "{p} vs {want}");
        assert_eq!(greedy_choice(&[f32::NEG_INFINITY; 3]), (0, 0.0));
    }
}
