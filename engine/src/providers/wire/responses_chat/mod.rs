//! OpenAI's Responses API over a chat-completions provider: a Responses
//! request becomes a chat request ([`request_to_chat`]), a chat answer a
//! Responses answer ([`answer_to_responses`]), and a chat stream the
//! Responses API's event sequence ([`ChatToResponses`]), so a client of
//! the Responses API can be served — and fall back — by any provider
//! (Anthropic's through the chat mapping of [`super::map`]).
//!
//! What has no chat equivalent is refused rather than dropped:
//! `previous_response_id` and `conversation` (server-side state), built-in
//! tools (web search, file search, …) and input items other than messages,
//! function calls and their outputs.

use std::io::Write as _;

use serde_json::{json, Map, Value};

use super::WireError;

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
    for stateful in ["previous_response_id", "conversation"] {
        if o.get(stateful).is_some_and(|x| !x.is_null()) {
            return Err(WireError::new(format!(
                "`{stateful}` needs a provider that keeps responses (one serving the Responses API)"
            )));
        }
    }
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
    if let Some(format) = v.pointer("/text/format") {
        let rf = match format.get("type").and_then(Value::as_str) {
            Some("json_schema") => {
                let mut schema = format.clone();
                if let Some(s) = schema.as_object_mut() {
                    s.remove("type");
                }
                Some(json!({"type": "json_schema", "json_schema": schema}))
            }
            Some("json_object") => Some(json!({"type": "json_object"})),
            _ => None,
        };
        if let Some(rf) = rf {
            chat.insert("response_format".into(), rf);
        }
    }
    if let Some(Value::Array(tools)) = o.get("tools") {
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
        if !out.is_empty() {
            chat.insert("tools".into(), Value::Array(out));
        }
    }
    if let Some(choice) = o.get("tool_choice") {
        let c = match choice {
            Value::Object(c) if c.get("type").and_then(Value::as_str) == Some("function") => {
                json!({"type": "function", "function": {"name": c.get("name").cloned().unwrap_or(Value::Null)}})
            }
            other => other.clone(),
        };
        chat.insert("tool_choice".into(), c);
    }
    Ok(Value::Object(chat))
}

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
        "total_tokens": u.get("total_tokens").and_then(Value::as_u64).unwrap_or(input + output),
    })
}

/// Status and `incomplete_details` for a chat `finish_reason`.
fn status_of(finish: Option<&str>) -> (&'static str, Value) {
    match finish {
        Some("length") => ("incomplete", json!({"reason": "max_output_tokens"})),
        Some("content_filter") => ("incomplete", json!({"reason": "content_filter"})),
        _ => ("completed", Value::Null),
    }
}

