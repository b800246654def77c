//! `TensorProto` helpers: element types, byte sizes, reading values whatever field holds
//! them, and building initializers.

use std::borrow::Cow;
use std::path::Path;

use crate::error::{OnnxError, Result};
use crate::external;
use crate::proto::TensorProto;
use crate::proto::tensor_proto::{DataLocation, DataType};

/// Bits one element of `dt` takes in `raw_data` (`None` for strings and undefined types).
pub fn element_bits(dt: DataType) -> Option<u64> {
    use DataType as D;
    Some(match dt {
        D::Undefined | D::String => return None,
        D::Uint4 | D::Int4 | D::Float4e2m1 => 4,
        D::Uint8
        | D::Int8
        | D::Bool
        | D::Float8e4m3fn
        | D::Float8e4m3fnuz
        | D::Float8e5m2
        | D::Float8e5m2fnuz
        | D::Float8e8m0 => 8,
        D::Uint16 | D::Int16 | D::Float16 | D::Bfloat16 => 16,
        D::Float | D::Int32 | D::Uint32 => 32,
        D::Double | D::Int64 | D::Uint64 | D::Complex64 => 64,
        D::Complex128 => 128,
    })
}

/// The ONNX name of an element type number (`FLOAT`, `INT8`, ...), or `type N` if unknown.
pub fn type_name(dt: i32) -> String {
    match DataType::try_from(dt) {
        Ok(d) => d.as_str_name().to_string(),
        Err(_) => format!("type {dt}"),
    }
}

/// The number of elements a tensor's dims describe (`None` on a negative dim or overflow).
pub fn element_count(t: &TensorProto) -> Option<u64> {
    t.dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(u64::try_from(d).ok()?))
}

/// The bytes a tensor's data takes in `raw_data` form (strings: their total length).
pub fn data_bytes(t: &TensorProto) -> u64 {
    let Ok(dt) = DataType::try_from(t.data_type()) else {
        return 0;
    };
    match element_bits(dt) {
        // Dims too large to count saturate rather than wrap (validation refuses them).
        Some(bits) => element_count(t).map_or(0, |n| {
            n.checked_mul(bits).map_or(u64::MAX, |b| b.div_ceil(8))
        }),
        None => t
            .string_data
            .iter()
            .fold(0u64, |acc, s| acc.saturating_add(s.len() as u64)),
    }
}

/// Whether the tensor's data lives in an external file.
pub fn is_external(t: &TensorProto) -> bool {
    t.data_location == Some(DataLocation::External as i32)
}

/// The tensor's data in `raw_data` layout (little-endian, packed), whichever field holds it;
/// external data is read from files relative to `base_dir`.
pub fn raw_bytes<'a>(t: &'a TensorProto, base_dir: &Path) -> Result<Cow<'a, [u8]>> {
    let name = t.name();
    let dt = DataType::try_from(t.data_type())
        .map_err(|_| OnnxError::tensor(name, format!("unknown data type {}", t.data_type())))?;
    let bits = element_bits(dt).ok_or_else(|| {
        OnnxError::tensor(
            name,
            format!("{} tensors have no raw byte form", dt.as_str_name()),
        )
    })?;
    let expect = element_count(t)
        .and_then(|n| n.checked_mul(bits))
        .map(|b| b.div_ceil(8))
        .ok_or_else(|| OnnxError::tensor(name, format!("invalid dims {:?}", t.dims)))?;
    let n = element_count(t).expect("counted above");
    let bytes: Cow<'a, [u8]> = if is_external(t) {
        Cow::Owned(external::read(t, base_dir)?)
    } else if let Some(raw) = &t.raw_data {
        Cow::Borrowed(raw.as_slice())
    } else {
        Cow::Owned(typed_field_bytes(t, dt, n)?)
    };
    if bytes.len() as u64 != expect {
        return Err(OnnxError::tensor(
            name,
            format!(
                "holds {} bytes of data but its dims {:?} of {} need {expect}",
                bytes.len(),
                t.dims,
                dt.as_str_name()
            ),
        ));
    }
    Ok(bytes)
}

/// Packs the typed repeated fields (`float_data`, `int32_data`, ...) into raw bytes.
fn typed_field_bytes(t: &TensorProto, dt: DataType, n: u64) -> Result<Vec<u8>> {
    use DataType as D;
    let mut out = Vec::new();
    match dt {
        D::Float | D::Complex64 => t
            .float_data
            .iter()
            .for_each(|v| out.extend(v.to_le_bytes())),
        D::Double | D::Complex128 => t
            .double_data
            .iter()
            .for_each(|v| out.extend(v.to_le_bytes())),
        D::Int64 => t
            .int64_data
            .iter()
            .for_each(|v| out.extend(v.to_le_bytes())),
        D::Uint64 => t
            .uint64_data
            .iter()
            .for_each(|v| out.extend(v.to_le_bytes())),
        D::Uint32 => t
            .uint64_data
            .iter()
            .for_each(|&v| out.extend((v as u32).to_le_bytes())),
        D::Int32 => t
            .int32_data
            .iter()
            .for_each(|v| out.extend(v.to_le_bytes())),
        D::Int16 | D::Uint16 | D::Float16 | D::Bfloat16 => t
            .int32_data
            .iter()
            .for_each(|&v| out.extend((v as u16).to_le_bytes())),
        D::Int8
        | D::Uint8
        | D::Bool
        | D::Float8e4m3fn
        | D::Float8e4m3fnuz
        | D::Float8e5m2
        | D::Float8e5m2fnuz
        | D::Float8e8m0 => t.int32_data.iter().for_each(|&v| out.push(v as u8)),
        D::Int4 | D::Uint4 | D::Float4e2m1 => {
            // Each int32 holds two 4-bit elements already packed (spec: LSB first).
            for &v in &t.int32_data {
                out.push(v as u8);
            }
            out.truncate(n.div_ceil(2) as usize);
        }
        D::Undefined | D::String => unreachable!("checked by element_bits"),
    }
    Ok(out)
}

