//! Opening upstream connections: pooled first, then a new TCP connection
//! (with a connect timeout) and, for `https`, a rustls handshake with SNI
//! and certificate verification.

use std::sync::Arc;
use std::time::Duration;

use monoio::net::TcpStream;
use rustls::pki_types::ServerName;

use super::endpoint::Endpoint;
use super::pool::{Pool, PoolKey, UpstreamConn};
use super::tls::TlsClients;
use crate::net::Io;

pub use crate::exchange::error::ConnectError;

/// TLS parameters for an `https` upstream.
#[derive(Debug, Clone)]
pub struct TlsTarget {
    pub sni: Arc<str>,
    pub verify: bool,
}

/// A pooled connection to `endpoint` if one is idle, else a new one.
pub async fn connect(
    pool: &Pool,
    endpoint: &Endpoint,
    tls: Option<&TlsTarget>,
    clients: &TlsClients,
    timeout: Duration,
) -> Result<UpstreamConn, ConnectError> {
    let key = pool_key(endpoint, tls)?;
    if let Some(conn) = pool.take(&key) {
        return Ok(conn);
    }
    open_keyed(key, tls, clients, timeout).await
}

/// A new connection to `endpoint` that bypasses the pool: the one retry
/// after a pooled connection turned out stale (closed while idle) before
/// answering.
pub async fn connect_fresh(
    endpoint: &Endpoint,
    tls: Option<&TlsTarget>,
    clients: &TlsClients,
    timeout: Duration,
) -> Result<UpstreamConn, ConnectError> {
    open_keyed(pool_key(endpoint, tls)?, tls, clients, timeout).await
}

/// Where `endpoint` resolves now, with the TLS it is reached by: the
/// pool's key for its connections.
fn pool_key(endpoint: &Endpoint, tls: Option<&TlsTarget>) -> Result<PoolKey, ConnectError> {
    let addr = endpoint
        .addr()
        .ok_or_else(|| ConnectError::Unresolved(endpoint.host.clone()))?;
    Ok(PoolKey {
        addr,
        tls: tls.map(|t| (t.sni.clone(), t.verify)),
    })
}

/// A new connection to `key`'s address, not yet used.
async fn open_keyed(
    key: PoolKey,
    tls: Option<&TlsTarget>,
    clients: &TlsClients,
    timeout: Duration,
) -> Result<UpstreamConn, ConnectError> {
    let io = open(key.addr, tls.map(|t| (t, clients)), timeout).await?;
    Ok(UpstreamConn {
        io,
        key,
        served: 0,
        reused: false,
    })
}

/// A fresh connection, never from the pool: plain TCP, or TLS to `tls`'s
/// name with those client settings. The whole of it (connect and
/// handshake) within `timeout`.
pub async fn open(
    addr: std::net::SocketAddr,
    tls: Option<(&TlsTarget, &TlsClients)>,
    timeout: Duration,
) -> Result<Io, ConnectError> {
    let work = async {
        let tcp = TcpStream::connect_addr(addr)
            .await
            .map_err(|source| ConnectError::Io { addr, source })?;
        let _ = tcp.set_nodelay(true);
        let Some((t, clients)) = tls else {
            return Ok(Io::Tcp(tcp));
        };
        let name = ServerName::try_from(t.sni.trim_matches(|c| c == '[' || c == ']').to_owned())
            .map_err(|e| ConnectError::Tls {
                host: t.sni.clone(),
                reason: e.to_string(),
            })?;
        let connector = monoio_rustls::TlsConnector::from(clients.config(t.verify));
        let stream = connector
            .connect(name, tcp)
            .await
            .map_err(|e| ConnectError::Tls {
                host: t.sni.clone(),
                reason: tls_reason(e),
            })?;
        Ok(Io::ClientTls(Box::new(stream)))
    };
    match crate::timer::timeout(timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(ConnectError::Timeout(addr)),
    }
}

/// What a failed handshake says: monoio-rustls's own text ("io error",
/// "rustls error") hides the cause (an unknown issuer, a name mismatch, a
/// reset), so the inner error is what is reported.
fn tls_reason(e: monoio_rustls::TlsError) -> String {
    match e {
        monoio_rustls::TlsError::Io(io) => io.to_string(),
        monoio_rustls::TlsError::Rustls(r) => r.to_string(),
    }
}
