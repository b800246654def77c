//! `perch imatrix` against llama-imatrix's recorded importance matrix, and
//! `perch quantize --imatrix` against llama-quantize's tensor types with the same imatrix.
//!
//! The reference comes from `scripts/record_peer_imatrix.py`: SmolLM2 dequantized to F32, the
//! GPL-3 text as Debian ships it, context 128, 4 chunks.

mod common;
use common::{assert_one_line_error, perch, smollm2, stdout};

use perch_convert::{Imatrix, ImatrixData};
use perch_gguf::GgufFile;

const TEXT: &str = "/usr/share/common-licenses/GPL-3";

fn peer() -> serde_json::Value {
    let path = format!(
        "{}/tests/data/peer_imatrix.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// numpy.linspace(0, n - 1, k).round() as integers (round half to even, as numpy does).
fn spread(n: usize, k: usize) -> Vec<usize> {
    (0..k)
        .map(|i| {
            let x = i as f64 * (n - 1) as f64 / (k - 1) as f64;
            x.round_ties_even() as usize
        })
        .collect()
}

#[test]
fn smollm2_imatrix_matches_llama_imatrix_and_drives_the_mix() {
    let dir = tempfile::tempdir().unwrap();
    let f32_model = dir.path().join("f32.gguf");
    stdout(&perch(&[
        "quantize",
        &smollm2(),
        f32_model.to_str().unwrap(),
        "f32",
        "--allow-requantize",
    ]));
    let im = dir.path().join("smol.imatrix.gguf");
    stdout(&perch(&[
        "imatrix",
        f32_model.to_str().unwrap(),
        "-f",
        TEXT,
        "-c",
        "128",
        "--chunks",
        "4",
        "-o",
        im.to_str().unwrap(),
    ]));
    let ours = Imatrix::read(&im).unwrap();
    assert_eq!(ours.chunk_count, 4);
    assert_eq!(ours.chunk_size, 128);
    assert_eq!(ours.datasets, vec![TEXT.to_string()]);

    let peer = peer();
    let want = peer["entries"].as_object().unwrap();
    let names: Vec<&String> = ours.entries.keys().collect();
    let peer_names: Vec<&String> = want.keys().collect();
    assert_eq!(names, peer_names, "the same weight tensors");
    for (name, w) in want {
        let e = &ours.entries[name];
        assert_eq!(e.counts, vec![w["count"].as_u64().unwrap()], "{name}");
        assert_eq!(e.sums.len() as u64, w["n"].as_u64().unwrap(), "{name}");
        // Same model, same text; the tools differ in summation order and batch layout only.
        let total: f64 = e.sums.iter().map(|&v| f64::from(v)).sum();
        let peer_total = w["total"].as_f64().unwrap();
        assert!(
            (total / peer_total - 1.0).abs() < 2e-3,
            "{name}: total {total} vs llama-imatrix {peer_total}"
        );
        let values: Vec<f64> = w["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let scale = values.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        for (i, (&j, &pv)) in spread(e.sums.len(), values.len())
            .iter()
            .zip(&values)
            .enumerate()
        {
            let v = f64::from(e.sums[j]);
            assert!(
                (v - pv).abs() <= 5e-3 * scale + 1e-6,
                "{name} sample {i} (column {j}): {v} vs llama-imatrix {pv}"
            );
        }
    }

    // With an imatrix, llama-quantize guards Q4_0's first ffn_down layers with Q4_1 and keeps
    // IQ4_XS's as IQ4 (no Q5_K); perch's mix does the same.
    for (ftype, types) in peer["quantize_types_with_imatrix"].as_object().unwrap() {
        let out = dir.path().join(format!("{ftype}.gguf"));
        stdout(&perch(&[
            "quantize",
            f32_model.to_str().unwrap(),
            out.to_str().unwrap(),
            ftype,
            "--imatrix",
            im.to_str().unwrap(),
        ]));
        let f = GgufFile::open(&out).unwrap();
        for t in f.tensors() {
            let want = types[&t.name].as_str().unwrap();
            assert!(
                t.ty.name().eq_ignore_ascii_case(want),
                "{ftype}: {} is {} (llama-quantize: {want})",
                t.name,
                t.ty.name()
            );
        }
        assert_eq!(
            f.metadata()
                .get_str("quantize.imatrix.file")
                .unwrap_or_default(),
            im.to_str().unwrap()
        );
        assert_eq!(
            f.metadata()
                .get_u32("quantize.imatrix.entries_count")
                .unwrap(),
            210
        );
        std::fs::remove_file(&out).unwrap();
    }
}

#[test]
fn a_wrong_or_missing_imatrix_is_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let model = smollm2();
    let out = dir.path().join("out.gguf");
    let missing = dir.path().join("none.gguf");
    assert_one_line_error(
        &[
            "quantize",
            &model,
            out.to_str().unwrap(),
            "q4_k_m",
            "--allow-requantize",
            "--imatrix",
            missing.to_str().unwrap(),
        ],
        "none.gguf",
    );
    // An imatrix made for a model with other widths.
    let mut wrong = Imatrix {
        datasets: vec!["x".into()],
        chunk_count: 1,
        chunk_size: 16,
        ..Imatrix::default()
    };
    wrong.entries.insert(
        "blk.0.attn_q.weight".into(),
        ImatrixData {
            sums: vec![1.0; 100],
            counts: vec![16],
        },
    );
    let wrong_path = dir.path().join("wrong.imatrix.gguf");
    wrong.write(&wrong_path).unwrap();
    assert_one_line_error(
        &[
            "quantize",
            &model,
            out.to_str().unwrap(),
            "q4_k_m",
            "--allow-requantize",
            "--imatrix",
            wrong_path.to_str().unwrap(),
        ],
        "blk.0.attn_q.weight, which needs 576",
    );
    assert!(!out.exists(), "nothing written");
    // perch imatrix wants a text long enough for two chunks.
    let short = dir.path().join("short.txt");
    std::fs::write(&short, "hello").unwrap();
    assert_one_line_error(
        &["imatrix", &model, "-f", short.to_str().unwrap()],
        "needs at least 1024",
    );
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 2, "no partial output: {names:?}");
}
