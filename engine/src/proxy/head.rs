//! Head rewriting for forwarding: the upstream request head (hop-by-hop
//! headers dropped per RFC 9110 §7.6.1, Host per `pass_host`,
//! `X-Forwarded-*` and `X-Real-IP` set, body framing normalised). The
//! client response head is [`crate::exchange::response_head`]'s.

use std::io::Write;
use std::net::SocketAddr;

use crate::http::headers::{is_hop_by_hop, listed_in_connection};
use crate::http::write::{push_header, push_u64};
use crate::http::RequestHead;
use crate::upstream::spec::{Node, PassHost, UpstreamSpec};

/// How the forwarded request body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutBody {
    None,
    Length(u64),
    Chunked,
}

/// Facts about the client side needed to write forwarding headers.
pub struct ClientSide<'a> {
    pub peer: SocketAddr,
    pub tls: bool,
    pub local_port: u16,
    /// `hide_credentials`: a header and/or query parameter to drop.
    pub hide_header: Option<&'a str>,
    pub hide_query: Option<&'a str>,
    /// The consumer an auth plugin identified and the credential it used:
    /// sent as `X-Consumer-Username` and `X-Credential-Identifier` (a
    /// client's own are dropped).
    pub consumer: Option<&'a str>,
    pub credential: Option<&'a str>,
    /// The request id: one ringway made is added (replacing a client's
    /// empty header); the client's own passes as it came.
    pub request_id: Option<&'a crate::exchange::trace::RequestId>,
    /// Traced: `traceparent` names ringway's span, replacing the client's.
    pub trace: Option<&'a crate::exchange::trace::TraceCtx>,
}

impl ClientSide<'_> {
    /// Whether the client's header `name` is replaced by one of the
    /// request id or trace context headers.
    #[inline]
    fn replaced_ids(&self, name: &[u8]) -> bool {
        self.request_id
            .is_some_and(|id| id.generated && id.header.as_bytes().eq_ignore_ascii_case(name))
            || (self.trace.is_some()
                && (name.eq_ignore_ascii_case(b"traceparent")
                    || name.eq_ignore_ascii_case(b"tracestate")))
    }
}

/// Headers the gateway sets itself and therefore drops from the client.
fn replaced_by_gateway(name: &[u8]) -> bool {
    const SET: [&[u8]; 8] = [
        b"host",
        b"content-length",
        b"expect",
        b"x-forwarded-for",
        b"x-real-ip",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"x-forwarded-port",
    ];
    SET.iter().any(|h| h.eq_ignore_ascii_case(name))
}

