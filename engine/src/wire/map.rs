//! Conversion between the OpenAI chat format and Anthropic Messages:
//! requests both ways (system prompts, text and image parts, tools and
//! tool results, sampling and stop settings), answers both ways (content,
//! tool calls, stop reasons, usage) and error bodies.

use serde_json::{json, Map, Value};

use super::anthropic::{finish_reason, stop_reason};
use super::{Wire, WireError};

/// Anthropic requires `max_tokens`; used when the client gave none.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// OpenAI content parts → Anthropic content blocks.
fn to_anthropic_blocks(content: &Value) -> Value {
    match content {
        Value::String(s) => Value::String(s.clone()),
        Value::Array(parts) => Value::Array(
            parts
                .iter()
                .filter_map(|p| match p.get("type").and_then(Value::as_str) {
                    Some("text") => Some(json!({"type": "text", "text": p.get("text").cloned().unwrap_or(Value::from(""))})),
                    Some("image_url") => {
                        let url = p.pointer("/image_url/url").and_then(Value::as_str).unwrap_or("");
                        Some(match url.strip_prefix("data:").and_then(|r| r.split_once(";base64,")) {
                            Some((media, data)) => json!({"type": "image", "source": {"type": "base64", "media_type": media, "data": data}}),
                            None => json!({"type": "image", "source": {"type": "url", "url": url}}),
                        })
                    }
                    _ => None,
                })
                .collect(),
        ),
        _ => Value::String(String::new()),
    }
}

/// The request object and its `messages`, which both chat formats require.
fn object_and_messages(v: &Value) -> Result<(&Map<String, Value>, &Vec<Value>), WireError> {
    let o = v
        .as_object()
        .ok_or_else(|| WireError::new("the request body must be a JSON object"))?;
    let msgs = o
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| WireError::new("`messages` must be an array"))?;
    Ok((o, msgs))
}

pub fn openai_to_anthropic_request(v: &Value) -> Result<Value, WireError> {
    let (o, msgs) = object_and_messages(v)?;
    let (system, out_msgs) = anthropic_messages(msgs);
    let mut out = Map::new();
    if let Some(m) = o.get("model") {
        out.insert("model".into(), m.clone());
    }
    out.insert("messages".into(), Value::Array(out_msgs));
    if !system.is_empty() {
        out.insert("system".into(), Value::String(system.join("\n\n")));
    }
    let max = o
        .get("max_completion_tokens")
        .or_else(|| o.get("max_tokens"))
        .and_then(Value::as_u64)
        .unwrap_or(DEFAULT_MAX_TOKENS);
    out.insert("max_tokens".into(), Value::from(max));
    for k in ["temperature", "top_p", "stream"] {
        if let Some(x) = o.get(k) {
            out.insert(k.into(), x.clone());
        }
    }
    match o.get("stop") {
        Some(Value::String(s)) => {
            out.insert("stop_sequences".into(), json!([s]));
        }
        Some(Value::Array(a)) => {
            out.insert("stop_sequences".into(), Value::Array(a.clone()));
        }
        _ => {}
    }
    if let Some(tools) = o.get("tools").and_then(Value::as_array) {
        out.insert("tools".into(), anthropic_tools(tools));
    }
    if let Some(choice) = o.get("tool_choice").and_then(anthropic_tool_choice) {
        out.insert("tool_choice".into(), choice);
    }
    if let Some(user) = o.get("user") {
        out.insert("metadata".into(), json!({"user_id": user}));
    }
    Ok(Value::Object(out))
}

/// OpenAI messages → Anthropic's: the system (and developer) texts apart,
/// every other turn as an Anthropic message.
fn anthropic_messages(msgs: &[Value]) -> (Vec<String>, Vec<Value>) {
    let mut system: Vec<String> = Vec::new();
    let mut out_msgs: Vec<Value> = Vec::new();
    for m in msgs {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("user");
        let content = m.get("content").unwrap_or(&Value::Null);
        match role {
            "system" | "developer" => system.push(text_of(content)),
            "assistant" => out_msgs.push(anthropic_assistant(m, content)),
            "tool" | "function" => push_tool_result(&mut out_msgs, m, content),
            _ => out_msgs.push(json!({"role": "user", "content": to_anthropic_blocks(content)})),
        }
    }
    (system, out_msgs)
}

