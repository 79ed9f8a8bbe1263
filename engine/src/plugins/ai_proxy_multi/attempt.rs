//! One attempt at one instance: build the upstream request (provider
//! endpoint, auth, the instance's body), get a pooled or fresh connection,
//! send, and wait for the response head ([`crate::upstream::attempt`]). A
//! pooled connection that turns out dead before answering is retried once
//! on a fresh one (the body is in memory). Everything is bounded by the
//! plugin's `timeout`.

use std::future::Future;
use std::io::Write;
use std::pin::Pin;
use std::time::Instant;

use bytes::BytesMut;

use super::instance::{Instance, Target};
use super::outcome::Failure;
use super::request::LlmRequest;
use super::AiProxyMulti;
use crate::exchange::{ClientConn, ProxyError};
use crate::http::{HeaderSpan, RequestHead, ResponseHead};
use crate::lane::Lane;
use crate::net::watch::PeerWatch;
use crate::providers::Wire;
use crate::upstream::attempt::{run, Buffered, Dest};
use crate::upstream::TlsClients;
use crate::upstream::UpstreamConn;
use std::os::fd::RawFd;

/// A response head and the connection it came on.
pub struct Answered {
    pub up: UpstreamConn,
    pub head: ResponseHead,
    /// When the request was sent (for `upstream_response_time`).
    pub sent_at: Instant,
}

/// Client headers passed on to the LLM: API feature flags, never auth.
pub(super) const FORWARDED: &[&str] = &[
    "openai-organization",
    "openai-project",
    "openai-beta",
    "anthropic-beta",
];

/// Writes the upstream request (head and body) into `out`.
pub fn write_request(
    out: &mut Vec<u8>,
    inst: &Instance,
    target: &Target,
    body: &[u8],
    req: &LlmRequest,
    bearer: Option<&str>,
    ids: &Ids<'_>,
) {
    let client = ids.client;
    let (stream, client_wire) = (req.body.summary.stream, req.wire);
    let upstream_wire = inst.wire(req.api);
    out.clear();
    out.extend_from_slice(b"POST ");
    out.extend_from_slice(target.request_target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    out.extend_from_slice(target.host_header.as_bytes());
    out.extend_from_slice(b"\r\nContent-Type: application/json\r\n");
    let _ = write!(out, "Content-Length: {}\r\n", body.len());
    out.extend_from_slice(if stream {
        b"Accept: text/event-stream\r\n"
    } else {
        b"Accept: application/json\r\n"
    });
    write_auth(out, inst, bearer);
    for (k, v) in inst.provider.extra_headers {
        // The client's own version wins when it speaks the provider's format.
        if client_wire == upstream_wire && client.header(k).is_some() {
            continue;
        }
        let _ = write!(out, "{k}: {v}\r\n");
    }
    for name in FORWARDED.iter().copied().chain(
        (client_wire == Wire::Anthropic && upstream_wire == Wire::Anthropic)
            .then_some("anthropic-version"),
    ) {
        forward_header(out, client, name);
    }
    ids.ctx.push_upstream_ids(out, client, ids.span.as_ref());
    out.extend_from_slice(b"User-Agent: ringway\r\n\r\n");
    out.extend_from_slice(body);
}

/// The client's request an attempt is for, and what it carries for
/// correlation: the request's ids and, traced, the attempt's span.
pub struct Ids<'a> {
    pub client: &'a RequestHead,
    pub ctx: &'a crate::exchange::ctx::RequestCtx,
    pub span: Option<[u8; 8]>,
}

/// The instance's credentials: its `auth.header` lines and, with
/// `auth.gcp`, the access token.
#[inline]
pub(super) fn write_auth(out: &mut Vec<u8>, inst: &Instance, bearer: Option<&str>) {
    for (k, v) in inst.auth_headers.iter() {
        let _ = write!(out, "{k}: {v}\r\n");
    }
    if let Some(b) = bearer {
        let _ = write!(out, "Authorization: {b}\r\n");
    }
}

