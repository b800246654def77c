//! [`OnnxEmbedder`]: sentence embeddings from an ONNX transformer run by ONNX Runtime.
//!
//! A sentence-transformers model exported to ONNX is a transformer whose output is one
//! vector per token; the sentence vector comes from a pooling step and an optional
//! normalization that sentence-transformers keeps outside the network, in `modules.json`
//! and `1_Pooling/config.json`. The embedder reads those beside the model (or one folder up,
//! for the `onnx/model.onnx` layout of Hugging Face repositories) and defaults to mean
//! pooling followed by L2 normalization when they are absent.
//!
//! Tokenization is `tokenizers` over `tokenizer.json`, with the file's own padding turned
//! off (many pad every text to 128 tokens); inputs longer than the model's maximum sequence
//! length are cut here (or refused, per call), and batches are padded to their longest member.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ort::session::{Session, SessionInputValue};
use ort::value::{Tensor, TensorElementType, ValueType};
use serde_json::Value as Json;
use tokenizers::{Encoding, PostProcessor as _, Token, Tokenizer, TruncationDirection};

use crate::error::{OnnxError, Result};
use crate::runtime::SessionConfig;

/// One input to embed: text, or token ids of the text (without special tokens, which are
/// added as they are for text, the way OpenAI's token-array inputs work).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmbedInput {
    /// Text, tokenized with the model's tokenizer.
    Text(String),
    /// Token ids of a text.
    Tokens(Vec<u32>),
}

impl From<&str> for EmbedInput {
    fn from(s: &str) -> Self {
        Self::Text(s.to_string())
    }
}

impl From<String> for EmbedInput {
    fn from(s: String) -> Self {
        Self::Text(s)
    }
}

impl From<Vec<u32>> for EmbedInput {
    fn from(ids: Vec<u32>) -> Self {
        Self::Tokens(ids)
    }
}

/// How token vectors become one sentence vector (sentence-transformers' pooling modes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pooling {
    /// Average of the token vectors under the attention mask.
    #[default]
    Mean,
    /// The first token's vector (`[CLS]`).
    Cls,
    /// Element-wise maximum over the tokens.
    Max,
    /// The last real token's vector.
    LastToken,
}

/// One embedding and the tokens it took (for usage accounting).
#[derive(Debug, Clone, PartialEq)]
pub struct Embedding {
    /// The vector ([`OnnxEmbedder::dimension`] values; unit length when normalizing).
    pub vector: Vec<f32>,
    /// Tokens fed to the model, special tokens included.
    pub tokens: usize,
}

/// Why one input cannot be embedded: the caller's input, not the model, is at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InputError {
    /// The input has no tokens at all.
    #[error("an input has no tokens")]
    Empty,
    /// More tokens than the model reads, and truncation was not asked for.
    #[error("an input has {tokens} tokens, more than the model's maximum of {max}")]
    TooLong {
        /// The input's token count (special tokens included).
        tokens: usize,
        /// The model's maximum.
        max: usize,
    },
    /// A token id the tokenizer does not know.
    #[error("token id {id} is outside the vocabulary (0..{vocab})")]
    BadToken {
        /// The id.
        id: u32,
        /// The vocabulary size (added tokens included).
        vocab: usize,
    },
    /// The tokenizer refused the text.
    #[error("cannot tokenize the input: {0}")]
    Tokenizer(String),
}

/// One input's token ids, ready for [`OnnxEmbedder::embed_ids`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    /// The ids the model reads.
    pub ids: Vec<u32>,
    /// Whether the input was cut to the model's maximum.
    pub truncated: bool,
}

