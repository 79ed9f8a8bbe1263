//! Plain HTTP forwarding (`request_type` `traditional_http`), one attempt
//! after another: plan (the nodes by weighted round robin, each once, up
//! to `retries` more), try one ([`crate::upstream::attempt::run`]: reuse or
//! open a connection, send the rewritten request, relay the response
//! back), classify the outcome once (`Step`: answered, next node, stop
//! with this error, client gone), record a failed node and go on.
//! Only connection failures move on to the next node; a pooled connection
//! that turns out to be stale is retried once on a fresh one when the body
//! can be replayed (in the shared step). While the upstream works, a
//! [`crate::net::PeerWatch`] notices the client leaving and the upstream
//! request is dropped (cancelled) at once.

pub mod head;
mod relay_job;

use bytes::Bytes;

use crate::exchange::body::{self, Body};
use crate::exchange::ctx::RequestCtx;
use crate::exchange::relay::{self, read_response_head, RelayError, Relayed};
use crate::exchange::reply;
use crate::exchange::response_head::{self, ClientFraming};
use crate::exchange::ClientConn;
use crate::exchange::ProxyError;
use crate::http::chunked::write_chunk_header;
use crate::http::{RequestHead, Version};
use crate::lane::Lane;
use crate::net::{self, Io};
use crate::upstream::attempt::{self, Attempt, Dest, Exchanged};
use crate::upstream::spec::{Node, UpstreamSpec};
use crate::upstream::{TlsClients, UpstreamConn};
use head::{ClientSide, OutBody};
pub use relay_job::RelayJob;
use relay_job::{settle, Ending};

/// How forwarding left a request.
pub enum Forwarded<'s> {
    /// Answered; whether the client connection stays open.
    Done(bool),
    /// The answer's head is ready to go and its body may take long (chunked
    /// or until the upstream closes: an event stream, say): the caller runs
    /// the relay once forwarding's own state is freed.
    Relay(Box<RelayJob<'s>>),
}

impl From<bool> for Forwarded<'_> {
    fn from(keep: bool) -> Self {
        Forwarded::Done(keep)
    }
}

/// Forwards one request.
pub async fn forward<'s>(
    lane: &Lane,
    tls_clients: &TlsClients,
    spec: &'s UpstreamSpec,
    c: &mut ClientConn,
    head: &RequestHead,
    ctx: &mut RequestCtx,
    keep_alive: bool,
) -> Forwarded<'s> {
    let gw = &lane.gateway;
    let mut body = match body::read_prefix(
        c,
        head.framing,
        head.expect_continue,
        gw.limits.max_body_bytes,
        gw.timeouts.body,
        gw.timeouts.send,
    )
    .await
    {
        Ok(b) => b,
        Err(e) => return fail(lane, c, ctx, &e, false).await.into(),
    };
    let mut failed = Vec::new();
    for node in plan(spec, lane.next_rr(spec.slot)) {
        let tls = spec.tls_target(node);
        let to = Dest {
            endpoint: &node.endpoint,
            tls: tls.as_ref(),
            connect_timeout: spec.connect_timeout,
        };
        let mut forwarding = Forwarding {
            lane,
            spec,
            node,
            head,
            keep_alive,
            c: &mut *c,
            ctx: &mut *ctx,
            body: &mut body,
        };
        let step = match attempt::run(&lane.pool, tls_clients, &to, &mut forwarding).await {
            Ok(done) => Step::Answered(finish(lane, spec, ctx, done)),
            Err(e) => Step::failed(e),
        };
        match step {
            Step::Answered(done) => return done,
            Step::Next(error) => failed.push(Failed::record(node, error)),
            Step::Stop(e) => {
                let keep = keep_alive && replayable(&body);
                return fail(lane, c, ctx, &e, keep).await.into();
            }
            Step::ClientGone => return Forwarded::Done(false),
        }
    }
    let e = match failed.pop() {
        Some(last) => last.error,
        None => ProxyError::BadResponse("upstream has no nodes"),
    };
    fail(lane, c, ctx, &e, keep_alive && replayable(&body))
        .await
        .into()
}

/// The nodes to try, in order: the weighted round-robin walk from this
/// request's ticket, each node once, at most `retries + 1` of them.
fn plan(spec: &UpstreamSpec, ticket: u64) -> impl Iterator<Item = &Node> + '_ {
    let mut seen = NodeSet::default();
    spec.wrr
        .walk(ticket)
        .filter(move |&i| seen.insert(i))
        .take(spec.retries as usize + 1)
        .map(|i| &spec.nodes[i])
}

