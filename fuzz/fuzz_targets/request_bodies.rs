//! Fuzzes request bodies: the first byte picks the route (OpenAI chat/completions and
//! completions, Ollama generate and chat), the rest is the body. Parsing and validation must
//! accept it or answer a 4xx `ApiError` whose OpenAI error object serializes; never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use perch_server::validate::{BodyKind, check};

fuzz_target!(|data: &[u8]| {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    let kind = match sel % 4 {
        0 => BodyKind::OpenAiChat,
        1 => BodyKind::OpenAiCompletion,
        2 => BodyKind::OllamaGenerate,
        _ => BodyKind::OllamaChat,
    };
    if let Err(e) = check(kind, body, 8) {
        assert!(e.status.is_client_error(), "{kind:?}: {} for {:?}", e.status, String::from_utf8_lossy(body));
        let v = e.body();
        assert!(v["error"]["message"].is_string());
    }
});
