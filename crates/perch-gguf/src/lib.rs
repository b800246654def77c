//! # perch-gguf
//!
//! Reads and writes GGUF files, the container llama.cpp and perch keep quantized models in.
//!
//! ## Reading
//!
//! [`GgufFile::open`] maps the file read-only and validates all of it before returning, so
//! that everything after — metadata lookups, tensor views handed to kernels — can trust it:
//!
//! * magic `GGUF`; version 2 or 3 (v1 and big-endian files get a clear error);
//! * the tensor and metadata counts against what the rest of the file could hold;
//! * every string and array length against the bytes left and the limits below;
//! * metadata: non-empty UTF-8 keys, no duplicates, known value type ids, booleans 0 or 1,
//!   `general.alignment` a `u32` power of two;
//! * tensor infos: unique UTF-8 names, at most 4 dims, element and byte counts that fit in
//!   63 bits, a known ggml type, a row length that is a whole number of blocks, an offset that
//!   is a multiple of the alignment, and bytes that lie inside the file without overlapping
//!   another tensor's.
//!
//! Each violation is a [`GgufError`] variant naming the key or tensor concerned; no input
//! makes the reader panic or read out of bounds (the fuzz target in `fuzz/` checks this).
//!
//! Tensors are [`TensorView`]s: an info plus `&[u8]` pointing into the map, no copy.
//!
//! ## Memory limits
//!
//! A hostile file cannot make the reader allocate much more than the file's own size: every
//! count is checked against the bytes that remain (each element needs at least its encoded
//! size: 8 bytes for a string, 12 for a nested array, 24 for a tensor info) before anything is
//! allocated, so parsing takes at most about 5× the bytes of the header sections (the worst
//! cases are arrays of empty strings, 8 bytes in the file and 24 in memory, and capacity
//! reserved for a claimed number of entries). On top of that:
//!
//! | limit | value |
//! |---|---|
//! | [`MAX_STRING_LEN`], one string value | 256 MiB |
//! | [`MAX_KEY_LEN`], one metadata key | 65,535 bytes (the GGUF spec's limit) |
//! | [`MAX_TENSOR_NAME_LEN`], one tensor name | 63 bytes (llama.cpp's `GGML_MAX_NAME` - 1) |
//! | [`MAX_ARRAY_LEN`], elements of one array | 2^30 (as llama.cpp) |
//! | [`MAX_NESTING_DEPTH`], arrays inside arrays | 8 levels |
//! | [`MAX_DIMS`], dims of one tensor | 4 |
//!
//! ## Writing
//!
//! [`GgufWriter`] streams a file: metadata and tensor infos up front, then each tensor's
//! bytes in order, into a temporary file that [`GgufWriter::finish`] renames over the target.
//! [`GgufBuilder`] makes small files in memory (tests, tiny random-weight models). The layout
//! is llama.cpp's and gguf-py's, so reading a file they wrote and writing it back gives the
//! same bytes.
//!
//! ## Metadata
//!
//! [`Value`] covers the thirteen GGUF value types; arrays are typed ([`Array::F32`] holds a
//! `Vec<f32>`, [`Array::String`] a `Vec<GgufString>`, [`Array::Array`] nested arrays).
//! Strings are raw bytes ([`GgufString`]) because some vocabularies hold tokens that are not
//! UTF-8; [`Metadata`]'s accessors give both strict text (`get_str`) and bytes (`get_bytes`).
#![deny(missing_docs)]

mod error;
mod file;
pub mod keys;
mod metadata;
mod read;
mod storage;
mod tensor;
mod value;
mod write;

pub use error::{GgufError, Result, Section};
pub use file::GgufFile;
pub use metadata::Metadata;
pub use perch_quant::GgmlType;
pub use read::MAGIC;
pub use tensor::{MAX_DIMS, TensorInfo, TensorView};
pub use value::{Array, GgufString, Value, ValueType};
pub use write::{DEFAULT_VERSION, GgufBuilder, GgufWriter};

/// Longest string value the reader accepts, in bytes.
pub const MAX_STRING_LEN: u64 = 256 << 20;
/// Longest metadata key, in bytes.
pub const MAX_KEY_LEN: u64 = 65_535;
/// Longest tensor name, in bytes (llama.cpp refuses names of 64 bytes or more).
pub const MAX_TENSOR_NAME_LEN: u64 = 63;
/// Most elements in one array.
pub const MAX_ARRAY_LEN: u64 = 1 << 30;
/// Deepest nesting of arrays (an array of arrays is depth 2).
pub const MAX_NESTING_DEPTH: usize = 8;
/// Data alignment when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// The key holding the data alignment.
pub const KEY_ALIGNMENT: &str = "general.alignment";
