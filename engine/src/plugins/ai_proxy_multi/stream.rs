//! Streaming an SSE answer to the client, as a job the connection loop
//! runs once the handler is done.
//!
//! When an instance answers with an event stream, the handler writes the
//! response head and returns a [`StreamJob`]: the upstream connection,
//! the body decoder, the format transform and what relaying needs to know.
//! The handler's own state (the request body, the attempt plan, the
//! upstream request) is freed before the stream's first read, so a stream
//! waiting on a slow model holds this job, its buffers and the connection
//! loop's state, nothing more.
//!
//! The relay loop is [`super::pump`]'s. Each read is decoded, passed
//! through the transform (which finds the
//! first token and the usage report, and converts formats) and written as
//! one chunk. Quiet streams get comment heartbeats; a client that leaves
//! cancels the upstream; an upstream that fails mid-stream ends the client
//! stream with an SSE error event and a clean end, never a silent
//! truncation. So does a stream that outgrows `max_response_bytes` or
//! outlasts `max_stream_duration_ms` (a runaway upstream that never ends
//! its stream): the upstream connection is closed, not pooled.

use std::time::Instant;

use bytes::BytesMut;

use super::attempt::Answered;
use super::handler::Call;
use super::pump::pump;
use super::request::LlmRequest;
use super::respond::{after_answer, pass_headers, ringway_headers, AnswerMeta};
use super::AiProxyMulti;
use crate::exchange::ctx::{RequestCtx, RequestType};
use crate::exchange::ClientConn;
use crate::http::body::BodyDecoder;
use crate::http::write::{push_header, push_status_line};
use crate::lane::Lane;
use crate::net::Io;
use crate::wire::{StreamObservations, StreamTransform};

/// An SSE answer being relayed; see the module docs.
pub struct StreamJob<'a> {
    pub(super) plugin: &'a AiProxyMulti,
    pub(super) meta: AnswerMeta<'a>,
    /// The upstream connection; taken by each read (see [`read_owned`]).
    pub(super) io: Option<Io>,
    pub(super) key: crate::upstream::PoolKey,
    pub(super) served: u32,
    pub(super) reused: bool,
    pub(super) dec: BodyDecoder,
    pub(super) transform: StreamTransform,
    pub(super) obs: StreamObservations,
    pub(super) upstream_keep_alive: bool,
    pub(super) chunked: bool,
    pub(super) keep: bool,
    pub(super) sent_at: Instant,
}

impl<'a> StreamJob<'a> {
    /// Writes the stream's response head into `c.wbuf` (sent with the
    /// first chunk) and prepares the relay.
    pub fn start(
        call: &Call<'a, '_>,
        c: &mut ClientConn,
        ctx: &mut RequestCtx,
        req: &LlmRequest,
        answered: Answered,
        meta: AnswerMeta<'a>,
    ) -> Box<StreamJob<'a>> {
        let (plugin, keep_alive) = (call.plugin, call.keep_alive);
        let http10 = call.head.version == crate::http::Version::Http10;
        let Answered { up, head, sent_at } = answered;
        ctx.request_type = RequestType::AiStream;
        let chunked = !http10;
        let keep = keep_alive && chunked;
        {
            let wbuf = &mut c.wbuf;
            wbuf.clear();
            push_status_line(wbuf, head.status);
            pass_headers(
                wbuf,
                &head,
                &[b"content-type", b"cache-control", b"x-accel-buffering"],
                ctx.response_id(),
            );
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
            c.watch = crate::net::PeerWatch::new(c.raw_fd, c.tls);
        }
        // The client did not ask for OpenAI usage reporting: drop (or do
        // not generate) the usage chunk; usage is still recorded.
        let strip = !req.body.summary.include_usage;
        let mut transform = StreamTransform::new(meta.inst.wire(req.api), req.wire, strip);
        if ctx.llm.payloads.is_some() {
            transform = transform.collecting_text();
        }
        if meta.plugins.wants_raw_usage() {
            transform = transform.collecting_raw_usage();
        }
        // The upstream head's bytes share the upstream read buffer and the
        // client's (empty) read buffer may be large: let both go, so an
        // open stream holds little more than its state.
        let dec = BodyDecoder::new(head.framing);
        let upstream_keep_alive = head.keep_alive;
        drop(head);
        if c.rbuf.is_empty() {
            c.rbuf = BytesMut::new();
        }
        Box::new(StreamJob {
            plugin,
            meta,
            io: Some(up.io),
            key: up.key,
            served: up.served,
            reused: up.reused,
            dec,
            transform,
            obs: StreamObservations::default(),
            upstream_keep_alive,
            chunked,
            keep,
            sent_at,
        })
    }

    /// Relays the stream to its end, the client's departure or an upstream
    /// failure; returns whether the client connection stays open.
    pub async fn run(
        mut self: Box<Self>,
        lane: &Lane,
        c: &mut ClientConn,
        ctx: &mut RequestCtx,
    ) -> bool {
        // The watch is lent to the pump for the whole stream: one readiness
        // poll on the client socket serves every read, instead of one armed
        // and cancelled per read.
        let watch = c.watch.take();
        let keep = pump(&mut self, lane, c, ctx, &watch).await;
        c.watch = watch;
        if self.meta.plugins.wants_after_answer() {
            after_answer(&self.meta.plugins, self.meta.inst, ctx).await;
        }
        keep
    }
}
