//! Relaying an instance's answer to the client, in the client's format.
//!
//! JSON answers are read completely first (they are small), converted when
//! the instance speaks another format, and sent with their usage recorded;
//! a failure while reading them still allows fallback, since the client has
//! seen nothing. SSE answers are streamed: each read is decoded, passed
//! through the stream transform (which finds the first token and the usage
//! report, and converts formats), and written as one chunk. Quiet streams
//! get comment heartbeats; a client that leaves cancels the upstream; an
//! upstream that fails mid-stream ends the client stream with an SSE error
//! event and a clean end, never a silent truncation.

use std::time::{Duration, Instant};

use bytes::BytesMut;

use super::attempt::Answered;
use super::instance::Instance;
use super::request::LlmRequest;
use super::AiProxyMulti;
use crate::http::body::BodyDecoder;
use crate::http::chunked::{write_chunk_header, LAST_CHUNK};
use crate::http::headers::is_hop_by_hop;
use crate::http::write::{push_header, push_status_line, push_u64};
use crate::http::ResponseHead;
use crate::net::{self, Io};
use crate::providers::wire::{
    convert_error, convert_response, StreamObservations, StreamTransform,
};
use crate::proxy::ProxyError;
use crate::server::conn::ClientConn;
use crate::server::ctx::RequestCtx;
use crate::server::worker::Worker;

/// Facts about the answering attempt, for headers and logs.
pub struct AnswerMeta<'a> {
    pub inst: &'a Instance,
    pub attempts: u32,
    pub request_started: Instant,
    pub attempt_started: Instant,
    /// The instance's token budget before this request, when
    /// `ai-rate-limiting` shows quota headers.
    pub quota: Option<crate::plugins::ai_rate_limiting::Quota>,
    /// The `ai-rate-limiting` in force: local budgets are charged before
    /// the answer's last bytes leave (see [`charge_local`]).
    pub limiter: Option<&'a crate::plugins::ai_rate_limiting::AiRateLimiting>,
}

/// Charges the usage seen so far to a local token budget.
fn charge_local(meta: &AnswerMeta<'_>, ctx: &RequestCtx) {
    if let Some(rl) = meta.limiter {
        rl.charge_local(
            &meta.inst.name,
            ctx.llm.prompt_tokens,
            ctx.llm.completion_tokens,
        );
    }
}

/// How relaying ended.
pub enum Relayed {
    /// The client has its answer; whether the connection stays open.
    Done(bool),
    /// Nothing was sent to the client yet: the caller may fall back.
    NotSent(ProxyError),
}

/// Largest non-streaming answer held in memory.
const MAX_JSON_ANSWER: usize = 64 * 1024 * 1024;

#[allow(clippy::too_many_arguments)]
pub async fn relay(
    w: &Worker,
    c: &mut ClientConn,
    ctx: &mut RequestCtx,
    plugin: &AiProxyMulti,
    req: &LlmRequest,
    answered: Answered,
    meta: AnswerMeta<'_>,
    keep_alive: bool,
    http10: bool,
) -> Relayed {
    let status = answered.head.status;
    ctx.upstream_status = Some(status);
    ctx.upstream_addr = Some(answered.up.key.addr);
    ctx.llm.instance = Some(meta.inst.name.clone());
    ctx.llm.attempts = meta.attempts;
    if ctx.llm.model.is_none() {
        ctx.llm.model = meta.inst.model.as_deref().map(str::to_owned);
    }
    let (limiter, inst) = (meta.limiter, meta.inst);
    let relayed = if (200..300).contains(&status) && answered.head.is_event_stream() {
        ctx.request_type = crate::server::ctx::RequestType::AiStream;
        stream(w, c, ctx, plugin, req, answered, meta, keep_alive, http10).await
    } else {
        json(w, c, ctx, plugin, req, answered, meta, keep_alive).await
    };
    // Local budgets were charged before the last bytes (charge_local);
    // a Redis one is charged now that the answer is out.
    if let (Relayed::Done(_), Some(rl)) = (&relayed, limiter) {
        rl.charge_remote(&inst.name, ctx.llm.prompt_tokens, ctx.llm.completion_tokens)
            .await;
    }
    relayed
}

/// Headers every AI answer carries: which instance answered, after how
/// many attempts, and the gateway's own time.
fn ringway_headers(out: &mut Vec<u8>, meta: &AnswerMeta<'_>, upstream_time: Duration) {
    push_header(out, b"X-Ringway-Instance", meta.inst.name.as_bytes());
    out.extend_from_slice(b"X-Ringway-Attempts: ");
    push_u64(out, u64::from(meta.attempts));
    out.extend_from_slice(b"\r\nX-Ringway-Overhead-Us: ");
    let total = meta.request_started.elapsed();
    push_u64(out, total.saturating_sub(upstream_time).as_micros() as u64);
    out.extend_from_slice(b"\r\n");
    if let Some(q) = &meta.quota {
        crate::plugins::ai_rate_limiting::write_quota_headers(out, &meta.inst.name, q);
    }
}

