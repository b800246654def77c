//! Loading damaged or inconsistent models fails with an error that names the problem, never a
//! panic: a tiny synthetic model is written, then rewritten with one thing wrong.

use std::path::Path;

use perch_engine::config::Arch;
use perch_engine::synth::{self, SynthSpec};
use perch_engine::{EngineError, Model};
use perch_gguf::{GgufFile, GgufWriter, Metadata, TensorInfo, Value};
use perch_quant::GgmlType;

/// A valid tiny llama model in `dir`.
fn valid(dir: &Path) -> std::path::PathBuf {
    let vocab = GgufFile::open(perch_fixtures::smollm2_q4_1()).unwrap();
    let path = dir.join("ok.gguf");
    let spec = SynthSpec::tiny(Arch::Llama, GgmlType::Q8_0, 3);
    synth::write(&spec, &vocab, &path, |_, _| {}).unwrap();
    path
}

/// `src` rewritten to `dst` after `edit` changes its metadata and tensor list (tensors whose
/// shape was changed get zero bytes of their new size).
fn rewrite(
    src: &Path,
    dst: &Path,
    edit: impl FnOnce(&mut Metadata, &mut Vec<TensorInfo>),
) -> std::path::PathBuf {
    let f = GgufFile::open(src).unwrap();
    let mut md = f.metadata().clone();
    let mut infos: Vec<TensorInfo> = f.tensors().to_vec();
    edit(&mut md, &mut infos);
    let infos: Vec<TensorInfo> = infos
        .into_iter()
        .map(|t| TensorInfo::new(t.name, t.ty, t.dims).unwrap())
        .collect();
    let mut w = GgufWriter::create(dst, &md, infos.clone()).unwrap();
    for t in &infos {
        match f.tensor(&t.name) {
            Some(v) if v.data.len() as u64 == t.n_bytes => w.write_tensor(&t.name, v.data).unwrap(),
            _ => w
                .write_tensor(&t.name, &vec![0u8; t.n_bytes as usize])
                .unwrap(),
        }
    }
    w.finish().unwrap();
    dst.to_path_buf()
}

fn load_err(path: &Path) -> EngineError {
    match Model::open(path) {
        Ok(_) => panic!("{} loaded", path.display()),
        Err(e) => e,
    }
}

#[test]
fn unknown_architecture_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let ok = valid(dir.path());
    let bad = rewrite(&ok, &dir.path().join("arch.gguf"), |md, _| {
        md.set("general.architecture", Value::from("mamba9"));
    });
    let e = load_err(&bad);
    assert!(
        matches!(&e, EngineError::UnsupportedArch(a) if a == "mamba9"),
        "{e}"
    );
    assert!(e.to_string().contains("mamba9"), "{e}");
}

#[test]
fn a_missing_tensor_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let ok = valid(dir.path());
    let bad = rewrite(&ok, &dir.path().join("missing.gguf"), |_, ts| {
        ts.retain(|t| t.name != "blk.1.ffn_down.weight");
    });
    let e = load_err(&bad);
    assert!(e.to_string().contains("blk.1.ffn_down.weight"), "{e}");
    assert!(matches!(e, EngineError::MissingTensor(_)), "{e}");
}

#[test]
fn a_wrong_shape_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let ok = valid(dir.path());
    let bad = rewrite(&ok, &dir.path().join("shape.gguf"), |_, ts| {
        let t = ts
            .iter_mut()
            .find(|t| t.name == "blk.0.attn_q.weight")
            .unwrap();
        t.dims[1] += 32;
    });
    let e = load_err(&bad);
    assert!(e.to_string().contains("blk.0.attn_q.weight"), "{e}");
    assert!(matches!(e, EngineError::WrongShape { .. }), "{e}");
}

