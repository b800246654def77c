//! Decoder conversions against a plain f32 reference forward pass (tests/common/reference.rs):
//! a llama2.c checkpoint written here and a synthetic Hugging Face llama folder (random
//! safetensors, a byte-level BPE tokenizer.json) both convert to GGUF files whose logits in
//! perch's engine match the reference computed from the original weights. The HF case checks
//! the Q/K row permutation: the reference rotates halves as Hugging Face does, perch rotates
//! adjacent pairs on the permuted rows.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::reference::{Llama, Rope, TINY, max_rel_diff, random_llama};
use perch_convert::{OutType, convert_hf, convert_llama2c};
use perch_engine::Model;
use perch_engine::session::{Session, SessionConfig};

fn perch_logits(path: &Path, tokens: &[u32]) -> Vec<Vec<f32>> {
    let model = Arc::new(Model::open(path).expect("converted model loads"));
    let n_vocab = model.config().n_vocab;
    let mut s = Session::new(
        model,
        SessionConfig {
            n_ctx: 64,
            threads: 2,
            ..SessionConfig::default()
        },
    )
    .unwrap();
    let all = s.feed(tokens, true).unwrap();
    all.chunks(n_vocab).map(<[f32]>::to_vec).collect()
}

/// perch's logits on the converted file match the reference's at every position (the KV
/// cache holds f16: a few 1e-4 of relative error).
fn assert_matches_reference(m: &Llama, out: &Path, tokens: &[u32]) {
    let want = m.forward(tokens);
    let got = perch_logits(out, tokens);
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        let d = max_rel_diff(g, w);
        assert!(d < 5e-3, "position {i}: relative difference {d}");
    }
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// llama2.c's legacy `model.bin` for `m` (unshared classifier: negative vocab size).
fn write_llama2c(m: &Llama, seq_len: usize, path: &Path) {
    let mut b = Vec::new();
    for v in [
        m.dim as i32,
        m.hidden as i32,
        m.layers.len() as i32,
        m.n_heads as i32,
        m.n_kv as i32,
        -(m.vocab as i32),
        seq_len as i32,
    ] {
        b.extend(v.to_le_bytes());
    }
    b.extend(f32_bytes(&m.emb));
    let all = |f: &dyn Fn(&common::reference::Layer) -> &Vec<f32>| -> Vec<u8> {
        m.layers.iter().flat_map(|l| f32_bytes(f(l))).collect()
    };
    b.extend(all(&|l| &l.att_norm));
    b.extend(all(&|l| &l.wq));
    b.extend(all(&|l| &l.wk));
    b.extend(all(&|l| &l.wv));
    b.extend(all(&|l| &l.wo));
    b.extend(all(&|l| &l.ffn_norm));
    b.extend(all(&|l| &l.w1));
    b.extend(all(&|l| &l.w2));
    b.extend(all(&|l| &l.w3));
    b.extend(f32_bytes(&m.final_norm));
    b.extend(vec![0u8; seq_len * (m.dim / m.n_heads) * 4]);
    b.extend(f32_bytes(&m.cls));
    std::fs::write(path, b).unwrap();
}

/// A tokenizer.bin: three specials, 256 byte tokens, then letters.
fn write_tokenizer_bin(vocab: usize, path: &Path) -> Vec<String> {
    let mut texts: Vec<String> = vec!["<unk>".into(), "<s>".into(), "</s>".into()];
    texts.extend((0..256).map(|b| format!("<0x{b:02X}>")));
    let mut i = 0;
    while texts.len() < vocab {
        let c = (b'a' + (i % 26) as u8) as char;
        texts.push(if i < 26 {
            format!(" {c}")
        } else {
            format!("{c}{}", i / 26)
        });
        i += 1;
    }
    let mut b = 16u32.to_le_bytes().to_vec();
    for (i, t) in texts.iter().enumerate() {
        b.extend((-(i as f32)).to_le_bytes());
        b.extend((t.len() as u32).to_le_bytes());
        b.extend(t.as_bytes());
    }
    std::fs::write(path, b).unwrap();
    texts
}