/// Options of [`OnnxEmbedder::load`]; `Default` finds everything beside the model.
#[derive(Debug, Clone)]
pub struct EmbedderConfig {
    /// ONNX Runtime threads and optimization level.
    pub session: SessionConfig,
    /// tokenizer.json (default: beside the model, or one folder up).
    pub tokenizer: Option<PathBuf>,
    /// Pooling (default: from 1_Pooling/config.json, else mean).
    pub pooling: Option<Pooling>,
    /// L2-normalize (default: whether modules.json lists a Normalize module; true when
    /// there is no modules.json).
    pub normalize: Option<bool>,
    /// Maximum tokens per input (default: sentence_bert_config.json's max_seq_length, else
    /// the tokenizer's truncation length, else 512).
    pub max_tokens: Option<usize>,
    /// Cut longer inputs to the maximum (sentence-transformers' behaviour, the default);
    /// when false they are an error.
    pub truncate: bool,
    /// Inputs per ONNX Runtime run (default 32).
    pub batch_size: usize,
    /// The model output holding token vectors (default: `last_hidden_state`,
    /// `token_embeddings`, else the first float output of rank 3).
    pub output: Option<String>,
}

impl Default for EmbedderConfig {
    fn default() -> Self {
        Self {
            session: SessionConfig::default(),
            tokenizer: None,
            pooling: None,
            normalize: None,
            max_tokens: None,
            truncate: true,
            batch_size: 32,
            output: None,
        }
    }
}

/// The element type a model wants for its integer inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IdType {
    I64,
    I32,
}

/// A sentence-embedding model: ONNX Runtime session, tokenizer, pooling, normalization.
/// `embed` takes `&self` and may be called from several threads (runs are serialized).
pub struct OnnxEmbedder {
    session: Mutex<Session>,
    tokenizer: Tokenizer,
    pooling: Pooling,
    normalize: bool,
    max_tokens: usize,
    /// The configured default of [`OnnxEmbedder::embed`] (per call in `prepare`).
    truncate: bool,
    /// Special tokens the post-processor adds to one sequence.
    n_special: usize,
    batch_size: usize,
    dimension: usize,
    pad_id: u32,
    id_type: IdType,
    has_token_type_ids: bool,
    has_attention_mask: bool,
    /// Whether the chosen output is already one vector per input (rank 2).
    pooled_output: bool,
    output: String,
    model_path: PathBuf,
}

impl std::fmt::Debug for OnnxEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxEmbedder")
            .field("model", &self.model_path)
            .field("dimension", &self.dimension)
            .field("pooling", &self.pooling)
            .field("normalize", &self.normalize)
            .field("max_tokens", &self.max_tokens)
            .finish_non_exhaustive()
    }
}

fn read_json(path: &Path) -> Result<Option<Json>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| OnnxError::Config {
                path: path.to_path_buf(),
                reason: format!("invalid JSON: {e}"),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(OnnxError::io(path, e)),
    }
}

/// The model's folder and its parent: where sentence-transformers files may be.
fn search_dirs(model: &Path) -> Vec<PathBuf> {
    let dir = model.parent().unwrap_or(Path::new(".")).to_path_buf();
    let mut dirs = vec![dir.clone()];
    if let Some(up) = dir.parent() {
        dirs.push(if up.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            up.to_path_buf()
        });
    }
    dirs
}

/// Pooling settings from a sentence-transformers Pooling config.
fn pooling_from_config(path: &Path, cfg: &Json) -> Result<Pooling> {
    let on = |k: &str| cfg.get(k).and_then(Json::as_bool).unwrap_or(false);
    let modes: Vec<Pooling> = [
        ("pooling_mode_mean_tokens", Pooling::Mean),
        ("pooling_mode_cls_token", Pooling::Cls),
        ("pooling_mode_max_tokens", Pooling::Max),
        ("pooling_mode_lasttoken", Pooling::LastToken),
    ]
    .into_iter()
    .filter(|(k, _)| on(k))
    .map(|(_, p)| p)
    .collect();
    let bad = |reason: String| OnnxError::Config {
        path: path.to_path_buf(),
        reason,
    };
    if on("pooling_mode_mean_sqrt_len_tokens") || on("pooling_mode_weightedmean_tokens") {
        return Err(bad(
            "mean_sqrt_len and weighted-mean pooling are not supported".into(),
        ));
    }
    if let Some(mode) = cfg.get("pooling_mode").and_then(Json::as_str) {
        return match mode {
            "mean" => Ok(Pooling::Mean),
            "cls" => Ok(Pooling::Cls),
            "max" => Ok(Pooling::Max),
            "lasttoken" => Ok(Pooling::LastToken),
            m => Err(bad(format!("pooling mode {m:?} is not supported"))),
        };
    }
    match modes.as_slice() {
        [] => Ok(Pooling::Mean),
        [one] => Ok(*one),
        _ => Err(bad(format!(
            "several pooling modes at once ({modes:?}, concatenated) are not supported"
        ))),
    }
}

