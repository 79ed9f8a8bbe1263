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
use crate::net::{self, Io, TRICKLE_READ};
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
    let mut p = Pumping::new(job, c);
    let mut gone = std::pin::pin!(client_closed(watch));
    loop {
        if p.relay_read(job, ctx) {
            break;
        }
        if !p.out.is_empty() || !c.wbuf.is_empty() {
            frame(&mut c.wbuf, &p.out, job.chunked);
            sent(ctx, &p.out);
            p.out.clear();
            if c.flush_wbuf(lane.gateway.timeouts.send).await.is_err() {
                return finish_abandoned(ctx, &mut job.obs, &job.meta);
            }
        }
        // A stream that trickles (a model thinking, tokens one by one)
        // waits with small buffers: scratch space is given back and the
        // read gets a small one, grown again by a burst (net::read_more).
        if p.trickle {
            release_scratch(&mut p.decoded, &mut p.out, &mut c.wbuf, &mut p.ubuf);
        }
        let Some(conn) = job.io.take() else { break };
        match p.wait(job, lane, c, conn, &mut gone).await {
            Some((conn, res, buf)) => p.count_read(job, lane, conn, res, buf),
            None => return finish_abandoned(ctx, &mut job.obs, &job.meta),
        }
    }
    p.finish(job, lane, c, ctx).await
}

/// The loop's working state between reads.
struct Pumping {
    /// Scratch: one read's body bytes, framing removed. Grown by the first
    /// chunks, not reserved up front: a stream waiting for its first token
    /// should hold next to nothing.
    decoded: Vec<u8>,
    /// Scratch: what the transform makes of them for the client.
    out: Vec<u8>,
    /// The upstream's bytes not yet decoded.
    ubuf: BytesMut,
    upstream_error: Option<ProxyError>,
    last_upstream: Instant,
    limits: Limits,
    at_eof: bool,
    /// The last read was small: wait with small buffers.
    trickle: bool,
}

impl Pumping {
    fn new(job: &mut StreamJob<'_>, c: &mut ClientConn) -> Pumping {
        let mut p = Pumping {
            decoded: Vec::new(),
            out: Vec::new(),
            ubuf: std::mem::take(&mut c.ubuf),
            upstream_error: None,
            last_upstream: Instant::now(),
            limits: Limits::new(&job.plugin.transport),
            at_eof: false,
            trickle: false,
        };
        // What came with the response head counts as the first read, and
        // tells the first wait: a fast answer is already flowing, a model
        // still thinking sent little.
        if let Err(e) = p.limits.read(p.ubuf.len(), &job.meta.inst.name) {
            p.ubuf.clear();
            job.io = None;
            p.upstream_error = Some(e);
        }
        p.trickle = p.ubuf.len() < TRICKLE_READ;
        p
    }

    /// Decodes what was read and passes it through the transform into
    /// `out`; true when the stream is over (its end, EOF or a failure),
    /// the transform finished.
    #[inline]
    fn relay_read(&mut self, job: &mut StreamJob<'_>, ctx: &mut RequestCtx) -> bool {
        let (decoded, out) = (&mut self.decoded, &mut self.out);
        let (transform, obs, meta) = (&mut job.transform, &mut job.obs, &job.meta);
        decoded.clear();
        // Sized once per read (decoding only removes framing), instead of
        // doubling up through the first events.
        decoded.reserve(self.ubuf.len());
        let done = match job
            .dec
            .decode(&mut self.ubuf, |d| decoded.extend_from_slice(d))
        {
            Ok(d) => d,
            Err(_) => {
                self.upstream_error = Some(ProxyError::BadResponse("malformed chunked body"));
                true
            }
        };
        if !decoded.is_empty() {
            let had_token = obs.first_token;
            out.reserve(decoded.len());
            if transform.feed(decoded, out, obs).is_err() {
                self.upstream_error = Some(ProxyError::BadResponse("malformed event stream"));
            }
            if !had_token && obs.first_token {
                ctx.llm.ttft = Some(meta.attempt_started.elapsed());
                ctx.llm.ttft_from_request = Some(meta.request_started.elapsed());
            }
            // Known from the first event on: a follow-up may come as soon
            // as the client has the id.
            if let Some(stored) = obs.stored.take() {
                for id in stored.ids() {
                    job.plugin.affinity.remember(id.as_bytes(), meta.inst);
                }
            }
        }
        if done || self.at_eof || self.upstream_error.is_some() {
            let _ = transform.finish(out, obs);
            if self.upstream_error.is_none() {
                transform.end_of_body(out, obs);
            }
            return true;
        }
        false
    }

