//! Tokenizer metadata from `tokenizer.json` and `tokenizer_config.json`, written the way
//! llama.cpp's convert_hf_to_gguf does: WordPiece as `bert` (word-initial pieces marked with
//! `▁`, `##` continuations bare), byte-level BPE as `gpt2` with its merges and the
//! pre-tokenizer named by llama.cpp's hash of a reference encoding; special token ids, the
//! add-BOS/EOS flags and the chat template.

use std::path::Path;

use perch_gguf::Value;
use serde_json::Value as Json;
use sha2::Digest;

use super::pre_hashes::{CHK_TEXT, PRE_HASHES};
use super::read_json;
use crate::error::{ConvertError, Result};

/// llama.cpp's token types.
const NORMAL: i32 = 1;
const UNUSED: i32 = 5;
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;

/// The tokenizer files of a folder.
pub(crate) struct HfTokenizer {
    json: Json,
    config: Json,
    lib: tokenizers::Tokenizer,
}

impl HfTokenizer {
    pub(crate) fn open(dir: &Path) -> Result<HfTokenizer> {
        let path = dir.join("tokenizer.json");
        let json = read_json(&path)?;
        let mut lib = tokenizers::Tokenizer::from_file(&path)
            .map_err(|e| ConvertError::BadInput(format!("{}: {e}", path.display())))?;
        // As transformers' `encode` of one text: no padding, no truncation.
        lib.with_padding(None);
        lib.with_truncation(None)
            .map_err(|e| ConvertError::BadInput(format!("{}: {e}", path.display())))?;
        let cfg_path = dir.join("tokenizer_config.json");
        let config = if cfg_path.is_file() {
            read_json(&cfg_path)?
        } else {
            Json::Object(Default::default())
        };
        Ok(HfTokenizer { json, config, lib })
    }

    /// `tokenizer.json`'s model type (`WordPiece`, `BPE`, ...).
    pub(crate) fn model_type(&self) -> &str {
        self.json["model"]["type"].as_str().unwrap_or("")
    }

    /// Tokens by id (`vocab_size` of them, gaps filled with `[PAD{i}]`) and their types.
    fn tokens(&self, vocab_size: Option<usize>) -> Result<(Vec<String>, Vec<i32>)> {
        let vocab = self.json["model"]["vocab"].as_object().ok_or_else(|| {
            ConvertError::BadInput("tokenizer.json: model.vocab is not an object".into())
        })?;
        let mut by_id: Vec<Option<(String, i32)>> = Vec::new();
        let mut put = |id: usize, text: &str, ty: i32| {
            if by_id.len() <= id {
                by_id.resize(id + 1, None);
            }
            by_id[id] = Some((text.to_string(), ty));
        };
        for (text, id) in vocab {
            let id = id.as_u64().ok_or_else(|| {
                ConvertError::BadInput(format!(
                    "tokenizer.json: the id of `{text}` is not a number"
                ))
            })? as usize;
            put(id, text, NORMAL);
        }
        for t in self.json["added_tokens"].as_array().into_iter().flatten() {
            let (Some(id), Some(text)) = (t["id"].as_u64(), t["content"].as_str()) else {
                continue;
            };
            let special = t["special"].as_bool().unwrap_or(false) || looks_special(text);
            put(
                id as usize,
                text,
                if special { CONTROL } else { USER_DEFINED },
            );
        }
        let n = vocab_size.unwrap_or(by_id.len());
        if by_id.len() > n {
            return Err(ConvertError::BadInput(format!(
                "tokenizer.json has token id {} but config.json's vocab_size is {n}",
                by_id.len() - 1
            )));
        }
        by_id.resize(n, None);
        Ok(by_id
            .into_iter()
            .enumerate()
            .map(|(i, t)| t.unwrap_or_else(|| (format!("[PAD{i}]"), UNUSED)))
            .unzip())
    }

