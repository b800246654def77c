//! The bytes behind a [`crate::GgufFile`]: a read-only memory map of the file, or an owned
//! buffer for files built in memory. This is the crate's only `unsafe` code.

use std::fs::File;
use std::path::Path;

use crate::error::{GgufError, Result};

/// Alignment of an owned buffer's start, so that tensor data in an owned file is as aligned
/// as in a mapped one (maps start on a page; GGUF aligns tensors to 32 by default).
const OWNED_ALIGN: usize = 64;

#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub(crate) struct Chunk([u8; OWNED_ALIGN]);

/// Read-only bytes: mapped or owned.
pub(crate) enum Storage {
    Mapped(memmap2::Mmap),
    Owned { chunks: Vec<Chunk>, len: usize },
}

impl Storage {
    /// Maps the file at `path` read-only.
    pub(crate) fn map(path: &Path) -> Result<Storage> {
        let io = |source| GgufError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        let meta = file.metadata().map_err(io)?;
        if meta.is_dir() {
            return Err(io(std::io::Error::new(
                std::io::ErrorKind::IsADirectory,
                "is a directory, not a file",
            )));
        }
        let len = meta.len();
        if len == 0 {
            // Mapping zero bytes fails on some platforms; an empty file is simply empty.
            return Ok(Storage::owned(Vec::new()));
        }
        // SAFETY: `Mmap::map` is unsafe because the file could be changed or truncated by
        // another process while mapped, which would change or invalidate the bytes behind
        // slices we hand out. perch maps model files read-only and never writes them in place
        // (its writer writes a temporary file and renames it over the target, which leaves an
        // existing mapping of the old inode intact). Truncation by a third party is the same
        // hazard every mmap-based model loader (llama.cpp, candle) accepts.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
        Ok(Storage::Mapped(map))
    }

    /// Copies `bytes` into a 64-byte-aligned owned buffer.
    pub(crate) fn owned(bytes: Vec<u8>) -> Storage {
        let len = bytes.len();
        let mut chunks = vec![Chunk([0; OWNED_ALIGN]); len.div_ceil(OWNED_ALIGN)];
        for (chunk, src) in chunks.iter_mut().zip(bytes.chunks(OWNED_ALIGN)) {
            chunk.0[..src.len()].copy_from_slice(src);
        }
        Storage::Owned { chunks, len }
    }

    /// The bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        match self {
            Storage::Mapped(m) => m,
            Storage::Owned { chunks, len } => {
                // SAFETY: `Chunk` is `repr(C)` around `[u8; 64]` with no padding (its size is
                // exactly 64 and its alignment 64), so `chunks` is `chunks.len() * 64`
                // contiguous initialized bytes; `len <= chunks.len() * 64` by construction in
                // `owned`. The slice borrows `self`, so the vector outlives it.
                unsafe { std::slice::from_raw_parts(chunks.as_ptr().cast::<u8>(), *len) }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn owned_storage_keeps_bytes_and_alignment() {
        for n in [0usize, 1, 63, 64, 65, 1000] {
            let bytes: Vec<u8> = (0..n).map(|i| (i * 7 + 3) as u8).collect();
            let s = Storage::owned(bytes.clone());
            assert_eq!(s.bytes(), &bytes[..]);
            assert_eq!(s.bytes().as_ptr() as usize % OWNED_ALIGN, 0);
        }
    }

    #[test]
    fn mapped_storage_reads_the_file() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        let bytes: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        f.write_all(&bytes).unwrap();
        f.flush().unwrap();
        let s = Storage::map(f.path()).unwrap();
        assert_eq!(s.bytes(), &bytes[..]);
        let empty = tempfile::NamedTempFile::new().unwrap();
        assert!(Storage::map(empty.path()).unwrap().bytes().is_empty());
        let missing = Storage::map(Path::new("/nonexistent/perch/x.gguf"));
        assert!(matches!(missing, Err(GgufError::Io { .. })));
    }
}
