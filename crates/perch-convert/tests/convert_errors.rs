//! Bad inputs to `perch convert` give errors that name the problem and leave no file behind.

use std::path::Path;

use perch_convert::{ConvertError, OutType, convert_hf, convert_llama2c};

/// A copy of the MiniLM folder (small files copied, the safetensors too: 90 MB) to break.
fn minilm_copy(dir: &Path) -> std::path::PathBuf {
    let src = perch_fixtures::minilm_dir();
    let dst = dir.join("minilm");
    std::fs::create_dir_all(dst.join("1_Pooling")).unwrap();
    for f in [
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "modules.json",
        "model.safetensors",
    ] {
        std::fs::copy(src.join(f), dst.join(f)).unwrap();
    }
    std::fs::copy(
        src.join("1_Pooling/config.json"),
        dst.join("1_Pooling/config.json"),
    )
    .unwrap();
    dst
}

fn no_files_but(dir: &Path, keep: &[&str]) {
    let left: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !keep.contains(&n.as_str()))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

fn edit_config(dir: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let p = dir.join("config.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(p, v.to_string()).unwrap();
}

#[test]
fn bad_folders_are_clear_errors_and_leave_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let src = minilm_copy(tmp.path());
    let out_dir = tmp.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let out = out_dir.join("m.gguf");
    let run = |src: &Path| convert_hf(src, &out, OutType::F16, |_| {}).unwrap_err();

    // Unknown architecture.
    edit_config(&src, |v| {
        v["architectures"] = serde_json::json!(["FalconMambaForCausalLM"])
    });
    let e = run(&src);
    assert!(
        matches!(e, ConvertError::UnsupportedArch(ref a) if a == "FalconMambaForCausalLM"),
        "{e}"
    );
    assert!(e.to_string().contains("bert"), "{e}");
    no_files_but(&out_dir, &[]);

    // Inconsistent shapes: config.json says 768 wide.
    edit_config(&src, |v| {
        v["architectures"] = serde_json::json!(["BertModel"]);
        v["hidden_size"] = 768.into();
    });
    let e = run(&src);
    assert!(
        e.to_string().contains("embeddings.word_embeddings.weight")
            && e.to_string().contains("768"),
        "{e}"
    );
    no_files_but(&out_dir, &[]);
    edit_config(&src, |v| v["hidden_size"] = 384.into());

    // A missing tokenizer.json.
    std::fs::rename(src.join("tokenizer.json"), tmp.path().join("t.json")).unwrap();
    let e = run(&src);
    assert!(
        matches!(e, ConvertError::MissingFile { ref path, .. } if path.ends_with("tokenizer.json")),
        "{e}"
    );
    std::fs::rename(tmp.path().join("t.json"), src.join("tokenizer.json")).unwrap();

    // A missing tensor.
    let bytes = std::fs::read(src.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let kept: Vec<(String, safetensors::tensor::TensorView<'_>)> = st
        .tensors()
        .into_iter()
        .filter(|(n, _)| n != "encoder.layer.3.output.dense.weight")
        .collect();
    safetensors::serialize_to_file(kept, None, &tmp.path().join("cut.safetensors")).unwrap();
    std::fs::rename(
        tmp.path().join("cut.safetensors"),
        src.join("model.safetensors"),
    )
    .unwrap();
    let e = run(&src);
    assert!(
        matches!(e, ConvertError::MissingTensor(ref t) if t == "encoder.layer.3.output.dense.weight"),
        "{e}"
    );
    no_files_but(&out_dir, &[]);

    // Not a folder at all.
    let e = run(&tmp.path().join("nowhere"));
    assert!(e.to_string().contains("nowhere"), "{e}");
}

#[test]
fn unwritable_output_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let missing_dir = tmp.path().join("no/such/dir/m.gguf");
    let e = convert_hf(
        &perch_fixtures::minilm_dir(),
        &missing_dir,
        OutType::F32,
        |_| {},
    )
    .unwrap_err();
    assert!(e.to_string().contains("no/such/dir"), "{e}");
    no_files_but(tmp.path(), &[]);
}

#[test]
fn bad_llama2c_checkpoints_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model.bin");
    let tok = tmp.path().join("tokenizer.bin");
    let out = tmp.path().join("o.gguf");
    // A header promising more than the file holds.
    let mut b = Vec::new();
    for v in [64i32, 96, 2, 4, 4, 32, 16] {
        b.extend(v.to_le_bytes());
    }
    b.extend(vec![0u8; 1000]);
    std::fs::write(&model, &b).unwrap();
    let e = convert_llama2c(&model, &tok, &out, OutType::F32, |_| {}).unwrap_err();
    assert!(e.to_string().contains("implies"), "{e}");
    // A version-1 export.
    std::fs::write(&model, b"ak42\x01\x00\x00\x00rest of a header....").unwrap();
    let e = convert_llama2c(&model, &tok, &out, OutType::F32, |_| {}).unwrap_err();
    assert!(e.to_string().contains("version 0"), "{e}");
    // Nonsense sizes.
    let mut b = Vec::new();
    for v in [64i32, -3, 2, 4, 4, 32, 16] {
        b.extend(v.to_le_bytes());
    }
    std::fs::write(&model, &b).unwrap();
    let e = convert_llama2c(&model, &tok, &out, OutType::F32, |_| {}).unwrap_err();
    assert!(e.to_string().contains("hidden_dim"), "{e}");
    no_files_but(tmp.path(), &["model.bin"]);
}
