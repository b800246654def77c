//! The type table: one row per ggml tensor type.
//!
//! The ids are the values of `enum ggml_type` in ggml.h; they are what GGUF files store.
//! Ids that ggml has retired (4, 5, 31-33, 36-38) are not types here, so a file that uses
//! them is rejected as carrying an unknown type.

use std::fmt;

/// Elements in a K-quant / I-quant super-block.
pub const QK_K: usize = 256;

/// A ggml tensor type, with its numeric id as stored in GGUF files.
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u32)]
pub enum GgmlType {
    /// 32-bit IEEE float.
    F32 = 0,
    /// 16-bit IEEE float.
    F16 = 1,
    /// 4-bit, 32 per block, one f16 scale.
    Q4_0 = 2,
    /// 4-bit, 32 per block, f16 scale and minimum.
    Q4_1 = 3,
    /// 5-bit, 32 per block, one f16 scale.
    Q5_0 = 6,
    /// 5-bit, 32 per block, f16 scale and minimum.
    Q5_1 = 7,
    /// 8-bit, 32 per block, one f16 scale.
    Q8_0 = 8,
    /// 8-bit, 32 per block, f16 scale and f16 scaled sum (activation type of Q4_1/Q5_1).
    Q8_1 = 9,
    /// 2-bit K-quant.
    Q2_K = 10,
    /// 3-bit K-quant.
    Q3_K = 11,
    /// 4-bit K-quant.
    Q4_K = 12,
    /// 5-bit K-quant.
    Q5_K = 13,
    /// 6-bit K-quant.
    Q6_K = 14,
    /// 8-bit K-quant (activation type of the K- and I-quants).
    Q8_K = 15,
    /// 2.06 bpw I-quant.
    IQ2_XXS = 16,
    /// 2.31 bpw I-quant.
    IQ2_XS = 17,
    /// 3.06 bpw I-quant.
    IQ3_XXS = 18,
    /// 1.56 bpw I-quant.
    IQ1_S = 19,
    /// 4-bit non-linear, 32 per block.
    IQ4_NL = 20,
    /// 3.44 bpw I-quant.
    IQ3_S = 21,
    /// 2.5 bpw I-quant.
    IQ2_S = 22,
    /// 4.25 bpw non-linear I-quant.
    IQ4_XS = 23,
    /// 8-bit signed integer.
    I8 = 24,
    /// 16-bit signed integer.
    I16 = 25,
    /// 32-bit signed integer.
    I32 = 26,
    /// 64-bit signed integer.
    I64 = 27,
    /// 64-bit IEEE float.
    F64 = 28,
    /// 1.75 bpw I-quant.
    IQ1_M = 29,
    /// bfloat16.
    BF16 = 30,
    /// Ternary, 1.69 bpw.
    TQ1_0 = 34,
    /// Ternary, 2.06 bpw.
    TQ2_0 = 35,
    /// Microscaling FP4 (E2M1 values, E8M0 scale), 32 per block.
    MXFP4 = 39,
    /// NVIDIA FP4 (E2M1 values, UE4M3 scale per 16), 64 per block.
    NVFP4 = 40,
    /// 1-bit, 128 per block, one f16 scale.
    Q1_0 = 41,
    /// 2-bit, 64 per block, one f16 scale.
    Q2_0 = 42,
}

/// The format facts of one type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TypeInfo {
    /// The type.
    pub ty: GgmlType,
    /// ggml's lower-case name (`"q4_K"`, `"iq2_xxs"`, `"f32"`).
    pub name: &'static str,
    /// Elements per block (1 for the plain types).
    pub block_size: usize,
    /// Bytes per block.
    pub type_size: usize,
    /// Whether the type is a block-quantized one.
    pub is_quantized: bool,
}

/// An id that is not a ggml type this crate knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown ggml type id {0}")]
pub struct UnknownType(pub u32);

macro_rules! table {
    ($($ty:ident => $name:literal, $bs:expr, $ts:expr, $q:literal;)*) => {
        /// Every type, in id order.
        pub const ALL: &[GgmlType] = &[$(GgmlType::$ty),*];

        impl GgmlType {
            /// The format facts of this type.
            pub const fn info(self) -> TypeInfo {
                match self {
                    $(GgmlType::$ty => TypeInfo {
                        ty: GgmlType::$ty, name: $name, block_size: $bs, type_size: $ts, is_quantized: $q,
                    },)*
                }
            }

            /// The type with this id, if there is one.
            pub const fn from_id(id: u32) -> Result<GgmlType, UnknownType> {
                $(if id == GgmlType::$ty as u32 { return Ok(GgmlType::$ty); })*
                Err(UnknownType(id))
            }
        }
    };
}