/// Sentence-transformers settings found beside the model: pooling, normalize, max length.
fn sentence_transformers_config(
    model: &Path,
) -> Result<(Option<Pooling>, Option<bool>, Option<usize>)> {
    let mut pooling = None;
    let mut normalize = None;
    let mut max_len = None;
    for dir in search_dirs(model) {
        let modules_path = dir.join("modules.json");
        if let Some(modules) = read_json(&modules_path)? {
            let list = modules.as_array().ok_or_else(|| OnnxError::Config {
                path: modules_path.clone(),
                reason: "expected a list of modules".into(),
            })?;
            let kind = |m: &Json| {
                m.get("type")
                    .and_then(Json::as_str)
                    .unwrap_or("")
                    .to_string()
            };
            normalize = Some(list.iter().any(|m| kind(m).ends_with(".Normalize")));
            if let Some(p) = list.iter().find(|m| kind(m).ends_with(".Pooling")) {
                let sub = p.get("path").and_then(Json::as_str).unwrap_or("1_Pooling");
                let cfg_path = dir.join(sub).join("config.json");
                if let Some(cfg) = read_json(&cfg_path)? {
                    pooling = Some(pooling_from_config(&cfg_path, &cfg)?);
                }
            }
        } else {
            let cfg_path = dir.join("1_Pooling/config.json");
            if let Some(cfg) = read_json(&cfg_path)? {
                pooling = Some(pooling_from_config(&cfg_path, &cfg)?);
            }
        }
        if let Some(cfg) = read_json(&dir.join("sentence_bert_config.json"))? {
            max_len = cfg
                .get("max_seq_length")
                .and_then(Json::as_u64)
                .map(|n| n as usize);
        }
        if pooling.is_some() || normalize.is_some() || max_len.is_some() {
            break;
        }
    }
    Ok((pooling, normalize, max_len))
}

