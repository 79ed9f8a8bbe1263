//! The official `openai` and `anthropic` Python SDKs through ringway, with
//! mock-llm behind it: OpenAI clients to OpenAI-format and Anthropic
//! instances (converted), Anthropic clients to Anthropic and OpenAI-format
//! instances (converted), streaming and not, plus embeddings and the
//! Responses API.
#![allow(clippy::disallowed_types, clippy::unwrap_used)]

mod common;

use common::Gateway;
use mock_llm::client::sdk_check;
use mock_llm::{InstanceConfig, MockServer};
use serde_json::{json, Value};

fn route(name: &str, uris: &[&str], inst: Value) -> Value {
    json!({"name": name, "uris": uris, "methods": ["POST"], "plugins": {"ai-proxy-multi": {"instances": [inst]}}})
}

fn inst(name: &str, provider: &str, endpoint: String, model: &str) -> Value {
    json!({"name": name, "provider": provider, "weight": 1, "auth": {"header": {"x-api-key": "k", "Authorization": "Bearer k"}}, "options": {"model": model}, "override": {"endpoint": endpoint}})
}

#[test]
fn official_sdks_through_the_gateway() {
    let m = MockServer::builder()
        .instance(InstanceConfig::new("oai").tokens(6))
        .instance(InstanceConfig::new("claude").tokens(6))
        .spawn()
        .unwrap();
    let oai = m.instance("oai").url();
    let claude = m.instance("claude").url();
    let openai_chat = || {
        inst(
            "openai-1",
            "openai",
            format!("{oai}/v1/chat/completions"),
            "gpt-4o",
        )
    };
    let anthropic = || {
        inst(
            "anthropic-1",
            "anthropic",
            format!("{claude}/v1/messages"),
            "claude-sonnet",
        )
    };
    let doc = json!({"services": [{"name": "llm", "routes": [
        route("openai-chat", &["/openai/v1/chat/completions"], openai_chat()),
        route("openai-responses", &["/openai/v1/responses"], inst("openai-r", "openai", format!("{oai}/v1/responses"), "gpt-5")),
        route("openai-embeddings", &["/openai/v1/embeddings"], inst("openai-e", "openai", format!("{oai}/v1/embeddings"), "text-embedding-3-small")),
        route("openai-to-claude", &["/claude/v1/chat/completions"], anthropic()),
        route("responses-to-claude", &["/claude/v1/responses"], anthropic()),
        route("anthropic-native", &["/native/v1/messages"], anthropic()),
        route("anthropic-to-openai", &["/to-openai/v1/messages"], openai_chat()),
    ]}]});
    let gw = Gateway::start_json(doc);
    let base = format!("http://{}", gw.addr);

    // OpenAI client → OpenAI instance.
    let v1 = format!("{base}/openai/v1");
    let chat = sdk_check("openai_chat", &v1, &[]);
    assert_eq!(chat["model"], "gpt-4o", "the instance's model was merged");
    assert_eq!(chat["headers"]["x-ringway-instance"], "openai-1");
    assert_eq!(chat["usage"]["completion_tokens"], 6);
    assert_eq!(sdk_check("openai_stream", &v1, &[])["text"], chat["text"]);
    assert_eq!(
        sdk_check("openai_stream_usage", &v1, &[])["usage"]["completion_tokens"],
        6
    );
    assert_eq!(sdk_check("openai_embeddings", &v1, &[])["dims"], 8);
    assert_eq!(sdk_check("openai_embeddings_float", &v1, &[])["dims"], 8);

    // The Responses API, JSON and streamed through the SDK's stream helper
    // (which checks the event sequence and the response's identity).
    let resp = sdk_check("openai_responses", &v1, &[]);
    assert_eq!(resp["model"], "gpt-5", "the instance's model was merged");
    assert_eq!(resp["headers"]["x-ringway-instance"], "openai-r");
    assert_eq!(resp["usage"]["output_tokens"], 6);
    assert_eq!(resp["text"], chat["text"]);
    let rs = sdk_check("openai_responses_stream", &v1, &[]);
    assert_eq!(rs["text"], chat["text"]);
    assert_eq!(rs["usage"]["output_tokens"], 6);

    // OpenAI client → Anthropic instance (mapped both ways).
    let claude_v1 = format!("{base}/claude/v1");
    let c = sdk_check("openai_chat", &claude_v1, &[]);
    assert_eq!(c["text"], chat["text"]);
    assert_eq!(c["usage"], chat["usage"]);
    assert_eq!(c["headers"]["x-ringway-instance"], "anthropic-1");
    // The Responses API served by Anthropic (converted by way of chat):
    // the SDK's stream helper checks every event and the final response.
    let rc = sdk_check("openai_responses", &claude_v1, &[]);
    assert_eq!(rc["text"], chat["text"]);
    assert_eq!(rc["model"], "claude-sonnet");
    assert_eq!(rc["usage"]["output_tokens"], 6);
    let rs = sdk_check("openai_responses_stream", &claude_v1, &[]);
    assert_eq!(rs["text"], chat["text"]);
    assert_eq!(rs["usage"]["output_tokens"], 6);
    let s = sdk_check("openai_stream_usage", &claude_v1, &[]);
    assert_eq!(s["text"], chat["text"]);
    assert_eq!(s["usage"]["completion_tokens"], 6);
    assert!(sdk_check("openai_stream", &claude_v1, &[])["usage"].is_null());
    let upstream = m.instance("claude").requests();
    let first = upstream.first().unwrap();
    assert_eq!(first.path, "/v1/messages");
    assert_eq!(first.header("anthropic-version"), Some("2023-06-01"));
    let body = first.json();
    assert_eq!(body["system"], "You are a mathematician");
    assert_eq!(body["model"], "claude-sonnet");

    // Anthropic client → Anthropic instance (pass-through) and → OpenAI instance (mapped).
    for path in ["native", "to-openai"] {
        let b = format!("{base}/{path}");
        let msg = sdk_check("anthropic_messages", &b, &[]);
        assert_eq!(msg["text"], chat["text"], "{path}");
        assert_eq!(msg["stop_reason"], "end_turn", "{path}");
        assert_eq!(msg["usage"]["output_tokens"], 6, "{path}");
        let st = sdk_check("anthropic_stream", &b, &[]);
        assert_eq!(st["text"], chat["text"], "{path}");
        assert_eq!(st["usage"]["output_tokens"], 6, "{path}");
    }
    let to_openai = m
        .instance("oai")
        .requests()
        .into_iter()
        .rfind(|r| r.path == "/v1/chat/completions")
        .unwrap();
    let body = to_openai.json();
    assert_eq!(
        body["messages"][0]["role"], "user",
        "Anthropic message mapped to OpenAI chat"
    );
    assert_eq!(
        body["stream_options"],
        json!({"include_usage": true}),
        "usage forced for OpenAI-format streams"
    );
}
