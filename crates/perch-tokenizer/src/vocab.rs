//! [`Vocab`]: what a model file says about its tokenizer, as plain data.
//!
//! A `Vocab` holds the `tokenizer.ggml.*` facts as they are stored (absent keys are `None`);
//! [`crate::Tokenizer::from_vocab`] applies llama.cpp's defaults and fix-ups to it. Only
//! [`Vocab::from_gguf`] knows about GGUF, so tests and other formats can build a `Vocab` by
//! hand.

use perch_gguf::{Array, GgufFile};

use crate::TokenizerError;

/// Token type ids as stored in `tokenizer.ggml.token_type` (llama.cpp's `llama_token_type`).
pub mod token_type {
    /// Undefined.
    pub const UNDEFINED: i32 = 0;
    /// A normal token.
    pub const NORMAL: i32 = 1;
    /// The unknown token.
    pub const UNKNOWN: i32 = 2;
    /// A control token (`<s>`, `<|im_start|>`, ...).
    pub const CONTROL: i32 = 3;
    /// A user-defined token (added tokens that are not control tokens).
    pub const USER_DEFINED: i32 = 4;
    /// An unused (reserved) token.
    pub const UNUSED: i32 = 5;
    /// A byte token (`<0x0A>`).
    pub const BYTE: i32 = 6;
}

/// Token attributes (llama.cpp's `llama_token_attr` bit set).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TokenAttr(pub u16);

impl TokenAttr {
    /// No attribute (an undefined token type).
    pub const UNDEFINED: TokenAttr = TokenAttr(0);
    /// The unknown token.
    pub const UNKNOWN: TokenAttr = TokenAttr(1 << 0);
    /// Unused / reserved.
    pub const UNUSED: TokenAttr = TokenAttr(1 << 1);
    /// A normal token.
    pub const NORMAL: TokenAttr = TokenAttr(1 << 2);
    /// A control token: not rendered unless asked, parsed from text only when asked.
    pub const CONTROL: TokenAttr = TokenAttr(1 << 3);
    /// A user-defined token: always rendered, always split out of text before tokenizing.
    pub const USER_DEFINED: TokenAttr = TokenAttr(1 << 4);
    /// A byte-fallback token (`<0xXX>`).
    pub const BYTE: TokenAttr = TokenAttr(1 << 5);
    /// Normalized (unused by perch, kept for parity).
    pub const NORMALIZED: TokenAttr = TokenAttr(1 << 6);
    /// Whitespace to the left of this special token is swallowed when it is parsed.
    pub const LSTRIP: TokenAttr = TokenAttr(1 << 7);
    /// Whitespace to the right of this special token is swallowed when it is parsed.
    pub const RSTRIP: TokenAttr = TokenAttr(1 << 8);
    /// Single word (unused by perch, kept for parity).
    pub const SINGLE_WORD: TokenAttr = TokenAttr(1 << 9);

    /// Whether any bit of `other` is set.
    #[inline]
    pub fn any(self, other: TokenAttr) -> bool {
        self.0 & other.0 != 0
    }

    /// `self` with the bits of `other` set.
    #[inline]
    pub fn with(self, other: TokenAttr) -> TokenAttr {
        TokenAttr(self.0 | other.0)
    }

    /// `self` with the bits of `other` cleared.
    #[inline]
    pub fn without(self, other: TokenAttr) -> TokenAttr {
        TokenAttr(self.0 & !other.0)
    }

    /// Whether this is a control token.
    pub fn is_control(self) -> bool {
        self.any(TokenAttr::CONTROL)
    }

    /// Whether this is a user-defined token.
    pub fn is_user_defined(self) -> bool {
        self.any(TokenAttr::USER_DEFINED)
    }

    /// Whether this is a byte-fallback token.
    pub fn is_byte(self) -> bool {
        self.any(TokenAttr::BYTE)
    }

    /// Whether this token is marked unused.
    pub fn is_unused(self) -> bool {
        self.any(TokenAttr::UNUSED)
    }

    /// Whether this is the unknown token type.
    pub fn is_unknown(self) -> bool {
        self.any(TokenAttr::UNKNOWN)
    }

    /// Whether this is a normal token.
    pub fn is_normal(self) -> bool {
        self.any(TokenAttr::NORMAL)
    }

    /// The attribute for a stored token type (unknown type ids are undefined, as in llama.cpp).
    pub fn from_token_type(t: i32) -> TokenAttr {
        match t {
            token_type::UNKNOWN => TokenAttr::UNKNOWN,
            token_type::UNUSED => TokenAttr::UNUSED,
            token_type::NORMAL => TokenAttr::NORMAL,
            token_type::CONTROL => TokenAttr::CONTROL,
            token_type::USER_DEFINED => TokenAttr::USER_DEFINED,
            token_type::BYTE => TokenAttr::BYTE,
            _ => TokenAttr::UNDEFINED,
        }
    }
}

