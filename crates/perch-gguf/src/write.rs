//! Writing GGUF files: a streaming [`GgufWriter`] for big files and a [`GgufBuilder`] for
//! small ones made in memory.
//!
//! Layout is what llama.cpp's `gguf_write_to_file` and gguf-py's `GGUFWriter` produce: header,
//! metadata, tensor infos, zero padding to the alignment, then each tensor's bytes followed by
//! zero padding to the alignment (after the last tensor too). Tensor offsets are assigned in
//! declaration order, so a file written by either of those tools comes back byte-identical
//! when read and written again.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use perch_quant::GgmlType;

use crate::error::{GgufError, Result, Section};
use crate::file::GgufFile;
use crate::metadata::Metadata;
use crate::read::MAGIC;
use crate::tensor::{MAX_DIMS, TensorInfo, shape_size};
use crate::value::{Array, Value};
use crate::{
    DEFAULT_ALIGNMENT, KEY_ALIGNMENT, MAX_ARRAY_LEN, MAX_KEY_LEN, MAX_NESTING_DEPTH,
    MAX_STRING_LEN, MAX_TENSOR_NAME_LEN,
};

/// The version written unless another is asked for.
pub const DEFAULT_VERSION: u32 = 3;

/// Checks the metadata and tensors and lays the tensors out: returns the alignment and the
/// tensor infos with their offsets and sizes (recomputed from name, type and dims).
fn plan(
    version: u32,
    metadata: &Metadata,
    tensors: impl IntoIterator<Item = TensorInfo>,
) -> Result<(u64, Vec<TensorInfo>)> {
    if version != 2 && version != 3 {
        return Err(GgufError::WriteVersion(version));
    }
    for (i, (key, value)) in metadata.entries().iter().enumerate() {
        if key.is_empty() {
            return Err(GgufError::EmptyKey { index: i as u64 });
        }
        check_len(
            Section::Metadata,
            || format!("metadata key '{key}'"),
            key.len(),
            MAX_KEY_LEN,
        )?;
        check_value(key, value, 0)?;
    }
    let alignment = match metadata.get(KEY_ALIGNMENT) {
        None => DEFAULT_ALIGNMENT,
        Some(Value::U32(a)) if a.is_power_of_two() => u64::from(*a),
        Some(Value::U32(a)) => {
            return Err(GgufError::BadAlignment {
                alignment: u64::from(*a),
            });
        }
        Some(v) => {
            return Err(GgufError::AlignmentType {
                found: v.type_description(),
            });
        }
    };
    let mut names = std::collections::HashSet::new();
    let mut offset = 0u64;
    let mut out = Vec::new();
    for mut t in tensors {
        check_len(
            Section::TensorInfo,
            || format!("tensor name '{}'", t.name),
            t.name.len(),
            MAX_TENSOR_NAME_LEN,
        )?;
        if !names.insert(t.name.clone()) {
            return Err(GgufError::DuplicateTensor { name: t.name });
        }
        if t.dims.len() > MAX_DIMS {
            return Err(GgufError::TooManyDims {
                tensor: t.name,
                n_dims: t.dims.len() as u32,
            });
        }
        (t.n_elements, t.n_bytes) = shape_size(&t.name, t.ty, &t.dims)?;
        t.offset = offset;
        offset = t
            .n_bytes
            .checked_next_multiple_of(alignment)
            .and_then(|n| offset.checked_add(n))
            .filter(|&end| end <= i64::MAX as u64)
            .ok_or_else(|| GgufError::ShapeOverflow {
                tensor: t.name.clone(),
                dims: t.dims.clone(),
            })?;
        out.push(t);
    }
    Ok((alignment, out))
}

/// A string no longer than `max`; `what` names it in the error.
fn check_len(section: Section, what: impl FnOnce() -> String, len: usize, max: u64) -> Result<()> {
    if len as u64 > max {
        return Err(GgufError::StringTooLong {
            section,
            what: what(),
            len: len as u64,
            max,
        });
    }
    Ok(())
}

fn check_value(key: &str, v: &Value, depth: usize) -> Result<()> {
    match v {
        Value::String(s) => check_len(
            Section::Metadata,
            || format!("the value of '{key}'"),
            s.len(),
            MAX_STRING_LEN,
        ),
        Value::Array(a) => check_array(key, a, depth + 1),
        _ => Ok(()),
    }
}