/// An OpenAI assistant message as Anthropic blocks: its text, then a
/// `tool_use` block per tool call.
fn anthropic_assistant(m: &Value, content: &Value) -> Value {
    let mut blocks: Vec<Value> = Vec::new();
    let t = text_of(content);
    if !t.is_empty() {
        blocks.push(json!({"type": "text", "text": t}));
    }
    for tc in m
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        blocks.push(tool_use_block(tc));
    }
    json!({"role": "assistant", "content": blocks})
}

/// An OpenAI tool call as an Anthropic `tool_use` block (arguments that
/// are not JSON become `{}`).
fn tool_use_block(tc: &Value) -> Value {
    let args = tc
        .pointer("/function/arguments")
        .and_then(Value::as_str)
        .unwrap_or("{}");
    json!({
        "type": "tool_use",
        "id": tc.get("id").cloned().unwrap_or(Value::from("")),
        "name": tc.pointer("/function/name").cloned().unwrap_or(Value::from("")),
        "input": serde_json::from_str::<Value>(args).unwrap_or_else(|_| json!({})),
    })
}

/// An OpenAI tool (or function) message as a `tool_result` block in a
/// user turn; consecutive tool results share one user turn.
fn push_tool_result(out_msgs: &mut Vec<Value>, m: &Value, content: &Value) {
    let block = json!({
        "type": "tool_result",
        "tool_use_id": m.get("tool_call_id").cloned().unwrap_or(Value::from("")),
        "content": text_of(content),
    });
    match out_msgs.last_mut() {
        Some(last)
            if last["role"] == "user"
                && last["content"]
                    .as_array()
                    .is_some_and(|b| b.iter().all(|x| x["type"] == "tool_result")) =>
        {
            if let Some(b) = last["content"].as_array_mut() {
                b.push(block);
            }
        }
        _ => out_msgs.push(json!({"role": "user", "content": [block]})),
    }
}

/// OpenAI `tools` → Anthropic's (functions only).
fn anthropic_tools(tools: &[Value]) -> Value {
    let mapped: Vec<Value> = tools
        .iter()
        .filter_map(|t| t.get("function"))
        .map(|f| {
            json!({
                "name": f.get("name").cloned().unwrap_or(Value::from("")),
                "description": f.get("description").cloned().unwrap_or(Value::from("")),
                "input_schema": f.get("parameters").cloned().unwrap_or_else(|| json!({"type": "object"})),
            })
        })
        .collect();
    Value::Array(mapped)
}

/// OpenAI `tool_choice` → Anthropic's; `None` for one it has no match for.
fn anthropic_tool_choice(tc: &Value) -> Option<Value> {
    match tc {
        Value::String(s) if s == "auto" => Some(json!({"type": "auto"})),
        Value::String(s) if s == "required" => Some(json!({"type": "any"})),
        Value::String(s) if s == "none" => Some(json!({"type": "none"})),
        Value::Object(tc) => tc
            .get("function")
            .and_then(|f| f.get("name"))
            .map(|name| json!({"type": "tool", "name": name})),
        _ => None,
    }
}

