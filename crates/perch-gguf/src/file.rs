//! [`GgufFile`]: an opened, validated GGUF file.

use std::collections::HashMap;
use std::path::Path;

use crate::error::{GgufError, Result};
use crate::metadata::Metadata;
use crate::read::parse;
use crate::storage::Storage;
use crate::tensor::{TensorInfo, TensorView};
use crate::value::{Array, GgufString, Value};

/// A GGUF file, fully validated when opened, its tensors views into the mapped bytes.
///
/// Opening checks everything listed in the crate docs; after that, no accessor can fail on the
/// file's structure (only on a missing key or a type mismatch) and no view can read out of
/// bounds.
pub struct GgufFile {
    storage: Storage,
    version: u32,
    metadata: Metadata,
    alignment: u64,
    data_offset: u64,
    tensors: Vec<TensorInfo>,
    by_name: HashMap<String, usize>,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("version", &self.version)
            .field("len", &self.len())
            .field("metadata", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

macro_rules! forward {
    ($($name:ident -> $t:ty;)*) => {
        $(
            #[doc = concat!("Shortcut for [`Metadata::", stringify!($name), "`].")]
            pub fn $name(&self, key: &str) -> Result<$t> {
                self.metadata.$name(key)
            }
        )*
    };
}

impl GgufFile {
    /// Maps and validates the file at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<GgufFile> {
        let storage = Storage::map(path.as_ref())?;
        Self::from_storage(storage)
    }

    /// Validates a file held in memory (tests, fuzzing, files built with
    /// [`crate::GgufBuilder`]). The bytes are moved into a 64-byte-aligned buffer so tensor
    /// data is aligned as in a mapped file.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<GgufFile> {
        Self::from_storage(Storage::owned(bytes))
    }

    fn from_storage(storage: Storage) -> Result<GgufFile> {
        let p = parse(storage.bytes())?;
        let by_name = p
            .tensors
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
        Ok(GgufFile {
            storage,
            version: p.version,
            metadata: p.metadata,
            alignment: p.alignment,
            data_offset: p.data_offset,
            tensors: p.tensors,
            by_name,
        })
    }

    /// The format version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The data alignment: `general.alignment`, or 32.
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Where the data section starts, from the start of the file.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// The file's length in bytes.
    pub fn len(&self) -> u64 {
        self.storage.bytes().len() as u64
    }

    /// Whether the file is empty (never true for a file that opened).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The whole file's bytes.
    pub fn bytes(&self) -> &[u8] {
        self.storage.bytes()
    }

    /// The metadata, in file order.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.get(key)
    }

    forward! {
        get_str -> &str;
        opt_str -> Option<&str>;
        get_bytes -> &[u8];
        opt_bytes -> Option<&[u8]>;
        get_u32 -> u32;
        opt_u32 -> Option<u32>;
        get_u64 -> u64;
        opt_u64 -> Option<u64>;
        get_usize -> usize;
        opt_usize -> Option<usize>;
        get_i32 -> i32;
        opt_i32 -> Option<i32>;
        get_i64 -> i64;
        opt_i64 -> Option<i64>;
        get_f32 -> f32;
        opt_f32 -> Option<f32>;
        get_bool -> bool;
        opt_bool -> Option<bool>;
        get_str_array -> Vec<&str>;
        opt_str_array -> Option<Vec<&str>>;
        get_string_array -> &[GgufString];
        opt_string_array -> Option<&[GgufString]>;
        get_array -> &Array;
        opt_array -> Option<&Array>;
        get_f32_array -> &[f32];
        opt_f32_array -> Option<&[f32]>;
        get_i32_array -> &[i32];
        opt_i32_array -> Option<&[i32]>;
        get_u32_array -> &[u32];
        opt_u32_array -> Option<&[u32]>;
    }

    /// The tensor infos, in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// The info of the tensor called `name`.
    pub fn tensor_info(&self, name: &str) -> Option<&TensorInfo> {
        self.by_name.get(name).map(|&i| &self.tensors[i])
    }

    /// The tensor called `name`: its info and its bytes, borrowed from the map.
    pub fn tensor(&self, name: &str) -> Option<TensorView<'_>> {
        self.tensor_info(name).map(|info| self.view(info))
    }

    /// Like [`Self::tensor`], with an error naming the missing tensor.
    pub fn require_tensor(&self, name: &str) -> Result<TensorView<'_>> {
        self.tensor(name)
            .ok_or_else(|| GgufError::MissingTensor(name.to_string()))
    }

    /// Every tensor as a view, in file order.
    pub fn tensor_views(&self) -> impl ExactSizeIterator<Item = TensorView<'_>> {
        self.tensors.iter().map(|info| self.view(info))
    }

    fn view<'a>(&'a self, info: &'a TensorInfo) -> TensorView<'a> {
        // In bounds: checked when the file was opened.
        let start = (self.data_offset + info.offset) as usize;
        TensorView {
            info,
            data: &self.storage.bytes()[start..start + info.n_bytes as usize],
        }
    }
}
