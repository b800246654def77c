//! The graph rewrites of each quantization mode. Nodes are visited in order; a quantized
//! node is replaced by its integer pattern, which ends in the node's original output names.

use std::collections::{HashMap, HashSet};

use super::calibrate::Ranges;
use super::targets::{MatSpec, Target, excluded, int_attr, node, target};
use super::weights;
use super::{Mode, QuantizeOptions, QuantizeReport};
use crate::error::{OnnxError, Result};
use crate::model::OnnxModel;
use crate::proto::tensor_proto::DataType;
use crate::proto::{GraphProto, NodeProto, OperatorSetIdProto, TensorProto};
use crate::tensor;

const MS_DOMAIN: &str = "com.microsoft";

/// Builds the new graph: names, caches of quantized activations and weights.
struct Rewriter<'a> {
    opts: &'a QuantizeOptions,
    ranges: Option<&'a Ranges>,
    names: HashSet<String>,
    new_inits: Vec<TensorProto>,
    nodes: Vec<NodeProto>,
    /// activation -> (quantized, scale, zero point) for DynamicQuantizeLinear or QDQ.
    acts: HashMap<String, Vec<String>>,
    /// weight key -> names of its quantized form.
    weights: HashMap<String, Vec<String>>,
    base_dir: std::path::PathBuf,
    inits: HashMap<String, TensorProto>,
}

