//! Property tests: random metadata (every value type, nested arrays, raw non-UTF-8 strings,
//! NaN payloads) and random tensors survive write → read unchanged, and writing what was read
//! gives the same bytes again.

use perch_gguf::{Array, GgmlType, GgufBuilder, GgufFile, GgufString, Value};
use proptest::prelude::*;

fn string() -> impl Strategy<Value = GgufString> {
    prop_oneof![
        ".{0,12}".prop_map(GgufString::from),
        proptest::collection::vec(any::<u8>(), 0..12).prop_map(GgufString::from_bytes),
    ]
}

fn array(depth: u32) -> BoxedStrategy<Array> {
    use proptest::collection::vec;
    let n = 0..6;
    let leaf = prop_oneof![
        vec(any::<u8>(), n.clone()).prop_map(Array::U8),
        vec(any::<i8>(), n.clone()).prop_map(Array::I8),
        vec(any::<u16>(), n.clone()).prop_map(Array::U16),
        vec(any::<i16>(), n.clone()).prop_map(Array::I16),
        vec(any::<u32>(), n.clone()).prop_map(Array::U32),
        vec(any::<i32>(), n.clone()).prop_map(Array::I32),
        vec(any::<u32>().prop_map(f32::from_bits), n.clone()).prop_map(Array::F32),
        vec(any::<bool>(), n.clone()).prop_map(Array::Bool),
        vec(string(), n.clone()).prop_map(Array::String),
        vec(any::<u64>(), n.clone()).prop_map(Array::U64),
        vec(any::<i64>(), n.clone()).prop_map(Array::I64),
        vec(any::<u64>().prop_map(f64::from_bits), n.clone()).prop_map(Array::F64),
    ];
    if depth == 0 {
        leaf.boxed()
    } else {
        prop_oneof![
            4 => leaf,
            1 => vec(array(depth - 1), 0..4).prop_map(Array::Array),
        ]
        .boxed()
    }
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<u8>().prop_map(Value::U8),
        any::<i8>().prop_map(Value::I8),
        any::<u16>().prop_map(Value::U16),
        any::<i16>().prop_map(Value::I16),
        any::<u32>().prop_map(Value::U32),
        any::<i32>().prop_map(Value::I32),
        any::<u32>().prop_map(|b| Value::F32(f32::from_bits(b))),
        any::<bool>().prop_map(Value::Bool),
        string().prop_map(Value::String),
        array(3).prop_map(Value::Array),
        any::<u64>().prop_map(Value::U64),
        any::<i64>().prop_map(Value::I64),
        any::<u64>().prop_map(|b| Value::F64(f64::from_bits(b))),
    ]
}

/// Equality with floats compared by bit pattern (NaN payloads included).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::F32(x), Value::F32(y)) => x.to_bits() == y.to_bits(),
        (Value::F64(x), Value::F64(y)) => x.to_bits() == y.to_bits(),
        (Value::Array(x), Value::Array(y)) => same_array(x, y),
        (a, b) => a == b,
    }
}

fn same_array(a: &Array, b: &Array) -> bool {
    match (a, b) {
        (Array::F32(x), Array::F32(y)) => x
            .iter()
            .map(|v| v.to_bits())
            .eq(y.iter().map(|v| v.to_bits())),
        (Array::F64(x), Array::F64(y)) => x
            .iter()
            .map(|v| v.to_bits())
            .eq(y.iter().map(|v| v.to_bits())),
        (Array::Array(x), Array::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_array(a, b))
        }
        (a, b) => a == b,
    }
}

/// (type, dims) pairs whose shapes are valid for the type.
fn tensor_spec() -> impl Strategy<Value = (GgmlType, Vec<u64>)> {
    let ty = prop_oneof![
        Just(GgmlType::F32),
        Just(GgmlType::F16),
        Just(GgmlType::Q4_0),
        Just(GgmlType::Q8_0),
        Just(GgmlType::Q4_K),
        Just(GgmlType::I8),
    ];
    (ty, 1u64..3, proptest::collection::vec(0u64..4, 0..3)).prop_map(|(ty, blocks, rest)| {
        let mut dims = vec![blocks * ty.block_size() as u64];
        dims.extend(rest);
        (ty, dims)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_files_round_trip(
        kvs in proptest::collection::vec(("[a-z]{1,6}(\\.[a-z_]{1,8}){0,2}", value()), 0..12),
        tensors in proptest::collection::vec(tensor_spec(), 0..5),
        alignment in prop_oneof![Just(None), Just(Some(1u32)), Just(Some(8)), Just(Some(64))],
        version in 2u32..=3,
        seed in any::<u8>(),
    ) {
        let mut b = GgufBuilder::new().version(version);
        if let Some(a) = alignment {
            b = b.kv("general.alignment", a);
        }
        for (k, v) in &kvs {
            if k != "general.alignment" {
                b = b.kv(k.clone(), v.clone());
            }
        }
        for (i, (ty, dims)) in tensors.iter().enumerate() {
            let n = ty.bytes_for(dims.iter().product()).unwrap() as usize;
            let data: Vec<u8> = (0..n).map(|j| (j as u8).wrapping_mul(31) ^ seed).collect();
            b = b.tensor(format!("t{i}.weight"), *ty, dims.clone(), data).unwrap();
        }
        let bytes = b.to_bytes().unwrap();
        let f = GgufFile::from_bytes(bytes.clone()).unwrap();

        prop_assert_eq!(f.version(), version);
        prop_assert_eq!(f.alignment(), u64::from(alignment.unwrap_or(32)));
        prop_assert_eq!(f.data_offset() % f.alignment(), 0);
        let written = b.metadata_mut().entries().to_vec();
        prop_assert_eq!(f.metadata().len(), written.len());
        for ((k1, v1), (k2, v2)) in f.metadata().iter().zip(&written) {
            prop_assert_eq!(k1, k2.as_str());
            prop_assert!(same(v1, v2), "{}: {:?} != {:?}", k1, v1, v2);
        }
        prop_assert_eq!(f.tensors().len(), tensors.len());
        for (view, (ty, dims)) in f.tensor_views().zip(&tensors) {
            prop_assert_eq!(view.ty(), *ty);
            prop_assert_eq!(view.dims(), &dims[..]);
            prop_assert_eq!(view.info.offset % f.alignment(), 0);
            let expect: Vec<u8> = (0..view.data.len()).map(|j| (j as u8).wrapping_mul(31) ^ seed).collect();
            prop_assert_eq!(view.data, &expect[..]);
        }
        // Writing what was read gives the same bytes.
        prop_assert!(f.to_bytes().unwrap() == bytes);
    }
}
