//! Unigram (`tokenizer.ggml.model = t5`): SentencePiece normalization through the
//! precompiled character map, then the best-scoring segmentation (Viterbi over the token
//! prefixes at each position), unknown characters costing the lowest score minus 10.

use crate::TokenizerError;
use crate::tables::Tables;
use crate::trie::PrefixMatcher;
use crate::vocab::TokenAttr;

/// The precompiled character map: an XOR-compressed compact double array (XCDA) over input
/// bytes whose leaves point at NUL-terminated replacement strings.
struct Charsmap {
    xcda: Vec<u32>,
    replacements: Vec<u8>,
}

impl Charsmap {
    fn parse(blob: &[u8]) -> Result<Option<Charsmap>, TokenizerError> {
        if blob.is_empty() {
            return Ok(None);
        }
        let bad = |message: String| TokenizerError::BadValue {
            key: "tokenizer.ggml.precompiled_charsmap",
            message,
        };
        let Some(head) = blob.get(..4) else {
            return Err(bad(format!(
                "{} bytes, too short for the size header",
                blob.len()
            )));
        };
        let size = u32::from_le_bytes(head.try_into().expect("4 bytes")) as usize;
        if size.saturating_add(4) >= blob.len() || size % 4 != 0 {
            return Err(bad(format!(
                "XCDA size {size} does not fit in the {}-byte map",
                blob.len()
            )));
        }
        let xcda = blob[4..4 + size]
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect();
        Ok(Some(Charsmap {
            xcda,
            replacements: blob[4 + size..].to_vec(),
        }))
    }

    fn node(&self, i: u32) -> Option<u32> {
        self.xcda.get(i as usize).copied()
    }

    /// The longest input prefix the map rewrites: `(prefix length, replacement)`.
    fn longest(&self, input: &[u8]) -> Option<(usize, &[u8])> {
        let base = |n: u32| (n >> 10) << ((n & (1 << 9)) >> 6);
        let mut index = base(self.node(0)?);
        let mut best = None;
        for (k, &c) in input.iter().enumerate() {
            if c == 0 {
                break;
            }
            index ^= u32::from(c);
            let Some(n) = self.node(index) else { break };
            if n & ((1 << 31) | 0xFF) != u32::from(c) {
                break;
            }
            let leaf = (n >> 8) & 1 == 1;
            index ^= base(n);
            if leaf {
                let Some(v) = self.node(index) else { break };
                best = Some((k + 1, (v & ((1 << 31) - 1)) as usize));
            }
        }
        let (len, off) = best?;
        let rest = self.replacements.get(off..)?;
        let end = rest.iter().position(|&b| b == 0)?;
        Some((len, &rest[..end]))
    }
}

/// Unigram settings and matchers.
pub(crate) struct Ugm {
    charsmap: Option<Charsmap>,
    tokens: PrefixMatcher,
    user_defined: PrefixMatcher,
    unknown_score: f64,
    escape_whitespaces: bool,
    add_space_prefix: bool,
    remove_extra_whitespaces: bool,
}

impl Ugm {
    pub fn new(
        t: &Tables,
        charsmap: &[u8],
        escape_whitespaces: bool,
        add_space_prefix: bool,
        remove_extra_whitespaces: bool,
    ) -> Result<Ugm, TokenizerError> {
        let mut min_score = f32::MAX;
        for (i, a) in t.attrs.iter().enumerate() {
            if a.is_normal() {
                min_score = min_score.min(t.scores[i]);
            }
        }
        let ids = 0..t.len() as u32;
        let matchable = TokenAttr::NORMAL
            .with(TokenAttr::USER_DEFINED)
            .with(TokenAttr::UNUSED);
        let tokens = PrefixMatcher::new(
            ids.clone()
                .filter(|&i| t.attrs[i as usize].any(matchable))
                .map(|i| (t.text(i), i)),
        );
        let user_defined = PrefixMatcher::new(
            ids.filter(|&i| t.attrs[i as usize].is_user_defined())
                .map(|i| (t.text(i), i)),
        );
        Ok(Ugm {
            charsmap: Charsmap::parse(charsmap)?,
            tokens,
            user_defined,
            unknown_score: f64::from(min_score) - 10.0,
            escape_whitespaces,
            add_space_prefix,
            remove_extra_whitespaces,
        })
    }