/// The tensor's values as f32 (FLOAT, FLOAT16, BFLOAT16 and DOUBLE tensors).
pub fn to_f32(t: &TensorProto, base_dir: &Path) -> Result<Vec<f32>> {
    let raw = raw_bytes(t, base_dir)?;
    Ok(match DataType::try_from(t.data_type()) {
        Ok(DataType::Float) => raw
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Ok(DataType::Float16) => raw
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        Ok(DataType::Bfloat16) => raw
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        Ok(DataType::Double) => raw
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")) as f32)
            .collect(),
        _ => {
            return Err(OnnxError::tensor(
                t.name(),
                format!(
                    "is {}, not a floating-point tensor",
                    type_name(t.data_type())
                ),
            ));
        }
    })
}

/// The tensor's values as i64 (INT64 and INT32 tensors), e.g. a Reshape's shape.
pub fn to_i64(t: &TensorProto, base_dir: &Path) -> Result<Vec<i64>> {
    let raw = raw_bytes(t, base_dir)?;
    Ok(match DataType::try_from(t.data_type()) {
        Ok(DataType::Int64) => raw
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect(),
        Ok(DataType::Int32) => raw
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes(c.try_into().expect("4 bytes")).into())
            .collect(),
        _ => {
            return Err(OnnxError::tensor(
                t.name(),
                format!("is {}, not an integer tensor", type_name(t.data_type())),
            ));
        }
    })
}

/// A tensor of type `dt` named `name` with `raw_data` (little-endian, packed).
pub fn from_raw(name: &str, dt: DataType, dims: &[i64], raw: Vec<u8>) -> TensorProto {
    TensorProto {
        name: Some(name.to_string()),
        data_type: Some(dt as i32),
        dims: dims.to_vec(),
        raw_data: Some(raw),
        ..Default::default()
    }
}

/// A FLOAT tensor.
pub fn from_f32(name: &str, dims: &[i64], values: &[f32]) -> TensorProto {
    let raw = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    from_raw(name, DataType::Float, dims, raw)
}

/// An INT8 tensor.
pub fn from_i8(name: &str, dims: &[i64], values: &[i8]) -> TensorProto {
    let raw = values.iter().map(|&v| v as u8).collect();
    from_raw(name, DataType::Int8, dims, raw)
}

/// A UINT8 tensor.
pub fn from_u8(name: &str, dims: &[i64], values: &[u8]) -> TensorProto {
    from_raw(name, DataType::Uint8, dims, values.to_vec())
}

/// An INT64 tensor.
pub fn from_i64(name: &str, dims: &[i64], values: &[i64]) -> TensorProto {
    let raw = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    from_raw(name, DataType::Int64, dims, raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_fields_and_raw_data_read_the_same() {
        let raw = from_f32("w", &[2, 2], &[1.0, -2.5, 3.25, 0.0]);
        let typed = TensorProto {
            name: Some("w".into()),
            data_type: Some(DataType::Float as i32),
            dims: vec![2, 2],
            float_data: vec![1.0, -2.5, 3.25, 0.0],
            ..Default::default()
        };
        let dir = Path::new(".");
        assert_eq!(to_f32(&raw, dir).unwrap(), to_f32(&typed, dir).unwrap());
        assert_eq!(data_bytes(&raw), 16);
    }

    #[test]
    fn dims_too_large_to_count_in_bytes_are_an_error_not_an_overflow() {
        // 2^61 float elements: the element count fits in u64, the bit count does not.
        let t = from_raw("huge", DataType::Float, &[1 << 31, 1 << 30], vec![0; 4]);
        assert_eq!(data_bytes(&t), u64::MAX);
        let e = to_f32(&t, Path::new(".")).unwrap_err().to_string();
        assert!(e.contains("\"huge\"") && e.contains("invalid dims"), "{e}");
        let model = crate::OnnxModel::from_proto(
            crate::proto::ModelProto {
                graph: Some(crate::proto::GraphProto {
                    initializer: vec![t.clone(), t],
                    ..Default::default()
                }),
                ..Default::default()
            },
            ".",
        );
        let s = crate::ModelSummary::of(&model);
        assert_eq!(s.initializer_bytes, u64::MAX);
        assert!(model.validate().is_err());
    }

    #[test]
    fn wrong_byte_count_is_an_error_naming_the_tensor() {
        let mut t = from_f32("w", &[3], &[1.0, 2.0]);
        t.dims = vec![3];
        let e = to_f32(&t, Path::new(".")).unwrap_err().to_string();
        assert!(e.contains("\"w\"") && e.contains("need 12"), "{e}");
    }

    #[test]
    fn int4_sizes_round_up() {
        let t = from_raw("q", DataType::Int4, &[3], vec![0x21, 0x03]);
        assert_eq!(data_bytes(&t), 2);
        assert_eq!(raw_bytes(&t, Path::new(".")).unwrap().len(), 2);
    }
}
