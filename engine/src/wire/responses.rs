//! OpenAI's Responses API (`/v1/responses`): what the gateway reads from
//! its answers and its typed SSE events — the model, usage
//! (`input_tokens` / `output_tokens`, in the answer and in the terminal
//! `response.completed` / `response.incomplete` / `response.failed`
//! event), the events that carry generated content (the first one is the
//! first token) — and its error event. Requests and answers pass through
//! unchanged; only `options` are spliced in.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::{json, Value};

use super::Usage;
use crate::wire::json_scan::{string_at, Step};

#[derive(Deserialize)]
struct UsageFields {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    #[serde(default)]
    total_tokens: Option<u64>,
    #[serde(default)]
    input_tokens_details: Option<InputDetails>,
}

#[derive(Deserialize)]
struct InputDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
}

impl UsageFields {
    fn to_usage(&self) -> Usage {
        Usage {
            prompt_tokens: self.input_tokens,
            completion_tokens: self.output_tokens,
            total_tokens: self
                .total_tokens
                .unwrap_or(self.input_tokens.saturating_add(self.output_tokens)),
            cached_tokens: self
                .input_tokens_details
                .as_ref()
                .and_then(|d| d.cached_tokens)
                .unwrap_or(0),
        }
    }
}

/// `usage` from its raw JSON slice (`None` for null or malformed).
pub fn usage_slice(raw: &[u8]) -> Option<Usage> {
    let u: UsageFields = serde_json::from_slice(raw).ok()?;
    Some(u.to_usage())
}

/// What one event is, for the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// `response.created` / `response.in_progress` / `response.queued`:
    /// the response object so far (its model).
    Lifecycle,
    /// A delta of generated content: output text, a refusal, a tool
    /// call's arguments.
    ContentDelta,
    /// `response.completed` / `response.incomplete` / `response.failed`:
    /// the final response object with its usage; the stream's end.
    Terminal,
    Other,
}

/// Classifies an event by its `event:` name, or else by its data's `type`.
pub fn event_kind(name: Option<&[u8]>, data: &[u8]) -> EventKind {
    let typed;
    let name = match name {
        Some(n) => n,
        None => {
            typed = string_at(data, &[Step::Key("type")]);
            match &typed {
                Some(t) => t.as_bytes(),
                None => return EventKind::Other,
            }
        }
    };
    match name {
        b"response.created" | b"response.in_progress" | b"response.queued" => EventKind::Lifecycle,
        b"response.output_text.delta"
        | b"response.refusal.delta"
        | b"response.function_call_arguments.delta" => EventKind::ContentDelta,
        b"response.completed" | b"response.incomplete" | b"response.failed" => EventKind::Terminal,
        _ => EventKind::Other,
    }
}

/// Whether a content delta event carries any content.
pub fn delta_is_filled(data: &[u8]) -> bool {
    string_at(data, &[Step::Key("delta")]).is_some_and(|d| !d.is_empty())
}

#[derive(Deserialize)]
struct Wrapped {
    #[serde(default)]
    response: Option<ResponseFacts>,
}

/// The id, model and usage of a lifecycle or terminal event's response
/// object (every other member is skipped without being built).
#[derive(Deserialize, Default, Debug, PartialEq)]
pub struct ResponseFacts {
    #[serde(default)]
    pub id: Option<String>,
    /// The conversation it joins (`{"id": …}`), if any.
    #[serde(default)]
    pub conversation: Option<ConversationRef>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default, deserialize_with = "usage_or_null")]
    pub usage: Option<Usage>,
}

fn usage_or_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Usage>, D::Error> {
    Ok(Option::<UsageFields>::deserialize(d)?.map(|u| u.to_usage()))
}

/// A conversation named by a response.
#[derive(Deserialize, Default, Debug, PartialEq)]
pub struct ConversationRef {
    pub id: String,
}

/// Reads a lifecycle or terminal event's `response.model` and
/// `response.usage`.
pub fn response_facts(data: &[u8]) -> ResponseFacts {
    serde_json::from_slice::<Wrapped>(data)
        .ok()
        .and_then(|w| w.response)
        .unwrap_or_default()
}

/// The terminal event for a stream the gateway had to end: the API's
/// `error` event.
pub fn error_event(message: &str) -> Value {
    json!({"type": "error", "code": "upstream_error", "message": message, "param": null})
}

/// The text of a Responses answer: its `output_text` parts, joined.
#[derive(Deserialize)]
pub struct AnswerView<'a> {
    #[serde(borrow, default)]
    output: Vec<OutputItem<'a>>,
}

