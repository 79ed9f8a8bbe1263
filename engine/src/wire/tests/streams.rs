//! Streams: pass-throughs, conversions in every direction, text and
//! usage collection, the end of a body without its marker.

use serde_json::{json, Value};

use super::*;

/// One chat chunk event (`id` "c", model "m", one choice).
pub(super) fn chat_chunk(delta: Value, finish: Value) -> String {
    format!(
        "data: {}\n\n",
        json!({"id": "c", "model": "m", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    )
}

/// A chat stream: a role chunk, text `before` piece by piece, one tool
/// call, text `after` piece by piece, the last one finishing with `stop`.
pub(super) fn text_tool_text(before: &[&str], after: &[&str]) -> String {
    let mut input = chat_chunk(json!({"role": "assistant", "content": ""}), Value::Null);
    for p in before {
        input.push_str(&chat_chunk(json!({"content": p}), Value::Null));
    }
    input.push_str(&chat_chunk(
        json!({"tool_calls": [{"index": 0, "id": "t1", "function": {"name": "f", "arguments": "{}"}}]}),
        Value::Null,
    ));
    for (i, p) in after.iter().enumerate() {
        let finish = if i + 1 == after.len() {
            json!("stop")
        } else {
            Value::Null
        };
        input.push_str(&chat_chunk(json!({"content": p}), finish));
    }
    input
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

/// A chat stream of one tool call.
pub(super) const OPENAI_TOOLS: &str = concat!(
    "data: {\"id\":\"c\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"tool_calls\":[{\"index\":0,\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"\"}}]},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"c\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"a\\\":1}\"}}]},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"c\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n",
    "data: [DONE]\n\n",
);

#[test]
fn tool_call_streams_convert_both_ways() {
    let (out, _) = run(Wire::OpenAi, Wire::Anthropic, false, OPENAI_TOOLS, 9);
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
    let pieces = [
        "He said \"hi\"",
        " — é\n",
        "\\ \"finish_reason\":\"x\" ",
        "end",
    ];
    let mut input = text_tool_text(&pieces, &["after"]);
    input.push_str("data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":5,\"total_tokens\":8}}\n\ndata: [DONE]\n\n");
    for step in [input.len(), 7] {
        let (out, obs) = run(Wire::OpenAi, Wire::Responses, true, &input, step);
        assert!(obs.done && obs.first_token && obs.usage == Some(Usage::new(3, 5)));
        let events = data_events(&out);
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
    let pieces = ["He said \"hi\"", " — é\n", "\\ \"usage\":{ ", "end"];
    let mut input = text_tool_text(&pieces, &["after", " more", "!"]);
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
