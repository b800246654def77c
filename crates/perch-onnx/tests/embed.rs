//! OnnxEmbedder against published sentence-transformers values and against itself
//! (padding, token-id input, batching).

mod common;

use perch_onnx::embed::cosine;
use perch_onnx::{EmbedInput, EmbedderConfig, OnnxEmbedder, Pooling};

#[test]
fn minilm_int8_matches_the_published_embedding() {
    let e = common::embedder(&common::minilm_int8());
    assert_eq!(e.dimension(), 384);
    assert_eq!(e.pooling(), Pooling::Mean);
    assert!(e.normalize());
    let out = e.embed(&["This is an example sentence".into()]).unwrap();
    // sentence-transformers/all-MiniLM-L6-v2 (fp32), model card and DESIGN.md.
    let published = [0.067657, 0.063496, 0.048713, 0.079305, 0.037448];
    for (i, (&got, want)) in out[0].vector.iter().zip(published).enumerate() {
        assert!(
            (got - want).abs() < 0.01,
            "value {i}: {got} vs published {want}"
        );
    }
    // [CLS] this is an example sentence [SEP]
    assert_eq!(out[0].tokens, 7);
    let norm: f32 = out[0].vector.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-5);
}

#[test]
fn batching_and_padding_do_not_change_embeddings() {
    let e = common::embedder(&common::paraphrase());
    let batched = common::embed_all(&e);
    for (s, b) in common::SENTENCES.iter().zip(&batched) {
        let one = &e.embed(&[(*s).into()]).unwrap()[0].vector;
        let c = cosine(one, b);
        assert!(
            c > 0.99999,
            "{s:?}: cosine {c} between alone and in a padded batch"
        );
    }
}

#[test]
fn token_ids_embed_like_their_text() {
    let e = common::embedder(&common::minilm_int8());
    let mut tok = tokenizers::Tokenizer::from_file(common::tokenizer()).unwrap();
    tok.with_padding(None);
    let text = "Token arrays are embedded like text";
    let ids = tok.encode(text, false).unwrap().get_ids().to_vec();
    let out = e.embed(&[text.into(), EmbedInput::Tokens(ids)]).unwrap();
    assert_eq!(out[0].tokens, out[1].tokens);
    assert!(cosine(&out[0].vector, &out[1].vector) > 0.99999);
}

#[test]
fn sentence_transformers_settings_are_read_beside_the_model() {
    // A copy of the int8 model in a folder with all-MiniLM-L6-v2's sentence-transformers
    // files, with pooling changed to CLS and no Normalize module.
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(common::minilm_int8(), dir.path().join("model.onnx")).unwrap();
    std::fs::copy(common::tokenizer(), dir.path().join("tokenizer.json")).unwrap();
    std::fs::create_dir(dir.path().join("1_Pooling")).unwrap();
    std::fs::write(
        dir.path().join("1_Pooling/config.json"),
        r#"{"word_embedding_dimension": 384, "pooling_mode_cls_token": true, "pooling_mode_mean_tokens": false}"#,
    )
    .unwrap();
    std::fs::write(
        dir.path().join("modules.json"),
        r#"[{"idx":0,"name":"0","path":"","type":"sentence_transformers.models.Transformer"},
            {"idx":1,"name":"1","path":"1_Pooling","type":"sentence_transformers.models.Pooling"}]"#,
    )
    .unwrap();
    std::fs::write(
        dir.path().join("sentence_bert_config.json"),
        r#"{"max_seq_length": 16}"#,
    )
    .unwrap();
    let e = OnnxEmbedder::load(dir.path().join("model.onnx"), &EmbedderConfig::default()).unwrap();
    assert_eq!(e.pooling(), Pooling::Cls);
    assert!(!e.normalize());
    assert_eq!(e.max_tokens(), 16);
    // Truncation to 16 tokens, special tokens included.
    let long = "word ".repeat(100);
    let out = e.embed(&[long.as_str().into()]).unwrap();
    assert_eq!(out[0].tokens, 16);
    // Without truncation a long input is an error naming the limit.
    let strict = OnnxEmbedder::load(
        dir.path().join("model.onnx"),
        &EmbedderConfig {
            truncate: false,
            ..Default::default()
        },
    )
    .unwrap();
    let err = strict
        .embed(&[long.as_str().into()])
        .unwrap_err()
        .to_string();
    assert!(err.contains("maximum of 16"), "{err}");
}

#[test]
fn bad_inputs_are_clear_errors() {
    let e = common::embedder(&common::minilm_int8());
    let err = e
        .embed(&[EmbedInput::Tokens(vec![1, 99_999_999])])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("99999999") && err.contains("vocabulary"),
        "{err}"
    );
    // A model folder without tokenizer.json.
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("onnx");
    std::fs::create_dir(&sub).unwrap();
    std::fs::copy(common::minilm_int8(), sub.join("model.onnx")).unwrap();
    let err = OnnxEmbedder::load(sub.join("model.onnx"), &EmbedderConfig::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("no tokenizer.json"), "{err}");
}
