//! Request-head parsing for the server side.
//!
//! The connection loop finds the end of the head with
//! [`super::find_head_end`], splits exactly those bytes off its read buffer
//! and hands them to [`RequestHead::parse`]. The parsed head keeps the frozen
//! bytes and refers to them by [`Span`]s, so no header is copied. Everything
//! that decides how to read the body (RFC 9112 §6) is settled here, and every
//! ambiguity that enables request smuggling is an error.

use std::mem::MaybeUninit;

use bytes::Bytes;
use http::Method;

use super::headers::{self, ConnectionTokens};
use super::{all_crlf, HeaderSpan, HttpError, Span, Version};

pub use crate::config::bounds::MAX_HEADERS_CEILING;

/// Limits applied while parsing a head.
#[derive(Debug, Clone, Copy)]
pub struct HeadLimits {
    pub max_head_bytes: usize,
    pub max_headers: usize,
}

impl Default for HeadLimits {
    fn default() -> Self {
        HeadLimits {
            max_head_bytes: 32 * 1024,
            max_headers: 128,
        }
    }
}

/// How the request body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    None,
    Length(u64),
    Chunked,
}

/// A parsed request head. Header names and values are spans into `buf`.
#[derive(Debug)]
pub struct RequestHead {
    pub buf: Bytes,
    pub method: Method,
    /// The request-target exactly as received.
    pub target: Span,
    /// The path without the query; empty means `/` (absolute-form without path).
    pub path: Span,
    pub query: Option<Span>,
    pub version: Version,
    pub headers: Vec<HeaderSpan>,
    /// The `Host` header value, or the authority of an absolute-form target.
    pub host: Option<Span>,
    pub framing: BodyFraming,
    pub keep_alive: bool,
    pub expect_continue: bool,
    /// `Connection` names extra headers that must not be forwarded.
    pub connection_extra: bool,
    pub upgrade: bool,
}

impl RequestHead {
    /// Parses a complete head (request line through the blank line).
    /// `scratch` is a recycled header table (see [`RequestHead::recycle`]).
    pub fn parse(
        buf: Bytes,
        limits: &HeadLimits,
        mut scratch: Vec<HeaderSpan>,
    ) -> Result<RequestHead, HttpError> {
        check_size_and_line_ends(&buf, limits)?;
        scratch.clear();
        let max_headers = limits.max_headers.min(MAX_HEADERS_CEILING);
        let mut table =
            [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS_CEILING];
        let mut req = httparse::Request::new(&mut []);
        match req.parse_with_uninit_headers(&buf, &mut table[..max_headers]) {
            Ok(httparse::Status::Complete(_)) => {}
            Ok(httparse::Status::Partial) => {
                return Err(HttpError::Malformed("incomplete request head"))
            }
            Err(httparse::Error::Version) => {
                // Malformed (400), another major (505), or a later 1.x
                // minor, read again as HTTP/1.1.
                let as_1_1 = super::request_line::refused_version(&buf)?;
                return RequestHead::parse(as_1_1, limits, scratch);
            }
            Err(e) => return Err(syntax_error(e, max_headers)),
        }
        let (version, method, target) = line_parts(&req, &buf)?;
        let facts = HeaderFacts::gather(&buf, req.headers, &mut scratch)?;
        let framing = facts.framing(version)?;
        let (path, query, authority) = split_target(&buf, target)?;
        let host = facts.host(authority, version)?;
        let expect_continue =
            facts.expect_continue && version == Version::Http11 && framing != BodyFraming::None;
        Ok(RequestHead {
            buf,
            method,
            target,
            path,
            query,
            version,
            headers: scratch,
            host,
            framing,
            keep_alive: facts.conn.keeps_alive(version),
            expect_continue,
            connection_extra: facts.conn.has_extra,
            upgrade: facts.conn.upgrade,
        })
    }

    /// Gives the header table back for the next request on the connection.
    /// Moves the head's bytes into an allocation of their own, releasing
    /// the (larger) read buffer they were parsed in: for a request that
    /// stays open long, like a stream.
    pub fn detach(&mut self) {
        self.buf = Bytes::copy_from_slice(&self.buf);
    }

    pub fn recycle(self) -> Vec<HeaderSpan> {
        self.headers
    }

    /// The path used for routing (`/` for an empty absolute-form path).
    #[inline]
    pub fn path(&self) -> &[u8] {
        if self.path.is_empty() {
            b"/"
        } else {
            self.path.get(&self.buf)
        }
    }

    #[inline]
    pub fn target(&self) -> &[u8] {
        self.target.get(&self.buf)
    }

