//! HTTP/1.1 codec, sans-IO: bytes in, heads and body events out.
//!
//! Owns request-head parsing for the server side ([`request`]), response-head
//! parsing for the upstream side ([`response`]), the strict chunked
//! transfer-coding decoder ([`chunked`]), header classification
//! ([`headers`]) and head serialisation helpers ([`write`]). Nothing in here
//! performs I/O: callers feed bytes and get "need more", a parsed value, or an
//! [`HttpError`] that already knows its status code.

pub mod body;
pub mod chunked;
pub mod error;
pub mod expr;
pub mod headers;
pub mod request;
pub mod request_line;
pub mod response;
pub mod vars;
pub mod write;

pub use error::HttpError;
pub use request::{BodyFraming, HeadLimits, RequestHead};
pub use response::{ResponseFraming, ResponseHead};

/// A byte range inside a frozen head buffer. `u32` keeps header tables small;
/// heads are capped far below 4 GiB.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Span {
    pub start: u32,
    pub end: u32,
}

impl Span {
    /// The span of `part`, which must be a sub-slice of `base`.
    #[inline]
    pub(crate) fn of(base: &[u8], part: &[u8]) -> Span {
        let start = (part.as_ptr() as usize).saturating_sub(base.as_ptr() as usize);
        Span {
            start: start as u32,
            end: (start + part.len()) as u32,
        }
    }

    #[inline]
    pub fn get<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        &buf[self.start as usize..self.end as usize]
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }
}

/// A header as two spans into its head buffer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HeaderSpan {
    pub name: Span,
    pub value: Span,
}

/// HTTP versions the codec speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

impl Version {
    pub fn as_str(self) -> &'static str {
        match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        }
    }
}

/// Finds the end of a head (the byte after the blank line) in `buf`,
/// starting the search at `from` so repeated calls on a growing buffer stay
/// linear. Accepts `\r\n\r\n` and the bare-LF forms so the caller can reject
/// bare LF with a precise error instead of waiting for more bytes.
pub fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
    let start = from.saturating_sub(3);
    for nl in memchr::memchr_iter(b'\n', &buf[start..]) {
        let i = start + nl;
        // "\n\n" or "\n\r\n"
        if i >= 1 && buf[i - 1] == b'\n' {
            return Some(i + 1);
        }
        if i >= 2 && buf[i - 1] == b'\r' && buf[i - 2] == b'\n' {
            return Some(i + 1);
        }
    }
    None
}

/// True when every `\n` in `head` is preceded by `\r`.
pub fn all_crlf(head: &[u8]) -> bool {
    memchr::memchr_iter(b'\n', head).all(|i| i > 0 && head[i - 1] == b'\r')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_end_is_found_incrementally() {
        let buf = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nrest";
        assert_eq!(find_head_end(buf, 0), Some(27));
        // Searching from near the end still finds the terminator.
        assert_eq!(find_head_end(buf, 26), Some(27));
        assert_eq!(find_head_end(&buf[..26], 0), None);
    }

    #[test]
    fn bare_lf_terminators_are_found() {
        assert_eq!(find_head_end(b"GET / HTTP/1.1\nHost: a\n\n", 0), Some(24));
        assert!(!all_crlf(b"GET / HTTP/1.1\nHost: a\r\n\r\n"));
        assert!(all_crlf(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
    }
}
