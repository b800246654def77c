//! Importance-matrix files, in llama.cpp's formats, so `perch imatrix` and `llama-imatrix`
//! files serve both tools' quantizers.
//!
//! * **GGUF** (what `llama-imatrix` writes today, and what perch writes): `general.type =
//!   "imatrix"`, `imatrix.datasets` (array of strings), `imatrix.chunk_count` and
//!   `imatrix.chunk_size` (u32); per weight tensor `W`, an F32 tensor `W.in_sum2` of shape
//!   `[n_cols, n_mat]` with the raw sums of `x²` per input column, and an F32 tensor `W.counts`
//!   of shape `[1, n_mat]` with the number of activation rows summed (`n_mat` is the number of
//!   experts, 1 for a dense matrix).
//! * **legacy** (`.dat`, read only): `i32 n_entries`, then per entry `i32 len, name, i32 ncall,
//!   i32 nval, f32 × nval` where the values are already `mean(x²) · ncall`; then optionally
//!   `i32 chunk_count, i32 len, dataset`.
//!
//! Either way the importance of column `j` of matrix `m` is `sums[m][j] / counts[m]` (all ones
//! when a matrix was never reached), as `llama-quantize` computes it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use perch_gguf::{GgufBuilder, GgufFile, Value};
use perch_quant::GgmlType;

/// Metadata key: the calibration texts.
pub const KEY_DATASETS: &str = "imatrix.datasets";
/// Metadata key: chunks processed.
pub const KEY_CHUNK_COUNT: &str = "imatrix.chunk_count";
/// Metadata key: tokens per chunk.
pub const KEY_CHUNK_SIZE: &str = "imatrix.chunk_size";

/// Why an importance-matrix file could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImatrixError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The system's error.
        source: std::io::Error,
    },
    /// The file is not an importance matrix or is damaged.
    #[error("{path}: not a usable importance matrix: {why}")]
    Bad {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// Writing failed.
    #[error(transparent)]
    Gguf(#[from] perch_gguf::GgufError),
}

/// One weight tensor's statistics.
#[derive(Clone, Debug, PartialEq)]
pub struct ImatrixData {
    /// Sums of `x²`: `n_mat` runs of `n_cols` values.
    pub sums: Vec<f32>,
    /// Activation rows summed, per matrix.
    pub counts: Vec<u64>,
}

impl ImatrixData {
    /// Input columns per matrix.
    pub fn n_cols(&self) -> usize {
        self.sums.len() / self.counts.len().max(1)
    }

    /// The importance weights, `n_mat` runs of `n_cols`: `sums / count`, all ones for a
    /// matrix that was never reached (llama-quantize's normalization).
    pub fn importance(&self) -> Vec<f32> {
        let n = self.n_cols();
        let mut out = Vec::with_capacity(self.sums.len());
        for (m, &c) in self.counts.iter().enumerate() {
            let s = &self.sums[m * n..(m + 1) * n];
            if c > 0 {
                let c = c as f32;
                out.extend(s.iter().map(|v| v / c));
            } else {
                out.extend(std::iter::repeat_n(1.0, n));
            }
        }
        out
    }
}

/// An importance matrix: statistics per weight tensor and where they came from.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Imatrix {
    /// Per weight tensor name (`blk.0.attn_q.weight`, ...).
    pub entries: BTreeMap<String, ImatrixData>,
    /// The calibration texts it was computed on.
    pub datasets: Vec<String>,
    /// Chunks processed.
    pub chunk_count: u32,
    /// Tokens per chunk (0 when unknown, as in legacy files).
    pub chunk_size: u32,
}