#[test]
fn llama2c_checkpoint_gives_the_reference_logits() {
    let dir = tempfile::tempdir().unwrap();
    let m = random_llama(7, TINY, Rope::Interleaved);
    write_llama2c(&m, 32, &dir.path().join("model.bin"));
    let texts = write_tokenizer_bin(m.vocab, &dir.path().join("tokenizer.bin"));
    let out = dir.path().join("out.gguf");
    let mut seen = 0;
    let report = convert_llama2c(
        &dir.path().join("model.bin"),
        &dir.path().join("tokenizer.bin"),
        &out,
        OutType::F32,
        |p| seen = p.done,
    )
    .unwrap();
    assert_eq!(seen, report.n_tensors);
    assert_eq!(report.n_tensors, 3 + 2 * 9);

    assert_matches_reference(&m, &out, &[1, 290, 17, 5, 200, 299, 3, 64]);

    // The vocabulary: llama.cpp's token types, spaces as ▁, scores kept.
    let f = perch_gguf::GgufFile::open(&out).unwrap();
    let toks = f.get_str_array("tokenizer.ggml.tokens").unwrap();
    assert_eq!(toks[1], "<s>");
    assert_eq!(toks[3], "<0x00>");
    assert_eq!(toks[259], "\u{2581}a");
    assert_eq!(texts[259], " a");
    let types = f.get_i32_array("tokenizer.ggml.token_type").unwrap();
    let mut want_types = vec![2, 3, 3];
    want_types.extend(std::iter::repeat_n(6, 256));
    want_types.extend(std::iter::repeat_n(1, m.vocab - 259));
    assert_eq!(types, want_types.as_slice());
    let tok = perch_tokenizer::Tokenizer::from_gguf(&f).unwrap();
    assert_eq!(tok.encode("a", false, false).unwrap(), vec![259]);
}

/// A byte-level BPE tokenizer.json: GPT-2's byte alphabet, a few merges, and specials.
fn bpe_tokenizer_json(vocab: usize) -> serde_json::Value {
    // GPT-2's bytes_to_unicode.
    let mut bs: Vec<u32> = (b'!' as u32..=b'~' as u32)
        .chain(0xA1..=0xAC)
        .chain(0xAE..=0xFF)
        .collect();
    let mut cs = bs.clone();
    let mut n = 0;
    for b in 0..256u32 {
        if !bs.contains(&b) {
            bs.push(b);
            cs.push(256 + n);
            n += 1;
        }
    }
    let mut pairs: Vec<(u32, u32)> = bs.into_iter().zip(cs).collect();
    pairs.sort();
    let mut tokens: Vec<String> = pairs
        .iter()
        .map(|(_, c)| char::from_u32(*c).unwrap().to_string())
        .collect();
    let mut merges = Vec::new();
    for (a, b) in [
        ("Ġ", "t"),
        ("h", "e"),
        ("Ġt", "he"),
        ("i", "s"),
        ("Ġ", "is"),
        ("e", "s"),
        ("t", "es"),
        ("Ġ", "a"),
    ] {
        merges.push(format!("{a} {b}"));
        tokens.push(format!("{a}{b}"));
    }
    let specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];
    let n_normal = vocab - specials.len();
    // Fill the ids up to the specials (tokenizers numbers added tokens after the model's).
    let mut i = 0;
    while tokens.len() < n_normal {
        tokens.push(format!("zz{i}"));
        i += 1;
    }
    let mut vocab_map = serde_json::Map::new();
    for (i, t) in tokens.iter().enumerate() {
        vocab_map.insert(t.clone(), i.into());
    }
    let added: Vec<serde_json::Value> = specials
        .iter()
        .enumerate()
        .map(|(i, s)| {
            serde_json::json!({"id": n_normal + i, "content": s, "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true},
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
            "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
            "vocab": vocab_map, "merges": merges},
    })
}

