//! The fuzz oracles: one function per parser of outside bytes, each
//! feeding it arbitrary bytes and asserting what must hold for any input
//! (no panic, and the property named on each). cargo-fuzz drives them
//! from `fuzz_targets/` (coverage-guided, nightly); the stable test
//! `engine/tests/fuzz_oracles.rs` runs them in CI over the seeds in
//! `fuzz/seeds/<target>/`, inputs that once failed
//! (`fuzz/regressions/<target>/`) and deterministic mutations of both.
//!
//! Targets whose property is about reads split at arbitrary points take
//! the split step from the first byte.

// Explicit paths: `engine/tests/fuzz_oracles.rs` includes this file as a
// module of its own.
#[path = "answers.rs"]
mod answers;
#[path = "config.rs"]
mod config;

pub use answers::{gcp_token, key_auth_decode, provider_answer, retry_after};
pub use config::{admin_resource, config_file, cost_expr, standalone_document};

use bytes::BytesMut;
use ringway::http::body::BodyDecoder;
use ringway::http::{HeadLimits, RequestHead, ResponseFraming, ResponseHead};
use ringway::sse::SseParser;
use ringway::wire::body::TopLevel;
use ringway::wire::json_scan::{string_at, Step};
use ringway::wire::{
    build_request, Api, ClientBody, ModelOptions, StreamObservations, StreamTransform, Wire,
};

/// An oracle: panics when its property does not hold for the input.
pub type Oracle = fn(&[u8]);

/// Every oracle by its cargo-fuzz target name.
pub const TARGETS: &[(&str, Oracle)] = &[
    ("request_head", request_head),
    ("response_head", response_head),
    ("chunked_body", chunked_body),
    ("sse_stream", sse_stream),
    ("client_body", client_body),
    ("json_scan", json_scan),
    ("redis_reply", redis_reply),
    ("condition", condition),
    ("config_file", config_file),
    ("admin_resource", admin_resource),
    ("standalone_document", standalone_document),
    ("cost_expr", cost_expr),
    ("retry_after", retry_after),
    ("key_auth_decode", key_auth_decode),
    ("provider_answer", provider_answer),
    ("gcp_token", gcp_token),
];

/// The split step (first byte, at least 1) and the rest.
fn step_and_data(input: &[u8]) -> (usize, &[u8]) {
    match input.split_first() {
        Some((s, rest)) => (usize::from((*s).max(1)), rest),
        None => (1, input),
    }
}

/// Parses `data` as JSON by the grammar: serde_json also refuses numbers
/// beyond f64 and unpaired surrogate escapes (`\ud800`), which the
/// grammar allows and the gateway passes on as sent. Surrogate escapes
/// are read as `\u0041` (same length, so positions hold); a number out
/// of range counts as valid (`Ok(None)`).
fn parse_by_grammar(data: &[u8]) -> Result<Option<serde_json::Value>, serde_json::Error> {
    let mut text = data.to_vec();
    let mut i = 0;
    while i + 1 < text.len() {
        if text[i] != b'\\' {
            i += 1;
            continue;
        }
        let hex = text.get(i + 2..i + 6).unwrap_or_default();
        let surrogate = text[i + 1] == b'u'
            && hex.len() == 4
            && hex.iter().all(u8::is_ascii_hexdigit)
            && hex[0].eq_ignore_ascii_case(&b'd')
            && matches!(hex[1].to_ascii_lowercase(), b'8'..=b'9' | b'a'..=b'f');
        if surrogate {
            text[i + 2..i + 6].copy_from_slice(b"0041");
        }
        // Past the escaped character: `\\ud800` is a backslash, then text.
        i += 2;
    }
    match serde_json::from_slice(&text) {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.to_string().contains("number out of range") => Ok(None),
        Err(e) => Err(e),
    }
}

/// A client's request head: parsed or refused, and what a parsed head
/// hands out lies within the bytes read.
pub fn request_head(data: &[u8]) {
    let Ok(head) = RequestHead::parse(
        bytes::Bytes::copy_from_slice(data),
        &HeadLimits::default(),
        Vec::new(),
    ) else {
        return;
    };
    let _ = (head.path(), head.target(), head.query(), head.host());
    let _ = (head.host_with_port(), head.has_body());
    for (n, v) in head.header_pairs() {
        assert!(n.len() + v.len() <= data.len());
        let _ = head.header(std::str::from_utf8(n).unwrap_or("x"));
    }
}

