//! Builders for ai-proxy-multi test configs (as JSON), mock-llm in
//! process, and small request helpers.

use serde_json::{json, Value};

pub use mock_llm::{Faults, InstanceConfig, MockServer};

/// An instance entry pointing at a mock endpoint.
pub fn instance(name: &str, weight: u64, endpoint: &str, model: &str) -> Value {
    json!({
        "name": name,
        "provider": "openai-compatible",
        "weight": weight,
        "auth": {"header": {"Authorization": format!("Bearer key-{name}")}},
        "options": {"model": model},
        "override": {"endpoint": endpoint},
    })
}

/// A config with one ai-proxy-multi route on `uris`.
pub fn ai_config(uris: &[&str], plugin: Value) -> Value {
    json!({
        "services": [{
            "name": "ai",
            "routes": [{
                "name": "ai-route",
                "uris": uris,
                "methods": ["POST"],
                "plugins": {"ai-proxy-multi": plugin},
            }],
        }],
    })
}

/// The mock's chat endpoint URL.
pub fn chat_url(m: &MockServer, name: &str) -> String {
    format!("{}/v1/chat/completions", m.instance(name).url())
}

pub fn mocks(names: &[&str]) -> MockServer {
    let mut b = MockServer::builder();
    for n in names {
        b = b.instance(InstanceConfig::new(n).tokens(4));
    }
    b.spawn().expect("mock")
}

/// The seed's question.
pub const ASK: &str = r#"{"messages":[{"role":"system","content":"You are a mathematician"},{"role":"user","content":"What is 1+1?"}]}"#;
pub const ASK_STREAM: &str =
    r#"{"stream":true,"messages":[{"role":"user","content":"What is 1+1?"}]}"#;

/// The seed's two instances (priority 1 openai, 0 deepseek) on the mocks.
pub fn seed_priority_route(m: &mock_llm::MockServer, rate_limit: Value, fallback: bool) -> Value {
    let mut ai = json!({
        "instances": [
            {"name": "openai-instance", "provider": "openai", "priority": 1, "weight": 0,
             "auth": {"header": {"Authorization": "Bearer sk-openai"}},
             "options": {"model": "gpt-4"},
             "override": {"endpoint": chat_url(m, "openai")}},
            {"name": "deepseek-instance", "provider": "deepseek", "priority": 0, "weight": 0,
             "auth": {"header": {"Authorization": "Bearer sk-deepseek"}},
             "options": {"model": "deepseek-chat"},
             "override": {"endpoint": chat_url(m, "deepseek")}},
        ],
    });
    if fallback {
        ai["fallback_strategy"] = json!(["rate_limiting"]);
    }
    json!({"services": [{"name": "ai-proxy-multi-service", "routes": [{
        "name": "ai-proxy-multi-route", "uris": ["/anything"], "methods": ["POST"],
        "plugins": {"ai-proxy-multi": ai, "ai-rate-limiting": rate_limit},
    }]}]})
}

/// The text of an OpenAI event stream's deltas, and how many carried text.
pub fn streamed_content(body: &str) -> (String, usize) {
    let mut text = String::new();
    let mut events = 0;
    for line in body.lines() {
        let Some(data) = line.strip_prefix("data: ") else {
            continue;
        };
        if data == "[DONE]" {
            continue;
        }
        let v: Value = serde_json::from_str(data).unwrap();
        if let Some(c) = v["choices"][0]["delta"]["content"].as_str() {
            text.push_str(c);
            events += 1;
        }
    }
    (text, events)
}

/// Tokens one request costs (the mock's usage for ASK).
pub fn cost_of_ask(m: &mock_llm::MockServer) -> u64 {
    let body = ASK.replace("{\"messages\"", "{\"model\":\"gpt-4\",\"messages\"");
    super::Conn::connect(m.instance("openai").addr())
        .post_json("/v1/chat/completions", &body)
        .json()["usage"]["total_tokens"]
        .as_u64()
        .unwrap()
}

/// An ai-rate-limiting config: `limit` tokens for openai-instance per
/// 600 s, with `store`'s fields (policy, Redis settings) added.
pub fn redis_limit(limit: u64, store: Value) -> Value {
    let mut v =
        json!({"instances": [{"name": "openai-instance", "limit": limit, "time_window": 600}]});
    for (k, x) in store.as_object().unwrap() {
        v[k] = x.clone();
    }
    v
}