/// Anthropic content blocks → OpenAI messages (a user turn may hold tool
/// results, which become `tool` messages).
fn from_anthropic_user(content: &Value, out: &mut Vec<Value>) {
    let Value::Array(blocks) = content else {
        out.push(json!({"role": "user", "content": text_of(content)}));
        return;
    };
    let mut parts: Vec<Value> = Vec::new();
    for b in blocks {
        match b.get("type").and_then(Value::as_str) {
            Some("text") => parts.push(
                json!({"type": "text", "text": b.get("text").cloned().unwrap_or(Value::from(""))}),
            ),
            Some("image") => {
                let s = &b["source"];
                let url = match s.get("type").and_then(Value::as_str) {
                    Some("base64") => format!(
                        "data:{};base64,{}",
                        s.get("media_type")
                            .and_then(Value::as_str)
                            .unwrap_or("image/png"),
                        s.get("data").and_then(Value::as_str).unwrap_or("")
                    ),
                    _ => s
                        .get("url")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned(),
                };
                parts.push(json!({"type": "image_url", "image_url": {"url": url}}));
            }
            Some("tool_result") => out.push(json!({
                "role": "tool",
                "tool_call_id": b.get("tool_use_id").cloned().unwrap_or(Value::from("")),
                "content": text_of(b.get("content").unwrap_or(&Value::Null)),
            })),
            _ => {}
        }
    }
    if !parts.is_empty() {
        out.push(json!({"role": "user", "content": parts}));
    }
}

pub fn anthropic_to_openai_request(v: &Value) -> Result<Value, WireError> {
    let (o, msgs) = object_and_messages(v)?;
    let mut out_msgs: Vec<Value> = Vec::new();
    if let Some(system) = o.get("system") {
        out_msgs.push(json!({"role": "system", "content": text_of(system)}));
    }
    for m in msgs {
        let content = m.get("content").unwrap_or(&Value::Null);
        if m.get("role").and_then(Value::as_str) == Some("assistant") {
            out_msgs.push(openai_assistant(content));
        } else {
            from_anthropic_user(content, &mut out_msgs);
        }
    }
    let mut out = Map::new();
    if let Some(m) = o.get("model") {
        out.insert("model".into(), m.clone());
    }
    out.insert("messages".into(), Value::Array(out_msgs));
    for k in ["max_tokens", "temperature", "top_p", "stream"] {
        if let Some(x) = o.get(k) {
            out.insert(k.into(), x.clone());
        }
    }
    if let Some(s) = o.get("stop_sequences") {
        out.insert("stop".into(), s.clone());
    }
    if let Some(tools) = o.get("tools").and_then(Value::as_array) {
        let mapped: Vec<Value> = tools
            .iter()
            .map(|t| json!({"type": "function", "function": {"name": t.get("name").cloned().unwrap_or(Value::from("")), "description": t.get("description").cloned().unwrap_or(Value::from("")), "parameters": t.get("input_schema").cloned().unwrap_or_else(|| json!({"type": "object"}))}}))
            .collect();
        out.insert("tools".into(), Value::Array(mapped));
    }
    if let Some(choice) = o.get("tool_choice").and_then(openai_tool_choice) {
        out.insert("tool_choice".into(), choice);
    }
    if let Some(user) = v.pointer("/metadata/user_id") {
        out.insert("user".into(), user.clone());
    }
    Ok(Value::Object(out))
}

/// An Anthropic assistant turn as an OpenAI message: its text, its
/// `tool_use` blocks as tool calls (content `null` when only calls).
fn openai_assistant(content: &Value) -> Value {
    let (text, calls) = match content {
        Value::String(s) => (s.clone(), Vec::new()),
        Value::Array(blocks) => text_and_tool_calls(blocks),
        _ => (String::new(), Vec::new()),
    };
    let mut msg = json!({"role": "assistant", "content": assistant_content(text, &calls)});
    if !calls.is_empty() {
        msg["tool_calls"] = Value::Array(calls);
    }
    msg
}

/// Anthropic blocks → the OpenAI text (the text blocks joined) and tool
/// calls (the `tool_use` blocks).
fn text_and_tool_calls(blocks: &[Value]) -> (String, Vec<Value>) {
    let mut text = String::new();
    let mut calls: Vec<Value> = Vec::new();
    for b in blocks {
        match b.get("type").and_then(Value::as_str) {
            Some("text") => text.push_str(b.get("text").and_then(Value::as_str).unwrap_or("")),
            Some("tool_use") => calls.push(json!({
                "id": b.get("id").cloned().unwrap_or(Value::from("")),
                "type": "function",
                "function": {"name": b.get("name").cloned().unwrap_or(Value::from("")), "arguments": b.get("input").map(Value::to_string).unwrap_or_else(|| "{}".into())},
            })),
            _ => {}
        }
    }
    (text, calls)
}

