//! perch-tokenizer against llama.cpp itself: `tests/data/peer/<vocab>.json` holds what the
//! peer's libllama does with each vocabulary (recorded by scripts/record_tokenizer_peer.py):
//! resolved special ids, flags, end-of-generation ids, token attributes, and for a handful of
//! texts the ids of `llama_tokenize` (every add_special × parse_special), the text of
//! `llama_detokenize` (special tokens rendered or not) and every token's piece.
//!
//! This covers the vocabularies without `.inp`/`.out` vectors (aquila, baichuan, gpt-neox,
//! nomic-bert-moe, the SmolLM2 fixture) and the parts the vectors do not (BOS/EOS, parsing
//! special tokens, decoding).

mod common;

use perch_tokenizer::Tokenizer;
use serde_json::Value;

fn unhex(h: &str) -> Vec<u8> {
    (0..h.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&h[i..i + 2], 16).expect("hex"))
        .collect()
}

fn peer_data(name: &str) -> Value {
    let path = format!("{}/tests/data/peer/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}; run scripts/record_tokenizer_peer.py"));
    serde_json::from_str(&text).expect("peer json")
}

fn opt_id(v: &Value) -> Option<u32> {
    v.as_u64().map(|x| x as u32)
}

fn check(name: &str, tok: &Tokenizer) {
    let d = peer_data(name);
    let mut errors: Vec<String> = Vec::new();
    let mut expect = |ok: bool, what: String| {
        if !ok {
            errors.push(what);
        }
    };

    expect(
        tok.n_vocab() as u64 == d["n_vocab"].as_u64().unwrap(),
        format!("n_vocab {}", tok.n_vocab()),
    );
    let sp = tok.special_ids();
    let ours = [
        ("bos", sp.bos),
        ("eos", sp.eos),
        ("sep", sp.sep),
        ("pad", sp.pad),
        ("mask", sp.mask),
        ("fim_pre", sp.fim_pre),
        ("fim_suf", sp.fim_suf),
        ("fim_mid", sp.fim_mid),
        ("fim_pad", sp.fim_pad),
        ("fim_rep", sp.fim_rep),
        ("fim_sep", sp.fim_sep),
    ];
    for (key, id) in ours {
        let peer = opt_id(&d["special"][key]);
        expect(
            id == peer,
            format!("{key}: ours {id:?}, llama.cpp {peer:?}"),
        );
    }
    // llama.cpp takes the first end-of-turn text it meets while iterating a hash map, so when
    // a vocabulary has several (`<|im_end|>` and `<|endoftext|>`) its pick is arbitrary;
    // perch prefers the chat end-of-turn marker. Both must end generation either way.
    let peer_eot = opt_id(&d["special"]["eot"]);
    if sp.eot != peer_eot {
        expect(
            sp.eot.is_some_and(|i| tok.is_eog(i)) && peer_eot.is_some_and(|i| tok.is_eog(i)),
            format!(
                "eot: ours {:?}, llama.cpp {peer_eot:?}, not both end-of-generation",
                sp.eot
            ),
        );
    }
    expect(
        tok.add_bos() == d["add_bos"].as_bool().unwrap(),
        format!("add_bos {}", tok.add_bos()),
    );
    expect(
        tok.add_eos() == d["add_eos"].as_bool().unwrap(),
        format!("add_eos {}", tok.add_eos()),
    );
    expect(
        tok.add_sep() == d["add_sep"].as_bool().unwrap(),
        format!("add_sep {}", tok.add_sep()),
    );
    let peer_eog: Vec<u32> = d["eog"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect();
    expect(
        tok.eog_ids() == peer_eog,
        format!("eog: ours {:?}, llama.cpp {peer_eog:?}", tok.eog_ids()),
    );
    for (id, attr) in d["attrs"].as_object().unwrap() {
        let id: u32 = id.parse().unwrap();
        let ours = tok.token_attr(id).map(|a| a.0 as u64);
        expect(
            ours == attr.as_u64(),
            format!("attr of {id}: ours {ours:?}, llama.cpp {attr}"),
        );
    }

    for case in d["cases"].as_array().unwrap() {
        let text = String::from_utf8(unhex(case["text_hex"].as_str().unwrap())).unwrap();
        for add in [false, true] {
            for parse in [false, true] {
                let key = format!("add{}_parse{}", add as u8, parse as u8);
                let peer: Vec<u32> = case["ids"][&key]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_u64().unwrap() as u32)
                    .collect();
                let ids = tok.encode(&text, add, parse).unwrap();
                expect(
                    ids == peer,
                    format!(
                        "encode {text:?} {key}:\n    ours      {ids:?}\n    llama.cpp {peer:?}"
                    ),
                );
                for render in [false, true] {
                    let dkey = format!("{key}_render{}", render as u8);
                    let peer_text = unhex(case["detok_hex"][&dkey].as_str().unwrap());
                    let ours = tok.decode_bytes(&peer, render).unwrap();
                    expect(
                        ours == peer_text,
                        format!(
                            "decode {peer:?} render {render}:\n    ours      {:?}\n    llama.cpp {:?}",
                            String::from_utf8_lossy(&ours),
                            String::from_utf8_lossy(&peer_text)
                        ),
                    );
                }
            }
        }
    }
    for (id, pieces) in d["pieces"].as_object().unwrap() {
        let id: u32 = id.parse().unwrap();
        for render in [false, true] {
            let peer = unhex(pieces[format!("render{}", render as u8)].as_str().unwrap());
            let ours = tok.token_to_piece(id, render).unwrap();
            expect(
                ours == peer,
                format!("piece {id} render {render}: ours {ours:?}, llama.cpp {peer:?}"),
            );
        }
    }
    assert!(
        errors.is_empty(),
        "{name}: {} differences from llama.cpp:\n  {}",
        errors.len(),
        errors.join("\n  ")
    );
}

macro_rules! peer_tests {
    ($($fn:ident => $name:literal,)*) => {
        $(
            #[test]
            fn $fn() {
                check($name, &common::load($name));
            }
        )*
    };
}

peer_tests! {
    aquila => "aquila",
    baichuan => "baichuan",
    bert_bge => "bert-bge",
    command_r => "command-r",
    deepseek_coder => "deepseek-coder",
    deepseek_llm => "deepseek-llm",
    falcon => "falcon",
    gemma_4 => "gemma-4",
    gpt_2 => "gpt-2",
    gpt_neox => "gpt-neox",
    llama_bpe => "llama-bpe",
    llama_spm => "llama-spm",
    mpt => "mpt",
    nomic_bert_moe => "nomic-bert-moe",
    phi_3 => "phi-3",
    qwen2 => "qwen2",
    qwen35 => "qwen35",
    refact => "refact",
    starcoder => "starcoder",
}

#[test]
fn smollm2() {
    check("smollm2", &common::smollm2());
}
