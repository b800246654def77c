//! Ordered metadata with typed accessors.
//!
//! Every accessor comes in two forms: `get_*` (missing key is an error) and `opt_*` (missing
//! key is `Ok(None)`); a value of the wrong type is an error in both, naming the key, the type
//! asked for and the type found. Integer accessors accept any integer type whose value fits,
//! since writers disagree on widths (`context_length` is `u32` in one file, `u64` or `i32` in
//! another).

use std::collections::HashMap;

use crate::error::{GgufError, Result};
use crate::value::{Array, GgufString, Value};

/// The metadata of a file: key/value pairs in file order, with lookup by key.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Metadata {
    entries: Vec<(String, Value)>,
    index: HashMap<String, usize>,
}

fn wrong(key: &str, expected: &'static str, v: &Value) -> GgufError {
    GgufError::WrongType {
        key: key.to_string(),
        expected,
        found: v.type_description(),
    }
}

fn missing(key: &str) -> GgufError {
    GgufError::MissingKey {
        key: key.to_string(),
    }
}

macro_rules! int_accessor {
    ($get:ident, $opt:ident, $t:ty, $name:literal) => {
        #[doc = concat!("The value of `key` as `", $name, "`: any integer type whose value fits.")]
        pub fn $get(&self, key: &str) -> Result<$t> {
            self.$opt(key)?.ok_or_else(|| missing(key))
        }

        #[doc = concat!("Like [`Self::", stringify!($get), "`], with `None` for a missing key.")]
        pub fn $opt(&self, key: &str) -> Result<Option<$t>> {
            let Some(v) = self.get(key) else {
                return Ok(None);
            };
            let i = v.as_integer().ok_or_else(|| wrong(key, $name, v))?;
            <$t>::try_from(i)
                .map(Some)
                .map_err(|_| GgufError::OutOfRange {
                    key: key.to_string(),
                    value: i,
                    expected: $name,
                })
        }
    };
}

macro_rules! slice_accessor {
    ($get:ident, $opt:ident, $t:ty, $variant:ident, $name:literal) => {
        #[doc = concat!("The value of `key` as a slice of `", $name, "` (an array of exactly that type).")]
        pub fn $get(&self, key: &str) -> Result<&[$t]> {
            self.$opt(key)?.ok_or_else(|| missing(key))
        }

        #[doc = concat!("Like [`Self::", stringify!($get), "`], with `None` for a missing key.")]
        pub fn $opt(&self, key: &str) -> Result<Option<&[$t]>> {
            match self.get(key) {
                None => Ok(None),
                Some(Value::Array(Array::$variant(v))) => Ok(Some(v)),
                Some(v) => Err(wrong(key, concat!("array of ", $name), v)),
            }
        }
    };
}

impl Metadata {
    /// Metadata from entries in order. Fails on a duplicate or empty key.
    pub fn from_entries(entries: Vec<(String, Value)>) -> Result<Self> {
        let mut index = HashMap::with_capacity(entries.len());
        for (i, (k, _)) in entries.iter().enumerate() {
            if k.is_empty() {
                return Err(GgufError::EmptyKey { index: i as u64 });
            }
            if index.insert(k.clone(), i).is_some() {
                return Err(GgufError::DuplicateKey { key: k.clone() });
            }
        }
        Ok(Metadata { entries, index })
    }

    /// The entries in file order.
    pub fn entries(&self) -> &[(String, Value)] {
        &self.entries
    }

    /// The entries, by value.
    pub fn into_entries(self) -> Vec<(String, Value)> {
        self.entries
    }

    /// Iterates over keys and values in file order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &Value)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether `key` is present.
    pub fn contains(&self, key: &str) -> bool {
        self.index.contains_key(key)
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.index.get(key).map(|&i| &self.entries[i].1)
    }