/// What one attempt's outcome means for the request, decided once.
enum Step<'s> {
    /// The node answered: the client has the answer (or as much of it as
    /// the relay got through), or its body is left to relay.
    Answered(Forwarded<'s>),
    /// No connection could be made: nothing was sent, the next node may
    /// take the request.
    Next(ProxyError),
    /// The node failed with the request sent (or being sent): this error
    /// is the client's answer.
    Stop(ProxyError),
    /// The client left: nobody to answer.
    ClientGone,
}

impl Step<'_> {
    /// What a failed attempt means: the error says whether the next node
    /// may take the request (pingora's errors carry retryability alike).
    fn failed<'s>(e: ProxyError) -> Step<'s> {
        match e {
            ProxyError::ClientGone => Step::ClientGone,
            e if e.is_connect() => Step::Next(e),
            e => Step::Stop(e),
        }
    }
}

/// A node that could not be reached, and why (the last one's error is
/// the client's answer when no node could be).
struct Failed<'s> {
    node: &'s Node,
    error: ProxyError,
}

impl<'s> Failed<'s> {
    /// Notes that `node` could not be reached (a debug log line).
    fn record(node: &'s Node, error: ProxyError) -> Failed<'s> {
        let f = Failed { node, error };
        let (host, port) = (&f.node.endpoint.host, f.node.endpoint.port);
        tracing::debug!(%host, port, "upstream connect failed: {}", f.error);
        f
    }
}

/// Whether an answer's body may take long: chunked or ending when the
/// upstream closes (event streams are), not a known length.
fn takes_long(framing: crate::http::ResponseFraming) -> bool {
    use crate::http::ResponseFraming as F;
    matches!(framing, F::Chunked | F::Close)
}

/// Whether the body can be sent again (it was read whole, not streamed
/// from the client).
fn replayable(body: &Body) -> bool {
    !matches!(body, Body::Streaming { .. })
}

/// The end of an answered attempt: the log fields, the connection back
/// to the pool when the answer ended it cleanly, whether the client
/// connection stays open — or the body's relay, handed to the caller.
fn finish<'s>(
    lane: &Lane,
    spec: &'s UpstreamSpec,
    ctx: &mut RequestCtx,
    done: Exchanged<Relay>,
) -> Forwarded<'s> {
    let Exchanged {
        up,
        answer,
        sent_at,
    } = done;
    ctx.status = answer.status;
    ctx.upstream_status = Some(answer.status);
    let ending = answer.finish();
    let relayed = match answer.body {
        RelayBody::Relayed(r) => r,
        RelayBody::Later(framing) => {
            return Forwarded::Relay(Box::new(RelayJob {
                up,
                spec,
                framing,
                ending,
                sent_at,
            }))
        }
    };
    ctx.upstream_response_time = Some(sent_at.elapsed());
    Forwarded::Done(settle(lane, spec, ctx, up, &ending, relayed))
}

/// One attempt at one node: the client's request (its head rewritten for
/// the node, its body as read so far and the rest as it comes) sent, the
/// answer relayed while the client is watched for leaving.
struct Forwarding<'f, 'c> {
    lane: &'f Lane,
    spec: &'f UpstreamSpec,
    node: &'f Node,
    head: &'f RequestHead,
    keep_alive: bool,
    c: &'c mut ClientConn,
    ctx: &'c mut RequestCtx,
    body: &'c mut Body,
}

/// What reached the client: the answer's head, and as much of its body
/// as the relay got through — or the body left to relay.
struct Relay {
    status: u16,
    /// The client connection may stay open, as far as the answer goes.
    keep: bool,
    /// The upstream keeps its connection open.
    upstream_keep: bool,
    body: RelayBody,
}

enum RelayBody {
    Relayed(Result<Relayed, RelayError>),
    /// A body that may take long: the head is in the client's write
    /// buffer, what came with it in `ubuf`.
    Later(relay::Framing),
}

impl Relay {
    fn finish(&self) -> Ending {
        Ending {
            keep: self.keep,
            upstream_keep: self.upstream_keep,
        }
    }
}

impl Attempt for Forwarding<'_, '_> {
    type Answer = Relay;

    fn replayable(&self) -> bool {
        replayable(self.body)
    }

