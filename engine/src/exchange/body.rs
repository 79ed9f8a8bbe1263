//! Reading a request body from the client, Content-Length or chunked,
//! without copying: decoded data comes out as `Bytes` split off the
//! connection's read buffer. Small bodies are read completely before the
//! upstream is contacted (so a stale pooled connection can be retried and
//! chunked bodies are sent with a Content-Length); larger ones stream.

use bytes::{Bytes, BytesMut};

use super::error::ProxyError;
use crate::exchange::ClientConn;
use crate::http::chunked::ChunkedDecoder;
use crate::http::{BodyFraming, HttpError};
use crate::net;

/// Bodies up to this size are buffered before forwarding.
pub const BUFFER_LIMIT: usize = 64 * 1024;

/// Incremental body reader over a client connection's buffer.
pub struct BodyReader {
    framing: BodyFraming,
    /// Content-Length bytes not yet taken.
    left: u64,
    dec: ChunkedDecoder,
    done: bool,
    total: u64,
    max: u64,
}

impl BodyReader {
    pub fn new(framing: BodyFraming, max: u64) -> BodyReader {
        BodyReader {
            framing,
            left: match framing {
                BodyFraming::Length(n) => n,
                _ => 0,
            },
            dec: ChunkedDecoder::new(),
            done: framing == BodyFraming::None,
            total: 0,
            max,
        }
    }

    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Takes the next piece of body already in `rbuf`. `Ok(None)` means
    /// more bytes must be read (or the body is done: see `is_done`).
    pub fn take(&mut self, rbuf: &mut BytesMut) -> Result<Option<Bytes>, HttpError> {
        if self.done {
            return Ok(None);
        }
        let piece = match self.framing {
            BodyFraming::None => None,
            BodyFraming::Length(_) => {
                let n = (self.left.min(rbuf.len() as u64)) as usize;
                if n == 0 {
                    return Ok(None);
                }
                self.left -= n as u64;
                if self.left == 0 {
                    self.done = true;
                }
                Some(rbuf.split_to(n).freeze())
            }
            BodyFraming::Chunked => loop {
                if rbuf.is_empty() {
                    break None;
                }
                let d = self.dec.decode(rbuf)?;
                if let Some(r) = d.data {
                    let _ = rbuf.split_to(r.start);
                    break Some(rbuf.split_to(r.len()).freeze());
                }
                let _ = rbuf.split_to(d.consumed);
                if d.done {
                    self.done = true;
                    break None;
                }
            },
        };
        if let Some(p) = &piece {
            self.total += p.len() as u64;
            if self.total > self.max {
                return Err(HttpError::BodyTooLarge { limit: self.max });
            }
        }
        Ok(piece)
    }

    /// The next piece, reading from the client as needed; `Ok(None)` at the
    /// end of the body.
    pub async fn next(
        &mut self,
        c: &mut ClientConn,
        timeout: std::time::Duration,
    ) -> Result<Option<Bytes>, ProxyError> {
        loop {
            if let Some(p) = self.take(&mut c.rbuf).map_err(ProxyError::ClientBody)? {
                return Ok(Some(p));
            }
            if self.done {
                return Ok(None);
            }
            read_more_body(c, timeout).await?;
        }
    }
}

/// Reads more of a body from the client; its end is an error here.
async fn read_more_body(
    c: &mut ClientConn,
    timeout: std::time::Duration,
) -> Result<(), ProxyError> {
    match c.read_more(timeout).await {
        Ok(0) => Err(ProxyError::ClientGone),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => Err(ProxyError::ClientTimeout),
        Err(_) => Err(ProxyError::ClientGone),
    }
}

/// A request body as forwarding sees it.
pub enum Body {
    /// No body.
    Empty,
    /// Complete and replayable.
    Full(Bytes),
    /// The first pieces; the rest is still to be read from the client.
    Streaming {
        prefix: Vec<Bytes>,
        reader: BodyReader,
    },
}

/// Reads the whole body (up to `max` bytes) into one buffer; sends
/// `100 Continue` first when asked to.
pub async fn read_all(
    c: &mut ClientConn,
    framing: BodyFraming,
    expect_continue: bool,
    max: u64,
    timeout: std::time::Duration,
    send_timeout: std::time::Duration,
) -> Result<Bytes, ProxyError> {
    match read_prefix_up_to(
        c,
        framing,
        expect_continue,
        max,
        timeout,
        send_timeout,
        usize::MAX,
    )
    .await?
    {
        Body::Empty => Ok(Bytes::new()),
        Body::Full(b) => Ok(b),
        Body::Streaming { .. } => Err(ProxyError::ClientBody(HttpError::BodyTooLarge {
            limit: max,
        })),
    }
}

