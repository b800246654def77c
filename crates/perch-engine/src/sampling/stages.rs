//! The samplers of the chain, one small type each (llama.cpp's `llama_sampler_*` in
//! src/llama-sampler.cpp are the reference for what each does).

use std::collections::{HashMap, VecDeque};

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};

use super::candidates::{Candidates, TokenData, by_logit_desc};

/// One stage of a sampler chain.
pub trait SamplerStage: Send {
    /// Short name (for logs).
    fn name(&self) -> &'static str;
    /// Transforms the candidates (reweights, removes, or for a final stage, selects).
    fn apply(&mut self, cur: &mut Candidates);
    /// Observes the token that was used.
    fn accept(&mut self, _token: u32) {}
    /// Forgets what `accept` recorded.
    fn reset(&mut self) {}
}

/// Adds a fixed bias to the logits of given tokens.
#[derive(Debug, Clone)]
pub struct LogitBias {
    biases: Vec<(u32, f32)>,
}

impl LogitBias {
    /// Biases as (token, added to its logit).
    pub fn new(biases: Vec<(u32, f32)>) -> Self {
        LogitBias { biases }
    }
}

impl SamplerStage for LogitBias {
    fn name(&self) -> &'static str {
        "logit-bias"
    }

    fn apply(&mut self, cur: &mut Candidates) {
        for &(token, bias) in &self.biases {
            if let Some(d) = cur.find_mut(token) {
                d.logit += bias;
            }
        }
        cur.set_sorted(false);
    }
}

/// Repetition, frequency and presence penalties over the last `last_n` accepted tokens,
/// as llama.cpp defines them: for each token seen `count` times in the window, a positive
/// logit is divided by `repeat` and a non-positive one multiplied by it, then
/// `count * frequency + presence` is subtracted.
#[derive(Debug, Clone)]
pub struct Penalties {
    last_n: usize,
    repeat: f32,
    frequency: f32,
    presence: f32,
    window: VecDeque<u32>,
    counts: HashMap<u32, u32>,
}

impl Penalties {
    /// Penalties over a window of `last_n` tokens.
    pub fn new(last_n: usize, repeat: f32, frequency: f32, presence: f32) -> Self {
        Penalties {
            last_n,
            repeat,
            frequency,
            presence,
            window: VecDeque::with_capacity(last_n.min(4096)),
            counts: HashMap::new(),
        }
    }

    /// Whether these settings change nothing.
    pub fn is_disabled(&self) -> bool {
        self.last_n == 0 || (self.repeat == 1.0 && self.frequency == 0.0 && self.presence == 0.0)
    }
}

impl SamplerStage for Penalties {
    fn name(&self) -> &'static str {
        "penalties"
    }

    fn apply(&mut self, cur: &mut Candidates) {
        if self.is_disabled() {
            return;
        }
        for (&token, &count) in &self.counts {
            let Some(d) = cur.find_mut(token) else {
                continue;
            };
            if d.logit <= 0.0 {
                d.logit *= self.repeat;
            } else {
                d.logit /= self.repeat;
            }
            d.logit -= count as f32 * self.frequency + self.presence;
        }
        cur.set_sorted(false);
    }

    fn accept(&mut self, token: u32) {
        if self.last_n == 0 {
            return;
        }
        if self.window.len() >= self.last_n {
            if let Some(old) = self.window.pop_front() {
                if let Some(c) = self.counts.get_mut(&old) {
                    *c -= 1;
                    if *c == 0 {
                        self.counts.remove(&old);
                    }
                }
            }
        }
        self.window.push_back(token);
        *self.counts.entry(token).or_insert(0) += 1;
    }

    fn reset(&mut self) {
        self.window.clear();
        self.counts.clear();
    }
}

/// Keeps the `k` highest logits.
#[derive(Debug, Clone)]
pub struct TopK {
    k: usize,
}

impl TopK {
    /// Top-k with `k >= 1` (0 keeps everything).
    pub fn new(k: usize) -> Self {
        TopK { k }
    }
}

