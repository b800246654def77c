//! Loading a chat model for serving or the command line: the weights, the tokenizer, the chat
//! template and a running [`Engine`], plus turning a conversation or raw text into prompt
//! tokens. `perch run`, `perch chat` and `perch serve` all load models through here, so a model
//! behaves the same whichever front end talks to it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use perch_template::{ChatTemplate, RenderInput, TemplateError};
use perch_tokenizer::{Tokenizer, TokenizerError};

use crate::draft::{DraftConfig, DraftError};
use crate::engine::{Engine, EngineConfig, EngineHandle};
use crate::error::EngineError;
use crate::kv::KvType;
use crate::model::Model;
use crate::session::default_threads;

/// How to load a model.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Context size per sequence in tokens (default: the model's, at most 4096).
    pub n_ctx: Option<usize>,
    /// Sequences that can each hold a full context at once (sizes the KV pool when
    /// `kv_memory` is not given).
    pub parallel: usize,
    /// KV pool size in bytes (overrides `parallel` for sizing).
    pub kv_memory: Option<usize>,
    /// Compute threads (default: the physical cores).
    pub threads: Option<usize>,
    /// Most tokens computed in one forward step.
    pub max_batch_tokens: usize,
    /// A chat template source to use instead of the model's own.
    pub chat_template: Option<String>,
    /// Element type of the KV cache.
    pub kv_type: KvType,
    /// Speculative decoding by prompt lookup (off when `None`).
    pub speculative: Option<crate::speculative::Speculative>,
    /// Speculative decoding with a draft model (off when `None`; not with `speculative`).
    pub draft: Option<DraftOptions>,
}

/// A draft model to load beside the target (`--draft-model`).
#[derive(Clone, Debug)]
pub struct DraftOptions {
    /// The draft model's GGUF file; its vocabulary must match the target's.
    pub path: PathBuf,
    /// Most tokens drafted per step (`--draft-max`).
    pub max_draft: usize,
    /// Drafts shorter than this are not verified (`--draft-min`).
    pub min_draft: usize,
    /// Drafting stops below this top probability (`--draft-p-min`).
    pub p_min: f32,
}

impl DraftOptions {
    /// `path` with the default settings: 8 tokens per step, no minimum, p_min 0.75.
    pub fn new(path: impl Into<PathBuf>) -> DraftOptions {
        DraftOptions {
            path: path.into(),
            max_draft: 8,
            min_draft: 0,
            p_min: 0.75,
        }
    }
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            n_ctx: None,
            parallel: 1,
            kv_memory: None,
            threads: None,
            max_batch_tokens: 512,
            chat_template: None,
            kv_type: KvType::F16,
            speculative: None,
            draft: None,
        }
    }
}

/// Why a model could not be loaded or a prompt could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The model file could not be opened or run.
    #[error("cannot load model {path}: {source}")]
    Model {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: EngineError,
    },
    /// The tokenizer could not be built or refused the text.
    #[error("tokenizer: {0}")]
    Tokenizer(#[from] TokenizerError),
    /// The chat template could not be compiled or rendered.
    #[error("chat template: {0}")]
    Template(#[from] TemplateError),
    /// A setting is out of range.
    #[error("{0}")]
    BadOption(String),
    /// The engine could not start.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The draft model could not be loaded or does not fit the target.
    #[error("draft model {path}: {source}")]
    Draft {
        /// The draft model's file.
        path: PathBuf,
        /// What failed.
        source: Box<DraftError>,
    },
}

/// A loaded chat model with its running engine.
pub struct ChatModel {
    engine: Engine,
    model: Arc<Model>,
    tokenizer: Arc<Tokenizer>,
    template: ChatTemplate,
    n_ctx: usize,
    path: PathBuf,
}

impl std::fmt::Debug for ChatModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatModel")
            .field("path", &self.path)
            .field("n_ctx", &self.n_ctx)
            .finish_non_exhaustive()
    }
}

