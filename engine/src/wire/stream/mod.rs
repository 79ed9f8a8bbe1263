//! Streaming answers, event by event: SSE from the instance in, SSE for the
//! client out, with what the gateway must observe on the way (the first
//! token, usage, the model, a clean end).
//!
//! Same-format streams pass through byte for byte; an OpenAI stream is
//! only parsed where it must be (until the first token, and chunks that
//! carry a `"usage"` object, however the provider spaces its JSON:
//! [`member`]), and the usage chunk the gateway forced on a client
//! that did not ask for it is dropped. Cross-format streams are rebuilt:
//! Anthropic events become `chat.completion.chunk`s ending in
//! `data: [DONE]`, and OpenAI chunks become the exact Anthropic event
//! sequence the official SDK expects. Responses API streams pass through
//! with their lifecycle, first content delta and terminal event read; a
//! chat stream for a Responses API client becomes that API's events
//! ([`super::responses_chat::ChatToResponses`]), an Anthropic one by way of
//! chat chunks. This file holds the transform and the pass-throughs;
//! `anthropic_chat` the chat ↔ Anthropic conversions, `responses_api` the
//! Responses API's.

mod anthropic_chat;
mod member;
mod responses_api;

use serde_json::{json, Value};

use super::responses;
use super::responses_chat::ChatToResponses;
use super::{openai, Usage, Wire, WireError};
use crate::sse::{SseEvent, SseParser};

/// Finds events that may carry a usage object (either format), for
/// [`StreamTransform::collecting_raw_usage`].
static USAGE_KEY: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\"usage\""));

/// What the relay learns from a stream.
#[derive(Default, Debug, Clone, PartialEq)]
pub struct StreamObservations {
    /// The first generated content has gone out.
    pub first_token: bool,
    pub usage: Option<Usage>,
    pub model: Option<String>,
    /// The stream's own end marker was seen (`[DONE]`, `message_stop`).
    pub done: bool,
    /// What a Responses API stream's instance stores (the response, the
    /// conversation it joins), once, from its first lifecycle event
    /// (passed-through streams only).
    pub stored: Option<Box<super::StoredIds>>,
    /// The deltas' text joined, when collected
    /// ([`StreamTransform::collecting_text`]) and there was any.
    pub text: Option<String>,
    /// The provider's usage object (OpenAI's last; Anthropic's fields
    /// merged from `message_start` and `message_delta`), when collected
    /// ([`StreamTransform::collecting_raw_usage`]).
    pub raw_usage: Option<Value>,
}

pub struct StreamTransform {
    parser: SseParser,
    from: Wire,
    to: Wire,
    /// The client did not ask for OpenAI usage reporting.
    strip_usage_chunk: bool,
    /// Join the deltas' text into [`StreamObservations::text`].
    collect_text: bool,
    /// Keep the usage object in [`StreamObservations::raw_usage`].
    collect_raw_usage: bool,
    state: Convert,
    /// For a Responses API client of a chat or Anthropic stream (boxed:
    /// the common streams carry one pointer for it).
    responses: Option<Box<ToResponses>>,
}

/// A chat stream rebuilt as Responses API events.
struct ToResponses {
    conv: ChatToResponses,
    /// Anthropic → chat first (the outer transform then reads chat chunks).
    via_chat: Option<StreamTransform>,
}

#[derive(Default)]
struct Convert {
    id: String,
    model: String,
    created: u64,
    /// Usage in Anthropic's terms (read from Anthropic events, or to be
    /// written into them).
    usage: super::anthropic::AnthropicUsage,
    stop: Option<String>,
    started: bool,
    /// Anthropic→OpenAI: content-block index → tool-call index.
    tool_of_block: Vec<(u64, u64)>,
    next_tool: u64,
    /// OpenAI→Anthropic: the open content block (index, is_text).
    open_block: Option<(u64, bool)>,
    next_block: u64,
    /// OpenAI tool-call index → Anthropic block index.
    block_of_tool: Vec<(u64, u64)>,
}

impl StreamTransform {
    pub fn new(from: Wire, to: Wire, strip_usage_chunk: bool) -> StreamTransform {
        let created = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let (from, responses) = match (from, to) {
            (Wire::Responses, _) | (_, Wire::OpenAi | Wire::Anthropic) => (from, None),
            (Wire::OpenAi | Wire::Anthropic, Wire::Responses) => {
                let via_chat = (from == Wire::Anthropic)
                    .then(|| StreamTransform::new(Wire::Anthropic, Wire::OpenAi, false));
                let conv = ChatToResponses::new(created);
                (Wire::OpenAi, Some(Box::new(ToResponses { conv, via_chat })))
            }
        };
        StreamTransform {
            parser: SseParser::new(),
            from,
            to,
            strip_usage_chunk,
            collect_text: false,
            collect_raw_usage: false,
            state: Convert {
                created,
                ..Default::default()
            },
            responses,
        }
    }

