//! Byte streams the engine speaks over: plain TCP or TLS (server side for
//! clients, client side for upstreams), behind one enum so the connection
//! loop and the proxy are written once. Also the buffer helpers that read
//! into a growing `BytesMut` with monoio's owned-buffer I/O.

pub mod dns;
pub mod watch;

use std::io;

use bytes::BytesMut;
use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use monoio::BufResult;

pub use watch::PeerWatch;

pub type ServerTls = monoio_rustls::ServerTlsStream<TcpStream>;
pub type ClientTls = monoio_rustls::ClientTlsStream<TcpStream>;

/// A connection: TCP, or TLS on top of TCP.
///
/// The TLS arms of every I/O method are boxed: a TLS read or write future
/// is ~700 bytes, and inline it would size every plain-TCP read and write
/// (and every future around them, an open stream's included) to match.
/// TLS pays one small allocation per operation, next to its crypto.
pub enum Io {
    Tcp(TcpStream),
    ServerTls(Box<ServerTls>),
    ClientTls(Box<ClientTls>),
}

impl Io {
    /// The TCP socket, when the stream is plain TCP (used to watch for the
    /// peer closing while no read is outstanding).
    pub fn as_tcp(&self) -> Option<&TcpStream> {
        match self {
            Io::Tcp(s) => Some(s),
            _ => None,
        }
    }

    pub fn is_tls(&self) -> bool {
        !matches!(self, Io::Tcp(_))
    }
}

impl AsyncReadRent for Io {
    async fn read<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Io::Tcp(s) => s.read(buf).await,
            Io::ServerTls(s) => Box::pin(s.read(buf)).await,
            Io::ClientTls(s) => Box::pin(s.read(buf)).await,
        }
    }

    async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Io::Tcp(s) => s.readv(buf).await,
            Io::ServerTls(s) => Box::pin(s.readv(buf)).await,
            Io::ClientTls(s) => Box::pin(s.readv(buf)).await,
        }
    }
}

impl AsyncWriteRent for Io {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Io::Tcp(s) => s.write(buf).await,
            Io::ServerTls(s) => Box::pin(s.write(buf)).await,
            Io::ClientTls(s) => Box::pin(s.write(buf)).await,
        }
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Io::Tcp(s) => s.writev(buf).await,
            Io::ServerTls(s) => Box::pin(s.writev(buf)).await,
            Io::ClientTls(s) => Box::pin(s.writev(buf)).await,
        }
    }

    async fn flush(&mut self) -> io::Result<()> {
        match self {
            Io::Tcp(s) => s.flush().await,
            Io::ServerTls(s) => Box::pin(s.flush()).await,
            Io::ClientTls(s) => Box::pin(s.flush()).await,
        }
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            Io::Tcp(s) => s.shutdown().await,
            Io::ServerTls(s) => Box::pin(s.shutdown()).await,
            Io::ClientTls(s) => Box::pin(s.shutdown()).await,
        }
    }
}

/// Largest read a buffer grows to.
pub const READ_CHUNK: usize = 16 * 1024;
/// Smallest free space a read is given. Buffers start this small and grow
/// with what they hold (up to [`READ_CHUNK`] per read), so a connection
/// waiting for bytes — an idle keep-alive, a stream before its first token
/// — holds little memory: with io_uring a pending read owns its buffer.
pub const MIN_READ: usize = 2 * 1024;
/// Read size for a stream that trickles (an event stream between events,
/// a model thinking): one or two events fit, and thousands of such waits
/// hold little.
pub const TRICKLE_READ: usize = 512;

/// A stream that trickles waits with small buffers: each empty scratch
/// buffer gives its memory back, and an empty read buffer shrinks to
/// [`TRICKLE_READ`] (a burst grows it again, [`read_at_least`]).
pub fn trickle_buffers(scratch: &mut [&mut Vec<u8>], ubuf: &mut BytesMut) {
    for v in scratch.iter_mut() {
        if v.is_empty() && v.capacity() > 0 {
            **v = Vec::new();
        }
    }
    if ubuf.is_empty() && ubuf.capacity() > TRICKLE_READ {
        *ubuf = BytesMut::with_capacity(TRICKLE_READ);
    }
}

/// The next connection on an operator's listener (Admin API, metrics),
/// or `None` once `shutdown` is triggered (looked at every 200 ms). One
/// accept stays pending across the checks, never cancelled mid-flight, so
/// no connection is lost.
pub async fn accept_until(
    listener: &monoio::net::TcpListener,
    shutdown: &crate::supervise::signal::Shutdown,
) -> Option<io::Result<(TcpStream, std::net::SocketAddr)>> {
    let mut accept = std::pin::pin!(listener.accept());
    loop {
        monoio::select! {
            r = &mut accept => return Some(r),
            _ = monoio::time::sleep(std::time::Duration::from_millis(200)) => {
                if shutdown.is_triggered() {
                    return None;
                }
            }
        }
    }
}

/// Reads once into the spare capacity of `buf`, appending. Returns the
/// number of bytes read (0 = end of stream) and the buffer.
///
/// A read that fills all the room it was given means more is waiting (a
/// burst of SSE events, a large body), so the buffer doubles for the next
/// read, up to [`READ_CHUNK`]: a busy stream moves its bytes in few large
/// reads while an idle one keeps its small buffer.
pub async fn read_more<R: AsyncReadRent>(
    io: &mut R,
    buf: BytesMut,
) -> (io::Result<usize>, BytesMut) {
    read_at_least(io, buf, MIN_READ).await
}

/// [`read_more`] giving the read at least `min` bytes of room (a stream
/// that trickles waits with less than [`MIN_READ`]).
pub async fn read_at_least<R: AsyncReadRent>(
    io: &mut R,
    mut buf: BytesMut,
    min: usize,
) -> (io::Result<usize>, BytesMut) {
    if buf.capacity() - buf.len() < min {
        buf.reserve(buf.len().clamp(min, READ_CHUNK));
    }
    let len = buf.len();
    let cap = buf.capacity();
    let (res, slice) = io.read(buf.slice_mut(len..cap)).await;
    let mut buf = slice.into_inner();
    if matches!(res, Ok(n) if n == cap - len) && cap - len < READ_CHUNK {
        buf.reserve((2 * (cap - len)).min(READ_CHUNK));
    }
    (res, buf)
}

/// Writes all of `buf`, handing it back for reuse.
pub async fn write_all<W: AsyncWriteRent, B: IoBuf + 'static>(
    io: &mut W,
    buf: B,
) -> (io::Result<()>, B) {
    let (res, buf) = io.write_all(buf).await;
    (res.map(|_| ()), buf)
}
