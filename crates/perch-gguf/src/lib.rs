//! # perch-gguf
//!
//! Reads and writes GGUF files. (Being built: see issue 2.)
#![deny(missing_docs)]
