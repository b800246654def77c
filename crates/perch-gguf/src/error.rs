//! The one error type of the crate: every way a file can be wrong, and every way a metadata
//! lookup or a write can fail, each naming the key or tensor concerned.

use std::fmt;
use std::path::PathBuf;

use perch_quant::GgmlType;

use crate::value::ValueType;

/// The part of a file where a problem was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Section {
    /// Magic, version and the two counts.
    Header,
    /// The key/value pairs.
    Metadata,
    /// The tensor infos (name, dims, type, offset).
    TensorInfo,
    /// The aligned data section holding the tensors' bytes.
    Data,
}

impl fmt::Display for Section {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Section::Header => "header",
            Section::Metadata => "metadata",
            Section::TensorInfo => "tensor infos",
            Section::Data => "data section",
        })
    }
}

/// Everything that can go wrong reading, querying or writing a GGUF file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GgufError {
    /// Opening, mapping, reading or writing a file failed.
    #[error("I/O error on {}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },

    /// The file does not start with `GGUF`.
    #[error("{}", magic_message(found))]
    BadMagic {
        /// The first four bytes (fewer if the file is shorter).
        found: Vec<u8>,
    },

    /// A version this reader does not read (only 2 and 3 are).
    #[error("{}", version_message(*.version))]
    UnsupportedVersion {
        /// The version field as read (little-endian).
        version: u32,
    },

    /// The file ends inside a section.
    #[error(
        "file truncated in the {section}: {what} needs bytes {offset}..{end} but the file has {file_len}"
    )]
    Truncated {
        /// The section being read.
        section: Section,
        /// What was being read (`"value of 'general.name'"`, `"tensor info 'output.weight'"`).
        what: String,
        /// Where the read started.
        offset: u64,
        /// Where it would have ended.
        end: u64,
        /// The file's length.
        file_len: u64,
    },

    /// The header claims more tensors than the rest of the file could describe.
    #[error(
        "header claims {count} tensors but the file could hold at most {max} (damaged or truncated file?)"
    )]
    TooManyTensors {
        /// The claimed count.
        count: u64,
        /// The most the remaining bytes could hold (24 bytes per tensor info at least).
        max: u64,
    },

    /// The header claims more metadata entries than the rest of the file could hold.
    #[error(
        "header claims {count} metadata entries but the file could hold at most {max} (damaged or truncated file?)"
    )]
    TooManyKeys {
        /// The claimed count.
        count: u64,
        /// The most the remaining bytes could hold.
        max: u64,
    },

    /// A string's length prefix points past the end of the file.
    #[error("{what}: string length {len} runs past the end of the file ({available} bytes left)")]
    StringPastEnd {
        /// The section being read.
        section: Section,
        /// Which string (`"key of metadata entry 3"`, `"value of 'general.name'"`).
        what: String,
        /// The length read.
        len: u64,
        /// Bytes left in the file after the length prefix.
        available: u64,
    },

    /// A string is longer than [`crate::MAX_STRING_LEN`] (or a key longer than
    /// [`crate::MAX_KEY_LEN`], a tensor name longer than [`crate::MAX_TENSOR_NAME_LEN`]).
    #[error("{what}: string length {len} exceeds the limit of {max} bytes")]
    StringTooLong {
        /// The section the string is in.
        section: Section,
        /// Which string.
        what: String,
        /// Its length.
        len: u64,
        /// The limit.
        max: u64,
    },

    /// An array claims more elements than [`crate::MAX_ARRAY_LEN`] (an array that runs past
    /// the end of the file is [`GgufError::Truncated`]).
    #[error("metadata '{key}': array of {len} {elem} elements is longer than the limit of {max}")]
    ArrayTooLong {
        /// The key.
        key: String,
        /// Element type.
        elem: ValueType,
        /// The claimed length.
        len: u64,
        /// The most allowed here.
        max: u64,
    },

    /// Arrays nested deeper than [`crate::MAX_NESTING_DEPTH`].
    #[error("metadata '{key}': arrays nested deeper than {max} levels")]
    NestingTooDeep {
        /// The key.
        key: String,
        /// The limit.
        max: usize,
    },

    /// A value type id that is not one of the thirteen.
    #[error("metadata '{key}': unknown value type id {id}")]
    UnknownValueType {
        /// The key.
        key: String,
        /// The id read.
        id: u32,
    },

    /// A boolean byte other than 0 or 1.
    #[error("metadata '{key}': boolean byte is {byte}, not 0 or 1")]
    InvalidBool {
        /// The key.
        key: String,
        /// The byte read.
        byte: u8,
    },

    /// A metadata key that is empty.
    #[error("metadata entry {index} has an empty key")]
    EmptyKey {
        /// Position of the entry.
        index: u64,
    },

    /// A metadata key or tensor name that is not UTF-8.
    #[error("{what} is not valid UTF-8: {lossy:?}")]
    NameNotUtf8 {
        /// The section the name is in.
        section: Section,
        /// Which name (`"key of metadata entry 3"`, `"name of tensor 7"`).
        what: String,
        /// The name with invalid bytes replaced.
        lossy: String,
    },

    /// A key that appears twice.
    #[error("metadata key '{key}' appears twice")]
    DuplicateKey {
        /// The key.
        key: String,
    },

    /// `general.alignment` is not a `u32`.
    #[error("metadata 'general.alignment' must be u32 but is {found}")]
    AlignmentType {
        /// The type found.
        found: String,
    },

    /// `general.alignment` is zero or not a power of two.
    #[error("metadata 'general.alignment' is {alignment}, which is not a power of two")]
    BadAlignment {
        /// The value.
        alignment: u64,
    },

    /// A tensor name that appears twice.
    #[error("tensor '{name}' appears twice")]
    DuplicateTensor {
        /// The name.
        name: String,
    },

    /// A tensor with more than four dimensions.
    #[error("tensor '{tensor}' has {n_dims} dimensions, at most 4 are allowed")]
    TooManyDims {
        /// The tensor.
        tensor: String,
        /// The count read.
        n_dims: u32,
    },

    /// A shape whose element count or byte size does not fit in 63 bits.
    #[error("tensor '{tensor}': shape {dims:?} overflows (more than 2^63 elements or bytes)")]
    ShapeOverflow {
        /// The tensor.
        tensor: String,
        /// The dims read, ne0 first.
        dims: Vec<u64>,
    },

    /// A tensor type id that is not a known ggml type.
    #[error("tensor '{tensor}' has unknown ggml type id {id}")]
    UnknownTensorType {
        /// The tensor.
        tensor: String,
        /// The id read.
        id: u32,
    },

    /// A row length (ne0) that is not a whole number of blocks of the tensor's type.
    #[error(
        "tensor '{tensor}' of type {ty}: row length {ne0} is not a multiple of the block size {block_size}"
    )]
    RowNotBlockMultiple {
        /// The tensor.
        tensor: String,
        /// Its type.
        ty: GgmlType,
        /// The row length.
        ne0: u64,
        /// The type's block size.
        block_size: usize,
    },

    /// A tensor offset that is not a multiple of the alignment.
    #[error("tensor '{tensor}': offset {offset} is not a multiple of the alignment {alignment}")]
    MisalignedTensor {
        /// The tensor.
        tensor: String,
        /// The offset (relative to the data section).
        offset: u64,
        /// The alignment.
        alignment: u64,
    },

    /// A tensor whose offset lies at or past the end of the file.
    #[error(
        "tensor '{tensor}': offset {offset} is past the end of the data section ({data_len} bytes)"
    )]
    OffsetPastEnd {
        /// The tensor.
        tensor: String,
        /// The offset (relative to the data section).
        offset: u64,
        /// Length of the data section.
        data_len: u64,
    },

    /// Two tensors whose bytes overlap.
    #[error("tensors '{first}' and '{second}' overlap in the data section")]
    OverlappingTensors {
        /// The tensor that starts first.
        first: String,
        /// The tensor that starts inside it.
        second: String,
    },

    /// A tensor that is not in the file.
    #[error("tensor '{0}' is not in the file")]
    MissingTensor(String),

    /// A metadata key that is not there.
    #[error("metadata key '{key}' is missing")]
    MissingKey {
        /// The key.
        key: String,
    },

    /// A metadata value of another type than the one asked for.
    #[error("metadata '{key}': expected {expected}, found {found}")]
    WrongType {
        /// The key.
        key: String,
        /// What the caller asked for.
        expected: &'static str,
        /// What the file holds.
        found: String,
    },

    /// An integer value that does not fit the type asked for.
    #[error("metadata '{key}': value {value} does not fit in {expected}")]
    OutOfRange {
        /// The key.
        key: String,
        /// The value.
        value: i128,
        /// What the caller asked for.
        expected: &'static str,
    },

    /// A string value that is not valid UTF-8 where text was asked for.
    #[error("metadata '{key}'{}: not valid UTF-8", index.map(|i| format!(" element {i}")).unwrap_or_default())]
    NotUtf8 {
        /// The key.
        key: String,
        /// The element, for string arrays.
        index: Option<usize>,
    },

    /// Writer: more or fewer data bytes than a tensor's shape and type need.
    #[error("tensor '{tensor}': {got} bytes of data given but its shape and type need {expected}")]
    DataSize {
        /// The tensor.
        tensor: String,
        /// Bytes the tensor needs.
        expected: u64,
        /// Bytes given.
        got: u64,
    },

    /// Writer: tensor data given out of order, for a tensor that was not declared, or too
    /// early/late.
    #[error("writer: {0}")]
    WriteOrder(String),

    /// A version the writer does not write (only 2 and 3).
    #[error("cannot write GGUF version {0}: only 2 and 3 are written")]
    WriteVersion(u32),
}

