//! Log-probabilities for the API's `logprobs` / `top_logprobs`: the log-softmax of the raw
//! logits (before penalties, bias and temperature), which is what OpenAI reports.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// A token with its log-probability.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenLogprob {
    /// Token id.
    pub token: u32,
    /// Natural-log probability under the softmax of the raw logits.
    pub logprob: f32,
}

/// The chosen token's log-probability and the most likely alternatives.
#[derive(Debug, Clone, PartialEq)]
pub struct Logprobs {
    /// The token that was sampled.
    pub chosen: TokenLogprob,
    /// The `top_n` most likely tokens, most likely first (ties: lower id first).
    pub top: Vec<TokenLogprob>,
}

/// Orders (logit, id) so that a min-heap pops the least likely (then the highest id) first.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Entry(f32, u32);

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0).then(other.1.cmp(&self.1))
    }
}

/// Log-probabilities of `token` and of the `top_n` most likely tokens under the softmax of
/// `logits`. NaN logits count as impossible. O(n log top_n).
///
/// Returns `None` when `token` is out of range or no logit is finite.
pub fn logprobs(logits: &[f32], token: u32, top_n: usize) -> Option<Logprobs> {
    let chosen_logit = *logits.get(token as usize)?;
    let max = logits
        .iter()
        .filter(|l| !l.is_nan())
        .fold(f32::NEG_INFINITY, |m, &l| m.max(l));
    if !max.is_finite() {
        return None;
    }
    let sum: f64 = logits
        .iter()
        .filter(|l| !l.is_nan())
        .map(|&l| (l - max).exp() as f64)
        .sum();
    let log_z = max as f64 + sum.ln();
    let lp = |l: f32| -> f32 {
        if l.is_nan() {
            f32::NEG_INFINITY
        } else {
            (l as f64 - log_z) as f32
        }
    };
    let mut heap: BinaryHeap<Reverse<Entry>> = BinaryHeap::with_capacity(top_n + 1);
    if top_n > 0 {
        for (i, &l) in logits.iter().enumerate() {
            if l.is_nan() {
                continue;
            }
            let e = Entry(l, i as u32);
            if heap.len() < top_n {
                heap.push(Reverse(e));
            } else if heap.peek().is_some_and(|Reverse(min)| e > *min) {
                heap.pop();
                heap.push(Reverse(e));
            }
        }
    }
    let mut top: Vec<Entry> = heap.into_iter().map(|Reverse(e)| e).collect();
    top.sort_by(|a, b| b.cmp(a));
    Some(Logprobs {
        chosen: TokenLogprob {
            token,
            logprob: lp(chosen_logit),
        },
        top: top
            .into_iter()
            .map(|Entry(l, id)| TokenLogprob {
                token: id,
                logprob: lp(l),
            })
            .collect(),
    })
}
