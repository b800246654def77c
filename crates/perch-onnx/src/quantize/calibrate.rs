//! Calibration for static quantization: the model is run by ONNX Runtime on each text with
//! the tensors to quantize added as graph outputs (as onnxruntime.quantization's
//! calibrators augment the graph), and each tensor's range is taken from what it held.

use std::collections::HashMap;
use std::path::Path;

use super::Calibration;
use crate::embed::{find_tokenizer, single_inputs};
use crate::error::{OnnxError, Result};
use crate::model::{OnnxModel, SaveOptions};
use crate::proto::tensor_proto::DataType;
use crate::proto::type_proto::{Tensor as TensorType, Value as TypeValue};
use crate::proto::{TypeProto, ValueInfoProto};
use crate::runtime::{OptLevel, SessionConfig};

/// Calibrated `(min, max)` per tensor name.
pub type Ranges = HashMap<String, (f32, f32)>;

/// How a tensor's range is taken from the values it held.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CalibrationMethod {
    /// The smallest and largest values seen.
    MinMax,
    /// The central `p` percent of values (`Percentile(99.999)` is ONNX Runtime's default),
    /// which ignores rare outliers.
    Percentile(f32),
}

/// Values kept per tensor for percentiles; past this, every other value is dropped.
const SAMPLE_CAP: usize = 1 << 20;

#[derive(Default)]
struct Stats {
    min: f32,
    max: f32,
    seen: bool,
    samples: Vec<f32>,
    stride: usize,
    counter: usize,
}

impl Stats {
    fn add(&mut self, vals: &[f32], keep: bool) {
        for &v in vals.iter().filter(|v| v.is_finite()) {
            if !self.seen {
                (self.min, self.max, self.seen) = (v, v, true);
                self.stride = 1;
            }
            self.min = self.min.min(v);
            self.max = self.max.max(v);
            if keep {
                self.counter += 1;
                if self.counter.is_multiple_of(self.stride) {
                    self.samples.push(v);
                    if self.samples.len() >= SAMPLE_CAP {
                        let kept: Vec<f32> = self.samples.iter().step_by(2).copied().collect();
                        self.samples = kept;
                        self.stride *= 2;
                    }
                }
            }
        }
    }

    fn range(mut self, method: CalibrationMethod) -> Option<(f32, f32)> {
        if !self.seen {
            return None;
        }
        match method {
            CalibrationMethod::MinMax => Some((self.min, self.max)),
            CalibrationMethod::Percentile(p) => {
                let n = self.samples.len();
                let tail = ((100.0 - f64::from(p)) / 200.0).clamp(0.0, 0.5);
                let lo_i = ((n as f64 - 1.0) * tail).round() as usize;
                let hi_i = ((n as f64 - 1.0) * (1.0 - tail)).round() as usize;
                let lo = *self.samples.select_nth_unstable_by(lo_i, f32::total_cmp).1;
                let hi = *self.samples.select_nth_unstable_by(hi_i, f32::total_cmp).1;
                Some((lo, hi))
            }
        }
    }
}

/// Runs the model at `model_path` on the calibration texts and returns the range of each
/// tensor in `targets` (float tensors of the graph).
pub fn calibrate(model_path: &Path, targets: &[String], cal: &Calibration) -> Result<Ranges> {
    let texts: Vec<&str> = cal
        .texts
        .iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .collect();
    if texts.is_empty() {
        return Err(OnnxError::Quantize(
            "the calibration data has no text lines".into(),
        ));
    }
    if let CalibrationMethod::Percentile(p) = cal.method
        && !(50.0..=100.0).contains(&p)
    {
        return Err(OnnxError::Quantize(format!(
            "percentile {p} must be between 50 and 100"
        )));
    }
    let mut model = OnnxModel::open(model_path)?;
    model.inline_external_data()?;
    let g = model.graph_mut()?;
    for t in targets {
        if !g.output.iter().any(|o| o.name() == t) {
            g.output.push(ValueInfoProto {
                name: Some(t.clone()),
                r#type: Some(TypeProto {
                    value: Some(TypeValue::TensorType(TensorType {
                        elem_type: Some(DataType::Float as i32),
                        shape: None,
                    })),
                    denotation: None,
                }),
                ..Default::default()
            });
        }
    }
    let dir = tempfile::tempdir().map_err(|e| OnnxError::io(std::env::temp_dir(), e))?;
    let augmented = dir.path().join("calibration.onnx");
    model.save(&augmented, &SaveOptions::default())?;
    let mut session = SessionConfig {
        threads: 0,
        level: OptLevel::Disable,
    }
    .open(&augmented)?;
    let tok_path = match &cal.tokenizer {
        Some(p) => p.clone(),
        None => find_tokenizer(model_path)?,
    };
    let mut tokenizer =
        tokenizers::Tokenizer::from_file(&tok_path).map_err(|e| OnnxError::Config {
            path: tok_path.clone(),
            reason: format!("cannot load the tokenizer: {e}"),
        })?;
    tokenizer.with_padding(None);
    let keep = matches!(cal.method, CalibrationMethod::Percentile(_));
    let mut stats: HashMap<&str, Stats> = targets
        .iter()
        .map(|t| (t.as_str(), Stats::default()))
        .collect();
    for text in texts {
        let enc = tokenizer
            .encode(text, true)
            .map_err(|e| OnnxError::Quantize(format!("cannot tokenize calibration text: {e}")))?;
        let inputs = single_inputs(&session, enc.get_ids())?;
        let outputs = session
            .run(inputs)
            .map_err(|e| OnnxError::runtime("running calibration", e))?;
        for t in targets {
            let (_, vals) = outputs[t.as_str()]
                .try_extract_tensor::<f32>()
                .map_err(|e| OnnxError::runtime(format!("reading calibration tensor {t}"), e))?;
            stats
                .get_mut(t.as_str())
                .expect("every target has stats")
                .add(vals, keep);
        }
    }
    Ok(stats
        .into_iter()
        .filter_map(|(t, s)| Some((t.to_string(), s.range(cal.method)?)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_ignores_a_rare_outlier() {
        let mut s = Stats::default();
        let mut vals: Vec<f32> = (0..100_000)
            .map(|i| (i % 200) as f32 / 100.0 - 1.0)
            .collect();
        vals[5] = 1000.0;
        s.add(&vals, true);
        let (lo, hi) = s.range(CalibrationMethod::Percentile(99.9)).unwrap();
        assert!(lo >= -1.0 && hi < 1.0, "{lo} {hi}");
        let mut m = Stats::default();
        m.add(&vals, false);
        assert_eq!(m.range(CalibrationMethod::MinMax), Some((-1.0, 1000.0)));
    }
}