    /// Sets `key` to `value`: replaces the value in place if the key exists (keeping its
    /// position), appends otherwise.
    pub fn set(&mut self, key: impl Into<String>, value: impl Into<Value>) {
        let key = key.into();
        let value = value.into();
        match self.index.get(&key) {
            Some(&i) => self.entries[i].1 = value,
            None => {
                self.index.insert(key.clone(), self.entries.len());
                self.entries.push((key, value));
            }
        }
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<Value> {
        let i = self.index.remove(key)?;
        let (_, v) = self.entries.remove(i);
        for j in self.index.values_mut() {
            if *j > i {
                *j -= 1;
            }
        }
        Some(v)
    }

    /// The value of `key`, or an error naming the missing key.
    pub fn require(&self, key: &str) -> Result<&Value> {
        self.get(key).ok_or_else(|| missing(key))
    }

    int_accessor!(get_u32, opt_u32, u32, "u32");
    int_accessor!(get_u64, opt_u64, u64, "u64");
    int_accessor!(get_usize, opt_usize, usize, "usize");
    int_accessor!(get_i32, opt_i32, i32, "i32");
    int_accessor!(get_i64, opt_i64, i64, "i64");

    /// The value of `key` as `f32`: an `f32`, or an `f64` (rounded).
    pub fn get_f32(&self, key: &str) -> Result<f32> {
        self.opt_f32(key)?.ok_or_else(|| missing(key))
    }

    /// Like [`Self::get_f32`], with `None` for a missing key.
    pub fn opt_f32(&self, key: &str) -> Result<Option<f32>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::F32(x)) => Ok(Some(*x)),
            Some(Value::F64(x)) => Ok(Some(*x as f32)),
            Some(v) => Err(wrong(key, "f32", v)),
        }
    }

    /// The value of `key` as `bool`.
    pub fn get_bool(&self, key: &str) -> Result<bool> {
        self.opt_bool(key)?.ok_or_else(|| missing(key))
    }

    /// Like [`Self::get_bool`], with `None` for a missing key.
    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(wrong(key, "bool", v)),
        }
    }

    /// The value of `key` as text; an error if it is not a string or not valid UTF-8.
    pub fn get_str(&self, key: &str) -> Result<&str> {
        self.opt_str(key)?.ok_or_else(|| missing(key))
    }

    /// Like [`Self::get_str`], with `None` for a missing key.
    pub fn opt_str(&self, key: &str) -> Result<Option<&str>> {
        match self.opt_bytes(key)? {
            None => Ok(None),
            Some(b) => std::str::from_utf8(b)
                .map(Some)
                .map_err(|_| GgufError::NotUtf8 {
                    key: key.to_string(),
                    index: None,
                }),
        }
    }

    /// The raw bytes of a string value.
    pub fn get_bytes(&self, key: &str) -> Result<&[u8]> {
        self.opt_bytes(key)?.ok_or_else(|| missing(key))
    }

    /// Like [`Self::get_bytes`], with `None` for a missing key.
    pub fn opt_bytes(&self, key: &str) -> Result<Option<&[u8]>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_bytes())),
            Some(v) => Err(wrong(key, "string", v)),
        }
    }

    /// A string array as text; an error naming the key and element if one is not UTF-8.
    pub fn get_str_array(&self, key: &str) -> Result<Vec<&str>> {
        self.opt_str_array(key)?.ok_or_else(|| missing(key))
    }

    /// Like [`Self::get_str_array`], with `None` for a missing key.
    pub fn opt_str_array(&self, key: &str) -> Result<Option<Vec<&str>>> {
        let Some(strings) = self.opt_string_array(key)? else {
            return Ok(None);
        };
        strings
            .iter()
            .enumerate()
            .map(|(i, s)| {
                s.as_str().map_err(|_| GgufError::NotUtf8 {
                    key: key.to_string(),
                    index: Some(i),
                })
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    /// A string array as raw strings (no UTF-8 check: for vocabularies with byte tokens).
    pub fn get_string_array(&self, key: &str) -> Result<&[GgufString]> {
        self.opt_string_array(key)?.ok_or_else(|| missing(key))
    }

    /// Like [`Self::get_string_array`], with `None` for a missing key.
    pub fn opt_string_array(&self, key: &str) -> Result<Option<&[GgufString]>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(Array::String(v))) => Ok(Some(v)),
            Some(v) => Err(wrong(key, "array of string", v)),
        }
    }

    /// The array of `key`, whatever its element type.
    pub fn get_array(&self, key: &str) -> Result<&Array> {
        self.opt_array(key)?.ok_or_else(|| missing(key))
    }

    /// Like [`Self::get_array`], with `None` for a missing key.
    pub fn opt_array(&self, key: &str) -> Result<Option<&Array>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(a)) => Ok(Some(a)),
            Some(v) => Err(wrong(key, "array", v)),
        }
    }

    slice_accessor!(get_f32_array, opt_f32_array, f32, F32, "f32");
    slice_accessor!(get_i32_array, opt_i32_array, i32, I32, "i32");
    slice_accessor!(get_u32_array, opt_u32_array, u32, U32, "u32");
    slice_accessor!(get_u8_array, opt_u8_array, u8, U8, "u8");
    slice_accessor!(get_bool_array, opt_bool_array, bool, Bool, "bool");
}

