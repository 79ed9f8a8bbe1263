//! Wire-layer tests with realistic OpenAI and Anthropic transcripts.

use serde_json::{json, Map, Value};

use super::*;

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
        .0
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

#[test]
fn openai_passthrough_observes_and_strips_the_forced_usage_chunk() {
    for step in [1, 7, 1000] {
        let (out, obs) = run(Wire::OpenAi, Wire::OpenAi, true, OPENAI_STREAM, step);
        assert!(obs.first_token && obs.done);
        assert_eq!(obs.usage, Some(Usage::new(9, 2)));
        assert_eq!(obs.model.as_deref(), Some("gpt-4o"));
        assert!(!out.contains("\"prompt_tokens\""), "usage chunk stripped");
        assert_eq!(
            out.len(),
            OPENAI_STREAM.len() - OPENAI_STREAM.split("\n\n").nth(4).unwrap().len() - 2
        );
        let (out, _) = run(Wire::OpenAi, Wire::OpenAi, false, OPENAI_STREAM, step);
        assert_eq!(out, OPENAI_STREAM, "byte for byte when nothing is stripped");
    }
}

#[test]
fn anthropic_passthrough_observes_usage() {
    let (out, obs) = run(Wire::Anthropic, Wire::Anthropic, false, ANTHROPIC_STREAM, 5);
    assert_eq!(out, ANTHROPIC_STREAM);
    assert!(obs.first_token && obs.done);
    assert_eq!(obs.usage, Some(Usage::new(12, 2)));
    assert_eq!(obs.model.as_deref(), Some("claude-3-5"));
}

#[test]
fn anthropic_stream_becomes_openai_chunks() {
    let (out, obs) = run(Wire::Anthropic, Wire::OpenAi, false, ANTHROPIC_STREAM, 3);
    assert!(out.ends_with("data: [DONE]\n\n"));
    let ev = data_events(&out);
    assert_eq!(
        ev[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": ""})
    );
    let text: String = ev
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "Hello world");
    assert!(ev
        .iter()
        .any(|e| e["choices"][0]["finish_reason"] == "stop"));
    assert_eq!(
        ev.last().unwrap()["usage"],
        json!({"prompt_tokens": 12, "completion_tokens": 2, "total_tokens": 14})
    );
    assert!(ev.iter().all(|e| e["object"] == "chat.completion.chunk"
        && e["model"] == "claude-3-5"
        && e["id"] == "msg_1"));
    assert_eq!(obs.usage, Some(Usage::new(12, 2)));
    let (out, _) = run(Wire::Anthropic, Wire::OpenAi, true, ANTHROPIC_STREAM, 100);
    assert!(!out.contains("prompt_tokens"));
}

#[test]
fn openai_stream_becomes_the_anthropic_event_sequence() {
    let (out, obs) = run(Wire::OpenAi, Wire::Anthropic, false, OPENAI_STREAM, 11);
    let names: Vec<&str> = out
        .split("\n\n")
        .filter_map(|e| e.lines().next()?.strip_prefix("event: "))
        .collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    let ev = data_events(&out);
    assert_eq!(ev[5]["delta"]["stop_reason"], "end_turn");
    assert_eq!(
        ev[5]["usage"],
        json!({"input_tokens": 9, "output_tokens": 2})
    );
    assert!(obs.first_token && obs.done);
}

