//! Any valid spelling of the same JSON is observed the same: every stream
//! and answer the other wire tests use, re-spaced at random (spaces, tabs,
//! line breaks between any two tokens, as Python's `json.dumps` or a
//! pretty printer writes them; in an event stream a line break starts a
//! new `data:` line, which SSE joins back with `\n`, and lines end in `\n`
//! or `\r\n`), cut into random pieces, must give the same observations
//! (first token, usage, model, end, text, raw usage) and the same events
//! for the client, in every direction, as the compact original.

use proptest::prelude::*;
use serde_json::Value;

use super::*;

/// Whitespace put between tokens.
const GAPS: [&str; 7] = ["", " ", "  ", "\t", "\n", "\r\n", " \n\t "];

/// Draws gap choices from `seed`, cycling.
struct Gaps<'a> {
    seed: &'a [u8],
    at: usize,
}

impl Gaps<'_> {
    fn next(&mut self) -> &'static str {
        let b = self.seed.get(self.at % self.seed.len().max(1)).copied();
        self.at += 1;
        GAPS[usize::from(b.unwrap_or(0)) % GAPS.len()]
    }
}

/// `json` with whitespace around every structural token.
fn respace(json: &str, gaps: &mut Gaps<'_>) -> String {
    let mut out = String::from(gaps.next());
    let (mut in_string, mut escaped) = (false, false);
    for c in json.chars() {
        if in_string {
            out.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '{' | '}' | '[' | ']' | ',' | ':' => {
                out.push_str(gaps.next());
                out.push(c);
                out.push_str(gaps.next());
            }
            '"' => {
                in_string = true;
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    out.push_str(gaps.next());
    out
}

/// An event stream with each event's JSON data re-spaced (a line break in
/// it starts another `data:` line), `data:` with or without its space.
fn respace_stream(stream: &str, gaps: &mut Gaps<'_>) -> String {
    let mut out = String::new();
    for event in stream.split("\n\n").filter(|e| !e.is_empty()) {
        let eol = if gaps.next().len() % 2 == 0 {
            "\n"
        } else {
            "\r\n"
        };
        for line in event.lines() {
            match line.strip_prefix("data: ") {
                Some(data) if data.starts_with('{') => {
                    let spaced = respace(data, gaps);
                    for part in spaced.split("\r\n").flat_map(|p| p.split(['\r', '\n'])) {
                        let field = if gaps.next().is_empty() {
                            "data:"
                        } else {
                            "data: "
                        };
                        out.push_str(field);
                        out.push_str(part);
                        out.push_str(eol);
                    }
                }
                _ => {
                    out.push_str(line);
                    out.push_str(eol);
                }
            }
        }
        out.push_str(eol);
    }
    out
}

/// Without the clock's fields (`created`, `created_at`), which a
/// conversion stamps.
fn timeless(mut v: Value) -> Value {
    match &mut v {
        Value::Object(o) => {
            o.remove("created");
            o.remove("created_at");
            for x in o.values_mut() {
                *x = timeless(x.take());
            }
        }
        Value::Array(a) => {
            for x in a.iter_mut() {
                *x = timeless(x.take());
            }
        }
        _ => {}
    }
    v
}

/// An event stream as (event name, data) pairs, data parsed when JSON.
fn events(s: &str) -> Vec<(Option<String>, Value)> {
    let s = s.replace("\r\n", "\n");
    s.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let name = e
                .lines()
                .find_map(|l| l.strip_prefix("event:"))
                .map(|n| n.trim().to_owned());
            let data: Vec<&str> = e
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(|d| d.strip_prefix(' ').unwrap_or(d))
                .collect();
            let data = data.join("\n");
            let v = serde_json::from_str(&data).unwrap_or(Value::String(data));
            (name, timeless(v))
        })
        .collect()
}

/// What a stream gave: the observations, and the client's events.
type Seen = (StreamObservations, Vec<(Option<String>, Value)>);

fn relay(from: Wire, to: Wire, strip: bool, input: &str, step: usize) -> Seen {
    let mut t = StreamTransform::new(from, to, strip)
        .collecting_text()
        .collecting_raw_usage();
    let (mut out, mut obs) = (Vec::new(), StreamObservations::default());
    for piece in input.as_bytes().chunks(step.max(1)) {
        t.feed(piece, &mut out, &mut obs).unwrap();
    }
    t.finish(&mut out, &mut obs).unwrap();
    t.end_of_body(&mut out, &mut obs);
    (obs, events(&String::from_utf8(out).unwrap()))
}

/// Every stream the wire tests use, by the format it is in.
fn streams() -> Vec<(Wire, String)> {
    let mut tools_and_text = streams::text_tool_text(
        &["He said \"hi\"", " — é\n", "\\ \"finish_reason\":\"x\" "],
        &["after"],
    );
    tools_and_text.push_str("data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":15,\"completion_tokens\":5,\"total_tokens\":20,\"prompt_tokens_details\":{\"cached_tokens\":7}}}\n\ndata: [DONE]\n\n");
    let unterminated = streams::chat_chunk(serde_json::json!({"content": "Hi"}), Value::Null)
        + &streams::chat_chunk(serde_json::json!({}), serde_json::json!("stop"));
    vec![
        (Wire::OpenAi, OPENAI_STREAM.to_owned()),
        (Wire::Anthropic, ANTHROPIC_STREAM.to_owned()),
        (Wire::OpenAi, tools_and_text),
        (Wire::OpenAi, streams::OPENAI_TOOLS.to_owned()),
        (Wire::OpenAi, unterminated),
        (Wire::Anthropic, cache::stream(cache::CACHED, cache::CACHED)),
        (Wire::Responses, RESPONSES_STREAM.to_owned()),
    ]
}

const RESPONSES_STREAM: &str = concat!(
    "event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"resp_1\",\"model\":\"gpt-5\",\"usage\":null}}\n\n",
    "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":1,\"delta\":\"Hi\"}\n\n",
    "event: response.completed\ndata: {\"type\":\"response.completed\",\"sequence_number\":2,\"response\":{\"id\":\"resp_1\",\"model\":\"gpt-5\",\"output\":[],\"usage\":{\"input_tokens\":11,\"input_tokens_details\":{\"cached_tokens\":4},\"output_tokens\":7,\"total_tokens\":18}}}\n\n",
);

/// Every answer the wire tests use, by the format it is in.
fn answers() -> Vec<(Wire, String)> {
    vec![
        (Wire::Anthropic, cache::answer(cache::CACHED)),
        (Wire::OpenAi, r#"{"id":"c1","object":"chat.completion","model":"gpt-4","choices":[{"index":0,"message":{"role":"assistant","content":"2","tool_calls":[{"id":"x","type":"function","function":{"name":"f","arguments":"{}"}}]},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":5,"completion_tokens":3,"total_tokens":8,"prompt_tokens_details":{"cached_tokens":2}}}"#.to_owned()),
        (Wire::Responses, r#"{"id":"resp_1","object":"response","model":"gpt-5","output":[{"type":"message","content":[{"type":"output_text","text":"x"}]}],"usage":{"input_tokens":11,"output_tokens":7,"total_tokens":18}}"#.to_owned()),
    ]
}

/// Where a `from` answer may go.
fn clients(from: Wire) -> &'static [Wire] {
    match from {
        Wire::Responses => &[Wire::Responses],
        Wire::OpenAi | Wire::Anthropic => &[Wire::OpenAi, Wire::Anthropic, Wire::Responses],
    }
}

/// A converted answer with its body parsed (timeless).
fn converted(from: Wire, to: Wire, body: &str) -> (ConvertedResponse, Option<Value>) {
    let mut c = convert_response(from, to, Api::Chat, body.as_bytes(), true).unwrap();
    let parsed = c
        .body
        .take()
        .map(|b| timeless(serde_json::from_slice(&b).unwrap()));
    (c, parsed)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn respaced_streams_are_observed_the_same(seed in proptest::collection::vec(any::<u8>(), 1..64), step in 1usize..300) {
        for (from, stream) in streams() {
            let spaced = respace_stream(&stream, &mut Gaps { seed: &seed, at: 0 });
            for &to in clients(from) {
                for strip in [false, true] {
                    let want = relay(from, to, strip, &stream, stream.len());
                    let got = relay(from, to, strip, &spaced, step);
                    prop_assert_eq!(&got.0, &want.0, "{:?}→{:?} strip {}:\n{}", from, to, strip, spaced);
                    prop_assert_eq!(&got.1, &want.1, "{:?}→{:?} strip {}:\n{}", from, to, strip, spaced);
                }
            }
        }
    }

    #[test]
    fn respaced_answers_are_observed_the_same(seed in proptest::collection::vec(any::<u8>(), 1..64)) {
        for (from, answer) in answers() {
            let spaced = respace(&answer, &mut Gaps { seed: &seed, at: 0 });
            for &to in clients(from) {
                let want = converted(from, to, &answer);
                let got = converted(from, to, &spaced);
                prop_assert_eq!(&got, &want, "{:?}→{:?}:\n{}", from, to, spaced);
            }
            prop_assert_eq!(
                text::answer_text(from, spaced.as_bytes()),
                text::answer_text(from, answer.as_bytes())
            );
        }
    }
}

#[test]
fn python_and_pretty_spellings_are_among_them() {
    // json.dumps's `", "` / `": "`, and a pretty printer's lines, as
    // mock-llm writes them (`json_style`).
    for style in [mock_llm::JsonStyle::Python, mock_llm::JsonStyle::Pretty] {
        for (from, stream) in streams() {
            let spelled: String = stream
                .split_inclusive("\n\n")
                .map(|e| {
                    String::from_utf8(mock_llm::spacing::restyle_event(e.as_bytes(), style))
                        .unwrap()
                })
                .collect();
            for &to in clients(from) {
                assert_eq!(
                    relay(from, to, true, &spelled, 7),
                    relay(from, to, true, &stream, stream.len()),
                    "{style:?} {from:?}→{to:?}:\n{spelled}"
                );
            }
        }
    }
}
