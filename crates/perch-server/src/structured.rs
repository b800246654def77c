//! Structured outputs: the request fields that constrain what a model may write, turned into
//! a [`perch_grammar::Grammar`] and, per generation, an engine [`Constraint`].
//!
//! OpenAI's `response_format` (`text`, `json_object`, `json_schema`), Ollama's `format`
//! (`"json"` or a schema), and the extensions llama.cpp's server and vLLM accept: `grammar`
//! (GBNF) and `json_schema` (llama.cpp), `guided_json`, `guided_regex`, `guided_choice`,
//! `guided_grammar` (vLLM). A schema or grammar perch cannot enforce is a 400 naming the
//! field and the feature. The schema is also described in the system message (as Ollama and
//! llama.cpp's server do) so the model knows what is wanted.

use std::sync::{Arc, Mutex, Weak};

use perch_engine::sampling::Constraint;
use perch_grammar::{Grammar, GrammarError, Matcher, TokenVocab};
use perch_tokenizer::Tokenizer;
use serde::Deserialize;
use serde_json::Value;

use crate::error::ApiError;

/// What the output must be.
#[derive(Debug, Clone, PartialEq)]
pub enum OutputFormat {
    /// Any JSON object.
    JsonObject,
    /// JSON valid for a schema.
    JsonSchema {
        /// The schema.
        schema: Value,
        /// Which field gave it (for error messages).
        param: &'static str,
    },
    /// A GBNF grammar.
    Gbnf {
        /// The grammar text.
        grammar: String,
        /// Which field gave it.
        param: &'static str,
    },
    /// Text matching a regular expression.
    Regex(String),
    /// One of these strings.
    Choice(Vec<String>),
}

/// The extension fields (llama.cpp's server, vLLM) both OpenAI endpoints accept.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct GuidedFields {
    /// GBNF grammar (llama.cpp).
    #[serde(default)]
    pub grammar: Option<String>,
    /// JSON schema (llama.cpp).
    #[serde(default)]
    pub json_schema: Option<Value>,
    /// JSON schema (vLLM).
    #[serde(default)]
    pub guided_json: Option<Value>,
    /// Regular expression (vLLM).
    #[serde(default)]
    pub guided_regex: Option<String>,
    /// Choices (vLLM).
    #[serde(default)]
    pub guided_choice: Option<Vec<String>>,
    /// GBNF grammar (vLLM's field name; perch reads it as GBNF).
    #[serde(default)]
    pub guided_grammar: Option<String>,
}