fn check_array(key: &str, a: &Array, depth: usize) -> Result<()> {
    if depth > MAX_NESTING_DEPTH {
        return Err(GgufError::NestingTooDeep {
            key: key.to_string(),
            max: MAX_NESTING_DEPTH,
        });
    }
    if a.len() as u64 > MAX_ARRAY_LEN {
        return Err(GgufError::ArrayTooLong {
            key: key.to_string(),
            elem: a.elem_type(),
            len: a.len() as u64,
            max: MAX_ARRAY_LEN,
        });
    }
    match a {
        Array::String(v) => v.iter().try_for_each(|s| {
            check_len(
                Section::Metadata,
                || format!("the value of '{key}'"),
                s.len(),
                MAX_STRING_LEN,
            )
        }),
        Array::Array(v) => v.iter().try_for_each(|a| check_array(key, a, depth + 1)),
        _ => Ok(()),
    }
}

/// How the part before the data section is written.
#[derive(Clone, Copy)]
struct HeadOptions {
    /// Format version, 2 or 3.
    version: u32,
    /// Pad the end of the tensor infos to the alignment even when there are no tensors.
    /// llama.cpp and gguf-py do today; some older vocab-only files stop unpadded, and
    /// rewriting those must not add padding.
    pad_without_tensors: bool,
}

impl HeadOptions {
    fn version(version: u32) -> Self {
        HeadOptions {
            version,
            pad_without_tensors: true,
        }
    }
}

/// Writes everything up to the data section; returns the bytes written.
fn write_head<W: Write>(
    w: &mut W,
    opts: HeadOptions,
    metadata: &Metadata,
    tensors: &[TensorInfo],
    alignment: u64,
) -> std::io::Result<u64> {
    let version = opts.version;
    let mut c = Counting { w, n: 0 };
    c.put(&MAGIC)?;
    c.put(&version.to_le_bytes())?;
    c.put(&(tensors.len() as u64).to_le_bytes())?;
    c.put(&(metadata.len() as u64).to_le_bytes())?;
    for (key, value) in metadata.entries() {
        c.string(key.as_bytes())?;
        c.put(&value.value_type().id().to_le_bytes())?;
        c.value(value)?;
    }
    for t in tensors {
        c.string(t.name.as_bytes())?;
        c.put(&(t.dims.len() as u32).to_le_bytes())?;
        for d in &t.dims {
            c.put(&d.to_le_bytes())?;
        }
        c.put(&t.ty.id().to_le_bytes())?;
        c.put(&t.offset.to_le_bytes())?;
    }
    if !tensors.is_empty() || opts.pad_without_tensors {
        c.pad(alignment)?;
    }
    Ok(c.n)
}

/// A writer that counts bytes.
struct Counting<'w, W: Write> {
    w: &'w mut W,
    n: u64,
}

impl<W: Write> Counting<'_, W> {
    fn put(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.w.write_all(b)?;
        self.n += b.len() as u64;
        Ok(())
    }

    fn string(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.put(&(b.len() as u64).to_le_bytes())?;
        self.put(b)
    }

    fn pad(&mut self, alignment: u64) -> std::io::Result<()> {
        let n = self.n.next_multiple_of(alignment) - self.n;
        self.put(&vec![0u8; n as usize])
    }

    fn scalars<T, const N: usize>(&mut self, v: &[T], f: fn(&T) -> [u8; N]) -> std::io::Result<()> {
        let mut buf = Vec::with_capacity(v.len() * N);
        for x in v {
            buf.extend_from_slice(&f(x));
        }
        self.put(&buf)
    }

    fn value(&mut self, v: &Value) -> std::io::Result<()> {
        match v {
            Value::U8(x) => self.put(&x.to_le_bytes()),
            Value::I8(x) => self.put(&x.to_le_bytes()),
            Value::U16(x) => self.put(&x.to_le_bytes()),
            Value::I16(x) => self.put(&x.to_le_bytes()),
            Value::U32(x) => self.put(&x.to_le_bytes()),
            Value::I32(x) => self.put(&x.to_le_bytes()),
            Value::F32(x) => self.put(&x.to_le_bytes()),
            Value::Bool(x) => self.put(&[u8::from(*x)]),
            Value::String(s) => self.string(s.as_bytes()),
            Value::Array(a) => self.array(a),
            Value::U64(x) => self.put(&x.to_le_bytes()),
            Value::I64(x) => self.put(&x.to_le_bytes()),
            Value::F64(x) => self.put(&x.to_le_bytes()),
        }
    }

    fn array(&mut self, a: &Array) -> std::io::Result<()> {
        self.put(&a.elem_type().id().to_le_bytes())?;
        self.put(&(a.len() as u64).to_le_bytes())?;
        match a {
            Array::U8(v) => self.put(v),
            Array::I8(v) => self.scalars(v, |x| x.to_le_bytes()),
            Array::U16(v) => self.scalars(v, |x| x.to_le_bytes()),
            Array::I16(v) => self.scalars(v, |x| x.to_le_bytes()),
            Array::U32(v) => self.scalars(v, |x| x.to_le_bytes()),
            Array::I32(v) => self.scalars(v, |x| x.to_le_bytes()),
            Array::F32(v) => self.scalars(v, |x| x.to_le_bytes()),
            Array::Bool(v) => self.scalars(v, |x| [u8::from(*x)]),
            Array::String(v) => v.iter().try_for_each(|s| self.string(s.as_bytes())),
            Array::Array(v) => v.iter().try_for_each(|a| self.array(a)),
            Array::U64(v) => self.scalars(v, |x| x.to_le_bytes()),
            Array::I64(v) => self.scalars(v, |x| x.to_le_bytes()),
            Array::F64(v) => self.scalars(v, |x| x.to_le_bytes()),
        }
    }
}

