//! BPE pre-tokenizers: splitting text into words before merges, per `tokenizer.ggml.pre`.
//!
//! A pre-tokenizer is a list of patterns applied in turn: each one splits every piece the
//! previous ones produced, its matches and the text between them both becoming pieces (the
//! "isolated" split of HuggingFace's `Split` pre-tokenizer, and what llama.cpp does).
//!
//! The four patterns that nearly every model uses (GPT-2's, Llama 3's, Qwen 2's, Qwen 3.5's)
//! and the newline split are hand-written scanners over code points — the patterns need
//! look-ahead, and a scanner is several times faster than a backtracking regex. Every other
//! pattern runs on `fancy-regex` with Unicode classes.

use std::ops::Range;

use fancy_regex::Regex;

use crate::TokenizerError;
use crate::unicode::{self, LETTER, MARK, NUMBER, WHITESPACE};

/// GPT-2's pattern.
const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
/// Llama 3's pattern (case-insensitive contractions spelled out).
const LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen 2's pattern: Llama 3's with single digits.
const QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen 3.5's pattern: Qwen 2's with combining marks joining letter runs.
const QWEN35: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Runs of newlines and runs of anything else.
const NEWLINES: &str = r"[^\n]+|[\n]+";

const CONTRACTIONS: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])";

/// How a pre-tokenizer changes the vocabulary's defaults (llama.cpp's per-name rules).
#[derive(Clone, Debug)]
pub struct PreSpec {
    /// The canonical kind (for `Debug` and tests).
    pub kind: &'static str,
    /// The patterns, applied in order.
    pub patterns: Vec<String>,
    /// Whether words are mapped through GPT-2's byte map before merging (false for
    /// SentencePiece-style BPE, whose tokens are raw UTF-8 with `▁` for spaces).
    pub byte_encode: bool,
    /// `clean_up_tokenization_spaces` when decoding.
    pub clean_spaces: bool,
    /// A whole word that is a token is emitted as is, without merging.
    pub ignore_merges: bool,
    /// Add BOS by default.
    pub add_bos: bool,
    /// Add SEP by default.
    pub add_sep: bool,
    /// Replace spaces with `▁` before splitting.
    pub escape_whitespaces: bool,
    /// The default BOS id is none.
    pub no_default_bos: bool,
}

impl PreSpec {
    fn new(kind: &'static str, patterns: &[&str]) -> PreSpec {
        PreSpec {
            kind,
            patterns: patterns.iter().map(|p| p.to_string()).collect(),
            byte_encode: true,
            clean_spaces: true,
            ignore_merges: false,
            add_bos: false,
            add_sep: false,
            escape_whitespaces: false,
            no_default_bos: false,
        }
    }
    fn no_clean(mut self) -> Self {
        self.clean_spaces = false;
        self
    }
    fn ignore_merges(mut self) -> Self {
        self.ignore_merges = true;
        self
    }
    fn add_bos(mut self) -> Self {
        self.add_bos = true;
        self
    }
}

fn p_llama3() -> PreSpec {
    PreSpec::new("llama3", &[LLAMA3])
}
fn p_gpt2() -> PreSpec {
    PreSpec::new("gpt2", &[GPT2])
}
fn p_qwen2() -> PreSpec {
    PreSpec::new("qwen2", &[QWEN2])
}
fn p_starcoder() -> PreSpec {
    PreSpec::new("starcoder", &[r"\p{N}", GPT2])
}
fn p_deepseek3() -> PreSpec {
    PreSpec::new(
        "deepseek3",
        &[
            r"\p{N}{1,3}",
            r"[一-龥぀-ゟ゠-ヿ]+",
            r"[!\x22#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
        ],
    )
}
fn p_poro() -> PreSpec {
    PreSpec::new("poro", &[r" ?[^(\s|.,!?…。，、।۔،)]+"])
}
fn p_gpt4o() -> PreSpec {
    let l = format!(
        r"[^\r\n\p{{L}}\p{{N}}]?((?=[\p{{L}}])([^a-z]))*((?=[\p{{L}}])([^A-Z]))+{CONTRACTIONS}?|[^\r\n\p{{L}}\p{{N}}]?((?=[\p{{L}}])([^a-z]))+((?=[\p{{L}}])([^A-Z]))*{CONTRACTIONS}?|\p{{N}}{{1,3}}| ?[^\s\p{{L}}\p{{N}}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
    );
    let mut s = PreSpec::new("gpt4o", &[]);
    s.patterns = vec![l];
    s
}
fn p_gemma4(kind: &'static str) -> PreSpec {
    let mut s = PreSpec::new(kind, &[NEWLINES]);
    s.byte_encode = false;
    s.escape_whitespaces = true;
    s
}