/// The tokenizer.json [`OnnxEmbedder::load`] uses by default: beside the model, or one folder
/// up (the `onnx/model.onnx` layout of Hugging Face repositories).
///
/// # Errors
/// [`OnnxError::Config`] naming the folders searched.
pub fn find_tokenizer(model: &Path) -> Result<PathBuf> {
    let dirs = search_dirs(model);
    dirs.iter()
        .map(|d| d.join("tokenizer.json"))
        .find(|p| p.is_file())
        .ok_or_else(|| OnnxError::Config {
            path: model.to_path_buf(),
            reason: format!(
                "no tokenizer.json beside the model (looked in {}); give its path",
                dirs.iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })
}

fn id_type(session: &Session, name: &str) -> Result<IdType> {
    let input = session
        .inputs()
        .iter()
        .find(|i| i.name() == name)
        .expect("caller checked");
    match input.dtype() {
        ValueType::Tensor {
            ty: TensorElementType::Int64,
            ..
        } => Ok(IdType::I64),
        ValueType::Tensor {
            ty: TensorElementType::Int32,
            ..
        } => Ok(IdType::I32),
        t => Err(OnnxError::Input(format!(
            "the model's {name} input is {t:?}; perch feeds int64 or int32 token ids"
        ))),
    }
}

impl OnnxEmbedder {
    /// Loads the model at `model` (an ONNX file) with its tokenizer and sentence-transformers
    /// settings.
    ///
    /// # Errors
    /// The ONNX Runtime library missing, an invalid model, no tokenizer.json, unsupported
    /// pooling settings, or a model without `input_ids` or a usable float output.
    pub fn load(model: impl AsRef<Path>, cfg: &EmbedderConfig) -> Result<Self> {
        let model = model.as_ref();
        crate::OnnxModel::open(model)?;
        let session = cfg.session.open(model)?;
        let tok_path = match &cfg.tokenizer {
            Some(p) => p.clone(),
            None => find_tokenizer(model)?,
        };
        let mut tokenizer = Tokenizer::from_file(&tok_path).map_err(|e| OnnxError::Config {
            path: tok_path.clone(),
            reason: format!("cannot load the tokenizer: {e}"),
        })?;
        let (st_pooling, st_normalize, st_max) = sentence_transformers_config(model)?;
        let pooling = cfg.pooling.or(st_pooling).unwrap_or_default();
        let normalize = cfg.normalize.or(st_normalize).unwrap_or(true);
        let max_tokens = cfg
            .max_tokens
            .or(st_max)
            .or_else(|| tokenizer.get_truncation().map(|t| t.max_length))
            .unwrap_or(512);
        if max_tokens < 2 {
            return Err(OnnxError::Input(format!(
                "maximum tokens {max_tokens} is too small"
            )));
        }
        let pad_id = tokenizer
            .get_padding()
            .map(|p| p.pad_id)
            .or_else(|| tokenizer.token_to_id("[PAD]"))
            .or_else(|| tokenizer.token_to_id("<pad>"))
            .unwrap_or(0);
        tokenizer.with_padding(None);
        // Truncation is done here per input (`prepare`), so a too-long input can be counted
        // and refused when the caller does not want it cut.
        tokenizer
            .with_truncation(None)
            .map_err(|e| OnnxError::Config {
                path: tok_path.clone(),
                reason: format!("cannot turn the file's truncation off: {e}"),
            })?;
        let n_special = tokenizer
            .get_post_processor()
            .map_or(0, |p| p.added_tokens(false));
        if n_special >= max_tokens {
            return Err(OnnxError::Input(format!(
                "maximum tokens {max_tokens} leaves no room beside the {n_special} special tokens"
            )));
        }

        let has = |n: &str| session.inputs().iter().any(|i| i.name() == n);
        if !has("input_ids") {
            let names: Vec<&str> = session.inputs().iter().map(|i| i.name()).collect();
            return Err(OnnxError::Input(format!(
                "{}: the model has no input_ids input (its inputs: {})",
                model.display(),
                names.join(", ")
            )));
        }
        let id_type = id_type(&session, "input_ids")?;
        let has_attention_mask = has("attention_mask");
        let has_token_type_ids = has("token_type_ids");
        for i in session.inputs() {
            if !["input_ids", "attention_mask", "token_type_ids"].contains(&i.name()) {
                return Err(OnnxError::Input(format!(
                    "{}: the model has an input {:?} the embedder does not know how to fill",
                    model.display(),
                    i.name()
                )));
            }
        }
        let (output, rank, dim) = choose_output(&session, cfg.output.as_deref(), model)?;
        let mut embedder = Self {
            session: Mutex::new(session),
            tokenizer,
            pooling,
            normalize,
            max_tokens,
            truncate: cfg.truncate,
            n_special,
            batch_size: cfg.batch_size.max(1),
            dimension: dim.unwrap_or(0),
            pad_id,
            id_type,
            has_token_type_ids,
            has_attention_mask,
            pooled_output: rank == 2,
            output,
            model_path: model.to_path_buf(),
        };
        if dim.is_none() {
            // The output's width is symbolic: learn it from one run.
            let probe = embedder.run_batch(&[vec![embedder.pad_id]])?;
            embedder.dimension = probe[0].len();
        }
        tracing::debug!(?embedder, "loaded ONNX embedding model");
        Ok(embedder)
    }

    /// The embedding width.
    pub fn dimension(&self) -> usize {
        self.dimension
    }

    /// The most tokens one input may have (special tokens included).
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// The pooling in use.
    pub fn pooling(&self) -> Pooling {
        self.pooling
    }

    /// Whether vectors are L2-normalized.
    pub fn normalize(&self) -> bool {
        self.normalize
    }

    /// The tokenizer's vocabulary size (added tokens included): token ids must be below it.
    pub fn vocab_size(&self) -> usize {
        self.tokenizer.get_vocab_size(true)
    }

    /// The model file.
    pub fn model_path(&self) -> &Path {
        &self.model_path
    }

    /// The token ids the model sees for one input (special tokens added, truncated to
    /// [`OnnxEmbedder::max_tokens`] when the embedder was configured to truncate).
    ///
    /// # Errors
    /// [`OnnxError::Input`] with the [`InputError`]'s message.
    pub fn tokenize(&self, input: &EmbedInput) -> Result<Vec<u32>> {
        self.prepare(input, self.truncate)
            .map(|p| p.ids)
            .map_err(|e| OnnxError::Input(e.to_string()))
    }

    /// The token ids the model sees for one input: text through the tokenizer, token ids as
    /// the text's tokens; special tokens added by the tokenizer's post-processor. An input
    /// longer than [`OnnxEmbedder::max_tokens`] is cut (keeping its special tokens, as
    /// Hugging Face tokenizers truncate) when `truncate`, else refused.
    ///
    /// # Errors
    /// An [`InputError`]: the caller's input cannot be embedded.
    pub fn prepare(
        &self,
        input: &EmbedInput,
        truncate: bool,
    ) -> std::result::Result<Prepared, InputError> {
        let mut enc = match input {
            EmbedInput::Text(text) => self
                .tokenizer
                .encode(text.as_str(), false)
                .map_err(|e| InputError::Tokenizer(e.to_string()))?,
            EmbedInput::Tokens(ids) => {
                let mut tokens = Vec::with_capacity(ids.len());
                for &id in ids {
                    let value =
                        self.tokenizer
                            .id_to_token(id)
                            .ok_or_else(|| InputError::BadToken {
                                id,
                                vocab: self.vocab_size(),
                            })?;
                    tokens.push(Token::new(id, value, (0, 0)));
                }
                Encoding::from_tokens(tokens, 0)
            }
        };
        let total = enc.len() + self.n_special;
        let truncated = total > self.max_tokens;
        if truncated {
            if !truncate {
                return Err(InputError::TooLong {
                    tokens: total,
                    max: self.max_tokens,
                });
            }
            enc.truncate(
                self.max_tokens - self.n_special,
                0,
                TruncationDirection::Right,
            );
        }
        let enc = self
            .tokenizer
            .post_process(enc, None, true)
            .map_err(|e| InputError::Tokenizer(format!("cannot add the special tokens: {e}")))?;
        let ids = enc.get_ids().to_vec();
        if ids.is_empty() {
            return Err(InputError::Empty);
        }
        if ids.len() > self.max_tokens {
            return Err(InputError::TooLong {
                tokens: ids.len(),
                max: self.max_tokens,
            });
        }
        Ok(Prepared { ids, truncated })
    }

    /// Checks token ids meant to be fed as they are (no special tokens added): not empty,
    /// inside the vocabulary, and at most [`OnnxEmbedder::max_tokens`] (cut to it when
    /// `truncate`).
    ///
    /// # Errors
    /// An [`InputError`] naming what is wrong.
    pub fn check_ids(
        &self,
        mut ids: Vec<u32>,
        truncate: bool,
    ) -> std::result::Result<Prepared, InputError> {
        if ids.is_empty() {
            return Err(InputError::Empty);
        }
        let vocab = self.vocab_size();
        if let Some(&id) = ids.iter().find(|&&id| id as usize >= vocab) {
            return Err(InputError::BadToken { id, vocab });
        }
        let truncated = ids.len() > self.max_tokens;
        if truncated {
            if !truncate {
                return Err(InputError::TooLong {
                    tokens: ids.len(),
                    max: self.max_tokens,
                });
            }
            ids.truncate(self.max_tokens);
        }
        Ok(Prepared { ids, truncated })
    }

    /// Embeds the inputs, in order. Inputs are grouped by length into batches of up to the
    /// configured batch size, each padded to its longest member.
    ///
    /// # Errors
    /// An input without tokens, too long (when not truncating) or with a token id outside
    /// the vocabulary; ONNX Runtime failing.
    pub fn embed(&self, inputs: &[EmbedInput]) -> Result<Vec<Embedding>> {
        let ids: Vec<Vec<u32>> = inputs
            .iter()
            .map(|i| self.tokenize(i))
            .collect::<Result<_>>()?;
        self.embed_ids(ids)
    }

    /// Embeds already prepared token sequences (as [`OnnxEmbedder::tokenize`] returns).
    pub fn embed_ids(&self, ids: Vec<Vec<u32>>) -> Result<Vec<Embedding>> {
        for seq in &ids {
            if seq.is_empty() || seq.len() > self.max_tokens {
                return Err(OnnxError::Input(format!(
                    "a token sequence has {} tokens; it must have 1 to {}",
                    seq.len(),
                    self.max_tokens
                )));
            }
        }
        let mut order: Vec<usize> = (0..ids.len()).collect();
        order.sort_by_key(|&i| ids[i].len());
        let mut out: Vec<Option<Embedding>> = vec![None; ids.len()];
        for chunk in order.chunks(self.batch_size) {
            let batch: Vec<Vec<u32>> = chunk.iter().map(|&i| ids[i].clone()).collect();
            let vectors = self.run_batch(&batch)?;
            for ((&i, vector), seq) in chunk.iter().zip(vectors).zip(&batch) {
                out[i] = Some(Embedding {
                    vector,
                    tokens: seq.len(),
                });
            }
        }
        Ok(out
            .into_iter()
            .map(|e| e.expect("every input embedded"))
            .collect())
    }

    /// One ONNX Runtime run over a padded batch; returns pooled (and normalized) vectors.
    fn run_batch(&self, batch: &[Vec<u32>]) -> Result<Vec<Vec<f32>>> {
        let b = batch.len();
        let s = batch.iter().map(Vec::len).max().unwrap_or(0);
        let mut ids = vec![i64::from(self.pad_id); b * s];
        let mut mask = vec![0i64; b * s];
        for (r, seq) in batch.iter().enumerate() {
            for (c, &id) in seq.iter().enumerate() {
                ids[r * s + c] = i64::from(id);
                mask[r * s + c] = 1;
            }
        }
        let shape = vec![b as i64, s as i64];
        let tensor = |name: &str, v: &[i64]| -> Result<SessionInputValue<'static>> {
            let ctx = format!("building the {name} input");
            Ok(match self.id_type {
                IdType::I64 => Tensor::from_array((shape.clone(), v.to_vec()))
                    .map_err(|e| OnnxError::runtime(&ctx, e))?
                    .into_dyn()
                    .into(),
                IdType::I32 => Tensor::from_array((
                    shape.clone(),
                    v.iter().map(|&x| x as i32).collect::<Vec<_>>(),
                ))
                .map_err(|e| OnnxError::runtime(&ctx, e))?
                .into_dyn()
                .into(),
            })
        };
        let mut inputs: Vec<(Cow<'_, str>, SessionInputValue<'_>)> =
            vec![("input_ids".into(), tensor("input_ids", &ids)?)];
        if self.has_attention_mask {
            inputs.push(("attention_mask".into(), tensor("attention_mask", &mask)?));
        }
        if self.has_token_type_ids {
            inputs.push((
                "token_type_ids".into(),
                tensor("token_type_ids", &vec![0; b * s])?,
            ));
        }
        let mut session = self.session.lock().unwrap_or_else(|p| p.into_inner());
        let outputs = session
            .run(inputs)
            .map_err(|e| OnnxError::runtime("running the embedding model", e))?;
        let (out_shape, data) = outputs[self.output.as_str()]
            .try_extract_tensor::<f32>()
            .map_err(|e| OnnxError::runtime("reading the embedding output", e))?;
        let dims: Vec<usize> = out_shape.iter().map(|&d| d as usize).collect();
        let mut vectors = if self.pooled_output {
            if dims.len() != 2 || dims[0] != b {
                return Err(OnnxError::Input(format!(
                    "the model's output has shape {dims:?}, expected [{b}, dim]"
                )));
            }
            data.chunks_exact(dims[1])
                .map(<[f32]>::to_vec)
                .collect::<Vec<_>>()
        } else {
            if dims.len() != 3 || dims[0] != b || dims[1] != s {
                return Err(OnnxError::Input(format!(
                    "the model's output has shape {dims:?}, expected [{b}, {s}, dim]"
                )));
            }
            let h = dims[2];
            (0..b)
                .map(|r| {
                    pool(
                        self.pooling,
                        &data[r * s * h..(r + 1) * s * h],
                        &mask[r * s..(r + 1) * s],
                        h,
                    )
                })
                .collect()
        };
        if self.normalize {
            vectors.iter_mut().for_each(|v| l2_normalize(v));
        }
        Ok(vectors)
    }
}