    #[inline]
    pub fn query(&self) -> Option<&[u8]> {
        self.query.map(|q| q.get(&self.buf))
    }

    /// The host without a port, lower-cased comparisons are the caller's job.
    pub fn host(&self) -> Option<&[u8]> {
        self.host.map(|h| strip_port(h.get(&self.buf)))
    }

    /// The raw `Host` value (with port) as the client sent it.
    pub fn host_with_port(&self) -> Option<&[u8]> {
        self.host.map(|h| h.get(&self.buf))
    }

    #[inline]
    pub fn header_name(&self, h: &HeaderSpan) -> &[u8] {
        h.name.get(&self.buf)
    }

    #[inline]
    pub fn header_value(&self, h: &HeaderSpan) -> &[u8] {
        h.value.get(&self.buf)
    }

    /// The first value of header `name` (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        let name = name.as_bytes();
        self.headers
            .iter()
            .find(|h| h.name.get(&self.buf).eq_ignore_ascii_case(name))
            .map(|h| h.value.get(&self.buf))
    }

    /// All values of header `name`.
    pub fn header_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers
            .iter()
            .filter(move |h| h.name.get(&self.buf).eq_ignore_ascii_case(name.as_bytes()))
            .map(|h| h.value.get(&self.buf))
    }

    /// Iterates `(name, value)` pairs in order.
    pub fn header_pairs(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.headers
            .iter()
            .map(|h| (h.name.get(&self.buf), h.value.get(&self.buf)))
    }

    pub fn has_body(&self) -> bool {
        self.framing != BodyFraming::None
    }
}

/// Refuses a head over the size limit, or with a bare LF anywhere in it.
#[inline]
fn check_size_and_line_ends(buf: &[u8], limits: &HeadLimits) -> Result<(), HttpError> {
    if buf.len() > limits.max_head_bytes {
        return Err(HttpError::HeadTooLarge {
            limit: limits.max_head_bytes,
        });
    }
    if !all_crlf(buf) {
        return Err(HttpError::Malformed("bare LF in request head"));
    }
    Ok(())
}

/// The error for a head httparse refused, other than for its version
/// (which [`super::request_line::refused_version`] reads again).
#[cold]
fn syntax_error(e: httparse::Error, max_headers: usize) -> HttpError {
    match e {
        httparse::Error::TooManyHeaders => HttpError::TooManyHeaders { limit: max_headers },
        httparse::Error::HeaderName => {
            HttpError::Malformed("invalid header name (obs-fold or bad token)")
        }
        httparse::Error::HeaderValue => HttpError::Malformed("invalid header value"),
        httparse::Error::Token => HttpError::Malformed("invalid method"),
        _ => HttpError::Malformed("invalid request line"),
    }
}

/// The version, method and request-target of a parsed request line.
#[inline]
fn line_parts(
    req: &httparse::Request<'_, '_>,
    buf: &[u8],
) -> Result<(Version, Method, Span), HttpError> {
    let version = match req.version {
        Some(0) => Version::Http10,
        Some(1) => Version::Http11,
        _ => return Err(HttpError::UnsupportedVersion),
    };
    let method_bytes = req.method.ok_or(HttpError::Malformed("missing method"))?;
    let method = Method::from_bytes(method_bytes.as_bytes())
        .map_err(|_| HttpError::Malformed("invalid method"))?;
    let target_str = req
        .path
        .ok_or(HttpError::Malformed("missing request target"))?;
    Ok((version, method, Span::of(buf, target_str.as_bytes())))
}

/// What the headers say about the body, the host, the connection and
/// `Expect`, gathered in the one pass that fills the header table.
#[derive(Default)]
struct HeaderFacts {
    content_length: Option<u64>,
    transfer: TransferCodings,
    /// The last `Host` value, and how many there were.
    host: Option<Span>,
    host_count: usize,
    conn: ConnectionTokens,
    expect_continue: bool,
}

