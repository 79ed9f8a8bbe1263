//! Scanning LLM event streams: the SSE parser alone, and the full stream
//! transform the relay runs (OpenAI pass-through with observation, and
//! Anthropic → OpenAI conversion), in bytes per second.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ringway::sse::SseParser;
use ringway::wire::{StreamObservations, StreamTransform, Wire};

fn openai_stream(tokens: usize) -> Vec<u8> {
    let mut s = String::new();
    for i in 0..tokens {
        s.push_str(&format!(
            "data: {{\"id\":\"chatcmpl-abc\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"gpt-4o\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"tok{i} \"}},\"logprobs\":null,\"finish_reason\":null}}],\"usage\":null}}\n\n"
        ));
    }
    s.push_str("data: {\"id\":\"chatcmpl-abc\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[],\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":5,\"total_tokens\":15}}\n\ndata: [DONE]\n\n");
    s.into_bytes()
}

fn anthropic_stream(tokens: usize) -> Vec<u8> {
    let mut s = String::from("event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"model\":\"claude\",\"usage\":{\"input_tokens\":10,\"output_tokens\":1}}}\n\n");
    for i in 0..tokens {
        s.push_str(&format!("event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"tok{i} \"}}}}\n\n"));
    }
    s.push_str("event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":5}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
    s.into_bytes()
}

/// Feeds `data` in network-sized reads.
const READ: usize = 4096;

fn scan(c: &mut Criterion) {
    let openai = openai_stream(5000);
    let anthropic = anthropic_stream(5000);
    let mut g = c.benchmark_group("sse");
    g.throughput(Throughput::Bytes(openai.len() as u64));
    g.bench_function(BenchmarkId::new("parser", "openai"), |b| {
        b.iter(|| {
            let mut p = SseParser::new();
            let mut n = 0usize;
            for piece in openai.chunks(READ) {
                p.feed(piece, |e| n += e.data.len()).expect("parse");
            }
            n
        })
    });
    g.bench_function(BenchmarkId::new("transform", "openai_passthrough"), |b| {
        let mut out = Vec::with_capacity(openai.len());
        b.iter(|| {
            let mut t = StreamTransform::new(Wire::OpenAi, Wire::OpenAi, true);
            let mut obs = StreamObservations::default();
            out.clear();
            for piece in openai.chunks(READ) {
                t.feed(piece, &mut out, &mut obs).expect("feed");
            }
            out.len()
        })
    });
    g.throughput(Throughput::Bytes(anthropic.len() as u64));
    g.bench_function(BenchmarkId::new("transform", "anthropic_to_openai"), |b| {
        let mut out = Vec::with_capacity(anthropic.len() * 2);
        b.iter(|| {
            let mut t = StreamTransform::new(Wire::Anthropic, Wire::OpenAi, false);
            let mut obs = StreamObservations::default();
            out.clear();
            for piece in anthropic.chunks(READ) {
                t.feed(piece, &mut out, &mut obs).expect("feed");
            }
            out.len()
        })
    });
    g.finish();
}

criterion_group!(benches, scan);
criterion_main!(benches);
