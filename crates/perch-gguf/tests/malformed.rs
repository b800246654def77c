//! Malformed files: each defect gives its own typed error naming the key or tensor, and no
//! input panics. Files are made byte by byte here (not with perch's writer) or by damaging
//! the gguf-py reference file.

use std::path::Path;

use perch_gguf::{GgmlType, GgufError, GgufFile, Section};

/// A GGUF image assembled by hand.
struct Raw(Vec<u8>);

impl Raw {
    fn header(version: u32, n_tensors: u64, n_kv: u64) -> Raw {
        let mut r = Raw(b"GGUF".to_vec());
        r.u32(version).u64(n_tensors).u64(n_kv);
        r
    }
    fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn string(&mut self, s: &[u8]) -> &mut Self {
        self.u64(s.len() as u64);
        self.0.extend_from_slice(s);
        self
    }
    fn kv_u32(&mut self, key: &str, v: u32) -> &mut Self {
        self.string(key.as_bytes()).u32(4).u32(v)
    }
    fn tensor(&mut self, name: &str, dims: &[u64], ty: u32, offset: u64) -> &mut Self {
        self.string(name.as_bytes()).u32(dims.len() as u32);
        for &d in dims {
            self.u64(d);
        }
        self.u32(ty).u64(offset)
    }
    fn pad(&mut self, align: usize) -> &mut Self {
        while self.0.len() % align != 0 {
            self.0.push(0);
        }
        self
    }
    fn zeros(&mut self, n: usize) -> &mut Self {
        self.0.resize(self.0.len() + n, 0);
        self
    }
    fn parse(&self) -> Result<GgufFile, GgufError> {
        GgufFile::from_bytes(self.0.clone())
    }
}

/// Two F32 tensors of 8 elements, `a` at `off_a` and `b` at `off_b`, with 64 data bytes.
fn two_tensors(off_a: u64, off_b: u64) -> Raw {
    let mut r = Raw::header(3, 2, 1);
    r.kv_u32("general.quantization_version", 2);
    r.tensor("a", &[8], 0, off_a).tensor("b", &[8], 0, off_b);
    r.pad(32).zeros(64);
    r
}

fn err(r: &Raw) -> GgufError {
    match r.parse() {
        Ok(_) => panic!("malformed file was accepted"),
        Err(e) => e,
    }
}

#[test]
fn the_hand_made_base_file_is_valid() {
    let f = two_tensors(0, 32).parse().unwrap();
    assert_eq!(f.tensors().len(), 2);
    assert_eq!(f.tensor("b").unwrap().data.len(), 32);
    assert_eq!(f.get_u32("general.quantization_version").unwrap(), 2);
}

#[test]
fn bad_magic() {
    let mut r = two_tensors(0, 32);
    r.0[..4].copy_from_slice(b"GGML");
    assert!(matches!(err(&r), GgufError::BadMagic { found } if found == b"GGML"));
    assert!(matches!(err(&Raw(vec![])), GgufError::BadMagic { .. }));
    assert!(matches!(
        err(&Raw(b"PK\x03\x04".to_vec())),
        GgufError::BadMagic { .. }
    ));
}

#[test]
fn unsupported_versions() {
    for v in [0u32, 1, 4, 99, 3 << 24] {
        let mut r = two_tensors(0, 32);
        r.0[4..8].copy_from_slice(&v.to_le_bytes());
        let e = err(&r);
        assert!(
            matches!(e, GgufError::UnsupportedVersion { version } if version == v),
            "{v}"
        );
        let msg = e.to_string();
        match v {
            1 => assert!(msg.contains("version 1 is not supported"), "{msg}"),
            0x0300_0000 => assert!(msg.contains("big-endian"), "{msg}"),
            _ => assert!(msg.contains(&v.to_string()), "{msg}"),
        }
    }
}

#[test]
fn counts_larger_than_the_file_could_hold() {
    let mut r = two_tensors(0, 32);
    r.0[8..16].copy_from_slice(&(1u64 << 40).to_le_bytes());
    assert!(
        matches!(err(&r), GgufError::TooManyTensors { count, max } if count == 1 << 40 && max < 10)
    );
    let mut r = two_tensors(0, 32);
    r.0[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(
        err(&r),
        GgufError::TooManyKeys {
            count: u64::MAX,
            ..
        }
    ));
}

#[test]
fn tensor_offset_past_the_end() {
    let e = err(&two_tensors(0, 4096));
    assert!(
        matches!(e, GgufError::OffsetPastEnd { ref tensor, offset: 4096, data_len: 64 } if tensor == "b"),
        "{e}"
    );
}

