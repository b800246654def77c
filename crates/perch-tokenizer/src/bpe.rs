//! Byte-level BPE (`tokenizer.ggml.model = gpt2`, and SentencePiece-style `gemma4`):
//! pre-tokenize, then within each word merge the adjacent pair of lowest merge rank until
//! none is left.
//!
//! Merges are looked up by the ids of the two pieces, so merging allocates nothing. Strings
//! that appear in the merge list but are not tokens get ids past the vocabulary, so the merge
//! order is exactly the list's even for such odd files.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::tables::FastMap;

use crate::TokenizerError;
use crate::pretok::{PreSpec, PreTokenizer};
use crate::tables::Tables;
use crate::unicode::ByteMap;

/// Everything BPE needs besides the token tables.
pub(crate) struct Bpe {
    pre: PreTokenizer,
    /// (left id, right id) packed in a u64 -> (rank, merged id).
    merges: FastMap<u64, (u32, u32)>,
    /// Merge-list strings that are not tokens, with their ids (>= n_vocab).
    extra: FastMap<Box<[u8]>, u32>,
    /// Byte-encoded mode: the id of each byte's map character.
    byte_ids: [Option<u32>; 256],
    /// Fallback for a piece that is no token: byte-encoded mode looks up each byte of its
    /// encoded text as a one-byte token; raw mode looks up `<0xXX>`.
    fallback: [Option<u32>; 256],
    byte_encode: bool,
    ignore_merges: bool,
    /// Gemma 4: a word of only newlines that is a token is emitted as is.
    newline_words: bool,
}

#[inline]
fn key(l: u32, r: u32) -> u64 {
    (u64::from(l) << 32) | u64::from(r)
}

impl Bpe {
    /// Builds the merge table from `"left right"` strings (best first).
    pub fn new(
        t: &Tables,
        merges: &[Vec<u8>],
        spec: &PreSpec,
        newline_words: bool,
    ) -> Result<Bpe, TokenizerError> {
        let n_vocab = t.len() as u32;
        let mut extra: FastMap<Box<[u8]>, u32> = FastMap::default();
        let intern = |extra: &mut FastMap<Box<[u8]>, u32>, s: &[u8]| -> u32 {
            if let Some(id) = t.id(s) {
                return id;
            }
            if let Some(&id) = extra.get(s) {
                return id;
            }
            let id = n_vocab + extra.len() as u32;
            extra.insert(s.into(), id);
            id
        };
        let mut table = FastMap::with_capacity_and_hasher(merges.len(), Default::default());
        let mut buf = Vec::new();
        for (rank, m) in merges.iter().enumerate() {
            // llama.cpp splits at the first space after the first byte.
            let Some(pos) = m.iter().skip(1).position(|&b| b == b' ').map(|p| p + 1) else {
                continue;
            };
            let (left, right) = (&m[..pos], &m[pos + 1..]);
            if left.is_empty() || right.is_empty() {
                continue;
            }
            let l = intern(&mut extra, left);
            let r = intern(&mut extra, right);
            buf.clear();
            buf.extend_from_slice(left);
            buf.extend_from_slice(right);
            let merged = intern(&mut extra, &buf);
            // The first occurrence of a pair keeps its rank.
            table.entry(key(l, r)).or_insert((rank as u32, merged));
        }
        if n_vocab as usize + extra.len() >= u32::MAX as usize {
            return Err(TokenizerError::VocabTooLarge(
                n_vocab as usize + extra.len(),
            ));
        }

        let map = ByteMap::get();
        let lookup = |s: &[u8]| t.id(s).or_else(|| extra.get(s).copied());
        let byte_ids = std::array::from_fn(|b| lookup(map.encode(b as u8)));
        let fallback = if spec.byte_encode {
            std::array::from_fn(|b| t.id(&[b as u8]))
        } else {
            std::array::from_fn(|b| t.hex_byte_token(b as u8))
        };
        Ok(Bpe {
            pre: PreTokenizer::new(&spec.patterns)?,
            merges: table,
            extra,
            byte_ids,
            fallback,
            byte_encode: spec.byte_encode,
            ignore_merges: spec.ignore_merges,
            newline_words,
        })
    }

    fn lookup(&self, t: &Tables, s: &[u8]) -> Option<u32> {
        t.id(s).or_else(|| self.extra.get(s).copied())
    }

    /// Tokenizes `text` (already space-escaped where the vocabulary wants it) into `out`.
    pub fn encode(&self, t: &Tables, text: &str, out: &mut Vec<u32>) -> Result<(), TokenizerError> {
        let mut w = Work::default();
        for range in self.pre.split(text)? {
            self.encode_word(t, &text.as_bytes()[range], &mut w, out);
        }
        Ok(())
    }

