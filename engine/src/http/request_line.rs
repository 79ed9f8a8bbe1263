//! The request line's version, read where httparse refuses it: RFC 9112
//! §3 and §2.3 say what is malformed (400) and what is a well-formed
//! version the gateway does not speak (505).
//!
//! `request-line = method SP request-target SP HTTP-version`, and
//! `HTTP-version = "HTTP" "/" DIGIT "." DIGIT`, the name case-sensitive.
//! httparse accepts only `HTTP/1.0` and `HTTP/1.1` and calls everything
//! else a version error; this module tells those apart. A later HTTP/1
//! minor (`HTTP/1.2`) is processed as HTTP/1.1: RFC 9110 §6.2 says a
//! recipient "SHOULD process the message as if it were in the highest
//! minor version within that major version to which the recipient is
//! conformant", which is what nginx does. Only the cold path runs this.

use bytes::{Bytes, BytesMut};

use super::HttpError;

/// Why httparse refused the version of `head`'s request line: a malformed
/// line (400), a major version other than 1 (505), or a later HTTP/1
/// minor, for which the head is returned with its version read as
/// `HTTP/1.1` (a copy; spans stay valid: the version keeps its length).
#[cold]
#[inline(never)]
pub fn refused_version(head: &[u8]) -> Result<Bytes, HttpError> {
    let line_end = memchr::memchr(b'\r', head).unwrap_or(head.len());
    let line = &head[..line_end];
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HttpError::Malformed("invalid request line"));
    };
    if method.is_empty() || target.is_empty() {
        return Err(HttpError::Malformed("invalid request line"));
    }
    let &[b'H', b'T', b'T', b'P', b'/', major, b'.', minor] = version else {
        return Err(HttpError::Malformed("invalid HTTP version"));
    };
    if !major.is_ascii_digit() || !minor.is_ascii_digit() {
        return Err(HttpError::Malformed("invalid HTTP version"));
    }
    if major != b'1' {
        return Err(HttpError::UnsupportedVersion);
    }
    if minor < b'2' {
        // httparse reads HTTP/1.0 and 1.1 itself: what it refused is
        // elsewhere on the line (a stray `\r`).
        return Err(HttpError::Malformed("invalid request line"));
    }
    let mut copy = BytesMut::from(head);
    copy[line_end - 1] = b'1';
    Ok(copy.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(line: &str) -> Result<String, HttpError> {
        refused_version(format!("{line}\r\nHost: a\r\n\r\n").as_bytes()).map(|b| {
            String::from_utf8_lossy(&b)
                .lines()
                .next()
                .unwrap_or("")
                .to_owned()
        })
    }

    #[test]
    fn malformed_lines_and_versions_are_400() {
        for line in [
            "GET /",
            "GET  / HTTP/1.1",
            "GET / HTTP/1.1 x",
            "GET / HTTP/1.1 ",
            " GET / HTTP/1.1",
            "GET / FOO/1.1",
            "GET / http/1.1",
            "GET / HTTP/1.10",
            "GET / HTTP/11",
            "GET / HTTP/1.x",
            "GET / HTTP/x.1",
            "",
        ] {
            assert_eq!(of(line).map_err(|e| e.status()), Err(400), "{line:?}");
        }
    }

    #[test]
    fn other_majors_are_505_and_later_minors_read_as_1_1() {
        for line in [
            "GET / HTTP/2.0",
            "GET / HTTP/3.0",
            "GET / HTTP/0.9",
            "GET / HTTP/9.9",
        ] {
            assert_eq!(of(line), Err(HttpError::UnsupportedVersion), "{line:?}");
        }
        assert_eq!(of("GET /x HTTP/1.2").as_deref(), Ok("GET /x HTTP/1.1"));
        assert_eq!(of("GET /x HTTP/1.9").as_deref(), Ok("GET /x HTTP/1.1"));
        let stray_cr = refused_version(b"GET / HTTP/1.2\rX\r\nHost: a\r\n\r\n");
        let again = stray_cr.and_then(|b| refused_version(&b));
        assert_eq!(again.map_err(|e| e.status()), Err(400));
    }
}
