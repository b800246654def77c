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

#[cfg(test)]
mod tests {
    use super::*;

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
