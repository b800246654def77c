//! What the tokenizer targets share: decoding arbitrary ids.

use perch_tokenizer::Tokenizer;

/// Decodes `bytes` read as little-endian u32 ids (a few past the vocabulary): an error when
/// any id is outside it, never a panic; the valid ones also go through a stream decoder.
pub fn arbitrary_ids(name: &str, tok: &Tokenizer, bytes: &[u8], render_special: bool) {
    let raw: Vec<u32> = bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) % (tok.n_vocab() + 16))
        .collect();
    let r = tok.decode(&raw, render_special);
    if raw.iter().any(|&id| id >= tok.n_vocab()) {
        assert!(r.is_err(), "{name}: invalid ids decoded");
    }
    let mut stream = tok.stream_decoder(false);
    for &id in raw.iter().filter(|&&id| id < tok.n_vocab()) {
        let _ = stream.push(id);
    }
}
