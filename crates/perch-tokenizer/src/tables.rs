//! Token storage: texts in one buffer, attributes, scores, and text-to-id lookup.

/// A hash map with a fast, well-distributed hasher (keys come from the model file).
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

use std::hash::BuildHasher;

use foldhash::quality::FixedState;
use hashbrown::HashTable;

use crate::vocab::TokenAttr;

/// The tokens of a vocabulary.
pub(crate) struct Tables {
    /// Token texts, concatenated.
    text: Vec<u8>,
    /// `offs[id]..offs[id + 1]` is the text of `id`.
    offs: Vec<u32>,
    /// Attributes per token.
    pub attrs: Vec<TokenAttr>,
    /// Scores per token (0 where the file has none).
    pub scores: Vec<f32>,
    /// Text to id (ids stored, hashed by their text); for duplicate texts the last id wins
    /// (as in llama.cpp). Keeping only ids keeps the table small and the lookups cached.
    map: HashTable<u32>,
    hasher: FixedState,
    /// Longest token text, in bytes.
    pub max_token_len: usize,
}

impl Tables {
    /// Stores `tokens` (empty texts become `[EMPTY_<id>]`, as in llama.cpp).
    pub fn new(tokens: &[Vec<u8>], scores: &[f32], attrs: Vec<TokenAttr>) -> Tables {
        let n = tokens.len();
        let total: usize = tokens.iter().map(Vec::len).sum();
        let mut text = Vec::with_capacity(total + 16);
        let mut offs = Vec::with_capacity(n + 1);
        offs.push(0u32);
        let hasher = FixedState::default();
        let mut map: HashTable<u32> = HashTable::with_capacity(n);
        let mut max_token_len = 0;
        for (i, t) in tokens.iter().enumerate() {
            let start = text.len();
            if t.is_empty() {
                tracing::warn!("empty token at index {i}");
                text.extend_from_slice(format!("[EMPTY_{i}]").as_bytes());
            } else {
                text.extend_from_slice(t);
            }
            offs.push(text.len() as u32);
            let word = &text[start..];
            max_token_len = max_token_len.max(word.len());
            let text_of =
                |id: u32| &text[offs[id as usize] as usize..offs[id as usize + 1] as usize];
            let h = hasher.hash_one(word);
            match map.find_mut(h, |&id| text_of(id) == word) {
                Some(slot) => *slot = i as u32,
                None => {
                    map.insert_unique(h, i as u32, |&id| hasher.hash_one(text_of(id)));
                }
            }
        }
        let scores = if scores.len() >= n {
            scores[..n].to_vec()
        } else {
            vec![0.0; n]
        };
        Tables {
            text,
            offs,
            attrs,
            scores,
            map,
            hasher,
            max_token_len,
        }
    }

    /// Number of tokens.
    #[inline]
    pub fn len(&self) -> usize {
        self.attrs.len()
    }

    /// The text of token `id` (must be in range).
    #[inline]
    pub fn text(&self, id: u32) -> &[u8] {
        let i = id as usize;
        &self.text[self.offs[i] as usize..self.offs[i + 1] as usize]
    }

    /// The id of the token whose text is `bytes`.
    #[inline]
    pub fn id(&self, bytes: &[u8]) -> Option<u32> {
        let h = self.hasher.hash_one(bytes);
        self.map.find(h, |&id| self.text(id) == bytes).copied()
    }

    /// The id of byte-fallback token `<0xXX>` for `b`, if the vocabulary has one.
    pub fn hex_byte_token(&self, b: u8) -> Option<u32> {
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        let name = [
            b'<',
            b'0',
            b'x',
            HEX[(b >> 4) as usize],
            HEX[(b & 15) as usize],
            b'>',
        ];
        self.id(&name)
    }
}
