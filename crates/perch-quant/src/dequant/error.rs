//! The error of the row-level quantize and dequantize entry points.

use crate::types::GgmlType;

/// Why a row could not be quantized or dequantized. Every variant names the type.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QuantError {
    /// The element count is not a whole number of blocks.
    #[error("{ty}: {elements} elements is not a whole number of {block_size}-element blocks")]
    PartialBlock {
        /// The type.
        ty: GgmlType,
        /// Elements in the row.
        elements: usize,
        /// Elements per block of `ty`.
        block_size: usize,
    },
    /// The quantized buffer does not hold exactly the bytes of the row.
    #[error("{ty}: {elements} elements take {expected} bytes, but the buffer has {actual}")]
    ByteLength {
        /// The type.
        ty: GgmlType,
        /// Elements in the row.
        elements: usize,
        /// Bytes the row takes.
        expected: usize,
        /// Bytes given.
        actual: usize,
    },
    /// The importance vector is not one weight per element of the row.
    #[error("{ty}: the importance vector has {actual} values, the row has {expected} elements")]
    ImatrixLength {
        /// The type.
        ty: GgmlType,
        /// Elements in the row.
        expected: usize,
        /// Values in the importance vector.
        actual: usize,
    },
    /// An input value (or importance weight) is NaN or infinite.
    #[error("{ty}: {what} {index} is not finite ({value})")]
    NonFinite {
        /// The type.
        ty: GgmlType,
        /// `"element"` or `"importance weight"`.
        what: &'static str,
        /// Index of the value in the row.
        index: usize,
        /// The value, as text.
        value: String,
    },
    /// The type has no dequantizer (the integer types).
    #[error("{0}: no dequantizer for this type")]
    NoDequantizer(GgmlType),
    /// The type has no quantizer here.
    #[error("{0}: no quantizer for this type")]
    NoQuantizer(GgmlType),
}
