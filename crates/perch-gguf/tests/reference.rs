//! Files written by independent writers, read by perch and written back byte-identically:
//! small files gguf-py wrote with every metadata type (`scripts/gen_gguf_refs.py`, with the
//! values it was given recorded in JSON), and llama.cpp's vocab-only GGUFs.

use std::path::{Path, PathBuf};

use perch_gguf::{Array, GgmlType, GgufFile, GgufString, Value};
use serde_json::Value as Json;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The type description `gen_gguf_refs.py` writes (`"array[array[i32]]"`).
fn describe(v: &Value) -> String {
    match v {
        Value::Array(a) => describe_array(a),
        v => v.value_type().name().to_string(),
    }
}

fn describe_array(a: &Array) -> String {
    match a {
        Array::Array(v) => format!("array[{}]", v.first().map_or("?".into(), describe_array)),
        a => format!("array[{}]", a.elem_type().name()),
    }
}

fn check_string(s: &GgufString, j: &Json, key: &str) {
    assert_eq!(hex(s.as_bytes()), j["hex"].as_str().unwrap(), "{key}");
}

fn check_value(v: &Value, j: &Json, key: &str) {
    match v {
        Value::U8(x) => assert_eq!(Some(u64::from(*x)), j.as_u64(), "{key}"),
        Value::U16(x) => assert_eq!(Some(u64::from(*x)), j.as_u64(), "{key}"),
        Value::U32(x) => assert_eq!(Some(u64::from(*x)), j.as_u64(), "{key}"),
        Value::U64(x) => assert_eq!(Some(*x), j.as_u64(), "{key}"),
        Value::I8(x) => assert_eq!(Some(i64::from(*x)), j.as_i64(), "{key}"),
        Value::I16(x) => assert_eq!(Some(i64::from(*x)), j.as_i64(), "{key}"),
        Value::I32(x) => assert_eq!(Some(i64::from(*x)), j.as_i64(), "{key}"),
        Value::I64(x) => assert_eq!(Some(*x), j.as_i64(), "{key}"),
        Value::F32(x) => assert_eq!(x.to_bits(), (j.as_f64().unwrap() as f32).to_bits(), "{key}"),
        Value::F64(x) => assert_eq!(x.to_bits(), j.as_f64().unwrap().to_bits(), "{key}"),
        Value::Bool(x) => assert_eq!(Some(*x), j.as_bool(), "{key}"),
        Value::String(s) => check_string(s, j, key),
        Value::Array(a) => check_array(a, j, key),
    }
}

fn check_array(a: &Array, j: &Json, key: &str) {
    let items = j
        .as_array()
        .unwrap_or_else(|| panic!("{key}: expected a JSON array"));
    assert_eq!(a.len(), items.len(), "{key}: length");
    macro_rules! each {
        ($v:expr, $wrap:expr) => {
            for (x, j) in $v.iter().zip(items) {
                check_value(&$wrap(x.clone()), j, key);
            }
        };
    }
    match a {
        Array::U8(v) => each!(v, Value::U8),
        Array::I8(v) => each!(v, Value::I8),
        Array::U16(v) => each!(v, Value::U16),
        Array::I16(v) => each!(v, Value::I16),
        Array::U32(v) => each!(v, Value::U32),
        Array::I32(v) => each!(v, Value::I32),
        Array::F32(v) => each!(v, Value::F32),
        Array::Bool(v) => each!(v, Value::Bool),
        Array::String(v) => each!(v, Value::String),
        Array::Array(v) => each!(v, Value::Array),
        Array::U64(v) => each!(v, Value::U64),
        Array::I64(v) => each!(v, Value::I64),
        Array::F64(v) => each!(v, Value::F64),
    }
}

/// Reads `name`.gguf and checks every key, type, value and tensor against `name`.json.
fn check_reference(name: &str) -> GgufFile {
    let f = GgufFile::open(data(&format!("{name}.gguf"))).unwrap();
    let text = std::fs::read_to_string(data(&format!("{name}.json"))).unwrap();
    let expected: Json = serde_json::from_str(&text).unwrap();
    let md = expected["metadata"].as_array().unwrap();
    assert_eq!(f.metadata().len(), md.len());
    for ((key, value), e) in f.metadata().iter().zip(md) {
        assert_eq!(key, e["key"].as_str().unwrap(), "keys in file order");
        let ty = e["type"].as_str().unwrap();
        match ty.strip_suffix("...]]") {
            Some(prefix) => assert!(describe(value).starts_with(prefix), "{key}: {ty}"),
            None => assert_eq!(describe(value), ty, "{key}"),
        }
        check_value(value, &e["value"], key);
    }
    let ts = expected["tensors"].as_array().unwrap();
    assert_eq!(f.tensors().len(), ts.len());
    for (t, e) in f.tensor_views().zip(ts) {
        assert_eq!(t.name(), e["name"].as_str().unwrap());
        assert_eq!(
            u64::from(t.ty().id()),
            e["type"].as_u64().unwrap(),
            "{}",
            t.name()
        );
        let dims: Vec<u64> = e["dims"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap())
            .collect();
        assert_eq!(t.dims(), &dims[..], "{}", t.name());
        assert_eq!(t.info.offset, e["offset"].as_u64().unwrap(), "{}", t.name());
        assert_eq!(hex(t.data), e["data"].as_str().unwrap(), "{}", t.name());
    }
    f
}

