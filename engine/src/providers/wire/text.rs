//! The text of an answer as the client received it, for `logging.payloads`
//! (APISIX's `llm_response_text`): the assistant's message of a JSON answer,
//! or the deltas of an event stream joined. Runs in the log phase, only for
//! routes that ask for payloads.

use std::borrow::Cow;

use serde::Deserialize;

use super::Wire;
use crate::sse::SseParser;

// Borrowed views of just the fields holding text: every other field is
// skipped without building anything (a stream has an event per token).

#[derive(Deserialize)]
struct OpenAiAnswer<'a> {
    #[serde(borrow, default)]
    choices: Vec<OpenAiChoice<'a>>,
}

#[derive(Deserialize)]
struct OpenAiChoice<'a> {
    #[serde(borrow, default)]
    message: Option<Content<'a>>,
    #[serde(borrow, default)]
    delta: Option<Content<'a>>,
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
struct AnthropicEvent<'a> {
    #[serde(borrow, default)]
    delta: Option<TextBlock<'a>>,
}

#[derive(Deserialize)]
struct TextBlock<'a> {
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
}

/// The answer's text, or `None` when it carries none (embeddings, errors).
pub fn answer_text(wire: Wire, body: &[u8], streamed: bool) -> Option<String> {
    let mut text = String::new();
    let mut found = false;
    if streamed {
        let mut parser = SseParser::new();
        let mut on_event = |data: &[u8]| found |= delta_text(wire, data, &mut text);
        let _ = parser.feed(body, |e| on_event(&e.data));
        parser.finish(|e| on_event(&e.data));
    } else {
        found = message_text(wire, body, &mut text);
    }
    found.then_some(text)
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
    }
}

/// Appends one stream event's text; whether it had any.
fn delta_text(wire: Wire, data: &[u8], out: &mut String) -> bool {
    match wire {
        Wire::OpenAi => serde_json::from_slice::<OpenAiAnswer>(data)
            .ok()
            .and_then(|a| a.choices.into_iter().next())
            .and_then(|c| c.delta)
            .is_some_and(|d| push(out, d.content)),
        Wire::Anthropic => serde_json::from_slice::<AnthropicEvent>(data)
            .ok()
            .and_then(|e| e.delta)
            .is_some_and(|d| push(out, d.text)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_answers() {
        let openai = br#"{"choices":[{"message":{"role":"assistant","content":"1+1 equals 2."}}]}"#;
        assert_eq!(
            answer_text(Wire::OpenAi, openai, false).as_deref(),
            Some("1+1 equals 2.")
        );
        let claude = br#"{"content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}"#;
        assert_eq!(
            answer_text(Wire::Anthropic, claude, false).as_deref(),
            Some("ab")
        );
        let embeddings = br#"{"data":[{"embedding":[0.1]}]}"#;
        assert_eq!(answer_text(Wire::OpenAi, embeddings, false), None);
        assert_eq!(answer_text(Wire::OpenAi, b"not json", false), None);
    }

    #[test]
    fn streamed_answers() {
        let openai = b"data: {\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\n\n\
data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n\
data: {\"choices\":[{\"delta\":{\"content\":\"lo\"}}]}\n\n\
data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1}}\n\ndata: [DONE]\n\n";
        assert_eq!(
            answer_text(Wire::OpenAi, openai, true).as_deref(),
            Some("Hello")
        );
        let claude = b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n\
event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"type\":\"text_delta\",\"text\":\"!\"}}";
        assert_eq!(
            answer_text(Wire::Anthropic, claude, true).as_deref(),
            Some("Hi!")
        );
    }
}