/// Reads up to [`BUFFER_LIMIT`] of the body. Sends `100 Continue` first
/// when the client asked for it and the body has not started arriving.
pub async fn read_prefix(
    c: &mut ClientConn,
    framing: BodyFraming,
    expect_continue: bool,
    max: u64,
    timeout: std::time::Duration,
    send_timeout: std::time::Duration,
) -> Result<Body, ProxyError> {
    read_prefix_up_to(
        c,
        framing,
        expect_continue,
        max,
        timeout,
        send_timeout,
        BUFFER_LIMIT,
    )
    .await
}

async fn read_prefix_up_to(
    c: &mut ClientConn,
    framing: BodyFraming,
    expect_continue: bool,
    max: u64,
    timeout: std::time::Duration,
    send_timeout: std::time::Duration,
    buffer_limit: usize,
) -> Result<Body, ProxyError> {
    if framing == BodyFraming::None {
        return Ok(Body::Empty);
    }
    if let BodyFraming::Length(n) = framing {
        if n > max {
            return Err(ProxyError::ClientBody(HttpError::BodyTooLarge {
                limit: max,
            }));
        }
    }
    if expect_continue && c.rbuf.is_empty() {
        c.wbuf.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
        c.flush_wbuf(send_timeout)
            .await
            .map_err(|_| ProxyError::ClientGone)?;
    }
    if let BodyFraming::Length(n) = framing {
        if n <= buffer_limit as u64 {
            return read_length(c, n as usize, timeout).await.map(Body::Full);
        }
    }
    let mut reader = BodyReader::new(framing, max);
    let mut pieces: Vec<Bytes> = Vec::new();
    let mut size = 0usize;
    while size < buffer_limit {
        match reader.next(c, timeout).await? {
            Some(p) => {
                size += p.len();
                pieces.push(p);
            }
            None => break,
        }
    }
    if !reader.is_done() {
        return Ok(Body::Streaming {
            prefix: pieces,
            reader,
        });
    }
    Ok(match pieces.len() {
        0 => Body::Full(Bytes::new()),
        1 => Body::Full(pieces.pop().unwrap_or_default()),
        _ => {
            let mut all = BytesMut::with_capacity(size);
            pieces.iter().for_each(|p| all.extend_from_slice(p));
            Body::Full(all.freeze())
        }
    })
}

/// A body of `n` bytes (its `Content-Length`) read into the connection's
/// buffer whole and split off as one piece: as few reads as the client's
/// segments allow, and no copy to join pieces (a 32 KiB body took five
/// reads growing from 2 KiB, then a copy). The room reserved ahead of the
/// bytes is at most what has arrived or [`BUFFER_LIMIT`], whichever is
/// more: a client that announces a large body and sends little makes the
/// gateway hold 64 KiB for it, not the body's length.
async fn read_length(
    c: &mut ClientConn,
    n: usize,
    timeout: std::time::Duration,
) -> Result<Bytes, ProxyError> {
    while c.rbuf.len() < n {
        // A little more than what is missing: a read that fills all its
        // room makes the buffer grow (`net::read_more`), a copy of it all.
        let room = (n - c.rbuf.len()).min(c.rbuf.len().max(BUFFER_LIMIT)) + net::MIN_READ;
        if c.rbuf.capacity() - c.rbuf.len() < room {
            c.rbuf.reserve(room);
        }
        read_more_body(c, timeout).await?;
    }
    Ok(c.rbuf.split_to(n).freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_length_and_chunked_without_copy() {
        let mut r = BodyReader::new(BodyFraming::Length(5), 100);
        let mut buf = BytesMut::from(&b"helloNEXT"[..]);
        assert_eq!(r.take(&mut buf).unwrap().unwrap(), &b"hello"[..]);
        assert!(r.is_done());
        assert_eq!(&buf[..], b"NEXT");

        let mut r = BodyReader::new(BodyFraming::Chunked, 100);
        let mut buf = BytesMut::from(&b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\nGET"[..]);
        let mut out = Vec::new();
        while let Some(p) = r.take(&mut buf).unwrap() {
            out.extend_from_slice(&p);
        }
        assert!(r.is_done());
        assert_eq!(out, b"abcde");
        assert_eq!(&buf[..], b"GET");
    }

    #[test]
    fn chunked_over_limit_is_413() {
        let mut r = BodyReader::new(BodyFraming::Chunked, 4);
        let mut buf = BytesMut::from(&b"5\r\nhello\r\n0\r\n\r\n"[..]);
        assert_eq!(r.take(&mut buf).unwrap_err().status(), 413);
    }
}