/// The inputs for one unpadded token sequence (`input_ids`, and `attention_mask` /
/// `token_type_ids` when the model has them), for calibration runs.
pub(crate) fn single_inputs(
    session: &Session,
    ids: &[u32],
) -> Result<Vec<(Cow<'static, str>, SessionInputValue<'static>)>> {
    let shape = vec![1i64, ids.len() as i64];
    let mut out = Vec::new();
    for input in session.inputs() {
        let vals: Vec<i64> = match input.name() {
            "input_ids" => ids.iter().map(|&i| i64::from(i)).collect(),
            "attention_mask" => vec![1; ids.len()],
            "token_type_ids" => vec![0; ids.len()],
            other => {
                return Err(OnnxError::Input(format!(
                    "the model has an input {other:?} perch does not know how to fill"
                )));
            }
        };
        let ctx = format!("building the {} input", input.name());
        let value: SessionInputValue<'static> = match id_type(session, input.name())? {
            IdType::I64 => Tensor::from_array((shape.clone(), vals))
                .map_err(|e| OnnxError::runtime(&ctx, e))?
                .into_dyn()
                .into(),
            IdType::I32 => Tensor::from_array((
                shape.clone(),
                vals.iter().map(|&v| v as i32).collect::<Vec<_>>(),
            ))
            .map_err(|e| OnnxError::runtime(&ctx, e))?
            .into_dyn()
            .into(),
        };
        out.push((Cow::Owned(input.name().to_string()), value));
    }
    Ok(out)
}

