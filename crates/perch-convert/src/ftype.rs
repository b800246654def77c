//! llama.cpp's file types (`enum llama_ftype`): what `llama-quantize IN OUT FTYPE` names, the
//! id written to `general.file_type`, and the default tensor type of each.

use perch_gguf::keys;
use perch_quant::GgmlType;

/// A llama.cpp file type (`enum llama_ftype`): a default tensor type plus its mix rules.
/// The names are llama-quantize's.
#[allow(non_camel_case_types, missing_docs)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FileType {
    F32,
    F16,
    BF16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q2_K,
    Q2_K_S,
    Q3_K_S,
    Q3_K_M,
    Q3_K_L,
    Q4_K_S,
    Q4_K_M,
    Q5_K_S,
    Q5_K_M,
    Q6_K,
    IQ2_XXS,
    IQ2_XS,
    IQ2_S,
    IQ2_M,
    IQ3_XXS,
    IQ3_XS,
    IQ3_S,
    IQ3_M,
    IQ1_S,
    IQ1_M,
    IQ4_NL,
    IQ4_XS,
    TQ1_0,
    TQ2_0,
    MXFP4_MOE,
    Q1_0,
    Q2_0,
}

impl FileType {
    /// Every file type.
    pub const ALL: [FileType; 35] = {
        use FileType::*;
        [
            F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q2_K_S, Q3_K_S, Q3_K_M, Q3_K_L,
            Q4_K_S, Q4_K_M, Q5_K_S, Q5_K_M, Q6_K, IQ2_XXS, IQ2_XS, IQ2_S, IQ2_M, IQ3_XXS, IQ3_XS,
            IQ3_S, IQ3_M, IQ1_S, IQ1_M, IQ4_NL, IQ4_XS, TQ1_0, TQ2_0, MXFP4_MOE, Q1_0, Q2_0,
        ]
    };

    /// The `general.file_type` value (`enum llama_ftype` in llama.h).
    pub fn id(self) -> u32 {
        use FileType::*;
        match self {
            F32 => 0,
            F16 => 1,
            Q4_0 => 2,
            Q4_1 => 3,
            Q8_0 => 7,
            Q5_0 => 8,
            Q5_1 => 9,
            Q2_K => 10,
            Q3_K_S => 11,
            Q3_K_M => 12,
            Q3_K_L => 13,
            Q4_K_S => 14,
            Q4_K_M => 15,
            Q5_K_S => 16,
            Q5_K_M => 17,
            Q6_K => 18,
            IQ2_XXS => 19,
            IQ2_XS => 20,
            Q2_K_S => 21,
            IQ3_XS => 22,
            IQ3_XXS => 23,
            IQ1_S => 24,
            IQ4_NL => 25,
            IQ3_S => 26,
            IQ3_M => 27,
            IQ2_S => 28,
            IQ2_M => 29,
            IQ4_XS => 30,
            IQ1_M => 31,
            BF16 => 32,
            TQ1_0 => 36,
            TQ2_0 => 37,
            MXFP4_MOE => 38,
            Q1_0 => 40,
            Q2_0 => 41,
        }
    }

    /// The name llama-quantize prints, e.g. `"Q4_K_M"`.
    pub fn name(self) -> &'static str {
        keys::file_type_name(self.id()).unwrap_or("?")
    }

    /// Parses a file type as llama-quantize does (case-insensitive): a file type's name, or
    /// one of its aliases `Q3_K`, `Q4_K`, `Q5_K` for the `_M` mixes.
    pub fn from_name(name: &str) -> Option<FileType> {
        let name = match name.to_ascii_uppercase().as_str() {
            "Q3_K" => "Q3_K_M".to_string(),
            "Q4_K" => "Q4_K_M".to_string(),
            "Q5_K" => "Q5_K_M".to_string(),
            other => other.to_string(),
        };
        Self::ALL.into_iter().find(|f| f.name() == name)
    }

    /// The type of the tensors no rule singles out (`llama_ftype_get_default_type`).
    pub fn default_type(self) -> GgmlType {
        use FileType as F;
        use GgmlType as T;
        match self {
            F::F32 => T::F32,
            F::F16 => T::F16,
            F::BF16 => T::BF16,
            F::Q4_0 => T::Q4_0,
            F::Q4_1 => T::Q4_1,
            F::Q5_0 => T::Q5_0,
            F::Q5_1 => T::Q5_1,
            F::Q8_0 => T::Q8_0,
            F::Q1_0 => T::Q1_0,
            F::Q2_0 => T::Q2_0,
            F::MXFP4_MOE => T::MXFP4,
            F::Q2_K | F::Q2_K_S => T::Q2_K,
            F::IQ3_XS | F::IQ3_S | F::IQ3_M => T::IQ3_S,
            F::Q3_K_S | F::Q3_K_M | F::Q3_K_L => T::Q3_K,
            F::Q4_K_S | F::Q4_K_M => T::Q4_K,
            F::Q5_K_S | F::Q5_K_M => T::Q5_K,
            F::Q6_K => T::Q6_K,
            F::TQ1_0 => T::TQ1_0,
            F::TQ2_0 => T::TQ2_0,
            F::IQ2_XXS => T::IQ2_XXS,
            F::IQ2_XS | F::IQ2_S => T::IQ2_XS,
            F::IQ2_M => T::IQ2_S,
            F::IQ3_XXS => T::IQ3_XXS,
            F::IQ1_S => T::IQ1_S,
            F::IQ1_M => T::IQ1_M,
            F::IQ4_NL => T::IQ4_NL,
            F::IQ4_XS => T::IQ4_XS,
        }
    }

    /// The file types whose rules change with an importance matrix and that put 1- to
    /// 2-bit I-quants in the file.
    pub(crate) fn is_low_bit_iq(self) -> bool {
        use FileType::*;
        matches!(self, IQ2_XXS | IQ2_XS | IQ1_S | IQ2_S | IQ2_M | IQ1_M)
    }
}

impl std::fmt::Display for FileType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
