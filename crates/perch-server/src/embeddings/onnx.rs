//! ONNX Runtime as an embedding backend: [`OnnxBackend`] puts perch-onnx's
//! [`OnnxEmbedder`] (an ONNX sentence-transformers model with `tokenizer.json` beside it)
//! behind the engine's [`Embedder`] trait, so the batching worker and the routes serve it
//! exactly as they serve a GGUF bert model.
//!
//! Inputs mean the same on both backends: text is tokenized with the model's special tokens,
//! token arrays are used as they are. The caller's mistakes (an empty input, too many tokens,
//! a token id outside the vocabulary, text the tokenizer refuses) are input errors, answered
//! with 400; ONNX Runtime failing is a backend error, answered with 500.

use std::path::Path;

use perch_engine::embed::{EmbedError, EmbedInput, Embedder, Embedding};
use perch_onnx::embed::{InputError, Prepared};
use perch_onnx::runtime::SessionConfig;
use perch_onnx::{EmbedderConfig, ModelSummary, OnnxEmbedder, OnnxError, OnnxModel};

/// An ONNX embedding model served through ONNX Runtime.
#[derive(Debug)]
pub struct OnnxBackend {
    inner: OnnxEmbedder,
}

impl OnnxBackend {
    /// Load the ONNX model at `path` (tokenizer.json and sentence-transformers settings
    /// beside it) with `threads` ONNX Runtime threads (`None`: its default, the physical
    /// cores).
    ///
    /// # Errors
    /// The ONNX Runtime library missing, an invalid model, no tokenizer.json beside it, or a
    /// model that is not a sentence encoder (no `input_ids`, no token-vector output).
    pub fn load(path: &Path, threads: Option<usize>) -> Result<OnnxBackend, OnnxError> {
        let cfg = EmbedderConfig {
            session: SessionConfig {
                threads: threads.unwrap_or(0),
                ..SessionConfig::default()
            },
            ..EmbedderConfig::default()
        };
        Ok(OnnxBackend {
            inner: OnnxEmbedder::load(path, &cfg)?,
        })
    }

    /// The wrapped embedder.
    pub fn embedder(&self) -> &OnnxEmbedder {
        &self.inner
    }

    fn prepare(&self, input: &EmbedInput, truncate: bool) -> Result<Prepared, InputError> {
        match input {
            EmbedInput::Text(t) => self
                .inner
                .prepare(&perch_onnx::EmbedInput::Text(t.clone()), truncate),
            EmbedInput::Tokens(ids) => self.inner.check_ids(ids.clone(), truncate),
        }
    }
}

/// One input's [`InputError`] as the engine's error for input `index`.
fn input_error(index: usize, e: InputError) -> EmbedError {
    match e {
        InputError::Empty => EmbedError::Empty { index },
        InputError::TooLong { tokens, max } => EmbedError::TooLong { index, tokens, max },
        InputError::BadToken { id, vocab } => EmbedError::BadToken {
            index,
            id,
            n_vocab: vocab,
        },
        InputError::Tokenizer(message) => EmbedError::Tokenizer { index, message },
        other => EmbedError::Tokenizer {
            index,
            message: other.to_string(),
        },
    }
}

impl Embedder for OnnxBackend {
    fn name(&self) -> &str {
        "onnxruntime"
    }

    fn dimension(&self) -> usize {
        self.inner.dimension()
    }

    fn max_tokens(&self) -> usize {
        self.inner.max_tokens()
    }

    fn embed(&self, inputs: &[EmbedInput], truncate: bool) -> Result<Vec<Embedding>, EmbedError> {
        let prepared = inputs
            .iter()
            .enumerate()
            .map(|(i, input)| self.prepare(input, truncate).map_err(|e| input_error(i, e)))
            .collect::<Result<Vec<_>, _>>()?;
        let truncated: Vec<bool> = prepared.iter().map(|p| p.truncated).collect();
        let out = self
            .inner
            .embed_ids(prepared.into_iter().map(|p| p.ids).collect())
            .map_err(|e| EmbedError::Backend(e.to_string()))?;
        Ok(out
            .into_iter()
            .zip(truncated)
            .map(|(e, truncated)| Embedding {
                vector: e.vector,
                n_tokens: e.tokens,
                truncated,
            })
            .collect())
    }
}

/// What `/api/tags`, `/api/show` and `/api/ps` say about an ONNX model, read from its file.
#[derive(Debug, Clone)]
pub struct OnnxFacts {
    /// The model's summary (producer, opsets, initializers, metadata), as `perch inspect`.
    pub summary: ModelSummary,
    /// `model_type` of the config.json beside the model (or one folder up), else `onnx`.
    pub family: String,
}

impl OnnxFacts {
    /// Decode and validate the model at `path` and gather its facts.
    ///
    /// # Errors
    /// The file cannot be read or is not a valid ONNX model.
    pub fn read(path: &Path) -> Result<OnnxFacts, OnnxError> {
        let model = OnnxModel::open(path)?;
        let family = path
            .ancestors()
            .skip(1)
            .take(2)
            .find_map(|dir| {
                let text = std::fs::read(dir.join("config.json")).ok()?;
                let v: serde_json::Value = serde_json::from_slice(&text).ok()?;
                v.get("model_type")?.as_str().map(str::to_string)
            })
            .unwrap_or_else(|| "onnx".to_string());
        Ok(OnnxFacts {
            summary: ModelSummary::of(&model),
            family,
        })
    }

    /// Elements of all initializers (the parameter count).
    pub fn parameters(&self) -> u64 {
        self.summary.initializers.values().map(|s| s.elements).sum()
    }

    /// The weights' precision, from the quantization operators the graph uses (`INT4` for
    /// MatMulNBits, `INT8` for integer matmuls or QDQ pairs), else the float type holding
    /// most initializer bytes (`F32`, `F16`, `BF16`).
    pub fn quantization(&self) -> String {
        let ops = &self.summary.ops;
        if ops.keys().any(|k| k.ends_with("MatMulNBits")) {
            return "INT4".into();
        }
        if [
            "MatMulInteger",
            "DynamicQuantizeLinear",
            "QuantizeLinear",
            "QLinearMatMul",
        ]
        .iter()
        .any(|op| ops.contains_key(*op))
        {
            return "INT8".into();
        }
        let main = self
            .summary
            .initializers
            .iter()
            .max_by_key(|(_, s)| s.bytes)
            .map(|(t, _)| t.as_str());
        match main {
            Some("FLOAT") => "F32".into(),
            Some("FLOAT16") => "F16".into(),
            Some("BFLOAT16") => "BF16".into(),
            Some(other) => other.to_string(),
            None => "unknown".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_errors_keep_their_index_and_numbers() {
        assert_eq!(
            input_error(3, InputError::Empty),
            EmbedError::Empty { index: 3 }
        );
        let e = input_error(
            1,
            InputError::TooLong {
                tokens: 602,
                max: 512,
            },
        );
        assert_eq!(
            e,
            EmbedError::TooLong {
                index: 1,
                tokens: 602,
                max: 512
            }
        );
        assert!(e.is_input_error());
        let e = input_error(0, InputError::BadToken { id: 7, vocab: 5 });
        assert_eq!(
            e,
            EmbedError::BadToken {
                index: 0,
                id: 7,
                n_vocab: 5
            }
        );
        assert!(input_error(2, InputError::Tokenizer("bad".into())).is_input_error());
    }
}
