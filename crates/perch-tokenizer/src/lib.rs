//! # perch-tokenizer
//!
//! Text to token ids and back, for the vocabularies stored in GGUF files, giving the ids
//! llama.cpp gives (its `llama_tokenize` / `llama_detokenize` semantics).
//!
//! ## Design
//!
//! * [`Vocab`] is the plain data of a file's `tokenizer.ggml.*` keys; only
//!   [`Vocab::from_gguf`] touches GGUF. [`Tokenizer::from_vocab`] applies llama.cpp's rules:
//!   defaults per tokenizer type and per pre-tokenizer name, special token ids, detection of
//!   end-of-generation and fill-in-the-middle tokens by their text, attribute fix-ups.
//! * Four algorithms, chosen by `tokenizer.ggml.model`:
//!   * `llama` — SentencePiece BPE: merge by token score, `<0xXX>` byte fallback (`spm.rs`);
//!   * `gpt2` and `gemma4` — byte-level BPE with a pre-tokenizer per `tokenizer.ggml.pre`
//!     (GPT-2, Llama 3, Qwen 2, DeepSeek, Falcon, StarCoder, ... : see `pretok.rs`) and merge
//!     ranks (`bpe.rs`);
//!   * `bert` — WordPiece with BERT normalization (`wpm.rs`);
//!   * `t5` — Unigram with the precompiled SentencePiece character map (`ugm.rs`).
//! * Special tokens are split out of the text first (`special.rs`): user-defined tokens
//!   always, control tokens only when the caller asks (`parse_special`).
//! * Every token's rendering is computed once at load (`decode.rs`), so decoding is copying.
//!   [`StreamDecoder`] turns generated tokens into text deltas that never end inside a UTF-8
//!   character.
//!
//! Encoding and decoding never panic: text is a `&str`, unknown ids are a
//! [`TokenizerError::InvalidTokenId`], and vocabularies are validated when loaded.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let file = perch_gguf::GgufFile::open("model.gguf")?;
//! let tok = perch_tokenizer::Tokenizer::from_gguf(&file)?;
//! let ids = tok.encode("<|im_start|>user\nHi<|im_end|>", true, true)?;
//! let mut stream = tok.stream_decoder(false);
//! let mut text = String::new();
//! for &id in &ids {
//!     text += &stream.push(id)?;
//! }
//! text += &stream.finish();
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

mod bpe;
mod decode;
mod error;
mod load;
mod pretok;
mod special;
mod spm;
mod tables;
mod trie;
mod ugm;
mod unicode;
mod vocab;
mod wpm;

pub use decode::{StreamDecoder, Utf8Stream};
pub use error::TokenizerError;
pub use vocab::{SpecialIds as StoredSpecialIds, TokenAttr, Vocab, token_type};

use perch_gguf::GgufFile;

use crate::bpe::Bpe;
use crate::decode::Pieces;
use crate::special::{Fragment, SpecialTokens};
use crate::tables::Tables;
use crate::ugm::Ugm;
use crate::wpm::Wpm;

/// The tokenizer algorithm family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VocabKind {
    /// SentencePiece BPE with scores and byte fallback (`llama`).
    Spm,
    /// Byte-level BPE with merges and a pre-tokenizer (`gpt2`, `gemma4`).
    Bpe,
    /// WordPiece (`bert`).
    Wpm,
    /// Unigram (`t5`).
    Ugm,
}

/// The special token ids of a tokenizer, after defaults and detection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SpecialIds {
    /// Beginning of sequence.
    pub bos: Option<u32>,
    /// End of sequence.
    pub eos: Option<u32>,
    /// End of turn (`<|eot_id|>`, `<|im_end|>`, `<end_of_turn>`, ...).
    pub eot: Option<u32>,
    /// End of message (`<|eom_id|>`).
    pub eom: Option<u32>,
    /// Unknown.
    pub unk: Option<u32>,
    /// Separator.
    pub sep: Option<u32>,
    /// Padding.
    pub pad: Option<u32>,
    /// Mask.
    pub mask: Option<u32>,
    /// Fill-in-the-middle prefix.
    pub fim_pre: Option<u32>,
    /// Fill-in-the-middle suffix.
    pub fim_suf: Option<u32>,
    /// Fill-in-the-middle middle.
    pub fim_mid: Option<u32>,
    /// Fill-in-the-middle padding.
    pub fim_pad: Option<u32>,
    /// Fill-in-the-middle repository name.
    pub fim_rep: Option<u32>,
    /// Fill-in-the-middle file separator.
    pub fim_sep: Option<u32>,
}