/// A Hugging Face llama folder holding `m` (rows of Q and K in Hugging Face's rotate-half
/// layout, which is what `m` computes with when `m.rope` is `RotateHalf`).
pub fn write_hf_llama(m: &Llama, dir: &Path, drop: Option<&str>) {
    let hd = m.dim / m.n_heads;
    let cfg = serde_json::json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": m.dim,
        "intermediate_size": m.hidden,
        "num_hidden_layers": m.layers.len(),
        "num_attention_heads": m.n_heads,
        "num_key_value_heads": m.n_kv,
        "vocab_size": m.vocab,
        "max_position_embeddings": 128,
        "rms_norm_eps": m.eps,
        "rope_theta": m.theta,
        "tie_word_embeddings": false,
        "bos_token_id": m.vocab - 2,
        "eos_token_id": m.vocab - 1,
        "torch_dtype": "float32",
    });
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    std::fs::write(
        dir.join("tokenizer.json"),
        bpe_tokenizer_json(m.vocab).to_string(),
    )
    .unwrap();
    std::fs::write(
        dir.join("tokenizer_config.json"),
        serde_json::json!({
            "bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "add_bos_token": false,
            "chat_template": "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
        })
        .to_string(),
    )
    .unwrap();
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = vec![
        (
            "model.embed_tokens.weight".into(),
            vec![m.vocab, m.dim],
            f32_bytes(&m.emb),
        ),
        (
            "model.norm.weight".into(),
            vec![m.dim],
            f32_bytes(&m.final_norm),
        ),
        (
            "lm_head.weight".into(),
            vec![m.vocab, m.dim],
            f32_bytes(&m.cls),
        ),
    ];
    for (i, l) in m.layers.iter().enumerate() {
        let p = format!("model.layers.{i}");
        let kv = m.n_kv * hd;
        for (name, shape, data) in [
            ("input_layernorm.weight", vec![m.dim], &l.att_norm),
            ("self_attn.q_proj.weight", vec![m.dim, m.dim], &l.wq),
            ("self_attn.k_proj.weight", vec![kv, m.dim], &l.wk),
            ("self_attn.v_proj.weight", vec![kv, m.dim], &l.wv),
            ("self_attn.o_proj.weight", vec![m.dim, m.dim], &l.wo),
            ("post_attention_layernorm.weight", vec![m.dim], &l.ffn_norm),
            ("mlp.gate_proj.weight", vec![m.hidden, m.dim], &l.w1),
            ("mlp.down_proj.weight", vec![m.dim, m.hidden], &l.w2),
            ("mlp.up_proj.weight", vec![m.hidden, m.dim], &l.w3),
        ] {
            tensors.push((format!("{p}.{name}"), shape, f32_bytes(data)));
        }
    }
    tensors.retain(|(n, _, _)| Some(n.as_str()) != drop);
    // Two shards with an index, as big checkpoints come.
    let (a, b) = tensors.split_at(tensors.len() / 2);
    let mut weight_map = serde_json::Map::new();
    for (shard, part) in [
        ("model-00001-of-00002.safetensors", a),
        ("model-00002-of-00002.safetensors", b),
    ] {
        let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = part
            .iter()
            .map(|(n, s, d)| {
                weight_map.insert(n.clone(), shard.into());
                (
                    n.clone(),
                    safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), d)
                        .unwrap(),
                )
            })
            .collect();
        safetensors::serialize_to_file(views, None, &dir.join(shard)).unwrap();
    }
    std::fs::write(
        dir.join("model.safetensors.index.json"),
        serde_json::json!({"metadata": {}, "weight_map": weight_map}).to_string(),
    )
    .unwrap();
}

