//! llama.cpp's tokenizer test vectors (`models/ggml-vocab-*.gguf.inp` / `.out` in the
//! llama-cpp-python sdist): every input must tokenize to exactly the recorded ids, as
//! tests/test-tokenizer-0.cpp checks (no BOS/EOS, special tokens not parsed).

mod common;

macro_rules! vocab_tests {
    ($($fn:ident => $name:literal,)*) => {
        $(
            #[test]
            fn $fn() {
                common::check_vectors($name);
            }
        )*
    };
}

vocab_tests! {
    bert_bge => "bert-bge",
    command_r => "command-r",
    deepseek_coder => "deepseek-coder",
    deepseek_llm => "deepseek-llm",
    falcon => "falcon",
    gemma_4 => "gemma-4",
    gpt_2 => "gpt-2",
    llama_bpe => "llama-bpe",
    llama_spm => "llama-spm",
    mpt => "mpt",
    phi_3 => "phi-3",
    qwen2 => "qwen2",
    qwen35 => "qwen35",
    refact => "refact",
    starcoder => "starcoder",
}

/// Every vocabulary in the sdist that has vectors is listed above.
#[test]
fn every_vocab_with_vectors_is_tested() {
    let dir = common::vocab_path("gpt-2").parent().unwrap().to_path_buf();
    let mut with_vectors: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_prefix("ggml-vocab-")?
                .strip_suffix(".gguf.inp")
                .map(str::to_string)
        })
        .collect();
    with_vectors.sort();
    let tested = [
        "bert-bge",
        "command-r",
        "deepseek-coder",
        "deepseek-llm",
        "falcon",
        "gemma-4",
        "gpt-2",
        "llama-bpe",
        "llama-spm",
        "mpt",
        "phi-3",
        "qwen2",
        "qwen35",
        "refact",
        "starcoder",
    ];
    assert_eq!(with_vectors, tested);
}
