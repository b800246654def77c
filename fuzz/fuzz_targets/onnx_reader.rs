//! Fuzzes the ONNX reader: any bytes either fail to decode as a `ModelProto` or give a model
//! that validates or fails with an error, summarizes (what `perch inspect` shows) without
//! panicking, reads its initializers as f32 or refuses them, and encodes back to bytes that
//! decode to the same summary.
//!
//! External data is looked up in a folder that does not exist, so no input reads the disk.
#![no_main]

use libfuzzer_sys::fuzz_target;
use perch_onnx::{ModelSummary, OnnxModel};

const BASE: &str = "/nonexistent/perch-fuzz-onnx";

fuzz_target!(|data: &[u8]| {
    let Ok(model) = OnnxModel::decode(data, BASE) else {
        return;
    };
    let valid = model.validate().is_ok();
    let summary = ModelSummary::of(&model);
    let _ = model.graph();
    let _ = model.opset("");
    if valid {
        // A valid model's initializers have data matching their dims (or external data,
        // which cannot exist here), so reading them is bounded by the input's size.
        if let Ok(g) = model.graph() {
            for t in g.initializer.iter().take(64) {
                if let Ok(v) = model.tensor_f32(t) {
                    let n = perch_onnx::tensor::element_count(t).expect("counted");
                    assert_eq!(v.len() as u64, n, "{}: values vs dims", t.name());
                }
            }
        }
    }
    let bytes = model.to_bytes();
    let again = OnnxModel::decode(&bytes, BASE).expect("what the encoder wrote decodes");
    assert_eq!(
        again.validate().is_ok(),
        valid,
        "validation after a round trip"
    );
    let s2 = ModelSummary::of(&again);
    assert_eq!(
        serde_json::to_value(&summary).expect("summary serializes"),
        serde_json::to_value(&s2).expect("summary serializes"),
        "summary after a round trip"
    );
});
