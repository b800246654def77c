//! The mix rules on hand-made tensor lists.

use super::*;
use std::collections::BTreeMap;

/// A llama-shaped model of `n_layer` layers, 256 wide, tied embeddings unless `output`.
fn llama(n_layer: usize, output: bool) -> Vec<(String, Vec<u64>)> {
    let mut t = vec![
        ("token_embd.weight".to_string(), vec![256, 1000]),
        ("output_norm.weight".to_string(), vec![256]),
    ];
    if output {
        t.push(("output.weight".to_string(), vec![256, 1000]));
    }
    for il in 0..n_layer {
        for (part, dims) in [
            ("attn_norm", vec![256]),
            ("attn_q", vec![256, 256]),
            ("attn_k", vec![256, 64]),
            ("attn_v", vec![256, 64]),
            ("attn_output", vec![256, 256]),
            ("ffn_gate", vec![256, 512]),
            ("ffn_up", vec![256, 512]),
            ("ffn_down", vec![512, 256]),
        ] {
            t.push((format!("blk.{il}.{part}.weight"), dims));
        }
    }
    t
}

fn facts(n_layer: u32) -> ModelFacts {
    ModelFacts {
        arch: "llama".into(),
        n_layer,
        n_head: 4,
        n_head_kv: 1,
        n_expert: 0,
    }
}

/// Every tensor's type, decided in llama.cpp's order.
fn decide_all(
    ftype: FileType,
    opts: &MixOptions,
    tensors: &[(String, Vec<u64>)],
) -> Result<BTreeMap<String, GgmlType>> {
    let facts = facts(
        tensors
            .iter()
            .filter_map(|t| block_of(&t.0))
            .max()
            .unwrap_or(0) as u32
            + 1,
    );
    let mut mixer = Mixer::new(ftype, &facts, opts, tensors.iter().map(|t| t.0.as_str()));
    let mut sorted: Vec<_> = tensors.iter().collect();
    sorted.sort_by(|a, b| llama_order(&a.0, &b.0));
    let mut out = BTreeMap::new();
    for (name, dims) in sorted {
        let d = mixer.decide(name, dims, GgmlType::F32)?;
        out.insert(name.clone(), d.ty);
    }
    Ok(out)
}

fn rule(s: &str) -> TensorTypeRule {
    TensorTypeRule::parse(s).unwrap()
}

#[test]
fn file_types_parse_with_llama_quantizes_names_and_aliases() {
    assert_eq!(FileType::from_name("q4_k_m"), Some(FileType::Q4_K_M));
    assert_eq!(FileType::from_name("Q4_K"), Some(FileType::Q4_K_M));
    assert_eq!(FileType::from_name("q3_k"), Some(FileType::Q3_K_M));
    assert_eq!(FileType::from_name("Q5_K"), Some(FileType::Q5_K_M));
    assert_eq!(FileType::from_name("Q9_9"), None);
    for f in FileType::ALL {
        assert_eq!(keys::file_type_id(f.name()), Some(f.id()), "{f}");
        assert_eq!(FileType::from_name(f.name()), Some(f));
    }
}

#[test]
fn more_bits_go_to_the_ends_and_every_third_layer() {
    let more: Vec<i64> = (0..16).filter(|&i| use_more_bits(i, 16)).collect();
    assert_eq!(more, [0, 1, 4, 7, 10, 13, 14, 15]);
    let more: Vec<i64> = (0..8).filter(|&i| use_more_bits(i, 8)).collect();
    assert_eq!(more, [0, 3, 6, 7]);
}

#[test]
fn llama_order_puts_blocks_by_number_after_the_rest() {
    let mut v = [
        "blk.10.attn_v.weight",
        "output.weight",
        "blk.2.attn_v.weight",
        "blk.2.attn_k.weight",
    ];
    v.sort_by(|a, b| llama_order(a, b));
    assert_eq!(
        v,
        [
            "output.weight",
            "blk.2.attn_k.weight",
            "blk.2.attn_v.weight",
            "blk.10.attn_v.weight"
        ]
    );
}

#[test]
fn q4_k_m_gives_more_bits_to_attn_v_and_ffn_down_in_chosen_layers() {
    let t = decide_all(FileType::Q4_K_M, &MixOptions::default(), &llama(16, false)).unwrap();
    for il in 0..16 {
        let want = if use_more_bits(il, 16) {
            GgmlType::Q6_K
        } else {
            GgmlType::Q4_K
        };
        assert_eq!(t[&format!("blk.{il}.attn_v.weight")], want, "layer {il}");
        assert_eq!(t[&format!("blk.{il}.ffn_down.weight")], want, "layer {il}");
        assert_eq!(t[&format!("blk.{il}.attn_q.weight")], GgmlType::Q4_K);
    }
    assert_eq!(
        t["token_embd.weight"],
        GgmlType::Q6_K,
        "tied embeddings get the output's type"
    );
    assert_eq!(t["output_norm.weight"], GgmlType::F32);
}

