//! The client side of an exchange: the connection, the buffers it reuses
//! across requests, and reading from and writing to it within deadlines.

use std::net::SocketAddr;
use std::os::fd::RawFd;

use bytes::BytesMut;

use crate::http::HeaderSpan;
use crate::net::{self, Io, PeerWatch};

/// A client connection and the buffers it reuses across requests.
pub struct ClientConn {
    pub io: Io,
    pub peer: SocketAddr,
    pub local_port: u16,
    pub tls: bool,
    /// The client socket's descriptor (under TLS too), for [`PeerWatch`].
    pub raw_fd: RawFd,
    /// Created on first use, when an exchange turns out to be slow.
    pub watch: Option<PeerWatch>,
    /// Bytes read from the client and not yet consumed.
    pub rbuf: BytesMut,
    /// Upstream response bytes (reused for every exchange).
    pub ubuf: BytesMut,
    /// Serialisation buffer for heads and small bodies.
    pub wbuf: Vec<u8>,
    /// Header spans of the request head, reused.
    pub scratch: Vec<HeaderSpan>,
    pub uscratch: Vec<HeaderSpan>,
}

impl ClientConn {
    pub fn new(io: Io, peer: SocketAddr, local_port: u16, raw_fd: RawFd) -> ClientConn {
        ClientConn {
            tls: io.is_tls(),
            io,
            peer,
            local_port,
            raw_fd,
            watch: None,
            // Only the first read's buffer up front; the rest is allocated
            // when a request needs it (an idle connection stays small).
            rbuf: BytesMut::with_capacity(net::MIN_READ),
            ubuf: BytesMut::new(),
            wbuf: Vec::new(),
            scratch: Vec::new(),
            uscratch: Vec::new(),
        }
    }

    /// Writes `wbuf` to the client and clears it.
    pub async fn flush_wbuf(&mut self, timeout: std::time::Duration) -> std::io::Result<()> {
        let buf = std::mem::take(&mut self.wbuf);
        let (res, mut buf) =
            match crate::timer::timeout(timeout, net::write_all(&mut self.io, buf)).await {
                Ok(r) => r,
                Err(_) => return Err(std::io::ErrorKind::TimedOut.into()),
            };
        buf.clear();
        self.wbuf = buf;
        res
    }

    /// Reads more client bytes into `rbuf`; `Ok(0)` is end of stream.
    pub async fn read_more(&mut self, timeout: std::time::Duration) -> std::io::Result<usize> {
        let buf = std::mem::take(&mut self.rbuf);
        match crate::timer::timeout(timeout, net::read_more(&mut self.io, buf)).await {
            Ok((res, buf)) => {
                self.rbuf = buf;
                res
            }
            Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
        }
    }
}
