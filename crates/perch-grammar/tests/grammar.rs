//! The grammar engine on its own: GBNF (llama.cpp's sample grammars), JSON Schema (outputs
//! checked with the `jsonschema` crate), regular expressions (checked with `regex-syntax`'s
//! parse and hand-picked strings), choices, and token masks against a brute-force check.

use std::sync::Arc;

use perch_grammar::{Grammar, GrammarError, TokenVocab};
use serde_json::{Value, json};

fn data(name: &str) -> String {
    let p = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

#[test]
fn llama_cpp_json_gbnf() {
    let g = Grammar::from_gbnf(&data("json.gbnf")).unwrap();
    for ok in [
        "{}",
        r#"{"a": 1}"#,
        "{\"a\": [1, 2.5, -3e12, true, false, null, {\"b\": \"c\\n\\u00e9\"}]}",
        "{\n  \"k\": \"é ü 中文 😀\"\n}",
    ] {
        assert!(g.accepts(ok), "should accept {ok:?}");
    }
    for bad in [
        "[]",
        "{",
        r#"{"a" 1}"#,
        r#"{"a": 01}"#,
        "{\"a\": \"\u{1}\"}",
        r#"{a: 1}"#,
    ] {
        assert!(!g.accepts(bad), "should reject {bad:?}");
    }
    assert!(g.accepts_prefix("{\"a\": [1, "));
    assert!(!g.accepts_prefix("{\"a\": ]"));
}

#[test]
fn llama_cpp_sample_grammars() {
    let arith = Grammar::from_gbnf(&data("arithmetic.gbnf")).unwrap();
    assert!(arith.accepts("x=(1+2*(y-3))\n"));
    assert!(arith.accepts("1=x\n"));
    assert!(arith.accepts("a = b\nc = (d)\n"));
    assert!(!arith.accepts("x=1+\n"));
    assert!(!arith.accepts("x=1+2\n"));
    assert!(!arith.accepts("x=\n"));

    let list = Grammar::from_gbnf(&data("list.gbnf")).unwrap();
    assert!(list.accepts("- milk\n- eggs\n"));
    assert!(!list.accepts("- milk"));
    assert!(!list.accepts("-\n"));

    let arr = Grammar::from_gbnf(&data("json_arr.gbnf")).unwrap();
    assert!(arr.accepts("[\n{\"a\": 1},\n\"x\"]"));
    assert!(!arr.accepts("[1]"));

    let chess = Grammar::from_gbnf(&data("chess.gbnf")).unwrap();
    assert!(chess.accepts("1. e4 e5\n2. Nf3 Nc6\n"));
    assert!(chess.accepts("1. e4 e5\n2. O-O-O Qxd8#\n"));
    assert!(!chess.accepts("1. e9 e5\n2. Nf3 Nc6\n"));
}

#[test]
fn gbnf_syntax() {
    let g = Grammar::from_gbnf(
        "root ::= a{2} b{1,} c{0,2} d{2,3} \"\\x41\\u00e9\\n\" [^a-z] .\na ::= \"a\"\nb ::= \"b\"\nc ::= \"c\"\nd ::= \"d\" # comment\n",
    )
    .unwrap();
    assert!(g.accepts("aabbdd\u{41}é\nZ!"));
    assert!(g.accepts("aabbbccddd\u{41}é\nZ中"));
    assert!(!g.accepts("abbdd\u{41}é\nZ!"));
    assert!(!g.accepts("aabbccc dd\u{41}é\nZ!"));
    assert!(!g.accepts("aabbdd\u{41}é\nz!"));
    // Alternatives continue on the next line after `|`, and inside parentheses.
    let g = Grammar::from_gbnf("root ::= \"a\" |\n  \"b\"\n").unwrap();
    assert!(g.accepts("b"));
    let g = Grammar::from_gbnf("root ::= (\n  \"a\"\n  | \"b\"\n)+").unwrap();
    assert!(g.accepts("abba"));
}

#[test]
fn gbnf_errors_are_named() {
    let cases: &[(&str, &str)] = &[
        ("root ::= foo", "undefined rule `foo`"),
        ("a ::= \"x\"", "no `root` rule"),
        ("root ::= \"x", "unterminated string"),
        ("root ::= [a-", "unterminated character class"),
        ("root ::= (\"x\"", "expecting `)`"),
        ("root ::= root \"x\"", "left-recursive"),
        (
            "root ::= a\na ::= b? a \"x\"\nb ::= \"b\"",
            "left-recursive",
        ),
        ("root ::= \"x\"{3,1}", "maximum below its minimum"),
        ("root ::= \"\\q\"", "unknown escape"),
        ("root ::= <[12]>", "token references"),
        ("root ::= \"a\"\nroot ::= \"b\"", "defined twice"),
        ("root ::= * \"a\"", "nothing before it"),
        ("root = \"a\"", "expecting `::=`"),
        ("", "empty"),
    ];
    for (src, want) in cases {
        let e = Grammar::from_gbnf(src).unwrap_err().to_string();
        assert!(e.contains(want), "{src:?}: got {e:?}, want {want:?}");
    }
    let e = Grammar::from_gbnf("root ::= \"a\"\n  \"b\" ::= x").unwrap_err();
    assert!(matches!(e, GrammarError::Gbnf { line: 2, .. }), "{e:?}");
}

fn validator(schema: &Value) -> jsonschema::Validator {
    jsonschema::options()
        .should_validate_formats(true)
        .build(schema)
        .unwrap()
}

/// Checks the grammar of `schema` against hand-written instances: each accepted instance
/// that the grammar accepts must be valid for the schema, and the ones listed as valid must
/// be accepted.
fn check_schema(schema: Value, accept: &[&str], reject: &[&str]) {
    let g = Grammar::from_json_schema(&schema).unwrap_or_else(|e| panic!("{schema}: {e}"));
    let v = validator(&schema);
    for a in accept {
        assert!(g.accepts(a), "{schema}: should accept {a}");
        let inst: Value = serde_json::from_str(a).unwrap();
        assert!(
            v.is_valid(&inst),
            "{schema}: test instance {a} is not valid"
        );
    }
    for r in reject {
        assert!(!g.accepts(r), "{schema}: should reject {r}");
    }
}

#[test]
fn schema_objects() {
    let s = json!({
        "type": "object",
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 5},
            "age": {"type": "integer", "minimum": 0, "maximum": 150},
            "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2},
        },
        "required": ["name", "age"],
        "additionalProperties": false,
    });
    check_schema(
        s,
        &[
            r#"{"name": "Bob", "age": 42}"#,
            r#"{"name":"Bob","age":0,"tags":["a","b"]}"#,
            "{\n  \"name\": \"Al\",\n  \"age\": 150\n}",
        ],
        &[
            r#"{"name": "", "age": 42}"#,
            r#"{"name": "Bobbyy", "age": 42}"#,
            r#"{"name": "Bob", "age": 151}"#,
            r#"{"name": "Bob", "age": -1}"#,
            r#"{"age": 42}"#,
            r#"{"age": 42, "name": "Bob"}"#,
            r#"{"name":"Bob","age":1,"tags":["a","b","c"]}"#,
            r#"{"name":"Bob","age":1,"x":1}"#,
            r#"{"name": "Bob", "age": 42} "#,
            "{\"name\":   \"Bob\", \"age\": 1}",
        ],
    );
    // No required properties: any subset, in order.
    check_schema(
        json!({"type": "object", "properties": {"a": {"type": "boolean"}, "b": {"type": "null"}}}),
        &[
            "{}",
            r#"{"a": true}"#,
            r#"{"b": null}"#,
            r#"{"a": false, "b": null}"#,
        ],
        &[
            r#"{"b": null, "a": true}"#,
            r#"{,"b": null}"#,
            r#"{"c": 1}"#,
        ],
    );
    // additionalProperties as a schema.
    check_schema(
        json!({"type": "object", "additionalProperties": {"type": "integer"}}),
        &["{}", r#"{"x": 1, "y": -2}"#],
        &[r#"{"x": "1"}"#],
    );
}

#[test]
fn schema_combinators_refs_and_formats() {
    check_schema(
        json!({
            "$defs": {"point": {"type": "object", "properties": {"x": {"type": "number"}, "y": {"type": "number"}}, "required": ["x", "y"]}},
            "type": "object",
            "properties": {
                "kind": {"enum": ["a", "b", 3, null]},
                "v": {"const": {"k": [1, 2]}},
                "at": {"$ref": "#/$defs/point"},
                "either": {"anyOf": [{"type": "string", "format": "date"}, {"type": "integer"}]},
                "id": {"type": "string", "format": "uuid"},
                "when": {"type": "string", "format": "date-time"},
                "mail": {"type": "string", "format": "email"},
                "code": {"type": "string", "pattern": "^[A-Z]{2}-[0-9]{3}$"},
            },
            "required": ["kind", "v", "at", "either", "id", "when", "mail", "code"],
        }),
        &[
            r#"{"kind": "a", "v": {"k":[1,2]}, "at": {"x": 1.5, "y": -2}, "either": "2024-02-29", "id": "123e4567-e89b-12d3-a456-426614174000", "when": "2024-01-02T03:04:05Z", "mail": "a.b@example.com", "code": "AB-123"}"#,
            r#"{"kind": null, "v": {"k":[1,2]}, "at": {"x": 0, "y": 1e5}, "either": 7, "id": "123e4567-e89b-12d3-a456-426614174000", "when": "2024-01-02T03:04:05.123+02:00", "mail": "x@y.io", "code": "ZZ-000"}"#,
        ],
        &[
            r#"{"kind": "c", "v": {"k":[1,2]}, "at": {"x": 1, "y": 2}, "either": 7, "id": "123e4567-e89b-12d3-a456-426614174000", "when": "2024-01-02T03:04:05Z", "mail": "x@y.io", "code": "AB-123"}"#,
            r#"{"kind": "a", "v": {"k":[1,2]}, "at": {"x": 1, "y": 2}, "either": "2024-13-01", "id": "123e4567-e89b-12d3-a456-426614174000", "when": "2024-01-02T03:04:05Z", "mail": "x@y.io", "code": "AB-123"}"#,
            r#"{"kind": "a", "v": {"k":[1,2]}, "at": {"x": 1, "y": 2}, "either": 7, "id": "123e4567-e89b-12d3-a456-426614174000", "when": "2024-01-02T03:04:05Z", "mail": "x@y.io", "code": "AB-1234"}"#,
        ],
    );
    // Recursive references.
    check_schema(
        json!({
            "definitions": {"node": {"type": "object", "properties": {"v": {"type": "integer"}, "next": {"anyOf": [{"$ref": "#/definitions/node"}, {"type": "null"}]}}, "required": ["v", "next"]}},
            "$ref": "#/definitions/node",
        }),
        &[r#"{"v": 1, "next": {"v": 2, "next": null}}"#],
        &[r#"{"v": 1, "next": {"v": 2}}"#],
    );
    // allOf of object schemas is merged.
    check_schema(
        json!({"allOf": [
            {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]},
            {"properties": {"b": {"type": "string"}}, "required": ["b"]},
        ]}),
        &[r#"{"a": 1, "b": "x"}"#],
        &[r#"{"a": 1}"#],
    );
}

#[test]
fn schema_arrays_numbers_strings() {
    check_schema(
        json!({"type": "array", "items": {"type": "integer", "exclusiveMinimum": -3, "exclusiveMaximum": 12}, "minItems": 2, "maxItems": 3}),
        &["[-2, 11]", "[0,1,2]", "[ 5 , 6 ]"],
        &["[1]", "[1,2,3,4]", "[-3, 1]", "[12, 1]", "[1.5, 2]", "[]"],
    );
    check_schema(
        json!({"type": "array", "prefixItems": [{"type": "string"}, {"type": "boolean"}]}),
        &[r#"["a", true]"#],
        &[r#"["a"]"#, r#"[true, "a"]"#],
    );
    check_schema(
        json!({"type": ["number", "null"]}),
        &["0", "-0.5", "12.25e-3", "null", "1E9"],
        &["01", ".5", "1.", "+1", "nul", "1e"],
    );
    check_schema(
        json!({"type": "integer", "minimum": 1000}),
        &["1000", "1001", "99999", "123456789"],
        &["999", "0", "-1000"],
    );
    check_schema(
        json!({"type": "integer", "maximum": -10}),
        &["-10", "-11", "-100000"],
        &["-9", "0", "10"],
    );
    check_schema(
        json!({"type": "string", "maxLength": 3}),
        &[r#""""#, r#""abc""#, r#""é中😀""#, r#""\n\"""#],
        &[r#""abcd""#, "\"a\nb\""],
    );
    check_schema(
        json!({"type": "string", "format": "ipv4"}),
        &[r#""192.168.0.255""#],
        &[r#""256.1.1.1""#],
    );
    check_schema(
        json!({"type": "boolean"}),
        &["true", "false"],
        &["True", "1"],
    );
    check_schema(
        json!({}),
        &["1", "\"x\"", "[{}]", "{\"a\": null}"],
        &["", "[1,]"],
    );
}

#[test]
fn schema_errors_name_the_feature() {
    let cases = [
        (json!({"type": "object", "not": {}}), "`not`"),
        (
            json!({"type": "array", "uniqueItems": true}),
            "`uniqueItems`",
        ),
        (json!({"type": "number", "multipleOf": 2}), "`multipleOf`"),
        (
            json!({"type": "string", "format": "ipv6"}),
            "string format `ipv6`",
        ),
        (
            json!({"$ref": "https://example.com/s.json"}),
            "`$ref` to `https://example.com/s.json`",
        ),
        (
            json!({"type": "number", "maximum": 3}),
            "`maximum` on a `number`",
        ),
        (
            json!({"type": "object", "patternProperties": {"a": {}}}),
            "`patternProperties`",
        ),
        (
            json!({"properties": {"a": {"type": "wizard"}}}),
            "unknown type `wizard`",
        ),
        (json!({"$ref": "#/$defs/missing"}), "points to nothing"),
        (json!({"enum": []}), "`enum` must not be empty"),
        (json!({"type": "string", "pattern": "(?<=a)b"}), "pattern"),
        (
            json!({"type": "integer", "minimum": 5, "maximum": 1}),
            "no integer",
        ),
        (json!(false), "allows no value"),
        (json!(3), "must be an object"),
    ];
    for (schema, want) in cases {
        let e = Grammar::from_json_schema(&schema).unwrap_err().to_string();
        assert!(e.contains(want), "{schema}: got {e:?}, want {want:?}");
    }
}

#[test]
fn regex_and_choices() {
    let g = Grammar::from_regex(r"^(\d{3})-[a-z]+(x|yz)?$").unwrap();
    assert!(g.accepts("123-abc"));
    assert!(g.accepts("123-abcyz"));
    assert!(!g.accepts("12-abc"));
    assert!(!g.accepts("123-"));
    let g = Grammar::from_regex("[α-ω]{2}|😀").unwrap();
    assert!(g.accepts("αβ"));
    assert!(g.accepts("😀"));
    assert!(!g.accepts("ab"));
    assert!(Grammar::from_regex(r"\bword").is_err());
    assert!(Grammar::from_regex("(").is_err());
    let c = Grammar::from_choices(&["positive", "negative", "neutral"]).unwrap();
    assert!(c.accepts("negative"));
    assert!(!c.accepts("neg"));
    assert!(Grammar::from_choices::<&str>(&[]).is_err());
}

/// A small vocabulary with multi-byte and character-splitting tokens.
fn vocab() -> (Vec<Vec<u8>>, Arc<TokenVocab>) {
    let mut toks: Vec<Vec<u8>> = [
        "{", "}", "{\"", "\":", "\"", " ", "\n", ",", "a", "ab", "b", "1", "12", "true", "tr",
        "ue", "null", "[", "]", "\": \"", "\"}", "é",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    toks.push(vec![0xC3]); // the first byte of é
    toks.push(vec![0xA9]); // its second byte
    toks.push(vec![0xE4, 0xB8]); // part of 中
    toks.push(vec![0xAD]);
    let mut opt: Vec<Option<Vec<u8>>> = toks.iter().cloned().map(Some).collect();
    opt.push(None); // EOS
    let eos = (opt.len() - 1) as u32;
    (toks, Arc::new(TokenVocab::new(opt, &[eos])))
}

#[test]
fn masks_match_brute_force() {
    let (toks, vocab) = vocab();
    let eos = vocab.n_vocab() as u32 - 1;
    let g = Grammar::from_json_schema(&json!({
        "type": "object",
        "properties": {"a": {"type": "string"}, "b": {"type": "integer"}},
        "required": ["a"],
    }))
    .unwrap();
    // Walk a fixed output token by token; at each step the mask must equal "the token's
    // bytes extend the current prefix to a viable prefix".
    let output: &[u32] = &[2, 8, 19, 22, 23, 24, 25, 4, 7, 5, 4, 10, 3, 5, 12, 1];
    let mut m = g.matcher(vocab.clone());
    let mut prefix: Vec<u8> = Vec::new();
    for &t in output {
        let mask = m.mask();
        for (id, bytes) in toks.iter().enumerate() {
            let mut cand = prefix.clone();
            cand.extend_from_slice(bytes);
            let viable = {
                let mut mm = g.matcher(vocab.clone());
                mm.accept_bytes(&cand)
            };
            assert_eq!(
                mask.is_allowed(id as u32),
                viable,
                "after {:?}, token {:?}",
                String::from_utf8_lossy(&prefix),
                String::from_utf8_lossy(bytes)
            );
        }
        assert_eq!(mask.is_allowed(eos), m.is_accepting());
        m.accept_token(t).unwrap();
        prefix.extend_from_slice(&toks[t as usize]);
    }
    assert_eq!(
        String::from_utf8(prefix).unwrap(),
        "{\"a\": \"é中\", \"b\": 12}"
    );
    assert!(m.is_finished());
    assert!(m.accept_token(5).is_err());
    let v: Value = serde_json::from_str("{\"a\": \"é中\", \"b\": 12}").unwrap();
    assert_eq!(v["b"], 12);
}

#[test]
fn eos_only_where_the_grammar_may_end() {
    let (_, vocab) = vocab();
    let eos = vocab.n_vocab() as u32 - 1;
    let g = Grammar::from_gbnf("root ::= \"a\"+").unwrap();
    let mut m = g.matcher(vocab.clone());
    assert!(!m.mask().is_allowed(eos));
    assert!(m.accept_token(eos).is_err());
    m.accept_token(8).unwrap();
    assert!(m.mask().is_allowed(eos));
    assert!(!m.is_finished());
    m.accept_token(eos).unwrap();
    assert!(m.is_finished());
}

#[test]
fn whitespace_is_bounded() {
    let g = Grammar::json_object();
    assert!(g.accepts("{ \"a\" : 1 }"));
    assert!(g.accepts("{\n  \"a\": 1\n}"));
    assert!(!g.accepts("{  \"a\": 1}"));
    assert!(!g.accepts("{\n\n\n\"a\": 1}"));
    assert!(!g.accepts(&format!("{{\n{}\"a\": 1}}", " ".repeat(21))));
    // The document ends at its last brace: nothing may follow, so generation stops there.
    let (_, vocab) = vocab();
    let mut m = g.matcher(vocab);
    assert!(m.accept_bytes(b"{}"));
    assert!(m.is_finished());
}

#[test]
fn pieces_compose_text_and_schemas() {
    use perch_grammar::Piece;
    let call = json!({"type": "object", "properties": {"name": {"const": "f"}, "arguments": {"$ref": "#/$defs/a"}}, "required": ["name", "arguments"],
        "$defs": {"a": {"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]}}});
    let g = Grammar::from_pieces(
        &[
            Piece::Text("<tool_call>\n".into()),
            Piece::Json(call),
            Piece::Text("\n</tool_call>".into()),
        ],
        1,
        Some(2),
        "\n",
    )
    .unwrap();
    let one = "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"x\": 1}}\n</tool_call>";
    assert!(g.accepts(one));
    assert!(g.accepts(&format!("{one}\n{one}")));
    assert!(!g.accepts(&format!("{one}\n{one}\n{one}")));
    assert!(!g.accepts(""));
    assert!(!g.accepts("<tool_call>\n{\"name\": \"g\", \"arguments\": {\"x\": 1}}\n</tool_call>"));
}

/// Every token of 1 to 3 bytes over a JSON-ish alphabet (1,463 tokens, including split UTF-8
/// and escapes): at every prefix of some documents, the mask is exactly the set of tokens
/// whose bytes keep the prefix viable (checked by feeding the bytes to a fresh matcher).
#[test]
fn masks_match_brute_force_on_a_dense_vocabulary() {
    let alphabet: &[u8] = b"a\" {}:,1\\n\xC3\xA9";
    let mut toks: Vec<Vec<u8>> = Vec::new();
    for &x in alphabet {
        toks.push(vec![x]);
        for &y in alphabet {
            toks.push(vec![x, y]);
            for &z in alphabet {
                toks.push(vec![x, y, z]);
            }
        }
    }
    let vocab = Arc::new(TokenVocab::new(
        toks.iter().cloned().map(Some).collect(),
        &[],
    ));
    let grammars = [
        (Grammar::json_object(), "{\"a\\n\": \"é1 a\", \"\": {\"aa\": 11}}"),
        (
            Grammar::from_json_schema(&json!({"type": "object", "properties": {"a": {"type": "string", "maxLength": 3}, "n": {"type": "integer"}}, "required": ["a"]})).unwrap(),
            "{\"a\": \"éa\\n\", \"n\": 11}",
        ),
    ];
    for (g, doc) in grammars {
        let doc = doc.as_bytes();
        let mut m = g.matcher(vocab.clone());
        for i in 0..=doc.len() {
            let mask = m.mask();
            for (id, t) in toks.iter().enumerate() {
                let mut cand = doc[..i].to_vec();
                cand.extend_from_slice(t);
                let viable = g.matcher(vocab.clone()).accept_bytes(&cand);
                assert_eq!(
                    mask.is_allowed(id as u32),
                    viable,
                    "prefix {:?} token {:?}",
                    String::from_utf8_lossy(&doc[..i]),
                    String::from_utf8_lossy(t)
                );
            }
            if i < doc.len() {
                assert!(m.accept_bytes(&doc[i..i + 1]));
            }
        }
        assert!(m.is_finished());
    }
}

/// Deep nesting visits a new state per level; past the cache limit the matcher drops its
/// caches and carries on from where it is.
#[test]
fn caches_are_rebuilt_mid_output() {
    let (_, vocab) = vocab();
    let g = Grammar::json_value();
    let mut m = g.matcher(vocab);
    let depth = 21_000;
    assert!(m.accept_bytes(&vec![b'['; depth]));
    let before = m.cache_size().0;
    assert!(before > 20_000, "{before}");
    let mask = m.mask();
    assert!(m.cache_size().0 < 100, "rebuilt: {:?}", m.cache_size());
    assert!(mask.is_allowed(18) && mask.is_allowed(17) && !mask.is_allowed(1));
    assert!(m.accept_bytes(&vec![b']'; depth - 1]));
    assert!(!m.is_accepting());
    assert!(m.accept_bytes(b"]"));
    assert!(m.is_finished());
}
