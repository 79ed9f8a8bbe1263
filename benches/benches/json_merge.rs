//! Merging an instance's `options` (and forced `stream_options`) into a
//! chat body: ringway's summarize + splice on the original bytes (which
//! validates the whole body), against the obvious alternative, a full
//! `serde_json::Value` round trip. Bodies: one long prompt string (1 and
//! 32 KiB) and a coding agent's 32 KiB conversation.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ringway::wire::{build_request, Api, ClientBody, ModelOptions, Wire};
use serde_json::{json, Map, Value};

fn body(words: usize) -> Vec<u8> {
    let text: String = (0..words).map(|i| format!("word{i} ")).collect();
    json!({
        "model": "client-model",
        "stream": true,
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": text},
        ],
    })
    .to_string()
    .into_bytes()
}

/// A coding agent's request (`benches/payloads/agent-32k.json`): a system
/// prompt, tool definitions and 100 turns of messages, tool calls with
/// escaped JSON arguments and tool results with code, in several scripts.
/// Escapes, short strings and text that is not ASCII, as real bodies have.
const AGENT: &[u8] = include_bytes!("../payloads/agent-32k.json");

fn value_merge(body: &[u8], options: &Map<String, Value>) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(body).expect("json");
    let o = v.as_object_mut().expect("object");
    for (k, x) in options {
        o.insert(k.clone(), x.clone());
    }
    o.insert("stream_options".into(), json!({"include_usage": true}));
    serde_json::to_vec(&v).expect("serialize")
}

fn merge(c: &mut Criterion) {
    let mut options = Map::new();
    options.insert("model".into(), json!("gpt-4"));
    options.insert("max_tokens".into(), json!(50));
    let opts = ModelOptions::new(options.clone());
    let mut g = c.benchmark_group("options_merge");
    let bodies = [
        ("1KiB", body(120)),
        ("32KiB", body(4000)),
        ("agent-32KiB", AGENT.to_vec()),
    ];
    for (label, b) in bodies {
        g.throughput(Throughput::Bytes(b.len() as u64));
        g.bench_with_input(BenchmarkId::new("splice", label), &b, |bench, b| {
            bench.iter(|| {
                let body = ClientBody::parse(
                    Wire::OpenAi,
                    bytes::Bytes::copy_from_slice(std::hint::black_box(b)),
                )
                .expect("parse");
                let out = build_request(Wire::OpenAi, Wire::OpenAi, Api::Chat, &body, &opts, true)
                    .expect("build");
                out.len()
            })
        });
        g.bench_with_input(BenchmarkId::new("serde_value", label), &b, |bench, b| {
            bench.iter(|| value_merge(std::hint::black_box(b), &options).len())
        });
    }
    g.finish();
}

criterion_group!(benches, merge);
criterion_main!(benches);
