//! One HTTP/1.1 keep-alive connection of the load generator, and what one
//! request observed: status, total latency, time to first token, the gap
//! between tokens, the instance that answered (`x-ringway-instance` or
//! `x-mock-instance`), and whether a stream ended properly. An error
//! status's body is kept (up to [`ERROR_BODY_MAX`]) and checked to be a
//! JSON object: an error answer a client can read.
//!
//! Responses are parsed with ringway's sans-IO codec and SSE parser; token
//! events are recognised by cheap byte checks, not full JSON parsing, so
//! the generator stays light next to the system under test.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use monoio::io::AsyncWriteRentExt;
use monoio::net::TcpStream;
use ringway::http::body::BodyDecoder;
use ringway::http::{find_head_end, HeaderSpan, ResponseHead};
use ringway::sse::SseParser;

use crate::stats::ErrorClass;

/// What one request observed.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub status: u16,
    /// From send (closed loop) to the last byte.
    pub elapsed: Duration,
    pub ttft: Option<Duration>,
    /// Gaps between consecutive token events.
    pub itl: Vec<Duration>,
    pub instance: Option<String>,
    /// The gateway's own time, as ringway reports it
    /// (`X-Ringway-Overhead-Us`: the request's time minus the upstream's).
    pub overhead_us: Option<u64>,
    pub stream: bool,
    /// A stream ended with `[DONE]` / `message_stop`.
    pub completed: bool,
    /// A stream ended with an SSE error event.
    pub error_event: bool,
    pub tokens: u32,
    pub bytes: u64,
    /// The server will close the connection.
    pub close: bool,
    /// Upstream attempts the answer took (`X-Ringway-Attempts`).
    pub attempts: Option<u32>,
    /// A 4xx/5xx whose body is not a JSON object.
    pub malformed_error: bool,
    /// An error status's body or a stream's error event, shortened.
    pub error_detail: Option<String>,
}

/// The most of an error status's body kept for checking.
pub const ERROR_BODY_MAX: usize = 1 << 20;
/// The most of an error kept in [`Outcome::error_detail`].
const DETAIL_MAX: usize = 300;

fn shorten(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(&b[..b.len().min(DETAIL_MAX)]);
    s.into_owned()
}

/// An error status's body a client can read: a JSON object.
pub fn is_json_object(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body).is_ok_and(|v| v.is_object())
}

#[derive(Debug)]
pub struct Failure {
    pub class: ErrorClass,
    pub detail: String,
}

fn fail(class: ErrorClass, detail: impl Into<String>) -> Failure {
    Failure {
        class,
        detail: detail.into(),
    }
}

pub struct Conn {
    io: TcpStream,
    buf: BytesMut,
    scratch: Vec<HeaderSpan>,
}

impl Conn {
    pub async fn connect(addr: SocketAddr, timeout: Duration) -> Result<Conn, Failure> {
        match monoio::time::timeout(timeout, TcpStream::connect_addr(addr)).await {
            Ok(Ok(io)) => {
                let _ = io.set_nodelay(true);
                Ok(Conn {
                    io,
                    buf: BytesMut::with_capacity(32 * 1024),
                    scratch: Vec::with_capacity(32),
                })
            }
            Ok(Err(e)) => Err(fail(ErrorClass::Connect, e.to_string())),
            Err(_) => Err(fail(ErrorClass::Timeout, "connect timed out")),
        }
    }

    async fn fill(&mut self, timeout: Duration) -> Result<usize, Failure> {
        let buf = std::mem::take(&mut self.buf);
        match monoio::time::timeout(timeout, ringway::net::read_more(&mut self.io, buf)).await {
            Err(_) => Err(fail(ErrorClass::Timeout, "read timed out")),
            Ok((res, buf)) => {
                self.buf = buf;
                res.map_err(|e| fail(ErrorClass::Io, e.to_string()))
            }
        }
    }