#[test]
fn tensor_data_running_past_the_end_is_truncation_in_the_data_section() {
    let mut r = two_tensors(0, 32);
    r.0.truncate(r.0.len() - 1);
    let e = err(&r);
    assert!(
        matches!(e, GgufError::Truncated { section: Section::Data, ref what, .. } if what.contains("'b'")),
        "{e}"
    );
}

#[test]
fn overlapping_tensors() {
    let e = err(&two_tensors(0, 0));
    assert!(
        matches!(e, GgufError::OverlappingTensors { ref first, ref second } if first == "a" && second == "b"),
        "{e}"
    );
    // Partial overlap: a has 16 elements (64 bytes) and b starts inside it.
    let mut r = Raw::header(3, 2, 0);
    r.tensor("a", &[16], 0, 0)
        .tensor("b", &[8], 0, 32)
        .pad(32)
        .zeros(96);
    assert!(matches!(err(&r), GgufError::OverlappingTensors { .. }));
    // Zero-sized tensors overlap nothing.
    let mut r = Raw::header(3, 2, 0);
    r.tensor("a", &[8], 0, 0)
        .tensor("empty", &[0, 4], 0, 0)
        .pad(32)
        .zeros(32);
    assert_eq!(r.parse().unwrap().tensor("empty").unwrap().data.len(), 0);
}

#[test]
fn dims_that_overflow() {
    let mut r = Raw::header(3, 1, 0);
    r.tensor("big", &[1 << 32, 1 << 32], 0, 0).pad(32);
    let e = err(&r);
    assert!(
        matches!(e, GgufError::ShapeOverflow { ref tensor, .. } if tensor == "big"),
        "{e}"
    );
    // Elements fit in 63 bits but bytes do not.
    let mut r = Raw::header(3, 1, 0);
    r.tensor("big", &[1 << 31, 1 << 31], 0, 0).pad(32);
    assert!(matches!(err(&r), GgufError::ShapeOverflow { .. }));
    // The product wraps to a small number in 64 bits.
    let mut r = Raw::header(3, 1, 0);
    r.tensor("wrap", &[1 << 33, 1 << 33, 1 << 33, 1], 0, 0)
        .pad(32);
    assert!(matches!(err(&r), GgufError::ShapeOverflow { .. }));
}

#[test]
fn too_many_dims() {
    let mut r = Raw::header(3, 1, 0);
    r.tensor("t", &[1, 1, 1, 1, 1], 0, 0).pad(32).zeros(32);
    assert!(matches!(err(&r), GgufError::TooManyDims { ref tensor, n_dims: 5 } if tensor == "t"));
}

#[test]
fn unknown_tensor_type_ids() {
    for id in [4u32, 5, 31, 43, 1000, u32::MAX] {
        let mut r = Raw::header(3, 1, 0);
        r.tensor("t", &[32], id, 0).pad(32).zeros(256);
        let e = err(&r);
        assert!(
            matches!(e, GgufError::UnknownTensorType { ref tensor, id: got } if tensor == "t" && got == id),
            "{id}: {e}"
        );
    }
}

#[test]
fn row_length_not_a_multiple_of_the_block_size() {
    let mut r = Raw::header(3, 1, 0);
    r.tensor("q", &[48, 2], GgmlType::Q8_0.id(), 0)
        .pad(32)
        .zeros(256);
    let e = err(&r);
    assert!(
        matches!(e, GgufError::RowNotBlockMultiple { ref tensor, ne0: 48, block_size: 32, .. } if tensor == "q"),
        "{e}"
    );
}

#[test]
fn misaligned_tensor_offset() {
    let e = err(&two_tensors(0, 36));
    assert!(
        matches!(e, GgufError::MisalignedTensor { ref tensor, offset: 36, alignment: 32 } if tensor == "b"),
        "{e}"
    );
}

#[test]
fn string_length_past_the_end() {
    let mut r = Raw::header(3, 0, 1);
    r.string(b"general.name")
        .u32(8)
        .u64(10_000)
        .0
        .extend_from_slice(b"short");
    let e = err(&r);
    assert!(
        matches!(e, GgufError::StringPastEnd { section: Section::Metadata, len: 10_000, available: 5, ref what } if what.contains("general.name")),
        "{e}"
    );
    // A key's own length.
    let mut r = Raw::header(3, 0, 1);
    r.u64(1000).zeros(16);
    assert!(matches!(
        err(&r),
        GgufError::StringPastEnd {
            section: Section::Metadata,
            ..
        }
    ));
    // A tensor name's length.
    let mut r = Raw::header(3, 1, 0);
    r.u64(40).zeros(24);
    assert!(matches!(
        err(&r),
        GgufError::StringPastEnd {
            section: Section::TensorInfo,
            ..
        }
    ));
    // Longer than any limit: refused before looking at the file size.
    let mut r = Raw::header(3, 0, 1);
    r.string(b"k").u32(8).u64(u64::MAX).zeros(8);
    assert!(matches!(
        err(&r),
        GgufError::StringTooLong { len: u64::MAX, .. }
    ));
    let mut r = Raw::header(3, 1, 0);
    r.tensor(&"x".repeat(64), &[8], 0, 0).pad(32).zeros(32);
    assert!(matches!(
        err(&r),
        GgufError::StringTooLong {
            section: Section::TensorInfo,
            len: 64,
            ..
        }
    ));
}