    /// Also joins the text of the answer's deltas (for `logging.payloads`),
    /// read from each event as it passes.
    pub fn collecting_text(mut self) -> StreamTransform {
        match self.first_stage_mut() {
            // The first stage reads the provider's own events.
            Some(first) => first.collect_text = true,
            None => self.collect_text = true,
        }
        self
    }

    /// Whether a first stage runs before this one (Anthropic → chat for a
    /// Responses client).
    #[inline]
    fn has_first_stage(&self) -> bool {
        self.responses
            .as_ref()
            .is_some_and(|r| r.via_chat.is_some())
    }

    fn first_stage_mut(&mut self) -> Option<&mut StreamTransform> {
        self.responses.as_deref_mut()?.via_chat.as_mut()
    }

    /// Also keeps the provider's usage object (for an `ai-rate-limiting`
    /// `cost_expr`); only events that mention `"usage"` are parsed for it.
    pub fn collecting_raw_usage(mut self) -> StreamTransform {
        match self.first_stage_mut() {
            Some(first) => first.collect_raw_usage = true,
            None => self.collect_raw_usage = true,
        }
        self
    }

    /// Feeds decoded upstream body bytes; appends client-bound bytes.
    #[inline]
    pub fn feed(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        obs: &mut StreamObservations,
    ) -> Result<(), WireError> {
        if self.has_first_stage() {
            let chat = self.first_stage(obs, |first, chat, seen| first.feed(input, chat, seen))?;
            return self.feed_own(&chat, out, obs);
        }
        self.feed_own(input, out, obs)
    }

    #[inline]
    fn feed_own(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        obs: &mut StreamObservations,
    ) -> Result<(), WireError> {
        let mut parser = std::mem::take(&mut self.parser);
        let r = parser.feed(input, |ev| self.event(ev, out, obs));
        self.parser = parser;
        r.map_err(|e| WireError::new(e.to_string()))
    }

    /// Ends the first stage and reads what it flushed.
    #[cold]
    #[inline(never)]
    fn finish_first_stage(
        &mut self,
        out: &mut Vec<u8>,
        obs: &mut StreamObservations,
    ) -> Result<(), WireError> {
        let chat = self.first_stage(obs, |first, chat, seen| first.finish(chat, seen))?;
        self.feed_own(&chat, out, obs)
    }

    /// Runs the first stage (Anthropic → chat) on its own observations,
    /// keeping what it collected from the provider's events (text, the
    /// raw usage); returns the chat chunks it made.
    #[cold]
    #[inline(never)]
    fn first_stage(
        &mut self,
        obs: &mut StreamObservations,
        run: impl FnOnce(
            &mut StreamTransform,
            &mut Vec<u8>,
            &mut StreamObservations,
        ) -> Result<(), WireError>,
    ) -> Result<Vec<u8>, WireError> {
        let mut chat = Vec::new();
        let mut seen = StreamObservations {
            text: obs.text.take(),
            raw_usage: obs.raw_usage.take(),
            ..Default::default()
        };
        if let Some(first) = self.first_stage_mut() {
            run(first, &mut chat, &mut seen)?;
        }
        obs.text = seen.text;
        obs.raw_usage = seen.raw_usage;
        Ok(chat)
    }

    /// The upstream body ended; flushes an unterminated last event.
    #[inline]
    pub fn finish(
        &mut self,
        out: &mut Vec<u8>,
        obs: &mut StreamObservations,
    ) -> Result<(), WireError> {
        if self.has_first_stage() {
            self.finish_first_stage(out, obs)?;
        }
        let mut parser = std::mem::take(&mut self.parser);
        parser.finish(|ev| self.event(ev, out, obs));
        Ok(())
    }

    /// A terminal error event in the client's format.
    pub fn error_event(&self, message: &str, out: &mut Vec<u8>) {
        match self.to {
            Wire::OpenAi => {
                let v = json!({"error": {"message": message, "type": "upstream_error", "code": "upstream_error"}});
                data(out, &v);
            }
            Wire::Anthropic => event(
                out,
                "error",
                &json!({"type": "error", "error": {"type": "api_error", "message": message}}),
            ),
            Wire::Responses => event(out, "error", &responses::error_event(message)),
        }
    }