#[test]
fn hf_llama_folder_gives_the_reference_logits_and_tokenizer() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("tiny-llama");
    std::fs::create_dir(&src).unwrap();
    let m = random_llama(11, TINY, Rope::RotateHalf);
    write_hf_llama(&m, &src, None);
    let out = dir.path().join("tiny.gguf");
    convert_hf(&src, &out, OutType::F32, |_| {}).unwrap();

    let tokens = [297u32, 5, 260, 100, 42, 299, 7];
    assert_matches_reference(&m, &out, &tokens);
    let want = m.forward(&tokens);

    // The tokenizer: perch's BPE on the GGUF vocabulary gives tokenizer.json's ids.
    let f = perch_gguf::GgufFile::open(&out).unwrap();
    assert_eq!(f.get_str("tokenizer.ggml.model").unwrap(), "gpt2");
    assert_eq!(f.get_str("tokenizer.ggml.pre").unwrap(), "gpt-2");
    assert_eq!(f.get_u32("tokenizer.ggml.bos_token_id").unwrap(), 298);
    assert_eq!(f.get_u32("tokenizer.ggml.eos_token_id").unwrap(), 299);
    assert!(!f.get_bool("tokenizer.ggml.add_bos_token").unwrap());
    assert!(
        f.get_str("tokenizer.chat_template")
            .unwrap()
            .contains("<|im_start|>")
    );
    assert_eq!(f.get_u32("general.file_type").unwrap(), 0);
    let perch = perch_tokenizer::Tokenizer::from_gguf(&f).unwrap();
    let hf = tokenizers::Tokenizer::from_file(src.join("tokenizer.json")).unwrap();
    for text in [
        "the test is a test",
        " the thesis\n\n  tes!",
        "<|im_start|>user\nhi<|im_end|>",
        "ünïcödé 123",
    ] {
        let want = hf.encode(text, false).unwrap().get_ids().to_vec();
        assert_eq!(perch.encode(text, false, true).unwrap(), want, "{text:?}");
    }

    // Q8_0 and F16 outputs load and stay close to F32.
    for (ty, tol) in [(OutType::F16, 5e-3), (OutType::Q8_0, 3e-2)] {
        let q = dir.path().join(format!("tiny-{ty:?}.gguf"));
        convert_hf(&src, &q, ty, |_| {}).unwrap();
        let got = perch_logits(&q, &tokens);
        let d = max_rel_diff(&got[tokens.len() - 1], &want[tokens.len() - 1]);
        assert!(d < tol, "{ty:?}: relative difference {d}");
    }
}

/// The checkpoint tensors of a tiny model of `arch` (Hugging Face names and shapes).
fn hf_tensors(arch: &str, shape: common::reference::Shape, hd: usize) -> Vec<(String, Vec<usize>)> {
    let common::reference::Shape {
        dim,
        hidden,
        n_layers: layers,
        n_heads: heads,
        n_kv: kv,
        vocab,
    } = shape;
    let gemma = arch.starts_with("Gemma");
    let mut t = vec![
        ("model.embed_tokens.weight".to_string(), vec![vocab, dim]),
        ("model.norm.weight".into(), vec![dim]),
    ];
    if !gemma {
        t.push(("lm_head.weight".into(), vec![vocab, dim]));
    }
    for l in 0..layers {
        let p = format!("model.layers.{l}");
        let mut add = |n: &str, s: Vec<usize>| t.push((format!("{p}.{n}"), s));
        add("input_layernorm.weight", vec![dim]);
        if arch == "Phi3ForCausalLM" {
            add(
                "self_attn.qkv_proj.weight",
                vec![(heads + 2 * kv) * hd, dim],
            );
            add("mlp.gate_up_proj.weight", vec![2 * hidden, dim]);
        } else {
            add("self_attn.q_proj.weight", vec![heads * hd, dim]);
            add("self_attn.k_proj.weight", vec![kv * hd, dim]);
            add("self_attn.v_proj.weight", vec![kv * hd, dim]);
            add("mlp.gate_proj.weight", vec![hidden, dim]);
            add("mlp.up_proj.weight", vec![hidden, dim]);
        }
        if arch == "Qwen2ForCausalLM" {
            add("self_attn.q_proj.bias", vec![heads * hd]);
            add("self_attn.k_proj.bias", vec![kv * hd]);
            add("self_attn.v_proj.bias", vec![kv * hd]);
        }
        if arch == "Qwen3ForCausalLM" || arch == "Gemma3ForCausalLM" {
            add("self_attn.q_norm.weight", vec![hd]);
            add("self_attn.k_norm.weight", vec![hd]);
        }
        add("self_attn.o_proj.weight", vec![dim, heads * hd]);
        add("post_attention_layernorm.weight", vec![dim]);
        if gemma {
            add("pre_feedforward_layernorm.weight", vec![dim]);
            add("post_feedforward_layernorm.weight", vec![dim]);
        }
        add("mlp.down_proj.weight", vec![dim, hidden]);
    }
    t
}