impl Rewriter<'_> {
    fn fresh(&mut self, base: &str) -> String {
        let mut name = base.to_string();
        let mut i = 1;
        while self.names.contains(&name) {
            name = format!("{base}_{i}");
            i += 1;
        }
        self.names.insert(name.clone());
        name
    }

    fn add_init(&mut self, mut t: TensorProto) -> String {
        let name = self.fresh(t.name());
        t.name = Some(name.clone());
        self.new_inits.push(t);
        name
    }

    fn weight_f32(&self, name: &str) -> Result<Vec<f32>> {
        let t = self
            .inits
            .get(name)
            .ok_or_else(|| OnnxError::Quantize(format!("initializer {name:?} vanished")))?;
        tensor::to_f32(t, &self.base_dir)
    }

    /// `[k, n]` int8 weight (transposing a `[n, k]` Gemm B) with its scale and zero point;
    /// `alpha` is folded into the scale.
    fn int8_weight(
        &mut self,
        w: &str,
        k: usize,
        n: usize,
        transposed: bool,
        alpha: f32,
    ) -> Result<Vec<String>> {
        let key = format!("{w}/int8/{transposed}/{alpha}");
        if let Some(v) = self.weights.get(&key) {
            return Ok(v.clone());
        }
        let mut vals = self.weight_f32(w)?;
        if transposed {
            let src = vals.clone();
            for r in 0..k {
                for c in 0..n {
                    vals[r * n + c] = src[c * k + r];
                }
            }
        }
        let (q, mut scales) = weights::int8_symmetric(&vals, k, n, self.opts.per_channel);
        scales.iter_mut().for_each(|s| *s *= alpha);
        let sdims: Vec<i64> = if scales.len() > 1 {
            vec![scales.len() as i64]
        } else {
            vec![]
        };
        let qn = self.add_init(tensor::from_i8(
            &format!("{w}_quantized"),
            &[k as i64, n as i64],
            &q,
        ));
        let sn = self.add_init(tensor::from_f32(&format!("{w}_scale"), &sdims, &scales));
        let zn = self.add_init(tensor::from_i8(
            &format!("{w}_zero_point"),
            &sdims,
            &vec![0; scales.len()],
        ));
        let v = vec![qn, sn, zn];
        self.weights.insert(key, v.clone());
        Ok(v)
    }

    /// DynamicQuantizeLinear of an activation, once per activation.
    fn dynamic_act(&mut self, x: &str) -> Vec<String> {
        if let Some(v) = self.acts.get(x) {
            return v.clone();
        }
        let q = self.fresh(&format!("{x}_quantized"));
        let s = self.fresh(&format!("{x}_scale"));
        let z = self.fresh(&format!("{x}_zero_point"));
        let name = self.fresh(&format!("{x}_QuantizeLinear"));
        self.nodes.push(node(
            "DynamicQuantizeLinear",
            "",
            name,
            vec![x.into()],
            vec![q.clone(), s.clone(), z.clone()],
            vec![],
        ));
        let v = vec![q, s, z];
        self.acts.insert(x.to_string(), v.clone());
        v
    }

    /// QuantizeLinear + DequantizeLinear of an activation with its calibrated range; `None`
    /// when calibration never saw it.
    fn qdq_act(&mut self, x: &str) -> Option<String> {
        if let Some(v) = self.acts.get(x) {
            return Some(v[0].clone());
        }
        let &(min, max) = self.ranges?.get(x)?;
        let (scale, zp) = weights::uint8_params(min, max);
        let sn = self.add_init(tensor::from_f32(&format!("{x}_scale"), &[], &[scale]));
        let zn = self.add_init(tensor::from_u8(&format!("{x}_zero_point"), &[], &[zp]));
        let q = self.fresh(&format!("{x}_QuantizeLinear_Output"));
        let dq = self.fresh(&format!("{x}_DequantizeLinear_Output"));
        let qname = self.fresh(&format!("{x}_QuantizeLinear"));
        let dqname = self.fresh(&format!("{x}_DequantizeLinear"));
        self.nodes.push(node(
            "QuantizeLinear",
            "",
            qname,
            vec![x.into(), sn.clone(), zn.clone()],
            vec![q.clone()],
            vec![],
        ));
        self.nodes.push(node(
            "DequantizeLinear",
            "",
            dqname,
            vec![q, sn, zn],
            vec![dq.clone()],
            vec![],
        ));
        self.acts.insert(x.to_string(), vec![dq.clone()]);
        Some(dq)
    }

    /// Adds `beta * C` to `y` into `out` (the Gemm bias).
    fn gemm_bias(&mut self, y: String, c: &str, beta: f32, out: &str, base: &str) -> Result<()> {
        let c_name = if beta == 1.0 {
            c.to_string()
        } else if let Some(t) = self.inits.get(c).cloned() {
            let vals: Vec<f32> = tensor::to_f32(&t, &self.base_dir)?
                .iter()
                .map(|v| v * beta)
                .collect();
            self.add_init(tensor::from_f32(&format!("{c}_scaled"), &t.dims, &vals))
        } else {
            let b = self.add_init(tensor::from_f32(&format!("{base}_beta"), &[], &[beta]));
            let scaled = self.fresh(&format!("{c}_scaled"));
            let name = self.fresh(&format!("{base}_beta_mul"));
            self.nodes.push(node(
                "Mul",
                "",
                name,
                vec![c.into(), b],
                vec![scaled.clone()],
                vec![],
            ));
            scaled
        };
        let name = self.fresh(&format!("{base}_bias_add"));
        self.nodes.push(node(
            "Add",
            "",
            name,
            vec![y, c_name],
            vec![out.into()],
            vec![],
        ));
        Ok(())
    }

    fn dynamic_matmul(&mut self, n: &NodeProto, spec: &MatSpec) -> Result<()> {
        let MatSpec {
            w,
            k,
            n: nn,
            trans,
            alpha,
            bias,
        } = spec;
        let (k, nn, trans, alpha) = (*k, *nn, *trans, *alpha);
        let base = if n.name().is_empty() {
            n.output[0].clone()
        } else {
            n.name().to_string()
        };
        let act = self.dynamic_act(&n.input[0]);
        let wq = self.int8_weight(w, k, nn, trans, alpha)?;
        let out = n.output[0].clone();
        let mmi_out = self.fresh(&format!("{out}_output_quantized"));
        let cast_out = self.fresh(&format!("{mmi_out}_cast_output"));
        let scales = self.fresh(&format!("{base}_quant_scales_mul:0"));
        let y = if bias.is_some() {
            self.fresh(&format!("{out}_no_bias"))
        } else {
            out.clone()
        };
        let names: Vec<String> = [
            "_quant",
            "_quant_cast",
            "_quant_scales_mul",
            "_quant_output_scale_mul",
        ]
        .iter()
        .map(|s| self.fresh(&format!("{base}{s}")))
        .collect();
        self.nodes.push(node(
            "MatMulInteger",
            "",
            names[0].clone(),
            vec![act[0].clone(), wq[0].clone(), act[2].clone(), wq[2].clone()],
            vec![mmi_out.clone()],
            vec![],
        ));
        self.nodes.push(node(
            "Cast",
            "",
            names[1].clone(),
            vec![mmi_out],
            vec![cast_out.clone()],
            vec![int_attr("to", DataType::Float as i64)],
        ));
        self.nodes.push(node(
            "Mul",
            "",
            names[2].clone(),
            vec![act[1].clone(), wq[1].clone()],
            vec![scales.clone()],
            vec![],
        ));
        self.nodes.push(node(
            "Mul",
            "",
            names[3].clone(),
            vec![cast_out, scales],
            vec![y.clone()],
            vec![],
        ));
        if let Some((c, beta)) = bias {
            self.gemm_bias(y, c, *beta, &out, &base)?;
        }
        Ok(())
    }

    fn nbits_matmul(
        &mut self,
        n: &NodeProto,
        spec: &MatSpec,
        block: usize,
        symmetric: bool,
    ) -> Result<()> {
        let MatSpec {
            w,
            k,
            n: nn,
            trans,
            alpha,
            bias,
        } = spec;
        let (k, nn, trans, alpha) = (*k, *nn, *trans, *alpha);
        let base = if n.name().is_empty() {
            n.output[0].clone()
        } else {
            n.name().to_string()
        };
        let key = format!("{w}/nbits/{trans}/{alpha}");
        let wnames = match self.weights.get(&key) {
            Some(v) => v.clone(),
            None => {
                let mut vals = self.weight_f32(w)?;
                if trans {
                    let src = vals.clone();
                    for r in 0..k {
                        for c in 0..nn {
                            vals[r * nn + c] = src[c * k + r];
                        }
                    }
                }
                let q = weights::matmul_nbits(&vals, k, nn, block, symmetric);
                let scales: Vec<f32> = q.scales.iter().map(|s| s * alpha).collect();
                let kb = q.k_blocks as i64;
                let mut v = vec![
                    self.add_init(tensor::from_u8(
                        &format!("{w}_Q4"),
                        &[nn as i64, kb, block as i64 / 2],
                        &q.packed,
                    )),
                    self.add_init(tensor::from_f32(
                        &format!("{w}_scales"),
                        &[nn as i64, kb],
                        &scales,
                    )),
                ];
                if let Some(z) = &q.zero_points {
                    v.push(self.add_init(tensor::from_u8(
                        &format!("{w}_zero_points"),
                        &[nn as i64, (kb + 1) / 2],
                        z,
                    )));
                }
                self.weights.insert(key, v.clone());
                v
            }
        };
        let out = n.output[0].clone();
        let y = if bias.is_some() {
            self.fresh(&format!("{out}_no_bias"))
        } else {
            out.clone()
        };
        let name = self.fresh(&format!("{base}_Q4"));
        let mut inputs = vec![n.input[0].clone()];
        inputs.extend(wnames);
        let attrs = vec![
            int_attr("K", k as i64),
            int_attr("N", nn as i64),
            int_attr("bits", 4),
            int_attr("block_size", block as i64),
        ];
        self.nodes.push(node(
            "MatMulNBits",
            MS_DOMAIN,
            name,
            inputs,
            vec![y.clone()],
            attrs,
        ));
        if let Some((c, beta)) = bias {
            self.gemm_bias(y, c, *beta, &out, &base)?;
        }
        Ok(())
    }

    /// Gather on an int8 table followed by DequantizeLinear (dynamic and static modes).
    fn int8_gather(&mut self, n: &NodeProto, table: &str, cols: usize) -> Result<()> {
        let base = if n.name().is_empty() {
            n.output[0].clone()
        } else {
            n.name().to_string()
        };
        let t = &self.inits[table];
        let rows = usize::try_from(t.dims[0]).unwrap_or(0);
        let vals = self.weight_f32(table)?;
        // Per-column scales (DequantizeLinear along the last axis) keep each feature's
        // range; one scale for the table otherwise, as ONNX Runtime does.
        let (q, scales) = weights::int8_symmetric(&vals, rows, cols, self.opts.per_channel);
        let sdims: Vec<i64> = if scales.len() > 1 {
            vec![scales.len() as i64]
        } else {
            vec![]
        };
        let qn = self.add_init(tensor::from_i8(
            &format!("{table}_quantized"),
            &[rows as i64, cols as i64],
            &q,
        ));
        let sn = self.add_init(tensor::from_f32(&format!("{table}_scale"), &sdims, &scales));
        let zn = self.add_init(tensor::from_i8(
            &format!("{table}_zero_point"),
            &sdims,
            &vec![0; scales.len()],
        ));
        let out = n.output[0].clone();
        let gq = self.fresh(&format!("{out}_quantized"));
        let gname = self.fresh(&format!("{base}_quant"));
        let mut g = n.clone();
        g.name = Some(gname);
        g.input[0] = qn;
        g.output = vec![gq.clone()];
        self.nodes.push(g);
        let dqname = self.fresh(&format!("{base}_DequantizeLinear"));
        let attrs = if scales.len() > 1 {
            vec![int_attr("axis", -1)]
        } else {
            vec![]
        };
        self.nodes.push(node(
            "DequantizeLinear",
            "",
            dqname,
            vec![gq, sn, zn],
            vec![out],
            attrs,
        ));
        Ok(())
    }

    fn block4_gather(
        &mut self,
        n: &NodeProto,
        table: &str,
        cols: usize,
        axis: i64,
        block: usize,
        symmetric: bool,
    ) -> Result<()> {
        let base = if n.name().is_empty() {
            n.output[0].clone()
        } else {
            n.name().to_string()
        };
        let t = &self.inits[table];
        let dims = t.dims.clone();
        let vals = self.weight_f32(table)?;
        let q = weights::gather_blocks4(&vals, cols, block, symmetric);
        let qtype = if symmetric {
            DataType::Int4
        } else {
            DataType::Uint4
        };
        let sdims = vec![dims[0], (cols / block) as i64];
        let mut inputs = vec![
            self.add_init(tensor::from_raw(
                &format!("{table}_Q4"),
                qtype,
                &dims,
                q.data,
            )),
            n.input[1].clone(),
            self.add_init(tensor::from_f32(
                &format!("{table}_scales"),
                &sdims,
                &q.scales,
            )),
        ];
        if let Some(z) = q.zero_points {
            inputs.push(self.add_init(tensor::from_raw(
                &format!("{table}_zero_points"),
                DataType::Uint4,
                &sdims,
                z,
            )));
        }
        let attrs = vec![
            int_attr("gather_axis", axis),
            int_attr("quantize_axis", 1),
            int_attr("block_size", block as i64),
        ];
        let name = self.fresh(&format!("{base}_Q4"));
        self.nodes.push(node(
            "GatherBlockQuantized",
            MS_DOMAIN,
            name,
            inputs,
            n.output.clone(),
            attrs,
        ));
        Ok(())
    }

    fn qdq_node(&mut self, n: &NodeProto, t: &Target) -> Result<bool> {
        let Some(a) = self.qdq_act(&n.input[0]) else {
            return Ok(false);
        };
        let (w, k, nn, trans) = match t {
            Target::MatMul { w, k, n, .. } => (w.clone(), *k, *n, false),
            Target::Gemm {
                w, k, n, trans_b, ..
            } => (w.clone(), *k, *n, *trans_b),
            Target::Gather { .. } => unreachable!(),
        };
        let key = format!("{w}/qdq");
        let wdq = match self.weights.get(&key) {
            Some(v) => v[0].clone(),
            None => {
                let vals = self.weight_f32(&w)?;
                // A Gemm's B stays [n, k] when transposed: its output channel is axis 0.
                let (rows, cols, axis) = if trans { (nn, k, 0) } else { (k, nn, 1) };
                let (q, scales) = if trans {
                    // Per-row scales of [n, k]: quantize the transpose's columns.
                    let mut tr = vec![0f32; vals.len()];
                    for r in 0..rows {
                        for c in 0..cols {
                            tr[c * rows + r] = vals[r * cols + c];
                        }
                    }
                    let (qt, s) = weights::int8_symmetric(&tr, cols, rows, self.opts.per_channel);
                    let mut q = vec![0i8; qt.len()];
                    for r in 0..rows {
                        for c in 0..cols {
                            q[r * cols + c] = qt[c * rows + r];
                        }
                    }
                    (q, s)
                } else {
                    weights::int8_symmetric(&vals, rows, cols, self.opts.per_channel)
                };
                let sdims: Vec<i64> = if scales.len() > 1 {
                    vec![scales.len() as i64]
                } else {
                    vec![]
                };
                let qn = self.add_init(tensor::from_i8(
                    &format!("{w}_quantized"),
                    &[rows as i64, cols as i64],
                    &q,
                ));
                let sn = self.add_init(tensor::from_f32(&format!("{w}_scale"), &sdims, &scales));
                let zn = self.add_init(tensor::from_i8(
                    &format!("{w}_zero_point"),
                    &sdims,
                    &vec![0; scales.len()],
                ));
                let dq = self.fresh(&format!("{w}_DequantizeLinear_Output"));
                let name = self.fresh(&format!("{w}_DequantizeLinear"));
                let attrs = if scales.len() > 1 {
                    vec![int_attr("axis", axis)]
                } else {
                    vec![]
                };
                self.nodes.push(node(
                    "DequantizeLinear",
                    "",
                    name,
                    vec![qn, sn, zn],
                    vec![dq.clone()],
                    attrs,
                ));
                self.weights.insert(key, vec![dq.clone()]);
                dq
            }
        };
        let mut q = n.clone();
        q.input[0] = a;
        q.input[1] = wdq;
        self.nodes.push(q);
        Ok(true)
    }
}

