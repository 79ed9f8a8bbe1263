//! Relaying an instance's answer to the client, in the client's format.
//!
//! JSON answers are read completely first (they are small), converted when
//! the instance speaks another format, and sent with their usage recorded;
//! a failure while reading them still allows fallback, since the client has
//! seen nothing. SSE answers become a [`StreamJob`](super::stream) that the
//! connection loop runs after the handler has returned.

use std::time::{Duration, Instant};

use bytes::BytesMut;

use super::attempt::Answered;
use super::handler::Call;
use super::instance::Instance;
use super::request::LlmRequest;
use super::stream::StreamJob;
use super::AiProxyMulti;
use crate::exchange::ctx::RequestCtx;
use crate::exchange::ClientConn;
use crate::exchange::ProxyError;
use crate::http::body::BodyDecoder;
use crate::http::headers::is_hop_by_hop;
use crate::http::response::ResponseFraming;
use crate::http::write::{push_header, push_status_line, push_u64};
use crate::http::ResponseHead;
use crate::lane::Lane;
use crate::net::{self, Io};
use crate::plugins::phase::Used;
use crate::plugins::InForce;
use crate::wire::{convert_error, convert_response};

/// Facts about the answering attempt, for headers and logs.
pub struct AnswerMeta<'a> {
    pub inst: &'a Instance,
    pub attempts: u32,
    pub request_started: Instant,
    pub attempt_started: Instant,
    /// The AI-path plugins in force, with what their `before_attempt`
    /// found for this attempt (its `header_filter` shows it).
    pub plugins: InForce<'a>,
}

/// The `on_usage` phase: the usage seen, before the answer's last bytes
/// leave (so the client's next request already sees a local charge).
pub(super) fn on_usage(meta: &AnswerMeta<'_>, ctx: &RequestCtx) {
    if !meta.plugins.is_empty() {
        meta.plugins.on_usage(&meta.inst.name, &Used::of(&ctx.llm));
    }
}

/// The `after_answer` phase: once the answer is out (a remote store never
/// delays it). Callers check [`InForce::wants_after_answer`] first, so a
/// request without such work builds no future for it.
pub(super) async fn after_answer(plugins: &InForce<'_>, inst: &Instance, ctx: &RequestCtx) {
    plugins.after_answer(&inst.name, &Used::of(&ctx.llm)).await;
}

/// How relaying ended.
pub enum Relayed<'a> {
    /// The client has its answer; whether the connection stays open.
    Done(bool),
    /// An event stream: its head is written, the connection loop relays it.
    Stream(Box<StreamJob<'a>>),
    /// Nothing was sent to the client yet: the caller may fall back.
    NotSent(ProxyError),
    /// A probed instance answered that it does not hold the response the
    /// request names (see [`relay`]); nothing was sent.
    NotHeld(Box<Kept>),
}

/// Largest non-streaming answer held in memory.
const MAX_JSON_ANSWER: usize = 64 * 1024 * 1024;

/// Relays an acceptable answer: a stream becomes a [`StreamJob`], JSON
/// is read, converted and sent (`probe`: read a follow-up's error for
/// "not held" first). The answer's plugins come back (with their state)
/// unless a stream took them: a fallback goes on with them, never a copy.
pub async fn relay<'a>(
    call: &Call<'a, '_>,
    c: &mut ClientConn,
    ctx: &mut RequestCtx,
    req: &LlmRequest,
    answered: Answered,
    probe: bool,
    meta: AnswerMeta<'a>,
) -> (Relayed<'a>, InForce<'a>) {
    let status = answered.head.status;
    ctx.upstream_status = Some(status);
    ctx.upstream_addr = Some(answered.up.key.addr);
    ctx.llm.instance = Some(meta.inst.name.clone());
    ctx.llm.attempts = meta.attempts;
    if ctx.llm.model.is_none() {
        ctx.llm.model = meta.inst.model.as_deref().map(str::to_owned);
    }
    if (200..300).contains(&status) && answered.head.is_event_stream() {
        let job = StreamJob::start(call, c, ctx, req, answered, meta);
        return (Relayed::Stream(job), InForce::default());
    }
    let relayed = json(call, c, ctx, req, answered, probe, &meta).await;
    if let Relayed::Done(_) = relayed {
        if meta.plugins.wants_after_answer() {
            after_answer(&meta.plugins, meta.inst, ctx).await;
        }
    }
    (relayed, meta.plugins)
}

/// A non-streamed answer's body, read whole.
pub struct ReadBody {
    pub body: Vec<u8>,
    /// The connection ended exactly at the end of the answer and may go
    /// back to the pool.
    pub reusable: bool,
    pub upstream_time: Duration,
}

