//! The response half of an exchange: read the upstream's final response
//! head (skipping 1xx), then relay the body to the client as it arrives —
//! Content-Length, chunked (bytes passed through unchanged while a scanner
//! finds the end), or close-delimited (re-chunked for HTTP/1.1 clients).
//! Nothing is buffered beyond one read; small first pieces ride in the same
//! write as the response head. A logger's `include_resp_body` gets a copy
//! of what passes, without chunk framing.

use std::time::Duration;

use bytes::{Buf, BytesMut};

use super::error::ProxyError;
use super::response_head::ClientFraming;
use crate::exchange::ctx::ResponseBody;
use crate::http::chunked::{write_chunk_header, ChunkedDecoder, LAST_CHUNK};
use crate::http::{find_head_end, HeaderSpan, ResponseFraming, ResponseHead};
use crate::net::{self, Io};

/// Largest upstream response head accepted.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// Body pieces up to this size are copied behind the head (one write).
const COALESCE: usize = 16 * 1024;

/// Interim (`1xx`) heads skipped before the final one at most; more is an
/// upstream that never answers (RFC 9110 §15.2 sets no limit; a real
/// server sends one or two).
const MAX_INTERIM: usize = 16;

/// Reads the final response head within `timeout` (for the whole head,
/// interim responses included, so an upstream trickling `1xx` heads
/// cannot hold the request forever). `NoResponse` means the upstream
/// closed before sending a single byte (a stale pooled connection,
/// usually).
pub async fn read_response_head(
    up: &mut Io,
    ubuf: &mut BytesMut,
    head_request: bool,
    max_headers: usize,
    timeout: Duration,
    scratch: &mut Vec<HeaderSpan>,
) -> Result<ResponseHead, ProxyError> {
    ubuf.clear();
    let mut scanned = 0;
    let mut any = false;
    let mut interim = 0;
    let deadline = crate::timer::deadline_after(timeout);
    loop {
        if let Some(end) = find_head_end(ubuf, scanned) {
            let bytes = ubuf.split_to(end).freeze();
            let head =
                ResponseHead::parse(bytes, head_request, max_headers, std::mem::take(scratch))
                    .map_err(|e| ProxyError::BadResponse(response_error_text(e)))?;
            if head.is_interim() {
                interim += 1;
                if interim > MAX_INTERIM {
                    return Err(ProxyError::BadResponse("too many interim (1xx) responses"));
                }
                *scratch = head.recycle();
                scanned = 0;
                continue;
            }
            return Ok(head);
        }
        if ubuf.len() > MAX_RESPONSE_HEAD {
            return Err(ProxyError::BadResponse("response head too large"));
        }
        scanned = ubuf.len();
        let buf = std::mem::take(ubuf);
        match crate::timer::timeout_at(deadline, net::read_more(up, buf)).await {
            Err(_) => return Err(ProxyError::UpstreamTimeout),
            Ok((res, buf)) => {
                *ubuf = buf;
                match res {
                    Ok(0) if !any => return Err(ProxyError::NoResponse),
                    Ok(0) => return Err(ProxyError::UpstreamClosed),
                    Ok(_) => any = true,
                    Err(e) if !any => return Err(ProxyError::NoResponseIo(e)),
                    Err(e) => return Err(ProxyError::UpstreamIo(e)),
                }
            }
        }
    }
}

fn response_error_text(e: crate::http::response::ResponseError) -> &'static str {
    use crate::http::response::ResponseError::*;
    match e {
        Malformed => "malformed response head",
        TooLarge => "too many response headers",
        BadContentLength => "invalid Content-Length",
        Upgrade => "protocol upgrade is not supported",
    }
}

/// How a relay ended.
pub struct Relayed {
    /// The upstream connection ended exactly at the end of the response and
    /// may go back to the pool.
    pub reusable: bool,
    pub bytes: u64,
}

/// A relay failure: the client response is incomplete either way.
pub enum RelayError {
    Upstream(ProxyError),
    Client,
}