/// The data-section half of a writer: takes tensor bytes in declaration order and pads.
struct Body<W: Write> {
    out: W,
    /// The file being written, for I/O errors.
    path: PathBuf,
    alignment: u64,
    tensors: Vec<TensorInfo>,
    /// Index of the tensor being written.
    next: usize,
    /// Bytes of that tensor written so far.
    done: u64,
}

impl<W: Write> Body<W> {
    fn new(
        mut out: W,
        path: PathBuf,
        opts: HeadOptions,
        metadata: &Metadata,
        tensors: impl IntoIterator<Item = TensorInfo>,
    ) -> Result<(Self, u64)> {
        let (alignment, tensors) = plan(opts.version, metadata, tensors)?;
        let head = write_head(&mut out, opts, metadata, &tensors, alignment);
        let head = head.map_err(|e| io_err(path.clone(), e))?;
        let mut body = Body {
            out,
            path,
            alignment,
            tensors,
            next: 0,
            done: 0,
        };
        body.skip_empty();
        Ok((body, head))
    }

    /// Moves past tensors with no bytes (nothing to write, no padding needed).
    fn skip_empty(&mut self) {
        while self.next < self.tensors.len() && self.tensors[self.next].n_bytes == 0 {
            self.next += 1;
        }
    }

    fn current(&self) -> Option<&TensorInfo> {
        self.tensors.get(self.next)
    }

    fn chunk(&mut self, data: &[u8]) -> Result<()> {
        let Some(t) = self.tensors.get(self.next) else {
            return Err(GgufError::WriteOrder(format!(
                "{} bytes of data given after the last tensor",
                data.len()
            )));
        };
        if self.done + data.len() as u64 > t.n_bytes {
            return Err(GgufError::DataSize {
                tensor: t.name.clone(),
                expected: t.n_bytes,
                got: self.done + data.len() as u64,
            });
        }
        let n_bytes = t.n_bytes;
        let io = |e| io_err(self.path.clone(), e);
        self.out.write_all(data).map_err(io)?;
        self.done += data.len() as u64;
        if self.done == n_bytes {
            let pad = n_bytes.next_multiple_of(self.alignment) - n_bytes;
            self.out.write_all(&vec![0u8; pad as usize]).map_err(io)?;
            self.next += 1;
            self.done = 0;
            self.skip_empty();
        }
        Ok(())
    }

    fn whole(&mut self, name: &str, data: &[u8]) -> Result<()> {
        let declared_empty = || {
            self.tensors
                .iter()
                .any(|t| t.name == name && t.n_bytes == 0)
        };
        if data.is_empty() && declared_empty() {
            // A zero-byte tensor has nothing to write, wherever it is in the order.
            return Ok(());
        }
        match self.current() {
            Some(t) if t.name == name && self.done == 0 => {
                if data.len() as u64 != t.n_bytes {
                    return Err(GgufError::DataSize {
                        tensor: name.to_string(),
                        expected: t.n_bytes,
                        got: data.len() as u64,
                    });
                }
            }
            _ if declared_empty() => {
                return Err(GgufError::DataSize {
                    tensor: name.to_string(),
                    expected: 0,
                    got: data.len() as u64,
                });
            }
            Some(t) => {
                return Err(GgufError::WriteOrder(format!(
                    "data for tensor '{name}' given while tensor '{}' is expected next",
                    t.name
                )));
            }
            None => {
                return Err(GgufError::WriteOrder(format!(
                    "data for tensor '{name}' given after every tensor was written"
                )));
            }
        }
        self.chunk(data)
    }