/// Special token ids as stored (`None`: the key is absent).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SpecialIds {
    /// `tokenizer.ggml.bos_token_id`
    pub bos: Option<i64>,
    /// `tokenizer.ggml.eos_token_id`
    pub eos: Option<i64>,
    /// `tokenizer.ggml.eot_token_id`
    pub eot: Option<i64>,
    /// `tokenizer.ggml.eom_token_id`
    pub eom: Option<i64>,
    /// `tokenizer.ggml.unknown_token_id`
    pub unk: Option<i64>,
    /// `tokenizer.ggml.seperator_token_id` (sic)
    pub sep: Option<i64>,
    /// `tokenizer.ggml.padding_token_id`
    pub pad: Option<i64>,
    /// `tokenizer.ggml.mask_token_id`
    pub mask: Option<i64>,
    /// `tokenizer.ggml.fim_pre_token_id` (or the older `prefix_token_id`)
    pub fim_pre: Option<i64>,
    /// `tokenizer.ggml.fim_suf_token_id` (or the older `suffix_token_id`)
    pub fim_suf: Option<i64>,
    /// `tokenizer.ggml.fim_mid_token_id` (or the older `middle_token_id`)
    pub fim_mid: Option<i64>,
    /// `tokenizer.ggml.fim_pad_token_id`
    pub fim_pad: Option<i64>,
    /// `tokenizer.ggml.fim_rep_token_id`
    pub fim_rep: Option<i64>,
    /// `tokenizer.ggml.fim_sep_token_id`
    pub fim_sep: Option<i64>,
}

/// The tokenizer facts of a model file, as stored.
#[derive(Clone, Debug, Default)]
pub struct Vocab {
    /// `tokenizer.ggml.model`: `llama` (SentencePiece), `gpt2` (byte-level BPE), `bert`
    /// (WordPiece), `t5` (Unigram), `gemma4` (BPE over SentencePiece-style text), ...
    pub model: String,
    /// `tokenizer.ggml.pre`, the BPE pre-tokenizer name (`None` if absent).
    pub pre: Option<String>,
    /// `tokenizer.ggml.tokens`, as raw bytes (some vocabularies hold non-UTF-8 tokens).
    pub tokens: Vec<Vec<u8>>,
    /// `tokenizer.ggml.scores` (empty if absent).
    pub scores: Vec<f32>,
    /// `tokenizer.ggml.token_type` (empty if absent).
    pub token_types: Vec<i32>,
    /// `tokenizer.ggml.merges`: `"left right"` pairs, best first.
    pub merges: Vec<Vec<u8>>,
    /// Special token ids.
    pub special: SpecialIds,
    /// `tokenizer.ggml.add_bos_token`
    pub add_bos: Option<bool>,
    /// `tokenizer.ggml.add_eos_token`
    pub add_eos: Option<bool>,
    /// `tokenizer.ggml.add_sep_token`
    pub add_sep: Option<bool>,
    /// `tokenizer.ggml.add_space_prefix`
    pub add_space_prefix: Option<bool>,
    /// `tokenizer.ggml.remove_extra_whitespaces`
    pub remove_extra_whitespaces: Option<bool>,
    /// `tokenizer.ggml.normalizer.lowercase` (WordPiece)
    pub normalizer_lowercase: Option<bool>,
    /// `tokenizer.ggml.normalizer.strip_accents` (WordPiece)
    pub normalizer_strip_accents: Option<bool>,
    /// `tokenizer.ggml.precompiled_charsmap` (Unigram normalization table; empty if absent).
    pub precompiled_charsmap: Vec<u8>,
    /// `general.name` (llama.cpp keys a few per-model token attributes on it).
    pub general_name: Option<String>,
    /// `general.architecture`
    pub general_architecture: Option<String>,
}

const KEY_MODEL: &str = "tokenizer.ggml.model";
const KEY_PRE: &str = "tokenizer.ggml.pre";
const KEY_TOKENS: &str = "tokenizer.ggml.tokens";
const KEY_SCORES: &str = "tokenizer.ggml.scores";
const KEY_TOKEN_TYPE: &str = "tokenizer.ggml.token_type";
const KEY_MERGES: &str = "tokenizer.ggml.merges";
const KEY_CHARSMAP: &str = "tokenizer.ggml.precompiled_charsmap";