/// Sends `wbuf` (the response head) and relays the body.
#[allow(clippy::too_many_arguments)]
pub async fn relay_body(
    up: &mut Io,
    client: &mut Io,
    ubuf: &mut BytesMut,
    wbuf: &mut Vec<u8>,
    framing: ResponseFraming,
    out: ClientFraming,
    read_timeout: Duration,
    send_timeout: Duration,
    capture: Option<&mut ResponseBody>,
) -> Result<Relayed, RelayError> {
    let mut sink = Sink {
        client,
        wbuf,
        send_timeout,
        bytes: 0,
        capture,
        framed: false,
    };
    let mut reusable = false;
    match framing {
        ResponseFraming::None => reusable = ubuf.is_empty(),
        ResponseFraming::Length(n) => {
            let mut left = n;
            loop {
                let take = (left.min(ubuf.len() as u64)) as usize;
                if take > 0 {
                    sink.body(ubuf, take, false).await?;
                    left -= take as u64;
                }
                if left == 0 {
                    reusable = ubuf.is_empty();
                    break;
                }
                sink.flush().await?;
                fill(up, ubuf, read_timeout).await?;
            }
        }
        ResponseFraming::Chunked => {
            let mut dec = ChunkedDecoder::new();
            loop {
                if out == ClientFraming::Raw {
                    // HTTP/1.0 client: decode, send data only.
                    while !ubuf.is_empty() && !dec.is_done() {
                        let d = dec.decode(ubuf).map_err(|_| {
                            RelayError::Upstream(ProxyError::BadResponse("malformed chunked body"))
                        })?;
                        if let Some(r) = d.data {
                            ubuf.advance(r.start);
                            sink.body(ubuf, r.len(), false).await?;
                        } else {
                            ubuf.advance(d.consumed);
                        }
                    }
                    if dec.is_done() {
                        break;
                    }
                } else {
                    sink.framed = true;
                    match dec.scan(ubuf).map_err(|_| {
                        RelayError::Upstream(ProxyError::BadResponse("malformed chunked body"))
                    })? {
                        Some(end) => {
                            sink.body(ubuf, end, false).await?;
                            reusable = ubuf.is_empty();
                            break;
                        }
                        None => {
                            let n = ubuf.len();
                            sink.body(ubuf, n, false).await?;
                        }
                    }
                }
                sink.flush().await?;
                fill(up, ubuf, read_timeout).await?;
            }
        }
        ResponseFraming::Close => loop {
            let n = ubuf.len();
            if n > 0 {
                sink.body(ubuf, n, out == ClientFraming::Rechunk).await?;
            }
            sink.flush().await?;
            match fill(up, ubuf, read_timeout).await {
                Ok(()) => {}
                Err(RelayError::Upstream(ProxyError::UpstreamClosed)) => {
                    if out == ClientFraming::Rechunk {
                        sink.wbuf.extend_from_slice(LAST_CHUNK);
                    }
                    break;
                }
                Err(e) => return Err(e),
            }
        },
    }
    sink.flush().await?;
    Ok(Relayed {
        reusable,
        bytes: sink.bytes,
    })
}

/// Reads more upstream bytes into `ubuf`; end of stream is `UpstreamClosed`.
async fn fill(up: &mut Io, ubuf: &mut BytesMut, timeout: Duration) -> Result<(), RelayError> {
    let buf = std::mem::take(ubuf);
    match crate::timer::timeout(timeout, net::read_more(up, buf)).await {
        Err(_) => Err(RelayError::Upstream(ProxyError::UpstreamTimeout)),
        Ok((res, buf)) => {
            *ubuf = buf;
            match res {
                Ok(0) => Err(RelayError::Upstream(ProxyError::UpstreamClosed)),
                Ok(_) => Ok(()),
                Err(e) => Err(RelayError::Upstream(ProxyError::UpstreamIo(e))),
            }
        }
    }
}

/// The client side of a relay: coalesces small pieces behind pending head
/// bytes, sends large ones without copying.
struct Sink<'a> {
    client: &'a mut Io,
    wbuf: &'a mut Vec<u8>,
    send_timeout: Duration,
    bytes: u64,
    /// A logger's copy of the body, and whether what passes is chunk-framed.
    capture: Option<&'a mut ResponseBody>,
    framed: bool,
}

impl Sink<'_> {
    /// Sends the first `n` bytes of `ubuf` (consuming them), optionally
    /// wrapped as one chunk.
    async fn body(
        &mut self,
        ubuf: &mut BytesMut,
        n: usize,
        as_chunk: bool,
    ) -> Result<(), RelayError> {
        if n == 0 {
            return Ok(());
        }
        self.bytes += n as u64;
        if let Some(c) = &mut self.capture {
            if self.framed {
                c.keep_chunked(&ubuf[..n]);
            } else {
                c.keep(&ubuf[..n]);
            }
        }
        if as_chunk {
            write_chunk_header(self.wbuf, n);
        }
        if as_chunk || n <= COALESCE {
            self.wbuf.extend_from_slice(&ubuf[..n]);
            ubuf.advance(n);
            if as_chunk {
                self.wbuf.extend_from_slice(b"\r\n");
            }
            return Ok(());
        }
        self.flush().await?;
        let piece = ubuf.split_to(n).freeze();
        match crate::timer::timeout(self.send_timeout, net::write_all(self.client, piece)).await {
            Ok((Ok(()), _)) => Ok(()),
            _ => Err(RelayError::Client),
        }
    }

    async fn flush(&mut self) -> Result<(), RelayError> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        let buf = std::mem::take(self.wbuf);
        match crate::timer::timeout(self.send_timeout, net::write_all(self.client, buf)).await {
            Ok((Ok(()), mut buf)) => {
                buf.clear();
                *self.wbuf = buf;
                Ok(())
            }
            _ => Err(RelayError::Client),
        }
    }
}
