//! External tensor data: `data_location = EXTERNAL` with `location`, `offset`, `length`
//! entries naming a file relative to the model's folder (the ONNX spec's layout, as
//! `onnx.save_model(..., save_as_external_data=True)` writes it).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Component, Path, PathBuf};

use crate::error::{OnnxError, Result};
use crate::proto::tensor_proto::DataLocation;
use crate::proto::{StringStringEntryProto, TensorProto};
use crate::tensor;

/// Where one tensor's external bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalRef {
    /// The file, relative to the model's folder.
    pub location: String,
    /// Byte offset in the file.
    pub offset: u64,
    /// Byte count (`None`: to the end of the file).
    pub length: Option<u64>,
}

/// The tensor's external-data entries, checked: `location` present, relative, inside the
/// model's folder; `offset` and `length` decimal integers.
pub fn reference(t: &TensorProto) -> Result<ExternalRef> {
    let name = t.name();
    let get = |key: &str| {
        t.external_data
            .iter()
            .find(|e| e.key() == key)
            .map(|e| e.value())
    };
    let location = get("location").ok_or_else(|| {
        OnnxError::tensor(
            name,
            "data_location is EXTERNAL but external_data has no location",
        )
    })?;
    let rel = Path::new(location);
    if location.is_empty() || !rel.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(OnnxError::tensor(
            name,
            format!(
                "external data location {location:?} must be a relative path inside the model's folder"
            ),
        ));
    }
    let number = |key: &str| -> Result<Option<u64>> {
        get(key)
            .map(|v| {
                v.parse::<u64>().map_err(|_| {
                    OnnxError::tensor(
                        name,
                        format!("external data {key} {v:?} is not a byte count"),
                    )
                })
            })
            .transpose()
    };
    Ok(ExternalRef {
        location: location.to_string(),
        offset: number("offset")?.unwrap_or(0),
        length: number("length")?,
    })
}

/// Checks that the tensor's external file exists and holds the bytes it claims, without
/// reading them.
pub fn check(t: &TensorProto, base_dir: &Path) -> Result<()> {
    let r = reference(t)?;
    let path = base_dir.join(&r.location);
    let err = |reason: String| OnnxError::ExternalData {
        tensor: t.name().to_string(),
        path: path.clone(),
        reason,
    };
    let size = std::fs::metadata(&path)
        .map_err(|e| err(format!("cannot open the file: {e}")))?
        .len();
    let length = r.length.unwrap_or(size.saturating_sub(r.offset));
    let want = tensor::data_bytes(t);
    if r.offset.checked_add(length).is_none_or(|end| end > size) {
        return Err(err(format!(
            "offset {} + length {length} is past the end of the {size}-byte file",
            r.offset
        )));
    }
    if length != want {
        return Err(err(format!(
            "length {length} but dims {:?} of {} need {want} bytes",
            t.dims,
            tensor::type_name(t.data_type())
        )));
    }
    Ok(())
}

/// Reads the tensor's external bytes.
pub fn read(t: &TensorProto, base_dir: &Path) -> Result<Vec<u8>> {
    check(t, base_dir)?;
    let r = reference(t)?;
    let path = base_dir.join(&r.location);
    let io = |e| OnnxError::io(&path, e);
    let mut f = File::open(&path).map_err(io)?;
    f.seek(SeekFrom::Start(r.offset)).map_err(io)?;
    let mut buf = vec![0; tensor::data_bytes(t) as usize];
    f.read_exact(&mut buf).map_err(io)?;
    Ok(buf)
}

/// Moves the tensor's data into `raw_data` (clearing its external entries).
pub fn inline(t: &mut TensorProto, base_dir: &Path) -> Result<()> {
    if !tensor::is_external(t) {
        return Ok(());
    }
    let bytes = read(t, base_dir)?;
    t.raw_data = Some(bytes);
    t.external_data.clear();
    t.data_location = None;
    Ok(())
}

/// Appends tensors' raw data to one data file, page-aligned, and points the tensors at it.
pub(crate) struct ExternalWriter {
    file: File,
    path: PathBuf,
    location: String,
    pos: u64,
    align: u64,
}

impl ExternalWriter {
    pub(crate) fn new(file: File, path: PathBuf, location: String, align: u64) -> Self {
        Self {
            file,
            path,
            location,
            pos: 0,
            align: align.max(1),
        }
    }

    /// Writes the tensor's data (which must be inline) to the file and rewrites the tensor
    /// to reference it.
    pub(crate) fn externalize(&mut self, t: &mut TensorProto) -> Result<()> {
        let raw = tensor::raw_bytes(t, Path::new("."))?.into_owned();
        let offset = self.pos.next_multiple_of(self.align);
        let io = |e| OnnxError::io(&self.path, e);
        if offset > self.pos {
            let pad = vec![0u8; (offset - self.pos) as usize];
            self.file.write_all(&pad).map_err(io)?;
        }
        self.file.write_all(&raw).map_err(io)?;
        self.pos = offset + raw.len() as u64;
        t.raw_data = None;
        t.float_data.clear();
        t.int32_data.clear();
        t.int64_data.clear();
        t.double_data.clear();
        t.uint64_data.clear();
        let entry = |k: &str, v: String| StringStringEntryProto {
            key: Some(k.to_string()),
            value: Some(v),
        };
        t.external_data = vec![
            entry("location", self.location.clone()),
            entry("offset", offset.to_string()),
            entry("length", raw.len().to_string()),
        ];
        t.data_location = Some(DataLocation::External as i32);
        Ok(())
    }

    pub(crate) fn finish(self) -> Result<File> {
        self.file
            .sync_all()
            .map_err(|e| OnnxError::io(&self.path, e))?;
        Ok(self.file)
    }
}
