//! Building a [`Tokenizer`] from a [`Vocab`]: llama.cpp's defaults per tokenizer type and
//! pre-tokenizer, special token ids, the text-based detection of end-of-generation and
//! fill-in-the-middle tokens, and the per-model token attribute fix-ups.

use crate::bpe::Bpe;
use crate::decode::Pieces;
use crate::pretok::{self, PreSpec};
use crate::special::SpecialTokens;
use crate::spm;
use crate::tables::Tables;
use crate::ugm::Ugm;
use crate::vocab::{TokenAttr, Vocab};
use crate::wpm::Wpm;
use crate::{Algo, Config, SpecialIds, Tokenizer, TokenizerError, VocabKind};

/// Texts that mark an end-of-turn token when the file names none (in priority order).
const EOT_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "<｜end▁of▁sentence｜>",
    "<end_of_utterance>",
];
const EOM_TEXTS: &[&str] = &["<|eom_id|>"];
const FIM_PRE_TEXTS: &[&str] = &[
    "<|fim_prefix|>",
    "<fim-prefix>",
    "<fim_prefix>",
    "<｜fim▁begin｜>",
    "<PRE>",
    "▁<PRE>",
    "<|code_prefix|>",
    "<|prefix|>",
];
const FIM_SUF_TEXTS: &[&str] = &[
    "<|fim_suffix|>",
    "<fim-suffix>",
    "<fim_suffix>",
    "<｜fim▁hole｜>",
    "<SUF>",
    "▁<SUF>",
    "<|code_suffix|>",
    "<|suffix|>",
];
const FIM_MID_TEXTS: &[&str] = &[
    "<|fim_middle|>",
    "<fim-middle>",
    "<fim_middle>",
    "<｜fim▁end｜>",
    "<MID>",
    "▁<MID>",
    "<|code_middle|>",
    "<|middle|>",
];
const FIM_PAD_TEXTS: &[&str] = &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"];
const FIM_REP_TEXTS: &[&str] = &[
    "<|fim_repo|>",
    "<|repo_name|>",
    "<fim-repo>",
    "<REPO>",
    "<reponame>",
];
const FIM_SEP_TEXTS: &[&str] = &["<|file_sep|>"];
/// Texts of tokens that end generation.
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
    "[e~[",
];

/// Settings that depend only on `tokenizer.ggml.model`.
struct ModelDefaults {
    kind: VocabKind,
    bos: Option<u32>,
    eos: Option<u32>,
    unk: Option<u32>,
    sep: Option<u32>,
    pad: Option<u32>,
    mask: Option<u32>,
    add_sep: bool,
    /// The model forces this pre-tokenizer name (gemma4).
    forced_pre: Option<&'static str>,
}

fn model_defaults(model: &str) -> Result<ModelDefaults, TokenizerError> {
    let d = |kind, bos, eos, unk| ModelDefaults {
        kind,
        bos,
        eos,
        unk,
        sep: None,
        pad: None,
        mask: None,
        add_sep: false,
        forced_pre: None,
    };
    Ok(match model {
        "llama" => d(VocabKind::Spm, Some(1), Some(2), Some(0)),
        "bert" => ModelDefaults {
            sep: Some(102),
            pad: Some(0),
            mask: Some(103),
            add_sep: true,
            ..d(VocabKind::Wpm, Some(101), None, Some(100))
        },
        "gpt2" => d(VocabKind::Bpe, Some(11), Some(11), None),
        "gemma4" => ModelDefaults {
            forced_pre: Some("gemma4"),
            ..d(VocabKind::Bpe, None, None, None)
        },
        "t5" => ModelDefaults {
            pad: Some(0),
            ..d(VocabKind::Ugm, None, Some(1), Some(2))
        },
        "no_vocab" | "none" | "rwkv" | "plamo2" | "hybriddna" | "whitespace" | "test" => {
            return Err(TokenizerError::UnsupportedModel(model.to_string()));
        }
        other => return Err(TokenizerError::UnknownModel(other.to_string())),
    })
}