impl SamplerStage for TopK {
    fn name(&self) -> &'static str {
        "top-k"
    }

    fn apply(&mut self, cur: &mut Candidates) {
        if self.k == 0 || cur.is_empty() {
            return;
        }
        let k = self.k.min(cur.len());
        if !cur.is_sorted() {
            if k * 16 < cur.len() {
                // Small k over a big vocabulary: one pass keeping the k best in a heap is
                // cheaper than partitioning the whole list.
                let best = top_k_by_heap(cur.as_slice(), k);
                cur.replace(best);
            } else {
                cur.partial_sort(k);
            }
        }
        cur.truncate(k);
        cur.set_sorted(true);
    }
}

/// The `k` best candidates (by [`by_logit_desc`]), sorted.
fn top_k_by_heap(data: &[TokenData], k: usize) -> Vec<TokenData> {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;

    /// Orders candidates so that "greater" means "better" (higher logit, then lower id).
    struct Ranked(TokenData);
    impl PartialEq for Ranked {
        fn eq(&self, other: &Self) -> bool {
            self.cmp(other) == std::cmp::Ordering::Equal
        }
    }
    impl Eq for Ranked {}
    impl PartialOrd for Ranked {
        fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
            Some(self.cmp(other))
        }
    }
    impl Ord for Ranked {
        fn cmp(&self, other: &Self) -> std::cmp::Ordering {
            by_logit_desc(&other.0, &self.0)
        }
    }

    let mut heap: BinaryHeap<Reverse<Ranked>> = BinaryHeap::with_capacity(k + 1);
    for d in data {
        if heap.len() < k {
            heap.push(Reverse(Ranked(*d)));
        } else if let Some(Reverse(worst)) = heap.peek() {
            // Cheap reject first: most tokens are below the current k-th best logit.
            if d.logit >= worst.0.logit && Ranked(*d) > *worst {
                heap.pop();
                heap.push(Reverse(Ranked(*d)));
            }
        }
    }
    let mut out: Vec<TokenData> = heap.into_iter().map(|Reverse(r)| r.0).collect();
    out.sort_unstable_by(by_logit_desc);
    out
}

/// Keeps the smallest set of most likely tokens whose probabilities add up to at least `p`.
#[derive(Debug, Clone)]
pub struct TopP {
    p: f32,
}

impl TopP {
    /// Top-p (nucleus) with mass `p` in (0, 1].
    pub fn new(p: f32) -> Self {
        TopP { p }
    }
}

/// Tokens top-p first sorts when the list is unsorted: usually enough to reach the mass.
const TOP_P_FIRST_TRY: usize = 256;

impl SamplerStage for TopP {
    fn name(&self) -> &'static str {
        "top-p"
    }

    fn apply(&mut self, cur: &mut Candidates) {
        if self.p >= 1.0 || cur.is_empty() || !cur.softmax() {
            return;
        }
        // Sort only as far as needed: the first 256, then 8 times more each time the mass
        // is not reached yet.
        let mut sorted_upto = if cur.is_sorted() { cur.len() } else { 0 };
        let mut cum = 0.0f32;
        let mut kept = cur.len();
        let mut i = 0;
        while i < cur.len() {
            if i == sorted_upto {
                let next = if sorted_upto == 0 {
                    TOP_P_FIRST_TRY
                } else {
                    sorted_upto * 8
                };
                cur.partial_sort_from(sorted_upto, next);
                sorted_upto = next.min(cur.len());
            }
            cum += cur.as_slice()[i].p;
            if cum >= self.p {
                kept = i + 1;
                break;
            }
            i += 1;
        }
        // The first `kept` candidates are sorted now.
        cur.truncate(kept);
        cur.set_sorted(true);
    }
}

/// Drops tokens whose probability is below `p` times the most likely token's.
#[derive(Debug, Clone)]
pub struct MinP {
    p: f32,
}

impl MinP {
    /// Min-p with `p` in [0, 1].
    pub fn new(p: f32) -> Self {
        MinP { p }
    }
}

impl SamplerStage for MinP {
    fn name(&self) -> &'static str {
        "min-p"
    }

    fn apply(&mut self, cur: &mut Candidates) {
        if self.p <= 0.0 || cur.is_empty() {
            return;
        }
        // p_i >= p * p_max  <=>  logit_i >= logit_max + ln(p); no softmax or sort needed.
        let min_logit = cur.max_logit() + self.p.ln();
        let sorted = cur.is_sorted();
        cur.retain(|d| d.logit >= min_logit);
        cur.set_sorted(sorted);
    }
}

