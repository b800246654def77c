//! llama.cpp's quantization mixes: which type each tensor gets for a file type such as
//! `Q4_K_M` (`llama_tensor_get_type` in `src/llama-quant.cpp`).
//!
//! A file type names a default tensor type ([`FileType::default_type`]) and rules that give
//! some tensors more (or fewer) bits: the output matrix and tied token embeddings, `attn_v` in
//! the first, last and every third layer ([`use_more_bits`]), the first eighth of `ffn_down`,
//! and so on. The rules depend on the tensor's name, its row length, counters of the `attn_v`
//! and `ffn_*` tensors seen so far, and a few model facts ([`ModelFacts`]): architecture,
//! layers, query heads per KV head, experts. [`Mixer`] keeps the counters; it sees the tensors
//! in llama.cpp's order ([`llama_order`]) so the counters agree.
//!
//! This module only decides; [`crate::quantize`] reads and writes files.

use std::cmp::Ordering;

use perch_gguf::{Array, GgufFile, Value, keys};
use perch_quant::GgmlType;
use regex::Regex;

use crate::error::{ConvertError, Result};
pub use crate::ftype::FileType;
use crate::quantize::{allows_quantization, fallback_type};

/// One `--tensor-type PATTERN=TYPE`: tensors whose name the regex matches (anywhere) get the
/// type, instead of the mix's choice.
#[derive(Clone, Debug)]
pub struct TensorTypeRule {
    /// The pattern, as given.
    pub pattern: Regex,
    /// The type.
    pub ty: GgmlType,
}

impl TensorTypeRule {
    /// Parses `PATTERN=TYPE`. The pattern is lower-cased, as llama-quantize does; the type is
    /// a ggml type name (case-insensitive).
    pub fn parse(spec: &str) -> Result<TensorTypeRule> {
        let bad = |why: String| ConvertError::BadFlag {
            flag: "--tensor-type",
            value: spec.to_string(),
            why,
        };
        let (pattern, ty) = spec
            .rsplit_once('=')
            .ok_or_else(|| bad("expected PATTERN=TYPE".into()))?;
        if pattern.is_empty() {
            return Err(bad("the pattern is empty".into()));
        }
        let ty = GgmlType::from_name(ty).ok_or_else(|| bad(format!("unknown type {ty:?}")))?;
        let pattern = Regex::new(&pattern.to_lowercase()).map_err(|e| {
            // The regex crate's message spans lines (pattern, caret, error): keep the error.
            let msg = e.to_string();
            let last = msg.lines().last().unwrap_or_default();
            bad(format!(
                "not a valid regex: {}",
                last.trim().trim_start_matches("error: ")
            ))
        })?;
        Ok(TensorTypeRule { pattern, ty })
    }
}

/// What `llama-quantize`'s flags change about the mix.
#[derive(Clone, Debug, Default)]
pub struct MixOptions {
    /// `--pure`: no mix rules; every quantizable tensor gets the default type (the overrides
    /// below still apply).
    pub pure: bool,
    /// `--tensor-type PATTERN=TYPE`, in order; the first pattern that matches wins.
    pub tensor_types: Vec<TensorTypeRule>,
    /// `--output-tensor-type`: the type of `output.weight` (and of tied token embeddings).
    pub output_tensor_type: Option<GgmlType>,
    /// `--token-embedding-type`: the type of `token_embd.weight`.
    pub token_embedding_type: Option<GgmlType>,
    /// `--leave-output-tensor`: copy `output.weight` unchanged.
    pub leave_output_tensor: bool,
    /// Whether an importance matrix is given (`--imatrix`): a few rules differ with one.
    pub has_imatrix: bool,
}

/// The model facts the rules read, from the file's metadata.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ModelFacts {
    /// `general.architecture`.
    pub arch: String,
    /// Blocks (`{arch}.block_count`; else counted from the tensor names).
    pub n_layer: u32,
    /// Query heads of the first layer.
    pub n_head: u32,
    /// KV heads of the first layer (defaults to `n_head`).
    pub n_head_kv: u32,
    /// Experts (0 for dense models).
    pub n_expert: u32,
}