#[test]
fn every_decoder_family_converts_and_runs_in_perch() {
    let (dim, hidden, layers, heads, kv, vocab) = (
        TINY.dim,
        TINY.hidden,
        TINY.n_layers,
        TINY.n_heads,
        TINY.n_kv,
        TINY.vocab,
    );
    let hd = 32;
    for arch in [
        "Qwen2ForCausalLM",
        "Qwen3ForCausalLM",
        "Gemma2ForCausalLM",
        "Gemma3ForCausalLM",
        "Phi3ForCausalLM",
        "MistralForCausalLM",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("m");
        std::fs::create_dir(&src).unwrap();
        let cfg = serde_json::json!({
            "architectures": [arch], "hidden_size": dim, "intermediate_size": hidden,
            "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": kv,
            "head_dim": hd, "vocab_size": vocab, "max_position_embeddings": 128, "rms_norm_eps": 1e-6,
            "rope_theta": 10000.0, "sliding_window": 16, "tie_word_embeddings": arch.starts_with("Gemma"),
            "attn_logit_softcapping": 50.0, "final_logit_softcapping": 30.0,
        });
        std::fs::write(src.join("config.json"), cfg.to_string()).unwrap();
        std::fs::write(
            src.join("tokenizer.json"),
            bpe_tokenizer_json(vocab).to_string(),
        )
        .unwrap();
        let mut rng = common::reference::Rng(3);
        let tensors: Vec<(String, Vec<usize>, Vec<u8>)> = hf_tensors(arch, TINY, hd)
            .into_iter()
            .map(|(n, s)| {
                let count = s.iter().product();
                let data = f32_bytes(&rng.vec(count, 0.1));
                (n, s, data)
            })
            .collect();
        let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
            .iter()
            .map(|(n, s, d)| {
                (
                    n.clone(),
                    safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), d)
                        .unwrap(),
                )
            })
            .collect();
        safetensors::serialize_to_file(views, None, &src.join("model.safetensors")).unwrap();
        let out = dir.path().join("m.gguf");
        convert_hf(&src, &out, OutType::F16, |_| {}).unwrap_or_else(|e| panic!("{arch}: {e}"));
        let logits = perch_logits(&out, &[1, 2, 3, 290]);
        assert!(logits.iter().flatten().all(|v| v.is_finite()), "{arch}");
        let f = perch_gguf::GgufFile::open(&out).unwrap();
        // Gemma stores 1 + w for its norms.
        let norm = f.require_tensor("output_norm.weight").unwrap();
        let first = f32::from_le_bytes(norm.data[..4].try_into().unwrap());
        let hf_first = f32::from_le_bytes(tensors[1].2[..4].try_into().unwrap());
        let want = if arch.starts_with("Gemma") {
            hf_first + 1.0
        } else {
            hf_first
        };
        assert_eq!(first, want, "{arch}");
    }
}
