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

/// What the gateway made of one answer: the budget left before it, the
/// usage the client read (parsed, so any spelling compares equal) and the
/// answer's access-log fields.
type Observed = (u64, Value, Value);

/// The client-visible `usage` of an answer: a JSON answer's, or the
/// usage fields of a stream's events (OpenAI's usage chunk, Anthropic's
/// `message_start` and `message_delta`), in order.
fn client_usage(body: &str) -> Value {
    if let Ok(v) = serde_json::from_str::<Value>(body) {
        return v["usage"].clone();
    }
    let mut events = Vec::new();
    for event in body.split("\n\n") {
        let data: Vec<&str> = event
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(|d| d.strip_prefix(' ').unwrap_or(d))
            .collect();
        let Ok(v) = serde_json::from_str::<Value>(&data.join("\n")) else {
            continue;
        };
        for u in [&v["usage"], &v["message"]["usage"]] {
            if u.is_object() {
                events.push(u.clone());
            }
        }
    }
    Value::Array(events)
}

/// Every combination of provider format (OpenAI-compatible, Anthropic),
/// client format (chat, Messages: converted or passed through) and
/// streaming, answered with JSON spelled `style`, on a fresh gateway.
fn observe(style: mock_llm::JsonStyle) -> Vec<Observed> {
    let m = MockServer::builder()
        .instance(InstanceConfig::new("oai").tokens(4).cached_tokens(3))
        .instance(InstanceConfig::new("claude").tokens(4).cached_tokens(7))
        .spawn()
        .unwrap();
    for name in ["oai", "claude"] {
        m.instance(name).set_faults(mock_llm::Faults {
            json_style: Some(style),
            ..Default::default()
        });
    }
    let route = |name: &str, provider: &str, endpoint: String| {
        json!({"name": name, "uris": [format!("/{name}/v1/chat/completions"), format!("/{name}/v1/messages")],
               "methods": ["POST"], "plugins": {
            "ai-proxy-multi": {"instances": [{"name": name, "provider": provider, "weight": 1,
                "auth": {"header": {"Authorization": "Bearer k", "x-api-key": "k"}},
                "options": {"model": format!("{name}-model")}, "override": {"endpoint": endpoint}}]},
            "ai-rate-limiting": {"instances": [{"name": name, "limit": 100000, "time_window": 600}]},
        }})
    };
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let mut gw = Gateway::start_json(json!({
        "gateway": {"workers": 1, "access_log": {"path": log.to_str().unwrap()}},
        "services": [{"name": "s", "routes": [
            route("oai", "openai-compatible", common::ai::chat_url(&m, "oai")),
            route("claude", "anthropic", format!("{}/v1/messages", m.instance("claude").url())),
        ]}],
    }));
    let chat_stream = r#"{"stream":true,"messages":[{"role":"user","content":"What is 1+1?"}]}"#;
    let mut seen = Vec::new();
    for provider in ["oai", "claude"] {
        for (path, body) in [
            ("v1/chat/completions", ASK),
            ("v1/chat/completions", chat_stream),
            ("v1/chat/completions", OPENAI_STREAM),
            ("v1/messages", MESSAGES),
            ("v1/messages", MESSAGES_STREAM),
        ] {
            let r = Conn::connect(gw.addr).post_json(&format!("/{provider}/{path}"), body);
            assert_eq!(r.status, 200, "{style:?} {provider} {path}: {}", r.text());
            let left = r
                .header(&format!("x-ai-ratelimit-remaining-{provider}"))
                .unwrap()
                .parse()
                .unwrap();
            seen.push((left, client_usage(&r.text())));
        }
    }
    let lines = gw.stop_and_read_log(&log);
    assert_eq!(lines.len(), seen.len());
    seen.into_iter()
        .zip(lines)
        .map(|((left, usage), l)| {
            let logged = json!([
                l["llm_model"],
                l["llm_prompt_tokens"],
                l["llm_completion_tokens"],
                l["request_type"]
            ]);
            (left, usage, logged)
        })
        .collect()
}

/// A provider that spells its JSON with whitespace — Python's `json.dumps`
/// (`", "`, `": "`, as many OpenAI-compatible servers write it) or
/// pretty-printed over several SSE `data:` lines — is observed exactly as
/// one that writes compact JSON: the same usage charged to the budget, the
/// same model and token counts in the access log, the same usage for the
/// client (and no forced usage chunk leaking to a client that did not ask
/// for one), streamed or not, OpenAI and Anthropic, converted and passed
/// through.
#[test]
fn any_json_spelling_is_observed_the_same() {
    let compact = observe(mock_llm::JsonStyle::Compact);
    // The compact run observed real numbers: every answer logged tokens,
    // and every answer was charged (the budget fell each time).
    for (i, (left, _, logged)) in compact.iter().enumerate() {
        assert!(
            logged[1].as_u64().unwrap() > 0 && logged[2] == 4,
            "{i}: {logged}"
        );
        if i % 5 > 0 {
            assert!(*left < compact[i - 1].0, "{i}: charged");
        }
    }
    for style in [mock_llm::JsonStyle::Python, mock_llm::JsonStyle::Pretty] {
        let spelled = observe(style);
        for (i, (want, got)) in compact.iter().zip(&spelled).enumerate() {
            assert_eq!(got, want, "{style:?}, request {i}");
        }
    }
}
