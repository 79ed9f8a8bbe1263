//! Binding listeners: one `SO_REUSEPORT` socket per worker and address, so
//! the kernel spreads new connections across workers with no accept lock.
//! Port 0 is resolved by the first bind and reused for the others, so
//! tests can ask for any free port.

use std::io;
use std::net::{SocketAddr, TcpListener};

use socket2::{Domain, Protocol, Socket, Type};

/// Whether a listener speaks plain HTTP or HTTPS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerKind {
    Plain,
    Tls,
}

/// A listening address and the per-worker sockets bound to it.
pub struct Bound {
    pub addr: SocketAddr,
    pub kind: ListenerKind,
    pub sockets: Vec<TcpListener>,
}

/// Binds `workers` sockets to `addr`.
pub fn bind_reuseport(addr: SocketAddr, workers: usize, kind: ListenerKind) -> io::Result<Bound> {
    let mut sockets = Vec::with_capacity(workers);
    let mut actual = addr;
    for _ in 0..workers.max(1) {
        let s = socket(actual)?;
        if actual.port() == 0 {
            actual = s.local_addr()?;
        }
        sockets.push(s);
    }
    Ok(Bound {
        addr: actual,
        kind,
        sockets,
    })
}

/// One plain listening socket (Admin API, metrics).
pub fn bind_one(addr: SocketAddr) -> io::Result<TcpListener> {
    socket(addr)
}

fn socket(addr: SocketAddr) -> io::Result<TcpListener> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(4096)?;
    Ok(s.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_zero_is_shared_by_all_workers() {
        let b = bind_reuseport("127.0.0.1:0".parse().unwrap(), 3, ListenerKind::Plain).unwrap();
        assert_ne!(b.addr.port(), 0);
        for s in &b.sockets {
            assert_eq!(s.local_addr().unwrap(), b.addr);
        }
    }
}
