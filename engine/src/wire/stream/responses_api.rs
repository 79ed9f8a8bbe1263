//! Responses API streams: passed through with their lifecycle, first
//! content delta and terminal event read, or rebuilt from chat chunks
//! ([`ChatToResponses`], text pieces written straight out).

use serde_json::Value;

use super::{plain_text_piece, StreamObservations, StreamTransform, ToResponses};
use crate::sse::SseEvent;
use crate::wire::openai;
use crate::wire::responses::{self, EventKind};

impl StreamTransform {
    /// A chat chunk (or `[DONE]`) as Responses API events (kept out of
    /// `event`, which every relayed stream runs).
    #[cold]
    #[inline(never)]
    pub(super) fn chat_to_responses(
        &mut self,
        ev: SseEvent<'_>,
        out: &mut Vec<u8>,
        obs: &mut StreamObservations,
    ) {
        let Some(ToResponses { conv, .. }) = self.responses.as_deref_mut() else {
            return;
        };
        if &*ev.data == b"[DONE]" {
            conv.end(out);
            obs.done = true;
            return;
        }
        // Most chunks carry one piece of text and nothing else: those are
        // read in place and written straight out, without a tree either way.
        if let Some(piece) = plain_text_piece(&ev.data) {
            if conv.text_piece(&piece, out) {
                obs.first_token = true;
                return;
            }
        }
        let Ok(v) = serde_json::from_slice::<Value>(&ev.data) else {
            return;
        };
        if obs.model.is_none() {
            obs.model = v.get("model").and_then(Value::as_str).map(str::to_owned);
        }
        if let Some(u) = openai::usage(&v) {
            obs.usage = Some(u);
        }
        if conv.chunk(&v, out).first_content {
            obs.first_token = true;
        }
    }
}

/// A Responses API event, passed through; the response id and model from
/// the lifecycle events, the first token from the first filled content delta, usage and
/// the end from the terminal event.
pub(super) fn pass(ev: SseEvent<'_>, out: &mut Vec<u8>, obs: &mut StreamObservations) {
    out.extend_from_slice(ev.raw);
    match responses::event_kind(ev.event, &ev.data) {
        EventKind::ContentDelta if !obs.first_token => {
            obs.first_token = responses::delta_is_filled(&ev.data);
        }
        EventKind::Lifecycle if obs.model.is_none() => {
            let facts = responses::response_facts(&ev.data);
            obs.model = facts.model;
            obs.stored = Some(Box::new(super::super::StoredIds {
                response: facts.id,
                conversation: facts.conversation.map(|c| c.id),
            }));
        }
        EventKind::Terminal => {
            let facts = responses::response_facts(&ev.data);
            if facts.model.is_some() {
                obs.model = facts.model;
            }
            if facts.usage.is_some() {
                obs.usage = facts.usage;
            }
            obs.done = true;
        }
        _ => {}
    }
}