impl GgufError {
    /// The section of the file a structural error was found in; `None` for errors that are
    /// not about a file's structure (I/O, metadata lookups, writing).
    pub fn section(&self) -> Option<Section> {
        use GgufError::*;
        Some(match self {
            BadMagic { .. }
            | UnsupportedVersion { .. }
            | TooManyTensors { .. }
            | TooManyKeys { .. } => Section::Header,
            Truncated { section, .. }
            | StringPastEnd { section, .. }
            | StringTooLong { section, .. }
            | NameNotUtf8 { section, .. } => *section,
            ArrayTooLong { .. }
            | NestingTooDeep { .. }
            | UnknownValueType { .. }
            | InvalidBool { .. }
            | EmptyKey { .. }
            | DuplicateKey { .. }
            | AlignmentType { .. }
            | BadAlignment { .. } => Section::Metadata,
            DuplicateTensor { .. }
            | TooManyDims { .. }
            | ShapeOverflow { .. }
            | UnknownTensorType { .. }
            | RowNotBlockMultiple { .. }
            | MisalignedTensor { .. } => Section::TensorInfo,
            OffsetPastEnd { .. } | OverlappingTensors { .. } => Section::Data,
            _ => return None,
        })
    }
}

fn magic_message(found: &[u8]) -> String {
    if found.is_empty() {
        "not a GGUF file (it is empty)".into()
    } else {
        format!(
            "not a GGUF file (it starts with \"{}\", not \"GGUF\")",
            found.escape_ascii()
        )
    }
}

fn version_message(version: u32) -> String {
    match version {
        1 => "GGUF version 1 is not supported (convert the file with a current llama.cpp)".into(),
        0 => "bad GGUF version 0".into(),
        v if v & 0xFFFF == 0 => format!(
            "GGUF version field is {v:#x}: this looks like a big-endian file, which is not supported"
        ),
        v => format!("GGUF version {v} is not supported (this reader reads versions 2 and 3)"),
    }
}

/// The crate's result type.
pub type Result<T, E = GgufError> = std::result::Result<T, E>;