/// An upstream's response head, answering a HEAD request or not.
pub fn response_head(data: &[u8]) {
    let head_request = data.first().is_some_and(|b| b & 1 == 1);
    let _ = ResponseHead::parse(
        bytes::Bytes::copy_from_slice(data),
        head_request,
        100,
        Vec::new(),
    );
}

/// (data, ended, failed) of a chunked body fed in `pieces`.
fn decode_chunked(pieces: &[&[u8]]) -> (Vec<u8>, bool, bool) {
    let mut dec = BodyDecoder::new(ResponseFraming::Chunked);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for p in pieces {
        buf.extend_from_slice(p);
        match dec.decode(&mut buf, |d| out.extend_from_slice(d)) {
            Ok(true) => return (out, true, false),
            Ok(false) => {}
            Err(_) => return (out, false, true),
        }
    }
    (out, false, false)
}

/// A chunked body decodes the same in one read as split across reads.
pub fn chunked_body(input: &[u8]) {
    let (step, data) = step_and_data(input);
    let whole = decode_chunked(&[data]);
    let pieces: Vec<&[u8]> = data.chunks(step).collect();
    let split = decode_chunked(&pieces);
    // An error found in one read may be found later (or, for a line that
    // is too long, only once enough bytes are in) when split; the data
    // before it and whether the body ended are the same.
    assert_eq!(whole.1, split.1, "end differs");
    assert_eq!(whole.2, split.2, "error differs");
    if !whole.2 {
        assert_eq!(whole.0, split.0, "data differs");
    }
}

type Event = (Option<Vec<u8>>, Vec<u8>);

fn sse_events(pieces: &[&[u8]]) -> (Vec<Event>, bool) {
    let mut p = SseParser::new();
    let mut out = Vec::new();
    for piece in pieces {
        if p.feed(piece, |e| {
            out.push((e.event.map(<[u8]>::to_vec), e.data.to_vec()))
        })
        .is_err()
        {
            return (out, true);
        }
    }
    p.finish(|e| out.push((e.event.map(<[u8]>::to_vec), e.data.to_vec())));
    (out, false)
}

/// An upstream event stream: the same events in one read as split across
/// reads, and the stream transform (every format direction, with text
/// collection, and the end of a body without its end marker) takes any
/// bytes without panicking.
pub fn sse_stream(input: &[u8]) {
    let (step, data) = step_and_data(input);
    let pieces: Vec<&[u8]> = data.chunks(step).collect();
    let whole = sse_events(&[data]);
    let split = sse_events(&pieces);
    if !whole.1 && !split.1 {
        assert_eq!(whole.0, split.0);
    }
    for from in [Wire::OpenAi, Wire::Anthropic, Wire::Responses] {
        for to in [Wire::OpenAi, Wire::Anthropic, Wire::Responses] {
            let mut t = StreamTransform::new(from, to, step % 2 == 0).collecting_text();
            let mut obs = StreamObservations::default();
            let mut out = Vec::new();
            for piece in &pieces {
                if t.feed(piece, &mut out, &mut obs).is_err() {
                    break;
                }
            }
            let _ = t.finish(&mut out, &mut obs);
            t.end_of_body(&mut out, &mut obs);
            t.error_event("x", &mut out);
        }
    }
}

