//! Reading a stream event's text for `logging.payloads` (one event per
//! token): ringway's path scan, against a typed, borrowed `serde_json` view
//! of the event (what it used before, skipping every other field) and a
//! full `serde_json::Value` parse.

use std::borrow::Cow;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ringway::wire::json_scan::{string_at, Step};
use serde::Deserialize;

/// An OpenAI chunk as OpenAI (and mock-llm) send it, and one with logprobs.
const CHUNKS: &[(&str, &str)] = &[
    (
        "plain",
        r#"{"choices":[{"delta":{"content":"quick "},"finish_reason":null,"index":0,"logprobs":null}],"created":1796370040,"id":"chatcmpl-mock-1-162877","model":"gpt-4o-mini","object":"chat.completion.chunk","system_fingerprint":"mock-mock-1","usage":null}"#,
    ),
    (
        "logprobs",
        r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","system_fingerprint":"fp","choices":[{"index":0,"delta":{"content":" \"quoted\""},"logprobs":{"content":[{"token":" \"quoted\"","logprob":-0.01,"bytes":[32,34],"top_logprobs":[]}]},"finish_reason":null}],"usage":null}"#,
    ),
];

#[derive(Deserialize)]
struct Answer<'a> {
    #[serde(borrow, default)]
    choices: Vec<Choice<'a>>,
}

#[derive(Deserialize)]
struct Choice<'a> {
    #[serde(borrow, default)]
    delta: Option<Content<'a>>,
}

#[derive(Deserialize)]
struct Content<'a> {
    #[serde(borrow, default)]
    content: Option<Cow<'a, str>>,
}

fn typed(data: &[u8]) -> Option<Cow<'_, str>> {
    serde_json::from_slice::<Answer>(data)
        .ok()
        .and_then(|a| a.choices.into_iter().next())
        .and_then(|c| c.delta)
        .and_then(|d| d.content)
}

fn tree(data: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(data).ok()?;
    v.pointer("/choices/0/delta/content")?
        .as_str()
        .map(str::to_owned)
}

const PATH: &[Step] = &[
    Step::Key("choices"),
    Step::First,
    Step::Key("delta"),
    Step::Key("content"),
];

fn event_text(c: &mut Criterion) {
    let mut g = c.benchmark_group("stream_event_text");
    for (label, chunk) in CHUNKS {
        let b = chunk.as_bytes();
        assert_eq!(string_at(b, PATH), typed(b));
        assert_eq!(string_at(b, PATH).map(Cow::into_owned), tree(b));
        g.throughput(Throughput::Bytes(b.len() as u64));
        g.bench_with_input(BenchmarkId::new("path_scan", label), b, |bench, b| {
            bench.iter(|| string_at(std::hint::black_box(b), PATH).map(|s| s.len()))
        });
        g.bench_with_input(BenchmarkId::new("serde_typed", label), b, |bench, b| {
            bench.iter(|| typed(std::hint::black_box(b)).map(|s| s.len()))
        });
        g.bench_with_input(BenchmarkId::new("serde_value", label), b, |bench, b| {
            bench.iter(|| tree(std::hint::black_box(b)).map(|s| s.len()))
        });
    }
    g.finish();
}

criterion_group!(benches, event_text);
criterion_main!(benches);