/// The output format an OpenAI request asks for, if any. At most one of `response_format`
/// (other than `text`) and the extension fields may be given.
pub fn from_openai(
    response_format: Option<&Value>,
    ext: &GuidedFields,
) -> Result<Option<OutputFormat>, ApiError> {
    let mut found: Vec<(&'static str, OutputFormat)> = Vec::new();
    if let Some(rf) = response_format.filter(|v| !v.is_null()) {
        let kind = rf.get("type").and_then(Value::as_str).ok_or_else(|| {
            ApiError::invalid_param(
                "response_format.type",
                "`response_format.type` must be `text`, `json_object` or `json_schema`",
            )
        })?;
        match kind {
            "text" => {}
            "json_object" => found.push(("response_format", OutputFormat::JsonObject)),
            "json_schema" => {
                let js = rf.get("json_schema").ok_or_else(|| {
                    ApiError::invalid_param(
                        "response_format.json_schema",
                        "`response_format.json_schema` is required for type `json_schema`",
                    )
                })?;
                if js.get("name").is_some_and(|n| !n.is_string()) {
                    return Err(ApiError::invalid_param(
                        "response_format.json_schema.name",
                        "`response_format.json_schema.name` must be a string",
                    ));
                }
                // OpenAI puts the schema under `schema`; some clients send it bare.
                let schema = match js.get("schema") {
                    Some(s) => s.clone(),
                    None if js.get("type").is_some() || js.get("properties").is_some() => {
                        js.clone()
                    }
                    None => Value::Object(Default::default()),
                };
                found.push((
                    "response_format",
                    OutputFormat::JsonSchema {
                        schema,
                        param: "response_format.json_schema.schema",
                    },
                ));
            }
            other => {
                return Err(ApiError::invalid_param(
                    "response_format.type",
                    format!(
                        "`response_format.type` must be `text`, `json_object` or `json_schema`, got `{other}`"
                    ),
                ));
            }
        }
    }
    if let Some(g) = &ext.grammar {
        found.push((
            "grammar",
            OutputFormat::Gbnf {
                grammar: g.clone(),
                param: "grammar",
            },
        ));
    }
    if let Some(g) = &ext.guided_grammar {
        found.push((
            "guided_grammar",
            OutputFormat::Gbnf {
                grammar: g.clone(),
                param: "guided_grammar",
            },
        ));
    }
    for (param, v) in [
        ("json_schema", &ext.json_schema),
        ("guided_json", &ext.guided_json),
    ] {
        if let Some(s) = v.as_ref().filter(|v| !v.is_null()) {
            // vLLM accepts the schema as a JSON string too.
            let schema = match s {
                Value::String(text) => serde_json::from_str(text).map_err(|e| {
                    ApiError::invalid_param(param, format!("`{param}` is not valid JSON: {e}"))
                })?,
                other => other.clone(),
            };
            found.push((param, OutputFormat::JsonSchema { schema, param }));
        }
    }
    if let Some(r) = &ext.guided_regex {
        found.push(("guided_regex", OutputFormat::Regex(r.clone())));
    }
    if let Some(c) = &ext.guided_choice {
        found.push(("guided_choice", OutputFormat::Choice(c.clone())));
    }
    match found.len() {
        0 => Ok(None),
        1 => Ok(found.pop().map(|f| f.1)),
        _ => Err(ApiError::invalid_param(
            found[1].0,
            format!(
                "only one output constraint may be given, got `{}` and `{}`",
                found[0].0, found[1].0
            ),
        )),
    }
}

/// Ollama's `format`: `"json"`, a JSON schema, or empty.
pub fn from_ollama(format: Option<&Value>) -> Result<Option<OutputFormat>, ApiError> {
    match format {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) if s == "json" => Ok(Some(OutputFormat::JsonObject)),
        Some(Value::String(s)) => Err(ApiError::invalid_param(
            "format",
            format!("`format` must be \"json\" or a JSON schema, got \"{s}\""),
        )),
        Some(v @ Value::Object(_)) => Ok(Some(OutputFormat::JsonSchema {
            schema: v.clone(),
            param: "format",
        })),
        Some(_) => Err(ApiError::invalid_param(
            "format",
            "`format` must be \"json\" or a JSON schema",
        )),
    }
}

/// The grammar error as a 400 on `param`.
pub fn grammar_error(param: &str, e: GrammarError) -> ApiError {
    let mut err = ApiError::invalid_param(param, format!("`{param}`: {e}"));
    if matches!(e, GrammarError::UnsupportedSchema { .. }) {
        err.code = Some("unsupported_schema");
    }
    err
}

impl OutputFormat {
    /// Compile to a grammar; an invalid or unsupported input is a 400 naming the field.
    pub fn compile(&self) -> Result<Grammar, ApiError> {
        match self {
            OutputFormat::JsonObject => Ok(Grammar::json_object()),
            OutputFormat::JsonSchema { schema, param } => {
                Grammar::from_json_schema(schema).map_err(|e| grammar_error(param, e))
            }
            OutputFormat::Gbnf { grammar, param } => {
                Grammar::from_gbnf(grammar).map_err(|e| grammar_error(param, e))
            }
            OutputFormat::Regex(r) => {
                Grammar::from_regex(r).map_err(|e| grammar_error("guided_regex", e))
            }
            OutputFormat::Choice(c) => {
                Grammar::from_choices(c).map_err(|e| grammar_error("guided_choice", e))
            }
        }
    }

    /// What to tell the model in the system message, if anything.
    pub fn instructions(&self) -> Option<String> {
        match self {
            OutputFormat::JsonObject => Some("Respond with a JSON object.".into()),
            OutputFormat::JsonSchema { schema, .. } => Some(format!(
                "Respond with JSON that conforms to this JSON schema:\n{}",
                serde_json::to_string(schema).unwrap_or_default()
            )),
            OutputFormat::Choice(c) => Some(format!("Respond with one of: {}.", c.join(", "))),
            OutputFormat::Gbnf { .. } | OutputFormat::Regex(_) => None,
        }
    }
}

