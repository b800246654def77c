//! ONNX read/write: round trips of the fixture models (protos and ONNX Runtime outputs),
//! external data, and clear errors for malformed files.

mod common;

use std::path::Path;

use perch_onnx::proto::tensor_proto::DataType;
use perch_onnx::proto::{NodeProto, OperatorSetIdProto};
use perch_onnx::{ModelSummary, OnnxError, OnnxModel, SaveOptions, tensor};
use prost::Message;

fn fixtures() -> Vec<std::path::PathBuf> {
    vec![common::minilm_int8(), common::paraphrase()]
}

#[test]
fn read_write_round_trip_preserves_every_node_and_initializer() {
    let dir = tempfile::tempdir().unwrap();
    for path in fixtures() {
        let original = OnnxModel::open(&path).unwrap();
        // Inline: the bytes re-decode to the same message.
        let out = dir.path().join("inline.onnx");
        original.save(&out, &SaveOptions::default()).unwrap();
        let back = OnnxModel::open(&out).unwrap();
        assert_eq!(back.proto, original.proto, "{}", path.display());
        // The encoding is canonical: prost writes the same bytes as the exporter did.
        assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&path).unwrap());

        // External data: big initializers move out, and read back identical.
        let ext = dir.path().join("external.onnx");
        let report = ext_save(&original, &ext);
        assert!(
            report.external_bytes > report.model_bytes * 10,
            "{report:?}"
        );
        let mut ext_model = OnnxModel::open(&ext).unwrap();
        let g = ext_model.graph().unwrap();
        assert!(g.initializer.iter().any(tensor::is_external));
        assert_eq!(g.node, original.graph().unwrap().node);
        ext_model.inline_external_data().unwrap();
        let (a, b) = (
            &ext_model.graph().unwrap().initializer,
            &original.graph().unwrap().initializer,
        );
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert_eq!(x.name(), y.name());
            assert_eq!(
                tensor::raw_bytes(x, dir.path()).unwrap(),
                tensor::raw_bytes(y, dir.path()).unwrap(),
                "{}",
                x.name()
            );
        }

        // ONNX Runtime computes the same embeddings from the original and both copies.
        let want = common::embed_all(&common::embedder(&path));
        for copy in [&out, &ext] {
            let got = common::embed_all(&common::embedder(copy));
            assert_eq!(got, want, "{}", copy.display());
        }
    }
}

fn ext_save(m: &OnnxModel, path: &Path) -> perch_onnx::SaveReport {
    m.save(
        path,
        &SaveOptions {
            external_data: Some("external.onnx.data".into()),
            size_threshold: 1024,
        },
    )
    .unwrap()
}

#[test]
fn summary_of_the_int8_fixture() {
    let m = OnnxModel::open(common::minilm_int8()).unwrap();
    let s = ModelSummary::of(&m);
    // Counted independently with the onnx Python package (onnx.load + Counter of op_type).
    assert_eq!(s.producer, "pytorch 2.11.0+cpu");
    assert_eq!(s.opset_imports, vec![("ai.onnx".to_string(), 17)]);
    assert_eq!(s.ops["MatMul"], 48);
    assert_eq!(s.ops["LayerNormalization"], 13);
    assert_eq!(s.node_count, 385);
    let names: Vec<&str> = s.inputs.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["input_ids", "attention_mask", "token_type_ids"]);
    assert_eq!(
        s.outputs[0].shape.as_deref(),
        Some(&["batch".to_string(), "sequence".into(), "384".into()][..])
    );
    assert_eq!(s.initializers["INT8"].count, 38);
    assert_eq!(s.initializers["FLOAT"].count, 107);
    // The int8 embedding table alone is 30522 x 384 bytes.
    assert!(s.initializers["INT8"].bytes >= 30522 * 384);
}

fn err_of(bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.onnx");
    std::fs::write(&p, bytes).unwrap();
    OnnxModel::open(&p).unwrap_err().to_string()
}

