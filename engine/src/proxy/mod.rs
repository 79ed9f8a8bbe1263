//! Plain HTTP forwarding (`request_type` `traditional_http`): pick a node
//! by weighted round robin, reuse or open a connection, send the rewritten
//! request, stream the response back. Connection failures move on to the
//! next node (up to `retries`); a pooled connection that turns out to be
//! stale is retried once on a fresh one when the body can be replayed.
//! While the upstream works, a [`crate::net::PeerWatch`] notices the client
//! leaving and the upstream request is dropped (cancelled) at once.

pub mod head;

use std::time::Instant;

use bytes::Bytes;

use crate::exchange::body::{self, Body};
use crate::exchange::ctx::RequestCtx;
use crate::exchange::relay::{self, RelayError};
use crate::exchange::reply;
use crate::exchange::response_head::{self, ClientFraming};
use crate::exchange::ClientConn;
use crate::exchange::ProxyError;
use crate::http::chunked::write_chunk_header;
use crate::http::{RequestHead, Version};
use crate::lane::Lane;
use crate::net::{self, Io};
use crate::upstream::connect::connect_fresh;
use crate::upstream::spec::{Node, UpstreamSpec};
use crate::upstream::TlsClients;
use crate::upstream::{connect, UpstreamConn};
use head::{ClientSide, OutBody};

/// Forwards one request; returns whether the client connection stays open.
pub async fn forward(
    lane: &Lane,
    tls_clients: &TlsClients,
    spec: &UpstreamSpec,
    c: &mut ClientConn,
    head: &RequestHead,
    ctx: &mut RequestCtx,
    keep_alive: bool,
) -> bool {
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
        Err(e) => return fail(lane, c, ctx, &e, false).await,
    };
    let mut last: Option<ProxyError> = None;
    let mut tried = NodeSet::default();
    let counter = lane.next_rr(spec.slot);
    for idx in spec.wrr.walk(counter) {
        if !tried.insert(idx) {
            continue;
        }
        if tried.len() > spec.retries as usize + 1 {
            break;
        }
        let node = &spec.nodes[idx];
        let tls = spec.tls_target(node);
        let mut fresh_only = false;
        loop {
            let conn = if fresh_only {
                let timeout = spec.connect_timeout;
                match connect_fresh(&node.endpoint, tls.as_ref(), tls_clients, timeout).await {
                    Ok(conn) => conn,
                    Err(e) => {
                        last = Some(ProxyError::from_connect(e));
                        break;
                    }
                }
            } else {
                match connect(
                    &lane.pool,
                    &node.endpoint,
                    tls.as_ref(),
                    tls_clients,
                    spec.connect_timeout,
                )
                .await
                {
                    Ok(conn) => conn,
                    Err(e) => {
                        tracing::debug!(host = %node.endpoint.host, "upstream connect failed: {e}");
                        last = Some(ProxyError::from_connect(e));
                        break;
                    }
                }
            };
            let reused = conn.reused;
            match exchange(lane, c, head, &mut body, spec, node, conn, ctx, keep_alive).await {
                Ok(keep) => return keep,
                Err(Failure::BeforeResponse(e)) => {
                    let replayable = !matches!(body, Body::Streaming { .. });
                    if reused && replayable && e.is_no_response() && !fresh_only {
                        fresh_only = true;
                        continue;
                    }
                    return fail(lane, c, ctx, &e, keep_alive && replayable).await;
                }
                Err(Failure::AfterResponse) => return false,
            }
        }
    }
    let e = last.unwrap_or(ProxyError::BadResponse("upstream has no nodes"));
    fail(
        lane,
        c,
        ctx,
        &e,
        keep_alive && !matches!(body, Body::Streaming { .. }),
    )
    .await
}

/// How an exchange failed.
enum Failure {
    /// Nothing was sent to the client yet: an error reply is possible.
    BeforeResponse(ProxyError),
    /// The client already has part of a response: close the connection.
    AfterResponse,
}

