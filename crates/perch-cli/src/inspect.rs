//! `perch inspect FILE.gguf`: what a model file holds, for people first.
//!
//! The default view is a summary (architecture, size, tokenizer, chat template) and a table of
//! tensor types with their share of the file and bits per weight. `--metadata` lists every
//! key, `--tensors` every tensor; `--json` prints the same as one JSON object. Long strings
//! and arrays are summarized in both forms (first elements and a count), so a 150k-token
//! vocabulary stays one line.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Args;
use perch_gguf::keys::{self, arch_key};
use perch_gguf::{Array, GgmlType, GgufError, GgufFile, GgufString, Value};
use serde_json::{Value as Json, json};

/// Arguments of `perch inspect`.
#[derive(Args, Debug)]
pub struct InspectArgs {
    /// The GGUF or ONNX file.
    pub file: PathBuf,
    /// Also list every metadata key and value (long arrays and strings summarized).
    #[arg(long)]
    pub metadata: bool,
    /// Also list every tensor: name, type, shape, size and offset.
    #[arg(long)]
    pub tensors: bool,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs `perch inspect`.
pub fn run(args: InspectArgs) -> Result<()> {
    if perch_onnx::is_onnx_file(&args.file) {
        if args.metadata || args.tensors {
            anyhow::bail!(
                "--metadata and --tensors apply to GGUF files; an ONNX summary lists its metadata"
            );
        }
        return crate::onnx::inspect(&args.file, args.json);
    }
    let file = open(&args.file)?;
    let out = if args.json {
        let mut s = serde_json::to_string_pretty(&to_json(&args, &file))?;
        s.push('\n');
        s
    } else {
        render_text(&args, &file)
    };
    print!("{out}");
    Ok(())
}

/// Opens the file; errors name the file once.
fn open(path: &Path) -> Result<GgufFile> {
    GgufFile::open(path).map_err(|e| match e {
        // Already names the path.
        e @ GgufError::Io { .. } => anyhow::Error::new(e),
        e => anyhow::Error::new(e).context(path.display().to_string()),
    })
}

/// Elements, bytes and tensor count of one tensor type.
#[derive(Default, Clone, Copy)]
struct TypeStats {
    tensors: usize,
    elements: u64,
    bytes: u64,
}

impl TypeStats {
    fn bits_per_weight(&self) -> f64 {
        if self.elements == 0 {
            0.0
        } else {
            self.bytes as f64 * 8.0 / self.elements as f64
        }
    }
}

/// What the summary shows, gathered once for both output forms.
struct Summary {
    architecture: Option<String>,
    name: Option<String>,
    file_type: Option<String>,
    parameters: u64,
    context_length: Option<u64>,
    embedding_length: Option<u64>,
    block_count: Option<u64>,
    head_count: Option<String>,
    head_count_kv: Option<String>,
    tokenizer: Option<String>,
    vocab_size: Option<usize>,
    chat_template_bytes: Option<usize>,
    by_type: Vec<(GgmlType, TypeStats)>,
    total: TypeStats,
}

/// An integer, or the range of an integer array (per-layer values in some architectures).
fn int_or_range(v: &Value) -> Option<String> {
    if let Some(i) = v.as_integer() {
        return Some(i.to_string());
    }
    let ints: Vec<i128> = match v.as_array()? {
        Array::U32(a) => a.iter().map(|&x| x.into()).collect(),
        Array::I32(a) => a.iter().map(|&x| x.into()).collect(),
        Array::U64(a) => a.iter().map(|&x| x.into()).collect(),
        Array::I64(a) => a.iter().map(|&x| x.into()).collect(),
        _ => return None,
    };
    let (lo, hi) = (ints.iter().min()?, ints.iter().max()?);
    Some(if lo == hi {
        lo.to_string()
    } else {
        format!("{lo}-{hi} per layer")
    })
}

fn summarize(f: &GgufFile) -> Summary {
    let text = |k: &str| f.opt_str(k).ok().flatten().map(str::to_string);
    let arch = text(keys::GENERAL_ARCHITECTURE);
    let arch_u64 = |suffix: &str| {
        let a = arch.as_deref()?;
        f.opt_u64(&arch_key(a, suffix)).ok().flatten()
    };
    let arch_ints = |suffix: &str| {
        let a = arch.as_deref()?;
        f.get(&arch_key(a, suffix)).and_then(int_or_range)
    };
    let mut by_type: BTreeMap<GgmlType, TypeStats> = BTreeMap::new();
    let mut total = TypeStats::default();
    for t in f.tensors() {
        for s in [by_type.entry(t.ty).or_default(), &mut total] {
            s.tensors += 1;
            s.elements += t.n_elements;
            s.bytes += t.n_bytes;
        }
    }
    let mut by_type: Vec<_> = by_type.into_iter().collect();
    by_type.sort_by_key(|(ty, s)| (std::cmp::Reverse(s.bytes), *ty));
    let file_type = f.opt_u32(keys::GENERAL_FILE_TYPE).ok().flatten().map(|id| {
        keys::file_type_name(id).map_or_else(|| format!("unknown ({id})"), str::to_string)
    });
    let vocab_size = match f.get(keys::TOKENIZER_TOKENS) {
        Some(Value::Array(a)) => Some(a.len()),
        _ => None,
    };
    let chat_template_bytes = match f.get(keys::TOKENIZER_CHAT_TEMPLATE) {
        Some(Value::String(s)) => Some(s.len()),
        _ => None,
    };
    Summary {
        name: text(keys::GENERAL_NAME),
        file_type,
        parameters: total.elements,
        context_length: arch_u64("context_length"),
        embedding_length: arch_u64("embedding_length"),
        block_count: arch_u64("block_count"),
        head_count: arch_ints("attention.head_count"),
        head_count_kv: arch_ints("attention.head_count_kv"),
        tokenizer: text(keys::TOKENIZER_MODEL),
        vocab_size,
        chat_template_bytes,
        architecture: arch,
        by_type,
        total,
    }
}

/// What a `tokenizer.ggml.model` value means.
fn tokenizer_kind(model: &str) -> Option<&'static str> {
    Some(match model {
        "llama" => "SentencePiece",
        "gpt2" => "byte-level BPE",
        "bert" => "WordPiece",
        "t5" => "Unigram",
        "rwkv" => "RWKV greedy",
        "plamo2" => "PLaMo-2 Aho-Corasick",
        "none" => "no vocabulary",
        _ => return None,
    })
}

