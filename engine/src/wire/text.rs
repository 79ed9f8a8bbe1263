//! The text of an answer as the client received it, for `logging.payloads`
//! (APISIX's `llm_response_text`): the assistant's message of a JSON answer
//! (read in the log phase from the answer kept), or the deltas of an event
//! stream joined (collected event by event by the stream transform, so a
//! stream's bytes are neither kept nor parsed twice). Only for routes that
//! ask for payloads.

use std::borrow::Cow;

use serde::Deserialize;

use super::Wire;

// Borrowed views of just the fields holding a JSON answer's text: every
// other field is skipped without building anything.

#[derive(Deserialize)]
struct OpenAiAnswer<'a> {
    #[serde(borrow, default)]
    choices: Vec<OpenAiChoice<'a>>,
}

#[derive(Deserialize)]
struct OpenAiChoice<'a> {
    #[serde(borrow, default)]
    message: Option<Content<'a>>,
}

#[derive(Deserialize)]
struct Content<'a> {
    #[serde(borrow, default)]
    content: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct AnthropicAnswer<'a> {
    #[serde(borrow, default)]
    content: Vec<TextBlock<'a>>,
}

#[derive(Deserialize)]
struct TextBlock<'a> {
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
}

/// Most text kept for a streamed answer (a JSON answer's is bounded by
/// the answer bytes kept).
pub const STREAM_TEXT_LIMIT: usize = 1 << 20;

/// A JSON answer's text, or `None` when it carries none (embeddings,
/// errors).
pub fn answer_text(wire: Wire, body: &[u8]) -> Option<String> {
    let mut text = String::new();
    message_text(wire, body, &mut text).then_some(text)
}

/// Appends the text of one stream event (in `wire`'s format) to `text`,
/// started at the first event that has any, up to [`STREAM_TEXT_LIMIT`].
pub fn push_delta_text(wire: Wire, data: &[u8], text: &mut Option<String>) {
    if let Some(piece) = delta_piece(wire, data) {
        let out = text.get_or_insert_with(String::new);
        let room = STREAM_TEXT_LIMIT.saturating_sub(out.len());
        out.push_str(&piece[..floor_char_boundary(&piece, room)]);
    }
}

/// Cuts `text` to at most `limit` bytes, at a character boundary.
pub fn clip(text: &mut String, limit: usize) {
    let end = floor_char_boundary(text, limit);
    text.truncate(end);
}

/// The largest character boundary of `s` at or below `at`.
fn floor_char_boundary(s: &str, at: usize) -> usize {
    let mut end = s.len().min(at);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    end
}

fn push(out: &mut String, piece: Option<Cow<'_, str>>) -> bool {
    match piece {
        Some(s) => {
            out.push_str(&s);
            true
        }
        None => false,
    }
}

/// Appends a JSON answer's text; whether it had any.
fn message_text(wire: Wire, body: &[u8], out: &mut String) -> bool {
    match wire {
        Wire::OpenAi => serde_json::from_slice::<OpenAiAnswer>(body)
            .ok()
            .and_then(|a| a.choices.into_iter().next())
            .and_then(|c| c.message)
            .is_some_and(|m| push(out, m.content)),
        Wire::Anthropic => serde_json::from_slice::<AnthropicAnswer>(body)
            .map(|a| {
                a.content
                    .into_iter()
                    .fold(false, |found, b| push(out, b.text) | found)
            })
            .unwrap_or(false),
        Wire::Responses => serde_json::from_slice::<super::responses::AnswerView>(body)
            .is_ok_and(|a| a.push_text(out)),
    }
}

/// One stream event's text, borrowed from the event unless it had
/// escapes. Events come one per token, so only the path to the text is
/// scanned: a typed parse of each whole event cost more than relaying it.
fn delta_piece(wire: Wire, data: &[u8]) -> Option<Cow<'_, str>> {
    use crate::wire::json_scan::{string_at, Step::*};
    match wire {
        Wire::OpenAi => string_at(data, &[Key("choices"), First, Key("delta"), Key("content")]),
        Wire::Anthropic => string_at(data, &[Key("delta"), Key("text")]),
        Wire::Responses => super::responses::delta_text(data),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_answers() {
        let openai = br#"{"choices":[{"message":{"role":"assistant","content":"1+1 equals 2."}}]}"#;
        assert_eq!(
            answer_text(Wire::OpenAi, openai).as_deref(),
            Some("1+1 equals 2.")
        );
        let claude = br#"{"content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}"#;
        assert_eq!(answer_text(Wire::Anthropic, claude).as_deref(), Some("ab"));
        let embeddings = br#"{"data":[{"embedding":[0.1]}]}"#;
        assert_eq!(answer_text(Wire::OpenAi, embeddings), None);
        assert_eq!(answer_text(Wire::OpenAi, b"not json"), None);
    }

    #[test]
    fn stream_events() {
        let mut text = None;
        push_delta_text(
            Wire::OpenAi,
            br#"{"choices":[{"delta":{"role":"assistant"}}]}"#,
            &mut text,
        );
        push_delta_text(Wire::OpenAi, b"[DONE]", &mut text);
        assert_eq!(text, None, "no text yet");
        push_delta_text(
            Wire::OpenAi,
            br#"{"choices":[{"delta":{"content":"He\\"}}]}"#,
            &mut text,
        );
        push_delta_text(
            Wire::OpenAi,
            br#"{"choices":[{"delta":{"content":"llo"}}]}"#,
            &mut text,
        );
        push_delta_text(
            Wire::OpenAi,
            br#"{"choices":[],"usage":{"prompt_tokens":1}}"#,
            &mut text,
        );
        assert_eq!(text.as_deref(), Some("He\\llo"));

        let mut text = None;
        let delta = br#"{"type":"content_block_delta","delta":{"type":"text_delta","text":"Hi"}}"#;
        push_delta_text(Wire::Anthropic, delta, &mut text);
        push_delta_text(
            Wire::Anthropic,
            br#"{"type":"message_delta","delta":{"stop_reason":"end_turn"}}"#,
            &mut text,
        );
        assert_eq!(text.as_deref(), Some("Hi"));
    }

    #[test]
    fn stream_text_stops_at_the_limit_on_a_char_boundary() {
        let mut text = Some("x".repeat(STREAM_TEXT_LIMIT - 1));
        push_delta_text(
            Wire::OpenAi,
            r#"{"choices":[{"delta":{"content":"éé"}}]}"#.as_bytes(),
            &mut text,
        );
        assert_eq!(text.as_ref().map(String::len), Some(STREAM_TEXT_LIMIT - 1));
        let mut text = Some("x".repeat(STREAM_TEXT_LIMIT - 2));
        push_delta_text(
            Wire::OpenAi,
            r#"{"choices":[{"delta":{"content":"éé"}}]}"#.as_bytes(),
            &mut text,
        );
        assert!(text.unwrap().ends_with("xé"));
    }
}
