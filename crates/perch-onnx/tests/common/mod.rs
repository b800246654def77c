//! Shared test helpers: fixture paths, sentences, a session runner.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use perch_onnx::{EmbedInput, EmbedderConfig, OnnxEmbedder};

/// Makes sure ONNX Runtime's library fixture is there, failing with the fetch command
/// otherwise (perch-onnx finds it in the fixture cache by itself).
pub fn ort() {
    assert!(perch_fixtures::onnxruntime_lib().is_file());
}

/// The int8 all-MiniLM-L6-v2 ONNX model.
pub fn minilm_int8() -> PathBuf {
    ort();
    perch_fixtures::minilm_int8_onnx()
}

/// The fp32 paraphrase-MiniLM-L3-v2 ONNX model.
pub fn paraphrase() -> PathBuf {
    ort();
    perch_fixtures::paraphrase_minilm_onnx()
}

/// all-MiniLM-L6-v2's tokenizer.json (same uncased WordPiece vocabulary as L3-v2).
pub fn tokenizer() -> PathBuf {
    perch_fixtures::minilm_tokenizer()
}

/// An embedder over `model` with the MiniLM tokenizer.
pub fn embedder(model: &Path) -> OnnxEmbedder {
    let cfg = EmbedderConfig {
        tokenizer: Some(tokenizer()),
        ..Default::default()
    };
    OnnxEmbedder::load(model, &cfg).unwrap()
}

/// Ten varied sentences (lengths, topics, punctuation, numbers, a non-English one).
pub const SENTENCES: [&str; 10] = [
    "This is an example sentence",
    "Each sentence is converted",
    "The quick brown fox jumps over the lazy dog.",
    "How do I reset my password if I no longer have access to my email account?",
    "Quantum computers use qubits, which can be in a superposition of states.",
    "The 2024 budget allocates $3.2 billion to renewable energy projects in 14 regions.",
    "I loved the movie, but the ending felt rushed and a little confusing.",
    "Paris is the capital and most populous city of France.",
    "def add(a, b): return a + b",
    "Le chat dort sur le canapé pendant que la pluie tombe dehors.",
];

/// The embeddings of [`SENTENCES`].
pub fn embed_all(e: &OnnxEmbedder) -> Vec<Vec<f32>> {
    let inputs: Vec<EmbedInput> = SENTENCES.iter().map(|&s| s.into()).collect();
    e.embed(&inputs)
        .unwrap()
        .into_iter()
        .map(|e| e.vector)
        .collect()
}