/// Upstream headers worth passing on (request ids, provider rate-limit
/// hints), without framing or hop-by-hop ones.
fn pass_headers(out: &mut Vec<u8>, head: &ResponseHead, skip_type: bool) {
    for (name, value) in head.header_pairs() {
        if is_hop_by_hop(name)
            || name.eq_ignore_ascii_case(b"content-length")
            || name.eq_ignore_ascii_case(b"content-encoding")
            || (skip_type && name.eq_ignore_ascii_case(b"content-type"))
        {
            continue;
        }
        push_header(out, name, value);
    }
}

#[allow(clippy::too_many_arguments)]
async fn json(
    w: &Worker,
    c: &mut ClientConn,
    ctx: &mut RequestCtx,
    plugin: &AiProxyMulti,
    req: &LlmRequest,
    answered: Answered,
    meta: AnswerMeta<'_>,
    keep_alive: bool,
) -> Relayed {
    let Answered {
        mut up,
        head,
        sent_at,
    } = answered;
    let timeout = plugin.transport.timeout;
    let mut dec = BodyDecoder::new(head.framing);
    let mut body: Vec<u8> = Vec::new();
    loop {
        let done = match dec.decode(&mut c.ubuf, |d| body.extend_from_slice(d)) {
            Ok(d) => d,
            Err(_) => return Relayed::NotSent(ProxyError::BadResponse("malformed body")),
        };
        if done {
            break;
        }
        if body.len() > MAX_JSON_ANSWER {
            return Relayed::NotSent(ProxyError::BadResponse("answer too large"));
        }
        match fill(&mut up.io, &mut c.ubuf, timeout).await {
            Ok(0) if dec.eof_is_end() => break,
            Ok(0) => return Relayed::NotSent(ProxyError::UpstreamClosed),
            Ok(_) => {}
            Err(e) => return Relayed::NotSent(e),
        }
    }
    let upstream_time = sent_at.elapsed();
    ctx.upstream_response_time = Some(upstream_time);
    let reusable = c.ubuf.is_empty() && head.keep_alive && dec.is_done();
    let status = head.status;
    let from = meta.inst.provider.wire;
    let converted_body = if (200..300).contains(&status) {
        match convert_response(from, req.wire, req.api, &body) {
            Ok(conv) => {
                if let Some(u) = conv.usage {
                    ctx.llm.prompt_tokens = u.prompt_tokens;
                    ctx.llm.completion_tokens = u.completion_tokens;
                }
                if conv.model.is_some() {
                    ctx.llm.model = conv.model;
                }
                conv.body
            }
            Err(e) => {
                return Relayed::NotSent(ProxyError::BadResponse(leak_reason(&e.to_string())))
            }
        }
    } else if from != req.wire {
        Some(convert_error(from, req.wire, status, &body))
    } else {
        None
    };
    let out_body: &[u8] = converted_body.as_deref().unwrap_or(&body);
    if reusable {
        w.pool.put(up, &plugin.transport.keepalive);
    }
    let wbuf = &mut c.wbuf;
    wbuf.clear();
    push_status_line(wbuf, status);
    pass_headers(wbuf, &head, converted_body.is_some());
    if converted_body.is_some() {
        push_header(wbuf, b"Content-Type", b"application/json");
    }
    wbuf.extend_from_slice(b"Content-Length: ");
    push_u64(wbuf, out_body.len() as u64);
    wbuf.extend_from_slice(b"\r\n");
    ringway_headers(wbuf, &meta, upstream_time);
    if !keep_alive {
        wbuf.extend_from_slice(b"Connection: close\r\n");
    }
    wbuf.extend_from_slice(b"\r\n");
    wbuf.extend_from_slice(out_body);
    ctx.status = status;
    ctx.bytes_sent = out_body.len() as u64;
    charge_local(&meta, ctx);
    Relayed::Done(c.flush_wbuf(w.gateway.timeouts.send).await.is_ok() && keep_alive)
}

/// Error texts are static in [`ProxyError`]; conversion failures are rare
/// enough to keep a generic one.
fn leak_reason(_detail: &str) -> &'static str {
    "answer could not be converted to the client's format"
}