/// The response object around `output`.
fn envelope(
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

fn message_item(id: &str, part: Value, status: &str) -> Value {
    json!({"type": "message", "id": id, "status": status, "role": "assistant", "content": [part]})
}

fn text_part(kind: TextKind, text: &str) -> Value {
    match kind {
        TextKind::Text => json!({"type": "output_text", "text": text, "annotations": []}),
        TextKind::Refusal => json!({"type": "refusal", "refusal": text}),
    }
}

fn call_item(id: &str, call_id: &str, name: &str, arguments: &str, status: &str) -> Value {
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
enum TextKind {
    Text,
    Refusal,
}

/// The output item being streamed.
enum Open {
    Text {
        kind: TextKind,
        index: u64,
        id: String,
        text: String,
    },
    Call {
        /// The chat tool call's `index`.
        chat_index: u64,
        index: u64,
        id: String,
        call_id: String,
        name: String,
        arguments: String,
    },
}

/// What one chat chunk told the converter, for the relay.
#[derive(Default, Debug, PartialEq)]
pub struct ChunkSeen {
    pub first_content: bool,
}

/// Rebuilds a chat stream (`chat.completion.chunk`s ending in
/// `data: [DONE]`, with the usage chunk the gateway forces) as the
/// Responses API's numbered events, ending in `response.completed` (or
/// `response.incomplete`) with the whole output and the usage.
#[derive(Default)]
pub struct ChatToResponses {
    seq: u64,
    id: String,
    model: String,
    created: u64,
    started: bool,
    open: Option<Open>,
    done: Vec<Value>,
    next_index: u64,
    finish: Option<String>,
    usage: Option<Value>,
}

impl ChatToResponses {
    pub fn new(created: u64) -> ChatToResponses {
        ChatToResponses {
            created,
            ..Default::default()
        }
    }

    fn emit(&mut self, out: &mut Vec<u8>, kind: &str, mut data: Value) {
        data["type"] = Value::from(kind);
        data["sequence_number"] = Value::from(self.seq);
        self.seq += 1;
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(kind.as_bytes());
        out.extend_from_slice(b"\ndata: ");
        let _ = serde_json::to_writer(&mut *out, &data);
        out.extend_from_slice(b"\n\n");
    }

    fn response(&self, status: (&str, Value), output: Vec<Value>, usage: Value) -> Value {
        envelope(&self.id, self.created, &self.model, status, output, usage)
    }

    /// One parsed chat chunk.
    pub fn chunk(&mut self, v: &Value, out: &mut Vec<u8>) -> ChunkSeen {
        let mut seen = ChunkSeen::default();
        if let Some(err) = v.get("error") {
            let msg = err
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("upstream error");
            self.error(msg, out);
            return seen;
        }
        if !self.started {
            self.started = true;
            self.id = format!("resp_{}", v.get("id").and_then(Value::as_str).unwrap_or(""));
            self.model = v
                .get("model")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            let r = self.response(("in_progress", Value::Null), Vec::new(), Value::Null);
            self.emit(out, "response.created", json!({"response": r}));
            self.emit(out, "response.in_progress", json!({"response": r}));
        }
        if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
            self.usage = Some(usage_to_responses(u));
        }
        let Some(choice) = v.pointer("/choices/0") else {
            return seen;
        };
        let delta = &choice["delta"];
        for (kind, key) in [(TextKind::Text, "content"), (TextKind::Refusal, "refusal")] {
            if let Some(t) = delta
                .get(key)
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty())
            {
                self.text_delta(kind, t, out);
                seen.first_content = true;
            }
        }
        for tc in delta
            .get("tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            self.call_delta(tc, out);
            seen.first_content = true;
        }
        if let Some(f) = choice.get("finish_reason").and_then(Value::as_str) {
            self.finish = Some(f.to_owned());
        }
        seen
    }

    /// A piece of output text, when the stream is past its first chunk
    /// (`false`: not taken, go by [`ChatToResponses::chunk`]). The common
    /// event of a stream, written without building a tree.
    pub fn text_piece(&mut self, piece: &str, out: &mut Vec<u8>) -> bool {
        if !self.started {
            return false;
        }
        self.text_delta(TextKind::Text, piece, out);
        true
    }

    fn text_delta(&mut self, kind: TextKind, piece: &str, out: &mut Vec<u8>) {
        let same = matches!(&self.open, Some(Open::Text { kind: k, .. }) if *k == kind);
        if !same {
            self.close(out);
            let index = self.next_index;
            self.next_index += 1;
            let id = format!("msg_{}_{index}", self.id.trim_start_matches("resp_"));
            let item = json!({"type": "message", "id": id, "status": "in_progress", "role": "assistant", "content": []});
            self.emit(
                out,
                "response.output_item.added",
                json!({"output_index": index, "item": item}),
            );
            self.emit(
                out,
                "response.content_part.added",
                json!({"item_id": id, "output_index": index, "content_index": 0, "part": text_part(kind, "")}),
            );
            self.open = Some(Open::Text {
                kind,
                index,
                id,
                text: String::new(),
            });
        }
        let Some(Open::Text {
            index, id, text, ..
        }) = &mut self.open
        else {
            return;
        };
        text.push_str(piece);
        let name = match kind {
            TextKind::Text => "response.output_text.delta",
            TextKind::Refusal => "response.refusal.delta",
        };
        // The common event of a stream: written straight out, no tree.
        let _ = write!(
            out,
            "event: {name}\ndata: {{\"type\":\"{name}\",\"sequence_number\":{},\"item_id\":",
            self.seq
        );
        self.seq += 1;
        let _ = serde_json::to_writer(&mut *out, id.as_str());
        let _ = write!(
            out,
            ",\"output_index\":{index},\"content_index\":0,\"delta\":"
        );
        let _ = serde_json::to_writer(&mut *out, piece);
        out.extend_from_slice(b"}\n\n");
    }

    fn call_delta(&mut self, tc: &Value, out: &mut Vec<u8>) {
        let chat_index = tc.get("index").and_then(Value::as_u64).unwrap_or(0);
        let same = matches!(&self.open, Some(Open::Call { chat_index: c, .. }) if *c == chat_index);
        if !same {
            self.close(out);
            let index = self.next_index;
            self.next_index += 1;
            let call_id = tc
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            let name = tc
                .pointer("/function/name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            let id = format!("fc_{call_id}");
            self.emit(
                out,
                "response.output_item.added",
                json!({"output_index": index, "item": call_item(&id, &call_id, &name, "", "in_progress")}),
            );
            self.open = Some(Open::Call {
                chat_index,
                index,
                id,
                call_id,
                name,
                arguments: String::new(),
            });
        }
        let piece = tc
            .pointer("/function/arguments")
            .and_then(Value::as_str)
            .unwrap_or("");
        if piece.is_empty() {
            return;
        }
        let Some(Open::Call {
            index,
            id,
            arguments,
            ..
        }) = &mut self.open
        else {
            return;
        };
        arguments.push_str(piece);
        let data = json!({"item_id": id, "output_index": index, "delta": piece});
        self.emit(out, "response.function_call_arguments.delta", data);
    }

    /// Closes the open output item, if any.
    fn close(&mut self, out: &mut Vec<u8>) {
        match self.open.take() {
            None => {}
            Some(Open::Text {
                kind,
                index,
                id,
                text,
            }) => {
                let (done, text_key) = match kind {
                    TextKind::Text => ("response.output_text.done", "text"),
                    TextKind::Refusal => ("response.refusal.done", "refusal"),
                };
                let mut data = json!({"item_id": id, "output_index": index, "content_index": 0});
                data[text_key] = Value::from(text.as_str());
                self.emit(out, done, data);
                let part = text_part(kind, &text);
                self.emit(
                    out,
                    "response.content_part.done",
                    json!({"item_id": id, "output_index": index, "content_index": 0, "part": part}),
                );
                let item = message_item(&id, part, "completed");
                self.emit(
                    out,
                    "response.output_item.done",
                    json!({"output_index": index, "item": item}),
                );
                self.done.push(item);
            }
            Some(Open::Call {
                index,
                id,
                call_id,
                name,
                arguments,
                ..
            }) => {
                self.emit(
                    out,
                    "response.function_call_arguments.done",
                    json!({"item_id": id, "output_index": index, "name": name, "arguments": arguments}),
                );
                let item = call_item(&id, &call_id, &name, &arguments, "completed");
                self.emit(
                    out,
                    "response.output_item.done",
                    json!({"output_index": index, "item": item}),
                );
                self.done.push(item);
            }
        }
    }

    /// Whether the chat stream gave its finish reason.
    pub fn finished(&self) -> bool {
        self.finish.is_some()
    }

    /// The chat stream's `[DONE]`: closes what is open and sends the
    /// terminal event.
    pub fn end(&mut self, out: &mut Vec<u8>) {
        self.close(out);
        let status = status_of(self.finish.as_deref());
        let name = if status.0 == "completed" {
            "response.completed"
        } else {
            "response.incomplete"
        };
        let output = std::mem::take(&mut self.done);
        let usage = self.usage.take().unwrap_or(Value::Null);
        let r = self.response(status, output, usage);
        self.emit(out, name, json!({"response": r}));
    }

    /// The API's `error` event.
    pub fn error(&mut self, message: &str, out: &mut Vec<u8>) {
        let data = super::responses::error_event(message);
        self.emit(out, "error", data);
    }
}

#[cfg(test)]
mod tests;