#[allow(clippy::too_many_arguments)]
async fn exchange(
    lane: &Lane,
    c: &mut ClientConn,
    head: &RequestHead,
    body: &mut Body,
    spec: &UpstreamSpec,
    node: &Node,
    mut up: UpstreamConn,
    ctx: &mut RequestCtx,
    keep_alive: bool,
) -> Result<bool, Failure> {
    let gw = &lane.gateway;
    let sent_at = Instant::now();
    ctx.upstream_addr = Some(up.key.addr);
    send_request(lane, c, head, body, spec, node, &mut up, ctx)
        .await
        .map_err(Failure::BeforeResponse)?;

    let client_http10 = head.version == Version::Http10;
    let head_request = head.method == http::Method::HEAD;
    let ClientConn {
        io: client_io,
        ubuf,
        wbuf,
        uscratch,
        watch,
        raw_fd,
        tls,
        ..
    } = &mut *c;
    let capture = ctx.response_body.as_deref_mut();
    let work = async {
        let resp = read_resp(
            &mut up.io,
            ubuf,
            head_request,
            lane.head_limits.max_headers,
            spec.read_timeout,
            uscratch,
        )
        .await
        .map_err(Failure::BeforeResponse)?;
        let framing = resp.framing;
        let out = ClientFraming::for_response(framing, client_http10);
        let keep = keep_alive && out != ClientFraming::Raw;
        wbuf.clear();
        response_head::write_response_head(wbuf, &resp, out, keep, client_http10, &[]);
        let status = resp.status;
        let upstream_keep = resp.keep_alive;
        *uscratch = resp.recycle();
        let ends = relay::Ends {
            up: &mut up.io,
            client: client_io,
            ubuf,
            wbuf,
        };
        let framing = relay::Framing {
            upstream: framing,
            client: out,
        };
        let timeouts = relay::Timeouts {
            read: spec.read_timeout,
            send: gw.timeouts.send,
        };
        let relayed = relay::relay_body(ends, framing, timeouts, capture).await;
        Ok::<_, Failure>((status, keep, upstream_keep, relayed))
    };
    let result = match crate::net::watch::unless_client_leaves(work, watch, *raw_fd, *tls).await {
        Some(r) => r,
        None => Err(Failure::BeforeResponse(ProxyError::ClientGone)),
    };
    let (status, keep, upstream_keep, relayed) = match result {
        Ok(v) => v,
        Err(Failure::BeforeResponse(ProxyError::ClientGone)) => return Err(Failure::AfterResponse),
        Err(f) => return Err(f),
    };
    ctx.status = status;
    ctx.upstream_status = Some(status);
    ctx.upstream_response_time = Some(sent_at.elapsed());
    match relayed {
        Ok(r) => {
            ctx.bytes_sent = r.bytes;
            if r.reusable && upstream_keep && spec.keepalive.enabled {
                lane.pool.put(up, &spec.keepalive);
            }
            Ok(keep)
        }
        Err(RelayError::Upstream(e)) => {
            tracing::debug!("upstream failed mid-response: {e}");
            Err(Failure::AfterResponse)
        }
        Err(RelayError::Client) => Err(Failure::AfterResponse),
    }
}

async fn read_resp(
    up: &mut Io,
    ubuf: &mut bytes::BytesMut,
    head_request: bool,
    max_headers: usize,
    timeout: std::time::Duration,
    scratch: &mut Vec<crate::http::HeaderSpan>,
) -> Result<crate::http::ResponseHead, ProxyError> {
    relay::read_response_head(up, ubuf, head_request, max_headers, timeout, scratch).await
}

/// Writes the request head and body to the upstream.
#[allow(clippy::too_many_arguments)]
async fn send_request(
    lane: &Lane,
    c: &mut ClientConn,
    head: &RequestHead,
    body: &mut Body,
    spec: &UpstreamSpec,
    node: &Node,
    up: &mut UpstreamConn,
    ctx: &RequestCtx,
) -> Result<(), ProxyError> {
    let out_body = match body {
        Body::Empty => OutBody::None,
        Body::Full(b) => OutBody::Length(b.len() as u64),
        Body::Streaming { .. } => match head.framing {
            crate::http::BodyFraming::Length(n) => OutBody::Length(n),
            _ => OutBody::Chunked,
        },
    };
    let client = ClientSide {
        peer: c.peer,
        tls: c.tls,
        local_port: c.local_port,
        hide_header: ctx.hide_header.as_deref(),
        hide_query: ctx.hide_query.as_deref(),
        consumer: ctx.consumer.as_deref(),
        credential: ctx.credential.as_deref(),
    };
    let mut out = std::mem::take(&mut c.wbuf);
    out.clear();
    head::write_request_head(&mut out, head, spec, node, &client, out_body);
    let timeout = spec.send_timeout;
    match body {
        Body::Full(b) if b.len() <= 16 * 1024 => {
            out.extend_from_slice(b);
            let (r, buf) = send(&mut up.io, out, timeout).await;
            c.wbuf = buf;
            r
        }
        Body::Full(b) => {
            let (r, buf) = send(&mut up.io, out, timeout).await;
            c.wbuf = buf;
            r?;
            send(&mut up.io, b.clone(), timeout).await.0
        }
        Body::Empty => {
            let (r, buf) = send(&mut up.io, out, timeout).await;
            c.wbuf = buf;
            r
        }
        Body::Streaming { prefix, reader } => {
            let (r, buf) = send(&mut up.io, out, timeout).await;
            c.wbuf = buf;
            r?;
            let chunked = out_body == OutBody::Chunked;
            for piece in prefix.drain(..) {
                send_piece(&mut up.io, piece, chunked, timeout).await?;
            }
            while let Some(piece) = reader.next(c, lane.gateway.timeouts.body).await? {
                send_piece(&mut up.io, piece, chunked, timeout).await?;
            }
            if chunked {
                send(
                    &mut up.io,
                    Bytes::from_static(crate::http::chunked::LAST_CHUNK),
                    timeout,
                )
                .await
                .0?;
            }
            Ok(())
        }
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

/// Nodes already tried in this request.
#[derive(Default)]
struct NodeSet {
    bits: Vec<u64>,
    len: usize,
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
        self.len += 1;
        true
    }

    fn len(&self) -> usize {
        self.len
    }
}