/// Picks the output holding token vectors (or pooled vectors): name, rank, width if fixed.
fn choose_output(
    session: &Session,
    wanted: Option<&str>,
    model: &Path,
) -> Result<(String, usize, Option<usize>)> {
    let float_outputs: Vec<(String, Vec<i64>)> = session
        .outputs()
        .iter()
        .filter_map(|o| match o.dtype() {
            ValueType::Tensor {
                ty: TensorElementType::Float32,
                shape,
                ..
            } => Some((o.name().to_string(), shape.iter().copied().collect())),
            _ => None,
        })
        .collect();
    let pick = match wanted {
        Some(w) => float_outputs.iter().find(|(n, _)| n == w).ok_or_else(|| {
            OnnxError::Input(format!(
                "{}: the model has no float output {w:?}",
                model.display()
            ))
        })?,
        None => float_outputs
            .iter()
            .find(|(n, _)| n == "last_hidden_state" || n == "token_embeddings")
            .or_else(|| float_outputs.iter().find(|(_, s)| s.len() == 3))
            .or_else(|| {
                float_outputs
                    .iter()
                    .find(|(n, s)| n == "sentence_embedding" && s.len() == 2)
            })
            .ok_or_else(|| {
                OnnxError::Input(format!(
                    "{}: the model has no float output of shape [batch, tokens, dim]",
                    model.display()
                ))
            })?,
    };
    let (name, shape) = pick;
    if !(2..=3).contains(&shape.len()) {
        return Err(OnnxError::Input(format!(
            "output {name:?} has rank {}, expected 2 or 3",
            shape.len()
        )));
    }
    let dim = shape
        .last()
        .and_then(|&d| usize::try_from(d).ok())
        .filter(|&d| d > 0);
    Ok((name.clone(), shape.len(), dim))
}

