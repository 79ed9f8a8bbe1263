//! The client response head of a relayed answer: hop-by-hop headers
//! dropped (RFC 9110 §7.6.1), body framing and `Connection` decided by the
//! gateway.

use crate::http::headers::{is_hop_by_hop, listed_in_connection};
use crate::http::write::{push_header, push_u64, reason};
use crate::http::ResponseHead;

/// How the response body goes to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientFraming {
    /// As the upstream framed it (no body, Content-Length, or chunked bytes
    /// relayed unchanged).
    Same,
    /// Upstream was close-delimited; re-framed as chunked for an HTTP/1.1
    /// client.
    Rechunk,
    /// HTTP/1.0 client: body sent raw, connection closed at the end.
    Raw,
}

impl ClientFraming {
    /// How an upstream body framed as `upstream` goes to the client.
    #[inline]
    pub fn for_response(upstream: crate::http::ResponseFraming, client_http10: bool) -> Self {
        use crate::http::ResponseFraming::{Chunked, Close};
        match upstream {
            Close | Chunked if client_http10 => ClientFraming::Raw,
            Close => ClientFraming::Rechunk,
            _ => ClientFraming::Same,
        }
    }
}

/// Writes the client response head for `resp` into `out`.
pub fn write_response_head(
    out: &mut Vec<u8>,
    resp: &ResponseHead,
    framing: ClientFraming,
    keep_alive: bool,
    client_http10: bool,
    extra: &[(&[u8], &[u8])],
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    push_u64(out, u64::from(resp.status));
    out.push(b' ');
    let r = resp.reason();
    out.extend_from_slice(if r.is_empty() {
        reason(resp.status).as_bytes()
    } else {
        r
    });
    out.extend_from_slice(b"\r\n");
    for (name, value) in resp.header_pairs() {
        if is_hop_by_hop(name) {
            continue;
        }
        if framing != ClientFraming::Same && name.eq_ignore_ascii_case(b"content-length") {
            continue;
        }
        if resp.connection_extra
            && listed_in_connection(
                name,
                resp.header_pairs()
                    .filter(|(n, _)| n.eq_ignore_ascii_case(b"connection"))
                    .map(|(_, v)| v),
            )
        {
            continue;
        }
        push_header(out, name, value);
    }
    if framing == ClientFraming::Rechunk
        || (framing == ClientFraming::Same && resp.framing == crate::http::ResponseFraming::Chunked)
    {
        out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
    }
    for (k, v) in extra {
        push_header(out, k, v);
    }
    if !keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if client_http10 {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
}
