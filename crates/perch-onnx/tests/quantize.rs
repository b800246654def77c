//! ONNX quantization of the fp32 paraphrase-MiniLM-L3-v2 fixture: ONNX Runtime runs the
//! result, embeddings stay close to the fp32 model's (cosine per sentence), and the file
//! shrinks.

mod common;

use std::path::{Path, PathBuf};

use perch_onnx::embed::cosine;
use perch_onnx::quantize::{
    Calibration, CalibrationMethod, Mode, QuantizeOptions, QuantizeReport, quantize_file,
};
use perch_onnx::{ModelSummary, OnnxModel};

/// Quantizes the fixture into `dir` and returns the report, the output path and the worst
/// cosine similarity with the fp32 model over the test sentences.
fn run(dir: &Path, opts: &QuantizeOptions) -> (QuantizeReport, PathBuf, f32) {
    let input = common::paraphrase();
    let out = dir.join("q.onnx");
    let report = quantize_file(&input, &out, opts).unwrap();
    let want = common::embed_all(&common::embedder(&input));
    let got = common::embed_all(&common::embedder(&out));
    let worst = want
        .iter()
        .zip(&got)
        .map(|(a, b)| cosine(a, b))
        .fold(1.0f32, f32::min);
    (report, out, worst)
}

fn size(p: &Path) -> u64 {
    std::fs::metadata(p).unwrap().len()
}

#[test]
fn dynamic_int8_keeps_embeddings_at_under_30_percent_of_the_size() {
    let dir = tempfile::tempdir().unwrap();
    let (report, out, worst) = run(dir.path(), &QuantizeOptions::new(Mode::DynamicInt8));
    let ratio = size(&out) as f64 / size(&common::paraphrase()) as f64;
    eprintln!(
        "dynamic-int8: worst cosine {worst:.5}, size {:.1}%",
        100.0 * ratio
    );
    // Measured 0.9965 at 25.3%.
    assert!(worst >= 0.99, "worst cosine {worst}");
    assert!(ratio <= 0.30, "size ratio {ratio}");
    assert_eq!(report.quantized["MatMul"], 18);
    assert_eq!(report.quantized["Gather"], 3);
    let ops = ModelSummary::of(&OnnxModel::open(&out).unwrap()).ops;
    assert_eq!(ops["MatMulInteger"], 18);
    // One DynamicQuantizeLinear per distinct activation (Q, K and V share theirs).
    assert!(ops["DynamicQuantizeLinear"] < 18, "{ops:?}");
    assert!(!ops.contains_key("MatMulNBits"));
}

#[test]
fn int4_keeps_embeddings_at_under_20_percent_of_the_size() {
    let dir = tempfile::tempdir().unwrap();
    for (block_size, symmetric) in [(32, false), (128, true)] {
        let opts = QuantizeOptions::new(Mode::Int4 {
            block_size,
            symmetric,
        });
        let (report, out, worst) = run(dir.path(), &opts);
        let ratio = size(&out) as f64 / size(&common::paraphrase()) as f64;
        eprintln!(
            "int4 block {block_size} symmetric {symmetric}: worst cosine {worst:.5}, size {:.1}%",
            100.0 * ratio
        );
        assert!(ratio <= 0.20, "size ratio {ratio}");
        // Block 32 with zero points (the default) is the configuration held to 0.97;
        // block 128 without zero points is coarser. Measured: block 32 asymmetric 0.9751 at
        // 16.2%, block 128 symmetric 0.9265 at 13.5%.
        let floor = if block_size == 32 { 0.97 } else { 0.92 };
        assert!(worst >= floor, "worst cosine {worst}");
        assert_eq!(report.quantized["MatMul"], 18);
        let ops = ModelSummary::of(&OnnxModel::open(&out).unwrap()).ops;
        assert_eq!(ops["com.microsoft.MatMulNBits"], 18);
        assert_eq!(
            ops["com.microsoft.GatherBlockQuantized"],
            report.quantized["Gather"]
        );
    }
}

