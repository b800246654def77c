//! Tensor infos and zero-copy tensor views.

use perch_quant::GgmlType;

use crate::error::{GgufError, Result};

/// Most dimensions a tensor may have (`GGML_MAX_DIMS`).
pub const MAX_DIMS: usize = 4;

/// What a file says about one tensor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    /// The tensor's name (`"blk.0.attn_q.weight"`).
    pub name: String,
    /// Its ggml type.
    pub ty: GgmlType,
    /// Its shape in ggml order: `dims[0]` (ne0) is the row length, the fastest-varying index.
    /// Between 0 and 4 entries, as stored in the file.
    pub dims: Vec<u64>,
    /// Start of its bytes, relative to the data section.
    pub offset: u64,
    /// Number of elements (the product of `dims`).
    pub n_elements: u64,
    /// Number of bytes (`n_elements / block_size * type_size`).
    pub n_bytes: u64,
}

impl TensorInfo {
    /// A tensor info with `offset` 0, after checking the shape: at most 4 dims, a row length
    /// that is a whole number of blocks, and element and byte counts that fit in 63 bits.
    pub fn new(name: impl Into<String>, ty: GgmlType, dims: impl Into<Vec<u64>>) -> Result<Self> {
        let name = name.into();
        let dims = dims.into();
        if dims.len() > MAX_DIMS {
            return Err(GgufError::TooManyDims {
                tensor: name,
                n_dims: dims.len().try_into().unwrap_or(u32::MAX),
            });
        }
        let (n_elements, n_bytes) = shape_size(&name, ty, &dims)?;
        Ok(TensorInfo {
            name,
            ty,
            dims,
            offset: 0,
            n_elements,
            n_bytes,
        })
    }

    /// Rows: the product of all dims but the first (1 for a vector).
    pub fn n_rows(&self) -> u64 {
        self.dims.iter().skip(1).product()
    }

    /// Bytes per row (`ne0 / block_size * type_size`).
    pub fn row_bytes(&self) -> u64 {
        let ne0 = self.dims.first().copied().unwrap_or(1);
        ne0 / self.ty.block_size() as u64 * self.ty.type_size() as u64
    }

    /// The shape as `usize`s, ne0 first (every dim fits: the element count does).
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().map(|&d| d as usize).collect()
    }
}

/// Element and byte counts of a shape, checked against overflow and block size.
pub(crate) fn shape_size(name: &str, ty: GgmlType, dims: &[u64]) -> Result<(u64, u64)> {
    let overflow = || GgufError::ShapeOverflow {
        tensor: name.to_string(),
        dims: dims.to_vec(),
    };
    let mut n: u64 = 1;
    for &d in dims {
        n = n.checked_mul(d).ok_or_else(overflow)?;
    }
    if n > i64::MAX as u64 {
        return Err(overflow());
    }
    let ne0 = dims.first().copied().unwrap_or(1);
    let block_size = ty.block_size();
    if ne0 % block_size as u64 != 0 {
        return Err(GgufError::RowNotBlockMultiple {
            tensor: name.to_string(),
            ty,
            ne0,
            block_size,
        });
    }
    let bytes = ty.bytes_for(n).ok_or_else(overflow)?;
    if bytes > i64::MAX as u64 {
        return Err(overflow());
    }
    Ok((n, bytes))
}

/// One tensor's info and its bytes, borrowed from the file (no copy).
#[derive(Clone, Copy, Debug)]
pub struct TensorView<'a> {
    /// The info.
    pub info: &'a TensorInfo,
    /// Exactly `info.n_bytes` bytes, pointing into the file's map.
    pub data: &'a [u8],
}

impl<'a> TensorView<'a> {
    /// The name.
    pub fn name(&self) -> &'a str {
        &self.info.name
    }

    /// The ggml type.
    pub fn ty(&self) -> GgmlType {
        self.info.ty
    }

    /// The dims, ne0 first.
    pub fn dims(&self) -> &'a [u64] {
        &self.info.dims
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_checks() {
        let t = TensorInfo::new("a", GgmlType::Q4_1, vec![64, 3]).unwrap();
        assert_eq!(
            (t.n_elements, t.n_bytes, t.n_rows(), t.row_bytes()),
            (192, 120, 3, 40)
        );
        assert!(matches!(
            TensorInfo::new("a", GgmlType::Q4_1, vec![33]),
            Err(GgufError::RowNotBlockMultiple {
                ne0: 33,
                block_size: 32,
                ..
            })
        ));
        assert!(matches!(
            TensorInfo::new("a", GgmlType::F32, vec![1, 1, 1, 1, 1]),
            Err(GgufError::TooManyDims { n_dims: 5, .. })
        ));
        assert!(matches!(
            TensorInfo::new("a", GgmlType::F32, vec![1 << 32, 1 << 32]),
            Err(GgufError::ShapeOverflow { .. })
        ));
        // Fits in elements but not in bytes.
        assert!(matches!(
            TensorInfo::new("a", GgmlType::F32, vec![1 << 62]),
            Err(GgufError::ShapeOverflow { .. })
        ));
        let scalar = TensorInfo::new("s", GgmlType::F32, vec![]).unwrap();
        assert_eq!((scalar.n_elements, scalar.n_bytes), (1, 4));
        let empty = TensorInfo::new("e", GgmlType::Q8_0, vec![32, 0]).unwrap();
        assert_eq!((empty.n_elements, empty.n_bytes), (0, 0));
    }
}