    /// Writes the request head and body to the upstream.
    async fn send(&mut self, up: &mut UpstreamConn) -> Result<(), ProxyError> {
        self.ctx.upstream_addr = Some(up.key.addr);
        let (mut out, out_body) = self.request_head();
        let (io, timeout) = (&mut up.io, self.spec.send_timeout);
        match &*self.body {
            Body::Full(b) if b.len() <= 16 * 1024 => {
                out.extend_from_slice(b);
                let (r, buf) = send(io, out, timeout).await;
                self.c.wbuf = buf;
                r
            }
            Body::Full(b) => {
                let (r, buf) = send(io, out, timeout).await;
                self.c.wbuf = buf;
                r?;
                send(io, b.clone(), timeout).await.0
            }
            Body::Empty => {
                let (r, buf) = send(io, out, timeout).await;
                self.c.wbuf = buf;
                r
            }
            Body::Streaming { .. } => {
                let (r, buf) = send(io, out, timeout).await;
                self.c.wbuf = buf;
                r?;
                self.stream_body(io, out_body == OutBody::Chunked).await
            }
        }
    }

    /// Reads the response head and relays the answer, unless the client
    /// leaves first (`ClientGone`).
    async fn receive(&mut self, up: &mut UpstreamConn) -> Result<Relay, ProxyError> {
        let (lane, spec, keep_alive) = (self.lane, self.spec, self.keep_alive);
        let client_http10 = self.head.version == Version::Http10;
        let head_request = self.head.method == http::Method::HEAD;
        let ClientConn {
            io: client_io,
            ubuf,
            wbuf,
            uscratch,
            watch,
            raw_fd,
            tls,
            ..
        } = &mut *self.c;
        let ctx = &mut *self.ctx;
        let request_id = ctx.request_id.as_ref().filter(|id| id.in_response);
        let capture = ctx.response_body.as_deref_mut();
        let work = async {
            let max_headers = lane.head_limits.max_headers;
            let resp = read_response_head(
                &mut up.io,
                ubuf,
                head_request,
                max_headers,
                spec.read_timeout,
                uscratch,
            )
            .await?;
            let out = ClientFraming::for_response(resp.framing, client_http10);
            let keep = keep_alive && out != ClientFraming::Raw;
            wbuf.clear();
            // The request id, unless the upstream answered with its own
            // (APISIX's header_filter).
            let id = request_id
                .filter(|id| resp.header(&id.header).is_none())
                .map(|id| (id.header.as_bytes(), &id.value[..]));
            let extra: &[(&[u8], &[u8])] = match &id {
                Some(h) => std::slice::from_ref(h),
                None => &[],
            };
            response_head::write_response_head(wbuf, &resp, out, keep, client_http10, extra);
            let (status, upstream_keep) = (resp.status, resp.keep_alive);
            let framing = relay::Framing {
                upstream: resp.framing,
                client: out,
            };
            *uscratch = resp.recycle();
            if takes_long(framing.upstream) {
                return Ok(Relay {
                    status,
                    keep,
                    upstream_keep,
                    body: RelayBody::Later(framing),
                });
            }
            let ends = relay::Ends {
                up: &mut up.io,
                client: client_io,
                ubuf,
                wbuf,
            };
            let timeouts = relay::Timeouts {
                read: spec.read_timeout,
                send: lane.gateway.timeouts.send,
            };
            let relayed = relay::relay_body(ends, framing, timeouts, capture).await;
            Ok(Relay {
                status,
                keep,
                upstream_keep,
                body: RelayBody::Relayed(relayed),
            })
        };
        let work = std::pin::pin!(work);
        match net::watch::unless_client_leaves(work, watch, *raw_fd, *tls).await {
            Some(r) => r,
            None => Err(ProxyError::ClientGone),
        }
    }
}