/// The pre-tokenizer for `tokenizer.ggml.pre = name` (`None`: absent), with llama.cpp's
/// per-name adjustments of the defaults.
pub fn spec_for(name: Option<&str>) -> Result<PreSpec, TokenizerError> {
    let default = || {
        PreSpec::new(
            "default",
            &[r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", r"[0-9][0-9][0-9]"],
        )
    };
    let Some(name) = name.filter(|n| !n.is_empty()) else {
        tracing::warn!(
            "BPE vocabulary without tokenizer.ggml.pre: using the default pre-tokenizer; generation quality may suffer"
        );
        return Ok(default());
    };
    let spec = match name {
        "default" => default(),
        "minicpm5" => PreSpec::new(
            "minicpm5",
            &[
                r"\p{N}{1,3}",
                &format!(r"{CONTRACTIONS}|[^\r\n\p{{L}}\p{{N}}]?\p{{L}}+|\p{{N}}+| ?[^\s\p{{L}}\p{{N}}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"),
            ],
        )
        .ignore_merges(),
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0"
        | "lfm2" | "jina-v5-nano" => p_llama3().ignore_merges().add_bos(),
        "dbrx" | "smaug-bpe" => p_llama3(),
        "jais-2" => PreSpec::new(
            "jais2",
            &[&format!(
                r"{CONTRACTIONS}|[^\r\n\p{{L}}\p{{N}}]?\p{{L}}+|\p{{N}}{{1,3}}| ?[^\s\p{{L}}\p{{N}}]+[\r\n]*|\s*[\r\n]+|\s{{512}}(?!\S)|\s{{256}}(?!\S)|\s{{128}}(?!\S)|\s{{64}}(?!\S)|\s{{32}}(?!\S)|\s{{16}}(?!\S)|\s{{8}}(?!\S)|\s{{4}}(?!\S)|\s{{1,2}}(?!\S)|\s{{1}}"
            )],
        ),
        "deepseek-llm" => PreSpec::new(
            "deepseek-llm",
            &[
                r"[\r\n]",
                "\\s?[A-Za-z\u{b5}\u{c0}-\u{d6}\u{d8}-\u{f6}\u{f8}-\u{1ba}\u{1bc}-\u{1bf}\u{1c4}-\u{293}\u{295}-\u{2af}\u{370}-\u{373}\u{376}\u{377}\u{37b}-\u{37d}\u{37f}\u{386}\u{388}-\u{38a}\u{38c}\u{38e}-\u{3a1}\u{3a3}-\u{3f5}\u{3f7}-\u{481}\u{48a}-\u{52f}\u{531}-\u{556}\u{10a0}-\u{10c5}\u{13a0}-\u{13f5}\u{13f8}-\u{13fd}\u{1c90}-\u{1cba}\u{1cbd}-\u{1cbf}\u{1d00}-\u{1d2b}\u{1d6b}-\u{1d77}\u{1d79}-\u{1d9a}\u{1e00}-\u{1f15}\u{1f18}-\u{1f1d}\u{1f20}-\u{1f45}\u{1f48}-\u{1f4d}\u{1f50}-\u{1f57}\u{1f59}\u{1f5b}\u{1f5d}\u{1f5f}-\u{1f7d}\u{1f80}-\u{1fb4}\u{1fb6}-\u{1fbc}\u{1fbe}\u{1fc2}-\u{1fc4}\u{1fc6}-\u{1fcc}\u{1fd0}-\u{1fd3}\u{1fd6}-\u{1fdb}\u{1fe0}-\u{1fec}\u{1ff2}-\u{1ff4}\u{1ff6}-\u{1ffc}\u{2102}\u{2107}\u{210a}-\u{2113}\u{2115}\u{2119}-\u{211d}\u{2124}\u{2126}\u{2128}\u{212a}-\u{212d}\u{212f}-\u{2134}\u{2139}\u{213c}-\u{213f}\u{2145}-\u{2149}\u{214e}\u{2183}\u{2184}\u{2c00}-\u{2c7b}\u{2c7e}-\u{2ce4}\u{2ceb}-\u{2cee}\u{2cf2}\u{2cf3}\u{a640}-\u{a66d}\u{a680}-\u{a69b}\u{a722}-\u{a76f}\u{a771}-\u{a787}\u{a78b}-\u{a78e}\u{ab70}-\u{abbf}\u{fb00}-\u{fb06}\u{fb13}-\u{fb17}\u{ff21}-\u{ff3a}\u{ff41}-\u{ff5a}\u{10400}-\u{1044f}\u{104b0}-\u{104d3}\u{104d8}-\u{104fb}\u{10c80}-\u{10cb2}\u{10cc0}-\u{10cf2}\u{118a0}-\u{118df}\u{1e900}-\u{1e943}]+",
                r"\s?[!-/:-~！-／：-～‘-‟　-。]+",
                r"\s+$",
                r"[一-龥ࠀ-一가-퟿]+",
                r"\p{N}+",
            ],
        )
        .no_clean(),
        "deepseek-coder" => PreSpec::new(
            "deepseek-coder",
            &[
                r"[\r\n]",
                r"\s?\p{L}+",
                r"\s?\p{P}+",
                r"[一-龥ࠀ-一가-퟿]+",
                r"\p{N}",
            ],
        )
        .no_clean(),
        "deepseek-v3" | "hunyuan-dense" | "hy_v4" | "joyai-llm" => p_deepseek3().no_clean(),
        "spark2_5" => PreSpec::new(
            "spark2_5",
            &[
                r"\p{N}{1,3}",
                r"[一-龥぀-ゟ゠-ヿ]+",
                r"[!\x22#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+|[\r\n]|\s+(?!\S)|\s+",
                r"\p{N}",
            ],
        )
        .no_clean(),
        "youtu" => PreSpec::new(
            "youtu",
            &[
                r"[가-힣ㄱ-ㆎ]+|[！…“”‘’—：；，、-〿︰-﹏]+|[ㄅ-ㄯ]+|[一-龥぀-ゟ゠-ヿ]+",
                &format!(
                    r"[^\r\n\p{{L}}\p{{N}}]?[\p{{Lu}}\p{{Lt}}\p{{Lm}}\p{{Lo}}\p{{M}}]*[\p{{Ll}}\p{{Lm}}\p{{Lo}}\p{{M}}]+{CONTRACTIONS}?|[^\r\n\p{{L}}\p{{N}}]?[\p{{Lu}}\p{{Lt}}\p{{Lm}}\p{{Lo}}\p{{M}}]+[\p{{Ll}}\p{{Lm}}\p{{Lo}}\p{{M}}]*{CONTRACTIONS}?|\p{{N}}| ?[^\s\p{{L}}\p{{N}}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
                ),
            ],
        )
        .no_clean()
        .ignore_merges(),
        "falcon" => PreSpec::new(
            "falcon",
            &[r"[\p{P}\$\+<=>\^~\|`]+", GPT2, r"[0-9][0-9][0-9]"],
        ),
        "starcoder" | "refact" | "codeshell" | "exaone" | "minerva-7b" | "mellum2" => {
            p_starcoder()
        }
        "command-r" | "smollm" => p_starcoder().no_clean(),
        "gpt-2" | "phi-2" | "jina-es" | "jina-de" | "gigachat" | "jina-v2-es" | "jina-v2-de"
        | "a.x-4.0" | "mellum" | "modern-bert" | "mpt" | "olmo" | "jais" | "exaone4" => p_gpt2(),
        "trillion" | "granite-docling" => p_gpt2().no_clean(),
        "jina-v1-en" | "jina-v2-code" | "roberta-bpe" => {
            let mut s = p_gpt2();
            s.add_sep = true;
            s
        }
        "gemma4" | "granite-embed-multi-311m" => p_gemma4("gemma4"),
        "sarvam-moe" => p_gemma4("sarvam-moe").no_clean(),
        "whitespace" => {
            let mut s = PreSpec::new("whitespace", &[r"\S+"]);
            s.byte_encode = false;
            s
        }
        "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" | "hunyuan" | "solar-open" | "grok-2" => {
            p_qwen2().no_clean()
        }
        "stablelm2" | "megrez" => p_qwen2(),
        "qwen35" => PreSpec::new("qwen35", &[QWEN35]).no_clean(),
        "poro-chat" => p_poro().no_clean(),
        "bloom" | "gpt3-finnish" => p_poro(),
        "chatglm-bpe" | "glm4" | "glm5" => {
            let mut s = p_llama3();
            s.kind = "chatglm4";
            s.no_default_bos = true;
            s.ignore_merges = name != "chatglm-bpe";
            s
        }
        "viking" => PreSpec::new("viking", &[r" ?[^(\s|.,!?…。，、।۔،)]+", r"\p{N}"]).no_clean(),
        "tekken" => PreSpec::new(
            "tekken",
            &[r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"],
        )
        .no_clean()
        .ignore_merges()
        .add_bos(),
        "chameleon" => PreSpec::new(
            "chameleon",
            &[
                r"<sentinel:[0-9]+>",
                r"(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z",
                r"([\t\n]|    |  )",
                r"\p{N}",
                r"[\p{P}!-/:-@\[-`{-~]",
                GPT2,
            ],
        )
        .no_clean()
        .add_bos(),
        "gpt-4o" | "llama4" | "kanana2" | "talkie" | "minimax-m2" => p_gpt4o().no_clean(),
        "granite-embed-multi-97m" => {
            let l = format!(
                r"[^\r\n\p{{L}}\p{{N}}]?((?=[\p{{L}}\p{{M}}])([^a-z]))*((?=[\p{{L}}\p{{M}}])([^A-Z]))+{CONTRACTIONS}?|[^\r\n\p{{L}}\p{{N}}]?((?=[\p{{L}}\p{{M}}])([^a-z]))+((?=[\p{{L}}\p{{M}}])([^A-Z]))*{CONTRACTIONS}?|\p{{N}}{{1,3}}| ?[^\s\p{{L}}\p{{N}}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
            );
            PreSpec::new("granite-emb-multi", &[&l]).no_clean().ignore_merges()
        }
        "tiny_aya" | "cohere2moe" => PreSpec::new(
            "tiny_aya",
            &[
                r"\d{1,3}(?=(?:\d{3})*\b)",
                &format!(
                    r"[^\r\n\p{{L}}\p{{N}}]?[\p{{Lu}}\p{{Lt}}\p{{Lm}}\p{{Lo}}\p{{M}}]*[\p{{Ll}}\p{{Lm}}\p{{Lo}}\p{{M}}]+{CONTRACTIONS}?|[^\r\n\p{{L}}\p{{N}}]?[\p{{Lu}}\p{{Lt}}\p{{Lm}}\p{{Lo}}\p{{M}}]+[\p{{Ll}}\p{{Lm}}\p{{Lo}}\p{{M}}]*{CONTRACTIONS}?|\p{{N}}{{1,3}}| ?[^\s\p{{L}}\p{{N}}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
                ),
            ],
        )
        .no_clean(),
        "superbpe" => PreSpec::new("superbpe", &[r"\p{N}+", r"(?=(\d{3})+(?!\d))"]).no_clean(),
        "bailingmoe" | "bailingmoe2" | "llada-moe" => PreSpec::new(
            "bailingmoe",
            &[r"'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+"],
        )
        .no_clean(),
        "seed-coder" => PreSpec::new(
            "seed-coder",
            &[&format!(
                r"{CONTRACTIONS}|[^\r\n\p{{L}}\p{{N}}]?\p{{L}}+|\p{{N}}{{1}}| ?[^\s\p{{L}}\p{{N}}\r\n]+|\s*[\r\n]+|\s+(?!\S)|\s+"
            )],
        )
        .no_clean(),
        "ufakzeka" => PreSpec::new(
            "ufakzeka",
            &[r"[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"],
        )
        .no_clean(),
        "laguna" => PreSpec::new("laguna", &[NEWLINES, QWEN2]).no_clean(),
        "exaone-moe" => PreSpec::new(
            "exaone-moe",
            &[&format!(
                r"{CONTRACTIONS}|[^\r\n\p{{L}}\p{{N}}]?(?:\p{{L}}\p{{M}}*(?: \p{{L}}\p{{M}}*)*)+|\p{{N}}| ?[^\s\p{{L}}\p{{N}}]+[\r\n/]?|\s*[\r\n]|\s+(?!\S)|\s+"
            )],
        ),
        "kimi-k2" | "afmoe" => {
            return Err(TokenizerError::UnsupportedModel(format!(
                "pre-tokenizer {name}"
            )));
        }
        other => return Err(TokenizerError::UnknownPreTokenizer(other.to_string())),
    };
    Ok(spec)
}

/// One compiled splitting step.
enum Splitter {
    Gpt2,
    Llama3,
    Qwen2,
    Qwen35,
    Newlines,
    Regex(Box<Regex>),
}

/// A compiled pre-tokenizer.
pub struct PreTokenizer {
    steps: Vec<Splitter>,
}

impl PreTokenizer {
    /// Compiles the patterns (the common ones become hand-written scanners).
    pub fn new(patterns: &[String]) -> Result<PreTokenizer, TokenizerError> {
        let steps = patterns
            .iter()
            .map(|p| {
                Ok(match p.as_str() {
                    GPT2 => Splitter::Gpt2,
                    LLAMA3 => Splitter::Llama3,
                    QWEN2 => Splitter::Qwen2,
                    QWEN35 => Splitter::Qwen35,
                    NEWLINES => Splitter::Newlines,
                    _ => Splitter::Regex(Box::new(Regex::new(p).map_err(|e| {
                        TokenizerError::Regex {
                            pattern: p.clone(),
                            message: e.to_string(),
                        }
                    })?)),
                })
            })
            .collect::<Result<Vec<_>, TokenizerError>>()?;
        Ok(PreTokenizer { steps })
    }

    /// Splits `text` into words, returned as byte ranges of `text` in order, covering it.
    pub fn split(&self, text: &str) -> Result<Vec<Range<usize>>, TokenizerError> {
        // Code points, their byte offsets (plus the end), and their category flags.
        let mut cpts = Vec::with_capacity(text.len());
        let mut offs = Vec::with_capacity(text.len() + 1);
        for (i, c) in text.char_indices() {
            cpts.push(c);
            offs.push(i);
        }
        offs.push(text.len());
        let flags: Vec<u8> = cpts.iter().map(|&c| unicode::flags(c)).collect();
        let s = Scan {
            cpts: &cpts,
            flags: &flags,
        };

        // Pieces as code point ranges.
        let mut pieces: Vec<Range<usize>> = if cpts.is_empty() {
            Vec::new()
        } else {
            std::iter::once(0..cpts.len()).collect()
        };
        let mut next = Vec::with_capacity(cpts.len() / 2 + 1);
        for step in &self.steps {
            next.clear();
            for piece in &pieces {
                let piece = piece.clone();
                match step {
                    Splitter::Gpt2 => s.gpt2(piece, &mut next),
                    Splitter::Llama3 => s.llama3(piece, Digits::UpTo3, false, &mut next),
                    Splitter::Qwen2 => s.llama3(piece, Digits::One, false, &mut next),
                    Splitter::Qwen35 => s.llama3(piece, Digits::One, true, &mut next),
                    Splitter::Newlines => s.newlines(piece, &mut next),
                    Splitter::Regex(re) => regex_split(re, text, &offs, piece, &mut next)?,
                }
            }
            std::mem::swap(&mut pieces, &mut next);
        }
        Ok(pieces
            .into_iter()
            .map(|r| offs[r.start]..offs[r.end])
            .collect())
    }
}

/// Splits `piece` (code point range) at the matches of `re`: matches and the gaps between
/// them become pieces; an empty match is a split point.
fn regex_split(
    re: &Regex,
    text: &str,
    offs: &[usize],
    piece: Range<usize>,
    out: &mut Vec<Range<usize>>,
) -> Result<(), TokenizerError> {
    let base = offs[piece.start];
    let sub = &text[base..offs[piece.end]];
    let to_cpt = |byte: usize| -> usize {
        // Match boundaries are char boundaries, so this finds the exact index.
        piece.start + offs[piece.clone()].partition_point(|&o| o < base + byte)
    };
    let mut prev = piece.start;
    for m in re.find_iter(sub) {
        let m = m.map_err(|e| TokenizerError::Regex {
            pattern: re.as_str().to_string(),
            message: e.to_string(),
        })?;
        let (a, b) = (to_cpt(m.start()), to_cpt(m.end()));
        if a > prev {
            out.push(prev..a);
        }
        if b > a {
            out.push(a..b);
        }
        prev = b;
    }
    if piece.end > prev {
        out.push(prev..piece.end);
    }
    Ok(())
}

#[derive(Clone, Copy, PartialEq)]
enum Digits {
    One,
    UpTo3,
}

/// The hand-written scanners, over one piece's code points.
struct Scan<'a> {
    cpts: &'a [char],
    flags: &'a [u8],
}

impl Scan<'_> {
    /// The contraction `'s 't 're 've 'm 'll 'd` at `pos`, its length in code points.
    fn contraction(&self, pos: usize, end: usize, any_case: bool) -> usize {
        if self.cpts[pos] != '\'' || pos + 1 >= end {
            return 0;
        }
        let low = |c: char| if any_case { c.to_ascii_lowercase() } else { c };
        let c1 = low(self.cpts[pos + 1]);
        if matches!(c1, 's' | 't' | 'm' | 'd') {
            return 2;
        }
        if pos + 2 < end {
            let c2 = low(self.cpts[pos + 2]);
            if matches!((c1, c2), ('r', 'e') | ('v', 'e') | ('l', 'l')) {
                return 3;
            }
        }
        0
    }

    /// Flags at `pos` within the piece ending at `end`, 0 past it.
    #[inline]
    fn f(&self, pos: usize, end: usize) -> u8 {
        if pos < end { self.flags[pos] } else { 0 }
    }

    /// The length of the whitespace run at `pos` (`\s+` then `(?!\S)`): all of it if it
    /// reaches the end of the piece or is one character, otherwise all but the last (which
    /// joins the next word).
    fn whitespace_run(&self, pos: usize, end: usize) -> usize {
        let mut n = 0;
        while self.f(pos + n, end) & WHITESPACE != 0 {
            n += 1;
        }
        if n > 1 && pos + n < end { n - 1 } else { n }
    }

    /// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
    fn gpt2(&self, piece: Range<usize>, out: &mut Vec<Range<usize>>) {
        let end = piece.end;
        let mut pos = piece.start;
        while pos < end {
            let start = pos;
            let n = self.contraction(pos, end, false);
            if n > 0 {
                pos += n;
            } else {
                let space = self.cpts[pos] == ' ';
                let f2 = if space {
                    self.f(pos + 1, end)
                } else {
                    self.flags[pos]
                };
                let class = if f2 & LETTER != 0 {
                    Some(LETTER)
                } else if f2 & NUMBER != 0 {
                    Some(NUMBER)
                } else if f2 != 0 && f2 & WHITESPACE == 0 {
                    Some(0) // neither space, letter nor number
                } else {
                    None
                };
                match class {
                    Some(cls) => {
                        pos += usize::from(space);
                        while pos < end && in_class(self.flags[pos], cls) {
                            pos += 1;
                        }
                    }
                    None => {
                        let n = self.whitespace_run(pos, end);
                        pos += n.max(1);
                    }
                }
            }
            out.push(start..pos);
        }
    }

    /// Llama 3 / Qwen 2 / Qwen 3.5:
    /// `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
    /// (`\p{N}` for Qwen; letters also take `\p{M}` for Qwen 3.5).
    fn llama3(
        &self,
        piece: Range<usize>,
        digits: Digits,
        marks: bool,
        out: &mut Vec<Range<usize>>,
    ) {
        let end = piece.end;
        let letter = if marks { LETTER | MARK } else { LETTER };
        let mut pos = piece.start;
        while pos < end {
            let start = pos;
            let c = self.cpts[pos];
            let f = self.flags[pos];
            let n = self.contraction(pos, end, true);
            if n > 0 {
                out.push(pos..pos + n);
                pos += n;
                continue;
            }
            // [^\r\n\p{L}\p{N}]?\p{L}+
            if c != '\r'
                && c != '\n'
                && f & NUMBER == 0
                && (f & letter != 0 || self.f(pos + 1, end) & letter != 0)
            {
                pos += 1;
                while self.f(pos, end) & letter != 0 {
                    pos += 1;
                }
                out.push(start..pos);
                continue;
            }
            // \p{N}{1,3} or \p{N}
            if f & NUMBER != 0 {
                let max = if digits == Digits::One { 1 } else { 3 };
                let mut n = 0;
                while n < max && self.f(pos, end) & NUMBER != 0 {
                    pos += 1;
                    n += 1;
                }
                out.push(start..pos);
                continue;
            }
            // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
            let f2 = if c == ' ' { self.f(pos + 1, end) } else { f };
            let other = |fl: u8| fl != 0 && fl & (WHITESPACE | letter | NUMBER) == 0;
            if other(f2) {
                pos += usize::from(c == ' ');
                while other(self.f(pos, end)) {
                    pos += 1;
                }
                while pos < end && matches!(self.cpts[pos], '\r' | '\n') {
                    pos += 1;
                }
                out.push(start..pos);
                continue;
            }
            // \s*[\r\n]+ : the whitespace run up to its last newline.
            let mut n = 0;
            let mut last_nl = None;
            while self.f(pos + n, end) & WHITESPACE != 0 {
                if matches!(self.cpts[pos + n], '\r' | '\n') {
                    last_nl = Some(pos + n + 1);
                }
                n += 1;
            }
            if let Some(stop) = last_nl {
                pos = stop;
            } else if n > 0 {
                pos += self.whitespace_run(pos, end);
            } else {
                pos += 1;
            }
            out.push(start..pos);
        }
    }

    /// `[^\n]+|[\n]+`
    fn newlines(&self, piece: Range<usize>, out: &mut Vec<Range<usize>>) {
        let mut pos = piece.start;
        while pos < piece.end {
            let start = pos;
            let nl = self.cpts[pos] == '\n';
            while pos < piece.end && (self.cpts[pos] == '\n') == nl {
                pos += 1;
            }
            out.push(start..pos);
        }
    }
}

