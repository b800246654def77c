//! [`ModelSummary`]: what `perch inspect model.onnx` shows, gathered from a model.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::model::{OnnxModel, domain_name};
use crate::proto::type_proto::Value as TypeValue;
use crate::proto::{
    GraphProto, TypeProto, ValueInfoProto, tensor_shape_proto::dimension::Value as Dim,
};
use crate::tensor;

/// One graph input or output.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ValueSummary {
    /// Its name.
    pub name: String,
    /// Element type (`FLOAT`, `INT64`, ...), or the kind for non-tensors (`sequence`, `map`).
    pub elem_type: String,
    /// Dimensions: numbers, symbolic names (`batch`), or `?` when unknown; `None` when the
    /// model gives no shape.
    pub shape: Option<Vec<String>>,
}

/// Initializers of one element type.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct InitializerStats {
    /// How many.
    pub count: usize,
    /// Their elements.
    pub elements: u64,
    /// Their data bytes.
    pub bytes: u64,
}

/// Everything `perch inspect` reports about an ONNX model.
#[derive(Debug, Clone, Serialize)]
pub struct ModelSummary {
    /// IR version.
    pub ir_version: i64,
    /// Producer name and version (e.g. `pytorch 2.1.0`).
    pub producer: String,
    /// Model domain, if set.
    pub domain: String,
    /// Model version, if set.
    pub model_version: i64,
    /// Graph name.
    pub graph_name: String,
    /// Imported operator sets: domain and version.
    pub opset_imports: Vec<(String, i64)>,
    /// Graph inputs that are not initializers.
    pub inputs: Vec<ValueSummary>,
    /// Graph outputs.
    pub outputs: Vec<ValueSummary>,
    /// Nodes in the main graph.
    pub node_count: usize,
    /// Nodes by operator (`Op` for the default domain, `domain.Op` otherwise), in the main
    /// graph and its subgraphs.
    pub ops: BTreeMap<String, usize>,
    /// Initializers by element type.
    pub initializers: BTreeMap<String, InitializerStats>,
    /// Total initializer data bytes.
    pub initializer_bytes: u64,
    /// Initializer data held in external files, with the files named.
    pub external_files: Vec<String>,
    /// Model-local functions.
    pub functions: usize,
    /// `metadata_props` key-value pairs.
    pub metadata: BTreeMap<String, String>,
}

fn type_summary(t: Option<&TypeProto>) -> (String, Option<Vec<String>>) {
    match t.and_then(|t| t.value.as_ref()) {
        Some(TypeValue::TensorType(tt)) => {
            let shape = tt.shape.as_ref().map(|s| {
                s.dim
                    .iter()
                    .map(|d| match &d.value {
                        Some(Dim::DimValue(v)) => v.to_string(),
                        Some(Dim::DimParam(p)) => p.clone(),
                        None => "?".to_string(),
                    })
                    .collect()
            });
            (tensor::type_name(tt.elem_type()), shape)
        }
        Some(TypeValue::SparseTensorType(st)) => (
            format!("sparse {}", tensor::type_name(st.elem_type())),
            None,
        ),
        Some(TypeValue::SequenceType(_)) => ("sequence".into(), None),
        Some(TypeValue::MapType(_)) => ("map".into(), None),
        Some(TypeValue::OptionalType(_)) => ("optional".into(), None),
        Some(TypeValue::OpaqueType(_)) => ("opaque".into(), None),
        None => ("?".into(), None),
    }
}

fn value(v: &ValueInfoProto) -> ValueSummary {
    let (elem_type, shape) = type_summary(v.r#type.as_ref());
    ValueSummary {
        name: v.name().to_string(),
        elem_type,
        shape,
    }
}

fn count_ops(g: &GraphProto, ops: &mut BTreeMap<String, usize>) {
    for n in &g.node {
        let key = match n.domain() {
            "" | "ai.onnx" => n.op_type().to_string(),
            d => format!("{d}.{}", n.op_type()),
        };
        *ops.entry(key).or_default() += 1;
        for a in &n.attribute {
            for sub in a.g.iter().chain(&a.graphs) {
                count_ops(sub, ops);
            }
        }
    }
}

impl ModelSummary {
    /// Gathers the summary (the model should be validated first; a model without a graph
    /// gets empty graph fields).
    pub fn of(model: &OnnxModel) -> Self {
        let p = &model.proto;
        let empty = GraphProto::default();
        let g = p.graph.as_ref().unwrap_or(&empty);
        let init_names: std::collections::HashSet<&str> =
            g.initializer.iter().map(|t| t.name()).collect();
        let mut ops = BTreeMap::new();
        count_ops(g, &mut ops);
        let mut initializers = BTreeMap::<String, InitializerStats>::new();
        let mut external_files = Vec::new();
        for t in &g.initializer {
            let s = initializers
                .entry(tensor::type_name(t.data_type()))
                .or_default();
            // Hostile dims saturate the counts instead of overflowing them.
            s.count += 1;
            s.elements = s
                .elements
                .saturating_add(tensor::element_count(t).unwrap_or(0));
            s.bytes = s.bytes.saturating_add(tensor::data_bytes(t));
            if tensor::is_external(t)
                && let Ok(r) = crate::external::reference(t)
                && !external_files.contains(&r.location)
            {
                external_files.push(r.location);
            }
        }
        let producer = match (p.producer_name(), p.producer_version()) {
            ("", v) => v.to_string(),
            (n, "") => n.to_string(),
            (n, v) => format!("{n} {v}"),
        };
        ModelSummary {
            ir_version: p.ir_version(),
            producer,
            domain: p.domain().to_string(),
            model_version: p.model_version(),
            graph_name: g.name().to_string(),
            opset_imports: p
                .opset_import
                .iter()
                .map(|o| (domain_name(o.domain()).to_string(), o.version()))
                .collect(),
            inputs: g
                .input
                .iter()
                .filter(|v| !init_names.contains(v.name()))
                .map(value)
                .collect(),
            outputs: g.output.iter().map(value).collect(),
            node_count: g.node.len(),
            ops,
            initializer_bytes: initializers
                .values()
                .fold(0u64, |acc, s| acc.saturating_add(s.bytes)),
            initializers,
            external_files,
            functions: p.functions.len(),
            metadata: p
                .metadata_props
                .iter()
                .map(|e| (e.key().to_string(), e.value().to_string()))
                .collect(),
        }
    }
}
