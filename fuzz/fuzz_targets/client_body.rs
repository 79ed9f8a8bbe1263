//! A client's request body: parsing never panics, and whatever the gateway
//! builds from an accepted body for an instance (same format or converted,
//! chat or embeddings, options merged, usage forced or not) is valid JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringway::providers::wire::{build_request, Api, ClientBody, ModelOptions, Wire};

fuzz_target!(|data: &[u8]| {
    let mut options = serde_json::Map::new();
    options.insert("model".into(), serde_json::json!("m"));
    options.insert("max_tokens".into(), serde_json::json!(5));
    let options = [ModelOptions::new(serde_json::Map::new()), ModelOptions::new(options)];
    for from in [Wire::OpenAi, Wire::Anthropic] {
        let Ok(body) = ClientBody::parse(from, bytes::Bytes::copy_from_slice(data)) else {
            continue;
        };
        for to in [Wire::OpenAi, Wire::Anthropic] {
            for api in [Api::Chat, Api::Embeddings] {
                for opts in &options {
                    for force in [false, true] {
                        if let Ok(out) = build_request(from, to, api, &body, opts, force) {
                            // serde_json refuses numbers beyond f64 and lone
                            // surrogate escapes (`\ud800`), which JSON's grammar
                            // allows; the gateway passes them on as sent.
                            if let Err(e) = serde_json::from_slice::<serde_json::Value>(&out)
                                .map_err(|e| e.to_string())
                                .or_else(|e| if grammar_allows(&e) { Ok(serde_json::Value::Null) } else { Err(e) })
                            {
                                panic!(
                                    "{from:?}->{to:?} {api:?}: invalid JSON built ({e}): {}",
                                    String::from_utf8_lossy(&out)
                                );
                            }
                        }
                    }
                }
            }
        }
    }
});

/// serde_json errors for documents JSON's grammar accepts.
fn grammar_allows(error: &str) -> bool {
    error.contains("number out of range") || error.contains("surrogate")
}
