//! Responses API requests as chat requests.

use serde_json::{json, Map, Value};

use crate::wire::WireError;

/// Chat content parts for a Responses message's `content`.
fn chat_content(role: &str, content: &Value) -> Result<Value, WireError> {
    let parts = match content {
        Value::String(s) => return Ok(Value::String(s.clone())),
        Value::Array(parts) => parts,
        Value::Null => return Ok(Value::String(String::new())),
        _ => return Err(WireError::new("`content` must be a string or an array")),
    };
    if role == "assistant" || role == "system" || role == "developer" {
        // Chat takes text only here: the parts' text, joined.
        let text: Vec<&str> = parts
            .iter()
            .filter_map(|p| p.get("text").or_else(|| p.get("refusal")))
            .filter_map(Value::as_str)
            .collect();
        return Ok(Value::String(text.concat()));
    }
    let mut out = Vec::with_capacity(parts.len());
    for p in parts {
        let kind = p.get("type").and_then(Value::as_str).unwrap_or("");
        out.push(match kind {
            "input_text" | "output_text" | "text" => {
                json!({"type": "text", "text": p.get("text").cloned().unwrap_or(Value::from(""))})
            }
            "input_image" => {
                let url = p.get("image_url").and_then(Value::as_str).ok_or_else(|| {
                    WireError::new(
                        "`input_image` needs an `image_url` (file ids cannot be converted)",
                    )
                })?;
                let mut image = json!({"url": url});
                if let Some(d) = p.get("detail") {
                    image["detail"] = d.clone();
                }
                json!({"type": "image_url", "image_url": image})
            }
            other => {
                return Err(WireError::new(format!(
                    "content part `{other}` cannot be sent to a chat-completions provider"
                )))
            }
        });
    }
    Ok(Value::Array(out))
}

/// `input` items → chat messages (consecutive function calls become one
/// assistant message with several tool calls).
fn chat_messages(input: &Value, out: &mut Vec<Value>) -> Result<(), WireError> {
    let items = match input {
        Value::String(s) => {
            out.push(json!({"role": "user", "content": s}));
            return Ok(());
        }
        Value::Array(items) => items,
        _ => return Err(WireError::new("`input` must be a string or an array")),
    };
    for item in items {
        let kind = item
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("message");
        match kind {
            "message" => {
                let role = item.get("role").and_then(Value::as_str).unwrap_or("user");
                let content = chat_content(role, item.get("content").unwrap_or(&Value::Null))?;
                out.push(json!({"role": role, "content": content}));
            }
            "function_call" => {
                let call = json!({
                    "id": item.get("call_id").cloned().unwrap_or(Value::from("")),
                    "type": "function",
                    "function": {
                        "name": item.get("name").cloned().unwrap_or(Value::from("")),
                        "arguments": item.get("arguments").cloned().unwrap_or(Value::from("{}")),
                    },
                });
                let joins = out.last().is_some_and(|m| {
                    m["role"] == "assistant" && m.get("tool_calls").is_some_and(Value::is_array)
                });
                if joins {
                    if let Some(Value::Array(calls)) =
                        out.last_mut().and_then(|m| m.get_mut("tool_calls"))
                    {
                        calls.push(call);
                    }
                } else {
                    out.push(json!({"role": "assistant", "content": null, "tool_calls": [call]}));
                }
            }
            "function_call_output" => {
                let output = match item.get("output") {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Array(parts)) => parts
                        .iter()
                        .filter_map(|p| p.get("text").and_then(Value::as_str))
                        .collect(),
                    _ => String::new(),
                };
                out.push(json!({"role": "tool", "tool_call_id": item.get("call_id").cloned().unwrap_or(Value::from("")), "content": output}));
            }
            // The model's own reasoning from an earlier turn: chat has no
            // place for it.
            "reasoning" => {}
            other => {
                return Err(WireError::new(format!(
                    "input item `{other}` cannot be sent to a chat-completions provider"
                )))
            }
        }
    }
    Ok(())
}

