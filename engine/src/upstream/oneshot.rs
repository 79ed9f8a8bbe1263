//! One request on a fresh connection, answer read whole: for control
//! traffic off the hot path (OAuth token exchange, health probes), never
//! for proxied requests.

use std::time::Duration;

use bytes::BytesMut;

use super::connect::{open, TlsTarget};
use super::tls::TlsClients;
use crate::http::body::BodyDecoder;
use crate::net;
use crate::proxy::relay::read_response_head;
use crate::proxy::ProxyError;

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

pub async fn request(req: &OneShot<'_>, clients: &TlsClients) -> Result<Answer, ProxyError> {
    let work = async {
        let mut io = open(req.addr, req.tls, clients, req.timeout)
            .await
            .map_err(ProxyError::from_connect)?;
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
        out.extend_from_slice(b"Connection: close\r\nUser-Agent: ringway\r\n\r\n");
        out.extend_from_slice(req.body);
        let (res, _) = net::write_all(&mut io, out).await;
        res.map_err(ProxyError::NoResponseIo)?;
        let mut buf = BytesMut::with_capacity(8192);
        let mut scratch = Vec::new();
        let head = read_response_head(
            &mut io,
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
            let (res, b) = net::read_more(&mut io, std::mem::take(&mut buf)).await;
            buf = b;
            match res {
                Ok(0) if dec.eof_is_end() => break,
                Ok(0) => return Err(ProxyError::UpstreamClosed),
                Ok(_) => {}
                Err(e) => return Err(ProxyError::UpstreamIo(e)),
            }
        }
        Ok(Answer {
            status: head.status,
            body,
        })
    };
    match crate::timer::timeout(req.timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(ProxyError::UpstreamTimeout),
    }
}
