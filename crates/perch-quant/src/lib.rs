//! # perch-quant
//!
//! The numeric heart of perch: every ggml tensor type, what its blocks look like, how to turn
//! them back into `f32` and how to make them from `f32`, and the dot-product kernels the
//! engine's matrix products are built from.
//!
//! The crate is organised as two layers, as ggml's own are:
//!
//! * [`types`]: the *format facts* of each type (id, name, elements per block, bytes per
//!   block). Nothing here computes; it lets a file reader check any tensor's size before a
//!   kernel for its type exists.
//! * kernels (added per type): a `#[repr(C)]` block struct with a compile-time size check, a
//!   scalar reference dequantizer/quantizer/dot product, and SIMD versions chosen at run time.
//!
//! The crate knows nothing of files or models.
#![deny(missing_docs)]

pub mod activations;
#[cfg(target_arch = "x86_64")]
mod amx;
#[cfg(target_arch = "x86_64")]
mod amx_q8;
pub mod blocks;
pub mod dequant;
pub mod dot;
pub mod matmul;
#[cfg(target_arch = "x86_64")]
mod packed;
#[cfg(target_arch = "x86_64")]
mod packed_k;
pub mod quantize;
pub mod simd;
pub mod tables;
pub mod types;
pub mod vecops;

pub use activations::QuantizedActivations;
pub use dot::vec_dot_type;
pub use matmul::{MatmulError, PackedWeights, WeightMatrix, matmul, matmul_multi};
pub use simd::{SimdLevel, simd_level};
pub use types::{GgmlType, TypeInfo, UnknownType};

pub use dequant::{QuantError, dequantize_row, has_dequantizer};
pub use quantize::{has_quantizer, quantize_row};
