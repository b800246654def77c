//! SentencePiece BPE (`tokenizer.ggml.model = llama`): merge adjacent pieces by the score
//! of the token they form, best first; characters no token covers fall back to `<0xXX>`
//! byte tokens.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use crate::tables::Tables;

/// A piece of the text: `text[start..start + len]`, linked to its neighbours.
#[derive(Clone, Copy)]
struct Symbol {
    start: u32,
    len: u32,
    prev: i32,
    next: i32,
}

/// A candidate merge of `left` and its right neighbour `right`.
struct Bigram {
    score: f32,
    left: i32,
    right: i32,
    size: u32,
}

impl PartialEq for Bigram {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Bigram {}
impl PartialOrd for Bigram {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Bigram {
    /// Highest score first; among equal scores the leftmost.
    fn cmp(&self, o: &Self) -> Ordering {
        self.score
            .total_cmp(&o.score)
            .then_with(|| o.left.cmp(&self.left))
    }
}

/// Byte-fallback ids for SentencePiece-style vocabularies (`<0xXX>`, else the one-byte
/// token, else the unknown token).
pub(crate) fn byte_fallback_table(t: &Tables, unk: Option<u32>) -> [Option<u32>; 256] {
    std::array::from_fn(|b| {
        let b = b as u8;
        t.hex_byte_token(b).or_else(|| t.id(&[b])).or(unk)
    })
}

/// Tokenizes `text` (already space-escaped) into `out`.
pub(crate) fn encode(t: &Tables, byte_tokens: &[Option<u32>; 256], text: &str, out: &mut Vec<u32>) {
    let bytes = text.as_bytes();
    let mut symbols: Vec<Symbol> = Vec::with_capacity(text.len());
    let mut iter = text.char_indices().peekable();
    while let Some((i, c)) = iter.next() {
        let idx = symbols.len() as i32;
        let last = iter.peek().is_none();
        symbols.push(Symbol {
            start: i as u32,
            len: c.len_utf8() as u32,
            prev: idx - 1,
            next: if last { -1 } else { idx + 1 },
        });
    }
    if symbols.is_empty() {
        return;
    }

    let mut queue = BinaryHeap::with_capacity(symbols.len());
    let try_add = |symbols: &[Symbol], queue: &mut BinaryHeap<Bigram>, left: i32, right: i32| {
        if left < 0 || right < 0 {
            return;
        }
        let (l, r) = (symbols[left as usize], symbols[right as usize]);
        let span = &bytes[l.start as usize..(r.start + r.len) as usize];
        if let Some(id) = t.id(span) {
            queue.push(Bigram {
                score: t.scores[id as usize],
                left,
                right,
                size: span.len() as u32,
            });
        }
    };
    for i in 1..symbols.len() as i32 {
        try_add(&symbols, &mut queue, i - 1, i);
    }

    while let Some(b) = queue.pop() {
        let (l, r) = (symbols[b.left as usize], symbols[b.right as usize]);
        // Skip if either side was merged since this bigram was queued.
        if l.len == 0 || r.len == 0 || l.len + r.len != b.size {
            continue;
        }
        let left = &mut symbols[b.left as usize];
        left.len += r.len;
        left.next = r.next;
        symbols[b.right as usize].len = 0;
        if r.next >= 0 {
            symbols[r.next as usize].prev = b.left;
        }
        let (prev, next) = (symbols[b.left as usize].prev, symbols[b.left as usize].next);
        try_add(&symbols, &mut queue, prev, b.left);
        try_add(&symbols, &mut queue, b.left, next);
    }

    let mut i = 0i32;
    while i != -1 {
        let s = symbols[i as usize];
        let span = &bytes[s.start as usize..(s.start + s.len) as usize];
        match t.id(span) {
            Some(id) => out.push(id),
            None => out.extend(span.iter().filter_map(|&b| byte_tokens[b as usize])),
        }
        i = s.next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::TokenAttr;

    fn tables(tokens: &[(&str, f32)]) -> Tables {
        let toks: Vec<Vec<u8>> = tokens.iter().map(|(t, _)| t.as_bytes().to_vec()).collect();
        let scores: Vec<f32> = tokens.iter().map(|(_, s)| *s).collect();
        let attrs = vec![TokenAttr::NORMAL; toks.len()];
        Tables::new(&toks, &scores, attrs)
    }

    #[test]
    fn merges_best_score_first_and_falls_back_to_bytes() {
        // "ab" scores higher than "bc", so "abc" is "ab" + "c", never "a" + "bc".
        let t = tables(&[
            ("<unk>", 0.0),
            ("a", -1.0),
            ("b", -1.0),
            ("c", -1.0),
            ("ab", -2.0),
            ("bc", -3.0),
            ("<0xC3>", 0.0),
            ("<0xA9>", 0.0),
        ]);
        let bt = byte_fallback_table(&t, Some(0));
        let mut out = Vec::new();
        encode(&t, &bt, "abc", &mut out);
        assert_eq!(out, vec![4, 3]);
        out.clear();
        // 'é' (C3 A9) has no token: two byte tokens; 'z' has neither a token nor a byte
        // token, so the unknown token stands in.
        encode(&t, &bt, "éz", &mut out);
        assert_eq!(out, vec![6, 7, 0]);
    }

    #[test]
    fn equal_scores_merge_leftmost_first() {
        let t = tables(&[("a", 0.0), ("aa", -1.0)]);
        let bt = byte_fallback_table(&t, None);
        let mut out = Vec::new();
        encode(&t, &bt, "aaa", &mut out);
        assert_eq!(out, vec![1, 0]);
    }
}