    /// llama.cpp's name for the pre-tokenizer: the hash of the reference text's ids, or (for
    /// tokenizers it has no hash of) the structure of the pre-tokenizer.
    fn pre_name(&self) -> Result<String> {
        let enc = self
            .lib
            .encode(CHK_TEXT, true)
            .map_err(|e| ConvertError::BadInput(format!("tokenizer.json: {e}")))?;
        let ids: Vec<String> = enc.get_ids().iter().map(u32::to_string).collect();
        let hash = hex::encode(sha2::Sha256::digest(format!("[{}]", ids.join(", "))));
        if let Some((_, name)) = PRE_HASHES.iter().rev().find(|(h, _)| *h == hash) {
            return Ok(name.to_string());
        }
        // Not a published model: recognise the common pre-tokenizers by their regex.
        let pre = self.json["pre_tokenizer"].to_string();
        let name = if pre
            .contains(r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}")
        {
            "llama-bpe"
        } else if pre
            .contains(r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}|")
        {
            "qwen2"
        } else if self.json["pre_tokenizer"]["type"] == "ByteLevel"
            && self.json["pre_tokenizer"]["use_regex"] != false
        {
            "gpt-2"
        } else {
            return Err(ConvertError::BadInput(format!(
                "tokenizer.json: llama.cpp does not recognise this BPE pre-tokenizer \
                 (reference hash {hash}), so a GGUF of it would not tokenize correctly"
            )));
        };
        tracing::warn!(hash, name, "pre-tokenizer hash unknown; named by its regex");
        Ok(name.to_string())
    }

    /// The id of a special token named in tokenizer_config.json (`bos_token` ...).
    fn special_id(&self, which: &str, tokens: &[String], raw: &[String]) -> Option<u32> {
        let v = &self.config[format!("{which}_token")];
        let content = v.as_str().or_else(|| v["content"].as_str())?;
        raw.iter()
            .position(|t| t == content)
            .or_else(|| tokens.iter().position(|t| t == content))
            .map(|i| i as u32)
    }

    /// Whether the post-processor puts `content` first (`first`) or last in a single sequence.
    fn template_adds(&self, content: &str, first: bool) -> Option<bool> {
        let pp = &self.json["post_processor"];
        let tp = if pp["type"] == "TemplateProcessing" {
            pp
        } else {
            pp["processors"]
                .as_array()?
                .iter()
                .find(|p| p["type"] == "TemplateProcessing")?
        };
        let single = tp["single"].as_array()?;
        let item = if first {
            single.first()?
        } else {
            single.last()?
        };
        Some(item["SpecialToken"]["id"].as_str() == Some(content))
    }

    fn flag(&self, key: &str) -> Option<bool> {
        self.config[key].as_bool()
    }

    /// The chat template (the default one when the config lists several).
    fn chat_template(&self) -> Option<String> {
        match &self.config["chat_template"] {
            Json::String(s) => Some(s.clone()),
            Json::Array(list) => list
                .iter()
                .find(|t| t["name"] == "default")
                .or_else(|| list.first())
                .and_then(|t| t["template"].as_str())
                .map(str::to_string),
            _ => None,
        }
    }

    /// The tokenizer metadata of a BERT model (WordPiece).
    pub(crate) fn bert_metadata(
        &self,
        vocab_size: Option<usize>,
        type_vocab_size: u32,
    ) -> Result<Vec<(String, Value)>> {
        if self.model_type() != "WordPiece" {
            return Err(ConvertError::BadInput(format!(
                "tokenizer.json: a bert model needs a WordPiece tokenizer, this one is `{}`",
                self.model_type()
            )));
        }
        let (raw, types) = self.tokens(vocab_size)?;
        let tokens: Vec<String> = raw
            .iter()
            .zip(&types)
            .map(|(t, &ty)| {
                if ty == CONTROL {
                    t.clone()
                } else if let Some(rest) = t.strip_prefix("##") {
                    rest.to_string()
                } else {
                    format!("\u{2581}{t}")
                }
            })
            .collect();
        let mut md = vec![
            (
                "tokenizer.ggml.token_type_count".into(),
                Value::U32(type_vocab_size),
            ),
            ("tokenizer.ggml.model".into(), "bert".into()),
            ("tokenizer.ggml.pre".into(), self.pre_name()?.into()),
        ];
        md.push(("tokenizer.ggml.tokens".into(), Value::from(tokens.clone())));
        md.push(("tokenizer.ggml.token_type".into(), Value::from(types)));
        for (which, key) in [
            ("unk", "unknown_token_id"),
            ("sep", "seperator_token_id"),
            ("pad", "padding_token_id"),
            ("cls", "cls_token_id"),
            ("mask", "mask_token_id"),
        ] {
            if let Some(id) = self.special_id(which, &tokens, &raw) {
                md.push((format!("tokenizer.ggml.{key}"), Value::U32(id)));
            }
        }
        if let Some(t) = self.chat_template() {
            md.push(("tokenizer.chat_template".into(), t.into()));
        }
        Ok(md)
    }

