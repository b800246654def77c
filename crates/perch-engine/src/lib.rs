//! # perch-engine
//!
//! Runs llama-family models from GGUF files on the CPU: architectures, operations, the paged
//! KV cache, the scheduler, sampling and the engine loop. See `docs/ARCHITECTURE.md`.
#![deny(missing_docs)]