impl ChatModel {
    /// Load `path` and start its engine.
    pub fn load(path: &Path, opts: &LoadOptions) -> Result<ChatModel, LoadError> {
        let started = Instant::now();
        let model = Model::open(path).map_err(|source| LoadError::Model {
            path: path.to_path_buf(),
            source,
        })?;
        let tokenizer = Tokenizer::from_gguf(model.file())?;
        let text_of = |id: Option<u32>| {
            id.and_then(|i| tokenizer.token_text(i))
                .map(|t| String::from_utf8_lossy(t).into_owned())
                .unwrap_or_default()
        };
        let model_template = model
            .file()
            .opt_str("tokenizer.chat_template")
            .map_err(|e| LoadError::Model {
                path: path.to_path_buf(),
                source: e.into(),
            })?;
        let template = ChatTemplate::for_model(
            opts.chat_template.as_deref(),
            model_template,
            &text_of(tokenizer.bos()),
            &text_of(tokenizer.eos()),
        )?;
        let n_ctx = opts.n_ctx.unwrap_or(model.config().n_ctx_train.min(4096));
        if n_ctx == 0 {
            return Err(LoadError::BadOption(
                "the context size must be positive".into(),
            ));
        }
        let threads = opts.threads.unwrap_or_else(default_threads).max(1);
        let mut cfg = EngineConfig::for_model_kv(
            &model,
            n_ctx,
            opts.parallel.max(1),
            opts.kv_memory,
            threads,
            opts.kv_type,
        );
        cfg.max_batch_tokens = opts.max_batch_tokens.max(1);
        cfg.speculative = opts.speculative;
        if let Some(d) = &opts.draft {
            if opts.speculative.is_some() {
                return Err(LoadError::BadOption(
                    "--draft-ngram and --draft-model cannot be used together; choose one".into(),
                ));
            }
            let err = |source| LoadError::Draft {
                path: d.path.clone(),
                source: Box::new(source),
            };
            let draft = Model::open(&d.path).map_err(|e| err(DraftError::Model(e)))?;
            let mut dc = DraftConfig::new(Arc::new(draft), &tokenizer).map_err(err)?;
            dc.max_draft = d.max_draft;
            dc.min_draft = d.min_draft;
            dc.p_min = d.p_min;
            dc.validate().map_err(err)?;
            tracing::info!(
                path = %d.path.display(),
                arch = %dc.model().config().arch_name,
                layers = dc.model().config().n_layer,
                max_draft = dc.max_draft,
                "draft model loaded"
            );
            cfg.draft = Some(dc);
        }
        tracing::info!(
            path = %path.display(),
            arch = %model.config().arch_name,
            layers = model.config().n_layer,
            n_ctx,
            kv_blocks = cfg.n_blocks,
            threads,
            load_ms = started.elapsed().as_millis() as u64,
            "model loaded"
        );
        let tokenizer = Arc::new(tokenizer);
        let model = Arc::new(model);
        let engine = Engine::start(model.clone(), tokenizer.clone(), cfg)?;
        Ok(ChatModel {
            engine,
            model,
            tokenizer,
            template,
            n_ctx,
            path: path.to_path_buf(),
        })
    }

    /// A handle for submitting requests to the model's engine.
    pub fn handle(&self) -> EngineHandle {
        self.engine.handle()
    }

    /// The model (weights, configuration and the GGUF file with its metadata).
    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Arc<Tokenizer> {
        &self.tokenizer
    }

    /// The chat template.
    pub fn template(&self) -> &ChatTemplate {
        &self.template
    }

    /// Context size per sequence in tokens.
    pub fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    /// The file the model was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Render `messages` (OpenAI-shaped JSON) with the chat template, ending in an assistant
    /// header, and tokenize the result.
    pub fn chat_prompt(&self, messages: &[serde_json::Value]) -> Result<Vec<u32>, LoadError> {
        self.render_prompt(&RenderInput {
            messages: messages.to_vec(),
            add_generation_prompt: true,
            ..RenderInput::default()
        })
    }

    /// Render `input` with the chat template and tokenize the result.
    pub fn render_prompt(&self, input: &RenderInput) -> Result<Vec<u32>, LoadError> {
        let text = self.template.render(input)?;
        self.encode_rendered(&text, self.template.is_go())
    }

    /// Tokenize a prompt rendered by a chat template: special tokens in it (role markers) are
    /// parsed as such. A Jinja template writes any BOS itself; after an Ollama Go template
    /// (`add_bos`) the BOS is added as the vocabulary asks, as Ollama does.
    pub fn encode_rendered(&self, text: &str, add_bos: bool) -> Result<Vec<u32>, LoadError> {
        Ok(self.tokenizer.encode(text, add_bos, true)?)
    }

    /// Tokenize raw text as llama.cpp does for a plain prompt (BOS per the vocabulary,
    /// special-token text taken literally).
    pub fn raw_prompt(&self, text: &str) -> Result<Vec<u32>, LoadError> {
        Ok(self.tokenizer.encode(text, true, false)?)
    }

    /// Cancel everything running and stop the engine thread.
    pub fn shutdown(self) {
        self.engine.shutdown();
    }
}