    fn check_complete(&self) -> Result<()> {
        match self.current() {
            None => Ok(()),
            Some(t) => Err(GgufError::WriteOrder(format!(
                "finished before all tensor data was written: tensor '{}' has {} of {} bytes, {} tensors to go",
                t.name,
                self.done,
                t.n_bytes,
                self.tensors.len() - self.next
            ))),
        }
    }
}

fn io_err(path: PathBuf, source: std::io::Error) -> GgufError {
    GgufError::Io { path, source }
}

/// Streams a GGUF file to disk: metadata and tensor infos first, then each tensor's bytes in
/// declaration order, so a multi-gigabyte output never sits in memory.
///
/// It writes to a temporary file in the target's folder and renames it over the target in
/// [`GgufWriter::finish`]; dropping the writer before that removes the temporary file, so a
/// failed run never leaves a half-written model behind.
///
/// ```no_run
/// # use perch_gguf::{GgufWriter, Metadata, TensorInfo};
/// # use perch_quant::GgmlType;
/// # fn main() -> perch_gguf::Result<()> {
/// let mut md = Metadata::default();
/// md.set("general.architecture", "llama");
/// let tensors = vec![TensorInfo::new("w", GgmlType::F32, vec![4])?];
/// let mut w = GgufWriter::create("out.gguf", &md, tensors)?;
/// w.write_tensor("w", &[0u8; 16])?;
/// w.finish()?;
/// # Ok(()) }
/// ```
pub struct GgufWriter {
    body: Body<BufWriter<tempfile::NamedTempFile>>,
    path: PathBuf,
    head_len: u64,
}

impl GgufWriter {
    /// Starts writing a version 3 file at `path`; `tensors` are laid out in this order (their
    /// `offset`, `n_elements` and `n_bytes` are recomputed).
    pub fn create(
        path: impl AsRef<Path>,
        metadata: &Metadata,
        tensors: impl IntoIterator<Item = TensorInfo>,
    ) -> Result<GgufWriter> {
        Self::create_version(path, DEFAULT_VERSION, metadata, tensors)
    }

    /// Like [`Self::create`], writing format `version` (2 or 3; the layout is the same).
    pub fn create_version(
        path: impl AsRef<Path>,
        version: u32,
        metadata: &Metadata,
        tensors: impl IntoIterator<Item = TensorInfo>,
    ) -> Result<GgufWriter> {
        Self::create_with(path, HeadOptions::version(version), metadata, tensors)
    }

    fn create_with(
        path: impl AsRef<Path>,
        opts: HeadOptions,
        metadata: &Metadata,
        tensors: impl IntoIterator<Item = TensorInfo>,
    ) -> Result<GgufWriter> {
        let path = path.as_ref().to_path_buf();
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let tmp = tempfile::Builder::new()
            .prefix(".perch-")
            .suffix(".gguf.tmp")
            .tempfile_in(&dir)
            .map_err(|e| io_err(dir.clone(), e))?;
        let out = BufWriter::with_capacity(1 << 20, tmp);
        let (body, head_len) = Body::new(out, path.clone(), opts, metadata, tensors)?;
        Ok(GgufWriter {
            body,
            path,
            head_len,
        })
    }