impl ModelFacts {
    /// Reads the facts from `file`'s metadata.
    pub fn from_file(file: &GgufFile) -> ModelFacts {
        let arch = file
            .get(keys::GENERAL_ARCHITECTURE)
            .and_then(Value::as_string)
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let int = |suffix: &str| first_int(file.get(&keys::arch_key(&arch, suffix)));
        let n_layer = int("block_count").unwrap_or_else(|| {
            file.tensors()
                .iter()
                .filter_map(|t| block_of(&t.name))
                .map(|b| b as u32 + 1)
                .max()
                .unwrap_or(0)
        });
        let n_head = int("attention.head_count").unwrap_or(0);
        ModelFacts {
            n_layer,
            n_head,
            n_head_kv: int("attention.head_count_kv").unwrap_or(n_head),
            n_expert: int("expert_count").unwrap_or(0),
            arch,
        }
    }

    /// Query heads per KV head (0 without KV heads).
    pub fn n_gqa(&self) -> u32 {
        self.n_head.checked_div(self.n_head_kv).unwrap_or(0)
    }

    fn is_falcon(&self) -> bool {
        self.arch == "falcon"
    }

    /// llama.cpp's 70B class, the only size its rules look at: llama with 80 layers and
    /// grouped-query attention, qwen2 with 80 layers.
    fn is_70b(&self) -> bool {
        self.n_layer == 80
            && match self.arch.as_str() {
                "llama" => self.n_head != self.n_head_kv,
                "qwen2" | "deci" | "olmo" => true,
                _ => false,
            }
    }
}

/// An integer, or the first element of an integer array (per-layer values).
fn first_int(v: Option<&Value>) -> Option<u32> {
    let v = v?;
    let n = match v.as_array() {
        Some(a) => match a {
            Array::U8(x) => x.first().map(|&n| n as i128),
            Array::I8(x) => x.first().map(|&n| n as i128),
            Array::U16(x) => x.first().map(|&n| n as i128),
            Array::I16(x) => x.first().map(|&n| n as i128),
            Array::U32(x) => x.first().map(|&n| n as i128),
            Array::I32(x) => x.first().map(|&n| n as i128),
            Array::U64(x) => x.first().map(|&n| n as i128),
            Array::I64(x) => x.first().map(|&n| n as i128),
            _ => None,
        }?,
        None => v.as_integer()?,
    };
    u32::try_from(n).ok()
}

/// The block number of a `blk.N.` tensor.
pub fn block_of(name: &str) -> Option<usize> {
    let rest = name.strip_prefix("blk.")?;
    let (n, _) = rest.split_once('.')?;
    n.parse().ok()
}

/// llama.cpp's tensor order for quantizing (its loader's map): tensors outside blocks first,
/// then by block number, then by name. The mix counters advance in this order.
pub fn llama_order(a: &str, b: &str) -> Ordering {
    let layer = |s: &str| block_of(s).map_or(-1, |n| n as i64);
    layer(a).cmp(&layer(b)).then_with(|| a.cmp(b))
}

/// What a tensor is, for the rules (`tensor_category` in llama.cpp).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Category {
    /// `token_embd.weight`, `per_layer_token_embd.weight`.
    TokenEmbd,
    /// `attn_q.weight`.
    AttnQ,
    /// `attn_v.weight`.
    AttnV,
    /// `attn_k.weight`.
    AttnK,
    /// `attn_qkv.weight` (fused).
    AttnQkv,
    /// `attn_kv_b.weight`.
    AttnKvB,
    /// `attn_output.weight`.
    AttnOutput,
    /// `ffn_up*`.
    FfnUp,
    /// `ffn_gate*`.
    FfnGate,
    /// `ffn_down*`.
    FfnDown,
    /// `output.weight`.
    Output,
    /// Anything else.
    Other,
}

