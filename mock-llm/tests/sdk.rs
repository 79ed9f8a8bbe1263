//! Wire compatibility: the official `openai` and `anthropic` Python SDKs
//! talk to mock-llm directly (chat, streaming, embeddings, Azure client,
//! messages, streaming messages). Needs `scripts/setup-test-deps.sh`.
#![allow(clippy::unwrap_used)]

use mock_llm::client::sdk_check;
use mock_llm::{InstanceConfig, MockServer};

#[test]
fn official_sdks_cannot_tell_the_mock_from_the_real_apis() {
    let m = MockServer::builder()
        .instance(InstanceConfig::new("sdk").tokens(6))
        .spawn()
        .unwrap();
    let base = m.instance("sdk").url();
    let v1 = format!("{base}/v1");
    let chat = sdk_check("openai_chat", &v1, &["--model", "gpt-4"]);
    assert_eq!(chat["model"], "gpt-4");
    assert_eq!(chat["usage"]["completion_tokens"], 6);
    assert_eq!(chat["headers"]["x-mock-instance"], "sdk");
    let stream = sdk_check("openai_stream", &v1, &[]);
    assert_eq!(stream["text"], chat["text"]);
    let with_usage = sdk_check("openai_stream_usage", &v1, &[]);
    assert_eq!(with_usage["usage"]["completion_tokens"], 6);
    assert_eq!(sdk_check("openai_embeddings", &v1, &[])["dims"], 8);
    assert_eq!(sdk_check("openai_embeddings_float", &v1, &[])["dims"], 8);
    assert_eq!(
        sdk_check("azure_chat", &base, &[])["usage"]["completion_tokens"],
        6
    );
    assert_eq!(sdk_check("azure_embeddings", &base, &[])["dims"], 8);
    let msg = sdk_check("anthropic_messages", &base, &["--model", "claude-x"]);
    assert_eq!(msg["stop_reason"], "end_turn");
    assert_eq!(msg["usage"]["output_tokens"], 6);
    let st = sdk_check("anthropic_stream", &base, &[]);
    assert_eq!(st["text"], msg["text"]);
    let resp = sdk_check("openai_responses", &v1, &["--model", "gpt-5"]);
    assert_eq!(resp["model"], "gpt-5");
    assert_eq!(resp["usage"]["output_tokens"], 6);
    assert_eq!(resp["usage"]["input_tokens"], 4 + 4 + 4 + 3);
    let rs = sdk_check("openai_responses_stream", &v1, &[]);
    assert_eq!(rs["text"], resp["text"]);
    assert_eq!(rs["usage"]["output_tokens"], 6);
    assert_eq!(
        rs["events"],
        8 + 6,
        "seven framing events, the completion, six deltas"
    );
    // The Azure client really used the deployment path and api-version.
    let azure = m
        .instance("sdk")
        .requests()
        .into_iter()
        .find(|r| r.path.contains("/openai/deployments/"))
        .expect("an Azure request");
    assert!(azure.query.unwrap_or_default().contains("api-version="));
}
