//! Which nodes a quantization mode can rewrite (MatMul, Gemm and Gather with constant float
//! weights) and the small NodeProto helpers the rewrites share.

use std::collections::HashMap;

use super::{Mode, QuantizeOptions};
use crate::error::Result;
use crate::model::OnnxModel;
use crate::proto::attribute_proto::AttributeType;
use crate::proto::tensor_proto::DataType;
use crate::proto::{AttributeProto, NodeProto, TensorProto};

/// A node that can be quantized and what its weight is.
#[derive(Debug, Clone)]
pub(super) enum Target {
    /// `MatMul(A, W)` with W a constant `[k, n]`.
    MatMul { w: String, k: usize, n: usize },
    /// `Gemm(A, B, C)` with B constant, transA = 0.
    Gemm {
        w: String,
        k: usize,
        n: usize,
        trans_b: bool,
        alpha: f32,
        beta: f32,
        c: Option<String>,
    },
    /// `Gather(table, indices)` with the table a constant `[rows, cols]`.
    Gather {
        table: String,
        cols: usize,
        axis: i64,
    },
}

/// A MatMul-like weight: `[k, n]` (a Gemm's B may be stored `[n, k]`), the factor folded
/// into its scales, and a Gemm's bias `beta * C`.
pub(super) struct MatSpec {
    pub(super) w: String,
    pub(super) k: usize,
    pub(super) n: usize,
    pub(super) trans: bool,
    pub(super) alpha: f32,
    pub(super) bias: Option<(String, f32)>,
}

impl Target {
    pub(super) fn mat_spec(&self) -> Option<MatSpec> {
        match self {
            Target::MatMul { w, k, n } => Some(MatSpec {
                w: w.clone(),
                k: *k,
                n: *n,
                trans: false,
                alpha: 1.0,
                bias: None,
            }),
            Target::Gemm {
                w,
                k,
                n,
                trans_b,
                alpha,
                beta,
                c,
            } => Some(MatSpec {
                w: w.clone(),
                k: *k,
                n: *n,
                trans: *trans_b,
                alpha: *alpha,
                bias: c.clone().map(|c| (c, *beta)),
            }),
            Target::Gather { .. } => None,
        }
    }
}

fn attr<'a>(n: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    n.attribute.iter().find(|a| a.name() == name)
}

fn attr_i(n: &NodeProto, name: &str, default: i64) -> i64 {
    attr(n, name).and_then(|a| a.i).unwrap_or(default)
}

fn attr_f(n: &NodeProto, name: &str, default: f32) -> f32 {
    attr(n, name).and_then(|a| a.f).unwrap_or(default)
}

pub(super) fn int_attr(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Int as i32),
        i: Some(v),
        ..Default::default()
    }
}

pub(super) fn node(
    op: &str,
    domain: &str,
    name: String,
    inputs: Vec<String>,
    outputs: Vec<String>,
    attrs: Vec<AttributeProto>,
) -> NodeProto {
    NodeProto {
        op_type: Some(op.into()),
        domain: (!domain.is_empty()).then(|| domain.to_string()),
        name: Some(name),
        input: inputs,
        output: outputs,
        attribute: attrs,
        ..Default::default()
    }
}

fn float_2d<'a>(
    inits: &HashMap<&str, &'a TensorProto>,
    name: &str,
) -> Option<(&'a TensorProto, usize, usize)> {
    let t = *inits.get(name)?;
    if t.data_type() != DataType::Float as i32 || t.dims.len() != 2 {
        return None;
    }
    Some((
        t,
        usize::try_from(t.dims[0]).ok()?,
        usize::try_from(t.dims[1]).ok()?,
    ))
}

/// Whether and how `n` can be quantized in this mode.
pub(super) fn target(
    n: &NodeProto,
    inits: &HashMap<&str, &TensorProto>,
    opts: &QuantizeOptions,
) -> Option<Target> {
    if !matches!(n.domain(), "" | "ai.onnx") {
        return None;
    }
    match n.op_type() {
        "MatMul" => {
            let (_, k, n_) = float_2d(inits, n.input.get(1)?)?;
            if inits.contains_key(n.input.first()?.as_str()) {
                return None;
            }
            Some(Target::MatMul {
                w: n.input[1].clone(),
                k,
                n: n_,
            })
        }
        "Gemm" => {
            let (_, r, c) = float_2d(inits, n.input.get(1)?)?;
            if attr_i(n, "transA", 0) != 0 {
                return None;
            }
            let trans_b = attr_i(n, "transB", 0) != 0;
            let (k, n_) = if trans_b { (c, r) } else { (r, c) };
            Some(Target::Gemm {
                w: n.input[1].clone(),
                k,
                n: n_,
                trans_b,
                alpha: attr_f(n, "alpha", 1.0),
                beta: attr_f(n, "beta", 1.0),
                c: n.input.get(2).filter(|s| !s.is_empty()).cloned(),
            })
        }
        "Gather" if opts.quantize_gather => {
            let (_, _, cols) = float_2d(inits, n.input.first()?)?;
            let axis = attr_i(n, "axis", 0);
            if axis != 0 && axis != -2 {
                return None;
            }
            if let Mode::Int4 { block_size, .. } = opts.mode
                && cols % block_size != 0
            {
                return None;
            }
            Some(Target::Gather {
                table: n.input[0].clone(),
                cols,
                axis: 0,
            })
        }
        _ => None,
    }
}

pub(super) fn excluded(n: &NodeProto, opts: &QuantizeOptions) -> bool {
    opts.exclude
        .iter()
        .any(|e| e == n.name() || e == n.op_type())
}

/// The activations static mode needs ranges for: the first input of each MatMul and Gemm
/// it will quantize.
pub(super) fn static_targets(model: &OnnxModel, opts: &QuantizeOptions) -> Result<Vec<String>> {
    let g = model.graph()?;
    let inits: HashMap<&str, &TensorProto> = g.initializer.iter().map(|t| (t.name(), t)).collect();
    let mut out: Vec<String> = Vec::new();
    for n in &g.node {
        if excluded(n, opts) {
            continue;
        }
        if let Some(Target::MatMul { .. } | Target::Gemm { .. }) = target(n, &inits, opts)
            && !out.contains(&n.input[0])
        {
            out.push(n.input[0].clone());
        }
    }
    Ok(out)
}