/// Flags resolved from defaults and the file.
#[derive(Clone, Debug)]
struct Config {
    add_bos: bool,
    add_eos: bool,
    add_sep: bool,
    add_space_prefix: bool,
    escape_whitespaces: bool,
    clean_spaces: bool,
    remove_extra_whitespaces: bool,
}

enum Algo {
    Spm {
        byte_tokens: Box<[Option<u32>; 256]>,
    },
    Bpe(Box<Bpe>),
    Wpm(Wpm),
    Ugm(Box<Ugm>),
}

/// A tokenizer for one vocabulary. Immutable and `Sync`: share it across threads.
pub struct Tokenizer {
    kind: VocabKind,
    model: String,
    pre: Option<String>,
    tables: Tables,
    cfg: Config,
    ids: SpecialIds,
    /// End-of-generation ids, sorted.
    eog: Vec<u32>,
    special: SpecialTokens,
    pieces: Pieces,
    algo: Algo,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("kind", &self.kind)
            .field("model", &self.model)
            .field("pre", &self.pre)
            .field("n_vocab", &self.n_vocab())
            .field("config", &self.cfg)
            .field("special", &self.ids)
            .field("eog", &self.eog)
            .finish()
    }
}

impl Tokenizer {
    /// Builds the tokenizer of a GGUF file (its `tokenizer.ggml.*` keys).
    pub fn from_gguf(file: &GgufFile) -> Result<Tokenizer, TokenizerError> {
        Tokenizer::from_vocab(&Vocab::from_gguf(file)?)
    }