/// An OpenAI assistant message's `content`: `null` when it only calls
/// tools, else its text.
fn assistant_content(text: String, calls: &[Value]) -> Value {
    if text.is_empty() && !calls.is_empty() {
        Value::Null
    } else {
        Value::String(text)
    }
}

/// Anthropic `tool_choice` → OpenAI's; `None` for an unknown type.
fn openai_tool_choice(tc: &Value) -> Option<Value> {
    match tc.get("type").and_then(Value::as_str) {
        Some("auto") => Some(json!("auto")),
        Some("any") => Some(json!("required")),
        Some("none") => Some(json!("none")),
        Some("tool") => Some(
            json!({"type": "function", "function": {"name": tc.get("name").cloned().unwrap_or(Value::from(""))}}),
        ),
        _ => None,
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub fn anthropic_to_openai_response(v: &Value) -> Result<Value, WireError> {
    let blocks = v
        .get("content")
        .and_then(Value::as_array)
        .ok_or_else(|| WireError::new("the provider's answer has no `content`"))?;
    let (text, calls) = text_and_tool_calls(blocks);
    let mut message =
        json!({"role": "assistant", "content": assistant_content(text, &calls), "refusal": null});
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    let finish = finish_reason(
        v.get("stop_reason")
            .and_then(Value::as_str)
            .unwrap_or("end_turn"),
    );
    let usage = super::anthropic::usage(v).unwrap_or_default();
    Ok(json!({
        "id": v.get("id").cloned().unwrap_or(Value::from("")),
        "object": "chat.completion",
        "created": unix_now(),
        "model": v.get("model").cloned().unwrap_or(Value::from("")),
        "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish}],
        "usage": super::openai::usage_json(&usage),
    }))
}

pub fn openai_to_anthropic_response(v: &Value) -> Result<Value, WireError> {
    let choice = v
        .pointer("/choices/0")
        .ok_or_else(|| WireError::new("the provider's answer has no choices"))?;
    let msg = &choice["message"];
    let mut content: Vec<Value> = Vec::new();
    if let Some(t) = msg
        .get("content")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
    {
        content.push(json!({"type": "text", "text": t}));
    }
    for tc in msg
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        content.push(tool_use_block(tc));
    }
    let usage = super::openai::usage(v).unwrap_or_default();
    Ok(json!({
        "id": v.get("id").cloned().unwrap_or(Value::from("")),
        "type": "message",
        "role": "assistant",
        "model": v.get("model").cloned().unwrap_or(Value::from("")),
        "content": content,
        "stop_reason": stop_reason(choice.get("finish_reason").and_then(Value::as_str).unwrap_or("stop")),
        "stop_sequence": null,
        "usage": super::anthropic::AnthropicUsage::from_usage(&usage).to_json(),
    }))
}

/// An error body in `wire`'s shape.
pub fn error_body(wire: Wire, status: u16, message: &str) -> Vec<u8> {
    let v = match wire {
        Wire::OpenAi | Wire::Responses => {
            let t = match status {
                429 => "rate_limit_exceeded",
                s if s >= 500 => "server_error",
                _ => "invalid_request_error",
            };
            json!({"error": {"message": message, "type": t, "param": null, "code": null}})
        }
        Wire::Anthropic => {
            let t = match status {
                401 => "authentication_error",
                403 => "permission_error",
                404 => "not_found_error",
                429 => "rate_limit_error",
                529 => "overloaded_error",
                s if s >= 500 => "api_error",
                _ => "invalid_request_error",
            };
            json!({"type": "error", "error": {"type": t, "message": message}})
        }
    };
    v.to_string().into_bytes()
}
