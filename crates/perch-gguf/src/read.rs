//! The parser: bytes in, validated header, metadata and tensor infos out.
//!
//! Every count and length is checked against the bytes that remain before anything is
//! allocated, so memory use is bounded by a small multiple of the file's size whatever the
//! file claims (see the crate docs for the limits).

use std::collections::HashSet;

use perch_quant::GgmlType;

use crate::error::{GgufError, Result, Section};
use crate::metadata::Metadata;
use crate::tensor::{MAX_DIMS, TensorInfo, shape_size};
use crate::value::{Array, GgufString, Value, ValueType};
use crate::{
    DEFAULT_ALIGNMENT, MAX_ARRAY_LEN, MAX_KEY_LEN, MAX_NESTING_DEPTH, MAX_STRING_LEN,
    MAX_TENSOR_NAME_LEN,
};

/// The four bytes every GGUF file starts with.
pub const MAGIC: [u8; 4] = *b"GGUF";

/// Smallest encoding of one metadata entry: key length, a 1-byte key, type, 1-byte value.
const MIN_KV_SIZE: u64 = 8 + 1 + 4 + 1;
/// Smallest encoding of one tensor info: name length, n_dims, type, offset.
const MIN_TENSOR_INFO_SIZE: u64 = 8 + 4 + 4 + 8;

