//! Wire-layer tests with realistic OpenAI and Anthropic transcripts:
//! summaries, request building and answer conversion here, streams in
//! [`streams`].

use serde_json::{json, Map, Value};

use super::*;

mod cache;
mod spacing;
mod streams;

const OPENAI_STREAM: &str = concat!(
    "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}],\"usage\":null}\n\n",
    "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello\"},\"finish_reason\":null}],\"usage\":null}\n\n",
    "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" world\"},\"finish_reason\":null}],\"usage\":null}\n\n",
    "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n",
    "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2,\"total_tokens\":11}}\n\n",
    "data: [DONE]\n\n",
);

const ANTHROPIC_STREAM: &str = concat!(
    "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude-3-5\",\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":12,\"output_tokens\":1}}}\n\n",
    "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
    "event: ping\ndata: {\"type\": \"ping\"}\n\n",
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello\"}}\n\n",
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\" world\"}}\n\n",
    "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
    "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":2}}\n\n",
    "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
);

fn cb(b: &[u8]) -> ClientBody {
    ClientBody::parse(Wire::OpenAi, bytes::Bytes::copy_from_slice(b)).unwrap()
}

fn run(
    from: Wire,
    to: Wire,
    strip: bool,
    input: &str,
    step: usize,
) -> (String, StreamObservations) {
    let mut t = StreamTransform::new(from, to, strip);
    let mut out = Vec::new();
    let mut obs = StreamObservations::default();
    for piece in input.as_bytes().chunks(step) {
        t.feed(piece, &mut out, &mut obs).unwrap();
    }
    t.finish(&mut out, &mut obs).unwrap();
    (String::from_utf8(out).unwrap(), obs)
}

