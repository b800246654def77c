//! all-MiniLM-L6-v2 (the fixture's f32 safetensors) converted to a GGUF bert model: every F32
//! tensor equals the checkpoint's, the WordPiece vocabulary tokenizes as tokenizer.json does
//! (the `tokenizers` crate), and perch's native encoder embeds as sentence-transformers:
//! the published first values of "This is an example sentence", and cosine >= 0.999 against
//! scripts/bert_reference.py (an independent numpy BERT reading the safetensors).

use std::path::Path;
use std::process::Command;

use perch_convert::{OutType, convert_hf};
use perch_engine::EmbeddingModel;
use perch_engine::embed::{EmbedInput, Embedder};
use perch_gguf::GgufFile;

const SENTENCES: &[&str] = &[
    "This is an example sentence",
    "Each sentence is converted",
    "The quick brown fox jumps over the lazy dog.",
    "Ünïcödé, punctuation... and CJK: 我想在apple工作!",
    "perch runs quantized models on the CPU and serves them over HTTP.",
];

fn convert(ty: OutType, dir: &Path) -> std::path::PathBuf {
    let out = dir.join(format!("minilm-{ty:?}.gguf"));
    convert_hf(&perch_fixtures::minilm_dir(), &out, ty, |_| {}).expect("MiniLM converts");
    out
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

#[test]
fn minilm_f32_tensors_equal_the_safetensors() {
    let dir = tempfile::tempdir().unwrap();
    let out = convert(OutType::F32, dir.path());
    let f = GgufFile::open(&out).unwrap();
    assert_eq!(f.get_str("general.architecture").unwrap(), "bert");
    assert_eq!(
        f.get_u32("bert.pooling_type").unwrap(),
        1,
        "mean pooling from 1_Pooling"
    );
    assert!(!f.get_bool("bert.attention.causal").unwrap());
    assert_eq!(f.get_u32("bert.block_count").unwrap(), 6);
    assert_eq!(f.get_u32("bert.context_length").unwrap(), 512);
    assert_eq!(f.get_str("tokenizer.ggml.model").unwrap(), "bert");
    assert_eq!(f.get_u32("tokenizer.ggml.cls_token_id").unwrap(), 101);
    assert_eq!(f.get_u32("tokenizer.ggml.seperator_token_id").unwrap(), 102);
    assert_eq!(f.get_u32("tokenizer.ggml.unknown_token_id").unwrap(), 100);
    assert_eq!(f.get_u32("tokenizer.ggml.padding_token_id").unwrap(), 0);
    assert_eq!(f.get_u32("tokenizer.ggml.mask_token_id").unwrap(), 103);
    let toks = f.get_str_array("tokenizer.ggml.tokens").unwrap();
    assert_eq!(toks.len(), 30522);
    assert_eq!(toks[101], "[CLS]");
    assert_eq!(toks[2023], "\u{2581}this");

    let bytes = std::fs::read(perch_fixtures::minilm_dir().join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let map = [
        (
            "embeddings.word_embeddings.weight",
            "token_embd.weight".to_string(),
        ),
        (
            "embeddings.position_embeddings.weight",
            "position_embd.weight".into(),
        ),
        (
            "embeddings.token_type_embeddings.weight",
            "token_types.weight".into(),
        ),
        (
            "embeddings.LayerNorm.weight",
            "token_embd_norm.weight".into(),
        ),
        ("embeddings.LayerNorm.bias", "token_embd_norm.bias".into()),
    ];
    let mut pairs: Vec<(String, String)> = map
        .iter()
        .map(|(a, b)| (a.to_string(), b.clone()))
        .collect();
    for il in 0..6 {
        for (hf, g) in [
            ("attention.self.query", "attn_q"),
            ("attention.self.key", "attn_k"),
            ("attention.self.value", "attn_v"),
            ("attention.output.dense", "attn_output"),
            ("attention.output.LayerNorm", "attn_output_norm"),
            ("intermediate.dense", "ffn_up"),
            ("output.dense", "ffn_down"),
            ("output.LayerNorm", "layer_output_norm"),
        ] {
            for s in ["weight", "bias"] {
                pairs.push((
                    format!("encoder.layer.{il}.{hf}.{s}"),
                    format!("blk.{il}.{g}.{s}"),
                ));
            }
        }
    }
    assert_eq!(f.tensors().len(), pairs.len(), "no extra tensors");
    for (hf, g) in pairs {
        let want = st.tensor(&hf).unwrap();
        let got = f.require_tensor(&g).unwrap();
        assert_eq!(got.ty(), perch_gguf::GgmlType::F32, "{g}");
        let dims: Vec<u64> = want.shape().iter().rev().map(|&d| d as u64).collect();
        assert_eq!(got.dims(), dims.as_slice(), "{g}");
        assert!(got.data == want.data(), "{g} differs from {hf}");
    }
}

#[test]
fn minilm_wordpiece_matches_tokenizer_json() {
    let dir = tempfile::tempdir().unwrap();
    let out = convert(OutType::Q8_0, dir.path());
    let f = GgufFile::open(&out).unwrap();
    let perch = perch_tokenizer::Tokenizer::from_gguf(&f).unwrap();
    let mut hf = tokenizers::Tokenizer::from_file(perch_fixtures::minilm_tokenizer()).unwrap();
    hf.with_padding(None);
    hf.with_truncation(None).unwrap();
    let mut texts: Vec<&str> = SENTENCES.to_vec();
    texts.extend([
        "",
        "  leading and trailing spaces  ",
        "don't stop-believing: e-mail me @ foo@bar.com (v2.0) #tags $100",
        "Café naïve résumé — “quotes” and ‘apostrophes’",
        "supercalifragilisticexpialidocious antidisestablishmentarianism",
        "tab\tnew\nline\r\nmixed \u{00a0}nbsp",
        "emoji 🦙🚀 and control\u{0007}chars",
    ]);
    for text in texts {
        let want = hf.encode(text, true).unwrap().get_ids().to_vec();
        assert_eq!(perch.encode(text, true, false).unwrap(), want, "{text:?}");
    }
}

fn numpy_reference(ids: &[Vec<u32>]) -> Vec<Vec<f32>> {
    let script = perch_fixtures::workspace_root().join("scripts/bert_reference.py");
    let mut child = Command::new(perch_fixtures::python())
        .arg(&script)
        .arg(perch_fixtures::minilm_dir())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python runs (cargo xtask fixtures makes models/cache/.venv with numpy)");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(ids).unwrap().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "bert_reference.py failed");
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn minilm_native_embeddings_match_sentence_transformers() {
    let dir = tempfile::tempdir().unwrap();
    let out = convert(OutType::F32, dir.path());
    let model = EmbeddingModel::load(&out, Some(2)).unwrap();
    assert_eq!(model.dimension(), 384);
    assert_eq!(model.max_tokens(), 512);
    let inputs: Vec<EmbedInput> = SENTENCES
        .iter()
        .map(|s| EmbedInput::Text(s.to_string()))
        .collect();
    let got = model.embed(&inputs, false).unwrap();

    // Published sentence-transformers values for the first sentence.
    let published = [0.067657f32, 0.063496, 0.048713, 0.079305, 0.037448];
    for (g, p) in got[0].vector.iter().zip(published) {
        assert!(
            (g - p).abs() < 0.01,
            "{:?} vs {published:?}",
            &got[0].vector[..5]
        );
    }
    assert_eq!(got[0].n_tokens, 7);

    let ids: Vec<Vec<u32>> = SENTENCES
        .iter()
        .map(|s| model.tokenize(s).unwrap())
        .collect();
    let want = numpy_reference(&ids);
    for ((g, w), s) in got.iter().zip(&want).zip(SENTENCES) {
        let c = cosine(&g.vector, w);
        assert!(c >= 0.999, "{s:?}: cosine {c}");
        let norm: f32 = g.vector.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4);
    }

    // One batch equals one input at a time (no leakage between sequences).
    for (i, input) in inputs.iter().enumerate() {
        let alone = model.embed(std::slice::from_ref(input), false).unwrap();
        assert!(cosine(&alone[0].vector, &got[i].vector) > 0.99999);
    }

    // Q8_0 stays close.
    let q8 = EmbeddingModel::load(convert(OutType::Q8_0, dir.path()), Some(2)).unwrap();
    let q = q8.embed(&inputs, false).unwrap();
    for (a, b) in q.iter().zip(&got) {
        assert!(cosine(&a.vector, &b.vector) > 0.99);
    }

    // Too long: an error with both numbers, or truncation keeping [SEP].
    let long = EmbedInput::Text("word ".repeat(600));
    let err = model.embed(std::slice::from_ref(&long), false).unwrap_err();
    assert!(
        err.to_string().contains("602 tokens") && err.to_string().contains("512"),
        "{err}"
    );
    let cut = model.embed(&[long], true).unwrap();
    assert_eq!(cut[0].n_tokens, 512);
    assert!(cut[0].truncated);
}
