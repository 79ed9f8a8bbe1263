//! One request, answer read whole: for control traffic off the hot path
//! (OAuth token exchange, health probes: a fresh connection each; logger
//! batches: a connection kept between them), never for proxied requests.

use std::time::{Duration, Instant};

use bytes::BytesMut;

use super::connect::{open, TlsTarget};
use super::tls::TlsClients;
use crate::exchange::relay::read_response_head;
use crate::exchange::ProxyError;
use crate::http::body::BodyDecoder;
use crate::net::{self, Io};

/// Largest answer read.
const MAX_BODY: usize = 4 * 1024 * 1024;

pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

/// What to send.
pub struct OneShot<'a> {
    pub addr: std::net::SocketAddr,
    pub tls: Option<&'a TlsTarget>,
    pub method: &'a str,
    pub host: &'a str,
    pub target: &'a str,
    pub headers: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
    pub timeout: Duration,
}

/// A connection left open by [`request_kept`] for the next request to the
/// same endpoint (a logger's batches).
pub struct KeptConn {
    io: Io,
    addr: std::net::SocketAddr,
    idle_since: Instant,
}

/// Longest a kept connection waits for its next request; servers close
/// idle ones after about a minute (nginx: 75 s), and reusing one they are
/// closing costs a retry.
const KEEP_IDLE: Duration = Duration::from_secs(30);

/// One request on a fresh connection, closed after the answer.
pub async fn request(req: &OneShot<'_>, clients: &TlsClients) -> Result<Answer, ProxyError> {
    let work = async {
        let mut io = connect(req, clients).await?;
        exchange(&mut io, req, false)
            .await
            .map(|(answer, _)| answer)
    };
    match crate::timer::timeout(req.timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(ProxyError::UpstreamTimeout),
    }
}

/// Like [`request`], on the connection in `kept` when there is one (else a
/// new one), and leaves the connection there when the server keeps it
/// open. A kept connection that fails before any answer byte (the server
/// closed it meanwhile) is replaced by a new one, once.
pub async fn request_kept(
    req: &OneShot<'_>,
    clients: &TlsClients,
    kept: &mut Option<KeptConn>,
) -> Result<Answer, ProxyError> {
    let work = async {
        if let Some(k) = kept
            .take()
            .filter(|k| k.addr == req.addr && k.idle_since.elapsed() < KEEP_IDLE)
        {
            let mut io = k.io;
            match exchange(&mut io, req, true).await {
                Ok((answer, reusable)) => {
                    if reusable {
                        *kept = Some(KeptConn {
                            io,
                            addr: req.addr,
                            idle_since: Instant::now(),
                        });
                    }
                    return Ok(answer);
                }
                Err(ProxyError::NoResponse | ProxyError::NoResponseIo(_)) => {}
                Err(e) => return Err(e),
            }
        }
        let mut io = connect(req, clients).await?;
        let (answer, reusable) = exchange(&mut io, req, true).await?;
        if reusable {
            *kept = Some(KeptConn {
                io,
                addr: req.addr,
                idle_since: Instant::now(),
            });
        }
        Ok(answer)
    };
    match crate::timer::timeout(req.timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(ProxyError::UpstreamTimeout),
    }
}

async fn connect(req: &OneShot<'_>, clients: &TlsClients) -> Result<Io, ProxyError> {
    open(req.addr, req.tls.map(|t| (t, clients)), req.timeout)
        .await
        .map_err(ProxyError::from_connect)
}

/// Sends `req` on `io` and reads the whole answer; whether the connection
/// can take another request.
async fn exchange(
    io: &mut Io,
    req: &OneShot<'_>,
    keep_alive: bool,
) -> Result<(Answer, bool), ProxyError> {
    let mut out = Vec::with_capacity(256 + req.body.len());
    out.extend_from_slice(
        format!(
            "{} {} HTTP/1.1\r\nHost: {}\r\n",
            req.method, req.target, req.host
        )
        .as_bytes(),
    );
    for (k, v) in req.headers {
        out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
    }
    if !req.body.is_empty() || req.method == "POST" {
        out.extend_from_slice(format!("Content-Length: {}\r\n", req.body.len()).as_bytes());
    }
    if !keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"User-Agent: ringway\r\n\r\n");
    out.extend_from_slice(req.body);
    let (res, _) = net::write_all(io, out).await;
    res.map_err(ProxyError::NoResponseIo)?;
    let mut buf = BytesMut::with_capacity(8192);
    let mut scratch = Vec::new();
    let head = read_response_head(
        io,
        &mut buf,
        req.method == "HEAD",
        128,
        req.timeout,
        &mut scratch,
    )
    .await?;
    let mut dec = BodyDecoder::new(head.framing);
    let mut body = Vec::new();
    loop {
        let done = dec
            .decode(&mut buf, |d| body.extend_from_slice(d))
            .map_err(|_| ProxyError::BadResponse("malformed body"))?;
        if done || body.len() > MAX_BODY {
            break;
        }
        let (res, b) = net::read_more(io, std::mem::take(&mut buf)).await;
        buf = b;
        match res {
            Ok(0) if dec.eof_is_end() => break,
            Ok(0) => return Err(ProxyError::UpstreamClosed),
            Ok(_) => {}
            Err(e) => return Err(ProxyError::UpstreamIo(e)),
        }
    }
    let reusable = keep_alive && head.keep_alive && dec.is_done() && buf.is_empty();
    Ok((
        Answer {
            status: head.status,
            body,
        },
        reusable,
    ))
}