/// A client's JSON body: whatever the gateway accepts, every body it
/// builds for an instance (every format, chat, embeddings or the
/// Responses API, with or without options, stream settings forced or
/// not) is valid JSON.
pub fn client_body(data: &[u8]) {
    let mut options = serde_json::Map::new();
    options.insert("model".into(), serde_json::json!("m"));
    options.insert("max_tokens".into(), serde_json::json!(5));
    let options = [
        ModelOptions::new(serde_json::Map::new()),
        ModelOptions::new(options),
    ];
    for from in [Wire::OpenAi, Wire::Anthropic, Wire::Responses] {
        let Ok(body) = ClientBody::parse(from, bytes::Bytes::copy_from_slice(data)) else {
            continue;
        };
        for to in [Wire::OpenAi, Wire::Anthropic, Wire::Responses] {
            for api in [Api::Chat, Api::Embeddings, Api::Responses] {
                for opts in &options {
                    for force in [false, true] {
                        let Ok(out) = build_request(from, to, api, &body, opts, force) else {
                            continue;
                        };
                        if let Err(e) = parse_by_grammar(&out) {
                            panic!(
                                "{from:?}->{to:?} {api:?}: invalid JSON built ({e}): {}",
                                String::from_utf8_lossy(&out)
                            );
                        }
                    }
                }
            }
        }
    }
}

const CONTENT_PATH: &[Step] = &[
    Step::Key("choices"),
    Step::First,
    Step::Key("delta"),
    Step::Key("content"),
];

/// The validating top-level scan and the path scan, differential against
/// a full `serde_json` parse.
pub fn json_scan(data: &[u8]) {
    let scanned = TopLevel::scan(data);
    let found = string_at(data, CONTENT_PATH);
    let Ok(text) = std::str::from_utf8(data) else {
        // JSON text is UTF-8: a document with any other byte is refused,
        // wherever it is (strings are checked, and outside them a byte
        // that is not ASCII is a syntax error).
        assert!(scanned.is_err(), "accepted a document that is not UTF-8");
        return;
    };
    let parsed = parse_by_grammar(data);
    let is_object = match &parsed {
        Ok(Some(v)) => Some(v.is_object()),
        // A number out of range leaves the kind of value unknown.
        Ok(None) => None,
        Err(_) => Some(false),
    };
    if let Some(is_object) = is_object {
        assert_eq!(
            scanned.is_ok(),
            is_object,
            "scan {scanned:?} vs serde {parsed:?}"
        );
    }
    if let Ok(Some(v)) = &parsed {
        let by_tree = v
            .get("choices")
            .and_then(|c| c.get(0))
            .and_then(|c| c.get("delta"))
            .and_then(|d| d.get("content"))
            .and_then(serde_json::Value::as_str);
        // A full parse keeps the last of repeated keys and matches keys
        // written with escapes; the scan takes the first and does not.
        // Compare where neither can happen.
        let once = |k: &str| text.matches(k).count() <= 1;
        if once("\"choices\"") && once("\"delta\"") && once("\"content\"") && !text.contains("\\u")
        {
            assert_eq!(found.as_deref(), by_tree);
        }
    }
}

/// A Redis reply: parsed, incomplete or refused, never claiming more
/// bytes than it was given.
pub fn redis_reply(data: &[u8]) {
    if let Ok(Some((_, used))) = ringway::redis::resp::parse(data) {
        assert!(used <= data.len());
    }
}

/// A `_meta.filter` condition (config JSON, then a NUL, then the bytes
/// every set variable holds): compiling any JSON and evaluating any
/// variable values never panics, and `["!AND", rule, rule]` is the
/// negation of `rule`.
pub fn condition(input: &[u8]) {
    use ringway::config::FieldPath;
    use ringway::http::expr::Expr;
    use std::borrow::Cow;
    let (json, value) = match input.iter().position(|&b| b == 0) {
        Some(i) => (&input[..i], &input[i + 1..]),
        None => (input, &input[input.len()..]),
    };
    let Ok(rule) = serde_json::from_slice::<serde_json::Value>(json) else {
        return;
    };
    let at = FieldPath::root().field("filter");
    let Ok(expr) = Expr::compile(&rule, &at) else {
        return;
    };
    // Names of a length divisible by 3 are unset; the rest hold `value`.
    let var = |name: &str| (name.len() % 3 != 0).then_some(Cow::Borrowed(value));
    let holds = expr.eval(&var);
    if rule.as_array().is_some_and(|l| !l.is_empty()) {
        let negated = serde_json::json!(["!AND", rule, rule]);
        let not = Expr::compile(&negated, &at).expect("a valid rule stays valid nested");
        assert_eq!(not.eval(&var), !holds, "{negated}");
    }
}