#[test]
fn gguf_py_file_with_every_metadata_type_reads_as_written() {
    let f = check_reference("all_types");
    assert_eq!(f.version(), 3);
    assert_eq!(f.alignment(), 32);
    // Typed accessors on the same file.
    assert_eq!(f.get_u32("t.u16").unwrap(), 65000);
    assert_eq!(f.get_u64("t.u64").unwrap(), u64::MAX);
    assert_eq!(f.get_str("t.string").unwrap(), "héllo, wörld ✓");
    assert_eq!(f.get_bytes("t.not_utf8").unwrap(), b"\xff\xfe<0x80>\xc3");
    assert!(f.get_str("t.not_utf8").is_err());
    assert_eq!(f.get_f32_array("a.f32").unwrap(), &[0.5, -2.25, 1e-3]);
    assert!(
        f.get_str_array("a.string").is_err(),
        "element 3 is not UTF-8"
    );
    assert_eq!(
        f.get_string_array("a.string").unwrap()[2].as_str().unwrap(),
        "<|im_start|>"
    );
    assert_eq!(f.tensor("q8_0.weight").unwrap().ty(), GgmlType::Q8_0);
}

#[test]
fn gguf_py_file_with_nested_arrays_and_alignment_64_reads_as_written() {
    let f = check_reference("nested");
    assert_eq!(f.alignment(), 64);
    assert_eq!(f.data_offset() % 64, 0);
}

#[test]
fn gguf_py_files_round_trip_byte_identically() {
    for name in ["all_types.gguf", "nested.gguf"] {
        let original = std::fs::read(data(name)).unwrap();
        let f = GgufFile::from_bytes(original.clone()).unwrap();
        assert!(
            f.to_bytes().unwrap() == original,
            "{name}: in-memory rewrite differs"
        );
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join(name);
        f.write_to(&out).unwrap();
        assert!(
            std::fs::read(&out).unwrap() == original,
            "{name}: file rewrite differs"
        );
    }
}

#[test]
fn version_2_files_read_and_keep_their_version() {
    // v2 and v3 share one layout; v3 only added big-endian files.
    let mut bytes = std::fs::read(data("all_types.gguf")).unwrap();
    bytes[4..8].copy_from_slice(&2u32.to_le_bytes());
    let f = GgufFile::from_bytes(bytes.clone()).unwrap();
    assert_eq!(f.version(), 2);
    assert_eq!(f.get_i64("t.i64").unwrap(), i64::MIN);
    assert!(f.to_bytes().unwrap() == bytes);
}

#[test]
fn llama_cpp_vocab_files_read_and_round_trip_byte_identically() {
    let dir = perch_fixtures::vocab_dir();
    let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "gguf"))
        .collect();
    names.sort();
    assert!(
        names.len() >= 15,
        "expected llama.cpp's ggml-vocab-*.gguf files in {dir:?}"
    );
    for path in names {
        let original = std::fs::read(&path).unwrap();
        let f = GgufFile::from_bytes(original.clone())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let tokens = f.get_string_array("tokenizer.ggml.tokens").unwrap();
        assert!(tokens.len() > 1000, "{}", path.display());
        assert!(
            f.get_str("tokenizer.ggml.model").is_ok(),
            "{}",
            path.display()
        );
        let rewritten = f.to_bytes().unwrap();
        assert!(rewritten == original, "{}: rewrite differs", path.display());
    }
}

#[test]
fn fuzz_seeds_parse_and_round_trip() {
    // The fuzz target's seed corpus (scripts/gen_fuzz_seeds.py, written with gguf-py): every
    // seed is a valid file, so fuzzing starts from inputs that reach deep into the reader.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/gguf_reader");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let original = std::fs::read(&path).unwrap();
        let f = GgufFile::from_bytes(original.clone())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(f.to_bytes().unwrap() == original, "{}", path.display());
        n += 1;
    }
    assert!(n >= 6);
    let q = GgufFile::open(dir.join("quant_types.gguf")).unwrap();
    let q4k = q.tensor("t.q4_k").unwrap();
    assert_eq!(
        (q4k.ty(), q4k.dims(), q4k.data.len()),
        (GgmlType::Q4_K, &[256u64, 1][..], 144)
    );
    assert_eq!(q.tensor("t.bf16").unwrap().dims(), &[32, 1]);
}