/// Reads a non-streamed answer's body whole, within `max_response_bytes`;
/// a failure leaves the client untouched (the caller may fall back).
pub async fn read_body(
    c: &mut ClientConn,
    plugin: &AiProxyMulti,
    inst: &Instance,
    answered: &mut Answered,
) -> Result<ReadBody, ProxyError> {
    let timeout = plugin.transport.timeout;
    let max_bytes = plugin.transport.max_response_bytes;
    let head = &answered.head;
    refuse_declared_length(head, max_bytes, inst)?;
    let mut dec = BodyDecoder::new(head.framing);
    let mut body: Vec<u8> = Vec::new();
    loop {
        let done = dec
            .decode(&mut c.ubuf, |d| body.extend_from_slice(d))
            .map_err(|_| ProxyError::BadResponse("malformed body"))?;
        if within_limits(done, body.len(), max_bytes, inst)? {
            break;
        }
        match fill(&mut answered.up.io, &mut c.ubuf, timeout).await? {
            0 if dec.eof_is_end() => break,
            0 => return Err(ProxyError::UpstreamClosed),
            _ => {}
        }
    }
    Ok(ReadBody {
        body,
        reusable: c.ubuf.is_empty() && answered.head.keep_alive && dec.is_done(),
        upstream_time: answered.sent_at.elapsed(),
    })
}

/// A declared length past `max_response_bytes` is refused before reading.
fn refuse_declared_length(
    head: &ResponseHead,
    max_bytes: u64,
    inst: &Instance,
) -> Result<(), ProxyError> {
    match head.framing {
        ResponseFraming::Length(len) if len > max_bytes => Err(too_large(inst, len)),
        _ => Ok(()),
    }
}

/// A body of `len` bytes read so far (`done`: all of it) within
/// `max_response_bytes` and the memory limit; whether it is complete.
/// (Each reader decodes with its own closure: the relay's decoding stays
/// inlined into it.)
#[inline]
fn within_limits(
    done: bool,
    len: usize,
    max_bytes: u64,
    inst: &Instance,
) -> Result<bool, ProxyError> {
    if len as u64 > max_bytes {
        return Err(too_large(inst, len as u64));
    }
    if !done && len > MAX_JSON_ANSWER {
        return Err(ProxyError::BadResponse("answer too large"));
    }
    Ok(done)
}

/// An answer read whole and not relayed (yet): a "not found" the client
/// gets if no other instance has what it asked for.
pub struct Kept {
    pub instance: std::sync::Arc<str>,
    pub status: u16,
    pub body: Vec<u8>,
    pub addr: std::net::SocketAddr,
}

impl Kept {
    /// Keeps `answered`, its body read (see [`read_body`]); its connection
    /// goes back to the pool when it can.
    pub fn new(
        lane: &Lane,
        plugin: &AiProxyMulti,
        inst: &Instance,
        a: Answered,
        read: ReadBody,
    ) -> Kept {
        let (status, addr) = (a.head.status, a.up.key.addr);
        if read.reusable {
            lane.pool.put(a.up, &plugin.transport.keepalive);
        }
        Kept {
            instance: inst.name.clone(),
            status,
            body: read.body,
            addr,
        }
    }
}

/// Headers every AI answer carries: which instance answered, after how
/// many attempts, and the gateway's own time.
pub(super) fn ringway_headers(out: &mut Vec<u8>, meta: &AnswerMeta<'_>, upstream_time: Duration) {
    push_header(out, b"X-Ringway-Instance", meta.inst.name.as_bytes());
    out.extend_from_slice(b"X-Ringway-Attempts: ");
    push_u64(out, u64::from(meta.attempts));
    out.extend_from_slice(b"\r\nX-Ringway-Overhead-Us: ");
    let total = meta.request_started.elapsed();
    push_u64(out, total.saturating_sub(upstream_time).as_micros() as u64);
    out.extend_from_slice(b"\r\n");
    meta.plugins.header_filter(&meta.inst.name, out);
}

/// Upstream headers worth passing on (request ids, provider rate-limit
/// hints), without framing or hop-by-hop ones, nor those in `ours` (which
/// the gateway writes itself).
pub(super) fn pass_headers(
    out: &mut Vec<u8>,
    head: &ResponseHead,
    ours: &[&[u8]],
    id: Option<(&[u8], &[u8])>,
) {
    for (name, value) in head.header_pairs() {
        if is_hop_by_hop(name)
            || name.eq_ignore_ascii_case(b"content-length")
            || name.eq_ignore_ascii_case(b"content-encoding")
            || ours.iter().any(|o| name.eq_ignore_ascii_case(o))
            || id.is_some_and(|(n, _)| name.eq_ignore_ascii_case(n))
        {
            continue;
        }
        push_header(out, name, value);
    }
    // The request id is ringway's, the one its logs and traces know: a
    // provider's own (OpenAI answers with one) gives way to it.
    if let Some((name, value)) = id {
        push_header(out, name, value);
    }
}