/// Copies the client's `name` header lines into `out`.
#[inline]
pub(super) fn forward_header(out: &mut Vec<u8>, client: &RequestHead, name: &str) {
    for v in client.header_all(name) {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v);
        out.extend_from_slice(b"\r\n");
    }
}

/// The instance's GCP access token (`auth.gcp`), `None` without one.
pub async fn bearer(
    inst: &Instance,
    tls_clients: &TlsClients,
    timeout: std::time::Duration,
) -> Result<Option<std::sync::Arc<str>>, Failure> {
    match &inst.gcp {
        None => Ok(None),
        Some(g) => match Box::pin(g.authorization(tls_clients, timeout)).await {
            Ok(b) => Ok(Some(b)),
            Err(e) => {
                tracing::warn!(instance = %inst.name, "GCP access token unavailable: {e}");
                Err(Failure::Token(e.to_string()))
            }
        },
    }
}

/// The client connection's buffers an attempt works with, and its
/// client watch (socket, TLS), lent out of `c` with `wbuf` (taken out of
/// it) as the request buffer.
pub fn lend<'c>(
    c: &'c mut ClientConn,
    wbuf: &'c mut Vec<u8>,
) -> (Buffers<'c>, &'c mut Option<PeerWatch>, RawFd, bool) {
    let ClientConn {
        ubuf,
        uscratch,
        watch,
        raw_fd,
        tls,
        ..
    } = c;
    let bufs = Buffers {
        wbuf,
        ubuf,
        scratch: uscratch,
    };
    (bufs, watch, *raw_fd, *tls)
}

/// One attempt at `target` off the LLM request path (stored state): the
/// request `write` puts in the client's write buffer is sent ([`send`])
/// while the client is watched; `None` when the client left (the attempt
/// is dropped, cancelling it). The LLM path does the same steps inline
/// (`handler::walk`): as the only direct caller of its watch and send it
/// keeps them inlined (sharing this function cost it ~300 instructions a
/// request, callgrind).
pub async fn try_target(
    lane: &Lane,
    tls_clients: &TlsClients,
    plugin: &AiProxyMulti,
    target: &Target,
    c: &mut ClientConn,
    write: impl FnOnce(&mut Vec<u8>),
) -> Option<Result<Answered, ProxyError>> {
    let mut wbuf = std::mem::take(&mut c.wbuf);
    write(&mut wbuf);
    let r = {
        let (mut bufs, watch, fd, tls) = lend(c, &mut wbuf);
        let mut work: Pin<Box<dyn Future<Output = _> + '_>> =
            Box::pin(send(lane, tls_clients, plugin, target, &mut bufs));
        crate::net::watch::unless_client_leaves(work.as_mut(), watch, fd, tls).await
    };
    wbuf.clear();
    c.wbuf = wbuf;
    r
}

/// Buffers an attempt works with (borrowed from the client connection).
pub struct Buffers<'a> {
    pub wbuf: &'a mut Vec<u8>,
    pub ubuf: &'a mut BytesMut,
    pub scratch: &'a mut Vec<HeaderSpan>,
}

/// Sends the request in `bufs.wbuf` to `target` and waits for the head
/// (the shared step, [`crate::upstream::attempt::run`], for a request
/// whole in a buffer).
#[inline]
pub async fn send(
    lane: &Lane,
    tls_clients: &TlsClients,
    plugin: &AiProxyMulti,
    target: &Target,
    bufs: &mut Buffers<'_>,
) -> Result<Answered, ProxyError> {
    let timeout = plugin.transport.timeout;
    let to = Dest {
        endpoint: &target.endpoint,
        tls: target.tls.as_ref(),
        connect_timeout: timeout,
    };
    let mut whole = Buffered {
        wbuf: bufs.wbuf,
        ubuf: bufs.ubuf,
        scratch: bufs.scratch,
        timeout,
        max_headers: lane.head_limits.max_headers,
    };
    let done = run(&lane.pool, tls_clients, &to, &mut whole).await?;
    Ok(Answered {
        up: done.up,
        head: done.answer,
        sent_at: done.sent_at,
    })
}