/// `1234567` → `"1,234,567"`.
fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Bytes in binary units: `"93.8 MiB"`.
pub(crate) fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// Parameters in short form: `"134.5M"`, `"6.7B"`.
fn human_count(n: u64) -> String {
    let v = n as f64;
    match n {
        0..1_000 => n.to_string(),
        1_000..1_000_000 => format!("{:.1}K", v / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1}M", v / 1e6),
        _ => format!("{:.2}B", v / 1e9),
    }
}

/// A string shortened to `max` characters, control characters escaped, quoted.
fn short_string(s: &GgufString, max: usize) -> String {
    let text = s.to_string_lossy();
    let escaped: String = text.chars().flat_map(char::escape_debug).collect();
    let count = escaped.chars().count();
    if count <= max {
        format!("\"{escaped}\"")
    } else {
        let head: String = escaped.chars().take(max).collect();
        format!("\"{head}…\" ({} bytes)", thousands(s.len() as u64))
    }
}

/// Shown elements of a long array.
const ARRAY_HEAD: usize = 6;
/// Shown characters of a long string.
const STRING_HEAD: usize = 60;

fn array_elements(a: &Array) -> Vec<String> {
    fn strs<T: ToString>(v: &[T]) -> Vec<String> {
        v.iter().take(ARRAY_HEAD).map(T::to_string).collect()
    }
    match a {
        Array::U8(v) => strs(v),
        Array::I8(v) => strs(v),
        Array::U16(v) => strs(v),
        Array::I16(v) => strs(v),
        Array::U32(v) => strs(v),
        Array::I32(v) => strs(v),
        Array::F32(v) => strs(v),
        Array::Bool(v) => strs(v),
        Array::String(v) => v
            .iter()
            .take(ARRAY_HEAD)
            .map(|s| short_string(s, 24))
            .collect(),
        Array::Array(v) => v.iter().take(ARRAY_HEAD).map(array_text).collect(),
        Array::U64(v) => strs(v),
        Array::I64(v) => strs(v),
        Array::F64(v) => strs(v),
    }
}