fn data_events(s: &str) -> Vec<Value> {
    s.split("\n\n")
        .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

#[test]
fn summaries() {
    let s = summarize(Wire::OpenAi, br#"{"model":"gpt-4","stream":true,"stream_options":{"include_usage":true},"max_tokens":5,"messages":[]}"#).unwrap();
    assert_eq!(
        s,
        RequestSummary {
            model: Some("gpt-4".into()),
            stream: true,
            include_usage: true,
            max_tokens: Some(5)
        }
    );
    assert!(summarize(Wire::OpenAi, b"[1]").is_err());
    assert!(summarize(Wire::OpenAi, b"{\"stream\":\"yes\"}")
        .unwrap_err()
        .to_string()
        .contains("invalid"));
    assert!(summarize(Wire::OpenAi, b"{").is_err());
}

#[test]
fn same_format_requests_are_spliced() {
    let mut opts = Map::new();
    opts.insert("model".into(), json!("gpt-4"));
    opts.insert("max_tokens".into(), json!(50));
    let body = br#"{"model":"x","stream":true,"stream_options":{"foo":1},"messages":[{"role":"user","content":"hi"}]}"#;
    let out: Value = serde_json::from_slice(
        &build_request(
            Wire::OpenAi,
            Wire::OpenAi,
            Api::Chat,
            &cb(body),
            &ModelOptions::new(opts.clone()),
            true,
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(
        out,
        json!({"model": "gpt-4", "stream": true, "stream_options": {"foo": 1, "include_usage": true}, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 50})
    );
    // Not a stream: no stream_options added.
    let out: Value = serde_json::from_slice(
        &build_request(
            Wire::OpenAi,
            Wire::OpenAi,
            Api::Chat,
            &cb(br#"{"messages":[]}"#),
            &ModelOptions::new(opts.clone()),
            true,
        )
        .unwrap(),
    )
    .unwrap();
    assert!(out.get("stream_options").is_none());
    assert!(build_request(
        Wire::Anthropic,
        Wire::OpenAi,
        Api::Embeddings,
        &cb(b"{}"),
        &ModelOptions::new(opts.clone()),
        false
    )
    .is_err());
}

#[test]
fn openai_to_anthropic_request_mapping() {
    let body = json!({
        "model": "gpt-4", "max_completion_tokens": 300, "temperature": 0.5, "stop": "END", "stream": true, "user": "u1",
        "messages": [
            {"role": "system", "content": "Be brief"},
            {"role": "user", "content": [{"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": "{\"q\":\"x\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "result"},
        ],
        "tools": [{"type": "function", "function": {"name": "lookup", "description": "d", "parameters": {"type": "object"}}}],
        "tool_choice": "required",
    });
    let mut opts = Map::new();
    opts.insert("model".into(), json!("claude-3-5-sonnet"));
    let out: Value = serde_json::from_slice(
        &build_request(
            Wire::OpenAi,
            Wire::Anthropic,
            Api::Chat,
            &cb(body.to_string().as_bytes()),
            &ModelOptions::new(opts.clone()),
            true,
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(out["model"], "claude-3-5-sonnet");
    assert_eq!(out["system"], "Be brief");
    assert_eq!(out["max_tokens"], 300);
    assert_eq!(out["stop_sequences"], json!(["END"]));
    assert_eq!(out["metadata"], json!({"user_id": "u1"}));
    assert_eq!(
        out["messages"][0]["content"][1],
        json!({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}})
    );
    assert_eq!(
        out["messages"][1]["content"][0],
        json!({"type": "tool_use", "id": "call_1", "name": "lookup", "input": {"q": "x"}})
    );
    assert_eq!(
        out["messages"][2],
        json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_1", "content": "result"}]})
    );
    assert_eq!(out["tools"][0]["input_schema"], json!({"type": "object"}));
    assert_eq!(out["tool_choice"], json!({"type": "any"}));
    assert!(
        out.get("stream_options").is_none(),
        "Anthropic reports usage by itself"
    );
    // max_tokens defaults for Anthropic.
    let out: Value = serde_json::from_slice(
        &build_request(
            Wire::OpenAi,
            Wire::Anthropic,
            Api::Chat,
            &cb(br#"{"messages":[{"role":"user","content":"hi"}]}"#),
            &ModelOptions::default(),
            false,
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(out["max_tokens"], 4096);
}

#[test]
fn anthropic_to_openai_request_mapping() {
    let body = json!({"model": "claude", "max_tokens": 100, "system": [{"type": "text", "text": "Be brief"}], "stop_sequences": ["X"], "stream": true,
        "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {"a": 1}}]}, {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "ok"}]}]});
    let out: Value = serde_json::from_slice(
        &build_request(
            Wire::Anthropic,
            Wire::OpenAi,
            Api::Chat,
            &cb(body.to_string().as_bytes()),
            &ModelOptions::default(),
            true,
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(
        out["messages"][0],
        json!({"role": "system", "content": "Be brief"})
    );
    assert_eq!(out["messages"][1], json!({"role": "user", "content": "hi"}));
    assert_eq!(
        out["messages"][2]["tool_calls"][0]["function"],
        json!({"name": "f", "arguments": "{\"a\":1}"})
    );
    assert_eq!(
        out["messages"][3],
        json!({"role": "tool", "tool_call_id": "t1", "content": "ok"})
    );
    assert_eq!(out["stop"], json!(["X"]));
    assert_eq!(out["stream_options"], json!({"include_usage": true}));
}

#[test]
fn responses_both_ways_with_usage() {
    let anthropic = json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude", "content": [{"type": "text", "text": "2"}], "stop_reason": "max_tokens", "usage": {"input_tokens": 10, "output_tokens": 1}});
    let c = convert_response(
        Wire::Anthropic,
        Wire::OpenAi,
        Api::Chat,
        anthropic.to_string().as_bytes(),
        false,
    )
    .unwrap();
    let v: Value = serde_json::from_slice(&c.body.unwrap()).unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "2");
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11})
    );
    assert_eq!(c.usage, Some(Usage::new(10, 1)));

    let openai = json!({"id": "c1", "object": "chat.completion", "model": "gpt-4", "choices": [{"index": 0, "message": {"role": "assistant", "content": "2", "tool_calls": [{"id": "x", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}, "finish_reason": "tool_calls"}], "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}});
    let c = convert_response(
        Wire::OpenAi,
        Wire::Anthropic,
        Api::Chat,
        openai.to_string().as_bytes(),
        false,
    )
    .unwrap();
    let v: Value = serde_json::from_slice(&c.body.unwrap()).unwrap();
    assert_eq!(v["content"][0], json!({"type": "text", "text": "2"}));
    assert_eq!(v["content"][1]["type"], "tool_use");
    assert_eq!(v["stop_reason"], "tool_use");
    assert_eq!(v["usage"], json!({"input_tokens": 5, "output_tokens": 3}));
    let same = convert_response(
        Wire::OpenAi,
        Wire::OpenAi,
        Api::Chat,
        openai.to_string().as_bytes(),
        false,
    )
    .unwrap();
    assert!(same.body.is_none());
    assert_eq!(same.usage, Some(Usage::new(5, 3)));
    assert_eq!(same.model.as_deref(), Some("gpt-4"));
}

#[test]
fn errors_take_the_clients_shape() {
    let e: Value = serde_json::from_slice(&convert_error(
        Wire::Anthropic,
        Wire::OpenAi,
        429,
        br#"{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}"#,
    ))
    .unwrap();
    assert_eq!(e["error"]["message"], "slow down");
    let e: Value = serde_json::from_slice(&convert_error(
        Wire::OpenAi,
        Wire::Anthropic,
        400,
        br#"{"error":{"message":"bad"}}"#,
    ))
    .unwrap();
    assert_eq!(
        e,
        json!({"type": "error", "error": {"type": "invalid_request_error", "message": "bad"}})
    );
}
