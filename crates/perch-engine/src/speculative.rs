//! Speculative decoding by prompt lookup: guess the next tokens by finding the sequence's
//! last few tokens earlier in its own context and proposing what followed them there. The
//! guesses are computed together with the next token in one batched step; each is kept only
//! if the sampler, given the logits at its position, picks exactly it. So the output is the
//! one decoding without speculation gives (token for token under greedy decoding), and every
//! kept guess is a token gained for the price of one more row in the step's matrix products,
//! which on a memory-bound CPU is far cheaper than another step.

/// Settings of prompt-lookup speculation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Speculative {
    /// Most draft tokens per step.
    pub max_draft: usize,
    /// Shortest suffix looked up.
    pub ngram_min: usize,
    /// Longest suffix looked up (tried first).
    pub ngram_max: usize,
}

impl Speculative {
    /// Up to `max_draft` tokens per step, matching suffixes of 1 to 3 tokens.
    pub fn ngram(max_draft: usize) -> Speculative {
        Speculative {
            max_draft,
            ngram_min: 1,
            ngram_max: 3,
        }
    }

    /// The draft for `tokens`: for the longest suffix (from `ngram_max` down to `ngram_min`
    /// tokens) that also occurs earlier, the tokens that followed its most recent earlier
    /// occurrence, at most `max_draft` (and at most `limit`). Empty when nothing matches.
    pub fn draft(&self, tokens: &[u32], limit: usize) -> Vec<u32> {
        let want = self.max_draft.min(limit);
        let len = tokens.len();
        if want == 0 {
            return Vec::new();
        }
        for n in (self.ngram_min.max(1)..=self.ngram_max).rev() {
            if len <= n {
                continue;
            }
            let tail = &tokens[len - n..];
            for j in (0..len - n).rev() {
                if &tokens[j..j + n] == tail {
                    let start = j + n;
                    let end = (start + want).min(len);
                    if start < end {
                        return tokens[start..end].to_vec();
                    }
                }
            }
        }
        Vec::new()
    }
}

/// How many prompt-lookup drafts a sequence proposes next, adapted to how its drafts fared:
/// a draft kept whole doubles the length (up to the maximum), one rejected at its first token
/// halves it, and at zero the sequence pauses for [`DraftPace::PAUSE`] steps before trying a
/// single token again. On text that does not repeat itself (a story) lookup matches are
/// mostly chance, and every rejected draft costs rows in the step's products: without the
/// pace SmolLM2 Q8_0 decoded a story at 62 tokens/s with drafts against 90-98 without. The
/// pace only changes what is proposed, never the output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DraftPace {
    len: usize,
    pause: usize,
}

impl DraftPace {
    /// Steps without drafts after drafts have been rejected down to nothing.
    pub const PAUSE: usize = 8;

    /// A pace that starts at `max` drafts.
    pub fn new(max: usize) -> DraftPace {
        DraftPace { len: max, pause: 0 }
    }

    /// The most drafts to propose this step (0 while paused; a paused step counts down).
    pub fn take_limit(&mut self) -> usize {
        if self.pause > 0 {
            self.pause -= 1;
            return 0;
        }
        self.len
    }

    /// Records that `accepted` of `drafted` proposed tokens were kept (`drafted > 0`).
    pub fn record(&mut self, drafted: usize, accepted: usize, max: usize) {
        if drafted == 0 {
            return;
        }
        self.len = if accepted >= drafted {
            (2 * self.len).clamp(1, max.max(1))
        } else if accepted == 0 {
            self.len / 2
        } else {
            (accepted + 1).min(max.max(1))
        };
        if self.len == 0 {
            self.len = 1;
            self.pause = Self::PAUSE;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pace_shrinks_pauses_and_recovers() {
        let mut p = DraftPace::new(8);
        assert_eq!(p.take_limit(), 8);
        // Rejected at the first token: 8 -> 4 -> 2 -> 1 -> paused.
        for want in [4, 2, 1] {
            p.record(8, 0, 8);
            assert_eq!(p.take_limit(), want);
        }
        p.record(1, 0, 8);
        for _ in 0..DraftPace::PAUSE {
            assert_eq!(p.take_limit(), 0);
        }
        assert_eq!(p.take_limit(), 1);
        // Kept whole: doubles up to the maximum.
        for want in [2, 4, 8, 8] {
            p.record(p.len, p.len, 8);
            assert_eq!(p.take_limit(), want);
        }
        // Kept in part: one more than was kept.
        p.record(8, 3, 8);
        assert_eq!(p.take_limit(), 4);
        // Nothing drafted: unchanged.
        p.record(0, 0, 8);
        assert_eq!(p.take_limit(), 4);
    }

    #[test]
    fn proposes_what_followed_the_longest_most_recent_match() {
        let s = Speculative::ngram(3);
        // "1 2 3 4 5 ... 1 2 3" -> "4 5 9" follows the earlier "1 2 3".
        assert_eq!(s.draft(&[1, 2, 3, 4, 5, 9, 7, 1, 2, 3], 10), vec![4, 5, 9]);
        // The most recent occurrence wins among equally long matches.
        assert_eq!(s.draft(&[5, 6, 8, 5, 6, 7, 0, 5, 6], 10), vec![7, 0, 5]);
        // A longer match beats a more recent shorter one.
        assert_eq!(
            s.draft(&[1, 2, 3, 10, 9, 3, 11, 1, 2, 3], 10),
            vec![10, 9, 3]
        );
        // Limits.
        assert_eq!(s.draft(&[1, 2, 3, 4, 5, 9, 7, 1, 2, 3], 1), vec![4]);
        assert_eq!(s.draft(&[1, 2, 3, 1], 10), vec![2, 3, 1]);
        assert!(s.draft(&[1, 2, 3, 4], 10).is_empty());
        assert!(s.draft(&[], 10).is_empty());
        assert!(Speculative::ngram(0).draft(&[1, 1, 1], 10).is_empty());
    }
}