#[test]
fn truncated_garbage_and_empty_files_are_clear_errors() {
    let bytes = std::fs::read(common::minilm_int8()).unwrap();
    for cut in [bytes.len() / 2, bytes.len() - 3, 100] {
        let e = err_of(&bytes[..cut]);
        assert!(
            e.contains("truncated") || e.contains("not a valid ONNX model"),
            "cut at {cut}: {e}"
        );
    }
    let e = err_of(b"\xff\xfe this is not protobuf at all \x00\x01\x02");
    assert!(
        e.contains("not a valid ONNX model") || e.contains("no graph"),
        "{e}"
    );
    let e = err_of(b"");
    assert!(e.contains("no graph"), "{e}");
    let e = err_of(b"GGUF\x03\x00\x00\x00");
    assert!(e.contains("ONNX"), "{e}");
}

fn small_model() -> OnnxModel {
    let mut m = OnnxModel::open(common::paraphrase()).unwrap();
    // Keep it a valid model: the fixture itself.
    m.proto.producer_name = Some("test".into());
    m
}

#[test]
fn missing_initializer_is_named() {
    let mut m = small_model();
    let g = m.graph_mut().unwrap();
    let gone = g
        .initializer
        .iter()
        .position(|t| t.name() == "model.0.auto_model.embeddings.word_embeddings.weight")
        .unwrap();
    g.initializer.remove(gone);
    g.input
        .retain(|v| v.name() != "model.0.auto_model.embeddings.word_embeddings.weight");
    let e = m.validate().unwrap_err();
    assert!(matches!(e, OnnxError::MissingInput { .. }), "{e}");
    let e = e.to_string();
    assert!(
        e.contains("word_embeddings.weight") && e.contains("missing initializer"),
        "{e}"
    );
}

#[test]
fn unsupported_opset_is_named() {
    let mut m = small_model();
    m.proto.opset_import = vec![OperatorSetIdProto {
        domain: Some(String::new()),
        version: Some(99),
    }];
    let e = m.validate().unwrap_err().to_string();
    assert!(
        e.contains("unsupported opset") && e.contains("ai.onnx version 99"),
        "{e}"
    );
    // A node of a domain the model does not import.
    let mut m = small_model();
    m.graph_mut().unwrap().node.push(NodeProto {
        op_type: Some("Foo".into()),
        domain: Some("com.example".into()),
        ..Default::default()
    });
    let e = m.validate().unwrap_err().to_string();
    assert!(e.contains("com.example"), "{e}");
}

#[test]
fn missing_or_short_external_data_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let m = OnnxModel::open(common::paraphrase()).unwrap();
    let path = dir.path().join("m.onnx");
    ext_save(&m, &path);
    let data = dir.path().join("external.onnx.data");
    let full = std::fs::read(&data).unwrap();
    std::fs::write(&data, &full[..full.len() / 2]).unwrap();
    let e = OnnxModel::open(&path).unwrap_err().to_string();
    assert!(
        e.contains("external data") && e.contains("past the end"),
        "{e}"
    );
    std::fs::remove_file(&data).unwrap();
    let e = OnnxModel::open(&path).unwrap_err();
    assert!(matches!(e, OnnxError::ExternalData { .. }));
    let e = e.to_string();
    assert!(
        e.contains("external.onnx.data") && e.contains("cannot open"),
        "{e}"
    );
}

#[test]
fn external_location_cannot_escape_the_model_folder() {
    let mut m = small_model();
    let t = &mut m.graph_mut().unwrap().initializer[0];
    let dims = t.dims.clone();
    *t = tensor::from_raw(t.name(), DataType::Float, &dims, vec![]);
    t.raw_data = None;
    t.data_location = Some(1);
    t.external_data = vec![perch_onnx::proto::StringStringEntryProto {
        key: Some("location".into()),
        value: Some("../../etc/passwd".into()),
    }];
    let e = m.validate().unwrap_err().to_string();
    assert!(e.contains("inside the model's folder"), "{e}");
}

#[test]
fn decode_never_panics_on_mutated_bytes() {
    // Flip bytes through the start of a real model: every result is Ok or an error.
    let bytes = std::fs::read(common::minilm_int8()).unwrap();
    let head = &bytes[..4096.min(bytes.len())];
    for i in (0..head.len()).step_by(7) {
        let mut b = head.to_vec();
        b[i] ^= 0xA5;
        if let Ok(m) = OnnxModel::decode(&b, ".") {
            let _ = m.validate();
            let _ = ModelSummary::of(&m);
        }
    }
    let _ = perch_onnx::proto::ModelProto::decode(&b"\x08"[..]);
}
