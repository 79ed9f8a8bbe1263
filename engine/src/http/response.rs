//! Response-head parsing for the upstream side: status, headers as spans,
//! and how the response body is delimited (RFC 9112 §6.3), which depends on
//! the request method as well as the response itself.

use std::mem::MaybeUninit;

use bytes::Bytes;

use super::headers::{self, ConnectionTokens};
use super::request::MAX_HEADERS_CEILING;
use super::{HeaderSpan, Span, Version};

/// How the response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseFraming {
    /// No body (HEAD, 1xx, 204, 304).
    None,
    Length(u64),
    Chunked,
    /// Read until the upstream closes the connection.
    Close,
}

/// Why an upstream response head was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    #[error("invalid upstream response head")]
    Malformed,
    #[error("upstream response head too large")]
    TooLarge,
    #[error("invalid Content-Length in upstream response")]
    BadContentLength,
    #[error("upstream switched protocols, which is not supported")]
    Upgrade,
}

#[derive(Debug)]
pub struct ResponseHead {
    pub buf: Bytes,
    pub status: u16,
    pub reason: Span,
    pub version: Version,
    pub headers: Vec<HeaderSpan>,
    pub framing: ResponseFraming,
    pub keep_alive: bool,
    pub connection_extra: bool,
}

impl ResponseHead {
    /// Parses a complete response head. `head_request` selects the HEAD
    /// rule (no body whatever the headers say).
    pub fn parse(
        buf: Bytes,
        head_request: bool,
        max_headers: usize,
        mut scratch: Vec<HeaderSpan>,
    ) -> Result<ResponseHead, ResponseError> {
        scratch.clear();
        let max_headers = max_headers.min(MAX_HEADERS_CEILING);
        let mut table =
            [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS_CEILING];
        let mut resp = httparse::Response::new(&mut []);
        match httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut resp,
            &buf,
            &mut table[..max_headers],
        ) {
            Ok(httparse::Status::Complete(_)) => {}
            Err(httparse::Error::TooManyHeaders) => return Err(ResponseError::TooLarge),
            _ => return Err(ResponseError::Malformed),
        }
        let status = resp.code.ok_or(ResponseError::Malformed)?;
        let version = if resp.version == Some(0) {
            Version::Http10
        } else {
            Version::Http11
        };
        let reason = Span::of(&buf, resp.reason.unwrap_or("").as_bytes());
        let facts = HeaderFacts::gather(&buf, resp.headers, &mut scratch)?;
        if status == 101 {
            return Err(ResponseError::Upgrade);
        }
        let framing = facts.framing(status, head_request);
        let keep_alive = facts.conn.keeps_alive(version)
            && framing != ResponseFraming::Close
            && !(facts.te && facts.cl.is_some());
        Ok(ResponseHead {
            buf,
            status,
            reason,
            version,
            headers: scratch,
            framing,
            keep_alive,
            connection_extra: facts.conn.has_extra,
        })
    }

    pub fn recycle(self) -> Vec<HeaderSpan> {
        self.headers
    }

    /// True for interim responses (1xx other than 101) that precede the
    /// final one.
    pub fn is_interim(&self) -> bool {
        (100..200).contains(&self.status)
    }

    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|h| h.name.get(&self.buf).eq_ignore_ascii_case(name.as_bytes()))
            .map(|h| h.value.get(&self.buf))
    }

    pub fn header_pairs(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.headers
            .iter()
            .map(|h| (h.name.get(&self.buf), h.value.get(&self.buf)))
    }

    pub fn reason(&self) -> &[u8] {
        self.reason.get(&self.buf)
    }

    /// True when the response is a server-sent event stream.
    pub fn is_event_stream(&self) -> bool {
        self.header("content-type")
            .is_some_and(|v| v.len() >= 17 && v[..17].eq_ignore_ascii_case(b"text/event-stream"))
    }
}

