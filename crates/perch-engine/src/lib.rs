//! # perch-engine
//!
//! Runs llama-family models from GGUF files on the CPU: architectures, operations, the paged
//! KV cache, the scheduler, sampling and the engine loop. See `docs/ARCHITECTURE.md`.
//!
//! The layering inside the crate: [`config`] reads hyper-parameters; [`arch`] maps each
//! architecture's tensors onto shared layer pieces; [`model`] runs a batched forward step over
//! any number of sequences; [`kv`] holds K and V in fixed-size blocks addressed through each
//! sequence's block table; [`session`] drives one sequence for the command line; [`engine`]
//! runs continuous batching on its own thread; [`perplexity`] scores a text as
//! llama-perplexity does (and KL divergence against a base model); [`loader`] loads a chat model (weights,
//! tokenizer, chat template, engine) for the command line and the server; [`embedding`] runs
//! BERT sentence-embedding models behind the backend-neutral [`embed::Embedder`] trait.
#![deny(missing_docs)]

pub mod arch;
pub mod attention;
mod awake;
pub mod config;
pub mod draft;
pub mod embed;
pub mod embedding;
pub mod engine;
pub mod error;
pub mod imatrix;
pub mod kv;
pub mod loader;
pub mod model;
pub mod ops;
pub mod perplexity;
mod repack;
pub mod sampling;
pub mod scheduler;
pub mod session;
pub mod speculative;
pub mod synth;

pub use config::{Arch, ModelConfig};
pub use embed::{EmbedError, EmbedInput, Embedder, Embedding};
pub use embedding::EmbeddingModel;
pub use error::{EngineError, Result};
pub use model::{LogitsWanted, MatmulObserver, Model, SeqStep, Workspace};
pub use sampling::{Sampler, SamplingError, SamplingParams, StopMatcher};
pub use session::Session;