/// Pools one sequence's token vectors (`tokens` is `[s, h]`, `mask` is `[s]`).
pub(crate) fn pool(pooling: Pooling, tokens: &[f32], mask: &[i64], h: usize) -> Vec<f32> {
    let rows = || {
        tokens
            .chunks_exact(h)
            .zip(mask)
            .filter(|(_, m)| **m != 0)
            .map(|(r, _)| r)
    };
    match pooling {
        Pooling::Mean => {
            let mut sum = vec![0f32; h];
            let mut n = 0f32;
            for row in rows() {
                sum.iter_mut().zip(row).for_each(|(s, v)| *s += v);
                n += 1.0;
            }
            let n = n.max(1e-9);
            sum.iter_mut().for_each(|s| *s /= n);
            sum
        }
        Pooling::Cls => tokens[..h].to_vec(),
        Pooling::Max => {
            let mut max = vec![f32::NEG_INFINITY; h];
            for row in rows() {
                max.iter_mut().zip(row).for_each(|(m, v)| *m = m.max(*v));
            }
            max
        }
        Pooling::LastToken => {
            let last = mask.iter().rposition(|&m| m != 0).unwrap_or(0);
            tokens[last * h..(last + 1) * h].to_vec()
        }
    }
}

/// Scales to unit length (torch's `F.normalize`, eps 1e-12).
pub(crate) fn l2_normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= norm);
}

