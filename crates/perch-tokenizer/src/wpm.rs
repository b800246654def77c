//! WordPiece (`tokenizer.ggml.model = bert`).
//!
//! BERT normalization (drop control characters, optionally strip accents and lowercase),
//! split at whitespace, punctuation and CJK ideographs, then greedy longest-match per word.
//! The GGUF vocabulary marks word-initial pieces with a leading `▁` and stores continuation
//! pieces bare (HuggingFace's `##` removed), so a word is matched as `▁word`.
//!
//! Accents are stripped with a full canonical decomposition (NFD) followed by dropping
//! combining marks, as HuggingFace's `BertNormalizer` does; llama.cpp keeps only the first
//! code point of each decomposition, which differs only for characters whose decomposition
//! has several non-mark code points (such as Hangul syllables).

use unicode_normalization::UnicodeNormalization;

use crate::tables::Tables;
use crate::unicode::{self, MARK, OTHER, PUNCT, SYMBOL, WHITESPACE};

/// The word-start marker of GGUF WordPiece vocabularies (U+2581).
const WORD_START: &str = "\u{2581}";

/// WordPiece settings.
pub(crate) struct Wpm {
    pub lowercase: bool,
    pub strip_accents: bool,
}

impl Wpm {
    /// Splits `text` into normalized words.
    fn words(&self, text: &str) -> Vec<String> {
        let mut words = vec![String::new()];
        let push_char = |c: char, words: &mut Vec<String>| {
            let f = unicode::flags(c);
            if f & WHITESPACE != 0 {
                if !words.last().is_some_and(String::is_empty) {
                    words.push(String::new());
                }
                return;
            }
            if c == '\0' || c == '\u{FFFD}' || f & OTHER != 0 {
                return;
            }
            if self.strip_accents && f & MARK != 0 {
                return;
            }
            let isolated = f & PUNCT != 0
                || ((c as u32) < 0x7F && f & SYMBOL != 0)
                || unicode::is_cjk_ideograph(c);
            let last = words.last_mut().expect("words is never empty");
            if isolated {
                if !last.is_empty() {
                    words.push(String::new());
                }
                let last = words.last_mut().expect("words is never empty");
                push_lower(last, c, self.lowercase);
                words.push(String::new());
            } else {
                push_lower(last, c, self.lowercase);
            }
        };
        if self.strip_accents {
            for c in text.nfd() {
                push_char(c, &mut words);
            }
        } else {
            for c in text.chars() {
                push_char(c, &mut words);
            }
        }
        if words.last().is_some_and(String::is_empty) {
            words.pop();
        }
        words
    }

    /// Tokenizes `text` into `out`; a word no sequence of pieces covers becomes `unk`.
    pub fn encode(&self, t: &Tables, unk: Option<u32>, text: &str, out: &mut Vec<u32>) {
        let mut buf = String::new();
        for word in self.words(text) {
            if word.is_empty() {
                continue;
            }
            buf.clear();
            buf.push_str(WORD_START);
            buf.push_str(&word);
            let w = buf.as_bytes();
            let n = w.len();
            let before = out.len();
            let mut i = 0;
            while i < n {
                let hi = n.min(i + t.max_token_len + 1);
                let found = (i + 1..=hi)
                    .rev()
                    .find_map(|j| t.id(&w[i..j]).map(|id| (j, id)));
                match found {
                    Some((j, id)) => {
                        out.push(id);
                        i = j;
                    }
                    None => {
                        out.truncate(before);
                        break;
                    }
                }
            }
            if out.len() == before {
                out.extend(unk);
            }
        }
    }
}

fn push_lower(s: &mut String, c: char, lowercase: bool) {
    if lowercase {
        s.extend(c.to_lowercase());
    } else {
        s.push(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_like_bert() {
        let w = Wpm {
            lowercase: true,
            strip_accents: true,
        };
        assert_eq!(
            w.words("Hello, wörld!  我想 a$b\u{200d}c\tÄpfel"),
            [
                "hello", ",", "world", "!", "我", "想", "a", "$", "bc", "apfel"
            ]
        );
        let cased = Wpm {
            lowercase: false,
            strip_accents: false,
        };
        assert_eq!(cased.words(" Wörld "), ["Wörld"]);
    }
}