#[derive(Deserialize)]
struct OutputItem<'a> {
    #[serde(borrow, default)]
    content: Vec<Part<'a>>,
}

#[derive(Deserialize)]
struct Part<'a> {
    #[serde(borrow, default)]
    r#type: Cow<'a, str>,
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
}

impl AnswerView<'_> {
    /// Appends the answer's output text; whether it had any.
    pub fn push_text(self, out: &mut String) -> bool {
        let mut found = false;
        for part in self.output.into_iter().flat_map(|i| i.content) {
            if part.r#type == "output_text" {
                if let Some(t) = part.text {
                    out.push_str(&t);
                    found = true;
                }
            }
        }
        found
    }
}

/// The text of one `response.output_text.delta` event.
pub fn delta_text(data: &[u8]) -> Option<Cow<'_, str>> {
    if string_at(data, &[Step::Key("type")]).as_deref() != Some("response.output_text.delta") {
        return None;
    }
    string_at(data, &[Step::Key("delta")])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_told_apart_by_name_or_type() {
        let delta = br#"{"type":"response.output_text.delta","delta":"Hi","output_index":0}"#;
        assert_eq!(
            event_kind(Some(b"response.output_text.delta"), delta),
            EventKind::ContentDelta
        );
        assert_eq!(event_kind(None, delta), EventKind::ContentDelta);
        assert!(delta_is_filled(delta));
        assert!(!delta_is_filled(
            br#"{"type":"response.output_text.delta","delta":""}"#
        ));
        assert_eq!(
            event_kind(None, br#"{"type":"response.completed","response":{}}"#),
            EventKind::Terminal
        );
        assert_eq!(
            event_kind(Some(b"response.failed"), b"{}"),
            EventKind::Terminal
        );
        assert_eq!(
            event_kind(Some(b"response.created"), b"{}"),
            EventKind::Lifecycle
        );
        assert_eq!(
            event_kind(None, br#"{"type":"response.output_item.added"}"#),
            EventKind::Other
        );
        assert_eq!(event_kind(None, b"not json"), EventKind::Other);
    }

    #[test]
    fn usage_and_model_come_from_the_response_object() {
        let done = br#"{"type":"response.completed","sequence_number":9,"response":{"id":"r","model":"gpt-5","output":[{"type":"message","content":[{"type":"output_text","text":"x"}]}],"usage":{"input_tokens":11,"input_tokens_details":{"cached_tokens":0},"output_tokens":7,"total_tokens":18}}}"#;
        let f = response_facts(done);
        assert_eq!(f.model.as_deref(), Some("gpt-5"));
        assert_eq!(f.usage, Some(Usage::new(11, 7)));
        let created =
            br#"{"type":"response.created","response":{"id":"resp_1","model":"m","usage":null}}"#;
        assert_eq!(
            response_facts(created),
            ResponseFacts {
                id: Some("resp_1".into()),
                conversation: None,
                model: Some("m".into()),
                usage: None
            }
        );
        assert_eq!(response_facts(b"[1]"), ResponseFacts::default());
        let in_conversation = br#"{"type":"response.created","response":{"id":"resp_2","conversation":{"id":"conv_9"}}}"#;
        assert_eq!(
            response_facts(in_conversation).conversation.map(|c| c.id),
            Some("conv_9".into())
        );
        assert_eq!(
            usage_slice(br#"{"input_tokens":3,"output_tokens":4}"#),
            Some(Usage::new(3, 4))
        );
        assert_eq!(usage_slice(b"null"), None);
    }

    #[test]
    fn answer_text_joins_output_text_parts_only() {
        let body = br#"{"output":[{"type":"reasoning","content":[]},{"type":"message","content":[{"type":"output_text","text":"a"},{"type":"refusal","refusal":"no"},{"type":"output_text","text":"b"}]}]}"#;
        let mut out = String::new();
        assert!(serde_json::from_slice::<AnswerView>(body)
            .unwrap()
            .push_text(&mut out));
        assert_eq!(out, "ab");
        let fc = br#"{"output":[{"type":"function_call","arguments":"{}"}]}"#;
        assert!(!serde_json::from_slice::<AnswerView>(fc)
            .unwrap()
            .push_text(&mut String::new()));
        assert_eq!(
            delta_text(br#"{"type":"response.output_text.delta","delta":"x "}"#).as_deref(),
            Some("x ")
        );
        assert_eq!(
            delta_text(br#"{"type":"response.function_call_arguments.delta","delta":"{"}"#),
            None
        );
    }
}