impl Tokenizer {
    /// Builds a tokenizer from vocabulary facts, applying llama.cpp's rules.
    pub fn from_vocab(v: &Vocab) -> Result<Tokenizer, TokenizerError> {
        let md = model_defaults(&v.model)?;
        let n = v.tokens.len();
        if n == 0 {
            return Err(TokenizerError::EmptyVocab);
        }
        if n >= (u32::MAX / 2) as usize {
            return Err(TokenizerError::VocabTooLarge(n));
        }
        if !v.scores.is_empty() && v.scores.len() < n {
            return Err(TokenizerError::ShortArray {
                key: "tokenizer.ggml.scores",
                len: v.scores.len(),
                n_tokens: n,
            });
        }
        if !v.token_types.is_empty() && v.token_types.len() < n {
            return Err(TokenizerError::ShortArray {
                key: "tokenizer.ggml.token_type",
                len: v.token_types.len(),
                n_tokens: n,
            });
        }

        // Flags: defaults per type, then per pre-tokenizer, then the file's keys.
        let pre_name = md.forced_pre.or(v.pre.as_deref());
        let spec: Option<PreSpec> = match md.kind {
            VocabKind::Bpe => Some(pretok::spec_for(pre_name)?),
            _ => None,
        };
        let mut cfg = Config {
            add_bos: false,
            add_eos: false,
            add_sep: md.add_sep,
            add_space_prefix: false,
            escape_whitespaces: true,
            clean_spaces: false,
            remove_extra_whitespaces: false,
        };
        let mut bos_default = md.bos;
        match (md.kind, &spec) {
            (VocabKind::Bpe, Some(s)) => {
                cfg.escape_whitespaces = s.escape_whitespaces;
                cfg.clean_spaces = s.clean_spaces;
                cfg.add_bos = s.add_bos;
                cfg.add_sep |= s.add_sep;
                if s.no_default_bos {
                    bos_default = None;
                }
            }
            (VocabKind::Spm, _) => {
                cfg.add_space_prefix = true;
                cfg.add_bos = true;
            }
            (VocabKind::Wpm, _) => {
                cfg.clean_spaces = true;
                cfg.add_bos = true;
                cfg.add_sep = true;
            }
            (VocabKind::Ugm, _) => cfg.add_eos = true,
            (VocabKind::Bpe, None) => unreachable!("BPE always has a pre-tokenizer spec"),
        }
        if let Some(x) = v.add_space_prefix {
            cfg.add_space_prefix = x;
        }
        if let Some(x) = v.remove_extra_whitespaces {
            cfg.remove_extra_whitespaces = x;
        }

        let mut attrs: Vec<TokenAttr> = if v.token_types.is_empty() {
            vec![TokenAttr::NORMAL; n]
        } else {
            v.token_types[..n]
                .iter()
                .map(|&t| TokenAttr::from_token_type(t))
                .collect()
        };

        // Special ids: the default if in range, replaced by the file's value if in range.
        let in_range = |id: Option<u32>| id.filter(|&i| (i as usize) < n);
        let pick = |key: &str, default: Option<u32>, stored: Option<i64>| -> Option<u32> {
            let default = in_range(default);
            match stored {
                None => default,
                Some(s) if s >= 0 && (s as usize) < n => Some(s as u32),
                Some(s) => {
                    tracing::warn!(
                        "bad special token {key} = {s} (vocabulary of {n}); using {default:?}"
                    );
                    default
                }
            }
        };
        let sp = &v.special;
        let mut ids = SpecialIds {
            bos: pick("bos", bos_default, sp.bos),
            eos: pick("eos", md.eos, sp.eos),
            eot: pick("eot", None, sp.eot),
            eom: pick("eom", None, sp.eom),
            unk: pick("unk", md.unk, sp.unk),
            sep: pick("sep", md.sep, sp.sep),
            pad: pick("pad", md.pad, sp.pad),
            mask: pick("mask", md.mask, sp.mask),
            fim_pre: pick("fim_pre", None, sp.fim_pre),
            fim_suf: pick("fim_suf", None, sp.fim_suf),
            fim_mid: pick("fim_mid", None, sp.fim_mid),
            fim_pad: pick("fim_pad", None, sp.fim_pad),
            fim_rep: pick("fim_rep", None, sp.fim_rep),
            fim_sep: pick("fim_sep", None, sp.fim_sep),
        };
        if let Some(x) = v.add_bos {
            cfg.add_bos = x;
        }
        if let Some(x) = v.add_eos {
            cfg.add_eos = x;
        }
        if let Some(x) = v.add_sep {
            cfg.add_sep = x;
        }
        if spec.as_ref().is_some_and(|s| s.kind == "gemma4") && !cfg.add_bos {
            tracing::warn!("overriding tokenizer.ggml.add_bos_token to true for Gemma 4");
            cfg.add_bos = true;
        }
        let lowercase = v
            .normalizer_lowercase
            .unwrap_or(pre_name != Some("whitespace"));
        let strip_accents = v.normalizer_strip_accents.unwrap_or(lowercase);

        let tables = Tables::new(&v.tokens, &v.scores, attrs.clone());
        let find = |texts: &[&str]| texts.iter().find_map(|t| tables.id(t.as_bytes()));
        let mark_control = |attrs: &mut [TokenAttr], id: u32| {
            let a = &mut attrs[id as usize];
            if !a.is_control() {
                tracing::warn!(
                    "control-looking token {id} was not control-type; marking it control"
                );
                *a = a.with(TokenAttr::CONTROL);
            }
        };
        for (slot, texts) in [
            (&mut ids.eot, EOT_TEXTS),
            (&mut ids.eom, EOM_TEXTS),
            (&mut ids.fim_pre, FIM_PRE_TEXTS),
            (&mut ids.fim_suf, FIM_SUF_TEXTS),
            (&mut ids.fim_mid, FIM_MID_TEXTS),
            (&mut ids.fim_pad, FIM_PAD_TEXTS),
            (&mut ids.fim_rep, FIM_REP_TEXTS),
            (&mut ids.fim_sep, FIM_SEP_TEXTS),
        ] {
            if slot.is_none()
                && let Some(id) = find(texts)
            {
                *slot = Some(id);
                mark_control(&mut attrs, id);
            }
        }

        // Control tokens whose text says "unused" are unused.
        for (id, a) in attrs.iter_mut().enumerate() {
            if a.is_control() && !a.is_unused() && contains(tables.text(id as u32), b"unused") {
                *a = a.with(TokenAttr::UNUSED);
            }
        }

        // End-of-generation tokens.
        let mut eog: Vec<u32> = [ids.fim_pad, ids.fim_rep, ids.fim_sep]
            .into_iter()
            .flatten()
            .collect();
        for text in EOG_TEXTS {
            if let Some(id) = tables.id(text.as_bytes()) {
                eog.push(id);
                mark_control(&mut attrs, id);
            }
        }
        // gpt-oss: these are always rendered.
        for text in ["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"] {
            if let Some(id) = tables.id(text.as_bytes()) {
                attrs[id as usize] = TokenAttr::USER_DEFINED;
            }
        }
        eog.extend([ids.eos, ids.eot, ids.eom].into_iter().flatten());
        eog.sort_unstable();
        eog.dedup();
        let has = |eog: &[u32], text: &str| eog.iter().any(|&i| tables.text(i) == text.as_bytes());
        // o200k_harmony / solar-open: "<|end|>" ends a message, not the generation.
        let has_return = has(&eog, "<|return|>");
        let has_call = has(&eog, "<|call|>") || has(&eog, "<|calls|>");
        let has_flush = has(&eog, "<|flush|>");
        if has_call && (has_return || has_flush) {
            if let Some(end) = eog.iter().copied().find(|&i| tables.text(i) == b"<|end|>") {
                eog.retain(|&i| i != end);
                attrs[end as usize] = TokenAttr::USER_DEFINED;
            }
        }
        // Gemma 4 and PLaMo have a normal "</s>".
        if (has(&eog, "<|tool_response>") || has(&eog, "<|plamo:eos|>"))
            && let Some(s) = eog.iter().copied().find(|&i| tables.text(i) == b"</s>")
        {
            eog.retain(|&i| i != s);
            attrs[s as usize] = TokenAttr::NORMAL;
        }

        // Per-model attributes.
        let name = v.general_name.as_deref().unwrap_or("").to_lowercase();
        let arch = v.general_architecture.as_deref().unwrap_or("");
        let pre = v.pre.as_deref().unwrap_or("");
        let mut tables = tables;
        tables.attrs = attrs;
        let special = SpecialTokens::new(&tables);
        if ["jina-v2-de", "jina-v2-es", "jina-v2-code"]
            .iter()
            .any(|p| pre.contains(p))
            || ["nomic-bert-moe", "jina-bert-v3"]
                .iter()
                .any(|a| arch.contains(a))
        {
            if let Some(id) = tables.id(b"<mask>") {
                tables.attrs[id as usize] = tables.attrs[id as usize].with(TokenAttr::LSTRIP);
            }
        } else if name.contains("phi-3") || name.contains("phi3") {
            for &id in special.ids() {
                tables.attrs[id as usize] = tables.attrs[id as usize].with(TokenAttr::RSTRIP);
            }
            if let Some(id) = tables.id(b"</s>") {
                tables.attrs[id as usize] = tables.attrs[id as usize].with(TokenAttr::RSTRIP);
            }
            for text in ["<unk>", "<s>", "<|endoftext|>"] {
                if let Some(id) = tables.id(text.as_bytes()) {
                    tables.attrs[id as usize] =
                        tables.attrs[id as usize].without(TokenAttr::RSTRIP);
                }
            }
        } else if name.contains("modern-bert")
            && let Some(id) = tables.id(b"[MASK]")
        {
            tables.attrs[id as usize] = tables.attrs[id as usize].with(TokenAttr::LSTRIP);
        }

        crate::unicode::warm_up();
        let pieces = Pieces::build(&tables, md.kind, cfg.escape_whitespaces);
        let algo = match md.kind {
            VocabKind::Spm => Algo::Spm {
                byte_tokens: Box::new(spm::byte_fallback_table(&tables, ids.unk)),
            },
            VocabKind::Bpe => {
                let spec = spec.as_ref().expect("BPE has a spec");
                Algo::Bpe(Box::new(Bpe::new(
                    &tables,
                    &v.merges,
                    spec,
                    spec.kind == "gemma4",
                )?))
            }
            VocabKind::Wpm => Algo::Wpm(Wpm {
                lowercase,
                strip_accents,
            }),
            VocabKind::Ugm => Algo::Ugm(Box::new(Ugm::new(
                &tables,
                &v.precompiled_charsmap,
                cfg.escape_whitespaces,
                cfg.add_space_prefix,
                cfg.remove_extra_whitespaces,
            )?)),
        };
        if md.kind == VocabKind::Bpe && v.merges.is_empty() {
            return Err(TokenizerError::BadValue {
                key: "tokenizer.ggml.merges",
                message: "a BPE vocabulary needs merges".to_string(),
            });
        }

        Ok(Tokenizer {
            kind: md.kind,
            model: v.model.clone(),
            pre: pre_name.map(str::to_string),
            tables,
            cfg,
            ids,
            eog,
            special,
            pieces,
            algo,
        })
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}