    /// The normalized form of one input prefix: `(replacement bytes, input bytes used)`.
    fn normalize_prefix<'a>(&'a self, input: &'a [u8]) -> (&'a [u8], usize) {
        // A prefix along a user-defined token's path is kept as is.
        let n = self.user_defined.longest_path(input);
        if n > 0 {
            return (&input[..n], n);
        }
        if let Some((len, rep)) = self.charsmap.as_ref().and_then(|m| m.longest(input)) {
            return (rep, len);
        }
        let n = utf8_len(input[0]).min(input.len());
        match std::str::from_utf8(&input[..n]) {
            Ok(_) => (&input[..n], n),
            Err(_) => ("\u{FFFD}".as_bytes(), 1),
        }
    }

    fn normalize(&self, input: &[u8], out: &mut Vec<u8>) {
        let space: &[u8] = if self.escape_whitespaces {
            "\u{2581}".as_bytes()
        } else {
            b" "
        };
        let prepend = self.add_space_prefix;
        let merge = self.remove_extra_whitespaces;
        let mut space_prepended = false;
        let mut in_word = false;
        let mut off = 0;
        while off < input.len() {
            let (rep, used) = self.normalize_prefix(&input[off..]);
            for &c in rep {
                if c != b' ' {
                    if !in_word {
                        in_word = true;
                        if (prepend && !space_prepended) || merge {
                            out.extend_from_slice(space);
                            space_prepended = true;
                        }
                    }
                    out.push(c);
                } else {
                    in_word = false;
                    if !merge {
                        out.extend_from_slice(space);
                    }
                }
            }
            off += used;
        }
    }

    /// Tokenizes `text` into `out`.
    pub fn encode(&self, t: &Tables, unk: Option<u32>, text: &str, out: &mut Vec<u32>) {
        let mut norm = Vec::with_capacity(text.len() * 3);
        self.normalize(text.as_bytes(), &mut norm);
        let len = norm.len();
        if len == 0 {
            return;
        }
        #[derive(Clone, Copy)]
        struct Best {
            id: Option<u32>,
            from: usize,
            score: f64,
        }
        let mut best = vec![
            Best {
                id: unk,
                from: 0,
                score: -f64::MAX
            };
            len + 1
        ];
        best[0].score = 0.0;
        let mut off = 0;
        while off < len {
            let units = utf8_len(norm[off]).min(len - off);
            let here = best[off];
            let mut single_found = false;
            let mut cur = self.tokens.root();
            let mut p = off;
            while p < len {
                let Some(next) = self.tokens.step(cur, norm[p]) else {
                    break;
                };
                cur = next;
                p += 1;
                if let Some(id) = self.tokens.value(cur) {
                    if p - off == units {
                        single_found = true;
                    }
                    let s = if t.attrs[id as usize].is_user_defined() {
                        0.0
                    } else {
                        f64::from(t.scores[id as usize])
                    };
                    let challenger = here.score + s;
                    if challenger > best[p].score {
                        best[p] = Best {
                            id: Some(id),
                            from: off,
                            score: challenger,
                        };
                    }
                }
            }
            if !single_found {
                let challenger = here.score + self.unknown_score;
                let p = off + units;
                if challenger > best[p].score {
                    best[p] = Best {
                        id: unk,
                        from: off,
                        score: challenger,
                    };
                }
            }
            off += units;
        }

        // Walk back from the end; runs of unknown tokens become one.
        let start = out.len();
        let mut prev_unknown = false;
        let mut at = len;
        loop {
            let b = best[at];
            let unknown = b.id == unk;
            if !(prev_unknown && unknown) {
                out.extend(b.id);
            }
            if b.from == 0 {
                break;
            }
            prev_unknown = unknown;
            at = b.from;
        }
        out[start..].reverse();
    }
}

fn utf8_len(lead: u8) -> usize {
    match lead >> 4 {
        0xC | 0xD => 2,
        0xE => 3,
        0xF => 4,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tables(tokens: &[(&str, f32, TokenAttr)]) -> Tables {
        let toks: Vec<Vec<u8>> = tokens.iter().map(|t| t.0.as_bytes().to_vec()).collect();
        let scores: Vec<f32> = tokens.iter().map(|t| t.1).collect();
        Tables::new(&toks, &scores, tokens.iter().map(|t| t.2).collect())
    }

    #[test]
    fn viterbi_picks_the_best_segmentation() {
        let n = TokenAttr::NORMAL;
        let t = tables(&[
            ("<unk>", 0.0, TokenAttr::UNKNOWN),
            ("▁ab", -5.0, n),
            ("▁a", -1.0, n),
            ("b", -1.0, n),
            ("▁", -1.0, n),
            ("a", -1.0, n),
        ]);
        let u = Ugm::new(&t, &[], true, true, true).unwrap();
        let mut out = Vec::new();
        // "▁a" + "b" scores -2, better than "▁ab" at -5.
        u.encode(&t, Some(0), "ab", &mut out);
        assert_eq!(out, vec![2, 3]);
        out.clear();
        // Unknown characters in a row become one unknown token; extra spaces merge.
        u.encode(&t, Some(0), "  a  zz", &mut out);
        assert_eq!(out, vec![2, 4, 0]);
    }

    #[test]
    fn malformed_charsmap_is_an_error() {
        let t = tables(&[("a", 0.0, TokenAttr::NORMAL)]);
        assert!(Ugm::new(&t, &[1, 2], true, true, true).is_err());
        assert!(Ugm::new(&t, &[8, 0, 0, 0, 1, 2, 3, 4], true, true, true).is_err());
    }
}
