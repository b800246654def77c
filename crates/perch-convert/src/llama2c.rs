//! llama2.c checkpoints to GGUF, as llama.cpp's `convert-llama2c-to-ggml` writes them.
//!
//! A legacy llama2.c `model.bin` is a header of seven little-endian `i32`s (`dim`,
//! `hidden_dim`, `n_layers`, `n_heads`, `n_kv_heads`, `vocab_size` — negative when the
//! classifier is not shared with the embeddings — and `seq_len`), then f32 arrays: token
//! embeddings, attention norms, wq, wk, wv, wo, FFN norms, w1 (gate), w2 (down), w3 (up), the
//! final norm, the RoPE tables (skipped) and, when unshared, the classifier. llama2.c's
//! rotary embedding already pairs adjacent dimensions, as GGUF's llama does, so weights are
//! copied without permutation.
//!
//! `tokenizer.bin` is `u32 max_token_length` then, per token, `f32 score`, `u32 len` and the
//! bytes. As llama.cpp: ids 0, 1, 2 become `<unk>`, `<s>`, `</s>`; `<0xXX>` are byte tokens;
//! spaces are written as `▁`.

use std::path::Path;

use perch_gguf::{GgufWriter, Metadata, TensorInfo, Value};

use crate::error::{ConvertError, Result};
use crate::hf::{ConvertProgress, ConvertReport, OutType, encode, tensor_type};

/// The checkpoint header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Llama2cConfig {
    /// Transformer width.
    pub dim: usize,
    /// FFN width.
    pub hidden_dim: usize,
    /// Layers.
    pub n_layers: usize,
    /// Query heads.
    pub n_heads: usize,
    /// Key/value heads.
    pub n_kv_heads: usize,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Whether the classifier is the embedding table.
    pub shared_classifier: bool,
    /// Longest sequence.
    pub seq_len: usize,
}

const HEADER: usize = 7 * 4;

fn bad(path: &Path, why: impl std::fmt::Display) -> ConvertError {
    ConvertError::BadInput(format!("{}: {why}", path.display()))
}

impl Llama2cConfig {
    /// Parse and check a header.
    pub fn parse(bytes: &[u8], path: &Path) -> Result<Llama2cConfig> {
        if bytes.len() < HEADER {
            return Err(bad(path, "too short for a llama2.c header (28 bytes)"));
        }
        if &bytes[..4] == b"ak42" {
            return Err(bad(
                path,
                "a llama2.c version 1+ export (magic ak42); llama.cpp and perch convert the legacy \
                 (version 0) format: export with `--version 0`",
            ));
        }
        let v: Vec<i32> = bytes[..HEADER]
            .chunks_exact(4)
            .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let pos = |i: usize, name: &str| -> Result<usize> {
            usize::try_from(v[i])
                .ok()
                .filter(|&x| x > 0 && x < 1 << 24)
                .ok_or_else(|| {
                    bad(
                        path,
                        format!("header field {name} = {} is not a sane positive size", v[i]),
                    )
                })
        };
        let dim = pos(0, "dim")?;
        let hidden_dim = pos(1, "hidden_dim")?;
        let n_layers = pos(2, "n_layers")?;
        let n_heads = pos(3, "n_heads")?;
        let n_kv_heads = pos(4, "n_kv_heads")?;
        let shared_classifier = v[5] > 0;
        let vocab_size = v[5].unsigned_abs() as usize;
        if vocab_size == 0 || vocab_size >= 1 << 24 {
            return Err(bad(path, format!("header vocab_size {} is not sane", v[5])));
        }
        let seq_len = pos(6, "seq_len")?;
        if dim % n_heads != 0 || n_kv_heads > n_heads || n_heads % n_kv_heads != 0 {
            return Err(bad(
                path,
                format!("dim {dim}, n_heads {n_heads}, n_kv_heads {n_kv_heads} are inconsistent"),
            ));
        }
        if (dim / n_heads) % 2 != 0 {
            return Err(bad(path, "the head size must be even for RoPE"));
        }
        Ok(Llama2cConfig {
            dim,
            hidden_dim,
            n_layers,
            n_heads,
            n_kv_heads,
            vocab_size,
            shared_classifier,
            seq_len,
        })
    }

    fn kv_dim(&self) -> usize {
        self.dim / self.n_heads * self.n_kv_heads
    }