/// Locally typical sampling (Meister et al.): keeps the tokens whose surprise is closest to
/// the distribution's entropy until their mass exceeds `p`.
#[derive(Debug, Clone)]
pub struct Typical {
    p: f32,
}

impl Typical {
    /// Typical-p with mass `p` in (0, 1].
    pub fn new(p: f32) -> Self {
        Typical { p }
    }
}

impl SamplerStage for Typical {
    fn name(&self) -> &'static str {
        "typical"
    }

    fn apply(&mut self, cur: &mut Candidates) {
        if self.p >= 1.0 || cur.is_empty() {
            return;
        }
        cur.sort();
        if !cur.softmax() {
            return;
        }
        let data = cur.as_slice();
        let entropy: f32 = data
            .iter()
            .filter(|d| d.p > 0.0)
            .map(|d| -d.p * d.p.ln())
            .sum();
        let mut order: Vec<(f32, usize)> = data
            .iter()
            .enumerate()
            .map(|(i, d)| ((-d.p.ln() - entropy).abs(), i))
            .collect();
        // Stable on ties: equal scores keep their (sorted-by-logit) order.
        order.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let mut kept = order.len();
        let mut cum = 0.0f32;
        for (n, &(_, i)) in order.iter().enumerate() {
            cum += data[i].p;
            if cum > self.p {
                kept = n + 1;
                break;
            }
        }
        let new: Vec<TokenData> = order[..kept].iter().map(|&(_, i)| data[i]).collect();
        cur.replace(new);
    }
}

/// Divides the logits by the temperature (> 0).
#[derive(Debug, Clone)]
pub struct Temperature {
    t: f32,
}

impl Temperature {
    /// Temperature `t > 0`.
    pub fn new(t: f32) -> Self {
        Temperature { t }
    }
}

impl SamplerStage for Temperature {
    fn name(&self) -> &'static str {
        "temperature"
    }

    fn apply(&mut self, cur: &mut Candidates) {
        if self.t <= 0.0 {
            return;
        }
        for d in cur.as_mut_slice() {
            d.logit /= self.t;
        }
    }
}

/// Final stage: selects the highest logit (ties: the lowest token id). Selects nothing when
/// every logit is `-inf`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Greedy;

impl SamplerStage for Greedy {
    fn name(&self) -> &'static str {
        "greedy"
    }

    fn apply(&mut self, cur: &mut Candidates) {
        let mut best: Option<usize> = None;
        for (i, d) in cur.as_slice().iter().enumerate() {
            if d.logit == f32::NEG_INFINITY {
                continue;
            }
            let better = match best {
                None => true,
                Some(b) => {
                    let bd = &cur.as_slice()[b];
                    d.logit > bd.logit || (d.logit == bd.logit && d.id < bd.id)
                }
            };
            if better {
                best = Some(i);
            }
        }
        if let Some(i) = best {
            cur.select(i);
        }
    }
}

/// Final stage: draws a token from the softmax of the logits with a seeded ChaCha8
/// generator (one uniform draw per step, walked along the cumulative probabilities in the
/// candidates' order, as llama.cpp's `dist` sampler does).
#[derive(Debug, Clone)]
pub struct Distribution {
    seed: u64,
    rng: ChaCha8Rng,
}

impl Distribution {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Distribution {
            seed,
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// A uniform draw in [0, 1) with 53 random bits.
    fn uniform(&mut self) -> f64 {
        (self.rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

impl SamplerStage for Distribution {
    fn name(&self) -> &'static str {
        "dist"
    }

    fn apply(&mut self, cur: &mut Candidates) {
        let r = self.uniform();
        if cur.is_empty() || !cur.softmax() {
            return;
        }
        let mut cum = 0.0f64;
        let mut chosen = None;
        let mut last_nonzero = 0;
        for (i, d) in cur.as_slice().iter().enumerate() {
            if d.p > 0.0 {
                last_nonzero = i;
            }
            cum += d.p as f64;
            if d.p > 0.0 && cum > r {
                chosen = Some(i);
                break;
            }
        }
        // Rounding can leave the total just under the draw: take the last possible token.
        cur.select(chosen.unwrap_or(last_nonzero));
    }

    fn reset(&mut self) {
        self.rng = ChaCha8Rng::seed_from_u64(self.seed);
    }
}
