//! [`OnnxModel`]: a decoded `ModelProto` plus the folder its external data is relative to;
//! opening, validating and saving (atomically, optionally with external data).

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use prost::Message;

use crate::error::{OnnxError, Result};
use crate::external::{self, ExternalWriter};
use crate::proto::attribute_proto::AttributeType;
use crate::proto::{GraphProto, ModelProto, TensorProto};
use crate::tensor;

/// The newest IR version this build's onnx.proto (ONNX 1.19) describes.
pub const MAX_IR_VERSION: i64 = 12;

/// The newest operator-set version perch accepts for each domain it knows (ONNX 1.19's
/// `ai.onnx` 24, `ai.onnx.ml` 5, ONNX Runtime's `com.microsoft` 1). Models importing other
/// domains are passed through (ONNX Runtime decides whether it has the operators).
pub const KNOWN_OPSETS: &[(&str, i64)] = &[
    ("ai.onnx", 24),
    ("ai.onnx.ml", 5),
    ("ai.onnx.training", 1),
    ("ai.onnx.preview.training", 1),
    ("com.microsoft", 1),
    ("com.microsoft.nchwc", 1),
    ("com.ms.internal.nhwc", 24),
];

/// Protobuf messages cannot exceed 2 GiB; bigger models need external data.
const PROTOBUF_LIMIT: usize = i32::MAX as usize;

/// The canonical name of an operator-set domain (`""` is `ai.onnx`).
pub fn domain_name(domain: &str) -> &str {
    if domain.is_empty() { "ai.onnx" } else { domain }
}

/// A decoded ONNX model and the folder its external data files are relative to.
#[derive(Debug, Clone)]
pub struct OnnxModel {
    /// The decoded protobuf.
    pub proto: ModelProto,
    base_dir: PathBuf,
}

/// How [`OnnxModel::save`] lays the model out.
#[derive(Debug, Clone, Default)]
pub struct SaveOptions {
    /// Write initializers of at least [`SaveOptions::size_threshold`] bytes to this data file
    /// (a file name, placed beside the model) instead of inside the protobuf.
    pub external_data: Option<String>,
    /// Tensors smaller than this stay inline (default 0 means 1024, as the onnx package does).
    pub size_threshold: u64,
}

/// What [`OnnxModel::save`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SaveReport {
    /// Bytes of the model file.
    pub model_bytes: u64,
    /// Bytes of the external data file (0 when none was written).
    pub external_bytes: u64,
}

impl SaveReport {
    /// Model plus external data.
    pub fn total(&self) -> u64 {
        self.model_bytes + self.external_bytes
    }
}

