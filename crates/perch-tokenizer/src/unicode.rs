//! Unicode facts the tokenizers need: general-category flags per code point, the GPT-2
//! byte-to-character map, and small UTF-8 helpers.
//!
//! The category tables come from `regex-syntax` (the Unicode data the `regex` and
//! `fancy-regex` crates match `\p{L}` with), so the hand-written pre-tokenizer splitters and
//! the regex ones agree on what a letter is.

use std::sync::OnceLock;

use regex_syntax::hir::{Class, HirKind};

/// `\p{L}`: letters.
pub const LETTER: u8 = 1 << 0;
/// `\p{N}`: numbers.
pub const NUMBER: u8 = 1 << 1;
/// `\p{P}`: punctuation.
pub const PUNCT: u8 = 1 << 2;
/// `\p{S}`: symbols.
pub const SYMBOL: u8 = 1 << 3;
/// `\p{M}`: combining marks.
pub const MARK: u8 = 1 << 4;
/// `\p{C}`: control, format, unassigned, private use, surrogate.
pub const OTHER: u8 = 1 << 5;
/// `\p{Z}`: separators.
pub const SEPARATOR: u8 = 1 << 6;
/// `\s`: the `White_Space` property.
pub const WHITESPACE: u8 = 1 << 7;

const N_CODEPOINTS: usize = 0x11_0000;

fn class_ranges(pattern: &str) -> Vec<(u32, u32)> {
    let hir = regex_syntax::ParserBuilder::new()
        .build()
        .parse(pattern)
        .expect("built-in Unicode class pattern parses");
    match hir.kind() {
        HirKind::Class(Class::Unicode(cls)) => cls
            .ranges()
            .iter()
            .map(|r| (r.start() as u32, r.end() as u32))
            .collect(),
        other => unreachable!("pattern {pattern} is not a Unicode class: {other:?}"),
    }
}

fn table() -> &'static [u8] {
    static TABLE: OnceLock<Box<[u8]>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = vec![0u8; N_CODEPOINTS].into_boxed_slice();
        for (pattern, bit) in [
            (r"\p{L}", LETTER),
            (r"\p{N}", NUMBER),
            (r"\p{P}", PUNCT),
            (r"\p{S}", SYMBOL),
            (r"\p{M}", MARK),
            (r"\p{C}", OTHER),
            (r"\p{Z}", SEPARATOR),
            (r"\s", WHITESPACE),
        ] {
            for (lo, hi) in class_ranges(pattern) {
                for f in &mut t[lo as usize..=hi as usize] {
                    *f |= bit;
                }
            }
        }
        // Surrogates are not chars, so `\p{C}` as a char class leaves them out; they cannot
        // occur in a `str` either, so nothing to do.
        t
    })
}

/// The category flags of `c` (a combination of the constants in this module).
#[inline]
pub fn flags(c: char) -> u8 {
    table()[c as usize]
}

/// Forces the category table to be built (so the first `encode` does not pay for it).
pub fn warm_up() {
    let _ = table();
}

/// Whether `c` is in one of the CJK ideograph blocks BERT isolates (the ranges HuggingFace's
/// `BertNormalizer` uses).
pub fn is_cjk_ideograph(c: char) -> bool {
    matches!(c as u32,
        0x4E00..=0x9FFF
        | 0x3400..=0x4DBF
        | 0x20000..=0x2A6DF
        | 0x2A700..=0x2B73F
        | 0x2B740..=0x2B81F
        | 0x2B920..=0x2CEAF
        | 0xF900..=0xFAFF
        | 0x2F800..=0x2FA1F)
}

/// GPT-2's reversible byte-to-character map: printable Latin-1 bytes map to themselves, the
/// other 68 bytes to U+0100.. in byte order.
pub struct ByteMap {
    /// UTF-8 of the character for each byte (1 or 2 bytes long).
    to_char: [([u8; 2], u8); 256],
    /// Byte for each character U+0000..U+0143 that is in the map.
    from_char: [Option<u8>; 0x144],
}

impl ByteMap {
    fn build() -> ByteMap {
        let mut to_char = [([0u8; 2], 0u8); 256];
        let mut from_char = [None; 0x144];
        let mut extra = 0u32;
        for b in 0..=255u32 {
            let printable = (0x21..=0x7E).contains(&b)
                || (0xA1..=0xAC).contains(&b)
                || (0xAE..=0xFF).contains(&b);
            let cp = if printable {
                b
            } else {
                extra += 1;
                255 + extra
            };
            let c = char::from_u32(cp).expect("map targets are below U+0144");
            let mut buf = [0u8; 4];
            let s = c.encode_utf8(&mut buf);
            let mut utf8 = [0u8; 2];
            utf8[..s.len()].copy_from_slice(s.as_bytes());
            to_char[b as usize] = (utf8, s.len() as u8);
            from_char[cp as usize] = Some(b as u8);
        }
        ByteMap { to_char, from_char }
    }