    /// The tensor infos as laid out (with their offsets in the data section).
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.body.tensors
    }

    /// The tensor whose bytes are expected next, if any remain.
    pub fn next_tensor(&self) -> Option<&TensorInfo> {
        self.body.current()
    }

    /// Where the data section starts in the file.
    pub fn data_offset(&self) -> u64 {
        self.head_len
    }

    /// Writes all of tensor `name`'s bytes; it must be the next tensor in declaration order
    /// and `data` exactly its size.
    pub fn write_tensor(&mut self, name: &str, data: &[u8]) -> Result<()> {
        self.body.whole(name, data)
    }

    /// Writes the next `data.len()` bytes of the current tensor (for tensors produced in
    /// pieces). A chunk may not run past the end of the current tensor.
    pub fn write_tensor_chunk(&mut self, data: &[u8]) -> Result<()> {
        self.body.chunk(data)
    }

    /// Checks that every tensor was written, flushes, syncs and renames the temporary file
    /// over the target.
    pub fn finish(self) -> Result<()> {
        self.body.check_complete()?;
        let path = self.path;
        let io = |e| io_err(path.clone(), e);
        let tmp = self.body.out.into_inner().map_err(|e| io(e.into_error()))?;
        tmp.as_file().sync_all().map_err(io)?;
        tmp.persist(&path).map_err(|e| io(e.error))?;
        Ok(())
    }
}

/// Writes a whole file in memory: version, metadata and tensors given, bytes out.
fn encode(
    opts: HeadOptions,
    metadata: &Metadata,
    tensors: &[(TensorInfo, &[u8])],
) -> Result<Vec<u8>> {
    let infos = tensors.iter().map(|(t, _)| t.clone());
    let (mut body, _) = Body::new(Vec::new(), "<memory>".into(), opts, metadata, infos)?;
    for (t, data) in tensors {
        body.whole(&t.name, data)?;
    }
    body.check_complete()?;
    Ok(body.out)
}

/// Builds a small GGUF file in memory (tests, tiny random-weight models).
///
/// ```
/// # use perch_gguf::GgufBuilder;
/// # fn main() -> perch_gguf::Result<()> {
/// let file = GgufBuilder::new()
///     .kv("general.architecture", "llama")
///     .kv("llama.block_count", 2u32)
///     .tensor_f32("output_norm.weight", vec![4], &[1.0, 1.0, 1.0, 1.0])?
///     .build()?;
/// assert_eq!(file.get_u32("llama.block_count")?, 2);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct GgufBuilder {
    version: u32,
    metadata: Metadata,
    tensors: Vec<(TensorInfo, Vec<u8>)>,
}

impl Default for GgufBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl GgufBuilder {
    /// An empty version 3 file.
    pub fn new() -> Self {
        GgufBuilder {
            version: DEFAULT_VERSION,
            metadata: Metadata::default(),
            tensors: Vec::new(),
        }
    }

    /// Sets the format version written (2 or 3).
    pub fn version(mut self, version: u32) -> Self {
        self.version = version;
        self
    }

    /// Sets a metadata value (replacing it in place if the key is already set).
    pub fn kv(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.metadata.set(key, value);
        self
    }

    /// The metadata set so far.
    pub fn metadata_mut(&mut self) -> &mut Metadata {
        &mut self.metadata
    }

    /// Adds a tensor with its raw bytes, checked against its type and shape.
    pub fn tensor(
        mut self,
        name: impl Into<String>,
        ty: GgmlType,
        dims: impl Into<Vec<u64>>,
        data: Vec<u8>,
    ) -> Result<Self> {
        let info = TensorInfo::new(name, ty, dims)?;
        if data.len() as u64 != info.n_bytes {
            return Err(GgufError::DataSize {
                tensor: info.name,
                expected: info.n_bytes,
                got: data.len() as u64,
            });
        }
        self.tensors.push((info, data));
        Ok(self)
    }

    /// Adds an `F32` tensor.
    pub fn tensor_f32(
        self,
        name: impl Into<String>,
        dims: impl Into<Vec<u64>>,
        values: &[f32],
    ) -> Result<Self> {
        let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.tensor(name, GgmlType::F32, dims, data)
    }

    /// The file's bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let tensors: Vec<(TensorInfo, &[u8])> = self
            .tensors
            .iter()
            .map(|(t, d)| (t.clone(), d.as_slice()))
            .collect();
        encode(HeadOptions::version(self.version), &self.metadata, &tensors)
    }

    /// The file, opened from memory.
    pub fn build(&self) -> Result<GgufFile> {
        GgufFile::from_bytes(self.to_bytes()?)
    }

    /// Writes the file to `path` (through a temporary file and a rename).
    pub fn write(&self, path: impl AsRef<Path>) -> Result<()> {
        let infos = self.tensors.iter().map(|(t, _)| t.clone());
        let mut w = GgufWriter::create_version(path, self.version, &self.metadata, infos)?;
        for (t, data) in &self.tensors {
            w.write_tensor(&t.name, data)?;
        }
        w.finish()
    }
}