async fn json<'a>(
    call: &Call<'_, '_>,
    c: &mut ClientConn,
    ctx: &mut RequestCtx,
    req: &LlmRequest,
    answered: Answered,
    probe: bool,
    meta: &AnswerMeta<'_>,
) -> Relayed<'a> {
    let (lane, plugin, keep_alive) = (call.lane, call.plugin, call.keep_alive);
    let Answered {
        mut up,
        head,
        sent_at,
    } = answered;
    let timeout = plugin.transport.timeout;
    let max_bytes = plugin.transport.max_response_bytes;
    if let Err(e) = refuse_declared_length(&head, max_bytes, meta.inst) {
        return Relayed::NotSent(e);
    }
    let mut dec = BodyDecoder::new(head.framing);
    let mut body: Vec<u8> = Vec::new();
    loop {
        let done = match dec.decode(&mut c.ubuf, |d| body.extend_from_slice(d)) {
            Ok(d) => d,
            Err(_) => return Relayed::NotSent(ProxyError::BadResponse("malformed body")),
        };
        match within_limits(done, body.len(), max_bytes, meta.inst) {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => return Relayed::NotSent(e),
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
    if probe && super::follow_up::says_not_held(status, &body) {
        let read = ReadBody {
            body,
            reusable,
            upstream_time,
        };
        let answered = Answered { up, head, sent_at };
        return Relayed::NotHeld(Box::new(Kept::new(lane, plugin, meta.inst, answered, read)));
    }
    let converted_body = match convert(plugin, meta, req, ctx, status, &body) {
        Ok(c) => c,
        Err(e) => return Relayed::NotSent(e),
    };
    let out_body: &[u8] = converted_body.as_deref().unwrap_or(&body);
    if let Some(p) = &mut ctx.llm.payloads {
        p.keep_answer(out_body);
    }
    ctx.keep_response(out_body);
    if reusable {
        lane.pool.put(up, &plugin.transport.keepalive);
    }
    let wbuf = &mut c.wbuf;
    let converted = converted_body.is_some();
    write_head(
        wbuf,
        &head,
        converted,
        out_body.len(),
        meta,
        ctx,
        keep_alive,
    );
    wbuf.extend_from_slice(out_body);
    ctx.status = status;
    ctx.bytes_sent = out_body.len() as u64;
    on_usage(meta, ctx);
    Relayed::Done(c.flush_wbuf(lane.gateway.timeouts.send).await.is_ok() && keep_alive)
}

/// A JSON answer in the client's format: a success converted (its usage,
/// model and stored ids recorded), an error respelled; `None` when the
/// body goes out as it came.
#[inline]
fn convert(
    plugin: &AiProxyMulti,
    meta: &AnswerMeta<'_>,
    req: &LlmRequest,
    ctx: &mut RequestCtx,
    status: u16,
    body: &[u8],
) -> Result<Option<Vec<u8>>, ProxyError> {
    let from = meta.inst.wire(req.api);
    if !(200..300).contains(&status) {
        return Ok((from != req.wire).then(|| convert_error(from, req.wire, status, body)));
    }
    let keep_raw_usage = meta.plugins.wants_raw_usage();
    let conv = convert_response(from, req.wire, req.api, body, keep_raw_usage)
        .map_err(|e| ProxyError::BadResponse(leak_reason(&e.to_string())))?;
    ctx.llm.raw_usage = conv.raw_usage;
    if let Some(u) = conv.usage {
        ctx.llm.prompt_tokens = u.prompt_tokens;
        ctx.llm.completion_tokens = u.completion_tokens;
    }
    if conv.model.is_some() {
        ctx.llm.model = conv.model;
    }
    if let Some(stored) = &conv.stored {
        for id in stored.ids() {
            plugin.affinity.remember(id.as_bytes(), meta.inst);
        }
    }
    Ok(conv.body)
}

/// A JSON answer's head: status, the upstream's headers worth passing
/// on, the length of the body (`converted`: its own content type), ours
/// (timings and the request id from `ctx`).
#[inline]
fn write_head(
    wbuf: &mut Vec<u8>,
    head: &ResponseHead,
    converted: bool,
    len: usize,
    meta: &AnswerMeta<'_>,
    ctx: &RequestCtx,
    keep_alive: bool,
) {
    let upstream_time = ctx.upstream_response_time.unwrap_or_default();
    wbuf.clear();
    push_status_line(wbuf, head.status);
    let ours: &[&[u8]] = if converted { &[b"content-type"] } else { &[] };
    pass_headers(wbuf, head, ours, ctx.response_id());
    if converted {
        push_header(wbuf, b"Content-Type", b"application/json");
    }
    wbuf.extend_from_slice(b"Content-Length: ");
    push_u64(wbuf, len as u64);
    wbuf.extend_from_slice(b"\r\n");
    ringway_headers(wbuf, meta, upstream_time);
    if !keep_alive {
        wbuf.extend_from_slice(b"Connection: close\r\n");
    }
    wbuf.extend_from_slice(b"\r\n");
}

/// An answer past `max_response_bytes` (`len`: declared or read so far);
/// the upstream connection is dropped with it, never pooled.
fn too_large(inst: &Instance, len: u64) -> ProxyError {
    crate::observe::metrics::AI_RESPONSES_CUT.inc();
    tracing::warn!(
        instance = %inst.name,
        "aborting AI response: body of {len} bytes or more exceeds max_response_bytes"
    );
    ProxyError::LimitExceeded("upstream answer exceeds max_response_bytes")
}

/// Error texts are static in [`ProxyError`]; conversion failures are rare
/// enough to keep a generic one.
fn leak_reason(_detail: &str) -> &'static str {
    "answer could not be converted to the client's format"
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
