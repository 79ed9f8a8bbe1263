//! Upstream connections: compiled upstream specs ([`spec`]), name
//! resolution kept off the request path ([`endpoint`]), per-core keep-alive
//! pools ([`pool`]), TCP/TLS connectors ([`connect`], [`tls`]), one
//! attempt's connect, send and answer with its stale-connection retry
//! ([`attempt`]).
//!
//! Pools are per worker (`Rc`, no locks) and keyed by address and TLS
//! identity, not by route, so they survive config reloads untouched.

pub mod attempt;
pub mod connect;
pub mod endpoint;
pub mod oneshot;
pub mod pool;
pub mod spec;
pub mod tls;

pub use connect::{connect, ConnectError, TlsTarget};
pub use endpoint::Endpoint;
pub use pool::{KeepaliveSpec, Pool, PoolKey, UpstreamConn};
pub use spec::{PassHost, Scheme, UpstreamSpec};
pub use tls::TlsClients;