#[test]
fn static_int8_with_calibration() {
    let dir = tempfile::tempdir().unwrap();
    let texts: Vec<String> = CALIBRATION.lines().map(str::to_string).collect();
    for method in [
        CalibrationMethod::MinMax,
        CalibrationMethod::Percentile(99.999),
    ] {
        let opts = QuantizeOptions::new(Mode::StaticInt8 {
            calibration: Calibration {
                texts: texts.clone(),
                tokenizer: Some(common::tokenizer()),
                method,
            },
        });
        let (report, out, worst) = run(dir.path(), &opts);
        let ratio = size(&out) as f64 / size(&common::paraphrase()) as f64;
        eprintln!(
            "static-int8 {method:?}: worst cosine {worst:.5}, size {:.1}%",
            100.0 * ratio
        );
        // Measured 0.9964 (min-max) and 0.9961 (percentile 99.999).
        assert!(worst >= 0.99, "worst cosine {worst}");
        assert!(ratio <= 0.30, "size ratio {ratio}");
        assert_eq!(report.quantized["MatMul"], 18);
        let ops = ModelSummary::of(&OnnxModel::open(&out).unwrap()).ops;
        assert!(
            ops["QuantizeLinear"] >= 6 && ops["DequantizeLinear"] >= 18 + 6,
            "{ops:?}"
        );
    }
}

#[test]
fn exclude_by_op_type_and_node_name() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = QuantizeOptions::new(Mode::DynamicInt8);
    opts.exclude = vec!["Gather".into()];
    let (report, _, worst) = run(dir.path(), &opts);
    assert!(!report.quantized.contains_key("Gather"));
    assert_eq!(
        report
            .skipped
            .iter()
            .filter(|s| s.contains("excluded"))
            .count(),
        3
    );
    assert!(worst >= 0.99);
    // A node by name.
    let model = OnnxModel::open(common::paraphrase()).unwrap();
    let first_matmul = model
        .graph()
        .unwrap()
        .node
        .iter()
        .find(|n| n.op_type() == "MatMul")
        .unwrap();
    let mut opts = QuantizeOptions::new(Mode::DynamicInt8);
    opts.exclude = vec![first_matmul.name().to_string()];
    let (report, _, _) = run(dir.path(), &opts);
    assert_eq!(report.quantized["MatMul"], 17);
}

#[test]
fn nothing_to_quantize_and_bad_options_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("q.onnx");
    let mut opts = QuantizeOptions::new(Mode::DynamicInt8);
    opts.exclude = vec!["MatMul".into(), "Gather".into()];
    let e = quantize_file(&common::paraphrase(), &out, &opts)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no node could be quantized"), "{e}");
    assert!(!out.exists(), "nothing may be left behind");
    let opts = QuantizeOptions::new(Mode::Int4 {
        block_size: 48,
        symmetric: false,
    });
    let e = quantize_file(&common::paraphrase(), &out, &opts)
        .unwrap_err()
        .to_string();
    assert!(e.contains("block size 48"), "{e}");
    let opts = QuantizeOptions::new(Mode::StaticInt8 {
        calibration: Calibration {
            texts: vec!["".into(), "  ".into()],
            tokenizer: Some(common::tokenizer()),
            method: CalibrationMethod::MinMax,
        },
    });
    let e = quantize_file(&common::paraphrase(), &out, &opts)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no text lines"), "{e}");
    // No temporary files left in the folder.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

/// Calibration text: different sentences from the ones the cosine is measured on.
const CALIBRATION: &str = "A man is playing a guitar on the street corner.
The stock market fell sharply after the announcement.
Photosynthesis converts light energy into chemical energy.
Can you recommend a good restaurant near the train station?
She finished the marathon in under four hours.
The committee will meet again next Tuesday at 10 am.
Neural networks learn representations from data.
It rained all weekend, so we stayed inside and played board games.
Please restart the server and check the logs for errors.
The museum's new exhibit features paintings from the 17th century.
Water boils at 100 degrees Celsius at sea level.
He forgot his umbrella and got soaked on the way home.";