    /// Bytes the checkpoint must have: header plus every array.
    pub fn expected_len(&self) -> usize {
        let (d, h, l, v) = (self.dim, self.hidden_dim, self.n_layers, self.vocab_size);
        let floats = v * d
            + 2 * l * d
            + l * d * d * 2
            + l * d * self.kv_dim() * 2
            + 3 * l * d * h
            + d
            + self.seq_len * (d / self.n_heads)
            + if self.shared_classifier { 0 } else { v * d };
        HEADER + 4 * floats
    }
}

/// One token of `tokenizer.bin`.
#[derive(Clone, Debug, PartialEq)]
pub struct Llama2cToken {
    /// Text as written to GGUF.
    pub text: String,
    /// Score.
    pub score: f32,
    /// llama.cpp token type.
    pub ty: i32,
}

/// Read `tokenizer.bin` for a vocabulary of `n_vocab` tokens.
pub fn read_tokenizer(path: &Path, n_vocab: usize) -> Result<Vec<Llama2cToken>> {
    let bytes = std::fs::read(path).map_err(|e| ConvertError::MissingFile {
        path: path.to_path_buf(),
        why: e.to_string(),
    })?;
    let mut at = 4usize;
    let short = || {
        bad(
            path,
            format!("ends before the {n_vocab} tokens the checkpoint has"),
        )
    };
    let u32_at = |at: &mut usize| -> Result<[u8; 4]> {
        let b = bytes.get(*at..*at + 4).ok_or_else(short)?;
        *at += 4;
        Ok([b[0], b[1], b[2], b[3]])
    };
    if bytes.len() < 4 {
        return Err(short());
    }
    let mut out = Vec::with_capacity(n_vocab);
    for id in 0..n_vocab {
        let score = f32::from_le_bytes(u32_at(&mut at)?);
        let len = u32::from_le_bytes(u32_at(&mut at)?) as usize;
        let raw = bytes.get(at..at + len).ok_or_else(short)?;
        at += len;
        let text = String::from_utf8_lossy(raw).into_owned();
        let is_byte = text.len() == 6
            && text.starts_with("<0x")
            && text.ends_with('>')
            && u8::from_str_radix(&text[3..5], 16).is_ok();
        let (text, ty) = match id {
            0 => ("<unk>".to_string(), 2),
            1 => ("<s>".to_string(), 3),
            2 => ("</s>".to_string(), 3),
            _ if text.is_empty() => (text, 3),
            _ if is_byte => (text, 6),
            _ => (text, 1),
        };
        out.push(Llama2cToken {
            text: text.replace(' ', "\u{2581}"),
            score,
            ty,
        });
    }
    Ok(out)
}