impl OnnxModel {
    /// Reads, decodes and validates `path` (external data files are checked, not read).
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| OnnxError::io(path, e))?;
        let base = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        let model = Self::decode(&bytes, base).map_err(|e| match e {
            OnnxError::Decode { source, .. } => OnnxError::Decode {
                path: path.to_path_buf(),
                source,
            },
            e => e,
        })?;
        model.validate()?;
        Ok(model)
    }

    /// Decodes a model from memory without validating it; external data is relative to
    /// `base_dir`.
    pub fn decode(bytes: &[u8], base_dir: impl Into<PathBuf>) -> Result<Self> {
        let proto = ModelProto::decode(bytes).map_err(|source| OnnxError::Decode {
            path: PathBuf::from("<memory>"),
            source,
        })?;
        Ok(Self {
            proto,
            base_dir: base_dir.into(),
        })
    }

    /// Wraps a `ModelProto` built in memory; external data is relative to `base_dir`.
    pub fn from_proto(proto: ModelProto, base_dir: impl Into<PathBuf>) -> Self {
        Self {
            proto,
            base_dir: base_dir.into(),
        }
    }

    /// The folder external data locations are relative to.
    pub fn base_dir(&self) -> &Path {
        &self.base_dir
    }

    /// The main graph.
    ///
    /// # Errors
    /// When the model has none.
    pub fn graph(&self) -> Result<&GraphProto> {
        self.proto.graph.as_ref().ok_or_else(|| {
            OnnxError::Invalid("the model holds no graph (empty file or not ONNX?)".into())
        })
    }

    /// The main graph, mutable.
    pub fn graph_mut(&mut self) -> Result<&mut GraphProto> {
        self.proto.graph.as_mut().ok_or_else(|| {
            OnnxError::Invalid("the model holds no graph (empty file or not ONNX?)".into())
        })
    }

    /// The version of `domain` (`""` or `ai.onnx` for the default) the model imports.
    pub fn opset(&self, domain: &str) -> Option<i64> {
        let want = domain_name(domain);
        self.proto
            .opset_import
            .iter()
            .find(|o| domain_name(o.domain()) == want)
            .map(|o| o.version())
    }

    /// A main-graph initializer by name.
    pub fn initializer(&self, name: &str) -> Option<&TensorProto> {
        self.proto
            .graph
            .as_ref()?
            .initializer
            .iter()
            .find(|t| t.name() == name)
    }

    /// A tensor's values as f32, reading external data relative to this model.
    pub fn tensor_f32(&self, t: &TensorProto) -> Result<Vec<f32>> {
        tensor::to_f32(t, &self.base_dir)
    }

    /// Checks what ONNX Runtime would otherwise reject with a less helpful message: a graph,
    /// a supported IR version and opsets, every node input defined (graph input,
    /// initializer or node output, also in subgraphs), initializer sizes matching their
    /// dims, and external data files present and long enough.
    pub fn validate(&self) -> Result<()> {
        let graph = self.graph()?;
        let ir = self.proto.ir_version();
        if ir < 1 {
            return Err(OnnxError::Invalid(
                "ir_version is missing (not an ONNX model?)".into(),
            ));
        }
        if ir > MAX_IR_VERSION {
            return Err(OnnxError::Invalid(format!(
                "IR version {ir} is newer than perch supports ({MAX_IR_VERSION}, ONNX 1.19)"
            )));
        }
        if self.proto.opset_import.is_empty() {
            return Err(OnnxError::Invalid(
                "the model imports no operator set".into(),
            ));
        }
        for o in &self.proto.opset_import {
            let domain = domain_name(o.domain());
            let version = o.version();
            let max = KNOWN_OPSETS
                .iter()
                .find(|(d, _)| *d == domain)
                .map(|&(_, v)| v);
            if version < 1 || max.is_some_and(|m| version > m) {
                return Err(OnnxError::UnsupportedOpset {
                    domain: domain.to_string(),
                    version,
                    max: max.unwrap_or(i64::MAX),
                });
            }
        }
        let imported: HashSet<&str> = self
            .proto
            .opset_import
            .iter()
            .map(|o| domain_name(o.domain()))
            .chain(self.proto.functions.iter().map(|f| domain_name(f.domain())))
            .collect();
        check_graph(graph, &HashSet::new(), &imported, &self.base_dir)
    }

    /// Reads every external tensor into `raw_data` so the model no longer needs its data
    /// files.
    pub fn inline_external_data(&mut self) -> Result<()> {
        let base = self.base_dir.clone();
        for_each_tensor_mut(self.graph_mut()?, &mut |t| external::inline(t, &base))
    }

    /// The model as protobuf bytes (external references kept as they are).
    pub fn to_bytes(&self) -> Vec<u8> {
        self.proto.encode_to_vec()
    }

    /// Writes the model to `path` through a temporary file renamed at the end (and its
    /// external data file likewise, when asked for). The result's external data, if any, is
    /// relative to `path`'s folder.
    pub fn save(&self, path: impl AsRef<Path>, opts: &SaveOptions) -> Result<SaveReport> {
        let path = path.as_ref();
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let mut out = self.clone();
        out.inline_external_data()?;
        let mut data_tmp = None;
        let mut external_bytes = 0;
        if let Some(location) = &opts.external_data {
            if Path::new(location).file_name().map(|f| f.to_string_lossy()) != Some(location.into())
            {
                return Err(OnnxError::Invalid(format!(
                    "external data location {location:?} must be a plain file name"
                )));
            }
            let threshold = if opts.size_threshold == 0 {
                1024
            } else {
                opts.size_threshold
            };
            let tmp = tempfile::Builder::new()
                .prefix(&format!(".{location}."))
                .tempfile_in(&dir)
                .map_err(|e| OnnxError::io(&dir, e))?;
            let (file, tmp_path) = tmp.into_parts();
            let mut writer =
                ExternalWriter::new(file, tmp_path.to_path_buf(), location.clone(), 4096);
            for_each_initializer_mut(out.graph_mut()?, &mut |t| {
                let big = tensor::data_bytes(t) >= threshold;
                if big
                    && tensor::element_bits(t.data_type().try_into().unwrap_or_default()).is_some()
                {
                    writer.externalize(t)?;
                }
                Ok(())
            })?;
            let file = writer.finish()?;
            external_bytes = file
                .metadata()
                .map_err(|e| OnnxError::io(&*tmp_path, e))?
                .len();
            data_tmp = Some((tmp_path, dir.join(location)));
        }
        let bytes = out.to_bytes();
        if bytes.len() > PROTOBUF_LIMIT {
            return Err(OnnxError::Invalid(format!(
                "the model is {} bytes, past protobuf's 2 GiB limit; save it with external data",
                bytes.len()
            )));
        }
        let mut tmp = tempfile::Builder::new()
            .prefix(".perch-onnx.")
            .suffix(".onnx")
            .tempfile_in(&dir)
            .map_err(|e| OnnxError::io(&dir, e))?;
        tmp.write_all(&bytes)
            .map_err(|e| OnnxError::io(tmp.path(), e))?;
        tmp.as_file()
            .sync_all()
            .map_err(|e| OnnxError::io(tmp.path(), e))?;
        if let Some((tmp_path, final_path)) = data_tmp {
            tmp_path
                .persist(&final_path)
                .map_err(|e| OnnxError::io(&final_path, e.error))?;
        }
        tmp.persist(path)
            .map_err(|e| OnnxError::io(path, e.error))?;
        Ok(SaveReport {
            model_bytes: bytes.len() as u64,
            external_bytes,
        })
    }
}