/// What is being read, for error messages (turned into text only on error).
#[derive(Clone, Copy)]
enum What<'k> {
    Header(&'static str),
    Key(u64),
    Value(&'k str),
    TensorName(u64),
    TensorInfo(&'k str),
    DataPadding,
}

impl What<'_> {
    fn describe(self) -> String {
        match self {
            What::Header(field) => format!("the {field}"),
            What::Key(i) => format!("the key of metadata entry {i}"),
            What::Value(k) => format!("the value of '{k}'"),
            What::TensorName(i) => format!("the name of tensor {i}"),
            What::TensorInfo(n) => format!("the info of tensor '{n}'"),
            What::DataPadding => "the padding before the data section".into(),
        }
    }
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    section: Section,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> u64 {
        (self.buf.len() - self.pos) as u64
    }

    fn take(&mut self, n: u64, what: What<'_>) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(GgufError::Truncated {
                section: self.section,
                what: what.describe(),
                offset: self.pos as u64,
                end: self.pos as u64 + n,
                file_len: self.buf.len() as u64,
            });
        }
        let n = n as usize;
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: What<'_>) -> Result<[u8; N]> {
        let s = self.take(N as u64, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u32(&mut self, what: What<'_>) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: What<'_>) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A length-prefixed string, at most `max` bytes long.
    fn string(&mut self, what: What<'_>, max: u64) -> Result<&'a [u8]> {
        let len = self.u64(what)?;
        if len > max {
            return Err(GgufError::StringTooLong {
                section: self.section,
                what: what.describe(),
                len,
                max,
            });
        }
        if len > self.remaining() {
            return Err(GgufError::StringPastEnd {
                section: self.section,
                what: what.describe(),
                len,
                available: self.remaining(),
            });
        }
        self.take(len, what)
    }

    /// A key or tensor name: UTF-8 text.
    fn name(&mut self, what: What<'_>, max: u64) -> Result<String> {
        let b = self.string(what, max)?;
        match std::str::from_utf8(b) {
            Ok(s) => Ok(s.to_string()),
            Err(_) => Err(GgufError::NameNotUtf8 {
                section: self.section,
                what: what.describe(),
                lossy: String::from_utf8_lossy(b).into_owned(),
            }),
        }
    }
}

/// What the parser found.
pub(crate) struct Parsed {
    pub version: u32,
    pub metadata: Metadata,
    pub alignment: u64,
    pub tensors: Vec<TensorInfo>,
    pub data_offset: u64,
}

/// Parses and validates a whole GGUF image.
pub(crate) fn parse(buf: &[u8]) -> Result<Parsed> {
    let mut c = Cursor {
        buf,
        pos: 0,
        section: Section::Header,
    };

    // Magic. A file shorter than four bytes that could still be the start of one is truncated;
    // anything else is not GGUF.
    let head = &buf[..buf.len().min(4)];
    if head != &MAGIC[..head.len()] || head.is_empty() {
        return Err(GgufError::BadMagic {
            found: head.to_vec(),
        });
    }
    c.take(4, What::Header("magic"))?;

    let version = c.u32(What::Header("version"))?;
    if version != 2 && version != 3 {
        return Err(GgufError::UnsupportedVersion { version });
    }
    let n_tensors = c.u64(What::Header("tensor count"))?;
    let n_kv = c.u64(What::Header("metadata count"))?;

    let max_tensors = c.remaining() / MIN_TENSOR_INFO_SIZE;
    if n_tensors > max_tensors {
        return Err(GgufError::TooManyTensors {
            count: n_tensors,
            max: max_tensors,
        });
    }
    let max_kv = (c.remaining() - n_tensors * MIN_TENSOR_INFO_SIZE) / MIN_KV_SIZE;
    if n_kv > max_kv {
        return Err(GgufError::TooManyKeys {
            count: n_kv,
            max: max_kv,
        });
    }

    // Metadata.
    c.section = Section::Metadata;
    let mut entries = Vec::with_capacity(n_kv as usize);
    let mut seen = HashSet::with_capacity(n_kv as usize);
    for i in 0..n_kv {
        let key = c.name(What::Key(i), MAX_KEY_LEN)?;
        if key.is_empty() {
            return Err(GgufError::EmptyKey { index: i });
        }
        if !seen.insert(key.clone()) {
            return Err(GgufError::DuplicateKey { key });
        }
        let ty = read_type(&mut c, &key)?;
        let value = read_value(&mut c, &key, ty, 0)?;
        entries.push((key, value));
    }
    let metadata = Metadata::from_entries(entries)?;

    let alignment = match metadata.get(crate::KEY_ALIGNMENT) {
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

    // Tensor infos.
    c.section = Section::TensorInfo;
    let mut tensors = Vec::with_capacity(n_tensors as usize);
    let mut names = HashSet::with_capacity(n_tensors as usize);
    for i in 0..n_tensors {
        let t = read_tensor_info(&mut c, i, alignment)?;
        if !names.insert(t.name.clone()) {
            return Err(GgufError::DuplicateTensor { name: t.name });
        }
        tensors.push(t);
    }

    // Data section: starts at the next multiple of the alignment.
    c.section = Section::Data;
    let file_len = buf.len() as u64;
    let aligned = (c.pos as u64).next_multiple_of(alignment);
    let data_offset = if tensors.is_empty() {
        // Nothing to point into: accept a file that stops before the padding.
        aligned.min(file_len)
    } else {
        c.take(aligned - c.pos as u64, What::DataPadding)?;
        aligned
    };
    check_tensor_placement(&tensors, file_len - data_offset, data_offset, file_len)?;

    Ok(Parsed {
        version,
        metadata,
        alignment,
        tensors,
        data_offset,
    })
}

fn read_type(c: &mut Cursor<'_>, key: &str) -> Result<ValueType> {
    let id = c.u32(What::Value(key))?;
    ValueType::from_id(id).ok_or_else(|| GgufError::UnknownValueType {
        key: key.to_string(),
        id,
    })
}

fn read_value(c: &mut Cursor<'_>, key: &str, ty: ValueType, depth: usize) -> Result<Value> {
    let w = What::Value(key);
    Ok(match ty {
        ValueType::U8 => Value::U8(u8::from_le_bytes(c.array(w)?)),
        ValueType::I8 => Value::I8(i8::from_le_bytes(c.array(w)?)),
        ValueType::U16 => Value::U16(u16::from_le_bytes(c.array(w)?)),
        ValueType::I16 => Value::I16(i16::from_le_bytes(c.array(w)?)),
        ValueType::U32 => Value::U32(u32::from_le_bytes(c.array(w)?)),
        ValueType::I32 => Value::I32(i32::from_le_bytes(c.array(w)?)),
        ValueType::F32 => Value::F32(f32::from_le_bytes(c.array(w)?)),
        ValueType::U64 => Value::U64(u64::from_le_bytes(c.array(w)?)),
        ValueType::I64 => Value::I64(i64::from_le_bytes(c.array(w)?)),
        ValueType::F64 => Value::F64(f64::from_le_bytes(c.array(w)?)),
        ValueType::Bool => Value::Bool(read_bool(c.array::<1>(w)?[0], key)?),
        ValueType::String => Value::String(GgufString::from(c.string(w, MAX_STRING_LEN)?)),
        ValueType::Array => Value::Array(read_array(c, key, depth + 1)?),
    })
}

fn read_bool(byte: u8, key: &str) -> Result<bool> {
    match byte {
        0 => Ok(false),
        1 => Ok(true),
        byte => Err(GgufError::InvalidBool {
            key: key.to_string(),
            byte,
        }),
    }
}

/// Decodes `n` little-endian scalars of `N` bytes each.
fn scalars<T, const N: usize>(
    c: &mut Cursor<'_>,
    n: u64,
    w: What<'_>,
    f: fn([u8; N]) -> T,
) -> Result<Vec<T>> {
    let bytes = c.take(n * N as u64, w)?;
    Ok(bytes
        .chunks_exact(N)
        .map(|ch| {
            let mut a = [0u8; N];
            a.copy_from_slice(ch);
            f(a)
        })
        .collect())
}

/// An array's element type, length and elements; `depth` is 1 for a top-level array.
fn read_array(c: &mut Cursor<'_>, key: &str, depth: usize) -> Result<Array> {
    if depth > MAX_NESTING_DEPTH {
        return Err(GgufError::NestingTooDeep {
            key: key.to_string(),
            max: MAX_NESTING_DEPTH,
        });
    }
    let elem = read_type(c, key)?;
    let w = What::Value(key);
    let n = c.u64(w)?;
    if n > MAX_ARRAY_LEN {
        return Err(GgufError::ArrayTooLong {
            key: key.to_string(),
            elem,
            len: n,
            max: MAX_ARRAY_LEN,
        });
    }
    // Each element takes at least its minimal encoding: refuse before allocating.
    let min_bytes = n * elem.min_encoded_size();
    if min_bytes > c.remaining() {
        return Err(GgufError::Truncated {
            section: c.section,
            what: format!("the value of '{key}' ({n} {elem} elements)"),
            offset: c.pos as u64,
            end: c.pos as u64 + min_bytes,
            file_len: c.buf.len() as u64,
        });
    }
    Ok(match elem {
        ValueType::U8 => Array::U8(c.take(n, w)?.to_vec()),
        ValueType::I8 => Array::I8(scalars(c, n, w, i8::from_le_bytes)?),
        ValueType::U16 => Array::U16(scalars(c, n, w, u16::from_le_bytes)?),
        ValueType::I16 => Array::I16(scalars(c, n, w, i16::from_le_bytes)?),
        ValueType::U32 => Array::U32(scalars(c, n, w, u32::from_le_bytes)?),
        ValueType::I32 => Array::I32(scalars(c, n, w, i32::from_le_bytes)?),
        ValueType::F32 => Array::F32(scalars(c, n, w, f32::from_le_bytes)?),
        ValueType::U64 => Array::U64(scalars(c, n, w, u64::from_le_bytes)?),
        ValueType::I64 => Array::I64(scalars(c, n, w, i64::from_le_bytes)?),
        ValueType::F64 => Array::F64(scalars(c, n, w, f64::from_le_bytes)?),
        ValueType::Bool => Array::Bool(
            c.take(n, w)?
                .iter()
                .map(|&b| read_bool(b, key))
                .collect::<Result<_>>()?,
        ),
        ValueType::String => {
            let mut v = Vec::with_capacity(n as usize);
            for _ in 0..n {
                v.push(GgufString::from(c.string(w, MAX_STRING_LEN)?));
            }
            Array::String(v)
        }
        ValueType::Array => {
            let mut v = Vec::with_capacity(n as usize);
            for _ in 0..n {
                v.push(read_array(c, key, depth + 1)?);
            }
            Array::Array(v)
        }
    })
}

fn read_tensor_info(c: &mut Cursor<'_>, index: u64, alignment: u64) -> Result<TensorInfo> {
    let name = c.name(What::TensorName(index), MAX_TENSOR_NAME_LEN)?;
    let w = What::TensorInfo(&name);
    let n_dims = c.u32(w)?;
    if n_dims as usize > MAX_DIMS {
        return Err(GgufError::TooManyDims {
            tensor: name,
            n_dims,
        });
    }
    let mut dims = Vec::with_capacity(n_dims as usize);
    for _ in 0..n_dims {
        dims.push(c.u64(w)?);
    }
    // The element count does not depend on the type: check it before the type id.
    let overflows = dims
        .iter()
        .try_fold(1u64, |n, &d| n.checked_mul(d))
        .is_none_or(|n| n > i64::MAX as u64);
    if overflows {
        return Err(GgufError::ShapeOverflow { tensor: name, dims });
    }
    let id = c.u32(w)?;
    let ty = GgmlType::from_id(id).map_err(|_| GgufError::UnknownTensorType {
        tensor: name.clone(),
        id,
    })?;
    let offset = c.u64(w)?;
    let (n_elements, n_bytes) = shape_size(&name, ty, &dims)?;
    if offset % alignment != 0 {
        return Err(GgufError::MisalignedTensor {
            tensor: name,
            offset,
            alignment,
        });
    }
    Ok(TensorInfo {
        name,
        ty,
        dims,
        offset,
        n_elements,
        n_bytes,
    })
}

/// Every tensor inside the data section, none overlapping another.
fn check_tensor_placement(
    tensors: &[TensorInfo],
    data_len: u64,
    data_offset: u64,
    file_len: u64,
) -> Result<()> {
    for t in tensors {
        if t.offset > data_len || (t.n_bytes > 0 && t.offset >= data_len) {
            return Err(GgufError::OffsetPastEnd {
                tensor: t.name.clone(),
                offset: t.offset,
                data_len,
            });
        }
        if t.n_bytes > data_len - t.offset {
            return Err(GgufError::Truncated {
                section: Section::Data,
                what: format!("the data of tensor '{}'", t.name),
                offset: data_offset + t.offset,
                end: data_offset + t.offset + t.n_bytes,
                file_len,
            });
        }
    }
    let mut order: Vec<&TensorInfo> = tensors.iter().filter(|t| t.n_bytes > 0).collect();
    order.sort_by_key(|t| t.offset);
    for pair in order.windows(2) {
        if pair[0].offset + pair[0].n_bytes > pair[1].offset {
            return Err(GgufError::OverlappingTensors {
                first: pair[0].name.clone(),
                second: pair[1].name.clone(),
            });
        }
    }
    Ok(())
}
