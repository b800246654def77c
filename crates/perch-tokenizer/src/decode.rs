//! Token ids back to text: per-token pieces, whole-sequence decoding (llama.cpp's
//! `llama_detokenize`), and streaming decoding that never splits a UTF-8 character.

use std::ops::Deref;

use crate::tables::Tables;
use crate::unicode::{ByteMap, split_incomplete_utf8};
use crate::vocab::TokenAttr;
use crate::{Tokenizer, TokenizerError, VocabKind};

/// The rendered bytes of every token (as with `render_special = true`), concatenated.
pub(crate) struct Pieces {
    bytes: Vec<u8>,
    offs: Vec<u32>,
}

impl Pieces {
    /// Renders every token: control, unknown and user-defined tokens as their text; normal
    /// tokens with `▁` turned back into spaces (SentencePiece-style) or through the GPT-2
    /// byte map (byte-level BPE); byte tokens as their byte; anything else as nothing.
    pub fn build(t: &Tables, kind: VocabKind, escape_whitespaces: bool) -> Pieces {
        let mut bytes = Vec::with_capacity(t.len() * 6);
        let mut offs = Vec::with_capacity(t.len() + 1);
        offs.push(0);
        let map = ByteMap::get();
        for id in 0..t.len() as u32 {
            let attr = t.attrs[id as usize];
            let text = t.text(id);
            if attr.any(
                TokenAttr::CONTROL
                    .with(TokenAttr::UNKNOWN)
                    .with(TokenAttr::USER_DEFINED),
            ) {
                bytes.extend_from_slice(text);
            } else if attr.is_normal() {
                if kind == VocabKind::Bpe && !escape_whitespaces {
                    decode_byte_level(map, text, &mut bytes);
                } else {
                    unescape_whitespace(text, &mut bytes);
                }
            } else if attr.is_byte() {
                bytes.push(parse_hex_byte(text));
            }
            offs.push(bytes.len() as u32);
        }
        Pieces { bytes, offs }
    }

    /// The piece of `id` (in range).
    #[inline]
    pub fn get(&self, id: u32) -> &[u8] {
        let i = id as usize;
        &self.bytes[self.offs[i] as usize..self.offs[i + 1] as usize]
    }
}

/// `▁` (U+2581) to space.
fn unescape_whitespace(text: &[u8], out: &mut Vec<u8>) {
    const ESC: &[u8] = "\u{2581}".as_bytes();
    let mut i = 0;
    while i < text.len() {
        if text[i..].starts_with(ESC) {
            out.push(b' ');
            i += ESC.len();
        } else {
            out.push(text[i]);
            i += 1;
        }
    }
}

/// Byte-level BPE token text to bytes; characters outside the byte map come out as
/// `[UNK_BYTE_0x..<text>]`, as llama.cpp renders them.
fn decode_byte_level(map: &ByteMap, text: &[u8], out: &mut Vec<u8>) {
    for c in String::from_utf8_lossy(text).chars() {
        match map.decode(c) {
            Some(b) => out.push(b),
            None => {
                out.extend_from_slice(b"[UNK_BYTE_0x");
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.extend_from_slice(format!("{b:02x}").as_bytes());
                }
                out.extend_from_slice(text);
                out.push(b']');
            }
        }
    }
}

/// The byte of a `<0xXX>` token (0 if the text is not of that form, as `strtol` gives).
fn parse_hex_byte(text: &[u8]) -> u8 {
    text.get(3..5)
        .and_then(|h| std::str::from_utf8(h).ok())
        .and_then(|h| u8::from_str_radix(h, 16).ok())
        .unwrap_or(0)
}

/// llama.cpp's `clean_up_tokenization_spaces`: drop the space before `? ! . ,`, around a
/// lone `'`, and before the contractions `'s 'm 're 've`.
pub(crate) fn clean_spaces(text: &mut Vec<u8>) {
    if text.is_empty() {
        return;
    }
    // Pass 1: " ?", " !", " .", " ,".
    let mut out = Vec::with_capacity(text.len());
    out.push(text[0]);
    for i in 1..text.len() {
        let x = text[i];
        if text[i - 1] == b' ' && matches!(x, b'?' | b'!' | b'.' | b',') {
            out.pop();
        }
        out.push(x);
    }
    // Pass 2: " ' " becomes "'". The dropped space after is zeroed first, as llama.cpp
    // does in place, so it no longer counts as a space for the next character.
    let mut t = std::mem::take(&mut out);
    out.push(t[0]);
    let mut i = 1;
    while i < t.len() {
        let x = t[i];
        if x == b'\'' && i + 1 < t.len() && t[i - 1] == b' ' && t[i + 1] == b' ' {
            out.pop();
            out.push(x);
            t[i + 1] = 0;
            i += 2;
            continue;
        }
        out.push(x);
        i += 1;
    }
    // Pass 3: " 's", " 'm", " 're", " 've" lose the space.
    let t = std::mem::take(&mut out);
    out.push(t[0]);
    for i in 1..t.len() {
        let x = t[i];
        if t[i - 1] == b' ' && x == b'\'' && i + 1 < t.len() {
            let x1 = t[i + 1];
            let x2 = t.get(i + 2).copied();
            let drop = matches!(x1, b's' | b'm')
                || (i + 2 < t.len() && matches!((x1, x2), (b'r', Some(b'e')) | (b'v', Some(b'e'))));
            if drop {
                out.pop();
            }
        }
        out.push(x);
    }
    *text = out;
}