/// Writes the request head for `node` of `spec` into `out`.
pub fn write_request_head(
    out: &mut Vec<u8>,
    head: &RequestHead,
    spec: &UpstreamSpec,
    node: &Node,
    client: &ClientSide,
    body: OutBody,
) {
    write_request_line(out, head, client);
    write_host(out, head, spec, node);
    write_client_headers(out, head, client);
    write_gateway_headers(out, head, client);
    write_body_framing(out, head, body);
    if !spec.keepalive.enabled {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// The request line: the client's method and target in origin form (an
/// absolute-form target loses its scheme and authority), without a
/// hidden query parameter.
#[inline]
fn write_request_line(out: &mut Vec<u8>, head: &RequestHead, client: &ClientSide) {
    out.extend_from_slice(head.method.as_str().as_bytes());
    out.push(b' ');
    let target = head.target();
    if let (Some(hidden), Some(q)) = (client.hide_query, head.query()) {
        out.extend_from_slice(head.path());
        write_query_without(out, q, hidden);
    } else if target.first() == Some(&b'/') || target == b"*" {
        out.extend_from_slice(target);
    } else {
        // absolute-form → origin-form
        out.extend_from_slice(head.path());
        if let Some(q) = head.query() {
            out.push(b'?');
            out.extend_from_slice(q);
        }
    }
    out.extend_from_slice(b" HTTP/1.1\r\n");
}

/// Query `q` without the parameter named `hidden` (nor empty pairs),
/// with its `?` unless nothing is left.
fn write_query_without(out: &mut Vec<u8>, q: &[u8], hidden: &str) {
    let mut first = true;
    for pair in q.split(|&b| b == b'&') {
        let name = pair.split(|&b| b == b'=').next().unwrap_or(pair);
        if name == hidden.as_bytes() || pair.is_empty() {
            continue;
        }
        out.push(if first { b'?' } else { b'&' });
        first = false;
        out.extend_from_slice(pair);
    }
}

/// `Host` per `pass_host`: the client's, a fixed one, or the node's
/// authority.
#[inline]
fn write_host(out: &mut Vec<u8>, head: &RequestHead, spec: &UpstreamSpec, node: &Node) {
    out.extend_from_slice(b"Host: ");
    match (&spec.pass_host, head.host_with_port()) {
        (PassHost::Pass, Some(h)) => out.extend_from_slice(h),
        (PassHost::Rewrite(h), _) => out.extend_from_slice(h.as_bytes()),
        _ => out.extend_from_slice(
            node.endpoint
                .authority(spec.scheme.default_port())
                .as_bytes(),
        ),
    }
    out.extend_from_slice(b"\r\n");
}

/// The client's headers, in order, except hop-by-hop ones (fixed or named
/// in `Connection`), those the gateway sets itself, a hidden credential
/// header, and the consumer headers when a consumer was identified.
#[inline]
fn write_client_headers(out: &mut Vec<u8>, head: &RequestHead, client: &ClientSide) {
    for (name, value) in head.header_pairs() {
        if is_hop_by_hop(name) || replaced_by_gateway(name) {
            continue;
        }
        if client
            .hide_header
            .is_some_and(|h| h.as_bytes().eq_ignore_ascii_case(name))
            || (client.consumer.is_some()
                && (name.eq_ignore_ascii_case(b"x-consumer-username")
                    || name.eq_ignore_ascii_case(b"x-credential-identifier")))
        {
            continue;
        }
        if head.connection_extra && listed_in_connection(name, head.header_all("connection")) {
            continue;
        }
        if (client.request_id.is_some() || client.trace.is_some()) && client.replaced_ids(name) {
            continue;
        }
        push_header(out, name, value);
    }
}

/// The headers the gateway adds: the consumer and credential an auth
/// plugin identified, the request id it made and its trace context,
/// `X-Forwarded-*` and `X-Real-IP`.
#[inline]
fn write_gateway_headers(out: &mut Vec<u8>, head: &RequestHead, client: &ClientSide) {
    if let Some(id) = client.request_id.filter(|id| id.generated) {
        push_header(out, id.header.as_bytes(), &id.value);
    }
    if let Some(t) = client.trace {
        crate::exchange::trace::push_traceparent(out, &t.trace_id, &t.span_id, t.flags());
        if let Some(s) = &t.state {
            push_header(out, b"tracestate", s);
        }
    }
    if let Some(name) = client.consumer {
        push_header(out, b"X-Consumer-Username", name.as_bytes());
    }
    if let Some(id) = client.credential {
        push_header(out, b"X-Credential-Identifier", id.as_bytes());
    }
    // $proxy_add_x_forwarded_for: earlier hops, then the client.
    out.extend_from_slice(b"X-Forwarded-For: ");
    for v in head.header_all("x-forwarded-for") {
        out.extend_from_slice(v);
        out.extend_from_slice(b", ");
    }
    let _ = write!(out, "{}\r\n", client.peer.ip());
    let _ = write!(out, "X-Real-IP: {}\r\n", client.peer.ip());
    push_header(
        out,
        b"X-Forwarded-Proto",
        if client.tls { b"https" } else { b"http" },
    );
    if let Some(h) = head.host() {
        push_header(out, b"X-Forwarded-Host", h);
    }
    out.extend_from_slice(b"X-Forwarded-Port: ");
    push_u64(out, u64::from(client.local_port));
    out.extend_from_slice(b"\r\n");
}

/// `Content-Length` or `Transfer-Encoding` for the body as forwarded (a
/// client's `Content-Length` on a request sent without a body becomes 0).
#[inline]
fn write_body_framing(out: &mut Vec<u8>, head: &RequestHead, body: OutBody) {
    match body {
        OutBody::None => {
            if head.header("content-length").is_some() {
                out.extend_from_slice(b"Content-Length: 0\r\n");
            }
        }
        OutBody::Length(n) => {
            out.extend_from_slice(b"Content-Length: ");
            push_u64(out, n);
            out.extend_from_slice(b"\r\n");
        }
        OutBody::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
    }
}