impl Forwarding<'_, '_> {
    /// The request head for the node, in the client's write buffer (taken
    /// out of it), and how the body is framed.
    fn request_head(&mut self) -> (Vec<u8>, OutBody) {
        let out_body = match &*self.body {
            Body::Empty => OutBody::None,
            Body::Full(b) => OutBody::Length(b.len() as u64),
            Body::Streaming { .. } => match self.head.framing {
                crate::http::BodyFraming::Length(n) => OutBody::Length(n),
                _ => OutBody::Chunked,
            },
        };
        let (c, ctx) = (&mut *self.c, &*self.ctx);
        let client = ClientSide {
            peer: c.peer,
            tls: c.tls,
            local_port: c.local_port,
            hide_header: ctx.hide_header.as_deref(),
            hide_query: ctx.hide_query.as_deref(),
            consumer: ctx.consumer.as_deref(),
            credential: ctx.credential.as_deref(),
            request_id: ctx.request_id.as_ref(),
            trace: ctx.trace.as_ref(),
        };
        let mut out = std::mem::take(&mut c.wbuf);
        out.clear();
        head::write_request_head(&mut out, self.head, self.spec, self.node, &client, out_body);
        (out, out_body)
    }

    /// The rest of a streamed body: what was read with the head, then the
    /// client's pieces as they come, chunk-framed when `chunked`.
    async fn stream_body(&mut self, up: &mut Io, chunked: bool) -> Result<(), ProxyError> {
        let Body::Streaming { prefix, reader } = &mut *self.body else {
            return Ok(());
        };
        let timeout = self.spec.send_timeout;
        for piece in prefix.drain(..) {
            send_piece(up, piece, chunked, timeout).await?;
        }
        let body_timeout = self.lane.gateway.timeouts.body;
        while let Some(piece) = reader.next(self.c, body_timeout).await? {
            send_piece(up, piece, chunked, timeout).await?;
        }
        if chunked {
            let last = Bytes::from_static(crate::http::chunked::LAST_CHUNK);
            send(up, last, timeout).await.0?;
        }
        Ok(())
    }
}

async fn send_piece(
    up: &mut Io,
    piece: Bytes,
    chunked: bool,
    timeout: std::time::Duration,
) -> Result<(), ProxyError> {
    if chunked {
        let mut h = Vec::with_capacity(12);
        write_chunk_header(&mut h, piece.len());
        send(up, h, timeout).await.0?;
        send(up, piece, timeout).await.0?;
        send(up, Bytes::from_static(b"\r\n"), timeout).await.0
    } else {
        send(up, piece, timeout).await.0
    }
}

async fn send<B: monoio::buf::IoBuf + 'static + Default>(
    up: &mut Io,
    buf: B,
    timeout: std::time::Duration,
) -> (Result<(), ProxyError>, B) {
    match crate::timer::timeout(timeout, net::write_all(up, buf)).await {
        Ok((Ok(()), b)) => (Ok(()), b),
        Ok((Err(e), b)) => (Err(ProxyError::NoResponseIo(e)), b),
        Err(_) => (Err(ProxyError::UpstreamTimeout), B::default()),
    }
}

/// Answers with the error's status and a JSON body.
async fn fail(
    lane: &Lane,
    c: &mut ClientConn,
    ctx: &mut RequestCtx,
    e: &ProxyError,
    keep_alive: bool,
) -> bool {
    if matches!(e, ProxyError::ClientGone) {
        return false;
    }
    if e.is_upstream() {
        tracing::warn!(
            route = ctx.route_id.as_deref().unwrap_or(""),
            "upstream error: {e}"
        );
    }
    let body = reply::error_body(&e.to_string());
    let answer = reply::Reply::json(e.status(), &body);
    c.reply(ctx, answer, keep_alive, lane.gateway.timeouts.send)
        .await
}

/// Nodes already tried in this request: a bit set held inline for the
/// first 64 nodes, so a plain request allocates nothing for it.
#[derive(Default)]
struct NodeSet {
    bits: smallvec::SmallVec<[u64; 1]>,
}

impl NodeSet {
    /// Adds `i`; false if it was already present.
    fn insert(&mut self, i: usize) -> bool {
        let (word, bit) = (i / 64, 1u64 << (i % 64));
        if self.bits.len() <= word {
            self.bits.resize(word + 1, 0);
        }
        if self.bits[word] & bit != 0 {
            return false;
        }
        self.bits[word] |= bit;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::NodeSet;

    #[test]
    fn node_set_holds_each_node_once_past_the_inline_word() {
        let mut s = NodeSet::default();
        for i in [0, 63, 64, 200] {
            assert!(s.insert(i), "{i} is new");
            assert!(!s.insert(i), "{i} is already in");
        }
        assert!(s.insert(1));
        let mut small = NodeSet::default();
        (0..64).for_each(|i| assert!(small.insert(i)));
        assert!(!small.bits.spilled(), "64 nodes fit inline");
    }
}