impl HeaderFacts {
    /// Records every header as spans into `table` and reads the ones that
    /// matter for framing, routing and the connection.
    #[inline]
    fn gather(
        buf: &[u8],
        parsed: &[httparse::Header<'_>],
        table: &mut Vec<HeaderSpan>,
    ) -> Result<HeaderFacts, HttpError> {
        let mut facts = HeaderFacts::default();
        for h in parsed {
            let name = h.name.as_bytes();
            let value = headers::trim(h.value);
            let span = HeaderSpan {
                name: Span::of(buf, name),
                value: Span::of(buf, value),
            };
            table.push(span);
            facts.note(name, value, span.value)?;
        }
        Ok(facts)
    }

    /// Reads one header: `Host`, `Content-Length`, `Transfer-Encoding`,
    /// `Connection` and `Expect` count, the others do not.
    #[inline]
    fn note(&mut self, name: &[u8], value: &[u8], value_span: Span) -> Result<(), HttpError> {
        match name.len() {
            4 if name.eq_ignore_ascii_case(b"host") => {
                self.host_count += 1;
                self.host = Some(value_span);
            }
            14 if name.eq_ignore_ascii_case(b"content-length") => {
                let n = headers::parse_content_length(value)
                    .ok_or(HttpError::Malformed("invalid Content-Length"))?;
                if self.content_length.is_some_and(|prev| prev != n) {
                    return Err(HttpError::Malformed("conflicting Content-Length headers"));
                }
                self.content_length = Some(n);
            }
            17 if name.eq_ignore_ascii_case(b"transfer-encoding") => self.transfer.add(value),
            10 if name.eq_ignore_ascii_case(b"connection") => self.conn.add(value),
            6 if name.eq_ignore_ascii_case(b"expect") => {
                if value.eq_ignore_ascii_case(b"100-continue") {
                    self.expect_continue = true;
                } else {
                    return Err(HttpError::UnsupportedExpectation);
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// How the body is delimited (RFC 9112 §6), or why that is ambiguous.
    #[inline]
    fn framing(&self, version: Version) -> Result<BodyFraming, HttpError> {
        if !self.transfer.seen {
            return Ok(match self.content_length {
                Some(0) | None => BodyFraming::None,
                Some(n) => BodyFraming::Length(n),
            });
        }
        if self.content_length.is_some() {
            return Err(HttpError::Malformed(
                "both Transfer-Encoding and Content-Length",
            ));
        }
        if version == Version::Http10 {
            return Err(HttpError::Malformed(
                "Transfer-Encoding in an HTTP/1.0 request",
            ));
        }
        // RFC 9112 §6.3: chunked must be the final coding, applied once,
        // or the length cannot be determined (400). Other codings are
        // well-formed but not implemented (501).
        let te = &self.transfer;
        if te.chunked_count != 1 || !te.chunked_last {
            return Err(HttpError::Malformed(
                "chunked must be the final transfer coding, applied once",
            ));
        }
        if te.unknown {
            return Err(HttpError::UnsupportedTransferCoding);
        }
        Ok(BodyFraming::Chunked)
    }

    /// The host: an absolute-form target's `authority`, else the one
    /// `Host` header (which HTTP/1.1 requires).
    #[inline]
    fn host(&self, authority: Option<Span>, version: Version) -> Result<Option<Span>, HttpError> {
        if authority.is_some() {
            return Ok(authority);
        }
        if version == Version::Http11 && self.host_count == 0 {
            return Err(HttpError::Malformed("missing Host header"));
        }
        if self.host_count > 1 {
            return Err(HttpError::Malformed("multiple Host headers"));
        }
        Ok(self.host)
    }
}

/// The codings of every `Transfer-Encoding` header, as far as framing
/// needs them: whether chunked came once and last, and any other.
#[derive(Default)]
struct TransferCodings {
    seen: bool,
    chunked_count: u32,
    chunked_last: bool,
    unknown: bool,
}

impl TransferCodings {
    #[inline]
    fn add(&mut self, value: &[u8]) {
        self.seen = true;
        for item in headers::list_items(value) {
            self.chunked_last = item.eq_ignore_ascii_case(b"chunked");
            if self.chunked_last {
                self.chunked_count += 1;
            } else {
                self.unknown = true;
            }
        }
    }
}

/// Strips a `:port` suffix (keeping IPv6 literals intact).
pub fn strip_port(host: &[u8]) -> &[u8] {
    if host.first() == Some(&b'[') {
        return match memchr::memchr(b']', host) {
            Some(i) => &host[..=i],
            None => host,
        };
    }
    match memchr::memrchr(b':', host) {
        Some(i) => &host[..i],
        None => host,
    }
}

/// Splits a request-target into path, query and (for absolute-form) authority.
fn split_target(buf: &[u8], target: Span) -> Result<(Span, Option<Span>, Option<Span>), HttpError> {
    let t = target.get(buf);
    let (path_start, authority) = if t.first() == Some(&b'/') {
        (target.start, None)
    } else if t == b"*" {
        return Ok((target, None, None));
    } else {
        let rest = if t.len() > 7 && t[..7].eq_ignore_ascii_case(b"http://") {
            7
        } else if t.len() > 8 && t[..8].eq_ignore_ascii_case(b"https://") {
            8
        } else {
            return Err(HttpError::Malformed(
                "request target must be origin-form or absolute-form",
            ));
        };
        let after = &t[rest..];
        let auth_len = after
            .iter()
            .position(|&b| b == b'/' || b == b'?')
            .unwrap_or(after.len());
        if auth_len == 0 {
            return Err(HttpError::Malformed(
                "absolute-form target without authority",
            ));
        }
        let a_start = target.start + rest as u32;
        (
            a_start + auth_len as u32,
            Some(Span {
                start: a_start,
                end: a_start + auth_len as u32,
            }),
        )
    };
    let after = &buf[path_start as usize..target.end as usize];
    match memchr::memchr(b'?', after) {
        Some(q) => Ok((
            Span {
                start: path_start,
                end: path_start + q as u32,
            },
            Some(Span {
                start: path_start + q as u32 + 1,
                end: target.end,
            }),
            authority,
        )),
        None => Ok((
            Span {
                start: path_start,
                end: target.end,
            },
            None,
            authority,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> Result<RequestHead, HttpError> {
        RequestHead::parse(
            Bytes::copy_from_slice(raw.as_bytes()),
            &HeadLimits::default(),
            Vec::new(),
        )
    }

    #[test]
    fn parses_a_chat_request_head() {
        let h = parse("POST /v1/chat/completions?x=1 HTTP/1.1\r\nHost: gw:9080\r\nContent-Type: application/json\r\nContent-Length: 42\r\n\r\n").unwrap();
        assert_eq!(h.method, Method::POST);
        assert_eq!(h.path(), b"/v1/chat/completions");
        assert_eq!(h.query(), Some(&b"x=1"[..]));
        assert_eq!(h.host(), Some(&b"gw"[..]));
        assert_eq!(h.framing, BodyFraming::Length(42));
        assert!(h.keep_alive);
        assert_eq!(h.header("content-type"), Some(&b"application/json"[..]));
    }

    #[test]
    fn keep_alive_defaults_by_version() {
        assert!(!parse("GET / HTTP/1.0\r\n\r\n").unwrap().keep_alive);
        assert!(
            parse("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
                .unwrap()
                .keep_alive
        );
        assert!(
            !parse("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
                .unwrap()
                .keep_alive
        );
    }

    #[test]
    fn smuggling_shapes_are_rejected() {
        let cases = [
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -5\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nX-Folded: a\r\n b\r\n\r\n",
            "GET / HTTP/1.1\nHost: a\r\n\r\n",
            "GET / HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        ];
        for raw in cases {
            let err = parse(raw).expect_err(raw);
            assert_eq!(err.status(), 400, "{raw}: {err}");
        }
        assert_eq!(
            parse("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n")
                .unwrap_err()
                .status(),
            501
        );
        assert_eq!(
            parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nExpect: teapot\r\n\r\n")
                .unwrap_err()
                .status(),
            417
        );
    }

    #[test]
    fn identical_duplicate_content_length_is_accepted() {
        let h =
            parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n")
                .unwrap();
        assert_eq!(h.framing, BodyFraming::Length(5));
    }

    #[test]
    fn absolute_form_sets_host_and_path() {
        let h = parse("GET http://example.com:8080/a/b?c HTTP/1.1\r\nHost: other\r\n\r\n").unwrap();
        assert_eq!(h.host(), Some(&b"example.com"[..]));
        assert_eq!(h.path(), b"/a/b");
        assert_eq!(h.query(), Some(&b"c"[..]));
        let h = parse("GET http://example.com HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert_eq!(h.path(), b"/");
    }

    #[test]
    fn header_limits() {
        let mut raw = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
        for i in 0..200 {
            raw.push_str(&format!("X-{i}: v\r\n"));
        }
        raw.push_str("\r\n");
        assert_eq!(parse(&raw).unwrap_err().status(), 431);
        let limits = HeadLimits {
            max_head_bytes: 16,
            max_headers: 10,
        };
        let err = RequestHead::parse(
            Bytes::from_static(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
            &limits,
            Vec::new(),
        )
        .unwrap_err();
        assert_eq!(err.status(), 431);
    }

    #[test]
    fn expect_continue_only_with_body() {
        assert!(
            parse(
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n"
            )
            .unwrap()
            .expect_continue
        );
        assert!(
            !parse("GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n")
                .unwrap()
                .expect_continue
        );
    }

    #[test]
    fn strip_port_handles_ipv6() {
        assert_eq!(strip_port(b"[::1]:80"), b"[::1]");
        assert_eq!(strip_port(b"a.b:80"), b"a.b");
        assert_eq!(strip_port(b"a.b"), b"a.b");
    }
}