#[test]
fn metadata_that_disagrees_with_the_tensors_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let ok = valid(dir.path());
    // Four layers claimed, two present.
    let bad = rewrite(&ok, &dir.path().join("layers.gguf"), |md, _| {
        md.set("llama.block_count", Value::U32(4));
    });
    let e = load_err(&bad);
    assert!(e.to_string().contains("blk.2."), "{e}");
    // A head count that does not divide the width.
    let bad = rewrite(&ok, &dir.path().join("heads.gguf"), |md, _| {
        md.set("llama.attention.head_count", Value::U32(3));
    });
    let e = load_err(&bad);
    assert!(e.to_string().contains("head"), "{e}");
}

#[test]
fn a_truncated_file_is_an_error_naming_the_section() {
    let dir = tempfile::tempdir().unwrap();
    let ok = valid(dir.path());
    let bytes = std::fs::read(&ok).unwrap();
    let cut = dir.path().join("cut.gguf");
    std::fs::write(&cut, &bytes[..bytes.len() - 1000]).unwrap();
    let e = load_err(&cut);
    assert!(matches!(e, EngineError::Gguf(_)), "{e}");
    assert!(e.to_string().contains("truncated"), "{e}");
}

/// A draft model whose vocabulary differs from the target's is refused at load, naming the
/// difference (llama.cpp's compatibility rules).
#[test]
fn a_draft_model_with_another_vocabulary_is_refused() {
    use perch_engine::draft::{DraftConfig, check_vocab};
    use perch_engine::loader::{ChatModel, DraftOptions, LoadOptions};
    use perch_tokenizer::Tokenizer;
    use std::sync::Arc;

    let smol_file = GgufFile::open(perch_fixtures::smollm2_q4_1()).unwrap();
    let smol = Tokenizer::from_gguf(&smol_file).unwrap();
    check_vocab(&smol, &smol).unwrap();
    for (name, want) in [
        ("gpt-2", "the target has 49152 tokens, the draft 50257"),
        (
            "llama-spm",
            "the target's tokenizer is Bpe (gpt2), the draft's Spm (llama)",
        ),
        ("starcoder", "token "),
    ] {
        let other =
            Tokenizer::from_gguf(&GgufFile::open(perch_fixtures::vocab(name)).unwrap()).unwrap();
        let e = check_vocab(&smol, &other).unwrap_err();
        eprintln!("{name}: {e}");
        assert!(e.contains(want), "{name}: {e}");
    }

    // One token's text changed in an otherwise identical model.
    let dir = tempfile::tempdir().unwrap();
    let ok = valid(dir.path());
    let bad = rewrite(&ok, &dir.path().join("vocab.gguf"), |md, _| {
        let Some(Value::Array(perch_gguf::Array::String(tokens))) =
            md.get("tokenizer.ggml.tokens").cloned()
        else {
            panic!("no token list")
        };
        let mut tokens = tokens;
        tokens[1000] = perch_gguf::GgufString::from_bytes(b"not-a-smollm2-token".to_vec());
        md.set("tokenizer.ggml.tokens", perch_gguf::Array::String(tokens));
    });
    let draft = Arc::new(Model::open(&bad).unwrap());
    let e = DraftConfig::new(draft, &smol).unwrap_err().to_string();
    assert!(
        e.contains("token 1000") && e.contains("not-a-smollm2-token"),
        "{e}"
    );
    assert!(DraftConfig::new(Arc::new(Model::open(&ok).unwrap()), &smol).is_ok());

    // Through the loader, as `--draft-model` reaches it.
    let opts = LoadOptions {
        n_ctx: Some(256),
        draft: Some(DraftOptions::new(&bad)),
        ..LoadOptions::default()
    };
    let e = ChatModel::load(&perch_fixtures::smollm2_q4_1(), &opts)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(&format!("draft model {}", bad.display())) && e.contains("token 1000"),
        "{e}"
    );
    let opts = LoadOptions {
        draft: Some(DraftOptions::new(dir.path().join("missing.gguf"))),
        ..opts
    };
    let e = ChatModel::load(&perch_fixtures::smollm2_q4_1(), &opts)
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing.gguf"), "{e}");
}
