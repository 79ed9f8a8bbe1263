use serde_json::{json, Value};

use super::*;

/// The events of a stream: (name, data).
fn events(bytes: &[u8]) -> Vec<(String, Value)> {
    std::str::from_utf8(bytes)
        .unwrap()
        .split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            let (name, data) = e.split_once("\ndata: ").unwrap();
            (
                name.strip_prefix("event: ").unwrap().to_owned(),
                serde_json::from_str(data).unwrap(),
            )
        })
        .collect()
}

#[test]
fn requests_become_chat_requests() {
    let r = json!({
        "model": "gpt-5", "instructions": "Be brief", "stream": true, "max_output_tokens": 50,
        "temperature": 0.2, "reasoning": {"effort": "low"}, "store": true, "metadata": {"a": "b"},
        "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "What is this?"},
                                          {"type": "input_image", "image_url": "https://x/y.png", "detail": "low"}]},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "A cat."}]},
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{\"a\":1}"},
            {"type": "function_call", "call_id": "c2", "name": "g", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "one"},
            {"type": "function_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "two"}]},
        ],
        "tools": [{"type": "function", "name": "f", "description": "d", "parameters": {"type": "object"}, "strict": true}],
        "tool_choice": {"type": "function", "name": "f"},
        "text": {"format": {"type": "json_schema", "name": "s", "schema": {"type": "object"}, "strict": true}},
    });
    let c = request_to_chat(&r).unwrap();
    assert_eq!(
        c,
        json!({
            "model": "gpt-5", "stream": true, "temperature": 0.2, "max_tokens": 50, "reasoning_effort": "low",
            "messages": [
                {"role": "system", "content": "Be brief"},
                {"role": "user", "content": [{"type": "text", "text": "What is this?"},
                                             {"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": "low"}}]},
                {"role": "assistant", "content": "A cat."},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}},
                    {"id": "c2", "type": "function", "function": {"name": "g", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "one"},
                {"role": "tool", "tool_call_id": "c2", "content": "two"},
            ],
            "tools": [{"type": "function", "function": {"name": "f", "description": "d", "parameters": {"type": "object"}, "strict": true}}],
            "tool_choice": {"type": "function", "function": {"name": "f"}},
            "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": {"type": "object"}, "strict": true}},
        })
    );
    let simple = request_to_chat(&json!({"model": "m", "input": "hi"})).unwrap();
    assert_eq!(
        simple,
        json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    );
}

