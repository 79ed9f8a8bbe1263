//! Token usage as budgets, the access log and converted answers see it.
//! Anthropic's prompt is `input_tokens` plus the prompt tokens written to
//! and read from its cache (`cache_creation_input_tokens`,
//! `cache_read_input_tokens`), converted to OpenAI's `prompt_tokens` with
//! `prompt_tokens_details.cached_tokens`.
#![allow(clippy::disallowed_types, clippy::unwrap_used)]

mod common;

use common::ai::{InstanceConfig, MockServer, ASK};
use common::{Conn, Gateway};
use serde_json::{json, Value};

/// An Anthropic instance at `url` on `/v1/chat/completions` (OpenAI
/// clients, converted) and `/v1/messages` (Anthropic clients, passed
/// through), with a prompt-token budget whose remaining count every
/// answer shows, and an access log.
fn gateway(url: &str, log: &std::path::Path) -> Gateway {
    Gateway::start_json(json!({
        "gateway": {"access_log": {"path": log.to_str().unwrap()}},
        "services": [{"name": "s", "routes": [{
            "name": "r", "uris": ["/v1/chat/completions", "/v1/messages"], "methods": ["POST"],
            "plugins": {
                "ai-proxy-multi": {"instances": [{"name": "claude", "provider": "anthropic", "weight": 1,
                    "auth": {"header": {"x-api-key": "k"}}, "options": {"model": "claude-x"},
                    "override": {"endpoint": url}}]},
                "ai-rate-limiting": {"instances": [{"name": "claude", "limit": 1000, "time_window": 600}],
                    "limit_strategy": "prompt_tokens"},
            },
        }]}],
    }))
}

const OPENAI_STREAM: &str = r#"{"stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"What is 1+1?"}]}"#;
const MESSAGES: &str =
    r#"{"model":"m","max_tokens":100,"messages":[{"role":"user","content":"What is 1+1?"}]}"#;
const MESSAGES_STREAM: &str = r#"{"model":"m","max_tokens":100,"stream":true,"messages":[{"role":"user","content":"What is 1+1?"}]}"#;

/// The `usage` of the last OpenAI stream event carrying one.
fn streamed_usage(body: &str) -> Value {
    body.lines()
        .rev()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str::<Value>(d).unwrap())
        .find(|v| v["usage"].is_object())
        .map(|v| v["usage"].clone())
        .unwrap_or(Value::Null)
}

#[test]
fn anthropic_cached_prompt_tokens_are_counted_and_converted() {
    let m = MockServer::builder()
        .instance(
            InstanceConfig::new("claude")
                .tokens(4)
                .cached_tokens(7)
                .cache_creation_tokens(5),
        )
        .spawn()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let mut gw = gateway(&format!("{}/v1/messages", m.instance("claude").url()), &log);
    let mut remaining = Vec::new();
    let mut ask = |path: &str, body: &str| {
        let r = Conn::connect(gw.addr).post_json(path, body);
        assert_eq!(r.status, 200, "{}", r.text());
        remaining.push(
            r.header("x-ai-ratelimit-remaining-claude")
                .unwrap()
                .parse::<u64>()
                .unwrap(),
        );
        r
    };
    // The mock's prompts: 15 and 7 uncached tokens, plus 5 written to and
    // 7 read from the cache.
    let r = ask("/v1/chat/completions", ASK);
    assert_eq!(
        r.json()["usage"],
        json!({"prompt_tokens": 27, "completion_tokens": 4, "total_tokens": 31,
               "prompt_tokens_details": {"cached_tokens": 7}})
    );
    let r = ask("/v1/chat/completions", OPENAI_STREAM);
    assert_eq!(
        streamed_usage(&r.text()),
        json!({"prompt_tokens": 19, "completion_tokens": 4, "total_tokens": 23,
               "prompt_tokens_details": {"cached_tokens": 7}})
    );
    // Anthropic clients get the provider's usage as it was.
    let r = ask("/v1/messages", MESSAGES);
    assert_eq!(
        r.json()["usage"],
        json!({"input_tokens": 7, "cache_creation_input_tokens": 5, "cache_read_input_tokens": 7, "output_tokens": 4})
    );
    ask("/v1/messages", MESSAGES_STREAM);
    ask("/v1/messages", MESSAGES);
    // Each answer's whole prompt was charged before the next request.
    assert_eq!(remaining, [1000, 973, 954, 935, 916]);
    let lines = gw.stop_and_read_log(&log);
    // (Two workers write the log: in any order.)
    let mut prompts: Vec<u64> = lines
        .iter()
        .map(|l| l["llm_prompt_tokens"].as_u64().unwrap())
        .collect();
    prompts.sort_unstable();
    assert_eq!(prompts, [19, 19, 19, 19, 27]);
    assert!(lines.iter().all(|l| l["llm_completion_tokens"] == 4));
}