/// Whether flags `f` belong to class `cls` (LETTER, NUMBER, or 0 for "anything else that
/// is not whitespace").
#[inline]
fn in_class(f: u8, cls: u8) -> bool {
    if cls == 0 {
        f != 0 && f & (WHITESPACE | LETTER | NUMBER) == 0
    } else {
        f & cls != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(pre: &PreTokenizer, text: &str) -> Vec<String> {
        pre.split(text)
            .unwrap()
            .into_iter()
            .map(|r| text[r].to_string())
            .collect()
    }

    /// The scanners must agree with the same pattern run by fancy-regex.
    fn check_scanner_against_regex(pattern: &str, texts: &[&str]) {
        let scanner = PreTokenizer::new(&[pattern.to_string()]).unwrap();
        let regex = PreTokenizer {
            steps: vec![Splitter::Regex(Box::new(Regex::new(pattern).unwrap()))],
        };
        for t in texts {
            assert_eq!(
                words(&scanner, t),
                words(&regex, t),
                "pattern {pattern} on {t:?}"
            );
        }
    }

    const TEXTS: &[&str] = &[
        "Hello world",
        " Hello  World!\n\n  x",
        "I'm here, y'all! We'Ve a'lL 'RE 's",
        "    Hello\n    Hello",
        "3333333 3.3 3..3",
        "🚀 (normal) 😶\u{200d}🌫️ ✅ 🦙🦙",
        "\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n",
        "нещо на Български Cửa Việt résumé",
        "我想在apple工作1314151天～",
        "kāntẻ  \r\n\r\n end   ",
        "' era !!!!!! ...... ?????? ``````` \"\"\"\"",
        "a\u{3000}b\u{a0}c\u{2028}",
        "\u{301}x\u{301} \u{301}",
        "",
        " ",
    ];

    #[test]
    fn gpt2_scanner_matches_regex() {
        check_scanner_against_regex(GPT2, TEXTS);
    }

    #[test]
    fn llama3_scanner_matches_regex() {
        check_scanner_against_regex(LLAMA3, TEXTS);
    }

    #[test]
    fn qwen2_scanner_matches_regex() {
        check_scanner_against_regex(QWEN2, TEXTS);
    }

    #[test]
    fn qwen35_scanner_matches_regex() {
        check_scanner_against_regex(QWEN35, TEXTS);
    }

    #[test]
    fn newlines_scanner_matches_regex() {
        check_scanner_against_regex(NEWLINES, TEXTS);
    }

    #[test]
    fn patterns_are_applied_in_turn() {
        let spec = spec_for(Some("starcoder")).unwrap();
        let pre = PreTokenizer::new(&spec.patterns).unwrap();
        assert_eq!(words(&pre, "ab 123 c"), ["ab", " ", "1", "2", "3", " c"]);
    }

    #[test]
    fn empty_matches_are_split_points() {
        let spec = spec_for(Some("superbpe")).unwrap();
        let pre = PreTokenizer::new(&spec.patterns).unwrap();
        assert_eq!(words(&pre, "x1234567"), ["x", "1", "234", "567"]);
    }

    #[test]
    fn every_named_pre_tokenizer_compiles() {
        for name in [
            "default",
            "minicpm5",
            "llama-bpe",
            "dbrx",
            "jais-2",
            "deepseek-llm",
            "deepseek-coder",
            "deepseek-v3",
            "spark2_5",
            "youtu",
            "falcon",
            "starcoder",
            "command-r",
            "smollm",
            "gpt-2",
            "mpt",
            "trillion",
            "roberta-bpe",
            "gemma4",
            "sarvam-moe",
            "whitespace",
            "qwen2",
            "stablelm2",
            "qwen35",
            "poro-chat",
            "bloom",
            "glm4",
            "chatglm-bpe",
            "viking",
            "tekken",
            "chameleon",
            "gpt-4o",
            "granite-embed-multi-97m",
            "tiny_aya",
            "superbpe",
            "bailingmoe",
            "seed-coder",
            "ufakzeka",
            "laguna",
            "exaone-moe",
            "refact",
            "olmo",
            "exaone4",
        ] {
            let spec = spec_for(Some(name)).unwrap();
            let pre = PreTokenizer::new(&spec.patterns).unwrap_or_else(|e| panic!("{name}: {e}"));
            let text = "Hello, y'all! 1234 我想 \n\n  🦙 x";
            let w = words(&pre, text);
            assert_eq!(w.concat(), text, "{name} must cover the text");
        }
        assert!(matches!(
            spec_for(Some("no-such-pre")),
            Err(TokenizerError::UnknownPreTokenizer(_))
        ));
    }
}
