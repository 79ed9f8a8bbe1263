//! The text of an answer as the client received it, for `logging.payloads`
//! (APISIX's `llm_response_text`): the assistant's message of a JSON answer,
//! or the deltas of an event stream joined. Runs in the log phase, only for
//! routes that ask for payloads.

use serde_json::Value;

use super::Wire;
use crate::sse::SseParser;

/// The answer's text, or `None` when it carries none (embeddings, errors).
pub fn answer_text(wire: Wire, body: &[u8], streamed: bool) -> Option<String> {
    let mut text = String::new();
    let mut found = false;
    if streamed {
        let mut parser = SseParser::new();
        let mut on_event = |data: &[u8]| {
            if let Ok(v) = serde_json::from_slice::<Value>(data) {
                found |= delta_text(wire, &v, &mut text);
            }
        };
        let _ = parser.feed(body, |e| on_event(&e.data));
        parser.finish(|e| on_event(&e.data));
    } else {
        let v: Value = serde_json::from_slice(body).ok()?;
        found = message_text(wire, &v, &mut text);
    }
    found.then_some(text)
}

/// Appends a JSON answer's text; whether it had any.
fn message_text(wire: Wire, v: &Value, out: &mut String) -> bool {
    match wire {
        Wire::OpenAi => match v.pointer("/choices/0/message/content") {
            Some(Value::String(s)) => {
                out.push_str(s);
                true
            }
            _ => false,
        },
        Wire::Anthropic => {
            let mut found = false;
            for block in v["content"].as_array().into_iter().flatten() {
                if let Some(s) = block["text"].as_str() {
                    out.push_str(s);
                    found = true;
                }
            }
            found
        }
    }
}

/// Appends one stream event's text; whether it had any.
fn delta_text(wire: Wire, v: &Value, out: &mut String) -> bool {
    let piece = match wire {
        Wire::OpenAi => v.pointer("/choices/0/delta/content"),
        Wire::Anthropic => v.pointer("/delta/text"),
    };
    match piece {
        Some(Value::String(s)) => {
            out.push_str(s);
            true
        }
        _ => false,
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
