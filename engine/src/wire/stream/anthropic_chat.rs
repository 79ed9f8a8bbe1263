//! Chat ↔ Anthropic Messages, event by event: Anthropic events become
//! `chat.completion.chunk`s ending in `data: [DONE]`, chat chunks the exact
//! Anthropic event sequence the official SDK expects (text pieces for the
//! open block written straight out).

use std::io::Write as _;

use serde_json::{json, Value};

use super::{data, event, plain_text_piece, StreamObservations, StreamTransform};
use crate::sse::SseEvent;
use crate::wire::anthropic::{finish_reason, stop_reason, AnthropicUsage};
use crate::wire::openai;

impl StreamTransform {
    fn chunk(&self, out: &mut Vec<u8>, delta: Value, finish: Option<&str>) {
        let v = json!({
            "id": self.state.id, "object": "chat.completion.chunk", "created": self.state.created, "model": self.state.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        });
        data(out, &v);
    }

    pub(super) fn anthropic_to_openai(
        &mut self,
        ev: SseEvent<'_>,
        out: &mut Vec<u8>,
        obs: &mut StreamObservations,
    ) {
        let name = ev.event.unwrap_or(b"");
        let Ok(v) = serde_json::from_slice::<Value>(&ev.data) else {
            return;
        };
        let name = if name.is_empty() {
            v.get("type")
                .and_then(Value::as_str)
                .unwrap_or("")
                .as_bytes()
        } else {
            name
        };
        self.observe_anthropic(name, &v, obs);
        match name {
            b"message_start" => self.chunk(out, json!({"role": "assistant", "content": ""}), None),
            b"content_block_start" => self.tool_use_start(&v, out),
            b"content_block_delta" => self.block_delta(&v, out),
            b"message_delta" => {
                let finish = finish_reason(self.state.stop.as_deref().unwrap_or("end_turn"));
                self.chunk(out, json!({}), Some(finish));
            }
            b"message_stop" => {
                obs.done = true;
                self.usage_chunk_and_done(out);
            }
            b"error" => {
                let msg = v
                    .pointer("/error/message")
                    .and_then(Value::as_str)
                    .unwrap_or("upstream error");
                data(
                    out,
                    &json!({"error": {"message": msg, "type": v.pointer("/error/type"), "code": null}}),
                );
            }
            _ => {}
        }
    }

    /// A `content_block_start`: a `tool_use` block becomes the next tool
    /// call (its index remembered for the block's deltas); others say
    /// nothing yet.
    fn tool_use_start(&mut self, v: &Value, out: &mut Vec<u8>) {
        let b = &v["content_block"];
        if b.get("type").and_then(Value::as_str) == Some("tool_use") {
            let block = v.get("index").and_then(Value::as_u64).unwrap_or(0);
            let k = self.state.next_tool;
            self.state.next_tool += 1;
            self.state.tool_of_block.push((block, k));
            self.chunk(
                out,
                json!({"tool_calls": [{"index": k, "id": b.get("id"), "type": "function", "function": {"name": b.get("name"), "arguments": ""}}]}),
                None,
            );
        }
    }

    /// A `content_block_delta`: text as `content`, a tool's JSON as its
    /// call's `arguments`.
    fn block_delta(&mut self, v: &Value, out: &mut Vec<u8>) {
        let d = &v["delta"];
        match d.get("type").and_then(Value::as_str) {
            Some("text_delta") => self.chunk(out, json!({"content": d.get("text")}), None),
            Some("input_json_delta") => {
                let block = v.get("index").and_then(Value::as_u64).unwrap_or(0);
                let k = self
                    .state
                    .tool_of_block
                    .iter()
                    .find(|(b, _)| *b == block)
                    .map_or(0, |(_, k)| *k);
                self.chunk(out, json!({"tool_calls": [{"index": k, "function": {"arguments": d.get("partial_json")}}]}), None);
            }
            _ => {}
        }
    }

    /// The end of a chat stream made from Anthropic events: the usage
    /// chunk (unless the client did not ask for it), then `[DONE]`.
    fn usage_chunk_and_done(&mut self, out: &mut Vec<u8>) {
        if !self.strip_usage_chunk {
            let u = self.state.usage.to_usage();
            let v = json!({
                "id": self.state.id, "object": "chat.completion.chunk", "created": self.state.created, "model": self.state.model,
                "choices": [], "usage": openai::usage_json(&u),
            });
            data(out, &v);
        }
        out.extend_from_slice(b"data: [DONE]\n\n");
    }

