//! perch's mixes against llama.cpp's: for each file type, with and without llama-quantize's
//! flags, the type [`plan`] gives every tensor is the type `llama-quantize` gave it, as
//! recorded by `scripts/record_peer_mixes.py` into `tests/data/peer_mixes.json`. The I-quant
//! mixes perch cannot make yet are compared as [`decide_types`]' decisions. Inputs: SmolLM2
//! made F32 (576-wide rows: mostly fallbacks) and the synthetic F32 models of
//! `common/mix_models.rs` (256-wide rows, 8 to 16 layers: the layer-position rules).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::mix_models::{self, mix_models};
use perch_convert::{
    ConvertError, FileType, QuantizeOptions, TensorTypeRule, decide_types, plan, quantize_file,
};
use perch_gguf::{GgmlType, GgufFile, keys};
use perch_quant::has_quantizer;

#[derive(serde::Deserialize)]
struct Record {
    models: BTreeMap<String, ModelRecord>,
    runs: Vec<Run>,
}

#[derive(serde::Deserialize)]
struct ModelRecord {
    names: Vec<String>,
}

#[derive(serde::Deserialize)]
struct Run {
    model: String,
    ftype: String,
    flags: Vec<String>,
    file_type: u32,
    needs_imatrix: bool,
    /// `None` when llama-quantize refused: a row fits neither the type nor a fallback.
    types: Option<Vec<String>>,
}

fn record() -> Record {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/peer_mixes.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// llama-quantize's command line, as perch's options.
fn options(ftype: &str, flags: &[String]) -> QuantizeOptions {
    let mut opts = QuantizeOptions::new(FileType::from_name(ftype).expect("a file type"));
    let ty = |s: &str| GgmlType::from_name(s).expect("a ggml type");
    let mut it = flags.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().expect("the flag's value").as_str();
        match flag.as_str() {
            "--pure" => opts.mix.pure = true,
            "--leave-output-tensor" => opts.mix.leave_output_tensor = true,
            "--tensor-type" => opts
                .mix
                .tensor_types
                .push(TensorTypeRule::parse(value()).unwrap()),
            "--output-tensor-type" => opts.mix.output_tensor_type = Some(ty(value())),
            "--token-embedding-type" => opts.mix.token_embedding_type = Some(ty(value())),
            other => panic!("flag {other} not handled by this test"),
        }
    }
    opts
}

/// The F32 inputs llama-quantize saw, rebuilt: SmolLM2 dequantized, the synthetic models.
fn inputs(dir: &Path) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    let smollm2 = dir.join("smollm2-f32.gguf");
    let mut opts = QuantizeOptions::new(FileType::F32);
    opts.allow_requantize = true;
    quantize_file(&perch_fixtures::smollm2_q4_1(), &smollm2, &opts, |_| {}).unwrap();
    out.insert("SmolLM2".to_string(), smollm2);
    for m in mix_models() {
        out.insert(m.name.to_string(), mix_models::write(&m, dir));
    }
    out
}

#[test]
fn every_mix_picks_llama_quantizes_types() {
    let rec = record();
    let tmp = tempfile::tempdir().unwrap();
    let inputs = inputs(tmp.path());
    let files: BTreeMap<&str, GgufFile> = inputs
        .iter()
        .map(|(k, p)| (k.as_str(), GgufFile::open(p).unwrap()))
        .collect();
    let mut mismatches = Vec::new();
    let mut compared = 0;
    for run in &rec.runs {
        let file = &files[run.model.as_str()];
        let names = &rec.models[&run.model].names;
        let mut sorted: Vec<&str> = file.tensors().iter().map(|t| t.name.as_str()).collect();
        sorted.sort();
        assert_eq!(&sorted, names, "{}: tensor names", run.model);
        let what = format!("{} {} {}", run.model, run.ftype, run.flags.join(" "));
        let opts = options(&run.ftype, &run.flags);
        assert_eq!(opts.ftype.id(), run.file_type, "{what}: general.file_type");
        // The mixes perch cannot make (I-quants) are compared as decisions only.
        let choices = if has_quantizer(opts.ftype.default_type()) {
            plan(file, &opts)
        } else {
            decide_types(file, &opts)
        };
        let Some(types) = &run.types else {
            match choices {
                Err(ConvertError::NoFallback { .. }) => {}
                Err(e) => panic!("{what}: llama-quantize found no fallback type, perch: {e}"),
                Ok(_) => panic!("{what}: llama-quantize found no fallback type, perch did"),
            }
            continue;
        };
        let choices = choices.unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(
            choices.iter().any(|c| c.needs_imatrix),
            run.needs_imatrix,
            "{what}: whether an importance matrix is needed"
        );
        let got: BTreeMap<&str, GgmlType> =
            choices.iter().map(|c| (c.name.as_str(), c.to)).collect();
        for (name, want) in names.iter().zip(types) {
            compared += 1;
            let got = got[name.as_str()];
            if !got.name().eq_ignore_ascii_case(want) {
                mismatches.push(format!("{what}: {name} is {got}, llama-quantize {want}"));
            }
        }
    }
    assert!(compared > 10_000, "only {compared} tensors compared");
    assert!(
        mismatches.is_empty(),
        "{} of {compared} differ:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

#[test]
fn q4_k_m_of_the_llama_model_is_written_with_llama_quantizes_types() {
    let rec = record();
    let tmp = tempfile::tempdir().unwrap();
    let m = mix_models()
        .into_iter()
        .find(|m| m.name == "llama-16l")
        .unwrap();
    let input = mix_models::write(&m, tmp.path());
    let run = rec
        .runs
        .iter()
        .find(|r| r.model == m.name && r.ftype == "Q4_K_M" && r.flags.is_empty())
        .expect("a recorded Q4_K_M run");
    let out = tmp.path().join("q4_k_m.gguf");
    let report = quantize_file(&input, &out, &options("Q4_K_M", &[]), |_| {}).unwrap();
    assert!(report.bytes_out < report.bytes_in / 4);
    let q = GgufFile::open(&out).unwrap();
    assert_eq!(q.get_u32(keys::GENERAL_FILE_TYPE).unwrap(), run.file_type);
    let names = &rec.models[m.name].names;
    for (name, want) in names.iter().zip(run.types.as_ref().unwrap()) {
        let got = q.tensor_info(name).unwrap().ty;
        assert!(
            got.name().eq_ignore_ascii_case(want),
            "{name}: written as {got}, llama-quantize {want}"
        );
    }
    // More than one type: the mix, not one type everywhere.
    let kinds: std::collections::BTreeSet<_> = q.tensors().iter().map(|t| t.ty).collect();
    assert!(kinds.contains(&GgmlType::Q6_K) && kinds.contains(&GgmlType::Q4_K));

    // Q2_K_S puts Q2_K tensors in the file, which llama.cpp refuses without an imatrix.
    let out = tmp.path().join("q2_k_s.gguf");
    let err = quantize_file(&input, &out, &options("Q2_K_S", &[]), |_| {}).unwrap_err();
    assert!(
        matches!(
            &err,
            ConvertError::NeedsImatrix {
                ty: GgmlType::Q2_K,
                ..
            }
        ),
        "{err}"
    );
    assert!(!out.exists());
}
