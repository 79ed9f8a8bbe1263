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

/// The two ends of a relay and the buffers between them: `ubuf` holds
/// what was read from the upstream past its response head, `wbuf` what is
/// still to be written to the client (the response head, at first).
pub struct Ends<'a> {
    pub up: &'a mut Io,
    pub client: &'a mut Io,
    pub ubuf: &'a mut BytesMut,
    pub wbuf: &'a mut Vec<u8>,
}

/// How the body comes from the upstream, and how it goes to the client.
#[derive(Clone, Copy)]
pub struct Framing {
    pub upstream: ResponseFraming,
    pub client: ClientFraming,
}

/// How long a relay waits for each upstream read and each client write.
#[derive(Clone, Copy)]
pub struct Timeouts {
    pub read: Duration,
    pub send: Duration,
}

/// Sends `wbuf` (the response head) and relays the body.
pub async fn relay_body(
    ends: Ends<'_>,
    framing: Framing,
    timeouts: Timeouts,
    capture: Option<&mut ResponseBody>,
) -> Result<Relayed, RelayError> {
    let Ends {
        up,
        client,
        ubuf,
        wbuf,
    } = ends;
    let mut pipe = Pipe {
        trickle: ubuf.len() < net::TRICKLE_READ,
        up,
        ubuf,
        read_timeout: timeouts.read,
        sink: Sink {
            client,
            wbuf,
            send_timeout: timeouts.send,
            bytes: 0,
            capture,
            framed: false,
        },
    };
    let reusable = match framing.upstream {
        ResponseFraming::None => pipe.ubuf.is_empty(),
        // The common case, inline (a method's future costs a few
        // instructions a request).
        ResponseFraming::Length(n) => {
            let mut left = n;
            loop {
                let take = (left.min(pipe.ubuf.len() as u64)) as usize;
                if take > 0 {
                    pipe.sink.body(pipe.ubuf, take, false).await?;
                    left -= take as u64;
                }
                if left == 0 {
                    break pipe.ubuf.is_empty();
                }
                pipe.sink.flush().await?;
                fill(pipe.up, pipe.ubuf, pipe.read_timeout).await?;
            }
        }
        // HTTP/1.0 client: decode, send data only.
        ResponseFraming::Chunked if framing.client == ClientFraming::Raw => pipe.dechunk().await?,
        ResponseFraming::Chunked => pipe.chunked().await?,
        ResponseFraming::Close => {
            pipe.until_close(framing.client == ClientFraming::Rechunk)
                .await?
        }
    };
    pipe.sink.flush().await?;
    Ok(Relayed {
        reusable,
        bytes: pipe.sink.bytes,
    })
}

/// The body's way from the upstream (read into `ubuf`) to the client
/// ([`Sink`]). Each way of framing (Content-Length's is inline in
/// [`relay_body`]) returns whether the upstream connection ended exactly
/// at the end of the body (reusable).
struct Pipe<'a> {
    up: &'a mut Io,
    ubuf: &'a mut BytesMut,
    read_timeout: Duration,
    sink: Sink<'a>,
    /// The last read was small: wait with small buffers.
    trickle: bool,
}

impl Pipe<'_> {
    /// Waits for more of a body that may take long. One that trickles (an
    /// event stream between events) waits with small buffers, as
    /// `ai-proxy-multi`'s streams do: the client write buffer is given
    /// back and the read gets [`net::TRICKLE_READ`] bytes of room (a burst
    /// grows it again, `net::read_at_least`).
    async fn more(&mut self) -> Result<(), RelayError> {
        let room = if self.trickle {
            net::trickle_buffers(&mut [&mut *self.sink.wbuf], self.ubuf);
            net::TRICKLE_READ
        } else {
            net::MIN_READ
        };
        let before = self.ubuf.len();
        fill_at_least(self.up, self.ubuf, self.read_timeout, room).await?;
        self.trickle = self.ubuf.len() - before < net::TRICKLE_READ;
        Ok(())
    }

    /// A chunked body passed through unchanged while a scanner finds its end.
    async fn chunked(&mut self) -> Result<bool, RelayError> {
        let mut dec = ChunkedDecoder::new();
        self.sink.framed = true;
        loop {
            match dec.scan(self.ubuf).map_err(|_| malformed_chunked())? {
                Some(end) => {
                    self.sink.body(self.ubuf, end, false).await?;
                    return Ok(self.ubuf.is_empty());
                }
                None => {
                    let n = self.ubuf.len();
                    self.sink.body(self.ubuf, n, false).await?;
                }
            }
            self.sink.flush().await?;
            self.more().await?;
        }
    }

    /// A chunked body decoded, its data sent bare (to an HTTP/1.0 client,
    /// which reads to the close): never reusable.
    async fn dechunk(&mut self) -> Result<bool, RelayError> {
        let mut dec = ChunkedDecoder::new();
        loop {
            while !self.ubuf.is_empty() && !dec.is_done() {
                let d = dec.decode(self.ubuf).map_err(|_| malformed_chunked())?;
                if let Some(r) = d.data {
                    self.ubuf.advance(r.start);
                    self.sink.body(self.ubuf, r.len(), false).await?;
                } else {
                    self.ubuf.advance(d.consumed);
                }
            }
            if dec.is_done() {
                return Ok(false);
            }
            self.sink.flush().await?;
            self.more().await?;
        }
    }

    /// A body that ends when the upstream closes, re-chunked for the
    /// client when `rechunk`: never reusable.
    async fn until_close(&mut self, rechunk: bool) -> Result<bool, RelayError> {
        loop {
            let n = self.ubuf.len();
            if n > 0 {
                self.sink.body(self.ubuf, n, rechunk).await?;
            }
            self.sink.flush().await?;
            match self.more().await {
                Ok(()) => {}
                Err(RelayError::Upstream(ProxyError::UpstreamClosed)) => {
                    if rechunk {
                        self.sink.wbuf.extend_from_slice(LAST_CHUNK);
                    }
                    return Ok(false);
                }
                Err(e) => return Err(e),
            }
        }
    }
}

fn malformed_chunked() -> RelayError {
    RelayError::Upstream(ProxyError::BadResponse("malformed chunked body"))
}

/// Reads more upstream bytes into `ubuf`; end of stream is `UpstreamClosed`.
async fn fill(up: &mut Io, ubuf: &mut BytesMut, timeout: Duration) -> Result<(), RelayError> {
    fill_at_least(up, ubuf, timeout, net::MIN_READ).await
}

/// [`fill`] giving the read at least `room` bytes.
#[inline]
async fn fill_at_least(
    up: &mut Io,
    ubuf: &mut BytesMut,
    timeout: Duration,
    room: usize,
) -> Result<(), RelayError> {
    let buf = std::mem::take(ubuf);
    match crate::timer::timeout(timeout, net::read_at_least(up, buf, room)).await {
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