#[test]
fn tool_call_streams_convert_both_ways() {
    let openai_tools = concat!(
        "data: {\"id\":\"c\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"tool_calls\":[{\"index\":0,\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"\"}}]},\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"c\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"a\\\":1}\"}}]},\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"c\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n",
        "data: [DONE]\n\n",
    );
    let (out, _) = run(Wire::OpenAi, Wire::Anthropic, false, openai_tools, 9);
    let ev = data_events(&out);
    assert_eq!(ev[1]["content_block"]["type"], "tool_use");
    assert_eq!(
        ev[2]["delta"],
        json!({"type": "input_json_delta", "partial_json": "{\"a\":1}"})
    );
    assert_eq!(ev[4]["delta"]["stop_reason"], "tool_use");
    // And back: the rebuilt Anthropic stream converts to OpenAI tool-call chunks.
    let (back, _) = run(Wire::Anthropic, Wire::OpenAi, true, &out, 13);
    let ev = data_events(&back);
    assert_eq!(
        ev[1]["choices"][0]["delta"]["tool_calls"][0]["id"],
        "call_1"
    );
    assert_eq!(
        ev[2]["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"],
        "{\"a\":1}"
    );
}

#[test]
fn error_events_in_the_clients_format() {
    let t = StreamTransform::new(Wire::Anthropic, Wire::OpenAi, true);
    let mut out = Vec::new();
    t.error_event("upstream reset", &mut out);
    let v: Value = serde_json::from_str(
        String::from_utf8(out)
            .unwrap()
            .strip_prefix("data: ")
            .unwrap()
            .trim(),
    )
    .unwrap();
    assert_eq!(v["error"]["message"], "upstream reset");
    let t = StreamTransform::new(Wire::OpenAi, Wire::Anthropic, true);
    let mut out = Vec::new();
    t.error_event("x", &mut out);
    assert!(String::from_utf8(out)
        .unwrap()
        .starts_with("event: error\ndata: {"));
}

