//! The real SmolLM2-135M-Instruct Q4_1 file: what llama.cpp says it holds, and a byte-identical
//! read/write round trip.

use perch_gguf::{GgmlType, GgufFile};

fn open() -> GgufFile {
    GgufFile::open(perch_fixtures::smollm2_q4_1()).expect("SmolLM2 fixture opens")
}

#[test]
fn smollm2_header_metadata_and_tensors() {
    let f = open();
    assert_eq!(f.version(), 3);
    assert_eq!(f.alignment(), 32);
    assert_eq!(f.len(), 98_362_432);
    assert_eq!(f.get_str("general.architecture").unwrap(), "llama");
    assert_eq!(f.tensors().len(), 272);
    let count = |ty| f.tensors().iter().filter(|t| t.ty == ty).count();
    assert_eq!(count(GgmlType::Q4_1), 210);
    assert_eq!(count(GgmlType::Q8_0), 1);
    assert_eq!(count(GgmlType::F32), 61);
    assert!(
        f.get_str("tokenizer.chat_template")
            .unwrap()
            .contains("<|im_start|>")
    );
    let tokens = f.get_str_array("tokenizer.ggml.tokens").unwrap();
    assert_eq!(tokens.len(), 49152);
    assert_eq!(f.get_u32("llama.block_count").unwrap(), 30);
    assert_eq!(f.get_u32("llama.embedding_length").unwrap(), 576);
    let emb = f.tensor("token_embd.weight").unwrap();
    assert_eq!(emb.dims(), &[576, 49152]);
    assert_eq!(emb.data.len() as u64, emb.info.n_bytes);
    // Tensors are views into the map, aligned like the file.
    assert_eq!(emb.data.as_ptr() as usize % 32, 0);
}

#[test]
fn smollm2_round_trip_is_byte_identical() {
    let f = open();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("copy.gguf");
    f.write_to(&out).unwrap();
    let copy = std::fs::read(&out).unwrap();
    assert_eq!(copy.len(), f.bytes().len());
    assert!(
        copy == f.bytes(),
        "rewritten file differs from the original"
    );
}