impl GgufFile {
    /// Writes this file's version, metadata and tensors to `path` with [`GgufWriter`]. For
    /// a file laid out as llama.cpp and gguf-py write them, the result is byte-identical.
    pub fn write_to(&self, path: impl AsRef<Path>) -> Result<()> {
        let mut w = GgufWriter::create_with(
            path,
            self.head_options(),
            self.metadata(),
            self.tensors().iter().cloned(),
        )?;
        for v in self.tensor_views() {
            w.write_tensor(v.name(), v.data)?;
        }
        w.finish()
    }

    /// This file re-encoded in memory (see [`Self::write_to`]).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let tensors: Vec<(TensorInfo, &[u8])> = self
            .tensor_views()
            .map(|v| (v.info.clone(), v.data))
            .collect();
        encode(self.head_options(), self.metadata(), &tensors)
    }

    /// The version, and whether a file without tensors was padded after its infos.
    fn head_options(&self) -> HeadOptions {
        HeadOptions {
            version: self.version(),
            pad_without_tensors: self.data_offset() % self.alignment() == 0,
        }
    }
}

/// The names in `dir`, sorted (tests check temporary files are cleaned up).
#[cfg(test)]
pub(crate) fn list_dir(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropping_an_unfinished_writer_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("m.gguf");
        let t = TensorInfo::new("w", GgmlType::F32, vec![8]).unwrap();
        let mut w = GgufWriter::create(&target, &Metadata::default(), vec![t]).unwrap();
        w.write_tensor_chunk(&[0u8; 16]).unwrap();
        assert_eq!(
            list_dir(dir.path()).len(),
            1,
            "temporary file exists while writing"
        );
        drop(w);
        assert!(list_dir(dir.path()).is_empty());
    }

    #[test]
    fn finish_checks_every_tensor_was_written() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("m.gguf");
        let ts = vec![
            TensorInfo::new("a", GgmlType::F32, vec![8]).unwrap(),
            TensorInfo::new("b", GgmlType::F32, vec![8]).unwrap(),
        ];
        let mut w = GgufWriter::create(&target, &Metadata::default(), ts).unwrap();
        assert!(matches!(
            w.write_tensor("b", &[0; 32]),
            Err(GgufError::WriteOrder(_))
        ));
        assert!(matches!(
            w.write_tensor("a", &[0; 31]),
            Err(GgufError::DataSize {
                expected: 32,
                got: 31,
                ..
            })
        ));
        w.write_tensor("a", &[1; 32]).unwrap();
        assert!(matches!(w.finish(), Err(GgufError::WriteOrder(_))));
        assert!(list_dir(dir.path()).is_empty());
    }

    #[test]
    fn chunks_stream_a_tensor_and_rename_happens_on_finish() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("m.gguf");
        let ts = vec![
            TensorInfo::new("a", GgmlType::F32, vec![3]).unwrap(),
            TensorInfo::new("empty", GgmlType::F32, vec![0]).unwrap(),
            TensorInfo::new("b", GgmlType::Q8_0, vec![32]).unwrap(),
        ];
        let mut md = Metadata::default();
        md.set("k", "v");
        let mut w = GgufWriter::create(&target, &md, ts).unwrap();
        assert_eq!(w.tensors()[1].offset, 32);
        assert_eq!(w.tensors()[2].offset, 32);
        w.write_tensor_chunk(&[1; 5]).unwrap();
        assert!(matches!(
            w.write_tensor_chunk(&[1; 8]),
            Err(GgufError::DataSize { .. })
        ));
        w.write_tensor_chunk(&[1; 7]).unwrap();
        assert_eq!(w.next_tensor().unwrap().name, "b");
        w.write_tensor("b", &[2; 34]).unwrap();
        assert!(w.next_tensor().is_none());
        assert!(!target.exists());
        w.finish().unwrap();
        let f = GgufFile::open(&target).unwrap();
        assert_eq!(f.tensor("a").unwrap().data, &[1; 12]);
        assert_eq!(f.tensor("empty").unwrap().data, &[] as &[u8]);
        assert_eq!(f.tensor("b").unwrap().data, &[2; 34]);
        assert_eq!(f.len(), f.data_offset() + 32 + 64);
        assert_eq!(list_dir(dir.path()), vec!["m.gguf".to_string()]);
    }
}