    fn encode_word(&self, t: &Tables, word: &[u8], w: &mut Work, out: &mut Vec<u32>) {
        let n_vocab = t.len() as u32;
        let map = ByteMap::get();
        if self.ignore_merges {
            let whole = if self.byte_encode {
                w.encoded.clear();
                for &b in word {
                    w.encoded.extend_from_slice(map.encode(b));
                }
                t.id(&w.encoded)
            } else {
                t.id(word)
            };
            if let Some(id) = whole {
                out.push(id);
                return;
            }
        } else if self.newline_words && word.iter().all(|&b| b == b'\n') {
            if let Some(id) = t.id(word) {
                out.push(id);
                return;
            }
        }

        // Initial symbols: one per byte (byte-encoded) or per character (raw).
        w.syms.clear();
        if self.byte_encode {
            for (i, &b) in word.iter().enumerate() {
                w.syms.push(Sym::new(i, i + 1, self.byte_ids[b as usize]));
            }
        } else {
            // `word` is a whole number of characters (pieces end at char boundaries).
            let mut i = 0;
            while i < word.len() {
                let n = utf8_len(word[i]).min(word.len() - i);
                w.syms
                    .push(Sym::new(i, i + n, self.lookup(t, &word[i..i + n])));
                i += n;
            }
        }
        let n = w.syms.len();
        for (i, s) in w.syms.iter_mut().enumerate() {
            s.prev = i as i32 - 1;
            s.next = if i + 1 == n { -1 } else { i as i32 + 1 };
        }

        w.heap.clear();
        for i in 1..n {
            self.push_pair(&w.syms, &mut w.heap, i as i32 - 1, i as i32);
        }
        while let Some(Reverse((_, left, right, lid, rid, merged))) = w.heap.pop() {
            let (l, r) = (w.syms[left as usize], w.syms[right as usize]);
            if !l.alive || !r.alive || l.id != lid || r.id != rid {
                continue; // stale: one side changed since this pair was queued
            }
            let ls = &mut w.syms[left as usize];
            ls.id = merged;
            ls.end = r.end;
            ls.next = r.next;
            w.syms[right as usize].alive = false;
            if r.next >= 0 {
                w.syms[r.next as usize].prev = left as i32;
            }
            let (prev, next) = (w.syms[left as usize].prev, w.syms[left as usize].next);
            self.push_pair(&w.syms, &mut w.heap, prev, left as i32);
            self.push_pair(&w.syms, &mut w.heap, left as i32, next);
        }

        for s in w.syms.iter().filter(|s| s.alive) {
            if s.id < n_vocab {
                out.push(s.id);
                continue;
            }
            // Not a token: fall back byte by byte.
            for &b in &word[s.start as usize..s.end as usize] {
                if self.byte_encode {
                    for &e in map.encode(b) {
                        out.extend(self.fallback[e as usize]);
                    }
                } else {
                    out.extend(self.fallback[b as usize]);
                }
            }
        }
    }

    fn push_pair(
        &self,
        syms: &[Sym],
        heap: &mut BinaryHeap<Reverse<Queued>>,
        left: i32,
        right: i32,
    ) {
        if left < 0 || right < 0 {
            return;
        }
        let (l, r) = (syms[left as usize].id, syms[right as usize].id);
        if l == NONE || r == NONE {
            return;
        }
        if let Some(&(rank, merged)) = self.merges.get(&key(l, r)) {
            heap.push(Reverse((rank, left as u32, right as u32, l, r, merged)));
        }
    }
}

/// (rank, left index, right index, left id, right id, merged id): lowest rank first, then
/// leftmost.
type Queued = (u32, u32, u32, u32, u32, u32);

const NONE: u32 = u32::MAX;

#[derive(Clone, Copy)]
struct Sym {
    start: u32,
    end: u32,
    id: u32,
    prev: i32,
    next: i32,
    alive: bool,
}

impl Sym {
    fn new(start: usize, end: usize, id: Option<u32>) -> Sym {
        Sym {
            start: start as u32,
            end: end as u32,
            id: id.unwrap_or(NONE),
            prev: -1,
            next: -1,
            alive: true,
        }
    }
}

/// Buffers reused across the words of one call.
#[derive(Default)]
struct Work {
    syms: Vec<Sym>,
    heap: BinaryHeap<Reverse<Queued>>,
    encoded: Vec<u8>,
}

fn utf8_len(lead: u8) -> usize {
    match lead >> 4 {
        0xC | 0xD => 2,
        0xE => 3,
        0xF => 4,
        _ => 1,
    }
}
