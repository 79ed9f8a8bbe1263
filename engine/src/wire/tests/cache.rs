//! Anthropic's cached prompt tokens: `input_tokens` leaves out what was
//! written to and read from the prompt cache, so the prompt is
//! `input_tokens + cache_creation_input_tokens + cache_read_input_tokens`
//! (OpenAI's `prompt_tokens` includes its cached tokens and says how many
//! in `prompt_tokens_details.cached_tokens`). Answers and streams, passed
//! through and converted, both ways; sums of untrusted numbers saturate.

use serde_json::{json, Value};

use super::*;

pub(super) const CACHED: &str = r#"{"input_tokens":3,"cache_creation_input_tokens":5,"cache_read_input_tokens":7,"output_tokens":2}"#;

/// 3 uncached + 5 written + 7 read = 15 prompt tokens, 7 of them cached.
fn expected() -> Usage {
    Usage {
        cached_tokens: 7,
        ..Usage::new(15, 2)
    }
}

pub(super) fn answer(usage: &str) -> String {
    format!(
        r#"{{"id":"msg_1","type":"message","role":"assistant","model":"claude","content":[{{"type":"text","text":"2"}}],"stop_reason":"end_turn","usage":{usage}}}"#
    )
}

pub(super) fn stream(start_usage: &str, delta_usage: &str) -> String {
    format!(
        concat!(
            "event: message_start\ndata: {{\"type\":\"message_start\",\"message\":{{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude\",\"usage\":{}}}}}\n\n",
            "event: content_block_start\ndata: {{\"type\":\"content_block_start\",\"index\":0,\"content_block\":{{\"type\":\"text\",\"text\":\"\"}}}}\n\n",
            "event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"Hi\"}}}}\n\n",
            "event: content_block_stop\ndata: {{\"type\":\"content_block_stop\",\"index\":0}}\n\n",
            "event: message_delta\ndata: {{\"type\":\"message_delta\",\"delta\":{{\"stop_reason\":\"end_turn\"}},\"usage\":{}}}\n\n",
            "event: message_stop\ndata: {{\"type\":\"message_stop\"}}\n\n",
        ),
        start_usage, delta_usage
    )
}

#[test]
fn anthropic_answers_count_cached_prompt_tokens() {
    let body = answer(CACHED);
    let same = convert_response(
        Wire::Anthropic,
        Wire::Anthropic,
        Api::Chat,
        body.as_bytes(),
        false,
    )
    .unwrap();
    assert_eq!(same.usage, Some(expected()));
    let c = convert_response(
        Wire::Anthropic,
        Wire::OpenAi,
        Api::Chat,
        body.as_bytes(),
        false,
    )
    .unwrap();
    assert_eq!(c.usage, Some(expected()));
    let v: Value = serde_json::from_slice(&c.body.unwrap()).unwrap();
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens": 15, "completion_tokens": 2, "total_tokens": 17,
               "prompt_tokens_details": {"cached_tokens": 7}})
    );
    // Without cache fields: as before, and no details.
    let plain = convert_response(
        Wire::Anthropic,
        Wire::OpenAi,
        Api::Chat,
        answer(r#"{"input_tokens":3,"output_tokens":2}"#).as_bytes(),
        false,
    )
    .unwrap();
    let v: Value = serde_json::from_slice(&plain.body.unwrap()).unwrap();
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5})
    );
}