#[test]
fn metadata_defects_name_their_key() {
    let one = |f: &dyn Fn(&mut Raw)| {
        let mut r = Raw::header(3, 0, 1);
        f(&mut r);
        err(&r)
    };
    let e = one(&|r| {
        r.string(b"k.type").u32(13).u32(0);
    });
    assert!(
        matches!(e, GgufError::UnknownValueType { ref key, id: 13 } if key == "k.type"),
        "{e}"
    );
    let e = one(&|r| {
        r.string(b"k.bool").u32(7).u8(2);
    });
    assert!(
        matches!(e, GgufError::InvalidBool { ref key, byte: 2 } if key == "k.bool"),
        "{e}"
    );
    let e = one(&|r| {
        r.string(b"").u32(4).u32(0);
    });
    assert!(matches!(e, GgufError::EmptyKey { index: 0 }), "{e}");
    let e = one(&|r| {
        r.string(b"k\xff").u32(4).u32(0);
    });
    assert!(
        matches!(
            e,
            GgufError::NameNotUtf8 {
                section: Section::Metadata,
                ..
            }
        ),
        "{e}"
    );
    let e = one(&|r| {
        r.string(b"general.alignment").u32(10).u64(32);
    });
    assert!(
        matches!(e, GgufError::AlignmentType { ref found } if found == "u64"),
        "{e}"
    );
    for bad in [0u32, 48] {
        let e = one(&|r| {
            r.kv_u32("general.alignment", bad);
        });
        assert!(
            matches!(e, GgufError::BadAlignment { alignment } if alignment == u64::from(bad)),
            "{e}"
        );
    }
    // An array longer than the limit.
    let e = one(&|r| {
        r.string(b"k.arr").u32(9).u32(0).u64(1 << 31).zeros(100);
    });
    assert!(
        matches!(e, GgufError::ArrayTooLong { ref key, len, max, .. } if key == "k.arr" && len == 1 << 31 && max == perch_gguf::MAX_ARRAY_LEN),
        "{e}"
    );
    // An array claiming more elements than the file holds: refused before allocating.
    let e = one(&|r| {
        r.string(b"k.strs").u32(9).u32(8).u64(1 << 29).zeros(100);
    });
    assert!(
        matches!(e, GgufError::Truncated { section: Section::Metadata, ref what, end, .. } if what.contains("k.strs") && end > 1 << 32),
        "{e}"
    );
    // Bad bool inside an array.
    let e = one(&|r| {
        r.string(b"k.bools").u32(9).u32(7).u64(3).u8(1).u8(0).u8(9);
    });
    assert!(matches!(e, GgufError::InvalidBool { byte: 9, .. }), "{e}");
    // Unknown element type of an array.
    let e = one(&|r| {
        r.string(b"k.arr").u32(9).u32(77).u64(0);
    });
    assert!(
        matches!(e, GgufError::UnknownValueType { id: 77, .. }),
        "{e}"
    );
    // Duplicate keys.
    let mut r = Raw::header(3, 0, 2);
    r.kv_u32("dup", 1).kv_u32("dup", 2);
    assert!(matches!(err(&r), GgufError::DuplicateKey { ref key } if key == "dup"));
}

/// `depth` arrays nested in each other, the innermost holding one u8.
fn nested(depth: usize) -> Raw {
    let mut r = Raw::header(3, 0, 1);
    r.string(b"k.nest").u32(9);
    for _ in 1..depth {
        r.u32(9).u64(1);
    }
    r.u32(0).u64(1).u8(42);
    r
}

#[test]
fn nesting_depth_is_limited() {
    let f = nested(perch_gguf::MAX_NESTING_DEPTH).parse().unwrap();
    assert!(f.get_array("k.nest").is_ok());
    let e = err(&nested(perch_gguf::MAX_NESTING_DEPTH + 1));
    assert!(
        matches!(e, GgufError::NestingTooDeep { ref key, .. } if key == "k.nest"),
        "{e}"
    );
    // Deep enough to overflow a stack if nesting were not limited.
    let e = err(&nested(100_000));
    assert!(matches!(e, GgufError::NestingTooDeep { .. }), "{e}");
}

