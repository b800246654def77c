//! Whole-model transformations on GGUF files.
//!
//! `perch-quant` knows rows and blocks; `perch-gguf` knows the file format. This crate joins
//! them into the operations people run on whole models:
//!
//! * [`quantize`]: a GGUF file in, a GGUF file out in one of llama.cpp's file types
//!   ([`FileType`], e.g. `Q4_K_M`). Which tensors are quantized, to which type ([`mix`]: the
//!   file type's per-tensor rules, `--pure`, `--tensor-type` and the other overrides), and
//!   what happens when a row length does not divide the type's block size, follow llama.cpp's
//!   `llama-quantize` so that the same input and options give the same tensor types. Metadata is kept; `general.file_type` and
//!   `general.quantization_version` are set. The output is written to a temporary file and
//!   renamed, so a failed run leaves nothing behind.
//!
//! * [`hf`]: a Hugging Face model folder (config.json, tokenizer.json, safetensors) to GGUF
//!   at F32, F16, BF16 or Q8_0, with the tensor names, metadata and tokenizer that llama.cpp's
//!   `convert_hf_to_gguf.py` writes (llama, qwen2, qwen3, gemma2, gemma3, phi3, bert).
//! * [`llama2c`]: a llama2.c checkpoint and its `tokenizer.bin` to a llama GGUF, as
//!   llama.cpp's `convert-llama2c-to-ggml` does.
//!
//! Work is parallel over the rows of each tensor on the current rayon pool (install a pool
//! to choose the thread count), in slabs so memory stays bounded on large models.

pub mod error;
pub mod ftype;
pub mod hf;
pub mod imatrix;
pub mod llama2c;
pub mod mix;
pub mod quantize;

pub use error::{ConvertError, Result};
pub use ftype::FileType;
pub use hf::{ConvertProgress, ConvertReport, OutType, convert_hf};
pub use imatrix::{Imatrix, ImatrixData, ImatrixError};
pub use llama2c::convert_llama2c;
pub use mix::{MixOptions, ModelFacts, TensorTypeRule};
pub use quantize::{
    Progress, QuantizeOptions, QuantizeReport, TensorChoice, allows_quantization, decide_types,
    fallback_type, plan, quantize_file,
};