impl Category {
    /// The category of a tensor name.
    pub fn of(name: &str) -> Category {
        use Category::*;
        if name == "output.weight" {
            return Output;
        }
        if name == "token_embd.weight" || name == "per_layer_token_embd.weight" {
            return TokenEmbd;
        }
        const BY_PART: [(&str, Category); 9] = [
            ("attn_qkv.weight", AttnQkv),
            ("attn_kv_b.weight", AttnKvB),
            ("attn_v.weight", AttnV),
            ("attn_k.weight", AttnK),
            ("attn_q.weight", AttnQ),
            ("attn_output.weight", AttnOutput),
            ("ffn_up", FfnUp),
            ("ffn_gate", FfnGate),
            ("ffn_down", FfnDown),
        ];
        BY_PART
            .iter()
            .find(|(part, _)| name.contains(part))
            .map_or(Other, |&(_, c)| c)
    }

    /// `attn_v` and the tensors that hold it (fused QKV, MLA's `kv_b`).
    pub fn is_attn_v(self) -> bool {
        matches!(
            self,
            Category::AttnV | Category::AttnQkv | Category::AttnKvB
        )
    }
}

/// Whether layer `i` of `n` is one the `_M` mixes give more bits: the first and last eighth,
/// and every third layer in between.
pub fn use_more_bits(i: i64, n: i64) -> bool {
    // `%` truncates as C++'s does; a negative left side means `i < n / 8` anyway.
    i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2
}

/// The type a tensor gets and whether that is a fallback for rows that do not divide.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The output type.
    pub ty: GgmlType,
    /// Whether `ty` is a fallback because the rows do not divide into the chosen type's blocks.
    pub fallback: bool,
    /// Whether llama.cpp requires an importance matrix for this tensor in this file type.
    pub needs_imatrix: bool,
}

/// Decides tensor types for one file, tensor after tensor in [`llama_order`], keeping
/// llama.cpp's counters of `attn_v` and `ffn_*` tensors.
#[derive(Debug)]
pub struct Mixer<'a> {
    ftype: FileType,
    facts: &'a ModelFacts,
    opts: &'a MixOptions,
    tied_embeddings: bool,
    n_attn_v: i64,
    i_attn_v: i64,
    i_ffn_down: i64,
    i_ffn_gate: i64,
    i_ffn_up: i64,
}

