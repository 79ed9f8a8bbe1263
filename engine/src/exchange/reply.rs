//! Replies the gateway writes itself: every error carries a JSON body
//! (`{"error_msg": "..."}`, the shape of APISIX's own errors) and says
//! whether the connection stays open.
//!
//! Within a request there is one way to answer: [`ClientConn::reply`]
//! with a [`Reply`] — it records the answer in the request's context (for
//! the log), writes it and says whether the connection stays open. The
//! functions below only format (the Admin API and metrics listeners, and
//! a head too broken to be a request, use them directly).

use std::time::Duration;

use super::client::ClientConn;
use super::ctx::RequestCtx;
use crate::http::write::{push_header, push_status_line, push_u64};

/// An answer of the gateway's own, written whole.
#[derive(Debug, Clone, Copy)]
pub struct Reply<'a> {
    pub status: u16,
    pub content_type: &'a str,
    pub body: &'a [u8],
    /// Extra header lines, rendered (`Name: v\r\n`; see [`header_lines`]).
    pub headers: &'a [u8],
}

impl<'a> Reply<'a> {
    /// A JSON answer (an error body from [`error_body`], or any JSON).
    pub fn json(status: u16, body: &'a str) -> Reply<'a> {
        Reply {
            status,
            content_type: "application/json",
            body: body.as_bytes(),
            headers: b"",
        }
    }

    /// With extra header lines.
    pub fn with_headers(self, headers: &'a [u8]) -> Reply<'a> {
        Reply { headers, ..self }
    }
}

impl ClientConn {
    /// Answers the request `ctx` describes with `r`: recorded for the log
    /// (status, size, body for loggers), written, flushed within
    /// `send_timeout`. Whether the connection stays open: `keep_alive`
    /// and the write succeeded.
    pub async fn reply(
        &mut self,
        ctx: &mut RequestCtx,
        r: Reply<'_>,
        keep_alive: bool,
        send_timeout: Duration,
    ) -> bool {
        ctx.answered(r.status, r.body);
        self.wbuf.clear();
        let head = Head {
            status: r.status,
            content_type: r.content_type,
            keep_alive,
            extra: r.headers,
            id: ctx.response_id(),
        };
        head.write(&mut self.wbuf, r.body);
        self.flush_wbuf(send_timeout).await.is_ok() && keep_alive
    }
}

/// Serialises a complete JSON error response into `out`.
pub fn error(out: &mut Vec<u8>, status: u16, message: &str, keep_alive: bool) {
    let body = error_body(message);
    json(out, status, body.as_bytes(), keep_alive, &[]);
}

/// `{"error_msg": message}` with proper escaping.
pub fn error_body(message: &str) -> String {
    let mut m = serde_json::Map::new();
    m.insert(
        "error_msg".into(),
        serde_json::Value::String(message.to_owned()),
    );
    serde_json::Value::Object(m).to_string()
}

/// Serialises a complete JSON response with extra headers.
pub fn json(out: &mut Vec<u8>, status: u16, body: &[u8], keep_alive: bool, extra: &[(&str, &str)]) {
    json_raw_headers(out, status, body, keep_alive, &header_lines(extra));
}

/// `extra` rendered as header lines (`Name: v\r\n`).
pub fn header_lines(extra: &[(&str, &str)]) -> Vec<u8> {
    let mut lines = Vec::new();
    for (k, v) in extra {
        push_header(&mut lines, k.as_bytes(), v.as_bytes());
    }
    lines
}

/// Like [`json`], with extra header lines already rendered (`Name: v\r\n`).
pub fn json_raw_headers(
    out: &mut Vec<u8>,
    status: u16,
    body: &[u8],
    keep_alive: bool,
    extra: &[u8],
) {
    typed(out, status, "application/json", body, keep_alive, extra);
}

/// A complete response with a body of `content_type` (a plugin's
/// `_meta.error_response` may be text) and rendered extra header lines.
pub fn typed(
    out: &mut Vec<u8>,
    status: u16,
    content_type: &str,
    body: &[u8],
    keep_alive: bool,
    extra: &[u8],
) {
    let head = Head {
        status,
        content_type,
        keep_alive,
        extra,
        id: None,
    };
    head.write(out, body);
}

/// The head of a whole answer of the gateway's own.
struct Head<'a> {
    status: u16,
    content_type: &'a str,
    keep_alive: bool,
    /// Rendered header lines.
    extra: &'a [u8],
    /// The request id's header, when it goes in the answer.
    id: Option<(&'a [u8], &'a [u8])>,
}

impl Head<'_> {
    /// The head, then `body`.
    fn write(&self, out: &mut Vec<u8>, body: &[u8]) {
        push_status_line(out, self.status);
        push_header(out, b"Content-Type", self.content_type.as_bytes());
        out.extend_from_slice(b"Content-Length: ");
        push_u64(out, body.len() as u64);
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(self.extra);
        if let Some((name, value)) = self.id {
            push_header(out, name, value);
        }
        push_header(out, b"Server", b"ringway");
        if !self.keep_alive {
            push_header(out, b"Connection", b"close");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(body);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_is_json_with_length() {
        let mut out = Vec::new();
        error(&mut out, 404, "404 Route Not Found", true);
        let s = String::from_utf8(out).unwrap();
        assert!(s.starts_with("HTTP/1.1 404 Not Found\r\n"));
        assert!(s.ends_with("\r\n\r\n{\"error_msg\":\"404 Route Not Found\"}"));
        assert!(s.contains("Content-Length: 35\r\n"));
        let mut out = Vec::new();
        error(&mut out, 400, "a \"quoted\" thing", false);
        let s = String::from_utf8(out).unwrap();
        assert!(s.contains("Connection: close"));
        assert!(s.ends_with(r#"{"error_msg":"a \"quoted\" thing"}"#));
    }
}