/// What a response's headers say about its body and its connection,
/// gathered in the one pass that fills the header table.
#[derive(Default)]
struct HeaderFacts {
    /// `Content-Length` (all of them agreeing).
    cl: Option<u64>,
    /// A `Transfer-Encoding` was present; `chunked`: the last one ends in
    /// `chunked`.
    te: bool,
    chunked: bool,
    conn: ConnectionTokens,
}

impl HeaderFacts {
    /// Records every header as spans into `table` and reads
    /// `Content-Length`, `Transfer-Encoding` and `Connection`.
    #[inline]
    fn gather(
        buf: &[u8],
        parsed: &[httparse::Header<'_>],
        table: &mut Vec<HeaderSpan>,
    ) -> Result<HeaderFacts, ResponseError> {
        let mut facts = HeaderFacts::default();
        for h in parsed {
            let name = h.name.as_bytes();
            let value = headers::trim(h.value);
            table.push(HeaderSpan {
                name: Span::of(buf, name),
                value: Span::of(buf, value),
            });
            if name.eq_ignore_ascii_case(b"content-length") {
                let n =
                    headers::parse_content_length(value).ok_or(ResponseError::BadContentLength)?;
                if facts.cl.is_some_and(|p| p != n) {
                    return Err(ResponseError::BadContentLength);
                }
                facts.cl = Some(n);
            } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                facts.te = true;
                facts.chunked = headers::list_items(value)
                    .last()
                    .is_some_and(|c| c.eq_ignore_ascii_case(b"chunked"));
            } else if name.eq_ignore_ascii_case(b"connection") {
                facts.conn.add(value);
            }
        }
        Ok(facts)
    }

    /// How the body is delimited (RFC 9112 §6.3): none after HEAD and for
    /// 1xx, 204 and 304; else chunked, a length, or until the close.
    #[inline]
    fn framing(&self, status: u16, head_request: bool) -> ResponseFraming {
        let no_body =
            head_request || (100..200).contains(&status) || status == 204 || status == 304;
        if no_body {
            ResponseFraming::None
        } else if self.te {
            if self.chunked {
                ResponseFraming::Chunked
            } else {
                ResponseFraming::Close
            }
        } else {
            match self.cl {
                Some(n) => ResponseFraming::Length(n),
                None => ResponseFraming::Close,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str, head: bool) -> Result<ResponseHead, ResponseError> {
        ResponseHead::parse(
            Bytes::copy_from_slice(raw.as_bytes()),
            head,
            128,
            Vec::new(),
        )
    }

    #[test]
    fn framing_rules() {
        assert_eq!(
            parse("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", false)
                .unwrap()
                .framing,
            ResponseFraming::Length(3)
        );
        assert_eq!(
            parse("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", true)
                .unwrap()
                .framing,
            ResponseFraming::None
        );
        assert_eq!(
            parse("HTTP/1.1 204 No Content\r\n\r\n", false)
                .unwrap()
                .framing,
            ResponseFraming::None
        );
        assert_eq!(
            parse(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                false
            )
            .unwrap()
            .framing,
            ResponseFraming::Chunked
        );
        let close = parse("HTTP/1.1 200 OK\r\n\r\n", false).unwrap();
        assert_eq!(close.framing, ResponseFraming::Close);
        assert!(!close.keep_alive);
        let both = parse(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
            false,
        )
        .unwrap();
        assert_eq!(both.framing, ResponseFraming::Chunked);
        assert!(!both.keep_alive);
    }

    #[test]
    fn event_stream_and_interim() {
        let r = parse("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\nTransfer-Encoding: chunked\r\n\r\n", false).unwrap();
        assert!(r.is_event_stream());
        assert!(parse("HTTP/1.1 100 Continue\r\n\r\n", false)
            .unwrap()
            .is_interim());
        assert_eq!(
            parse("HTTP/1.1 101 Switching\r\n\r\n", false).unwrap_err(),
            ResponseError::Upgrade
        );
    }

    #[test]
    fn bad_content_length_is_rejected() {
        assert!(parse("HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", false).is_err());
        assert!(parse(
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            false
        )
        .is_err());
    }
}