impl Tokenizer {
    /// The bytes token `id` renders as. Control and unknown tokens render as nothing unless
    /// `render_special`.
    pub fn token_to_piece(&self, id: u32, render_special: bool) -> Result<&[u8], TokenizerError> {
        self.check_id(id)?;
        if !render_special
            && self.tables.attrs[id as usize].any(TokenAttr::CONTROL.with(TokenAttr::UNKNOWN))
        {
            return Ok(&[]);
        }
        Ok(self.pieces.get(id))
    }

    /// Decodes `ids` to bytes as llama.cpp's `llama_detokenize(remove_special = false)`:
    /// pieces concatenated, the first piece's leading space dropped when the vocabulary adds
    /// a space prefix, then the vocabulary's space clean-up.
    pub fn decode_bytes(
        &self,
        ids: &[u32],
        render_special: bool,
    ) -> Result<Vec<u8>, TokenizerError> {
        let mut out = Vec::with_capacity(ids.len() * 4);
        let mut strip_space = self.cfg.add_space_prefix;
        for &id in ids {
            let mut piece = self.token_to_piece(id, render_special)?;
            if strip_space {
                if let Some(rest) = piece.strip_prefix(b" ") {
                    piece = rest;
                }
            }
            strip_space = false;
            out.extend_from_slice(piece);
        }
        if self.cfg.clean_spaces {
            clean_spaces(&mut out);
        }
        Ok(out)
    }

    /// Decodes `ids` to text (see [`Tokenizer::decode_bytes`]); bytes that are not valid
    /// UTF-8 become U+FFFD.
    pub fn decode(&self, ids: &[u32], render_special: bool) -> Result<String, TokenizerError> {
        let bytes = self.decode_bytes(ids, render_special)?;
        Ok(match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        })
    }

    /// A streaming decoder over this tokenizer.
    pub fn stream_decoder(&self, render_special: bool) -> StreamDecoder<&Tokenizer> {
        StreamDecoder::new(self, render_special)
    }
}

/// Turns bytes arriving in arbitrary pieces into text, holding back a character split across
/// pieces until it is complete. Bytes that can never form valid UTF-8 become U+FFFD.
#[derive(Clone, Debug, Default)]
pub struct Utf8Stream {
    pending: Vec<u8>,
}

impl Utf8Stream {
    /// An empty stream.
    pub fn new() -> Utf8Stream {
        Utf8Stream::default()
    }

    /// Adds `bytes`; returns the text that is now complete.
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let n = split_incomplete_utf8(&self.pending);
        let text = String::from_utf8_lossy(&self.pending[..n]).into_owned();
        self.pending.drain(..n);
        text
    }

    /// Bytes held back, waiting for the rest of a character.
    pub fn pending(&self) -> &[u8] {
        &self.pending
    }

    /// Ends the stream: whatever is held back, as text (an incomplete character becomes
    /// U+FFFD).
    pub fn finish(&mut self) -> String {
        let text = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        text
    }
}

/// Decodes generated tokens one at a time into text deltas that are always whole UTF-8
/// characters: a token ending inside a multi-byte character (a byte-fallback token, half of
/// an emoji) is held back until the character completes.
///
/// Each token contributes its piece as [`Tokenizer::token_to_piece`] renders it (no
/// whole-sequence clean-up, as llama.cpp's server streams). `T` is anything that derefs to
/// the tokenizer: `&Tokenizer` or `Arc<Tokenizer>`.
#[derive(Clone, Debug)]
pub struct StreamDecoder<T: Deref<Target = Tokenizer>> {
    tokenizer: T,
    render_special: bool,
    utf8: Utf8Stream,
}

impl<T: Deref<Target = Tokenizer>> StreamDecoder<T> {
    /// A decoder rendering control tokens as text if `render_special`.
    pub fn new(tokenizer: T, render_special: bool) -> Self {
        StreamDecoder {
            tokenizer,
            render_special,
            utf8: Utf8Stream::new(),
        }
    }

    /// Adds token `id`; returns the text completed by it (possibly empty).
    pub fn push(&mut self, id: u32) -> Result<String, TokenizerError> {
        let piece = self.tokenizer.token_to_piece(id, self.render_special)?;
        Ok(self.utf8.push(piece))
    }

    /// Bytes held back, waiting for the rest of a character.
    pub fn pending(&self) -> &[u8] {
        self.utf8.pending()
    }

    /// Ends the stream: the bytes held back, as text (an incomplete character becomes
    /// U+FFFD).
    pub fn finish(&mut self) -> String {
        self.utf8.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clean(s: &str) -> String {
        let mut v = s.as_bytes().to_vec();
        clean_spaces(&mut v);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn clean_up_spaces_like_llama_cpp() {
        assert_eq!(clean("Hello , world !"), "Hello, world!");
        assert_eq!(clean("a ' b"), "a'b");
        assert_eq!(
            clean("it 's I 'm we 're you 've they 'll I 'd don 't"),
            "it's I'm we're you've they 'll I 'd don 't"
        );
        assert_eq!(clean(""), "");
        assert_eq!(clean(" ."), ".");
    }

    #[test]
    fn utf8_stream_holds_back_partial_characters() {
        let mut s = Utf8Stream::new();
        let emoji = "😁".as_bytes();
        assert_eq!(s.push(b"a"), "a");
        assert_eq!(s.push(&emoji[..1]), "");
        assert_eq!(s.push(&emoji[1..3]), "");
        assert_eq!(s.pending().len(), 3);
        assert_eq!(s.push(&emoji[3..]), "😁");
        assert_eq!(s.push(&[0xE6]), "");
        assert_eq!(s.finish(), "\u{FFFD}");
        assert_eq!(s.push(&[0xFF, b'x']), "\u{FFFD}x");
    }
}
