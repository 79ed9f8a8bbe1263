//! A deliberately small HTTP/1.1 server codec for the mock (keep-alive,
//! Content-Length and chunked request bodies, optional slow reads). It does
//! not share code with the gateway, so a codec bug cannot hide itself by
//! appearing on both sides of a test.

use std::io::Write;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;

const MAX_HEAD: usize = 64 * 1024;
const MAX_BODY: usize = 64 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: Headers,
    pub body: Vec<u8>,
    pub keep_alive: bool,
}

/// Header names and values in one string (one allocation per request, not
/// two per header), in the order received.
#[derive(Debug, Clone, Default)]
pub struct Headers {
    text: String,
    /// (name start, value start, value end) into `text`.
    spans: Vec<(u32, u32, u32)>,
}

impl Headers {
    fn push(&mut self, name: &str, value: &[u8]) {
        let name_at = self.text.len() as u32;
        self.text.push_str(name);
        let value_at = self.text.len() as u32;
        self.text.push_str(&String::from_utf8_lossy(value));
        self.spans.push((name_at, value_at, self.text.len() as u32));
    }

    /// Every header as (name, value).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.spans.iter().map(|&(n, v, e)| {
            (
                &self.text[n as usize..v as usize],
                &self.text[v as usize..e as usize],
            )
        })
    }

    /// The first header called `name` (any case).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// Owned (name, value) pairs, for the request log.
    pub fn to_pairs(&self) -> Vec<(String, String)> {
        self.iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)
    }

    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query.as_deref()?.split('&').find_map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k == name).then_some(v)
        })
    }
}

pub struct Conn {
    pub io: TcpStream,
    buf: BytesMut,
}

/// Why no request could be read.
pub enum ReadError {
    Closed,
    Bad(String),
}

impl Conn {
    pub fn new(io: TcpStream) -> Conn {
        Conn {
            io,
            buf: BytesMut::with_capacity(16 * 1024),
        }
    }

    /// Reads up to `max` more bytes; false at end of stream.
    async fn fill(&mut self, max: usize) -> bool {
        self.buf.reserve(max.max(1));
        let len = self.buf.len();
        let end = (len + max).min(self.buf.capacity());
        let buf = std::mem::take(&mut self.buf);
        let (res, slice) = self
            .io
            .read(monoio::buf::IoBufMut::slice_mut(buf, len..end))
            .await;
        self.buf = slice.into_inner();
        matches!(res, Ok(n) if n > 0)
    }