#[allow(clippy::too_many_arguments)]
async fn stream(
    w: &Worker,
    c: &mut ClientConn,
    ctx: &mut RequestCtx,
    plugin: &AiProxyMulti,
    req: &LlmRequest,
    answered: Answered,
    meta: AnswerMeta<'_>,
    keep_alive: bool,
    http10: bool,
) -> Relayed {
    let Answered { up, head, sent_at } = answered;
    let send_timeout = w.gateway.timeouts.send;
    let chunked = !http10;
    let keep = keep_alive && chunked;
    {
        let wbuf = &mut c.wbuf;
        wbuf.clear();
        push_status_line(wbuf, head.status);
        pass_headers(wbuf, &head, true);
        push_header(wbuf, b"Content-Type", b"text/event-stream");
        push_header(wbuf, b"Cache-Control", b"no-cache");
        push_header(wbuf, b"X-Accel-Buffering", b"no");
        if chunked {
            push_header(wbuf, b"Transfer-Encoding", b"chunked");
        }
        ringway_headers(wbuf, &meta, sent_at.elapsed());
        if !keep {
            wbuf.extend_from_slice(b"Connection: close\r\n");
        }
        wbuf.extend_from_slice(b"\r\n");
    }
    ctx.status = head.status;
    if c.watch.is_none() {
        c.watch = crate::net::PeerWatch::new(c.raw_fd);
    }
    // The client did not ask for OpenAI usage reporting: drop (or do not
    // generate) the usage chunk; usage is still recorded.
    let strip = !req.body.summary.include_usage;
    let mut transform = StreamTransform::new(meta.inst.provider.wire, req.wire, strip);
    let mut obs = StreamObservations::default();
    let mut dec = BodyDecoder::new(head.framing);
    let upstream_keep_alive = head.keep_alive;
    // The head's bytes share the read buffer's allocation: let both go
    // while the stream waits (and release the client's empty read buffer),
    // so an open stream holds little more than its state.
    drop(head);
    if c.rbuf.is_empty() {
        c.rbuf = BytesMut::new();
    }
    // Grown by the first chunks, not reserved up front: a stream waiting
    // for its first token should hold next to nothing.
    let mut decoded: Vec<u8> = Vec::new();
    let mut out: Vec<u8> = Vec::new();
    let timeout = plugin.transport.timeout;
    let heartbeat = plugin.sse_heartbeat.unwrap_or(Duration::from_secs(86_400));
    let mut upstream_error: Option<ProxyError> = None;
    let UpstreamConnParts {
        io,
        key,
        served,
        reused,
    } = UpstreamConnParts::from(up);
    let mut io = Some(io);
    let mut ubuf = std::mem::take(&mut c.ubuf);
    let mut last_upstream = Instant::now();
    let mut at_eof = false;

    loop {
        decoded.clear();
        let done = match dec.decode(&mut ubuf, |d| decoded.extend_from_slice(d)) {
            Ok(d) => d,
            Err(_) => {
                upstream_error = Some(ProxyError::BadResponse("malformed chunked body"));
                true
            }
        };
        if !decoded.is_empty() {
            let had_token = obs.first_token;
            if transform.feed(&decoded, &mut out, &mut obs).is_err() {
                upstream_error = Some(ProxyError::BadResponse("malformed event stream"));
            }
            if !had_token && obs.first_token {
                ctx.llm.ttft = Some(meta.attempt_started.elapsed());
                ctx.llm.ttft_from_request = Some(meta.request_started.elapsed());
            }
        }
        if done || at_eof || upstream_error.is_some() {
            let _ = transform.finish(&mut out, &mut obs);
            break;
        }
        if !out.is_empty() || !c.wbuf.is_empty() {
            frame(&mut c.wbuf, &out, chunked);
            ctx.bytes_sent += out.len() as u64;
            out.clear();
            if c.flush_wbuf(send_timeout).await.is_err() {
                return finish_abandoned(ctx, &obs, &meta);
            }
        }
        // Wait for upstream bytes, sending heartbeats while it is quiet and
        // stopping at once if the client leaves.
        let Some(conn) = io.take() else { break };
        let mut read = std::pin::pin!(read_owned(conn, std::mem::take(&mut ubuf)));
        let (conn, res, buf) = loop {
            let wait = timeout
                .saturating_sub(last_upstream.elapsed())
                .min(heartbeat);
            let ev = {
                let watch = &c.watch;
                monoio::select! {
                    r = &mut read => Ev::Read(r),
                    _ = crate::timer::sleep(wait) => Ev::Tick,
                    _ = client_closed(watch) => Ev::Gone,
                }
            };
            match ev {
                Ev::Read(r) => break r,
                // Dropping the read drops the upstream connection: cancelled.
                Ev::Gone => return finish_abandoned(ctx, &obs, &meta),
                Ev::Tick if last_upstream.elapsed() >= timeout => {
                    upstream_error = Some(ProxyError::UpstreamTimeout);
                    break (None, Ok(0), BytesMut::new());
                }
                Ev::Tick => {
                    frame(&mut c.wbuf, b": ping\n\n", chunked);
                    if c.flush_wbuf(send_timeout).await.is_err() {
                        return finish_abandoned(ctx, &obs, &meta);
                    }
                }
            }
        };
        io = conn;
        ubuf = buf;
        last_upstream = Instant::now();
        match res {
            Ok(0) if upstream_error.is_none() => {
                at_eof = true;
                if !dec.eof_is_end() {
                    upstream_error = Some(ProxyError::UpstreamClosed);
                }
            }
            Ok(_) => {}
            Err(e) => upstream_error = Some(ProxyError::UpstreamIo(e)),
        }
    }
    ctx.upstream_response_time = Some(sent_at.elapsed());
    record(ctx, &obs);
    if let Some(e) = &upstream_error {
        tracing::warn!(instance = %meta.inst.name, "stream failed mid-way: {e}");
        meta.inst.failed(&plugin.passive);
        transform.error_event(&e.to_string(), &mut out);
    } else if dec.is_done() && ubuf.is_empty() && upstream_keep_alive {
        if let Some(io) = io {
            w.pool.put(
                crate::upstream::UpstreamConn {
                    io,
                    key,
                    served,
                    reused,
                },
                &plugin.transport.keepalive,
            );
        }
    }
    frame(&mut c.wbuf, &out, chunked);
    ctx.bytes_sent += out.len() as u64;
    if chunked {
        c.wbuf.extend_from_slice(LAST_CHUNK);
    }
    c.ubuf = ubuf;
    c.ubuf.clear();
    // After an upstream failure the chunked framing is still intact (error
    // event, then the last chunk), so the client connection stays usable.
    charge_local(&meta, ctx);
    Relayed::Done(
        c.flush_wbuf(send_timeout).await.is_ok() && keep && (chunked || upstream_error.is_none()),
    )
}