/// Cosine similarity of two vectors.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb).max(1e-12)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedder_can_be_shared_between_threads() {
        fn shareable<T: Send + Sync>() {}
        shareable::<OnnxEmbedder>();
    }

    #[test]
    fn mean_pooling_skips_padding() {
        let tokens = [1.0, 2.0, 3.0, 4.0, 100.0, 100.0];
        assert_eq!(pool(Pooling::Mean, &tokens, &[1, 1, 0], 2), vec![2.0, 3.0]);
        assert_eq!(pool(Pooling::Max, &tokens, &[1, 1, 0], 2), vec![3.0, 4.0]);
        assert_eq!(pool(Pooling::Cls, &tokens, &[1, 1, 0], 2), vec![1.0, 2.0]);
        assert_eq!(
            pool(Pooling::LastToken, &tokens, &[1, 1, 0], 2),
            vec![3.0, 4.0]
        );
    }

    #[test]
    fn pooling_config_modes() {
        let p = Path::new("c.json");
        let cfg = serde_json::json!({"pooling_mode_cls_token": true});
        assert_eq!(pooling_from_config(p, &cfg).unwrap(), Pooling::Cls);
        let both =
            serde_json::json!({"pooling_mode_cls_token": true, "pooling_mode_mean_tokens": true});
        assert!(
            pooling_from_config(p, &both)
                .unwrap_err()
                .to_string()
                .contains("several pooling modes")
        );
    }
}