#[test]
fn duplicate_tensor_names() {
    let mut r = Raw::header(3, 2, 0);
    r.tensor("t", &[8], 0, 0)
        .tensor("t", &[8], 0, 32)
        .pad(32)
        .zeros(64);
    assert!(matches!(err(&r), GgufError::DuplicateTensor { ref name } if name == "t"));
}

fn reference() -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/all_types.gguf")).unwrap()
}

fn find(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len())
        .position(|w| w == needle)
        .expect("pattern in reference file")
}

/// Where the sections of the gguf-py reference file start, found by looking for its bytes.
struct Layout {
    infos: usize,
    padding: usize,
    data: usize,
}

fn layout(b: &[u8]) -> Layout {
    let mut first_name = 10u64.to_le_bytes().to_vec();
    first_name.extend_from_slice(b"f32.weight");
    let infos = find(b, &first_name);
    // The last tensor info ends with its offset; the data section starts at the next 32.
    let mut last = 10u64.to_le_bytes().to_vec();
    last.extend_from_slice(b"i32.weight");
    let padding = find(b, &last) + last.len() + 4 + 8 + 4 + 8;
    Layout {
        infos,
        padding,
        data: padding.next_multiple_of(32),
    }
}

#[test]
fn truncation_inside_each_section_is_reported_in_that_section() {
    let b = reference();
    let l = layout(&b);
    assert!(GgufFile::from_bytes(b.clone()).is_ok());
    // Targeted cuts, one inside each section.
    let cut = |n: usize| GgufFile::from_bytes(b[..n].to_vec()).unwrap_err();
    assert!(matches!(
        cut(10),
        GgufError::Truncated {
            section: Section::Header,
            ..
        }
    ));
    // (Late in the metadata, so that the header's count checks still pass.)
    let f64_value = find(&b, b"a.f64") + 5 + 4 + 4 + 8 + 3;
    let e = cut(f64_value);
    assert!(
        matches!(e, GgufError::Truncated { section: Section::Metadata, ref what, .. } if what.contains("a.f64")),
        "{e}"
    );
    let e = cut(find(&b, b"a.f64") + 2);
    assert!(
        matches!(e, GgufError::StringPastEnd { section: Section::Metadata, ref what, .. } if what.contains("key of metadata entry")),
        "{e}"
    );
    let e = cut(find(&b, b"q8_0.weight") + 11 + 6);
    assert!(
        matches!(e, GgufError::Truncated { section: Section::TensorInfo, ref what, .. } if what.contains("q8_0.weight")),
        "{e}"
    );
    if l.data > l.padding + 1 {
        let e = cut(l.padding + 1);
        assert!(
            matches!(e, GgufError::Truncated { section: Section::Data, ref what, .. } if what.contains("padding")),
            "{e}"
        );
    }
    let e = cut(l.data + 10);
    assert!(
        matches!(e, GgufError::Truncated { section: Section::Data, ref what, .. } if what.contains("f32.weight")),
        "{e}"
    );
    // Every cut: an error (never a panic) in the section the cut falls in. Counts checked in
    // the header against the remaining size may fire first for any cut. A cut in the padding
    // after the last tensor loses nothing and is accepted.
    let last = b.len() - 32 + 12; // i32.weight: 3 elements, the last tensor, padded to 32.
    assert_eq!(
        &b[last - 4..],
        &[
            2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
        ]
    );
    for n in last..b.len() {
        let f = GgufFile::from_bytes(b[..n].to_vec()).unwrap();
        assert_eq!(
            f.tensor("i32.weight").unwrap().data,
            &[0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0]
        );
    }
    for n in 1..last {
        let e = cut(n);
        let want = if n < 24 {
            Section::Header
        } else if n < l.infos {
            Section::Metadata
        } else if n < l.padding {
            Section::TensorInfo
        } else {
            Section::Data
        };
        let got = e.section().unwrap();
        let count_error = matches!(
            e,
            GgufError::TooManyTensors { .. } | GgufError::TooManyKeys { .. }
        );
        assert!(
            got == want || count_error,
            "cut at {n}: expected {want}, got {e}"
        );
    }
}

#[test]
fn single_byte_damage_never_panics_and_what_parses_round_trips() {
    let b = reference();
    let mut accepted = 0;
    for i in 0..b.len() {
        for v in [0u8, 1, 0x7f, 0xff, b[i] ^ 0x10] {
            let mut d = b.clone();
            d[i] = v;
            if let Ok(f) = GgufFile::from_bytes(d) {
                accepted += 1;
                // Whatever parses can be written and parses back to the same content.
                let again = GgufFile::from_bytes(f.to_bytes().unwrap()).unwrap();
                assert_eq!(again.to_bytes().unwrap(), f.to_bytes().unwrap());
            }
        }
    }
    assert!(accepted > 0);
}