    fn event(&mut self, ev: SseEvent<'_>, out: &mut Vec<u8>, obs: &mut StreamObservations) {
        if self.collect_text | self.collect_raw_usage {
            self.collect(&ev, obs);
        }
        match (self.from, self.to) {
            (Wire::OpenAi, Wire::OpenAi) => self.openai_pass(ev, out, obs),
            (Wire::Anthropic, Wire::Anthropic) => self.anthropic_pass(ev, out, obs),
            (Wire::Anthropic, Wire::OpenAi) => self.anthropic_to_openai(ev, out, obs),
            (Wire::OpenAi, Wire::Anthropic) => self.openai_to_anthropic(ev, out, obs),
            (Wire::Responses, Wire::Responses) => responses_api::pass(ev, out, obs),
            (_, Wire::Responses) => self.chat_to_responses(ev, out, obs),
            // Never built: a Responses API answer goes only to a Responses
            // API client (`build_request` refuses the rest).
            (Wire::Responses, _) => out.extend_from_slice(ev.raw),
        }
    }

    /// What the log and budgets asked to keep from an event (off the
    /// relay's usual path).
    #[cold]
    fn collect(&self, ev: &SseEvent<'_>, obs: &mut StreamObservations) {
        if self.collect_text {
            // Conversions keep the text as it is, so the upstream's event
            // tells what the client reads.
            super::text::push_delta_text(self.from, &ev.data, &mut obs.text);
        }
        if self.collect_raw_usage && USAGE_KEY.find(&ev.data).is_some() {
            keep_raw_usage(&ev.data, &mut obs.raw_usage);
        }
    }

    fn openai_pass(&mut self, ev: SseEvent<'_>, out: &mut Vec<u8>, obs: &mut StreamObservations) {
        if &*ev.data == b"[DONE]" {
            obs.done = true;
            out.extend_from_slice(ev.raw);
            return;
        }
        let has_usage = member::has_usage(&ev.data);
        if obs.first_token && obs.model.is_some() && !has_usage {
            out.extend_from_slice(ev.raw);
            return;
        }
        let want_model = obs.model.is_none();
        let Some(facts) = openai::ChunkFacts::read(&ev.data, want_model) else {
            out.extend_from_slice(ev.raw);
            return;
        };
        if want_model {
            obs.model = facts.model;
        }
        if facts.has_content {
            obs.first_token = true;
        }
        if let Some(u) = facts.usage {
            obs.usage = Some(u);
            if self.strip_usage_chunk && facts.usage_only {
                return;
            }
        }
        out.extend_from_slice(ev.raw);
    }

    fn anthropic_pass(
        &mut self,
        ev: SseEvent<'_>,
        out: &mut Vec<u8>,
        obs: &mut StreamObservations,
    ) {
        out.extend_from_slice(ev.raw);
        let name = ev.event.unwrap_or(b"");
        let interesting = match name {
            b"message_start" | b"message_delta" => true,
            b"content_block_delta" | b"content_block_start" => !obs.first_token,
            b"message_stop" => {
                obs.done = true;
                false
            }
            _ => false,
        };
        if !interesting {
            return;
        }
        let Ok(v) = serde_json::from_slice::<Value>(&ev.data) else {
            return;
        };
        self.observe_anthropic(name, &v, obs);
    }

    /// Records model, usage and the first token from an Anthropic event.
    fn observe_anthropic(&mut self, name: &[u8], v: &Value, obs: &mut StreamObservations) {
        match name {
            b"message_start" => {
                let m = &v["message"];
                self.state.id = m.get("id").and_then(Value::as_str).unwrap_or("").to_owned();
                self.state.model = m
                    .get("model")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned();
                obs.model = Some(self.state.model.clone());
                self.state.usage = Default::default();
                self.state.usage.merge(&m["usage"]);
                obs.usage = Some(self.state.usage.to_usage());
            }
            b"message_delta" => {
                // Cumulative: fields present replace message_start's.
                self.state.usage.merge(&v["usage"]);
                if let Some(s) = v.pointer("/delta/stop_reason").and_then(Value::as_str) {
                    self.state.stop = Some(s.to_owned());
                }
                obs.usage = Some(self.state.usage.to_usage());
            }
            b"content_block_delta" => {
                let d = &v["delta"];
                let text = d.get("text").and_then(Value::as_str).unwrap_or("");
                let json_part = d.get("partial_json").and_then(Value::as_str).unwrap_or("");
                if !text.is_empty() || !json_part.is_empty() {
                    obs.first_token = true;
                }
            }
            b"content_block_start"
                if v.pointer("/content_block/type").and_then(Value::as_str) == Some("tool_use") =>
            {
                obs.first_token = true;
            }
            _ => {}
        }
    }
    /// The upstream's body ended cleanly (its framing complete) without a
    /// chat stream's `data: [DONE]`, as some OpenAI-compatible servers end
    /// theirs. A stream converted from chat that had its finish reason is
    /// closed as if `[DONE]` had come; one that had not ends with an error
    /// event (the answer stopped short), since its client would otherwise
    /// wait for an end that never comes. Streams relayed in their own
    /// format end as the upstream ended them.
    #[inline]
    pub fn end_of_body(&mut self, out: &mut Vec<u8>, obs: &mut StreamObservations) {
        if obs.done || self.from != Wire::OpenAi || self.to == Wire::OpenAi {
            return;
        }
        self.end_unmarked(out, obs);
    }

