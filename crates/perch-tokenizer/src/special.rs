//! Splitting special tokens out of text before tokenizing (llama.cpp's
//! `tokenizer_st_partition`).
//!
//! Candidates are the control, user-defined and unknown tokens, longest first. User-defined
//! tokens are always split out; control and unknown tokens only when the caller asks to parse
//! special tokens. Each candidate in turn cuts every remaining text fragment at each of its
//! occurrences, swallowing adjacent whitespace where the token has `LSTRIP` / `RSTRIP`.
//!
//! An Aho-Corasick pass first finds which candidates occur in the text at all, so a prompt
//! costs one scan plus work proportional to the special tokens it contains, not to the
//! (sometimes thousands of) special tokens in the vocabulary.

use std::ops::Range;

use aho_corasick::AhoCorasick;

use crate::tables::Tables;
use crate::vocab::TokenAttr;

/// A piece of the input: text still to tokenize, or a special token already recognized.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Fragment {
    /// `text[range]`
    Text(Range<usize>),
    /// A special token.
    Token(u32),
}

/// The special-token candidates of a vocabulary.
pub(crate) struct SpecialTokens {
    /// Candidate ids, longest text first (ties by id).
    ids: Vec<u32>,
    /// Finds which candidates occur (pattern `i` is `ids[i]`).
    finder: Option<AhoCorasick>,
}

impl SpecialTokens {
    pub fn new(t: &Tables) -> SpecialTokens {
        let wanted = TokenAttr::CONTROL
            .with(TokenAttr::USER_DEFINED)
            .with(TokenAttr::UNKNOWN);
        let mut ids: Vec<u32> = (0..t.len() as u32)
            .filter(|&i| t.attrs[i as usize].any(wanted))
            // A text that is not UTF-8 could match inside a character of the input; such
            // tokens are never split out (they can still be produced by decoding).
            .filter(|&i| std::str::from_utf8(t.text(i)).is_ok())
            .collect();
        ids.sort_by(|&a, &b| t.text(b).len().cmp(&t.text(a).len()).then(a.cmp(&b)));
        let finder = if ids.is_empty() {
            None
        } else {
            // Token texts are never empty (the table replaces empty ones), so every
            // pattern is non-empty. Building only fails past internal size limits; then
            // every candidate is tried without the prefilter.
            AhoCorasick::new(ids.iter().map(|&i| t.text(i))).ok()
        };
        SpecialTokens { ids, finder }
    }

    /// The candidate ids, longest first.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    /// Splits `text` into fragments.
    pub fn partition(&self, t: &Tables, text: &[u8], parse_special: bool) -> Vec<Fragment> {
        let mut frags = if text.is_empty() {
            Vec::new()
        } else {
            vec![Fragment::Text(0..text.len())]
        };
        if self.ids.is_empty() || text.is_empty() {
            return frags;
        }
        let skip = |id: u32| {
            !parse_special && t.attrs[id as usize].any(TokenAttr::CONTROL.with(TokenAttr::UNKNOWN))
        };
        // Which candidates occur anywhere (positions in `ids`, so the order is kept).
        let present: Vec<usize> = match &self.finder {
            Some(ac) => {
                let mut seen = vec![false; self.ids.len()];
                for m in ac.find_overlapping_iter(text) {
                    seen[m.pattern().as_usize()] = true;
                }
                (0..self.ids.len()).filter(|&i| seen[i]).collect()
            }
            None => (0..self.ids.len()).collect(),
        };
        for pos in present {
            let id = self.ids[pos];
            if skip(id) {
                continue;
            }
            let tok = t.text(id);
            let attr = t.attrs[id as usize];
            let mut next = Vec::with_capacity(frags.len() + 2);
            for f in frags {
                match f {
                    Fragment::Token(_) => next.push(f),
                    Fragment::Text(r) => split_at_token(text, r, tok, id, attr, &mut next),
                }
            }
            frags = next;
        }
        frags
    }
}

/// Cuts `text[r]` at each occurrence of `tok`.
fn split_at_token(
    text: &[u8],
    r: Range<usize>,
    tok: &[u8],
    id: u32,
    attr: TokenAttr,
    out: &mut Vec<Fragment>,
) {
    let (mut start, end) = (r.start, r.end);
    loop {
        let Some(found) = find(&text[start..end], tok) else {
            if end > start {
                out.push(Fragment::Text(start..end));
            }
            return;
        };
        let m = start + found;
        let mut left_end = m;
        if attr.any(TokenAttr::LSTRIP) {
            while left_end > start && is_c_space(text[left_end - 1]) {
                left_end -= 1;
            }
        }
        if left_end > start {
            out.push(Fragment::Text(start..left_end));
        }
        out.push(Fragment::Token(id));
        start = m + tok.len();
        if attr.any(TokenAttr::RSTRIP) {
            while start < end && is_c_space(text[start]) {
                start += 1;
            }
        }
        if start >= end {
            return;
        }
    }
}

/// C's `isspace` in the "C" locale.
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r')
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.len() > hay.len() {
        return None;
    }
    let first = needle[0];
    let mut i = 0;
    while i + needle.len() <= hay.len() {
        let j = hay[i..=hay.len() - needle.len()]
            .iter()
            .position(|&b| b == first)?;
        i += j;
        if &hay[i..i + needle.len()] == needle {
            return Some(i);
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tables(tokens: &[(&str, TokenAttr)]) -> Tables {
        let toks: Vec<Vec<u8>> = tokens.iter().map(|t| t.0.as_bytes().to_vec()).collect();
        Tables::new(&toks, &[], tokens.iter().map(|t| t.1).collect())
    }

    #[test]
    fn control_tokens_only_when_asked_user_defined_always() {
        let t = tables(&[
            ("a", TokenAttr::NORMAL),
            ("<|im_start|>", TokenAttr::CONTROL),
            ("  ", TokenAttr::USER_DEFINED),
        ]);
        let s = SpecialTokens::new(&t);
        let text = b"x<|im_start|>y  z";
        assert_eq!(
            s.partition(&t, text, false),
            vec![
                Fragment::Text(0..14),
                Fragment::Token(2),
                Fragment::Text(16..17)
            ]
        );
        assert_eq!(
            s.partition(&t, text, true),
            vec![
                Fragment::Text(0..1),
                Fragment::Token(1),
                Fragment::Text(13..14),
                Fragment::Token(2),
                Fragment::Text(16..17)
            ]
        );
    }

    #[test]
    fn longer_tokens_win_and_strip_attributes_apply() {
        let t = tables(&[
            ("<a>", TokenAttr::CONTROL.with(TokenAttr::RSTRIP)),
            ("<a><b>", TokenAttr::CONTROL.with(TokenAttr::LSTRIP)),
        ]);
        let s = SpecialTokens::new(&t);
        assert_eq!(
            s.partition(&t, b"x <a><b> <a>  y", true),
            vec![
                Fragment::Text(0..1),
                Fragment::Token(1),
                Fragment::Text(8..9),
                Fragment::Token(0),
                Fragment::Text(14..15)
            ]
        );
        assert_eq!(
            s.partition(&t, b"<a><a>", true),
            vec![Fragment::Token(0), Fragment::Token(0)]
        );
        assert_eq!(s.partition(&t, b"", true), vec![]);
    }

    #[test]
    fn find_works() {
        assert_eq!(find(b"abcabd", b"abd"), Some(3));
        assert_eq!(find(b"ab", b"abc"), None);
        assert_eq!(find(b"aaa", b"a"), Some(0));
        assert_eq!(find(b"xya", b"a"), Some(2));
    }
}