#[test]
fn tensor_type_patterns_override_the_first_match_and_are_not_counted() {
    let opts = MixOptions {
        tensor_types: vec![
            rule(r"blk\.[0-3]\.attn_v=q8_0"),
            rule("attn_v=q5_0"),
            rule("ffn_down=q5_0"),
            rule("down=q2_k"),
        ],
        ..MixOptions::default()
    };
    let t = decide_all(FileType::Q4_K_M, &opts, &llama(16, false)).unwrap();
    assert_eq!(t["blk.2.attn_v.weight"], GgmlType::Q8_0);
    assert_eq!(
        t["blk.9.attn_v.weight"],
        GgmlType::Q5_0,
        "the first matching pattern wins"
    );
    assert_eq!(t["blk.9.ffn_down.weight"], GgmlType::Q5_0);

    // Overridden attn_v tensors do not advance the counter: layer 4 is the first counted
    // (index 0, more bits), so layer 5 (index 1) gets Q6_K where it would get Q4_K.
    let opts = MixOptions {
        tensor_types: vec![rule(r"blk\.[0-3]\.attn_v=q8_0")],
        ..MixOptions::default()
    };
    let t = decide_all(FileType::Q4_K_M, &opts, &llama(16, false)).unwrap();
    let plain = decide_all(FileType::Q4_K_M, &MixOptions::default(), &llama(16, false)).unwrap();
    assert_eq!(t["blk.5.attn_v.weight"], GgmlType::Q6_K);
    assert_eq!(plain["blk.5.attn_v.weight"], GgmlType::Q4_K);
}

#[test]
fn output_and_token_embedding_types_are_forced() {
    let opts = MixOptions {
        output_tensor_type: Some(GgmlType::Q5_0),
        token_embedding_type: Some(GgmlType::Q8_0),
        ..MixOptions::default()
    };
    let t = decide_all(FileType::Q3_K_M, &opts, &llama(4, true)).unwrap();
    assert_eq!(t["output.weight"], GgmlType::Q5_0);
    assert_eq!(t["token_embd.weight"], GgmlType::Q8_0);
    // With tied embeddings, the output type also applies to token_embd.
    let opts = MixOptions {
        output_tensor_type: Some(GgmlType::Q5_0),
        ..MixOptions::default()
    };
    let t = decide_all(FileType::Q3_K_M, &opts, &llama(4, false)).unwrap();
    assert_eq!(t["token_embd.weight"], GgmlType::Q5_0);
    // A forced type must fit the rows: there is no fallback for it.
    let opts = MixOptions {
        token_embedding_type: Some(GgmlType::Q4_K),
        ..MixOptions::default()
    };
    let mut odd = llama(1, true);
    odd[0].1 = vec![96, 1000];
    let err = decide_all(FileType::Q4_0, &opts, &odd).unwrap_err();
    assert!(
        matches!(&err, ConvertError::Indivisible { tensor, .. } if tensor == "token_embd.weight"),
        "{err}"
    );
}

#[test]
fn pure_and_leave_output_tensor() {
    let opts = MixOptions {
        pure: true,
        ..MixOptions::default()
    };
    let t = decide_all(FileType::Q4_K_M, &opts, &llama(8, true)).unwrap();
    for (name, ty) in &t {
        let want = if name.contains("norm") {
            GgmlType::F32
        } else {
            GgmlType::Q4_K
        };
        assert_eq!(*ty, want, "{name}");
    }
    let opts = MixOptions {
        leave_output_tensor: true,
        ..MixOptions::default()
    };
    let t = decide_all(FileType::Q5_K_M, &opts, &llama(8, true)).unwrap();
    assert_eq!(t["output.weight"], GgmlType::F32);
    assert_eq!(
        t["token_embd.weight"],
        GgmlType::Q5_K,
        "untied embeddings keep the default"
    );
}

#[test]
fn unquantized_file_types_have_no_mix() {
    for (f, ty) in [
        (FileType::F16, GgmlType::F16),
        (FileType::BF16, GgmlType::BF16),
    ] {
        let t = decide_all(f, &MixOptions::default(), &llama(4, true)).unwrap();
        assert_eq!(t["output.weight"], ty);
        assert_eq!(t["blk.0.attn_v.weight"], ty);
        assert_eq!(t["blk.0.attn_norm.weight"], GgmlType::F32);
    }
}

#[test]
fn bad_tensor_type_flags_are_named() {
    for (spec, why) in [
        ("attn_v", "PATTERN=TYPE"),
        ("attn_v=q9_9", "unknown type"),
        ("attn_(v=q8_0", "regex"),
        ("=q8_0", "empty"),
    ] {
        let err = TensorTypeRule::parse(spec).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("--tensor-type"), "{msg}");
        assert!(msg.contains(why), "{spec}: {msg}");
    }
    assert_eq!(
        rule("ATTN_V=Q8_0").pattern.as_str(),
        "attn_v",
        "patterns are lower-cased"
    );
}
