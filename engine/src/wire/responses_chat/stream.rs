//! Chat streams as the Responses API's numbered events.

use std::io::Write as _;

use serde_json::{json, Value};

use super::answer::{
    call_item, envelope, message_item, status_of, text_part, usage_to_responses, TextKind,
};

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
        let data = crate::wire::responses::error_event(message);
        self.emit(out, "error", data);
    }
}