    /// Sends a prepared request and reads the whole response.
    pub async fn exchange(
        &mut self,
        request: bytes::Bytes,
        timeout: Duration,
    ) -> Result<Outcome, Failure> {
        let sent = Instant::now();
        let (res, _) = self.io.write_all(request).await;
        res.map_err(|e| fail(ErrorClass::Io, e.to_string()))?;
        let head = loop {
            if let Some(end) = find_head_end(&self.buf, 0) {
                let bytes = self.buf.split_to(end).freeze();
                let head =
                    ResponseHead::parse(bytes, false, 256, std::mem::take(&mut self.scratch))
                        .map_err(|e| fail(ErrorClass::BadResponse, e.to_string()))?;
                if head.is_interim() {
                    continue;
                }
                break head;
            }
            if self.fill(timeout).await? == 0 {
                return Err(fail(ErrorClass::Io, "connection closed before a response"));
            }
        };
        let mut out = Outcome {
            status: head.status,
            instance: head
                .header("x-ringway-instance")
                .or_else(|| head.header("x-mock-instance"))
                .map(|v| String::from_utf8_lossy(v).into_owned()),
            overhead_us: head.header("x-ringway-overhead-us").and_then(parse_u64),
            attempts: head
                .header("x-ringway-attempts")
                .and_then(parse_u64)
                .map(|n| n as u32),
            stream: head.is_event_stream(),
            close: !head.keep_alive,
            ..Default::default()
        };
        let mut dec = BodyDecoder::new(head.framing);
        let mut sse = out.stream.then(SseParser::new);
        let mut last_token: Option<Instant> = None;
        self.scratch = head.recycle();
        // An error answer's body, to check it is well formed.
        let mut error_body = (out.status >= 400).then(Vec::new);
        // Where a failure after the head was: which answer, how far.
        let cut = |f: Failure, out: &Outcome| Failure {
            class: f.class,
            detail: format!(
                "{} (status {}, instance {}, after {} tokens, {} bytes)",
                f.detail,
                out.status,
                out.instance.as_deref().unwrap_or("-"),
                out.tokens,
                out.bytes
            ),
        };
        loop {
            let now = Instant::now();
            let mut bytes = 0u64;
            let decoded = dec.decode(&mut self.buf, |data| {
                bytes += data.len() as u64;
                if let Some(b) = error_body.as_mut() {
                    let room = ERROR_BODY_MAX.saturating_sub(b.len());
                    b.extend_from_slice(&data[..data.len().min(room)]);
                }
                if let Some(p) = sse.as_mut() {
                    let _ = p.feed(data, |ev| {
                        let d = &*ev.data;
                        if d == b"[DONE]" || is_end(ev.event) {
                            out.completed = true;
                        } else if is_error(ev.event, d) {
                            out.error_event = true;
                            out.error_detail.get_or_insert_with(|| shorten(d));
                        } else if is_token(ev.event, d) {
                            out.tokens += 1;
                            match last_token {
                                None => out.ttft = Some(now - sent),
                                Some(prev) => out.itl.push(now - prev),
                            }
                            last_token = Some(now);
                        }
                    });
                }
            });
            out.bytes += bytes;
            let done =
                decoded.map_err(|e| cut(fail(ErrorClass::BadResponse, e.to_string()), &out))?;
            if done {
                break;
            }
            let filled = match self.fill(timeout).await {
                Ok(n) => n,
                Err(f) => return Err(cut(f, &out)),
            };
            if filled == 0 {
                if dec.eof_is_end() {
                    out.close = true;
                    break;
                }
                return Err(cut(
                    fail(ErrorClass::Truncated, "connection closed mid-body"),
                    &out,
                ));
            }
        }
        if let Some(b) = error_body {
            out.malformed_error = !is_json_object(&b);
            out.error_detail = Some(shorten(&b));
        }
        out.elapsed = sent.elapsed();
        Ok(out)
    }
}

/// A content token: an OpenAI chunk with non-empty `delta.content`, an
/// Anthropic `content_block_delta`, or a Responses API
/// `response.output_text.delta`.
fn is_token(event: Option<&[u8]>, data: &[u8]) -> bool {
    match event {
        Some(b"content_block_delta" | b"response.output_text.delta") => return true,
        // Other named events (Responses API lifecycle and parts, whose
        // objects may hold `"content"` arrays) carry no token.
        Some(_) => return false,
        None => {}
    }
    match memchr::memmem::find(data, b"\"content\":\"") {
        Some(i) => data.get(i + 11).is_some_and(|&c| c != b'"'),
        None => false,
    }
}

fn parse_u64(v: &[u8]) -> Option<u64> {
    std::str::from_utf8(v).ok()?.trim().parse().ok()
}

/// A stream's own end: Anthropic's `message_stop`, the Responses API's
/// `response.completed` / `response.incomplete` (chat's is `data: [DONE]`).
fn is_end(event: Option<&[u8]>) -> bool {
    matches!(
        event,
        Some(b"message_stop" | b"response.completed" | b"response.incomplete")
    )
}

fn is_error(event: Option<&[u8]>, data: &[u8]) -> bool {
    matches!(event, Some(b"error" | b"response.failed")) || data.starts_with(b"{\"error\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_detection() {
        assert!(is_token(
            None,
            br#"{"choices":[{"delta":{"content":"hi"}}]}"#
        ));
        assert!(!is_token(
            None,
            br#"{"choices":[{"delta":{"role":"assistant","content":""}}]}"#
        ));
        assert!(is_token(Some(b"content_block_delta"), b"{}"));
        assert!(is_token(Some(b"response.output_text.delta"), b"{}"));
        assert!(!is_token(
            Some(b"response.output_item.done"),
            br#"{"item":{"content":"x"}}"#
        ));
        assert!(is_error(None, br#"{"error":{"message":"x"}}"#));
        assert!(is_error(Some(b"response.failed"), b"{}"));
        assert!(is_end(Some(b"response.completed")) && is_end(Some(b"message_stop")));
        assert!(!is_end(Some(b"response.output_text.done")) && !is_end(None));
        assert!(!is_error(None, br#"{"choices":[]}"#));
    }

    #[test]
    fn overhead_header_values() {
        assert_eq!(parse_u64(b"17"), Some(17));
        assert_eq!(parse_u64(b" 250 "), Some(250));
        assert_eq!(parse_u64(b"-3"), None);
        assert_eq!(parse_u64(b"x"), None);
    }

    #[test]
    fn error_bodies_must_be_json_objects() {
        assert!(is_json_object(
            br#"{"error":{"message":"all instances failed"}}"#
        ));
        assert!(is_json_object(b" {\"message\":\"x\"}\n"));
        for bad in [
            &b""[..],
            b"<html>502 Bad Gateway</html>",
            b"{\"error\":",
            b"[1,2]",
            b"\"text\"",
        ] {
            assert!(!is_json_object(bad), "{}", String::from_utf8_lossy(bad));
        }
    }
}