    /// Reads one request. `slow_bps` reads the body at that many bytes per
    /// second (the `x-mock-slow-read-bps` header overrides it).
    pub async fn read_request(&mut self, slow_bps: Option<u64>) -> Result<Request, ReadError> {
        let head_len = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            if self.buf.len() > MAX_HEAD {
                return Err(ReadError::Bad("request head too large".into()));
            }
            if !self.fill(16 * 1024).await {
                return Err(ReadError::Closed);
            }
        };
        let mut hs = [httparse::EMPTY_HEADER; 128];
        let mut req = httparse::Request::new(&mut hs);
        if req.parse(&self.buf[..head_len]).is_err() {
            return Err(ReadError::Bad("malformed request head".into()));
        }
        let method = req.method.unwrap_or("GET").to_owned();
        let target = req.path.unwrap_or("/");
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
            None => (target.to_owned(), None),
        };
        let mut headers = Headers {
            text: String::with_capacity(head_len),
            spans: Vec::with_capacity(req.headers.len()),
        };
        for h in req.headers.iter() {
            headers.push(h.name, h.value);
        }
        let http10 = req.version == Some(0);
        self.buf.advance(head_len);
        let get = |n: &str| headers.get(n);
        let keep_alive = match get("connection").map(str::to_ascii_lowercase) {
            Some(c) if c.contains("close") => false,
            Some(c) if c.contains("keep-alive") => true,
            _ => !http10,
        };
        let slow = get("x-mock-slow-read-bps")
            .and_then(|v| v.parse().ok())
            .or(slow_bps);
        let chunked = get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
        let mut body = Vec::new();
        if chunked {
            loop {
                let line = loop {
                    if let Some(i) = find(&self.buf, b"\r\n") {
                        break i;
                    }
                    if !self.fill(16 * 1024).await {
                        return Err(ReadError::Closed);
                    }
                };
                let size_text = String::from_utf8_lossy(&self.buf[..line]).into_owned();
                let size =
                    usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                        .map_err(|_| ReadError::Bad("bad chunk size".into()))?;
                while self.buf.len() < line + 2 + size + 2 {
                    if !self.fill(16 * 1024).await {
                        return Err(ReadError::Closed);
                    }
                }
                body.extend_from_slice(&self.buf[line + 2..line + 2 + size]);
                self.buf.advance(line + 2 + size + 2);
                if size == 0 {
                    break;
                }
                if body.len() > MAX_BODY {
                    return Err(ReadError::Bad("body too large".into()));
                }
            }
        } else if let Some(cl) = get("content-length") {
            let n: usize = cl
                .trim()
                .parse()
                .map_err(|_| ReadError::Bad("bad Content-Length".into()))?;
            if n > MAX_BODY {
                return Err(ReadError::Bad("body too large".into()));
            }
            let started = std::time::Instant::now();
            while self.buf.len() < n {
                let step = match slow {
                    Some(bps) if bps > 0 => {
                        monoio::time::sleep(Duration::from_millis(100)).await;
                        ((bps / 10).max(1) as usize).min(n - self.buf.len())
                    }
                    _ => 64 * 1024,
                };
                if !self.fill(step).await {
                    return Err(ReadError::Closed);
                }
            }
            body = self.buf.split_to(n).to_vec();
            // Bytes that arrived together still take `n / bps` to "read".
            if let Some(bps) = slow.filter(|b| *b > 0) {
                let due = Duration::from_secs_f64(n as f64 / bps as f64);
                if let Some(rest) = due.checked_sub(started.elapsed()) {
                    monoio::time::sleep(rest).await;
                }
            }
        }
        Ok(Request {
            method,
            path,
            query,
            headers,
            body,
            keep_alive,
        })
    }

    /// Waits `d`, or less if the peer closes the connection meanwhile;
    /// returns whether the peer is still there.
    pub async fn wait_connected(&self, d: Duration) -> bool {
        if d.is_zero() {
            return true;
        }
        let sleep = monoio::time::sleep(d);
        let mut sleep = std::pin::pin!(sleep);
        monoio::select! {
            _ = &mut sleep => true,
            r = self.io.readable(false) => {
                if r.is_err() || self.peer_closed() {
                    return false;
                }
                // Data (a pipelined request): stop watching, just wait.
                sleep.await;
                true
            }
        }
    }

    fn peer_closed(&self) -> bool {
        use std::os::fd::AsRawFd;
        let mut b = [0u8; 1];
        // SAFETY: a one-byte peek into a valid stack buffer on our own
        // socket; MSG_DONTWAIT never blocks.
        #[allow(unsafe_code)]
        let n = unsafe {
            libc::recv(
                self.io.as_raw_fd(),
                b.as_mut_ptr().cast(),
                1,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        n == 0
            || (n < 0 && std::io::Error::last_os_error().kind() != std::io::ErrorKind::WouldBlock)
    }

    pub async fn write(&mut self, bytes: Vec<u8>) -> std::io::Result<()> {
        let (res, _) = self.io.write_all(bytes).await;
        res.map(|_| ())
    }

    /// Closes with a TCP reset (SO_LINGER 0).
    pub fn reset(self) {
        use std::os::fd::AsRawFd;
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: setsockopt on the live socket we own, with a valid pointer
        // to a correctly sized `linger` value.
        #[allow(unsafe_code)]
        unsafe {
            libc::setsockopt(
                self.io.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&linger as *const libc::linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            );
        }
        drop(self);
    }
}

pub fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    memchr::memmem::find(h, n)
}

/// A complete response with a body.
pub fn response(
    status: u16,
    content_type: &str,
    body: &[u8],
    keep_alive: bool,
    extra: &[(&str, String)],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 256);
    // Writes into a Vec cannot fail (here and below).
    let _ = write!(
        out,
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n",
        reason(status),
        body.len()
    );
    for (k, v) in extra {
        let _ = write!(out, "{k}: {v}\r\n");
    }
    if !keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// The head of a chunked event stream.
pub fn sse_head(keep_alive: bool, extra: &[(&str, String)]) -> Vec<u8> {
    let mut out = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n".to_vec();
    for (k, v) in extra {
        let _ = write!(out, "{k}: {v}\r\n");
    }
    if !keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// Appends `data` as one chunk.
pub fn chunk(out: &mut Vec<u8>, data: &[u8]) {
    let _ = write!(out, "{:x}\r\n", data.len());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        529 => "Overloaded",
        _ => "Status",
    }
}