impl<'a> Mixer<'a> {
    /// A mixer for a file with tensors `names` (all of them: their count of `attn_v` tensors
    /// and whether there is an `output.weight` matter).
    pub fn new<'n>(
        ftype: FileType,
        facts: &'a ModelFacts,
        opts: &'a MixOptions,
        names: impl IntoIterator<Item = &'n str>,
    ) -> Mixer<'a> {
        let mut n_attn_v = 0;
        let mut tied_embeddings = true;
        for name in names {
            let c = Category::of(name);
            n_attn_v += i64::from(c.is_attn_v());
            tied_embeddings &= c != Category::Output;
        }
        Mixer {
            ftype,
            facts,
            opts,
            tied_embeddings,
            n_attn_v,
            i_attn_v: 0,
            i_ffn_down: 0,
            i_ffn_gate: 0,
            i_ffn_up: 0,
        }
    }

    /// The type of tensor `name` with dimensions `dims` (row length first), now of type
    /// `current`. Call in [`llama_order`].
    pub fn decide(&mut self, name: &str, dims: &[u64], current: GgmlType) -> Result<Decision> {
        let keep = Decision {
            ty: current,
            fallback: false,
            needs_imatrix: false,
        };
        if !allows_quantization(name, dims.len())
            || (self.opts.leave_output_tensor && name == "output.weight")
        {
            return Ok(keep);
        }
        let category = Category::of(name);
        let (ty, check_rows) = self.choose(name, dims, category)?;
        let (ty, fallback) = if check_rows {
            fit(name, dims, ty)?
        } else if dims[0] % ty.block_size() as u64 != 0 {
            // A type forced by --token-embedding-type / --output-tensor-type is not checked
            // by llama.cpp (ggml then aborts); perch says why.
            return Err(ConvertError::Indivisible {
                tensor: name.to_string(),
                ncols: dims[0],
                ty,
            });
        } else {
            (ty, false)
        };
        Ok(Decision {
            ty,
            fallback,
            needs_imatrix: needs_imatrix(name, ty, self.ftype),
        })
    }

    /// The type before the row-length check, and whether that check applies (the forced
    /// `--token-embedding-type` / `--output-tensor-type` skip it, as in llama.cpp).
    fn choose(&mut self, name: &str, dims: &[u64], category: Category) -> Result<(GgmlType, bool)> {
        if let Some(ty) = self.opts.token_embedding_type
            && category == Category::TokenEmbd
        {
            let named = name == "per_layer_token_embd.weight"
                && self
                    .opts
                    .tensor_types
                    .iter()
                    .any(|r| r.pattern.is_match(name));
            if !named {
                return Ok((ty, false));
            }
        }
        if let Some(ty) = self.opts.output_tensor_type
            && category == Category::Output
        {
            return Ok((ty, false));
        }
        let default = self.ftype.default_type();
        if !default.is_quantized() {
            return Ok((default, false));
        }
        if let Some(rule) = self
            .opts
            .tensor_types
            .iter()
            .find(|r| r.pattern.is_match(name))
        {
            return Ok((rule.ty, true));
        }
        if self.opts.pure {
            return Ok((default, true));
        }
        Ok((self.mix_rule(name, dims, category, default)?, true))
    }

    /// The layer of a per-layer tensor: the counter, or for mixture-of-experts models the
    /// block number in the name (experts are not stored in layer order).
    fn layer(&self, counter: i64, name: &str) -> Result<(i64, i64)> {
        let n = i64::from(self.facts.n_layer);
        if self.facts.n_expert <= 1 {
            return Ok((counter, n));
        }
        match block_of(name) {
            Some(i) if (i as i64) < n => Ok((i as i64, n)),
            _ => Err(ConvertError::NoLayer {
                tensor: name.to_string(),
                n_layer: self.facts.n_layer,
            }),
        }
    }

    /// `llama_tensor_get_type_impl`: the mix's rules for one tensor.
    fn mix_rule(
        &mut self,
        name: &str,
        dims: &[u64],
        category: Category,
        default: GgmlType,
    ) -> Result<GgmlType> {
        use Category as C;
        use FileType as F;
        use GgmlType as T;
        let ft = self.ftype;
        let m = self.facts;
        let gqa = m.n_gqa();
        let imx = self.opts.has_imatrix;
        let mut ty = default;
        if category == C::Output || (self.tied_embeddings && category == C::TokenEmbd) {
            if let Some(t) = self.opts.output_tensor_type {
                ty = t;
            } else if ft == F::MXFP4_MOE || m.is_falcon() || dims[0] % ty.block_size() as u64 != 0 {
                ty = T::Q8_0;
            } else if ft.is_low_bit_iq() || ft == F::IQ3_XXS {
                ty = T::Q5_K;
            } else if ty != T::Q8_0 {
                ty = T::Q6_K;
            }
        } else if ft == F::MXFP4_MOE {
            let expert_role = matches!(category, C::FfnUp | C::FfnGate | C::FfnDown);
            let experts = dims.get(2).is_some_and(|&n| n > 1);
            ty = if experts && (m.arch != "bailingmoe3" || expert_role) {
                T::MXFP4
            } else {
                T::Q8_0
            };
        } else if category == C::TokenEmbd {
            if let Some(t) = self.opts.token_embedding_type {
                ty = t;
            } else {
                match ft {
                    F::IQ2_XXS | F::IQ2_XS | F::IQ1_S | F::IQ1_M => ty = T::Q2_K,
                    F::IQ2_S | F::IQ2_M | F::IQ3_XXS => ty = T::IQ3_S,
                    F::TQ1_0 | F::TQ2_0 | F::Q2_0 => ty = T::Q4_K,
                    _ => {}
                }
            }
        } else if ft.is_low_bit_iq() {
            let iq2_s_m = matches!(ft, F::IQ2_S | F::IQ2_M);
            if category.is_attn_v() {
                ty = if gqa >= 4 || m.n_expert >= 4 {
                    T::Q4_K
                } else if iq2_s_m {
                    T::IQ3_S
                } else {
                    T::Q2_K
                };
                self.i_attn_v += 1;
            } else if m.n_expert == 8 && category == C::AttnK {
                ty = T::Q4_K;
            } else if category == C::FfnDown {
                if self.i_ffn_down < i64::from(m.n_layer) / 8 {
                    ty = if iq2_s_m { T::IQ3_S } else { T::Q2_K };
                }
                self.i_ffn_down += 1;
            } else if category == C::AttnOutput {
                if m.n_expert == 8 {
                    ty = T::Q5_K;
                } else if matches!(ft, F::IQ1_S | F::IQ1_M) {
                    ty = T::IQ2_XXS;
                } else if iq2_s_m {
                    ty = T::IQ3_S;
                }
            }
        } else if category.is_attn_v() {
            let (i, n) = (self.i_attn_v, self.n_attn_v);
            match ft {
                F::Q2_K => ty = if gqa >= 4 { T::Q4_K } else { T::Q3_K },
                F::Q2_K_S if gqa >= 4 => ty = T::Q4_K,
                F::IQ3_XXS => {
                    ty = if gqa >= 4 {
                        T::Q4_K
                    } else if imx {
                        T::IQ3_XXS
                    } else {
                        T::IQ3_S
                    }
                }
                F::IQ3_XS | F::IQ3_S if gqa >= 4 => ty = T::Q4_K,
                F::IQ3_M => ty = T::Q4_K,
                F::Q3_K_M => ty = if i < 2 { T::Q5_K } else { T::Q4_K },
                F::Q3_K_L => ty = T::Q5_K,
                F::IQ4_NL | F::IQ4_XS if gqa >= 4 => ty = T::Q5_K,
                F::Q4_K_M | F::Q5_K_M if use_more_bits(i, n) => ty = T::Q6_K,
                F::Q4_K_S if i < 4 => ty = T::Q5_K,
                _ => {}
            }
            if m.is_70b() && matches!(ty, T::Q3_K | T::Q4_K) {
                ty = T::Q5_K;
            }
            if m.n_expert == 8 {
                ty = T::Q8_0;
            }
            self.i_attn_v += 1;
        } else if category == C::AttnK {
            if m.n_expert == 8 {
                ty = T::Q8_0;
            } else if ft == F::IQ3_XS {
                ty = T::IQ3_XXS;
            } else if ft == F::IQ3_XXS {
                ty = T::IQ2_S;
            }
        } else if category == C::AttnQ {
            if ft == F::IQ3_XS {
                ty = T::IQ3_XXS;
            } else if ft == F::IQ3_XXS {
                ty = T::IQ2_S;
            }
        } else if category == C::FfnDown {
            let (i, n) = self.layer(self.i_ffn_down, name)?;
            let falcon = m.is_falcon();
            match ft {
                F::Q2_K => ty = T::Q3_K,
                F::Q2_K_S if i < n / 8 => ty = T::Q4_K,
                F::IQ3_XXS if !imx => ty = if i < n / 8 { T::Q4_K } else { T::Q3_K },
                F::Q3_K_M => {
                    ty = if i < n / 16 {
                        T::Q5_K
                    } else if !falcon || use_more_bits(i, n) {
                        T::Q4_K
                    } else {
                        T::Q3_K
                    }
                }
                F::IQ3_M if i < n / 8 || (m.n_expert == 8 && use_more_bits(i, n)) => ty = T::Q4_K,
                F::Q3_K_L => ty = if falcon { T::Q4_K } else { T::Q5_K },
                F::Q4_K_M => {
                    if falcon {
                        ty = if i < n / 16 {
                            T::Q6_K
                        } else if use_more_bits(i, n) {
                            T::Q5_K
                        } else {
                            T::Q4_K
                        };
                    } else if use_more_bits(i, n) {
                        ty = T::Q6_K;
                    }
                }
                F::IQ4_NL | F::IQ4_XS if i < n / 8 && !imx => ty = T::Q5_K,
                // Guards the first ffn_down layers of Q4_0/Q5_0, only with an imatrix (so
                // files made without one stay as they were).
                F::Q4_0 if imx && i < n / 8 => ty = T::Q4_1,
                F::Q5_0 if imx && i < n / 8 => ty = T::Q5_1,
                F::Q5_K_M if use_more_bits(i, n) => ty = T::Q6_K,
                F::Q4_K_S if !falcon && i < n / 8 => ty = T::Q5_K,
                _ => {}
            }
            self.i_ffn_down += 1;
        } else if category == C::AttnOutput {
            if m.is_falcon() {
                if ft == F::Q3_K_L {
                    ty = T::Q4_K;
                }
            } else if m.n_expert == 8 {
                if matches!(
                    ft,
                    F::Q2_K
                        | F::IQ3_XS
                        | F::IQ3_XXS
                        | F::Q3_K_S
                        | F::Q3_K_M
                        | F::IQ4_NL
                        | F::Q4_K_S
                        | F::Q4_K_M
                        | F::IQ3_S
                        | F::IQ3_M
                        | F::IQ4_XS
                ) {
                    ty = T::Q5_K;
                }
            } else {
                match ft {
                    F::Q2_K => ty = T::Q3_K,
                    F::IQ3_XXS => ty = T::IQ3_S,
                    F::Q3_K_M | F::IQ3_M => ty = T::Q4_K,
                    F::Q3_K_L => ty = T::Q5_K,
                    _ => {}
                }
            }
        } else if matches!(category, C::FfnGate | C::FfnUp) {
            let counter = if category == C::FfnGate {
                self.i_ffn_gate
            } else {
                self.i_ffn_up
            };
            let (i, n) = self.layer(counter, name)?;
            if ft == F::IQ3_XS && i >= n / 8 && i < 7 * n / 8 {
                ty = T::IQ3_XXS;
            }
            if category == C::FfnGate {
                self.i_ffn_gate += 1;
            } else {
                self.i_ffn_up += 1;
            }
        }
        Ok(ty)
    }
}

/// The row-length check: `ty` itself, or its fallback.
fn fit(name: &str, dims: &[u64], ty: GgmlType) -> Result<(GgmlType, bool)> {
    fallback_type(ty, dims[0]).ok_or_else(|| ConvertError::NoFallback {
        tensor: name.to_string(),
        ncols: dims[0],
        target: ty,
        block: ty.block_size(),
    })
}

/// Whether llama.cpp refuses to write `ty` for this tensor without an importance matrix
/// (`tensor_requires_imatrix`): the 1- to 3-bit I-quants, and Q2_K in a Q2_K_S file.
pub fn needs_imatrix(name: &str, ty: GgmlType, ftype: FileType) -> bool {
    use GgmlType as T;
    if matches!(Category::of(name), Category::Output | Category::TokenEmbd) {
        return false;
    }
    match ty {
        T::IQ3_XXS | T::IQ2_XXS | T::IQ2_XS | T::IQ2_S | T::IQ1_M | T::IQ1_S => true,
        T::Q2_K => ftype == FileType::Q2_K_S,
        _ => false,
    }
}

#[cfg(test)]
mod tests;