fn array_text(a: &Array) -> String {
    let mut s = format!("[{}]", array_elements(a).join(", "));
    if a.len() > ARRAY_HEAD {
        s.insert_str(
            s.len() - 1,
            &format!(", … {} more", thousands((a.len() - ARRAY_HEAD) as u64)),
        );
    }
    s
}

/// A value on one line.
fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => short_string(s, STRING_HEAD),
        Value::Array(a) => array_text(a),
        Value::F32(x) => x.to_string(),
        Value::F64(x) => x.to_string(),
        Value::Bool(b) => b.to_string(),
        v => v.as_integer().map(|i| i.to_string()).unwrap_or_default(),
    }
}

/// The value's type, with the length for arrays: `"[string; 49152]"`.
fn type_text(v: &Value) -> String {
    match v {
        Value::Array(a) => format!("[{}; {}]", a.elem_type(), a.len()),
        v => v.value_type().to_string(),
    }
}

/// Left-aligned columns padded to the widest cell; columns listed in `right` align right.
fn table(rows: &[Vec<String>], right: &[usize], indent: &str) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let width: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = indent.to_string();
        for (c, cell) in row.iter().enumerate() {
            let pad = width[c] - cell.chars().count();
            if c > 0 {
                line.push_str("  ");
            }
            if right.contains(&c) {
                line.push_str(&" ".repeat(pad));
                line.push_str(cell);
            } else {
                line.push_str(cell);
                if c + 1 < row.len() {
                    line.push_str(&" ".repeat(pad));
                }
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn or_unknown<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "unknown".to_string(), |v| v.to_string())
}