/// A Responses API request as an OpenAI chat request.
pub fn request_to_chat(v: &Value) -> Result<Value, WireError> {
    let o = v
        .as_object()
        .ok_or_else(|| WireError::new("the request body must be a JSON object"))?;
    refuse_stateful(o)?;
    let mut messages = Vec::new();
    if let Some(i) = o.get("instructions").and_then(Value::as_str) {
        messages.push(json!({"role": "system", "content": i}));
    }
    chat_messages(o.get("input").unwrap_or(&Value::Null), &mut messages)?;
    let mut chat = Map::new();
    if let Some(m) = o.get("model") {
        chat.insert("model".into(), m.clone());
    }
    chat.insert("messages".into(), Value::Array(messages));
    for same in [
        "stream",
        "temperature",
        "top_p",
        "user",
        "parallel_tool_calls",
        "top_logprobs",
        "service_tier",
    ] {
        if let Some(x) = o.get(same).filter(|x| !x.is_null()) {
            chat.insert(same.into(), x.clone());
        }
    }
    if let Some(n) = o.get("max_output_tokens").filter(|x| !x.is_null()) {
        chat.insert("max_tokens".into(), n.clone());
    }
    if let Some(effort) = v.pointer("/reasoning/effort").filter(|x| !x.is_null()) {
        chat.insert("reasoning_effort".into(), effort.clone());
    }
    if let Some(rf) = v.pointer("/text/format").and_then(response_format) {
        chat.insert("response_format".into(), rf);
    }
    if let Some(Value::Array(tools)) = o.get("tools") {
        let out = chat_tools(tools)?;
        if !out.is_empty() {
            chat.insert("tools".into(), Value::Array(out));
        }
    }
    if let Some(choice) = o.get("tool_choice") {
        chat.insert("tool_choice".into(), chat_tool_choice(choice));
    }
    Ok(Value::Object(chat))
}

/// Refuses a request that continues a stored response or conversation:
/// a chat provider keeps neither.
fn refuse_stateful(o: &Map<String, Value>) -> Result<(), WireError> {
    for stateful in ["previous_response_id", "conversation"] {
        if o.get(stateful).is_some_and(|x| !x.is_null()) {
            return Err(WireError::new(format!(
                "`{stateful}` needs a provider that keeps responses (one serving the Responses API)"
            )));
        }
    }
    Ok(())
}

/// `text.format` as chat's `response_format` (JSON schema or JSON
/// object); `None` for plain text and unknown types.
fn response_format(format: &Value) -> Option<Value> {
    match format.get("type").and_then(Value::as_str) {
        Some("json_schema") => {
            let mut schema = format.clone();
            if let Some(s) = schema.as_object_mut() {
                s.remove("type");
            }
            Some(json!({"type": "json_schema", "json_schema": schema}))
        }
        Some("json_object") => Some(json!({"type": "json_object"})),
        _ => None,
    }
}

/// Function tools as chat tools; a built-in tool (web search, file
/// search, …) cannot be sent to a chat provider.
fn chat_tools(tools: &[Value]) -> Result<Vec<Value>, WireError> {
    let mut out = Vec::with_capacity(tools.len());
    for t in tools {
        match t.get("type").and_then(Value::as_str) {
            Some("function") => {
                let mut f = Map::new();
                for k in ["name", "description", "parameters", "strict"] {
                    if let Some(x) = t.get(k).filter(|x| !x.is_null()) {
                        f.insert(k.into(), x.clone());
                    }
                }
                out.push(json!({"type": "function", "function": f}));
            }
            other => {
                return Err(WireError::new(format!(
                    "tool `{}` is built into the Responses API and cannot be sent to a chat-completions provider",
                    other.unwrap_or("?")
                )))
            }
        }
    }
    Ok(out)
}

/// `tool_choice`: a named function in chat's nesting, anything else as is.
fn chat_tool_choice(choice: &Value) -> Value {
    match choice {
        Value::Object(c) if c.get("type").and_then(Value::as_str) == Some("function") => {
            json!({"type": "function", "function": {"name": c.get("name").cloned().unwrap_or(Value::Null)}})
        }
        other => other.clone(),
    }
}
