//! Request-head parsing: ringway's `RequestHead::parse` (head-end search,
//! bare-LF check, httparse, framing and smuggling checks, header spans)
//! against bare `httparse` on the same bytes, the floor it builds on.

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ringway::http::{find_head_end, HeadLimits, RequestHead};

/// What the official OpenAI Python SDK sends for a chat completion.
const CHAT_HEAD: &[u8] = b"POST /v1/chat/completions HTTP/1.1\r\n\
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

fn parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("chat_request_head");
    g.throughput(Throughput::Bytes(CHAT_HEAD.len() as u64));
    let limits = HeadLimits::default();
    let bytes = Bytes::from_static(CHAT_HEAD);
    g.bench_function("ringway_parse", |b| {
        let mut scratch = Vec::with_capacity(32);
        b.iter(|| {
            let end = find_head_end(std::hint::black_box(&bytes), 0).expect("complete head");
            let head =
                RequestHead::parse(bytes.slice(..end), &limits, std::mem::take(&mut scratch))
                    .expect("valid head");
            let n = head.headers.len();
            scratch = head.recycle();
            n
        })
    });
    g.bench_function("httparse_baseline", |b| {
        b.iter(|| {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut req = httparse::Request::new(&mut headers);
            let status = req
                .parse(std::hint::black_box(CHAT_HEAD))
                .expect("valid head");
            status.is_complete()
        })
    });
    g.finish();
}

criterion_group!(benches, parse);
criterion_main!(benches);