#[test]
fn openai_cached_tokens_become_anthropic_cache_reads() {
    let openai = json!({"id": "c1", "model": "gpt-4", "choices": [{"index": 0, "message": {"role": "assistant", "content": "2"}, "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 15, "completion_tokens": 2, "total_tokens": 17, "prompt_tokens_details": {"cached_tokens": 7}}});
    let c = convert_response(
        Wire::OpenAi,
        Wire::Anthropic,
        Api::Chat,
        openai.to_string().as_bytes(),
        false,
    )
    .unwrap();
    assert_eq!(c.usage, Some(expected()));
    let v: Value = serde_json::from_slice(&c.body.unwrap()).unwrap();
    assert_eq!(
        v["usage"],
        json!({"input_tokens": 8, "cache_read_input_tokens": 7, "output_tokens": 2})
    );
    let same = convert_response(
        Wire::OpenAi,
        Wire::OpenAi,
        Api::Chat,
        openai.to_string().as_bytes(),
        false,
    )
    .unwrap();
    assert_eq!(same.usage, Some(expected()));
}

#[test]
fn anthropic_streams_count_cached_prompt_tokens() {
    // Newer API versions repeat the cumulative input fields in
    // `message_delta`; older ones send only `output_tokens` there.
    for delta in [r#"{"output_tokens":2}"#, CACHED] {
        let s = stream(
            r#"{"input_tokens":3,"cache_creation_input_tokens":5,"cache_read_input_tokens":7,"output_tokens":1}"#,
            delta,
        );
        for step in [1, 9, 4096] {
            let (out, obs) = run(Wire::Anthropic, Wire::Anthropic, false, &s, step);
            assert_eq!(out, s);
            assert_eq!(obs.usage, Some(expected()), "{delta}");
            let (out, obs) = run(Wire::Anthropic, Wire::OpenAi, false, &s, step);
            assert_eq!(obs.usage, Some(expected()));
            let last = data_events(&out).pop().unwrap();
            assert_eq!(
                last["usage"],
                json!({"prompt_tokens": 15, "completion_tokens": 2, "total_tokens": 17,
                       "prompt_tokens_details": {"cached_tokens": 7}})
            );
        }
    }
}

#[test]
fn openai_stream_cached_tokens_reach_the_anthropic_client() {
    let s = concat!(
        "data: {\"id\":\"c\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":\"stop\"}]}\n\n",
        "data: {\"id\":\"c\",\"model\":\"m\",\"choices\":[],\"usage\":{\"prompt_tokens\":15,\"completion_tokens\":2,\"total_tokens\":17,\"prompt_tokens_details\":{\"cached_tokens\":7}}}\n\n",
        "data: [DONE]\n\n",
    );
    let (out, obs) = run(Wire::OpenAi, Wire::Anthropic, false, s, 1000);
    assert_eq!(obs.usage, Some(expected()));
    let delta = data_events(&out)
        .into_iter()
        .find(|e| e["type"] == "message_delta")
        .unwrap();
    assert_eq!(
        delta["usage"],
        json!({"input_tokens": 8, "cache_read_input_tokens": 7, "output_tokens": 2})
    );
    let (_, obs) = run(Wire::OpenAi, Wire::OpenAi, false, s, 1000);
    assert_eq!(obs.usage, Some(expected()));
}

#[test]
fn huge_provider_numbers_saturate() {
    let max = u64::MAX;
    let usage = format!(
        r#"{{"input_tokens":{max},"cache_creation_input_tokens":{max},"cache_read_input_tokens":5,"output_tokens":{max}}}"#
    );
    let c = convert_response(
        Wire::Anthropic,
        Wire::OpenAi,
        Api::Chat,
        answer(&usage).as_bytes(),
        false,
    )
    .unwrap();
    let u = c.usage.unwrap();
    assert_eq!(
        (u.prompt_tokens, u.total_tokens, u.cached_tokens),
        (max, max, 5)
    );
    let (_, obs) = run(
        Wire::Anthropic,
        Wire::Anthropic,
        false,
        &stream(&usage, &usage),
        4096,
    );
    assert_eq!(obs.usage.unwrap().total_tokens, max);
    let openai =
        format!(r#"{{"choices":[],"usage":{{"prompt_tokens":{max},"completion_tokens":{max}}}}}"#);
    let same = convert_response(
        Wire::OpenAi,
        Wire::OpenAi,
        Api::Chat,
        openai.as_bytes(),
        false,
    )
    .unwrap();
    assert_eq!(same.usage.unwrap().total_tokens, max);
    assert_eq!(Usage::new(max, 1).total_tokens, max);
}