fn render_text(args: &InspectArgs, f: &GgufFile) -> String {
    let s = summarize(f);
    let mut out = String::new();
    let _ = writeln!(out, "{}", args.file.display());
    let heads = match (&s.head_count, &s.head_count_kv) {
        (Some(h), Some(kv)) if h != kv => format!("{h} ({kv} for keys/values)"),
        (h, _) => or_unknown(h.clone()),
    };
    let tokenizer = match &s.tokenizer {
        Some(m) => {
            let kind = tokenizer_kind(m).map_or(String::new(), |k| format!(" ({k})"));
            match s.vocab_size {
                Some(n) => format!("{m}{kind}, {} tokens", thousands(n as u64)),
                None => format!("{m}{kind}"),
            }
        }
        None => "none".into(),
    };
    let template = match s.chat_template_bytes {
        Some(n) => format!("yes ({} bytes)", thousands(n as u64)),
        None => "no".into(),
    };
    let rows: Vec<Vec<String>> = [
        (
            "format",
            format!(
                "GGUF v{}, {}, alignment {}",
                f.version(),
                human_bytes(f.len()),
                f.alignment()
            ),
        ),
        ("architecture", or_unknown(s.architecture.as_ref())),
        ("name", or_unknown(s.name.as_ref())),
        ("file type", or_unknown(s.file_type.as_ref())),
        (
            "parameters",
            if s.parameters < 1000 {
                s.parameters.to_string()
            } else {
                format!(
                    "{} ({})",
                    human_count(s.parameters),
                    thousands(s.parameters)
                )
            },
        ),
        (
            "context length",
            or_unknown(s.context_length.map(thousands)),
        ),
        (
            "embedding size",
            or_unknown(s.embedding_length.map(thousands)),
        ),
        ("layers", or_unknown(s.block_count)),
        ("attention heads", heads),
        ("tokenizer", tokenizer),
        ("chat template", template),
        ("tensors", thousands(s.total.tensors as u64)),
        ("metadata keys", thousands(f.metadata().len() as u64)),
    ]
    .into_iter()
    .map(|(k, v)| vec![k.to_string(), v])
    .collect();
    out.push_str(&table(&rows, &[], "  "));

    if !f.tensors().is_empty() {
        out.push('\n');
        let mut rows = vec![vec![
            "type".to_string(),
            "tensors".into(),
            "weights".into(),
            "bytes".into(),
            "bits/weight".into(),
        ]];
        let line = |name: String, st: &TypeStats| {
            vec![
                name,
                thousands(st.tensors as u64),
                thousands(st.elements),
                human_bytes(st.bytes),
                format!("{:.2}", st.bits_per_weight()),
            ]
        };
        for (ty, st) in &s.by_type {
            rows.push(line(ty.to_string(), st));
        }
        rows.push(line("all".into(), &s.total));
        out.push_str(&table(&rows, &[1, 2, 3, 4], "  "));
    }

    if args.metadata {
        let _ = writeln!(out, "\nmetadata ({} keys)", f.metadata().len());
        let rows: Vec<Vec<String>> = f
            .metadata()
            .iter()
            .map(|(k, v)| vec![k.to_string(), type_text(v), value_text(v)])
            .collect();
        out.push_str(&table(&rows, &[], "  "));
    }

    if args.tensors {
        let _ = writeln!(out, "\ntensors ({})", f.tensors().len());
        let mut rows = vec![vec![
            "name".to_string(),
            "type".into(),
            "shape".into(),
            "weights".into(),
            "bytes".into(),
            "offset".into(),
        ]];
        for t in f.tensors() {
            let shape: Vec<String> = t.dims.iter().map(u64::to_string).collect();
            rows.push(vec![
                t.name.clone(),
                t.ty.to_string(),
                shape.join(" x "),
                thousands(t.n_elements),
                thousands(t.n_bytes),
                thousands(t.offset),
            ]);
        }
        out.push_str(&table(&rows, &[3, 4, 5], "  "));
    }
    out
}

/// Arrays longer than this are summarized in JSON as well.
const JSON_ARRAY_MAX: usize = 64;

fn string_json(s: &GgufString) -> Json {
    match s.as_str() {
        Ok(t) => Json::String(t.to_string()),
        Err(_) => {
            json!({ "bytes_hex": s.as_bytes().iter().map(|b| format!("{b:02x}")).collect::<String>() })
        }
    }
}

fn array_json(a: &Array, limit: usize) -> Json {
    fn nums<T: Copy + Into<Json>>(v: &[T], limit: usize) -> Vec<Json> {
        v.iter().take(limit).map(|&x| x.into()).collect()
    }
    let items = match a {
        Array::U8(v) => nums(v, limit),
        Array::I8(v) => nums(v, limit),
        Array::U16(v) => nums(v, limit),
        Array::I16(v) => nums(v, limit),
        Array::U32(v) => nums(v, limit),
        Array::I32(v) => nums(v, limit),
        Array::F32(v) => nums(v, limit),
        Array::Bool(v) => nums(v, limit),
        Array::String(v) => v.iter().take(limit).map(string_json).collect(),
        Array::Array(v) => v.iter().take(limit).map(|a| array_json(a, limit)).collect(),
        Array::U64(v) => nums(v, limit),
        Array::I64(v) => nums(v, limit),
        Array::F64(v) => nums(v, limit),
    };
    if a.len() <= limit {
        Json::Array(items)
    } else {
        json!({ "elem_type": a.elem_type().name(), "len": a.len(), "first": items })
    }
}

fn value_json(v: &Value) -> Json {
    match v {
        Value::String(s) => string_json(s),
        Value::Array(a) => array_json(a, JSON_ARRAY_MAX),
        Value::F32(x) => json!(x),
        Value::F64(x) => json!(x),
        Value::Bool(b) => json!(b),
        // Every integer type fits in i128; JSON numbers here are u64 or i64.
        v => match v.as_integer() {
            Some(i) if i >= 0 => json!(i as u64),
            Some(i) => json!(i as i64),
            None => Json::Null,
        },
    }
}