/// Append `text` to the conversation's system message (a new one first when there is none).
pub fn add_to_system(messages: &mut Vec<Value>, text: &str) {
    if let Some(sys) = messages
        .first_mut()
        .filter(|m| m.get("role").and_then(Value::as_str) == Some("system"))
    {
        let merged = match sys.get("content") {
            Some(Value::String(s)) if !s.is_empty() => format!("{s}\n\n{text}"),
            Some(Value::Array(parts)) => {
                let mut t: Vec<String> = parts
                    .iter()
                    .filter_map(|p| p.get("text").and_then(Value::as_str).map(str::to_string))
                    .collect();
                t.push(text.to_string());
                t.join("\n\n")
            }
            _ => text.to_string(),
        };
        sys["content"] = Value::String(merged);
    } else {
        messages.insert(0, serde_json::json!({"role": "system", "content": text}));
    }
}

/// [`Matcher`] as the engine's [`Constraint`].
#[derive(Debug)]
pub struct GrammarConstraint(Matcher);

impl GrammarConstraint {
    /// A constraint following `grammar` over `vocab`.
    pub fn new(grammar: &Grammar, vocab: Arc<TokenVocab>) -> GrammarConstraint {
        GrammarConstraint(grammar.matcher(vocab))
    }
}

impl Constraint for GrammarConstraint {
    fn mask(&mut self, logits: &mut [f32]) {
        self.0.apply_mask(logits);
    }

    fn accept(&mut self, token: u32) -> Result<(), String> {
        self.0.accept_token(token).map_err(|e| e.to_string())
    }

    fn is_finished(&self) -> bool {
        self.0.is_finished()
    }
}

/// The grammar view of a tokenizer's vocabulary: each token's decoded bytes (control tokens
/// have none) and its end-of-generation tokens.
pub fn token_vocab_of(tok: &Tokenizer) -> TokenVocab {
    let n = tok.n_vocab();
    let tokens = (0..n)
        .map(|id| {
            let control = tok.token_attr(id).is_some_and(|a| a.is_control());
            if control || tok.is_eog(id) {
                return None;
            }
            tok.token_to_piece(id, false).ok().map(<[u8]>::to_vec)
        })
        .collect();
    TokenVocab::new(tokens, tok.eog_ids())
}

/// The vocabulary of a loaded model's tokenizer, built once per tokenizer and shared.
pub fn token_vocab(tok: &Arc<Tokenizer>) -> Arc<TokenVocab> {
    type Cache = Vec<(Weak<Tokenizer>, Arc<TokenVocab>)>;
    static CACHE: Mutex<Cache> = Mutex::new(Vec::new());
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    cache.retain(|(w, _)| w.strong_count() > 0);
    if let Some((_, v)) = cache
        .iter()
        .find(|(w, _)| std::ptr::eq(w.as_ptr(), Arc::as_ptr(tok)))
    {
        return v.clone();
    }
    let v = Arc::new(token_vocab_of(tok));
    cache.push((Arc::downgrade(tok), v.clone()));
    v
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn formats_from_requests() {
        let none = GuidedFields::default();
        assert_eq!(
            from_openai(Some(&json!({"type": "text"})), &none).unwrap(),
            None
        );
        assert_eq!(
            from_openai(Some(&json!({"type": "json_object"})), &none).unwrap(),
            Some(OutputFormat::JsonObject)
        );
        let f = from_openai(
            Some(&json!({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "integer"}, "strict": true}})),
            &none,
        )
        .unwrap()
        .unwrap();
        assert!(f.compile().unwrap().accepts("42"));
        let e = from_openai(Some(&json!({"type": "yaml"})), &none).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("response_format.type"));
        let both = GuidedFields {
            grammar: Some("root ::= \"a\"".into()),
            ..Default::default()
        };
        assert!(from_openai(Some(&json!({"type": "json_object"})), &both).is_err());
        assert_eq!(
            from_ollama(Some(&json!("json"))).unwrap(),
            Some(OutputFormat::JsonObject)
        );
        assert!(from_ollama(Some(&json!("yaml"))).is_err());
        let e = OutputFormat::JsonSchema {
            schema: json!({"type": "array", "uniqueItems": true}),
            param: "format",
        }
        .compile()
        .unwrap_err();
        assert!(e.message.contains("uniqueItems"), "{}", e.message);
        assert_eq!(e.code, Some("unsupported_schema"));
    }

    #[test]
    fn instructions_join_the_system_message() {
        let mut m = vec![json!({"role": "user", "content": "hi"})];
        add_to_system(&mut m, "Respond with JSON.");
        assert_eq!(m[0]["role"], "system");
        add_to_system(&mut m, "More.");
        assert_eq!(m[0]["content"], "Respond with JSON.\n\nMore.");
        assert_eq!(m.len(), 2);
    }
}
