//! Chat answers as Responses API answers: the response object, its output
//! items and usage (shared with the stream converter).

use serde_json::{json, Value};

use crate::wire::WireError;

/// A chat `usage` object in the Responses API's terms.
pub fn usage_to_responses(u: &Value) -> Value {
    let input = u.get("prompt_tokens").and_then(Value::as_u64).unwrap_or(0);
    let output = u
        .get("completion_tokens")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    json!({
        "input_tokens": input,
        "input_tokens_details": {"cached_tokens": u.pointer("/prompt_tokens_details/cached_tokens").and_then(Value::as_u64).unwrap_or(0)},
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": u.pointer("/completion_tokens_details/reasoning_tokens").and_then(Value::as_u64).unwrap_or(0)},
        "total_tokens": u.get("total_tokens").and_then(Value::as_u64).unwrap_or(input.saturating_add(output)),
    })
}

/// Status and `incomplete_details` for a chat `finish_reason`.
pub(super) fn status_of(finish: Option<&str>) -> (&'static str, Value) {
    match finish {
        Some("length") => ("incomplete", json!({"reason": "max_output_tokens"})),
        Some("content_filter") => ("incomplete", json!({"reason": "content_filter"})),
        _ => ("completed", Value::Null),
    }
}

/// The response object around `output`.
pub(super) fn envelope(
    id: &str,
    created: u64,
    model: &str,
    (status, incomplete): (&str, Value),
    output: Vec<Value>,
    usage: Value,
) -> Value {
    json!({
        "id": id, "object": "response", "created_at": created, "status": status,
        "error": null, "incomplete_details": incomplete, "instructions": null,
        "model": model, "output": output, "parallel_tool_calls": true,
        "tool_choice": "auto", "tools": [], "text": {"format": {"type": "text"}},
        "usage": usage, "metadata": {},
    })
}

pub(super) fn message_item(id: &str, part: Value, status: &str) -> Value {
    json!({"type": "message", "id": id, "status": status, "role": "assistant", "content": [part]})
}

pub(super) fn text_part(kind: TextKind, text: &str) -> Value {
    match kind {
        TextKind::Text => json!({"type": "output_text", "text": text, "annotations": []}),
        TextKind::Refusal => json!({"type": "refusal", "refusal": text}),
    }
}

pub(super) fn call_item(
    id: &str,
    call_id: &str,
    name: &str,
    arguments: &str,
    status: &str,
) -> Value {
    json!({"type": "function_call", "id": id, "call_id": call_id, "name": name, "arguments": arguments, "status": status})
}

/// A chat completion as a Responses API answer.
pub fn answer_to_responses(v: &Value) -> Result<Value, WireError> {
    let choice = v
        .pointer("/choices/0")
        .ok_or_else(|| WireError::new("the provider's answer has no choices"))?;
    let chat_id = v.get("id").and_then(Value::as_str).unwrap_or("");
    let msg = &choice["message"];
    let mut output = Vec::new();
    let item_id = format!("msg_{chat_id}");
    if let Some(t) = msg.get("content").and_then(Value::as_str) {
        output.push(message_item(
            &item_id,
            text_part(TextKind::Text, t),
            "completed",
        ));
    } else if let Some(r) = msg.get("refusal").and_then(Value::as_str) {
        output.push(message_item(
            &item_id,
            text_part(TextKind::Refusal, r),
            "completed",
        ));
    }
    for tc in msg
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let call_id = tc.get("id").and_then(Value::as_str).unwrap_or("");
        output.push(call_item(
            &format!("fc_{call_id}"),
            call_id,
            tc.pointer("/function/name")
                .and_then(Value::as_str)
                .unwrap_or(""),
            tc.pointer("/function/arguments")
                .and_then(Value::as_str)
                .unwrap_or("{}"),
            "completed",
        ));
    }
    Ok(envelope(
        &format!("resp_{chat_id}"),
        v.get("created").and_then(Value::as_u64).unwrap_or(0),
        v.get("model").and_then(Value::as_str).unwrap_or(""),
        status_of(choice.get("finish_reason").and_then(Value::as_str)),
        output,
        v.get("usage")
            .filter(|u| u.is_object())
            .map_or(Value::Null, usage_to_responses),
    ))
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum TextKind {
    Text,
    Refusal,
}