#[test]
fn what_chat_cannot_carry_is_refused_by_name() {
    for (body, names) in [
        (
            json!({"input": "x", "previous_response_id": "resp_1"}),
            "previous_response_id",
        ),
        (
            json!({"input": "x", "conversation": "conv_1"}),
            "conversation",
        ),
        (
            json!({"input": "x", "tools": [{"type": "web_search"}]}),
            "web_search",
        ),
        (
            json!({"input": [{"type": "item_reference", "id": "x"}]}),
            "item_reference",
        ),
        (
            json!({"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]}),
            "input_file",
        ),
        (json!({"input": 3}), "`input`"),
    ] {
        let e = request_to_chat(&body).unwrap_err().to_string();
        assert!(e.contains(names), "{body}: {e}");
    }
    assert!(request_to_chat(&json!({"input": "x", "previous_response_id": null})).is_ok());
}

#[test]
fn answers_become_responses() {
    let chat = json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 7, "model": "m",
        "choices": [{"index": 0, "finish_reason": "length", "message": {"role": "assistant", "content": "Hi",
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7, "prompt_tokens_details": {"cached_tokens": 1}},
    });
    let r = answer_to_responses(&chat).unwrap();
    assert_eq!(r["object"], "response");
    assert_eq!(r["id"], "resp_chatcmpl-1");
    assert_eq!(r["status"], "incomplete");
    assert_eq!(r["incomplete_details"]["reason"], "max_output_tokens");
    assert_eq!(r["output"][0]["content"][0]["text"], "Hi");
    assert_eq!(r["output"][1]["type"], "function_call");
    assert_eq!(r["output"][1]["call_id"], "c1");
    assert_eq!(
        r["usage"],
        json!({"input_tokens": 5, "input_tokens_details": {"cached_tokens": 1}, "output_tokens": 2,
               "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 7})
    );
    let stop = json!({"choices": [{"finish_reason": "stop", "message": {"content": "ok"}}]});
    assert_eq!(answer_to_responses(&stop).unwrap()["status"], "completed");
    assert!(answer_to_responses(&json!({"choices": []})).is_err());
}

fn chunk(delta: Value, finish: Option<&str>) -> Value {
    json!({"id": "c9", "object": "chat.completion.chunk", "model": "m",
           "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
}

#[test]
fn a_text_stream_becomes_the_apis_event_sequence() {
    let mut conv = ChatToResponses::new(1);
    let mut out = Vec::new();
    assert!(
        !conv
            .chunk(
                &chunk(json!({"role": "assistant", "content": ""}), None),
                &mut out
            )
            .first_content
    );
    assert!(
        conv.chunk(&chunk(json!({"content": "Hel"}), None), &mut out)
            .first_content
    );
    conv.chunk(&chunk(json!({"content": "lo"}), None), &mut out);
    conv.chunk(&chunk(json!({}), Some("stop")), &mut out);
    conv.chunk(
        &json!({"id": "c9", "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}),
        &mut out,
    );
    conv.end(&mut out);
    let evs = events(&out);
    let names: Vec<&str> = evs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    for (i, (name, data)) in evs.iter().enumerate() {
        assert_eq!(data["sequence_number"], i as u64);
        assert_eq!(&data["type"], name);
    }
    assert_eq!(evs[0].1["response"]["id"], "resp_c9");
    assert_eq!(evs[6].1["text"], "Hello");
    let done = &evs[9].1["response"];
    assert_eq!(done["id"], "resp_c9", "one identity from start to end");
    assert_eq!(done["output"][0]["content"][0]["text"], "Hello");
    assert_eq!(done["usage"]["output_tokens"], 2);
    assert_eq!(done["status"], "completed");
}

#[test]
fn tool_calls_stream_as_function_call_items() {
    let mut conv = ChatToResponses::new(1);
    let mut out = Vec::new();
    let call = |index: u64, id: Option<&str>, name: Option<&str>, args: &str| {
        let mut f = json!({"arguments": args});
        if let Some(n) = name {
            f["name"] = json!(n);
        }
        let mut tc = json!({"index": index, "function": f});
        if let Some(id) = id {
            tc["id"] = json!(id);
        }
        chunk(json!({"tool_calls": [tc]}), None)
    };
    conv.chunk(&chunk(json!({"content": "Let me check."}), None), &mut out);
    conv.chunk(&call(0, Some("c1"), Some("f"), ""), &mut out);
    conv.chunk(&call(0, None, None, "{\"a\":"), &mut out);
    conv.chunk(&call(0, None, None, "1}"), &mut out);
    conv.chunk(&call(1, Some("c2"), Some("g"), "{}"), &mut out);
    conv.chunk(&chunk(json!({}), Some("tool_calls")), &mut out);
    conv.end(&mut out);
    let evs = events(&out);
    let args: Vec<&Value> = evs
        .iter()
        .filter(|(n, _)| n == "response.function_call_arguments.done")
        .map(|(_, d)| &d["arguments"])
        .collect();
    assert_eq!(args, [&json!("{\"a\":1}"), &json!("{}")]);
    let done = &evs.last().unwrap().1["response"];
    let kinds: Vec<&Value> = done["output"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| &i["type"])
        .collect();
    assert_eq!(
        kinds,
        [
            &json!("message"),
            &json!("function_call"),
            &json!("function_call")
        ]
    );
    assert_eq!(done["output"][2]["call_id"], "c2");
    assert_eq!(done["output"][1]["arguments"], "{\"a\":1}");
    let added: Vec<u64> = evs
        .iter()
        .filter(|(n, _)| n == "response.output_item.added")
        .map(|(_, d)| d["output_index"].as_u64().unwrap())
        .collect();
    assert_eq!(added, [0, 1, 2]);
}

#[test]
fn an_upstream_error_chunk_becomes_the_error_event() {
    let mut conv = ChatToResponses::new(1);
    let mut out = Vec::new();
    conv.chunk(&json!({"error": {"message": "overloaded"}}), &mut out);
    let evs = events(&out);
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].0, "error");
    assert_eq!(evs[0].1["message"], "overloaded");
}