table! {
    F32     => "f32",     1,   4,   false;
    F16     => "f16",     1,   2,   false;
    Q4_0    => "q4_0",    32,  18,  true;
    Q4_1    => "q4_1",    32,  20,  true;
    Q5_0    => "q5_0",    32,  22,  true;
    Q5_1    => "q5_1",    32,  24,  true;
    Q8_0    => "q8_0",    32,  34,  true;
    Q8_1    => "q8_1",    32,  36,  true;
    Q2_K    => "q2_K",    QK_K, 84,  true;
    Q3_K    => "q3_K",    QK_K, 110, true;
    Q4_K    => "q4_K",    QK_K, 144, true;
    Q5_K    => "q5_K",    QK_K, 176, true;
    Q6_K    => "q6_K",    QK_K, 210, true;
    Q8_K    => "q8_K",    QK_K, 292, true;
    IQ2_XXS => "iq2_xxs", QK_K, 66,  true;
    IQ2_XS  => "iq2_xs",  QK_K, 74,  true;
    IQ3_XXS => "iq3_xxs", QK_K, 98,  true;
    IQ1_S   => "iq1_s",   QK_K, 50,  true;
    IQ4_NL  => "iq4_nl",  32,  18,  true;
    IQ3_S   => "iq3_s",   QK_K, 110, true;
    IQ2_S   => "iq2_s",   QK_K, 82,  true;
    IQ4_XS  => "iq4_xs",  QK_K, 136, true;
    I8      => "i8",      1,   1,   false;
    I16     => "i16",     1,   2,   false;
    I32     => "i32",     1,   4,   false;
    I64     => "i64",     1,   8,   false;
    F64     => "f64",     1,   8,   false;
    IQ1_M   => "iq1_m",   QK_K, 56,  true;
    BF16    => "bf16",    1,   2,   false;
    TQ1_0   => "tq1_0",   QK_K, 54,  true;
    TQ2_0   => "tq2_0",   QK_K, 66,  true;
    MXFP4   => "mxfp4",   32,  17,  true;
    NVFP4   => "nvfp4",   64,  36,  true;
    Q1_0    => "q1_0",    128, 18,  true;
    Q2_0    => "q2_0",    64,  18,  true;
}

impl GgmlType {
    /// The numeric id stored in GGUF files.
    pub const fn id(self) -> u32 {
        self as u32
    }

    /// ggml's name for the type.
    pub const fn name(self) -> &'static str {
        self.info().name
    }

    /// Elements per block.
    pub const fn block_size(self) -> usize {
        self.info().block_size
    }

    /// Bytes per block.
    pub const fn type_size(self) -> usize {
        self.info().type_size
    }

    /// Whether the type is block-quantized.
    pub const fn is_quantized(self) -> bool {
        self.info().is_quantized
    }

    /// Bits per weight of the type (e.g. 4.5 for Q4_0).
    pub fn bits_per_weight(self) -> f64 {
        let i = self.info();
        (i.type_size * 8) as f64 / i.block_size as f64
    }

    /// Bytes taken by `n_elements` elements of this type, or `None` when `n_elements` is not a
    /// whole number of blocks or the size overflows `u64`.
    pub const fn bytes_for(self, n_elements: u64) -> Option<u64> {
        let i = self.info();
        let bs = i.block_size as u64;
        if n_elements % bs != 0 {
            return None;
        }
        (n_elements / bs).checked_mul(i.type_size as u64)
    }

    /// The type by ggml's name, case-insensitively (`"Q4_K"`, `"q4_k"`, `"bf16"`).
    pub fn from_name(name: &str) -> Option<GgmlType> {
        ALL.iter()
            .copied()
            .find(|t| t.name().eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Upper case, as llama.cpp's tools print types (`Q4_K`, `IQ2_XXS`, `F32`).
        f.write_str(&self.name().to_ascii_uppercase())
    }
}

impl TryFrom<u32> for GgmlType {
    type Error = UnknownType;
    fn try_from(id: u32) -> Result<Self, Self::Error> {
        GgmlType::from_id(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_retired_ids_are_unknown() {
        for &t in ALL {
            assert_eq!(GgmlType::from_id(t.id()), Ok(t));
            assert_eq!(GgmlType::from_name(t.name()), Some(t));
        }
        for retired in [4, 5, 31, 32, 33, 36, 37, 38, 43, u32::MAX] {
            assert_eq!(GgmlType::from_id(retired), Err(UnknownType(retired)));
        }
    }

    #[test]
    fn sizes_match_ggml_block_layouts() {
        // Bits per weight as llama.cpp documents them for its quantization types.
        let bpw = |t: GgmlType| t.bits_per_weight();
        assert_eq!(bpw(GgmlType::Q4_0), 4.5);
        assert_eq!(bpw(GgmlType::Q8_0), 8.5);
        assert_eq!(bpw(GgmlType::Q4_K), 4.5);
        assert_eq!(bpw(GgmlType::Q6_K), 6.5625);
        assert_eq!(bpw(GgmlType::IQ2_XXS), 2.0625);
        assert_eq!(bpw(GgmlType::IQ4_XS), 4.25);
        assert_eq!(bpw(GgmlType::TQ1_0), 1.6875);
        assert_eq!(GgmlType::Q4_1.bytes_for(64), Some(40));
        assert_eq!(GgmlType::Q4_1.bytes_for(33), None);
        assert_eq!(GgmlType::F32.bytes_for(u64::MAX), None);
    }
}