    /// The shared map.
    pub fn get() -> &'static ByteMap {
        static MAP: OnceLock<ByteMap> = OnceLock::new();
        MAP.get_or_init(ByteMap::build)
    }

    /// UTF-8 of the character standing for byte `b`.
    #[inline]
    pub fn encode(&self, b: u8) -> &[u8] {
        let (buf, len) = &self.to_char[b as usize];
        &buf[..*len as usize]
    }

    /// The byte a character stands for, if it is one of the 256 map characters.
    #[inline]
    pub fn decode(&self, c: char) -> Option<u8> {
        self.from_char.get(c as usize).copied().flatten()
    }
}

/// Length of the longest prefix of `bytes` that is complete UTF-8, treating a sequence that
/// can never become valid as complete (it will be replaced, not waited for).
///
/// Returns `complete`: `bytes[..complete]` can be emitted now (lossily);
/// `bytes[complete..]` is the start of a character that later bytes may complete.
pub fn split_incomplete_utf8(bytes: &[u8]) -> usize {
    // Only the last up-to-3 bytes can be an incomplete character.
    let n = bytes.len();
    let start = n.saturating_sub(3);
    for i in (start..n).rev() {
        let b = bytes[i];
        if b & 0xC0 == 0x80 {
            continue; // continuation byte: keep looking for the lead
        }
        let need = match b {
            0xC2..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF4 => 4,
            _ => return n, // ASCII or a byte that never leads: nothing to wait for
        };
        let have = n - i;
        if have >= need {
            return n;
        }
        // An incomplete sequence: hold it back only if what we have so far can still be
        // the start of a valid character.
        return if std::str::from_utf8(&bytes[i..])
            .err()
            .is_some_and(|e| e.error_len().is_none())
        {
            i
        } else {
            n
        };
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories_of_known_characters() {
        assert_eq!(flags('a'), LETTER);
        assert_eq!(flags('Z'), LETTER);
        assert_eq!(flags('7'), NUMBER);
        assert_eq!(flags('½'), NUMBER);
        assert_eq!(flags('!'), PUNCT);
        assert_eq!(flags('$'), SYMBOL);
        assert_eq!(flags('\u{301}'), MARK);
        assert_eq!(flags(' '), SEPARATOR | WHITESPACE);
        assert_eq!(flags('\n'), OTHER | WHITESPACE);
        assert_eq!(flags('\u{3000}'), SEPARATOR | WHITESPACE);
        assert_eq!(flags('\u{200D}'), OTHER);
        assert_eq!(flags('我'), LETTER);
        assert_eq!(flags('🦙'), SYMBOL);
    }

    #[test]
    fn byte_map_matches_gpt2() {
        let m = ByteMap::get();
        // Values from GPT-2's bytes_to_unicode(): space is 'Ġ' (U+0120), newline 'Ċ' (U+010A).
        assert_eq!(m.encode(b' '), "Ġ".as_bytes());
        assert_eq!(m.encode(b'\n'), "Ċ".as_bytes());
        assert_eq!(m.encode(b'A'), b"A");
        assert_eq!(m.encode(0xAD), "Ń".as_bytes());
        assert_eq!(m.encode(0x00), "Ā".as_bytes());
        for b in 0..=255u8 {
            let s = std::str::from_utf8(m.encode(b)).unwrap();
            let c = s.chars().next().unwrap();
            assert_eq!(m.decode(c), Some(b));
        }
        assert_eq!(m.decode('€'), None);
    }

    #[test]
    fn incomplete_utf8_is_held_back() {
        let s = "a😀".as_bytes();
        for cut in 0..=s.len() {
            let keep = split_incomplete_utf8(&s[..cut]);
            assert_eq!(keep, if cut > 1 && cut < s.len() { 1 } else { cut });
        }
        // A lone continuation byte or an invalid lead is not waited for.
        assert_eq!(split_incomplete_utf8(&[b'a', 0x80]), 2);
        assert_eq!(split_incomplete_utf8(&[0xFF]), 1);
        // E0 80 can never be valid (overlong): not held.
        assert_eq!(split_incomplete_utf8(&[0xE0, 0x80]), 2);
    }
}
