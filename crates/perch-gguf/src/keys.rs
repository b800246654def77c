//! Well-known metadata keys (as llama.cpp's `llama-arch.cpp` and gguf-py's `constants.py`
//! name them) and the `general.file_type` table.

/// Architecture name (`"llama"`, `"qwen2"`); prefixes the model's own keys.
pub const GENERAL_ARCHITECTURE: &str = "general.architecture";
/// Human-readable model name.
pub const GENERAL_NAME: &str = "general.name";
/// The model's size label (`"135M"`, `"7B"`).
pub const GENERAL_SIZE_LABEL: &str = "general.size_label";
/// Mostly-used tensor type, as `enum llama_ftype` (see [`file_type_name`]).
pub const GENERAL_FILE_TYPE: &str = "general.file_type";
/// Version of the quantization formats (2 for current files).
pub const GENERAL_QUANTIZATION_VERSION: &str = "general.quantization_version";
/// Data alignment of the file (see [`crate::KEY_ALIGNMENT`]).
pub const GENERAL_ALIGNMENT: &str = crate::KEY_ALIGNMENT;
/// Tokenizer family (`"llama"` SentencePiece, `"gpt2"` byte-level BPE, `"bert"` WordPiece…).
pub const TOKENIZER_MODEL: &str = "tokenizer.ggml.model";
/// Pre-tokenizer name (`"llama-bpe"`, `"qwen2"`, `"smollm"`).
pub const TOKENIZER_PRE: &str = "tokenizer.ggml.pre";
/// The vocabulary (array of strings).
pub const TOKENIZER_TOKENS: &str = "tokenizer.ggml.tokens";
/// Per-token scores (array of f32).
pub const TOKENIZER_SCORES: &str = "tokenizer.ggml.scores";
/// Per-token types (array of i32).
pub const TOKENIZER_TOKEN_TYPE: &str = "tokenizer.ggml.token_type";
/// BPE merges (array of strings).
pub const TOKENIZER_MERGES: &str = "tokenizer.ggml.merges";
/// Jinja chat template.
pub const TOKENIZER_CHAT_TEMPLATE: &str = "tokenizer.chat_template";

/// `"{arch}.{suffix}"`, e.g. `arch_key("llama", "context_length")`.
pub fn arch_key(arch: &str, suffix: &str) -> String {
    format!("{arch}.{suffix}")
}

/// The name of a `general.file_type` value (`enum llama_ftype` in llama.h), e.g. `"Q4_K_M"`.
pub fn file_type_name(id: u32) -> Option<&'static str> {
    Some(match id {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        7 => "Q8_0",
        8 => "Q5_0",
        9 => "Q5_1",
        10 => "Q2_K",
        11 => "Q3_K_S",
        12 => "Q3_K_M",
        13 => "Q3_K_L",
        14 => "Q4_K_S",
        15 => "Q4_K_M",
        16 => "Q5_K_S",
        17 => "Q5_K_M",
        18 => "Q6_K",
        19 => "IQ2_XXS",
        20 => "IQ2_XS",
        21 => "Q2_K_S",
        22 => "IQ3_XS",
        23 => "IQ3_XXS",
        24 => "IQ1_S",
        25 => "IQ4_NL",
        26 => "IQ3_S",
        27 => "IQ3_M",
        28 => "IQ2_S",
        29 => "IQ2_M",
        30 => "IQ4_XS",
        31 => "IQ1_M",
        32 => "BF16",
        36 => "TQ1_0",
        37 => "TQ2_0",
        38 => "MXFP4_MOE",
        39 => "NVFP4",
        40 => "Q1_0",
        41 => "Q2_0",
        _ => return None,
    })
}

/// The `general.file_type` value for a name (case-insensitive), the inverse of
/// [`file_type_name`].
pub fn file_type_id(name: &str) -> Option<u32> {
    (0..64).find(|&id| file_type_name(id).is_some_and(|n| n.eq_ignore_ascii_case(name)))
}

/// The `general.file_type` llama.cpp records for a model whose matrices are mostly `ty`
/// (the K-quant types map to their `_M` mix, as llama-quantize's `Q4_K` alias does), or
/// 1024, llama.cpp's "guessed" marker, for a type with no file type of its own.
pub fn file_type_of(ty: perch_quant::GgmlType) -> u32 {
    use perch_quant::GgmlType as T;
    match ty {
        T::F32 => 0,
        T::F16 => 1,
        T::Q4_0 => 2,
        T::Q4_1 => 3,
        T::Q8_0 => 7,
        T::Q5_0 => 8,
        T::Q5_1 => 9,
        T::Q2_K => 10,
        T::Q3_K => 12,
        T::Q4_K => 15,
        T::Q5_K => 17,
        T::Q6_K => 18,
        T::IQ2_XXS => 19,
        T::IQ2_XS => 20,
        T::IQ3_XXS => 23,
        T::IQ1_S => 24,
        T::IQ4_NL => 25,
        T::IQ3_S => 26,
        T::IQ2_S => 28,
        T::IQ4_XS => 30,
        T::IQ1_M => 31,
        T::BF16 => 32,
        T::TQ1_0 => 36,
        T::TQ2_0 => 37,
        T::Q1_0 => 40,
        T::Q2_0 => 41,
        _ => 1024,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_file_types_name_their_type() {
        use perch_quant::GgmlType as T;
        for ty in [
            T::F32,
            T::F16,
            T::BF16,
            T::Q4_0,
            T::Q4_1,
            T::Q5_0,
            T::Q5_1,
            T::Q8_0,
        ] {
            assert_eq!(
                file_type_name(file_type_of(ty)),
                Some(ty.to_string().as_str())
            );
        }
        assert_eq!(file_type_name(file_type_of(T::Q4_K)), Some("Q4_K_M"));
        assert_eq!(file_type_name(file_type_of(T::IQ4_XS)), Some("IQ4_XS"));
        assert_eq!(file_type_of(T::Q8_K), 1024);
    }

    #[test]
    fn file_types_follow_llama_h() {
        // Spot checks against enum llama_ftype in llama.cpp's include/llama.h.
        assert_eq!(file_type_name(3), Some("Q4_1"));
        assert_eq!(file_type_name(15), Some("Q4_K_M"));
        assert_eq!(file_type_name(32), Some("BF16"));
        assert_eq!(file_type_name(4), None, "Q4_1_SOME_F16 was removed");
        assert_eq!(file_type_name(33), None, "Q4_0_4_4 was removed");
        assert_eq!(file_type_id("q4_k_m"), Some(15));
        for id in 0..64 {
            if let Some(n) = file_type_name(id) {
                assert_eq!(file_type_id(n), Some(id));
            }
        }
    }
}