/// The parts of an upstream connection, so the stream can own them apart.
struct UpstreamConnParts {
    io: Io,
    key: crate::upstream::PoolKey,
    served: u32,
    reused: bool,
}

impl From<crate::upstream::UpstreamConn> for UpstreamConnParts {
    fn from(u: crate::upstream::UpstreamConn) -> Self {
        UpstreamConnParts {
            io: u.io,
            key: u.key,
            served: u.served,
            reused: u.reused,
        }
    }
}

/// The client left mid-stream: record what was seen, close.
fn finish_abandoned(
    ctx: &mut RequestCtx,
    obs: &StreamObservations,
    meta: &AnswerMeta<'_>,
) -> Relayed {
    record(ctx, obs);
    charge_local(meta, ctx);
    Relayed::Done(false)
}

enum Ev {
    Read((Option<Io>, std::io::Result<usize>, BytesMut)),
    Tick,
    Gone,
}

async fn client_closed(watch: &Option<crate::net::PeerWatch>) {
    match watch {
        Some(w) => w.closed().await,
        None => std::future::pending().await,
    }
}

fn record(ctx: &mut RequestCtx, obs: &StreamObservations) {
    if obs.model.is_some() {
        ctx.llm.model = obs.model.clone();
    }
    if let Some(u) = obs.usage {
        ctx.llm.prompt_tokens = u.prompt_tokens;
        ctx.llm.completion_tokens = u.completion_tokens;
    }
}

/// Appends `data` to `wbuf` as one chunk (or raw for HTTP/1.0).
fn frame(wbuf: &mut Vec<u8>, data: &[u8], chunked: bool) {
    if data.is_empty() {
        return;
    }
    if chunked {
        write_chunk_header(wbuf, data.len());
        wbuf.extend_from_slice(data);
        wbuf.extend_from_slice(b"\r\n");
    } else {
        wbuf.extend_from_slice(data);
    }
}

/// A read that owns its connection and buffer, so it can be raced against
/// timers without the risk of losing bytes: it is either awaited to
/// completion or dropped together with the connection.
async fn read_owned(mut io: Io, buf: BytesMut) -> (Option<Io>, std::io::Result<usize>, BytesMut) {
    let (res, buf) = net::read_more(&mut io, buf).await;
    (Some(io), res, buf)
}

async fn fill(io: &mut Io, ubuf: &mut BytesMut, timeout: Duration) -> Result<usize, ProxyError> {
    let buf = std::mem::take(ubuf);
    match crate::timer::timeout(timeout, net::read_more(io, buf)).await {
        Err(_) => Err(ProxyError::UpstreamTimeout),
        Ok((res, buf)) => {
            *ubuf = buf;
            res.map_err(ProxyError::UpstreamIo)
        }
    }
}