#[test]
fn the_borrowed_chunk_view_reads_what_the_tree_reads() {
    let chunks: &[&str] = &[
        r#"{"model":"gpt-4o","choices":[{"index":0,"delta":{"role":"assistant","content":""}}],"usage":null}"#,
        r#"{"model":"gpt-4o","choices":[{"index":0,"delta":{"content":"Hi \"there\" \u00e9"}}]}"#,
        r#"{"model":"m","choices":[{"delta":{"refusal":"no"}}]}"#,
        r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"name":"f"}}]}}]}"#,
        r#"{"choices":[{"delta":{"tool_calls":[]}}]}"#,
        r#"{"choices":[{"finish_reason":"stop"}]}"#,
        r#"{"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11}}"#,
        r#"{"choices":[],"usage":{"prompt_tokens":3}}"#,
        r#"{"choices":[{"delta":{"content":"x"}}],"usage":{}}"#,
        r#"{"id":"x","object":"chat.completion.chunk","extra":{"nested":[1,2,{"a":null}]}}"#,
    ];
    for raw in chunks {
        let v: Value = serde_json::from_str(raw).unwrap();
        let c = openai::ChunkView::parse(raw.as_bytes()).expect(raw);
        assert_eq!(c.model(), v.get("model").and_then(Value::as_str), "{raw}");
        assert_eq!(c.has_content(), openai::chunk_has_content(&v), "{raw}");
        assert_eq!(c.usage(), openai::usage(&v), "{raw}");
        let usage_only = v
            .get("choices")
            .and_then(Value::as_array)
            .is_some_and(Vec::is_empty);
        assert_eq!(c.usage_only(), usage_only, "{raw}");
    }
    // A shape the typed view refuses is left to the tree reading.
    assert!(openai::ChunkView::parse(br#"{"model":7}"#).is_none());
}

#[test]
fn collected_text_is_the_deltas_joined_in_every_direction() {
    for (from, input) in [
        (Wire::OpenAi, OPENAI_STREAM),
        (Wire::Anthropic, ANTHROPIC_STREAM),
    ] {
        for to in [Wire::OpenAi, Wire::Anthropic] {
            for step in [1, 7, input.len()] {
                let mut t = StreamTransform::new(from, to, false).collecting_text();
                let mut out = Vec::new();
                let mut obs = StreamObservations::default();
                for piece in input.as_bytes().chunks(step) {
                    t.feed(piece, &mut out, &mut obs).unwrap();
                }
                t.finish(&mut out, &mut obs).unwrap();
                assert_eq!(obs.text.as_deref(), Some("Hello world"), "{from:?}→{to:?}");
            }
            // Not asked for: nothing collected.
            assert_eq!(run(from, to, false, input, 5).1.text, None);
        }
    }
}

#[test]
fn raw_usage_is_kept_when_asked_and_anthropic_events_are_merged() {
    for to in [Wire::OpenAi, Wire::Anthropic] {
        let mut t = StreamTransform::new(Wire::Anthropic, to, false).collecting_raw_usage();
        let (mut out, mut obs) = (Vec::new(), StreamObservations::default());
        t.feed(ANTHROPIC_STREAM.as_bytes(), &mut out, &mut obs)
            .unwrap();
        assert_eq!(
            obs.raw_usage,
            Some(json!({"input_tokens": 12, "output_tokens": 2})),
            "message_start's usage, then message_delta's output_tokens"
        );
        let mut t = StreamTransform::new(Wire::OpenAi, to, false).collecting_raw_usage();
        let (mut out, mut obs) = (Vec::new(), StreamObservations::default());
        t.feed(OPENAI_STREAM.as_bytes(), &mut out, &mut obs)
            .unwrap();
        assert_eq!(
            obs.raw_usage,
            Some(json!({"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11})),
            "the final chunk's usage; the `null` ones before it are not objects"
        );
    }
    assert_eq!(
        run(Wire::OpenAi, Wire::OpenAi, false, OPENAI_STREAM, 7)
            .1
            .raw_usage,
        None
    );
}

/// A chat stream whose body ends without `data: [DONE]`, through
/// `end_of_body`: closed when its finish reason came, an error event when
/// it did not; relayed as it is to a chat client.
#[test]
fn converted_streams_end_cleanly_without_done_and_loudly_without_a_finish() {
    let finished = concat!(
        "data: {\"id\":\"c\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"c\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
    );
    let cut = "data: {\"id\":\"c\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}]}\n\n";
    let end = |to: Wire, input: &str| {
        let mut t = StreamTransform::new(Wire::OpenAi, to, true);
        let (mut out, mut obs) = (Vec::new(), StreamObservations::default());
        t.feed(input.as_bytes(), &mut out, &mut obs).unwrap();
        t.finish(&mut out, &mut obs).unwrap();
        t.end_of_body(&mut out, &mut obs);
        (String::from_utf8(out).unwrap(), obs.done)
    };
    let (text, done) = end(Wire::Responses, finished);
    assert!(
        done && text.contains("event: response.completed\n"),
        "{text}"
    );
    let (text, done) = end(Wire::Anthropic, finished);
    assert!(
        done && text.ends_with("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"),
        "{text}"
    );
    let (text, done) = end(Wire::Responses, cut);
    assert!(
        !done && text.contains("event: error\n") && !text.contains("response.completed"),
        "{text}"
    );
    let (text, done) = end(Wire::Anthropic, cut);
    assert!(
        !done && text.contains("event: error\n") && !text.contains("message_stop"),
        "{text}"
    );
    let (text, done) = end(Wire::OpenAi, finished);
    assert!(
        !done && text == finished,
        "chat to chat is left as it ended"
    );
}

/// Chat text chunks written straight out (the fast path) and through the
/// tree (first chunk, tool calls, finish, usage) make one well-numbered
/// Responses stream whose text is the chat text, escapes included.
#[test]
fn chat_to_responses_text_fast_path_matches_the_tree_path() {
    let chunk = |delta: Value, finish: Value| {
        format!(
            "data: {}\n\n",
            json!({"id": "c", "model": "m", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        )
    };
    let pieces = [
        "He said \"hi\"",
        " — é\n",
        "\\ \"finish_reason\":\"x\" ",
        "end",
    ];
    let mut input = chunk(json!({"role": "assistant", "content": ""}), Value::Null);
    for p in pieces {
        input.push_str(&chunk(json!({"content": p}), Value::Null));
    }
    input.push_str(&chunk(
        json!({"tool_calls": [{"index": 0, "id": "t1", "function": {"name": "f", "arguments": "{}"}}]}),
        Value::Null,
    ));
    input.push_str(&chunk(json!({"content": "after"}), json!("stop")));
    input.push_str("data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":5,\"total_tokens\":8}}\n\ndata: [DONE]\n\n");
    for step in [input.len(), 7] {
        let (out, obs) = run(Wire::OpenAi, Wire::Responses, true, &input, step);
        assert!(obs.done && obs.first_token && obs.usage == Some(Usage::new(3, 5)));
        let events: Vec<Value> = out
            .split("\n\n")
            .filter_map(|e| e.split_once("\ndata: "))
            .map(|(_, d)| serde_json::from_str(d).unwrap())
            .collect();
        for (i, e) in events.iter().enumerate() {
            assert_eq!(e["sequence_number"], i as u64, "{e}");
        }
        let deltas: Vec<&Value> = events
            .iter()
            .filter(|e| e["type"] == "response.output_text.delta")
            .collect();
        let text: String = deltas[..4]
            .iter()
            .map(|e| e["delta"].as_str().unwrap())
            .collect();
        assert_eq!(text, pieces.concat());
        assert!(deltas[..4]
            .iter()
            .all(|e| e["item_id"] == deltas[0]["item_id"] && e["output_index"] == 0));
        assert_eq!(deltas[4]["delta"], "after");
        assert_eq!(
            deltas[4]["output_index"], 2,
            "text after the tool call is a new item"
        );
        let done = &events.last().unwrap()["response"];
        assert_eq!(done["output"][0]["content"][0]["text"], pieces.concat());
        assert_eq!(done["output"][1]["type"], "function_call");
        assert_eq!(done["output"][2]["content"][0]["text"], "after");
    }
}

/// The same for Anthropic clients: text written straight out and blocks
/// opened through the tree make one consistent event sequence.
#[test]
fn chat_to_anthropic_text_fast_path_matches_the_tree_path() {
    let chunk = |delta: Value, finish: Value| {
        format!(
            "data: {}\n\n",
            json!({"id": "c", "model": "m", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        )
    };
    let pieces = ["He said \"hi\"", " — é\n", "\\ \"usage\":{ ", "end"];
    let mut input = chunk(json!({"role": "assistant", "content": ""}), Value::Null);
    for p in pieces {
        input.push_str(&chunk(json!({"content": p}), Value::Null));
    }
    input.push_str(&chunk(
        json!({"tool_calls": [{"index": 0, "id": "t1", "function": {"name": "f", "arguments": "{}"}}]}),
        Value::Null,
    ));
    input.push_str(&chunk(json!({"content": "after"}), Value::Null));
    input.push_str(&chunk(json!({"content": " more"}), Value::Null));
    input.push_str(&chunk(json!({"content": "!"}), json!("stop")));
    input.push_str("data: [DONE]\n\n");
    for step in [input.len(), 5] {
        let (out, obs) = run(Wire::OpenAi, Wire::Anthropic, true, &input, step);
        assert!(obs.done && obs.first_token);
        let events = data_events(&out);
        let texts = |index: u64| -> String {
            events
                .iter()
                .filter(|e| e["type"] == "content_block_delta" && e["index"] == index)
                .filter_map(|e| e["delta"]["text"].as_str())
                .collect()
        };
        assert_eq!(texts(0), pieces.concat());
        assert_eq!(
            texts(2),
            "after more!",
            "text after the tool call is a new block"
        );
        let starts: Vec<&Value> = events
            .iter()
            .filter(|e| e["type"] == "content_block_start")
            .map(|e| &e["content_block"]["type"])
            .collect();
        assert_eq!(starts, [&json!("text"), &json!("tool_use"), &json!("text")]);
        assert_eq!(events.last().unwrap()["type"], "message_stop");
    }
}