/// Rewrites the model's main graph for the mode in `opts`.
pub(super) fn rewrite(
    model: &mut OnnxModel,
    opts: &QuantizeOptions,
    ranges: Option<&Ranges>,
    report: &mut QuantizeReport,
) -> Result<()> {
    let base_dir = model.base_dir().to_path_buf();
    let g: &mut GraphProto = model.graph_mut()?;
    let mut names: HashSet<String> = g.input.iter().map(|v| v.name().to_string()).collect();
    names.extend(g.initializer.iter().map(|t| t.name().to_string()));
    names.extend(g.node.iter().flat_map(|n| n.output.iter().cloned()));
    names.extend(g.node.iter().map(|n| n.name().to_string()));
    let old_nodes = std::mem::take(&mut g.node);
    let mut rw = Rewriter {
        opts,
        ranges,
        names,
        new_inits: Vec::new(),
        nodes: Vec::with_capacity(old_nodes.len() * 2),
        acts: HashMap::new(),
        weights: HashMap::new(),
        base_dir,
        inits: g
            .initializer
            .iter()
            .map(|t| (t.name().to_string(), t.clone()))
            .collect(),
    };
    let init_refs: HashMap<&str, &TensorProto> =
        rw.inits.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let targets: Vec<Option<Target>> = old_nodes
        .iter()
        .map(|n| target(n, &init_refs, opts))
        .collect();
    drop(init_refs);
    let mut uses_ms = false;
    for (n, t) in old_nodes.iter().zip(targets) {
        let Some(t) = t else {
            rw.nodes.push(n.clone());
            continue;
        };
        let label = if n.name().is_empty() {
            format!("{} -> {}", n.op_type(), n.output[0])
        } else {
            n.name().to_string()
        };
        if excluded(n, opts) {
            report.skipped.push(format!("{label} (excluded)"));
            rw.nodes.push(n.clone());
            continue;
        }
        let done = match (&opts.mode, &t) {
            (Mode::DynamicInt8 | Mode::StaticInt8 { .. }, Target::Gather { table, cols, .. }) => {
                rw.int8_gather(n, table, *cols)?;
                true
            }
            (
                Mode::Int4 {
                    block_size,
                    symmetric,
                },
                Target::Gather { table, cols, axis },
            ) => {
                uses_ms = true;
                rw.block4_gather(n, table, *cols, *axis, *block_size, *symmetric)?;
                true
            }
            (Mode::DynamicInt8, t) => {
                rw.dynamic_matmul(n, &t.mat_spec().expect("MatMul or Gemm"))?;
                true
            }
            (
                Mode::Int4 {
                    block_size,
                    symmetric,
                },
                t,
            ) => {
                uses_ms = true;
                rw.nbits_matmul(
                    n,
                    &t.mat_spec().expect("MatMul or Gemm"),
                    *block_size,
                    *symmetric,
                )?;
                true
            }
            (Mode::StaticInt8 { .. }, t) => rw.qdq_node(n, t)?,
        };
        if done {
            *report.quantized.entry(n.op_type().to_string()).or_default() += 1;
        } else {
            report
                .skipped
                .push(format!("{label} (no calibrated range for {})", n.input[0]));
            rw.nodes.push(n.clone());
        }
    }
    let Rewriter {
        nodes, new_inits, ..
    } = rw;
    g.node = nodes;
    g.initializer.extend(new_inits);
    // Drop the float weights nothing reads any more (also from the inputs list of old IR
    // versions, which lists initializers as inputs).
    let mut used: HashSet<String> = g.output.iter().map(|o| o.name().to_string()).collect();
    collect_used(g, &mut used);
    let dropped: HashSet<String> = g
        .initializer
        .iter()
        .map(|t| t.name().to_string())
        .filter(|n| !used.contains(n))
        .collect();
    g.initializer.retain(|t| !dropped.contains(t.name()));
    g.input.retain(|v| !dropped.contains(v.name()));
    if uses_ms && model.opset(MS_DOMAIN).is_none() {
        model.proto.opset_import.push(OperatorSetIdProto {
            domain: Some(MS_DOMAIN.into()),
            version: Some(1),
        });
    }
    Ok(())
}

fn collect_used(g: &GraphProto, used: &mut HashSet<String>) {
    for n in &g.node {
        used.extend(n.input.iter().cloned());
        for a in &n.attribute {
            for sub in a.g.iter().chain(&a.graphs) {
                collect_used(sub, used);
            }
        }
    }
}
