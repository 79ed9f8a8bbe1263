//! The stream's loop, run by [`super::stream::StreamJob::run`]: decode
//! each upstream read, pass it through the transform, write it as one
//! chunk; wait for the next read with heartbeats, the client watched and
//! the stream's limits (`max_response_bytes`, `max_stream_duration_ms`)
//! enforced; end with the usage recorded and the upstream connection
//! pooled, or with an SSE error event after an upstream failure.

use std::time::{Duration, Instant};

use bytes::BytesMut;

use super::respond::{on_usage, AnswerMeta};
use super::stream::StreamJob;
use crate::exchange::ctx::RequestCtx;
use crate::exchange::ClientConn;
use crate::exchange::ProxyError;
use crate::http::chunked::{write_chunk_header, LAST_CHUNK};
use crate::lane::Lane;
use crate::net::{self, Io};
use crate::wire::StreamObservations;

/// The stream's loop; the job is borrowed, not moved, so its state is not
/// copied into this future.
pub(super) async fn pump(
    job: &mut StreamJob<'_>,
    lane: &Lane,
    c: &mut ClientConn,
    ctx: &mut RequestCtx,
    watch: &Option<crate::net::PeerWatch>,
) -> bool {
    let plugin = job.plugin;
    let (io, dec, transform, obs, meta) = (
        &mut job.io,
        &mut job.dec,
        &mut job.transform,
        &mut job.obs,
        &job.meta,
    );
    let (upstream_keep_alive, chunked, keep, sent_at) =
        (job.upstream_keep_alive, job.chunked, job.keep, job.sent_at);
    let send_timeout = lane.gateway.timeouts.send;
    // Grown by the first chunks, not reserved up front: a stream waiting
    // for its first token should hold next to nothing.
    let mut decoded: Vec<u8> = Vec::new();
    let mut out: Vec<u8> = Vec::new();
    let timeout = plugin.transport.timeout;
    let heartbeat = plugin.sse_heartbeat.unwrap_or(Duration::from_secs(86_400));
    let mut upstream_error: Option<ProxyError> = None;
    let mut ubuf = std::mem::take(&mut c.ubuf);
    let mut last_upstream = Instant::now();
    let mut limits = Limits::new(&plugin.transport);
    // What came with the response head counts as the first read.
    if let Err(e) = limits.read(ubuf.len(), &meta.inst.name) {
        ubuf.clear();
        *io = None;
        upstream_error = Some(e);
    }
    let mut at_eof = false;
    // What came with the response head tells the first wait: a fast
    // answer is already flowing, a model still thinking sent little.
    let mut trickle = ubuf.len() < TRICKLE_READ;
    let mut gone = std::pin::pin!(client_closed(watch));

    loop {
        decoded.clear();
        // Sized once per read (decoding only removes framing), instead of
        // doubling up through the first events.
        decoded.reserve(ubuf.len());
        let done = match dec.decode(&mut ubuf, |d| decoded.extend_from_slice(d)) {
            Ok(d) => d,
            Err(_) => {
                upstream_error = Some(ProxyError::BadResponse("malformed chunked body"));
                true
            }
        };
        if !decoded.is_empty() {
            let had_token = obs.first_token;
            out.reserve(decoded.len());
            if transform.feed(&decoded, &mut out, obs).is_err() {
                upstream_error = Some(ProxyError::BadResponse("malformed event stream"));
            }
            if !had_token && obs.first_token {
                ctx.llm.ttft = Some(meta.attempt_started.elapsed());
                ctx.llm.ttft_from_request = Some(meta.request_started.elapsed());
            }
            // Known from the first event on: a follow-up may come as soon
            // as the client has the id.
            if let Some(stored) = obs.stored.take() {
                for id in stored.ids() {
                    plugin.affinity.remember(id.as_bytes(), meta.inst);
                }
            }
        }
        if done || at_eof || upstream_error.is_some() {
            let _ = transform.finish(&mut out, obs);
            if upstream_error.is_none() {
                transform.end_of_body(&mut out, obs);
            }
            break;
        }
        if !out.is_empty() || !c.wbuf.is_empty() {
            frame(&mut c.wbuf, &out, chunked);
            sent(ctx, &out);
            out.clear();
            if c.flush_wbuf(send_timeout).await.is_err() {
                return finish_abandoned(ctx, obs, meta);
            }
        }
        // A stream that trickles (a model thinking, tokens one by one)
        // waits with small buffers: scratch space is given back and the
        // read gets a small one, grown again by a burst (net::read_more).
        if trickle {
            release_scratch(&mut decoded, &mut out, &mut c.wbuf, &mut ubuf);
        }
        // Wait for upstream bytes, sending heartbeats while it is quiet and
        // stopping at once if the client leaves.
        let Some(conn) = io.take() else { break };
        let room = if trickle { TRICKLE_READ } else { net::MIN_READ };
        let mut read = std::pin::pin!(read_owned(conn, std::mem::take(&mut ubuf), room));
        let (conn, res, buf) = loop {
            let wait = timeout
                .saturating_sub(last_upstream.elapsed())
                .min(heartbeat)
                .min(limits.time_left());
            let ev = monoio::select! {
                r = &mut read => Ev::Read(r),
                _ = crate::timer::sleep(wait) => Ev::Tick,
                _ = &mut gone => Ev::Gone,
            };
            match ev {
                Ev::Read(r) => break r,
                // Dropping the read drops the upstream connection: cancelled.
                Ev::Gone => return finish_abandoned(ctx, obs, meta),
                Ev::Tick if last_upstream.elapsed() >= timeout => {
                    upstream_error = Some(ProxyError::UpstreamTimeout);
                    break (None, Ok(0), BytesMut::new());
                }
                Ev::Tick if limits.time_left().is_zero() => {
                    upstream_error = Some(Limits::too_long(&meta.inst.name));
                    break (None, Ok(0), BytesMut::new());
                }
                Ev::Tick => {
                    frame(&mut c.wbuf, b": ping\n\n", chunked);
                    if c.flush_wbuf(send_timeout).await.is_err() {
                        return finish_abandoned(ctx, obs, meta);
                    }
                }
            }
        };
        *io = conn;
        ubuf = buf;
        last_upstream = Instant::now();
        lane.busy.kick();
        match res {
            Ok(0) if upstream_error.is_none() => {
                at_eof = true;
                if !dec.eof_is_end() {
                    upstream_error = Some(ProxyError::UpstreamClosed);
                }
            }
            Ok(_) if upstream_error.is_some() => {}
            Ok(n) => {
                trickle = n < TRICKLE_READ;
                if let Err(e) = limits.read(n, &meta.inst.name) {
                    // The read that went past a limit is not relayed.
                    ubuf.clear();
                    *io = None;
                    upstream_error = Some(e);
                }
            }
            Err(e) => upstream_error = Some(ProxyError::UpstreamIo(e)),
        }
    }
    ctx.upstream_response_time = Some(sent_at.elapsed());
    record(ctx, obs);
    if let Some(e) = &upstream_error {
        tracing::warn!(instance = %meta.inst.name, "stream failed mid-way: {e}");
        if e.counts_against_instance() {
            meta.inst.failed(&plugin.passive);
        }
        transform.error_event(&e.to_string(), &mut out);
    } else if dec.is_done() && ubuf.is_empty() && upstream_keep_alive {
        if let Some(io) = io.take() {
            lane.pool.put(
                crate::upstream::UpstreamConn {
                    io,
                    key: job.key.clone(),
                    served: job.served,
                    reused: job.reused,
                },
                &plugin.transport.keepalive,
            );
        }
    }
    frame(&mut c.wbuf, &out, chunked);
    sent(ctx, &out);
    if chunked {
        c.wbuf.extend_from_slice(LAST_CHUNK);
    }
    c.ubuf = ubuf;
    c.ubuf.clear();
    // After an upstream failure the chunked framing is still intact (error
    // event, then the last chunk), so the client connection stays usable.
    on_usage(meta, ctx);
    c.flush_wbuf(send_timeout).await.is_ok() && keep && (chunked || upstream_error.is_none())
}

