//! A prefix matcher over a fixed set of byte strings, stored as one sorted array.
//!
//! Walking the "trie" narrows a range of the sorted keys one byte at a time (two binary
//! searches per byte), so building it is a sort and it allocates nothing per node — cheap
//! even for a 250k-token Unigram vocabulary.

/// Sorted keys with the value of each.
pub struct PrefixMatcher {
    /// Key bytes, concatenated in sorted order.
    bytes: Vec<u8>,
    /// `offs[i]..offs[i + 1]` is key `i` in `bytes`.
    offs: Vec<u32>,
    values: Vec<u32>,
}

/// A position in a walk: the keys in `lo..hi` all start with the bytes consumed so far.
#[derive(Clone, Copy, Debug)]
pub struct Cursor {
    lo: usize,
    hi: usize,
    depth: usize,
}

impl PrefixMatcher {
    /// Builds a matcher from `(key, value)` pairs. For duplicate keys the last value wins.
    pub fn new<'a>(entries: impl IntoIterator<Item = (&'a [u8], u32)>) -> PrefixMatcher {
        let mut v: Vec<(&[u8], u32, usize)> = entries
            .into_iter()
            .enumerate()
            .map(|(i, (k, val))| (k, val, i))
            .collect();
        // Sort by key, then by insertion order so the last duplicate is kept below.
        v.sort_unstable_by(|a, b| a.0.cmp(b.0).then(a.2.cmp(&b.2)));
        let mut bytes = Vec::new();
        let mut offs = vec![0u32];
        let mut values = Vec::new();
        for i in 0..v.len() {
            if i + 1 < v.len() && v[i + 1].0 == v[i].0 {
                continue; // a later duplicate follows
            }
            bytes.extend_from_slice(v[i].0);
            offs.push(bytes.len() as u32);
            values.push(v[i].1);
        }
        PrefixMatcher {
            bytes,
            offs,
            values,
        }
    }

    fn key(&self, i: usize) -> &[u8] {
        &self.bytes[self.offs[i] as usize..self.offs[i + 1] as usize]
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// A cursor at the root (every key matches the empty prefix).
    pub fn root(&self) -> Cursor {
        Cursor {
            lo: 0,
            hi: self.len(),
            depth: 0,
        }
    }

    /// Follows byte `b` from `cur`; `None` if no key continues with it.
    pub fn step(&self, cur: Cursor, b: u8) -> Option<Cursor> {
        let d = cur.depth;
        // Keys in lo..hi share the first `d` bytes and are sorted, so the keys of length `d`
        // come first and the rest are ordered by their byte at `d`.
        let byte_at = |i: usize| self.key(i).get(d).copied();
        let slice_lo = cur.lo
            + partition(cur.hi - cur.lo, |j| {
                byte_at(cur.lo + j).is_none_or(|x| x < b)
            });
        let slice_hi = slice_lo
            + partition(cur.hi - slice_lo, |j| {
                byte_at(slice_lo + j).is_some_and(|x| x <= b)
            });
        (slice_lo < slice_hi).then_some(Cursor {
            lo: slice_lo,
            hi: slice_hi,
            depth: d + 1,
        })
    }

    /// The value of the key equal to the bytes consumed by `cur`, if there is one.
    pub fn value(&self, cur: Cursor) -> Option<u32> {
        (cur.lo < cur.hi && self.key(cur.lo).len() == cur.depth).then(|| self.values[cur.lo])
    }

    /// Length of the longest prefix of `text` that is a prefix of some key (whether or not
    /// that prefix is itself a key).
    pub fn longest_path(&self, text: &[u8]) -> usize {
        let mut cur = self.root();
        if self.len() == 0 {
            return 0;
        }
        for (i, &b) in text.iter().enumerate() {
            match self.step(cur, b) {
                Some(c) => cur = c,
                None => return i,
            }
        }
        text.len()
    }
}

/// The number of leading `j in 0..n` for which `pred(j)` holds (pred is true then false).
fn partition(n: usize, pred: impl Fn(usize) -> bool) -> usize {
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if pred(mid) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher(keys: &[&str]) -> PrefixMatcher {
        PrefixMatcher::new(
            keys.iter()
                .enumerate()
                .map(|(i, k)| (k.as_bytes(), i as u32)),
        )
    }

    fn all_prefix_values(m: &PrefixMatcher, text: &str) -> Vec<(usize, u32)> {
        let mut out = Vec::new();
        let mut cur = m.root();
        for (i, &b) in text.as_bytes().iter().enumerate() {
            match m.step(cur, b) {
                Some(c) => cur = c,
                None => break,
            }
            if let Some(v) = m.value(cur) {
                out.push((i + 1, v));
            }
        }
        out
    }

    #[test]
    fn finds_every_key_that_prefixes_the_text() {
        let m = matcher(&["a", "ab", "abc", "b", "abd", "x", "abcde"]);
        assert_eq!(
            all_prefix_values(&m, "abcdef"),
            vec![(1, 0), (2, 1), (3, 2), (5, 6)]
        );
        assert_eq!(all_prefix_values(&m, "b"), vec![(1, 3)]);
        assert_eq!(all_prefix_values(&m, "c"), vec![]);
        assert_eq!(m.longest_path(b"abcdz"), 4);
        assert_eq!(m.longest_path(b"zz"), 0);
    }

    #[test]
    fn last_duplicate_wins() {
        let m = matcher(&["k", "k", "kk"]);
        assert_eq!(all_prefix_values(&m, "kk"), vec![(1, 1), (2, 2)]);
    }

    #[test]
    fn empty_matcher() {
        let m = matcher(&[]);
        assert_eq!(all_prefix_values(&m, "abc"), vec![]);
        assert_eq!(m.longest_path(b"abc"), 0);
    }

    #[test]
    fn agrees_with_brute_force() {
        let keys = [
            "▁", "▁a", "▁ab", "a", "ab", "b", "ba", "bab", "\u{0}", "\u{0}a", "é", "éa",
        ];
        let m = matcher(&keys);
        for text in ["▁abab", "babab", "\u{0}ab", "éab", "▁é", ""] {
            let mut expect = Vec::new();
            for end in 1..=text.len() {
                let p = &text.as_bytes()[..end];
                if let Some(i) = keys.iter().rposition(|k| k.as_bytes() == p) {
                    expect.push((end, i as u32));
                }
            }
            assert_eq!(all_prefix_values(&m, text), expect, "{text:?}");
        }
    }
}
