//! `quantize_file --pure` on SmolLM2 against llama.cpp's `llama-quantize --pure` on the same input,
//! recorded by `scripts/record_peer_quantize.py` into `tests/data/peer_quantize.json`:
//!
//! * the fixture (Q4_1) requantized to F32 gives the same bytes as llama-quantize's F32 file;
//! * from that F32 file, each type gives the same tensor types (fallbacks included) and the
//!   same `general.file_type`;
//! * where both sides use ggml's reference quantizers (legacy and ternary types, F16, BF16)
//!   the same bytes, tensor by tensor;
//! * where perch's quantizers search differently (K- and I-quants), no more squared error
//!   against the F32 weights than llama.cpp's file has.

use std::collections::BTreeMap;
use std::path::Path;

use perch_convert::{FileType, QuantizeOptions, quantize_file};
use perch_gguf::{GgufFile, keys};
use perch_quant::{GgmlType, dequantize_row};
use sha2::{Digest, Sha256};

/// Per tensor, in the order of `names` (sorted: llama-quantize reorders tensors, perch keeps
/// the input's order, so they are compared by name).
#[derive(serde::Deserialize)]
struct Record {
    names: Vec<String>,
    f32: Vec<String>,
    types: BTreeMap<String, TypeRecord>,
}

#[derive(serde::Deserialize)]
struct TypeRecord {
    file_type: u32,
    types: Vec<String>,
    hashes: Vec<String>,
    sq_err: f64,
}

fn record() -> Record {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/peer_quantize.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn hash(b: &[u8]) -> String {
    hex::encode(&Sha256::digest(b)[..8])
}

/// `llama-quantize --pure` to the file type named after `target` (`Q4_K` is Q4_K_M's alias).
fn quantize(input: &Path, output: &Path, target: GgmlType, allow_requantize: bool) -> GgufFile {
    let mut opts = QuantizeOptions::new(FileType::from_name(target.name()).expect("a file type"));
    opts.allow_requantize = allow_requantize;
    opts.mix.pure = true;
    quantize_file(input, output, &opts, |_| {}).unwrap();
    GgufFile::open(output).unwrap()
}

/// Sum of squared differences between `q`'s tensors and `base`'s F32 tensors, over the
/// tensors whose type differs.
fn squared_error(q: &GgufFile, base: &GgufFile) -> f64 {
    let mut sq = 0.0;
    for t in q.tensor_views() {
        let b = base.require_tensor(t.name()).unwrap();
        if t.ty() == b.ty() {
            continue;
        }
        let n = t.info.n_elements as usize;
        let (mut x, mut y) = (vec![0f32; n], vec![0f32; n]);
        dequantize_row(t.ty(), t.data, &mut x).unwrap();
        dequantize_row(b.ty(), b.data, &mut y).unwrap();
        sq += x
            .iter()
            .zip(&y)
            .map(|(&a, &b)| (a as f64 - b as f64).powi(2))
            .sum::<f64>();
    }
    sq
}

/// Types whose quantizers are ggml's reference ones on both sides, so bytes must match.
fn bit_exact(ty: GgmlType) -> bool {
    use GgmlType as T;
    matches!(
        ty,
        T::F32
            | T::F16
            | T::BF16
            | T::Q4_0
            | T::Q4_1
            | T::Q5_0
            | T::Q5_1
            | T::Q8_0
            | T::TQ1_0
            | T::TQ2_0
    )
}

#[test]
fn smollm2_quantizes_like_llama_quantize() {
    let rec = record();
    let tmp = tempfile::tempdir().unwrap();
    let f32_path = tmp.path().join("f32.gguf");
    let base = quantize(
        &perch_fixtures::smollm2_q4_1(),
        &f32_path,
        GgmlType::F32,
        true,
    );
    let by_name = |f: &GgufFile| -> BTreeMap<String, (String, String)> {
        f.tensor_views()
            .map(|t| (t.name().to_string(), (t.ty().to_string(), hash(t.data))))
            .collect()
    };
    let got = by_name(&base);
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        rec.names.iter().collect::<Vec<_>>()
    );
    for ((name, (_, h)), want) in got.iter().zip(&rec.f32) {
        assert_eq!(h, want, "F32: bytes of {name} differ from llama-quantize's");
    }

    for (name, want) in &rec.types {
        let ty = GgmlType::from_name(name).expect("a ggml type name");
        let out = tmp.path().join(format!("{name}.gguf"));
        let q = quantize(&f32_path, &out, ty, false);
        assert_eq!(
            q.get_u32(keys::GENERAL_FILE_TYPE).unwrap(),
            want.file_type,
            "{name}: general.file_type"
        );
        let got = by_name(&q);
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            rec.names.iter().collect::<Vec<_>>()
        );
        for ((tensor, (got_ty, _)), want_ty) in got.iter().zip(&want.types) {
            assert_eq!(got_ty, want_ty, "{name}: type of {tensor}");
        }
        if bit_exact(ty) {
            for ((tensor, (_, h)), want_hash) in got.iter().zip(&want.hashes) {
                assert_eq!(h, want_hash, "{name}: bytes of {tensor}");
            }
        } else {
            let sq = squared_error(&q, &base);
            eprintln!(
                "{name}: squared error perch {sq:.6} llama.cpp {:.6}",
                want.sq_err
            );
            assert!(
                sq <= want.sq_err * (1.0 + 1e-9),
                "{name}: perch's squared error {sq} exceeds llama.cpp's {}",
                want.sq_err
            );
        }
        std::fs::remove_file(&out).unwrap();
    }
}