    /// Tokenizes `text` as llama.cpp's `llama_tokenize`.
    ///
    /// `add_special` adds the BOS / EOS (SEP for WordPiece) tokens the vocabulary asks for;
    /// `parse_special` recognizes the texts of control tokens (such as `<|im_start|>`) in
    /// `text` as those tokens (user-defined tokens are always recognized).
    pub fn encode(
        &self,
        text: &str,
        add_special: bool,
        parse_special: bool,
    ) -> Result<Vec<u32>, TokenizerError> {
        let frags = self
            .special
            .partition(&self.tables, text.as_bytes(), parse_special);
        let mut out = Vec::with_capacity(text.len() / 3 + 4);
        let need = |id: Option<u32>, which| id.ok_or(TokenizerError::MissingSpecialToken { which });
        let c = &self.cfg;
        let frag_text = |r: std::ops::Range<usize>| -> std::borrow::Cow<'_, str> {
            match text.get(r.clone()) {
                Some(s) => s.into(),
                None => String::from_utf8_lossy(&text.as_bytes()[r]),
            }
        };
        match &self.algo {
            Algo::Spm { byte_tokens } => {
                if add_special && c.add_bos {
                    out.push(need(self.ids.bos, "BOS")?);
                }
                let mut prev_special = true;
                for f in frags {
                    match f {
                        Fragment::Text(r) => {
                            let mut s = String::with_capacity(r.len() + 3);
                            if c.add_space_prefix && prev_special {
                                s.push(' ');
                            }
                            s.push_str(&frag_text(r));
                            let s = s.replace(' ', "\u{2581}");
                            spm::encode(&self.tables, byte_tokens, &s, &mut out);
                            prev_special = false;
                        }
                        Fragment::Token(id) => {
                            out.push(id);
                            prev_special = true;
                        }
                    }
                }
                if add_special && c.add_eos {
                    out.push(need(self.ids.eos, "EOS")?);
                }
            }
            Algo::Bpe(bpe) => {
                if add_special && c.add_bos {
                    out.push(need(self.ids.bos, "BOS")?);
                }
                for f in frags {
                    match f {
                        Fragment::Text(r) => {
                            let s = frag_text(r);
                            if c.escape_whitespaces {
                                bpe.encode(&self.tables, &s.replace(' ', "\u{2581}"), &mut out)?;
                            } else {
                                bpe.encode(&self.tables, &s, &mut out)?;
                            }
                        }
                        Fragment::Token(id) => out.push(id),
                    }
                }
                if add_special && c.add_eos {
                    out.push(need(self.ids.eos, "EOS")?);
                }
            }
            Algo::Wpm(wpm) => {
                if add_special {
                    out.push(need(self.ids.bos, "BOS")?);
                }
                for f in frags {
                    match f {
                        Fragment::Text(r) => {
                            wpm.encode(&self.tables, self.ids.unk, &frag_text(r), &mut out)
                        }
                        Fragment::Token(id) => out.push(id),
                    }
                }
                if add_special {
                    out.push(need(self.ids.sep, "SEP")?);
                }
            }
            Algo::Ugm(ugm) => {
                if add_special && c.add_bos {
                    out.push(need(self.ids.bos, "BOS")?);
                }
                for f in frags {
                    match f {
                        Fragment::Text(r) => {
                            ugm.encode(&self.tables, self.ids.unk, &frag_text(r), &mut out)
                        }
                        Fragment::Token(id) => out.push(id),
                    }
                }
                if add_special && c.add_eos {
                    out.push(need(self.ids.eos, "EOS")?);
                }
            }
        }
        Ok(out)
    }

    fn check_id(&self, id: u32) -> Result<(), TokenizerError> {
        if (id as usize) < self.tables.len() {
            Ok(())
        } else {
            Err(TokenizerError::InvalidTokenId {
                id,
                n_vocab: self.n_vocab(),
            })
        }
    }

    /// Checks that every id is in the vocabulary.
    pub fn validate_ids(&self, ids: &[u32]) -> Result<(), TokenizerError> {
        ids.iter().try_for_each(|&id| self.check_id(id))
    }

    /// The number of tokens.
    pub fn n_vocab(&self) -> u32 {
        self.tables.len() as u32
    }

    /// The algorithm family.
    pub fn kind(&self) -> VocabKind {
        self.kind
    }

    /// `tokenizer.ggml.model`.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// The pre-tokenizer name in effect (BPE only; `None` if the file names none).
    pub fn pre(&self) -> Option<&str> {
        self.pre.as_deref()
    }

    /// The beginning-of-sequence token.
    pub fn bos(&self) -> Option<u32> {
        self.ids.bos
    }

    /// The end-of-sequence token.
    pub fn eos(&self) -> Option<u32> {
        self.ids.eos
    }

    /// The end-of-turn token.
    pub fn eot(&self) -> Option<u32> {
        self.ids.eot
    }

    /// All special token ids.
    pub fn special_ids(&self) -> &SpecialIds {
        &self.ids
    }

    /// Whether `id` ends generation (EOS, EOT, EOM and the tokens llama.cpp recognizes by
    /// their text: `<|im_end|>`, `<|endoftext|>`, `<end_of_turn>`, ...).
    pub fn is_eog(&self, id: u32) -> bool {
        self.eog.binary_search(&id).is_ok()
    }

    /// The end-of-generation ids, sorted.
    pub fn eog_ids(&self) -> &[u32] {
        &self.eog
    }

    /// Whether `encode(.., add_special = true, ..)` adds BOS.
    pub fn add_bos(&self) -> bool {
        self.cfg.add_bos
    }

    /// Whether `encode(.., add_special = true, ..)` adds EOS.
    pub fn add_eos(&self) -> bool {
        self.cfg.add_eos
    }

    /// Whether the vocabulary asks for a SEP token after a sequence (embedding models).
    pub fn add_sep(&self) -> bool {
        self.cfg.add_sep
    }

    /// Whether a space is put before the text (SentencePiece) and removed when decoding.
    pub fn add_space_prefix(&self) -> bool {
        self.cfg.add_space_prefix
    }

    /// The stored text of token `id` (raw bytes: `▁` for spaces in SentencePiece
    /// vocabularies, GPT-2 byte-map characters in byte-level ones).
    pub fn token_text(&self, id: u32) -> Option<&[u8]> {
        ((id as usize) < self.tables.len()).then(|| self.tables.text(id))
    }

    /// The id of the token whose stored text is `text`.
    pub fn token_id(&self, text: impl AsRef<[u8]>) -> Option<u32> {
        self.tables.id(text.as_ref())
    }

    /// The attributes of token `id`.
    pub fn token_attr(&self, id: u32) -> Option<TokenAttr> {
        self.tables.attrs.get(id as usize).copied()
    }

    /// The score of token `id` (0 where the file has none).
    pub fn token_score(&self, id: u32) -> Option<f32> {
        self.tables.scores.get(id as usize).copied()
    }

    /// The tokens split out of text before tokenizing (control, user-defined, unknown),
    /// longest text first.
    pub fn special_token_candidates(&self) -> &[u32] {
        self.special.ids()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizer_is_send_and_sync() {
        fn assert<T: Send + Sync>() {}
        assert::<Tokenizer>();
    }
}
