//! The tensors of a Hugging Face folder: one `model.safetensors`, or the shards named by
//! `model.safetensors.index.json`, each memory-mapped and parsed by the `safetensors` crate.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};

use crate::error::{ConvertError, Result};

/// Where a tensor lives and what it is.
#[derive(Clone, Debug)]
pub struct TensorMeta {
    /// Shard index.
    shard: usize,
    /// Element type.
    pub dtype: Dtype,
    /// Shape, outermost first (PyTorch order).
    pub shape: Vec<usize>,
}

/// Every tensor of a model folder, by name.
pub struct Tensors {
    shards: Vec<(PathBuf, Mmap)>,
    /// Name → metadata, sorted by name.
    pub index: BTreeMap<String, TensorMeta>,
}

impl std::fmt::Debug for Tensors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tensors")
            .field("shards", &self.shards.len())
            .field("tensors", &self.index.len())
            .finish()
    }
}

fn bad(path: &Path, why: impl std::fmt::Display) -> ConvertError {
    ConvertError::BadInput(format!("{}: {why}", path.display()))
}

impl Tensors {
    /// Open the safetensors of `dir`: `model.safetensors.index.json`'s shards when it exists,
    /// else `model.safetensors`, else every `*.safetensors` in the folder.
    pub fn open(dir: &Path) -> Result<Tensors> {
        let index_path = dir.join("model.safetensors.index.json");
        let files: Vec<PathBuf> = if index_path.is_file() {
            let text = std::fs::read_to_string(&index_path).map_err(|e| bad(&index_path, e))?;
            let v: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| bad(&index_path, e))?;
            let map = v["weight_map"]
                .as_object()
                .ok_or_else(|| bad(&index_path, "no `weight_map` object"))?;
            let mut names: Vec<String> = map
                .values()
                .map(|f| {
                    f.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| bad(&index_path, "a `weight_map` value is not a file name"))
                })
                .collect::<Result<_>>()?;
            names.sort();
            names.dedup();
            for n in &names {
                if n.contains('/') || n.contains('\\') || n.starts_with('.') {
                    return Err(bad(
                        &index_path,
                        format!("shard name `{n}` is not a plain file name"),
                    ));
                }
            }
            names.into_iter().map(|n| dir.join(n)).collect()
        } else if dir.join("model.safetensors").is_file() {
            vec![dir.join("model.safetensors")]
        } else {
            let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
                .map_err(|e| bad(dir, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
                .collect();
            found.sort();
            if found.is_empty() {
                return Err(ConvertError::MissingFile {
                    path: dir.join("model.safetensors"),
                    why: "no model.safetensors, model.safetensors.index.json or *.safetensors in the folder".into(),
                });
            }
            found
        };
        let mut shards = Vec::new();
        let mut index = BTreeMap::new();
        for (si, path) in files.into_iter().enumerate() {
            let file = std::fs::File::open(&path).map_err(|e| ConvertError::MissingFile {
                path: path.clone(),
                why: e.to_string(),
            })?;
            // SAFETY: the map is read-only; the file is an input we do not modify. A file
            // truncated by another process while we read it could fault, as with any mmap
            // reader (perch-gguf's GgufFile accepts the same risk).
            let map = unsafe { Mmap::map(&file) }.map_err(|e| bad(&path, e))?;
            let st = SafeTensors::deserialize(&map).map_err(|e| bad(&path, e))?;
            for (name, view) in st.tensors() {
                let meta = TensorMeta {
                    shard: si,
                    dtype: view.dtype(),
                    shape: view.shape().to_vec(),
                };
                if index.insert(name.clone(), meta).is_some() {
                    return Err(bad(
                        &path,
                        format!("tensor `{name}` is in more than one shard"),
                    ));
                }
            }
            shards.push((path, map));
        }
        Ok(Tensors { shards, index })
    }

    /// The tensor `name` as f32 values (F32, F16 and BF16 are read; other types are an error).
    pub fn f32(&self, name: &str) -> Result<Vec<f32>> {
        let meta = self
            .index
            .get(name)
            .ok_or_else(|| ConvertError::MissingTensor(name.to_string()))?;
        let (path, map) = &self.shards[meta.shard];
        let st = SafeTensors::deserialize(map).map_err(|e| bad(path, e))?;
        let view = st.tensor(name).map_err(|e| bad(path, e))?;
        let data = view.data();
        Ok(match view.dtype() {
            Dtype::F32 => data
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Dtype::F16 => data
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Dtype::BF16 => data
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            other => {
                return Err(ConvertError::BadInput(format!(
                    "tensor `{name}` in {} is {other:?}; perch converts F32, F16 and BF16 weights",
                    path.display()
                )));
            }
        })
    }

    /// Number of elements of every tensor by name (for progress totals).
    pub fn shapes(&self) -> HashMap<&str, &[usize]> {
        self.index
            .iter()
            .map(|(k, v)| (k.as_str(), v.shape.as_slice()))
            .collect()
    }
}