    /// Waits for upstream bytes, sending heartbeats while it is quiet;
    /// `None` when the client left (dropping the read drops the upstream
    /// connection: cancelled). A timeout or the duration limit ends the
    /// wait with the error recorded and no connection.
    async fn wait(
        &mut self,
        job: &StreamJob<'_>,
        lane: &Lane,
        c: &mut ClientConn,
        conn: Io,
        gone: &mut std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
    ) -> Option<ReadResult> {
        let timeout = job.plugin.transport.timeout;
        let heartbeat = job
            .plugin
            .sse_heartbeat
            .unwrap_or(Duration::from_secs(86_400));
        let room = if self.trickle {
            TRICKLE_READ
        } else {
            net::MIN_READ
        };
        let mut read = std::pin::pin!(read_owned(conn, std::mem::take(&mut self.ubuf), room));
        loop {
            let wait = timeout
                .saturating_sub(self.last_upstream.elapsed())
                .min(heartbeat)
                .min(self.limits.time_left());
            let ev = monoio::select! {
                r = &mut read => Ev::Read(r),
                _ = crate::timer::sleep(wait) => Ev::Tick,
                _ = gone.as_mut() => Ev::Gone,
            };
            match ev {
                Ev::Read(r) => return Some(r),
                Ev::Gone => return None,
                Ev::Tick if self.last_upstream.elapsed() >= timeout => {
                    self.upstream_error = Some(ProxyError::UpstreamTimeout);
                    return Some((None, Ok(0), BytesMut::new()));
                }
                Ev::Tick if self.limits.time_left().is_zero() => {
                    self.upstream_error = Some(Limits::too_long(&job.meta.inst.name));
                    return Some((None, Ok(0), BytesMut::new()));
                }
                Ev::Tick => {
                    frame(&mut c.wbuf, b": ping\n\n", job.chunked);
                    // Boxed: a rare write should not size the wait every
                    // open stream holds.
                    let flush = Box::pin(c.flush_wbuf(lane.gateway.timeouts.send));
                    if flush.await.is_err() {
                        return None;
                    }
                }
            }
        }
    }

    /// Takes a read's result: its bytes, EOF (an error unless the framing
    /// ends there), or a failure; a read past a limit is not relayed.
    #[inline]
    fn count_read(
        &mut self,
        job: &mut StreamJob<'_>,
        lane: &Lane,
        conn: Option<Io>,
        res: std::io::Result<usize>,
        buf: BytesMut,
    ) {
        job.io = conn;
        self.ubuf = buf;
        self.last_upstream = Instant::now();
        lane.busy.kick();
        match res {
            Ok(0) if self.upstream_error.is_none() => {
                self.at_eof = true;
                if !job.dec.eof_is_end() {
                    self.upstream_error = Some(ProxyError::UpstreamClosed);
                }
            }
            Ok(_) if self.upstream_error.is_some() => {}
            Ok(n) => {
                self.trickle = n < TRICKLE_READ;
                if let Err(e) = self.limits.read(n, &job.meta.inst.name) {
                    self.ubuf.clear();
                    job.io = None;
                    self.upstream_error = Some(e);
                }
            }
            Err(e) => self.upstream_error = Some(ProxyError::UpstreamIo(e)),
        }
    }

    /// The stream is over: usage recorded, the upstream connection pooled
    /// (or, after a failure, an SSE error event), the last chunk sent;
    /// whether the client connection stays open.
    async fn finish(
        &mut self,
        job: &mut StreamJob<'_>,
        lane: &Lane,
        c: &mut ClientConn,
        ctx: &mut RequestCtx,
    ) -> bool {
        let (meta, plugin, chunked) = (&job.meta, job.plugin, job.chunked);
        ctx.upstream_response_time = Some(job.sent_at.elapsed());
        record(ctx, &mut job.obs);
        if let Some(e) = &self.upstream_error {
            tracing::warn!(instance = %meta.inst.name, "stream failed mid-way: {e}");
            if e.counts_against_instance() {
                meta.inst.failed(&plugin.passive);
            }
            job.transform.error_event(&e.to_string(), &mut self.out);
        } else if job.dec.is_done() && self.ubuf.is_empty() && job.upstream_keep_alive {
            if let Some(io) = job.io.take() {
                let conn = crate::upstream::UpstreamConn {
                    io,
                    key: job.key.clone(),
                    served: job.served,
                    reused: job.reused,
                };
                lane.pool.put(conn, &plugin.transport.keepalive);
            }
        }
        frame(&mut c.wbuf, &self.out, chunked);
        sent(ctx, &self.out);
        if chunked {
            c.wbuf.extend_from_slice(LAST_CHUNK);
        }
        c.ubuf = std::mem::take(&mut self.ubuf);
        c.ubuf.clear();
        // After an upstream failure the chunked framing is still intact
        // (error event, then the last chunk): the connection stays usable.
        on_usage(meta, ctx);
        let flushed = c.flush_wbuf(lane.gateway.timeouts.send).await.is_ok();
        flushed && job.keep && (chunked || self.upstream_error.is_none())
    }
}

/// What a read gives back: the connection (none once it failed for
/// good), its result, the buffer.
type ReadResult = (Option<Io>, std::io::Result<usize>, BytesMut);

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

/// Lets a waiting stream hold no scratch memory and post a small read.
fn release_scratch(
    decoded: &mut Vec<u8>,
    out: &mut Vec<u8>,
    wbuf: &mut Vec<u8>,
    ubuf: &mut BytesMut,
) {
    net::trickle_buffers(&mut [decoded, out, wbuf], ubuf);
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
    Read(ReadResult),
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
async fn read_owned(mut io: Io, buf: BytesMut, room: usize) -> ReadResult {
    let (res, buf) = net::read_at_least(&mut io, buf, room).await;
    (Some(io), res, buf)
}