/// `max_response_bytes` and `max_stream_duration_ms` for one stream.
struct Limits {
    /// Body bytes left (as read from the upstream, framing included).
    bytes_left: u64,
    /// When the stream must end.
    deadline: Option<Instant>,
}

impl Limits {
    fn new(t: &super::config::Transport) -> Limits {
        Limits {
            bytes_left: t.max_response_bytes,
            deadline: t.max_stream_duration.map(|d| Instant::now() + d),
        }
    }

    /// Time until the deadline (a day without one: never the shortest wait).
    fn time_left(&self) -> Duration {
        self.deadline.map_or(Duration::from_secs(86_400), |d| {
            d.saturating_duration_since(Instant::now())
        })
    }

    /// Counts a read of `n` bytes; an error once a limit is passed.
    #[inline]
    fn read(&mut self, n: usize, instance: &str) -> Result<(), ProxyError> {
        if n as u64 > self.bytes_left {
            return Err(Limits::too_big(instance));
        }
        self.bytes_left -= n as u64;
        match self.deadline {
            Some(d) if Instant::now() >= d => Err(Limits::too_long(instance)),
            _ => Ok(()),
        }
    }

    #[cold]
    fn too_big(instance: &str) -> ProxyError {
        crate::observe::metrics::AI_RESPONSES_CUT.inc();
        tracing::warn!(instance, "aborting AI stream: max_response_bytes exceeded");
        ProxyError::LimitExceeded("stream exceeded max_response_bytes")
    }