    /// The tokenizer metadata of a decoder with a byte-level BPE tokenizer.
    pub(crate) fn bpe_metadata(
        &self,
        vocab_size: Option<usize>,
        config_bos: Option<u32>,
        config_eos: Option<u32>,
    ) -> Result<Vec<(String, Value)>> {
        match self.model_type() {
            "BPE" => {}
            other => {
                return Err(ConvertError::BadInput(format!(
                    "tokenizer.json: perch converts byte-level BPE (gpt2-style) and WordPiece \
                     tokenizers; this one is `{other}`"
                )));
            }
        }
        if self.json["model"]["byte_fallback"] == true {
            return Err(ConvertError::BadInput(
                "tokenizer.json: a SentencePiece-style BPE (byte_fallback) tokenizer; \
                 llama.cpp converts those from tokenizer.model, which perch does not read yet"
                    .into(),
            ));
        }
        let (tokens, types) = self.tokens(vocab_size)?;
        let merges: Vec<String> = self.json["model"]["merges"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| match m {
                Json::String(s) => Ok(s.clone()),
                Json::Array(pair) if pair.len() == 2 => Ok(format!(
                    "{} {}",
                    pair[0].as_str().unwrap_or_default(),
                    pair[1].as_str().unwrap_or_default()
                )),
                other => Err(ConvertError::BadInput(format!(
                    "tokenizer.json: a merge is neither \"a b\" nor [a, b]: {other}"
                ))),
            })
            .collect::<Result<_>>()?;
        let mut md = vec![
            ("tokenizer.ggml.model".to_string(), Value::from("gpt2")),
            ("tokenizer.ggml.pre".into(), self.pre_name()?.into()),
            ("tokenizer.ggml.tokens".into(), Value::from(tokens.clone())),
            ("tokenizer.ggml.token_type".into(), Value::from(types)),
            ("tokenizer.ggml.merges".into(), Value::from(merges)),
        ];
        let bos = self.special_id("bos", &tokens, &tokens).or(config_bos);
        let eos = self.special_id("eos", &tokens, &tokens).or(config_eos);
        for (id, key) in [
            (bos, "bos_token_id"),
            (eos, "eos_token_id"),
            (self.special_id("unk", &tokens, &tokens), "unknown_token_id"),
            (self.special_id("pad", &tokens, &tokens), "padding_token_id"),
        ] {
            if let Some(id) = id {
                md.push((format!("tokenizer.ggml.{key}"), Value::U32(id)));
            }
        }
        let text = |id: Option<u32>| id.and_then(|i| tokens.get(i as usize)).cloned();
        let add_bos = self
            .flag("add_bos_token")
            .or_else(|| self.template_adds(&text(bos)?, true));
        let add_eos = self
            .flag("add_eos_token")
            .or_else(|| self.template_adds(&text(eos)?, false));
        if let Some(b) = add_bos {
            md.push(("tokenizer.ggml.add_bos_token".into(), Value::Bool(b)));
        }
        if let Some(b) = add_eos {
            md.push(("tokenizer.ggml.add_eos_token".into(), Value::Bool(b)));
        }
        if let Some(t) = self.chat_template() {
            md.push(("tokenizer.chat_template".into(), t.into()));
        }
        Ok(md)
    }
}

/// convert_hf_to_gguf's `does_token_look_special`: added tokens shaped like control tokens.
fn looks_special(t: &str) -> bool {
    ["<pad>", "<mask>", "<2mass>", "[@BOS@]"].contains(&t)
        || (t.starts_with("<|") && t.ends_with("|>"))
        || (t.starts_with("<\u{ff5c}") && t.ends_with("\u{ff5c}>"))
        || (t.starts_with("<unused") && t.ends_with('>'))
}