impl Vocab {
    /// Reads the `tokenizer.ggml.*` keys (and `general.name` / `general.architecture`).
    ///
    /// Fails with a [`TokenizerError`] naming the key when one has a type llama.cpp would
    /// refuse too, or when a per-token array is shorter than the token list.
    pub fn from_gguf(file: &GgufFile) -> Result<Vocab, TokenizerError> {
        let md = file.metadata();
        let model = md.get_str(KEY_MODEL)?.to_string();
        let pre = md.opt_str(KEY_PRE)?.map(str::to_string);

        let tokens: Vec<Vec<u8>> = match md.opt_string_array(KEY_TOKENS)? {
            Some(t) => t.iter().map(|s| s.as_bytes().to_vec()).collect(),
            None => Vec::new(),
        };
        let n = tokens.len();

        let scores = match md.opt_array(KEY_SCORES)? {
            None => Vec::new(),
            Some(Array::F32(v)) => v.clone(),
            Some(Array::I32(v)) => v.iter().map(|&x| x as f32).collect(),
            Some(a) => {
                return Err(TokenizerError::BadValue {
                    key: KEY_SCORES,
                    message: format!("expected an array of f32 or i32, found {:?}", a.elem_type()),
                });
            }
        };
        if !scores.is_empty() && scores.len() < n {
            return Err(TokenizerError::ShortArray {
                key: KEY_SCORES,
                len: scores.len(),
                n_tokens: n,
            });
        }
        let token_types = md
            .opt_i32_array(KEY_TOKEN_TYPE)?
            .map(<[i32]>::to_vec)
            .unwrap_or_default();
        if md.contains(KEY_TOKEN_TYPE) && token_types.len() < n {
            return Err(TokenizerError::ShortArray {
                key: KEY_TOKEN_TYPE,
                len: token_types.len(),
                n_tokens: n,
            });
        }
        let merges = match md.opt_string_array(KEY_MERGES)? {
            Some(m) => m.iter().map(|s| s.as_bytes().to_vec()).collect(),
            None => Vec::new(),
        };
        let precompiled_charsmap = match md.opt_array(KEY_CHARSMAP)? {
            None => Vec::new(),
            Some(Array::U8(v)) => v.clone(),
            Some(Array::I8(v)) => v.iter().map(|&x| x as u8).collect(),
            Some(a) => {
                return Err(TokenizerError::BadValue {
                    key: KEY_CHARSMAP,
                    message: format!("expected an array of u8 or i8, found {:?}", a.elem_type()),
                });
            }
        };

        let id = |key: &str| -> Result<Option<i64>, TokenizerError> { Ok(md.opt_i64(key)?) };
        let first = |a: Option<i64>, b: Option<i64>| a.or(b);
        let special = SpecialIds {
            bos: id("tokenizer.ggml.bos_token_id")?,
            eos: id("tokenizer.ggml.eos_token_id")?,
            eot: id("tokenizer.ggml.eot_token_id")?,
            eom: id("tokenizer.ggml.eom_token_id")?,
            unk: id("tokenizer.ggml.unknown_token_id")?,
            sep: id("tokenizer.ggml.seperator_token_id")?,
            pad: id("tokenizer.ggml.padding_token_id")?,
            mask: id("tokenizer.ggml.mask_token_id")?,
            // llama.cpp reads the new key first and lets the deprecated one override it.
            fim_pre: first(
                id("tokenizer.ggml.prefix_token_id")?,
                id("tokenizer.ggml.fim_pre_token_id")?,
            ),
            fim_suf: first(
                id("tokenizer.ggml.suffix_token_id")?,
                id("tokenizer.ggml.fim_suf_token_id")?,
            ),
            fim_mid: first(
                id("tokenizer.ggml.middle_token_id")?,
                id("tokenizer.ggml.fim_mid_token_id")?,
            ),
            fim_pad: id("tokenizer.ggml.fim_pad_token_id")?,
            fim_rep: id("tokenizer.ggml.fim_rep_token_id")?,
            fim_sep: id("tokenizer.ggml.fim_sep_token_id")?,
        };

        Ok(Vocab {
            model,
            pre,
            tokens,
            scores,
            token_types,
            merges,
            special,
            add_bos: md.opt_bool("tokenizer.ggml.add_bos_token")?,
            add_eos: md.opt_bool("tokenizer.ggml.add_eos_token")?,
            add_sep: md.opt_bool("tokenizer.ggml.add_sep_token")?,
            add_space_prefix: md.opt_bool("tokenizer.ggml.add_space_prefix")?,
            remove_extra_whitespaces: md.opt_bool("tokenizer.ggml.remove_extra_whitespaces")?,
            normalizer_lowercase: md.opt_bool("tokenizer.ggml.normalizer.lowercase")?,
            normalizer_strip_accents: md.opt_bool("tokenizer.ggml.normalizer.strip_accents")?,
            precompiled_charsmap,
            general_name: md
                .opt_bytes("general.name")?
                .map(|b| String::from_utf8_lossy(b).into_owned()),
            general_architecture: md
                .opt_bytes("general.architecture")?
                .map(|b| String::from_utf8_lossy(b).into_owned()),
        })
    }
}