impl Imatrix {
    /// Reads a GGUF or legacy importance-matrix file.
    pub fn read(path: &Path) -> Result<Imatrix, ImatrixError> {
        let bytes = std::fs::read(path).map_err(|source| ImatrixError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        if bytes.starts_with(b"GGUF") {
            let file = GgufFile::open(path).map_err(|e| ImatrixError::Bad {
                path: path.to_path_buf(),
                why: e.to_string(),
            })?;
            Self::from_gguf(&file).map_err(|why| ImatrixError::Bad {
                path: path.to_path_buf(),
                why,
            })
        } else {
            Self::from_legacy(&bytes).map_err(|why| ImatrixError::Bad {
                path: path.to_path_buf(),
                why,
            })
        }
    }

    /// Reads the GGUF form.
    pub fn from_gguf(file: &GgufFile) -> Result<Imatrix, String> {
        let md = file.metadata();
        if let Ok(Some(t)) = md.opt_str("general.type")
            && t != "imatrix"
        {
            return Err(format!("general.type is {t:?}, not \"imatrix\""));
        }
        let has = |k: &str| md.contains(k);
        if !(has(KEY_DATASETS) && has(KEY_CHUNK_COUNT) && has(KEY_CHUNK_SIZE)) {
            return Err(format!(
                "missing metadata ({KEY_DATASETS}, {KEY_CHUNK_COUNT}, {KEY_CHUNK_SIZE})"
            ));
        }
        let datasets = md
            .get_str_array(KEY_DATASETS)
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(str::to_string)
            .collect();
        let u32_of = |k: &str| md.get_u32(k).map_err(|e| e.to_string());
        let (chunk_count, chunk_size) = (u32_of(KEY_CHUNK_COUNT)?, u32_of(KEY_CHUNK_SIZE)?);
        let mut pairs: BTreeMap<String, (Option<usize>, Option<usize>)> = BTreeMap::new();
        for (i, t) in file.tensors().iter().enumerate() {
            if let Some(n) = t.name.strip_suffix(".in_sum2") {
                pairs.entry(n.to_string()).or_default().0 = Some(i);
            } else if let Some(n) = t.name.strip_suffix(".counts") {
                pairs.entry(n.to_string()).or_default().1 = Some(i);
            }
        }
        if pairs.is_empty() {
            return Err("no .in_sum2 / .counts tensors".into());
        }
        let mut entries = BTreeMap::new();
        for (name, (s, c)) in pairs {
            let (Some(s), Some(c)) = (s, c) else {
                return Err(format!("{name}: sums and counts do not come in pairs"));
            };
            let (ts, tc) = (&file.tensors()[s], &file.tensors()[c]);
            if ts.ty != GgmlType::F32 || tc.ty != GgmlType::F32 {
                return Err(format!("{name}: sums and counts must be F32"));
            }
            let sums = f32s(
                file.require_tensor(&ts.name)
                    .map_err(|e| e.to_string())?
                    .data,
            );
            let counts: Vec<u64> = f32s(
                file.require_tensor(&tc.name)
                    .map_err(|e| e.to_string())?
                    .data,
            )
            .into_iter()
            .map(|v| v.round().max(0.0) as u64)
            .collect();
            if counts.is_empty() || sums.len() % counts.len() != 0 {
                return Err(format!(
                    "{name}: {} sums do not divide among {} matrices",
                    sums.len(),
                    counts.len()
                ));
            }
            entries.insert(name, ImatrixData { sums, counts });
        }
        Ok(Imatrix {
            entries,
            datasets,
            chunk_count,
            chunk_size,
        })
    }

    /// Reads the legacy binary form.
    pub fn from_legacy(bytes: &[u8]) -> Result<Imatrix, String> {
        let mut r = Cursor { b: bytes, at: 0 };
        let n = r.i32()?;
        if n < 1 {
            return Err("no entries (neither a GGUF nor a legacy imatrix file)".into());
        }
        let mut entries = BTreeMap::new();
        for i in 0..n {
            let len = r.i32()?;
            if !(1..=4096).contains(&len) {
                return Err(format!("entry {i}: bad name length {len}"));
            }
            let name = String::from_utf8(r.take(len as usize)?.to_vec())
                .map_err(|_| format!("entry {i}: the name is not UTF-8"))?;
            let ncall = r.i32()?;
            let nval = r.i32()?;
            if nval < 1 || ncall < 0 {
                return Err(format!(
                    "{name}: bad value count {nval} or call count {ncall}"
                ));
            }
            let sums = f32s(r.take(nval as usize * 4)?);
            entries.insert(
                name,
                ImatrixData {
                    sums,
                    counts: vec![ncall as u64],
                },
            );
        }
        let mut m = Imatrix {
            entries,
            ..Imatrix::default()
        };
        if r.at < bytes.len() {
            m.chunk_count = r.i32()?.max(0) as u32;
            if r.at < bytes.len() {
                let len = r.i32()?;
                if len > 0 {
                    m.datasets
                        .push(String::from_utf8_lossy(r.take(len as usize)?).into_owned());
                }
            }
        }
        Ok(m)
    }

    /// Writes the GGUF form to `path` (through a temporary file and a rename).
    pub fn write(&self, path: &Path) -> Result<(), ImatrixError> {
        let mut b = GgufBuilder::new()
            .kv("general.type", "imatrix")
            .kv(KEY_DATASETS, self.datasets.clone())
            .kv(KEY_CHUNK_COUNT, Value::U32(self.chunk_count))
            .kv(KEY_CHUNK_SIZE, Value::U32(self.chunk_size));
        for (name, e) in &self.entries {
            let n_mat = e.counts.len() as u64;
            let counts: Vec<f32> = e.counts.iter().map(|&c| c as f32).collect();
            // Shapes as ggml writes them: trailing dimensions of 1 dropped.
            let dims = |d: Vec<u64>| -> Vec<u64> {
                let n = d.iter().rposition(|&x| x != 1).map_or(1, |i| i + 1);
                d[..n].to_vec()
            };
            b = b
                .tensor_f32(
                    format!("{name}.in_sum2"),
                    dims(vec![e.n_cols() as u64, n_mat]),
                    &e.sums,
                )?
                .tensor_f32(format!("{name}.counts"), dims(vec![1, n_mat]), &counts)?;
        }
        b.write(path)?;
        Ok(())
    }

    /// The importance weights of tensor `name` (see [`ImatrixData::importance`]).
    pub fn importance(&self, name: &str) -> Option<Vec<f32>> {
        self.entries.get(name).map(ImatrixData::importance)
    }
}

fn f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.b.len());
        let Some(end) = end else {
            return Err(format!("truncated at byte {}", self.at));
        };
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn i32(&mut self) -> Result<i32, String> {
        let s = self.take(4)?;
        Ok(i32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Imatrix {
        let mut entries = BTreeMap::new();
        entries.insert(
            "blk.0.attn_q.weight".to_string(),
            ImatrixData {
                sums: vec![4.0, 8.0, 12.0, 16.0],
                counts: vec![4],
            },
        );
        entries.insert(
            "blk.0.ffn_down_exps.weight".to_string(),
            ImatrixData {
                sums: vec![2.0, 4.0, 0.0, 0.0],
                counts: vec![2, 0],
            },
        );
        Imatrix {
            entries,
            datasets: vec!["GPL-3".into()],
            chunk_count: 3,
            chunk_size: 512,
        }
    }

    #[test]
    fn gguf_round_trip_and_normalization() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.imatrix.gguf");
        let m = sample();
        m.write(&p).unwrap();
        let back = Imatrix::read(&p).unwrap();
        assert_eq!(back, m);
        assert_eq!(
            back.importance("blk.0.attn_q.weight").unwrap(),
            vec![1.0, 2.0, 3.0, 4.0]
        );
        // An expert never reached gets unit weights.
        assert_eq!(
            back.importance("blk.0.ffn_down_exps.weight").unwrap(),
            vec![1.0, 2.0, 1.0, 1.0]
        );
    }

    #[test]
    fn legacy_files_read() {
        let mut b = Vec::new();
        b.extend(1i32.to_le_bytes());
        let name = b"blk.0.attn_k.weight";
        b.extend((name.len() as i32).to_le_bytes());
        b.extend(name);
        b.extend(10i32.to_le_bytes());
        b.extend(2i32.to_le_bytes());
        b.extend(5.0f32.to_le_bytes());
        b.extend(20.0f32.to_le_bytes());
        b.extend(10i32.to_le_bytes());
        b.extend(5i32.to_le_bytes());
        b.extend(b"wiki!");
        let m = Imatrix::from_legacy(&b).unwrap();
        assert_eq!(m.chunk_count, 10);
        assert_eq!(m.datasets, vec!["wiki!".to_string()]);
        assert_eq!(m.importance("blk.0.attn_k.weight").unwrap(), vec![0.5, 2.0]);
        let err = Imatrix::from_legacy(&b[..20]).unwrap_err();
        assert!(err.contains("truncated"), "{err}");
    }

    #[test]
    fn other_files_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("model.gguf");
        GgufBuilder::new()
            .kv("general.architecture", "llama")
            .tensor_f32("x.weight", vec![2], &[1.0, 2.0])
            .unwrap()
            .write(&p)
            .unwrap();
        let err = Imatrix::read(&p).unwrap_err().to_string();
        assert!(
            err.contains("model.gguf") && err.contains("missing metadata"),
            "{err}"
        );
        let junk = dir.path().join("junk.dat");
        std::fs::write(&junk, [0u8; 3]).unwrap();
        let err = Imatrix::read(&junk).unwrap_err().to_string();
        assert!(
            err.contains("junk.dat") && err.contains("truncated"),
            "{err}"
        );
    }
}