/// Convert a llama2.c checkpoint and its tokenizer to a llama GGUF at `out`.
pub fn convert_llama2c(
    model: &Path,
    tokenizer: &Path,
    out: &Path,
    outtype: OutType,
    mut on_progress: impl FnMut(ConvertProgress<'_>),
) -> Result<ConvertReport> {
    let bytes = std::fs::read(model).map_err(|e| ConvertError::MissingFile {
        path: model.to_path_buf(),
        why: e.to_string(),
    })?;
    let c = Llama2cConfig::parse(&bytes, model)?;
    if bytes.len() != c.expected_len() {
        return Err(bad(
            model,
            format!(
                "{} bytes, but its header (dim {}, hidden_dim {}, {} layers, {} heads, {} KV heads, \
                 vocabulary {}, seq_len {}) implies {}",
                bytes.len(),
                c.dim,
                c.hidden_dim,
                c.n_layers,
                c.n_heads,
                c.n_kv_heads,
                c.vocab_size,
                c.seq_len,
                c.expected_len()
            ),
        ));
    }
    let vocab = read_tokenizer(tokenizer, c.vocab_size)?;
    let floats: Vec<f32> = bytes[HEADER..]
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();

    // Offsets of each array (in floats).
    let (d, h, l, v, kv) = (c.dim, c.hidden_dim, c.n_layers, c.vocab_size, c.kv_dim());
    let mut off = 0usize;
    let mut take = |n: usize| {
        let r = off..off + n;
        off += n;
        r
    };
    let emb = take(v * d);
    let att_norm = take(l * d);
    let wq = take(l * d * d);
    let wk = take(l * kv * d);
    let wv = take(l * kv * d);
    let wo = take(l * d * d);
    let ffn_norm = take(l * d);
    let w1 = take(l * h * d);
    let w2 = take(l * d * h);
    let w3 = take(l * h * d);
    let final_norm = take(d);
    let _rope = take(c.seq_len * (d / c.n_heads));
    let cls = if c.shared_classifier {
        emb.clone()
    } else {
        take(v * d)
    };
    let layer = |r: &std::ops::Range<usize>, il: usize| {
        let per = r.len() / l;
        r.start + il * per..r.start + (il + 1) * per
    };

    // Tensors in llama.cpp's order: name, dims (ggml order), values.
    let mut tensors: Vec<(String, Vec<u64>, std::ops::Range<usize>)> = vec![
        ("token_embd.weight".into(), vec![d as u64, v as u64], emb),
        ("output_norm.weight".into(), vec![d as u64], final_norm),
        ("output.weight".into(), vec![d as u64, v as u64], cls),
    ];
    for il in 0..l {
        let b = format!("blk.{il}");
        tensors.push((
            format!("{b}.attn_q.weight"),
            vec![d as u64, d as u64],
            layer(&wq, il),
        ));
        tensors.push((
            format!("{b}.attn_k.weight"),
            vec![d as u64, kv as u64],
            layer(&wk, il),
        ));
        tensors.push((
            format!("{b}.attn_v.weight"),
            vec![d as u64, kv as u64],
            layer(&wv, il),
        ));
        tensors.push((
            format!("{b}.attn_output.weight"),
            vec![d as u64, d as u64],
            layer(&wo, il),
        ));
        tensors.push((
            format!("{b}.attn_norm.weight"),
            vec![d as u64],
            layer(&att_norm, il),
        ));
        tensors.push((
            format!("{b}.ffn_gate.weight"),
            vec![d as u64, h as u64],
            layer(&w1, il),
        ));
        tensors.push((
            format!("{b}.ffn_down.weight"),
            vec![h as u64, d as u64],
            layer(&w2, il),
        ));
        tensors.push((
            format!("{b}.ffn_up.weight"),
            vec![d as u64, h as u64],
            layer(&w3, il),
        ));
        tensors.push((
            format!("{b}.ffn_norm.weight"),
            vec![d as u64],
            layer(&ffn_norm, il),
        ));
    }

    let mut md = Metadata::default();
    md.set("general.architecture", "llama");
    md.set("general.name", "llama");
    md.set("general.file_type", Value::U32(outtype.file_type()));
    md.set("llama.context_length", Value::U32(c.seq_len as u32));
    md.set("llama.embedding_length", Value::U32(d as u32));
    md.set("llama.feed_forward_length", Value::U32(h as u32));
    md.set("llama.attention.head_count", Value::U32(c.n_heads as u32));
    md.set(
        "llama.attention.head_count_kv",
        Value::U32(c.n_kv_heads as u32),
    );
    md.set("llama.block_count", Value::U32(l as u32));
    md.set(
        "llama.rope.dimension_count",
        Value::U32((d / c.n_heads) as u32),
    );
    md.set("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5));
    md.set("tokenizer.ggml.model", "llama");
    md.set(
        "tokenizer.ggml.tokens",
        Value::from(
            vocab
                .iter()
                .map(|t| t.text.clone())
                .collect::<Vec<String>>(),
        ),
    );
    md.set(
        "tokenizer.ggml.scores",
        Value::from(vocab.iter().map(|t| t.score).collect::<Vec<f32>>()),
    );
    md.set(
        "tokenizer.ggml.token_type",
        Value::from(vocab.iter().map(|t| t.ty).collect::<Vec<i32>>()),
    );
    md.set("tokenizer.ggml.unknown_token_id", Value::U32(0));
    md.set("tokenizer.ggml.bos_token_id", Value::U32(1));
    md.set("tokenizer.ggml.eos_token_id", Value::U32(2));

    let infos = tensors
        .iter()
        .map(|(name, dims, _)| {
            TensorInfo::new(name.clone(), tensor_type(name, dims, outtype), dims.clone())
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let mut writer = GgufWriter::create(out, &md, infos.clone())?;
    let total = infos.len();
    let mut report = ConvertReport {
        arch: "llama".into(),
        n_tensors: total,
        n_elements: 0,
        bytes: 0,
    };
    for (i, ((name, dims, range), info)) in tensors.iter().zip(&infos).enumerate() {
        let values = &floats[range.clone()];
        let data = encode(info.ty, values, dims[0] as usize, name)?;
        writer.write_tensor(name, &data)?;
        report.n_elements += values.len() as u64;
        report.bytes += data.len() as u64;
        on_progress(ConvertProgress {
            tensor: name,
            done: i + 1,
            total,
        });
    }
    writer.finish()?;
    Ok(report)
}