/// Calls `f` on every initializer of the graph and its subgraphs (not on tensors inside
/// node attributes: the onnx package's `convert_attribute=False` default).
fn for_each_initializer_mut(
    g: &mut GraphProto,
    f: &mut dyn FnMut(&mut TensorProto) -> Result<()>,
) -> Result<()> {
    for t in &mut g.initializer {
        f(t)?;
    }
    for node in &mut g.node {
        for a in &mut node.attribute {
            if let Some(sub) = &mut a.g {
                for_each_initializer_mut(sub, f)?;
            }
            for sub in &mut a.graphs {
                for_each_initializer_mut(sub, f)?;
            }
        }
    }
    Ok(())
}

/// Calls `f` on every tensor of the graph and its subgraphs: initializers and tensors in
/// node attributes.
fn for_each_tensor_mut(
    g: &mut GraphProto,
    f: &mut dyn FnMut(&mut TensorProto) -> Result<()>,
) -> Result<()> {
    for t in &mut g.initializer {
        f(t)?;
    }
    for node in &mut g.node {
        for a in &mut node.attribute {
            if let Some(t) = &mut a.t {
                f(t)?;
            }
            for t in &mut a.tensors {
                f(t)?;
            }
            if let Some(sub) = &mut a.g {
                for_each_tensor_mut(sub, f)?;
            }
            for sub in &mut a.graphs {
                for_each_tensor_mut(sub, f)?;
            }
        }
    }
    Ok(())
}

fn check_tensor(t: &TensorProto, base: &Path) -> Result<()> {
    if tensor::is_external(t) {
        return external::check(t, base);
    }
    if t.data_type() == crate::proto::tensor_proto::DataType::String as i32 {
        return Ok(());
    }
    tensor::raw_bytes(t, base).map(|_| ())
}

/// Checks one graph: initializers, node inputs defined, domains imported, outputs defined.
fn check_graph(
    g: &GraphProto,
    outer: &HashSet<&str>,
    imported: &HashSet<&str>,
    base: &Path,
) -> Result<()> {
    let mut defined: HashSet<&str> = outer.clone();
    defined.extend(g.input.iter().map(|v| v.name()));
    for t in &g.initializer {
        check_tensor(t, base)?;
        defined.insert(t.name());
    }
    defined.extend(
        g.sparse_initializer
            .iter()
            .filter_map(|s| s.values.as_ref())
            .map(|t| t.name()),
    );
    defined.extend(
        g.node
            .iter()
            .flat_map(|n| n.output.iter().map(String::as_str)),
    );
    for (i, n) in g.node.iter().enumerate() {
        let node_name = || {
            if n.name().is_empty() {
                format!("#{i}")
            } else {
                n.name().to_string()
            }
        };
        let domain = domain_name(n.domain());
        if !imported.contains(domain) {
            return Err(OnnxError::Invalid(format!(
                "node {:?} ({}) uses operator domain {domain}, which the model does not import",
                node_name(),
                n.op_type()
            )));
        }
        for input in n.input.iter().filter(|s| !s.is_empty()) {
            if !defined.contains(input.as_str()) {
                return Err(OnnxError::MissingInput {
                    node: node_name(),
                    op_type: n.op_type().to_string(),
                    input: input.clone(),
                });
            }
        }
        for a in &n.attribute {
            if let Some(t) = &a.t {
                check_tensor(t, base)?;
            }
            let subgraphs = a.g.iter().chain(&a.graphs);
            if matches!(a.r#type(), AttributeType::Graph | AttributeType::Graphs) || a.g.is_some() {
                for sub in subgraphs {
                    check_graph(sub, &defined, imported, base)?;
                }
            }
        }
    }
    for o in &g.output {
        if !defined.contains(o.name()) {
            return Err(OnnxError::Invalid(format!(
                "graph output {:?} is produced by no node (truncated model?)",
                o.name()
            )));
        }
    }
    Ok(())
}