impl FromIterator<(String, Value)> for Metadata {
    /// Collects entries; a later duplicate key replaces the earlier value in place.
    fn from_iter<I: IntoIterator<Item = (String, Value)>>(iter: I) -> Self {
        let mut m = Metadata::default();
        for (k, v) in iter {
            m.set(k, v);
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn md() -> Metadata {
        Metadata::from_entries(vec![
            ("a.u8".into(), Value::U8(7)),
            ("a.i32".into(), Value::I32(-3)),
            ("a.u64".into(), Value::U64(u64::MAX)),
            ("a.str".into(), "hi".into()),
            (
                "a.bad".into(),
                Value::String(GgufString::from_bytes(vec![0xff])),
            ),
            ("a.f64".into(), Value::F64(0.5)),
            ("a.toks".into(), vec!["x", "y"].into()),
            ("a.f".into(), vec![1.0f32, 2.0].into()),
        ])
        .unwrap()
    }

    #[test]
    fn integer_accessors_widen_and_check_range() {
        let m = md();
        assert_eq!(m.get_u32("a.u8").unwrap(), 7);
        assert_eq!(m.get_usize("a.u8").unwrap(), 7);
        assert_eq!(m.get_i32("a.i32").unwrap(), -3);
        assert_eq!(m.get_u64("a.u64").unwrap(), u64::MAX);
        let e = m.get_u32("a.i32").unwrap_err();
        assert!(
            matches!(e, GgufError::OutOfRange { ref key, value: -3, expected: "u32" } if key == "a.i32")
        );
        assert!(matches!(
            m.get_u32("a.u64"),
            Err(GgufError::OutOfRange { .. })
        ));
        let e = m.get_u32("a.str").unwrap_err();
        assert_eq!(
            e.to_string(),
            "metadata 'a.str': expected u32, found string"
        );
        assert!(
            matches!(m.get_u32("nope"), Err(GgufError::MissingKey { ref key }) if key == "nope")
        );
        assert_eq!(m.opt_u32("nope").unwrap(), None);
        assert!(m.opt_u32("a.str").is_err());
    }

    #[test]
    fn string_and_array_accessors() {
        let m = md();
        assert_eq!(m.get_str("a.str").unwrap(), "hi");
        assert!(matches!(
            m.get_str("a.bad"),
            Err(GgufError::NotUtf8 { index: None, .. })
        ));
        assert_eq!(m.get_bytes("a.bad").unwrap(), &[0xff]);
        assert_eq!(m.get_str_array("a.toks").unwrap(), vec!["x", "y"]);
        assert_eq!(m.get_f32_array("a.f").unwrap(), &[1.0, 2.0]);
        let e = m.get_i32_array("a.f").unwrap_err();
        assert_eq!(
            e.to_string(),
            "metadata 'a.f': expected array of i32, found array of f32"
        );
        assert_eq!(m.get_f32("a.f64").unwrap(), 0.5);
        assert!(m.get_bool("a.u8").is_err());
    }

    #[test]
    fn set_and_remove_keep_order_and_index() {
        let mut m = md();
        m.set("a.u8", 9u8);
        assert_eq!(m.entries()[0], ("a.u8".to_string(), Value::U8(9)));
        assert_eq!(m.remove("a.i32"), Some(Value::I32(-3)));
        assert_eq!(m.get_str("a.str").unwrap(), "hi");
        m.set("z", true);
        assert_eq!(m.entries().last().unwrap().0, "z");
        assert!(m.get_bool("z").unwrap());
        assert!(matches!(
            Metadata::from_entries(vec![("k".into(), 1u8.into()), ("k".into(), 2u8.into())]),
            Err(GgufError::DuplicateKey { .. })
        ));
    }
}