    #[cold]
    #[inline(never)]
    fn end_unmarked(&mut self, out: &mut Vec<u8>, obs: &mut StreamObservations) {
        let finished = match self.to {
            Wire::Anthropic => self.state.stop.is_some(),
            Wire::Responses | Wire::OpenAi => {
                self.responses.as_ref().is_some_and(|r| r.conv.finished())
            }
        };
        if !finished {
            self.error_event(
                "the upstream ended the stream before the answer finished",
                out,
            );
            return;
        }
        match self.to {
            Wire::Anthropic => self.end_anthropic(out, obs),
            Wire::Responses | Wire::OpenAi => {
                if let Some(r) = self.responses.as_deref_mut() {
                    r.conv.end(out);
                    obs.done = true;
                }
            }
        }
    }
}

/// Keys whose presence makes a chat chunk more than a piece of text,
/// whatever their value. Quoted keys cannot occur inside a JSON string
/// value, where quotes are escaped, so a miss is certain; a hit only takes
/// the slow path.
static NOT_PLAIN_KEYS: std::sync::LazyLock<[memchr::memmem::Finder<'static>; 2]> =
    std::sync::LazyLock::new(|| {
        [
            memchr::memmem::Finder::new(b"\"tool_calls\""),
            memchr::memmem::Finder::new(b"\"error\""),
        ]
    });

/// Members that make a chat chunk more than a piece of text when they
/// have a string value, any spacing ([`member`]; a usage object is
/// [`member::has_usage`]).
static NOT_PLAIN_MEMBERS: std::sync::LazyLock<[member::Member; 2]> =
    std::sync::LazyLock::new(|| {
        [
            member::Member::new(b"\"refusal\"", b'"'),
            member::Member::new(b"\"finish_reason\"", b'"'),
        ]
    });

/// The text of a chat chunk that carries a non-empty piece of text and
/// nothing else the conversion needs (no tool call, refusal, finish reason,
/// usage or error).
pub(super) fn plain_text_piece(data: &[u8]) -> Option<std::borrow::Cow<'_, str>> {
    use crate::wire::json_scan::{string_at, Step::*};
    if NOT_PLAIN_KEYS.iter().any(|f| f.find(data).is_some())
        || NOT_PLAIN_MEMBERS.iter().any(|m| m.in_(data))
        || member::has_usage(data)
    {
        return None;
    }
    string_at(data, &[Key("choices"), First, Key("delta"), Key("content")])
        .filter(|t| !t.is_empty())
}

/// Merges the usage object of one event (`usage`, Anthropic's
/// `message.usage` in `message_start`, or a Responses API event's
/// `response.usage`) into `raw`: later fields win.
fn keep_raw_usage(data: &[u8], raw: &mut Option<Value>) {
    let Ok(v) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let found = match v.get("usage") {
        Some(u @ Value::Object(_)) => u,
        _ => match v
            .pointer("/message/usage")
            .or_else(|| v.pointer("/response/usage"))
        {
            Some(u @ Value::Object(_)) => u,
            _ => return,
        },
    };
    match (raw, found) {
        (Some(Value::Object(kept)), Value::Object(new)) => {
            for (k, x) in new {
                kept.insert(k.clone(), x.clone());
            }
        }
        (raw, found) => *raw = Some(found.clone()),
    }
}

fn data(out: &mut Vec<u8>, v: &Value) {
    out.extend_from_slice(b"data: ");
    let _ = serde_json::to_writer(&mut *out, v);
    out.extend_from_slice(b"\n\n");
}

fn event(out: &mut Vec<u8>, name: &str, v: &Value) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    let _ = serde_json::to_writer(&mut *out, v);
    out.extend_from_slice(b"\n\n");
}