fn to_json(args: &InspectArgs, f: &GgufFile) -> Json {
    let s = summarize(f);
    // Head counts as stored: a number, or an array of per-layer numbers.
    let arch_value = |suffix: &str| {
        let a = s.architecture.as_deref()?;
        f.get(&arch_key(a, suffix)).map(value_json)
    };
    let types: Vec<Json> = s
        .by_type
        .iter()
        .map(|(ty, st)| {
            json!({
                "type": ty.to_string(),
                "tensors": st.tensors,
                "elements": st.elements,
                "bytes": st.bytes,
                "bits_per_weight": st.bits_per_weight(),
            })
        })
        .collect();
    let mut out = json!({
        "file": args.file.display().to_string(),
        "size_bytes": f.len(),
        "version": f.version(),
        "alignment": f.alignment(),
        "data_offset": f.data_offset(),
        "architecture": s.architecture,
        "name": s.name,
        "file_type": s.file_type,
        "parameters": s.parameters,
        "context_length": s.context_length,
        "embedding_length": s.embedding_length,
        "block_count": s.block_count,
        "head_count": arch_value("attention.head_count"),
        "head_count_kv": arch_value("attention.head_count_kv"),
        "tokenizer": { "model": s.tokenizer, "vocab_size": s.vocab_size },
        "chat_template": s.chat_template_bytes.is_some(),
        "tensor_count": s.total.tensors,
        "metadata_count": f.metadata().len(),
        "types": types,
        "bits_per_weight": s.total.bits_per_weight(),
    });
    if args.metadata {
        out["metadata"] = f
            .metadata()
            .iter()
            .map(|(k, v)| json!({ "key": k, "type": type_text(v), "value": value_json(v) }))
            .collect();
    }
    if args.tensors {
        out["tensors"] = f
            .tensors()
            .iter()
            .map(|t| {
                json!({
                    "name": t.name,
                    "type": t.ty.to_string(),
                    "dims": t.dims,
                    "elements": t.n_elements,
                    "bytes": t.n_bytes,
                    "offset": t.offset,
                })
            })
            .collect();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_formatting() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(134_515_008), "134,515,008");
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(98_362_432), "93.8 MiB");
        assert_eq!(human_count(134_515_008), "134.5M");
        assert_eq!(human_count(6_738_415_616), "6.74B");
    }

    #[test]
    fn long_values_are_summarized() {
        let tokens: Vec<String> = (0..1000).map(|i| format!("tok{i}")).collect();
        let v = Value::from(tokens);
        let text = value_text(&v);
        assert!(text.starts_with("[\"tok0\", \"tok1\""), "{text}");
        assert!(text.ends_with(", … 994 more]"), "{text}");
        assert_eq!(type_text(&v), "[string; 1000]");
        let long = Value::from("x\n".repeat(100));
        let text = value_text(&long);
        assert!(
            text.contains("\\n") && text.ends_with("(200 bytes)"),
            "{text}"
        );
        let j = value_json(&v);
        assert_eq!(j["len"], 1000);
        assert_eq!(j["first"].as_array().unwrap().len(), JSON_ARRAY_MAX);
        assert_eq!(value_json(&Value::from(vec![1u32, 2])), json!([1, 2]));
    }

    #[test]
    fn table_aligns_columns() {
        let rows = vec![
            vec!["a".to_string(), "1".into()],
            vec!["long".to_string(), "100".into()],
        ];
        assert_eq!(table(&rows, &[1], ""), "a       1\nlong  100\n");
    }

    #[test]
    fn per_layer_head_counts_show_a_range() {
        assert_eq!(int_or_range(&Value::U32(9)).unwrap(), "9");
        assert_eq!(
            int_or_range(&Value::from(vec![4i32, 8, 8])).unwrap(),
            "4-8 per layer"
        );
        assert_eq!(int_or_range(&Value::from(vec![3u32, 3])).unwrap(), "3");
        assert_eq!(int_or_range(&Value::from("x")), None);
    }
}