    #[cold]
    fn too_long(instance: &str) -> ProxyError {
        crate::observe::metrics::AI_RESPONSES_CUT.inc();
        tracing::warn!(
            instance,
            "aborting AI stream: max_stream_duration_ms exceeded"
        );
        ProxyError::LimitExceeded("stream exceeded max_stream_duration_ms")
    }
}

/// Read size for a stream that trickles: one or two events fit.
const TRICKLE_READ: usize = 512;

/// Lets a waiting stream hold no scratch memory and post a small read.
fn release_scratch(
    decoded: &mut Vec<u8>,
    out: &mut Vec<u8>,
    wbuf: &mut Vec<u8>,
    ubuf: &mut BytesMut,
) {
    for v in [decoded, out, wbuf] {
        if v.is_empty() && v.capacity() > 0 {
            *v = Vec::new();
        }
    }
    if ubuf.is_empty() && ubuf.capacity() > TRICKLE_READ {
        *ubuf = BytesMut::with_capacity(TRICKLE_READ);
    }
}

/// The client left mid-stream: record what was seen, close.
fn finish_abandoned(
    ctx: &mut RequestCtx,
    obs: &mut StreamObservations,
    meta: &AnswerMeta<'_>,
) -> bool {
    record(ctx, obs);
    on_usage(meta, ctx);
    false
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

fn record(ctx: &mut RequestCtx, obs: &mut StreamObservations) {
    if obs.model.is_some() {
        ctx.llm.model = obs.model.clone();
    }
    if let Some(u) = obs.usage {
        ctx.llm.prompt_tokens = u.prompt_tokens;
        ctx.llm.completion_tokens = u.completion_tokens;
    }
    if let Some(p) = &mut ctx.llm.payloads {
        p.text = obs.text.take();
    }
    if obs.raw_usage.is_some() {
        ctx.llm.raw_usage = obs.raw_usage.take();
    }
}

/// Counts `out` as sent to the client.
fn sent(ctx: &mut RequestCtx, out: &[u8]) {
    ctx.bytes_sent += out.len() as u64;
    ctx.keep_response(out);
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
async fn read_owned(
    mut io: Io,
    buf: BytesMut,
    room: usize,
) -> (Option<Io>, std::io::Result<usize>, BytesMut) {
    let (res, buf) = net::read_at_least(&mut io, buf, room).await;
    (Some(io), res, buf)
}