    /// The end of an Anthropic stream made from chat chunks.
    pub(super) fn end_anthropic(&mut self, out: &mut Vec<u8>, obs: &mut StreamObservations) {
        self.close_block(out);
        let stop = self.state.stop.clone().unwrap_or_else(|| "end_turn".into());
        event(
            out,
            "message_delta",
            &json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null}, "usage": self.state.usage.to_json()}),
        );
        event(out, "message_stop", &json!({"type": "message_stop"}));
        obs.done = true;
    }

    fn close_block(&mut self, out: &mut Vec<u8>) {
        if let Some((index, _)) = self.state.open_block.take() {
            event(
                out,
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": index}),
            );
        }
    }

    pub(super) fn openai_to_anthropic(
        &mut self,
        ev: SseEvent<'_>,
        out: &mut Vec<u8>,
        obs: &mut StreamObservations,
    ) {
        if &*ev.data == b"[DONE]" {
            self.end_anthropic(out, obs);
            return;
        }
        // A piece of text for the open text block (most chunks): read in
        // place and written straight out, without a tree either way.
        if let Some((index, true)) = self.state.open_block {
            if let Some(piece) = plain_text_piece(&ev.data) {
                text_block_delta(out, index, &piece);
                obs.first_token = true;
                return;
            }
        }
        let Ok(v) = serde_json::from_slice::<Value>(&ev.data) else {
            return;
        };
        if let Some(err) = v.get("error") {
            let msg = err
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("upstream error");
            event(
                out,
                "error",
                &json!({"type": "error", "error": {"type": "api_error", "message": msg}}),
            );
            return;
        }
        if !self.state.started {
            self.start_message(&v, out, obs);
        }
        if let Some(u) = openai::usage(&v) {
            self.state.usage = AnthropicUsage::from_usage(&u);
            obs.usage = Some(u);
        }
        let Some(choice) = v.pointer("/choices/0") else {
            return;
        };
        let delta = &choice["delta"];
        if let Some(text) = delta
            .get("content")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
        {
            self.text_delta(text, out, obs);
        }
        for tc in delta
            .get("tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            self.tool_call_delta(tc, out, obs);
        }
        if let Some(f) = choice.get("finish_reason").and_then(Value::as_str) {
            self.state.stop = Some(stop_reason(f).to_owned());
        }
    }

    /// `message_start`, from the first chat chunk's id and model.
    fn start_message(&mut self, v: &Value, out: &mut Vec<u8>, obs: &mut StreamObservations) {
        self.state.started = true;
        self.state.id = v.get("id").and_then(Value::as_str).unwrap_or("").to_owned();
        self.state.model = v
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        obs.model = Some(self.state.model.clone());
        event(
            out,
            "message_start",
            &json!({"type": "message_start", "message": {"id": self.state.id, "type": "message", "role": "assistant", "model": self.state.model, "content": [], "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 0, "output_tokens": 0}}}),
        );
    }

    /// Closes the open block and opens the next one (a text block when
    /// `text`); returns its index.
    fn open_block(&mut self, out: &mut Vec<u8>, text: bool) -> u64 {
        self.close_block(out);
        let index = self.state.next_block;
        self.state.next_block += 1;
        self.state.open_block = Some((index, text));
        index
    }

    /// A chunk's text: into the open text block, opening one first if
    /// the open block is not text.
    fn text_delta(&mut self, text: &str, out: &mut Vec<u8>, obs: &mut StreamObservations) {
        if !matches!(self.state.open_block, Some((_, true))) {
            let index = self.open_block(out, true);
            event(
                out,
                "content_block_start",
                &json!({"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}}),
            );
        }
        let index = self.state.open_block.map_or(0, |(i, _)| i);
        text_block_delta(out, index, text);
        obs.first_token = true;
    }

    /// One tool call of a chunk: a new call opens a `tool_use` block, and
    /// its arguments go to its block as `input_json_delta`.
    fn tool_call_delta(&mut self, tc: &Value, out: &mut Vec<u8>, obs: &mut StreamObservations) {
        let k = tc.get("index").and_then(Value::as_u64).unwrap_or(0);
        let known = self
            .state
            .block_of_tool
            .iter()
            .find(|(t, _)| *t == k)
            .map(|(_, b)| *b);
        let block = match known {
            Some(b) => b,
            None => {
                let index = self.open_block(out, false);
                self.state.block_of_tool.push((k, index));
                event(
                    out,
                    "content_block_start",
                    &json!({"type": "content_block_start", "index": index, "content_block": {"type": "tool_use", "id": tc.get("id"), "name": tc.pointer("/function/name"), "input": {}}}),
                );
                obs.first_token = true;
                index
            }
        };
        if let Some(args) = tc
            .pointer("/function/arguments")
            .and_then(Value::as_str)
            .filter(|a| !a.is_empty())
        {
            event(
                out,
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": block, "delta": {"type": "input_json_delta", "partial_json": args}}),
            );
        }
    }
}

/// Anthropic's `content_block_delta` with a piece of text: the common
/// event of a stream converted for an Anthropic client, written straight
/// out, no tree.
fn text_block_delta(out: &mut Vec<u8>, index: u64, text: &str) {
    let _ = write!(
        out,
        "event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":{index},\"delta\":{{\"type\":\"text_delta\",\"text\":"
    );
    let _ = serde_json::to_writer(&mut *out, text);
    out.extend_from_slice(b"}}\n\n");
}
