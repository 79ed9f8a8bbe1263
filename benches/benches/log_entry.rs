//! What credential redaction adds where log entries are built: the
//! access log line (its `uri`), the loggers' full log (headers, query,
//! URL) and `meta_format: origin`'s raw head, for the OpenAI SDK's chat
//! request with its `Authorization`, with a query string carrying a key
//! (`key_in_query`) and without a query (`no_query`), each with the
//! snapshot's redaction and with `log_redaction` off.

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use ringway::exchange::ctx::{RequestCtx, RequestType};
use ringway::http::{HeadLimits, RequestHead};
use ringway::observe::access_log::format_line;
use ringway::observe::entry::{original_request, EntryOptions};
use ringway::observe::full_log::full_log;
use ringway::observe::redact::Redaction;

/// What the official OpenAI Python SDK sends for a chat completion, with
/// a gateway key in the query as some clients send it.
const CHAT_HEAD: &[u8] = b"POST /v1/chat/completions?apikey=john-key&trace=1 HTTP/1.1\r\n\
Host: 127.0.0.1:9080\r\n\
Accept-Encoding: gzip, deflate\r\n\
Connection: keep-alive\r\n\
Accept: application/json\r\n\
Content-Type: application/json\r\n\
User-Agent: OpenAI/Python 1.54.4\r\n\
X-Stainless-Lang: python\r\n\
X-Stainless-Package-Version: 1.54.4\r\n\
X-Stainless-OS: Linux\r\n\
X-Stainless-Arch: x64\r\n\
X-Stainless-Runtime: CPython\r\n\
X-Stainless-Runtime-Version: 3.11.7\r\n\
Authorization: Bearer sk-proj-0123456789abcdefghijklmnopqrstuvwxyz\r\n\
X-Stainless-Async: false\r\n\
x-stainless-retry-count: 0\r\n\
Content-Length: 123\r\n\r\n";

fn entries(c: &mut Criterion) {
    let parse = |raw: &'static [u8]| {
        RequestHead::parse(Bytes::from_static(raw), &HeadLimits::default(), Vec::new())
            .expect("valid head")
    };
    let with_key = parse(CHAT_HEAD);
    let plain_raw: &'static [u8] = Box::leak(
        String::from_utf8_lossy(CHAT_HEAD)
            .replacen("?apikey=john-key&trace=1", "", 1)
            .into_bytes()
            .into_boxed_slice(),
    );
    let plain = parse(plain_raw);
    let mut ctx = RequestCtx::new(
        "127.0.0.1:5000".parse().expect("addr"),
        std::time::Instant::now(),
    );
    ctx.status = 200;
    ctx.request_type = RequestType::AiChat;
    ctx.llm.model = Some("gpt-4o-mini".into());
    ctx.llm.prompt_tokens = 23;
    ctx.llm.completion_tokens = 8;
    // The built-in names plus key-auth's defaults, as a snapshot compiles them.
    let on = Redaction::new(["apikey"], ["apikey"]);
    let off = Redaction::off();
    let opts = EntryOptions::default();
    let mut g = c.benchmark_group("log_entry");
    for (name, r) in [("redacted", &on), ("log_redaction_off", &off)] {
        for (what, head) in [("key_in_query", &with_key), ("no_query", &plain)] {
            g.bench_function(format!("access_log_line/{what}/{name}"), |b| {
                let mut out = Vec::with_capacity(1024);
                b.iter(|| {
                    out.clear();
                    format_line(&mut out, std::hint::black_box(head), &ctx, r);
                    out.len()
                })
            });
            g.bench_function(format!("full_log/{what}/{name}"), |b| {
                b.iter(|| full_log(std::hint::black_box(head), &ctx, &opts, r).len())
            });
        }
        g.bench_function(format!("origin/key_in_query/{name}"), |b| {
            b.iter(|| original_request(std::hint::black_box(&with_key), &ctx, &opts, r).len())
        });
    }
    g.finish();
}

criterion_group!(benches, entries);
criterion_main!(benches);
