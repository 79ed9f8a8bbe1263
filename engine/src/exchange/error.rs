//! The data-path error of forwarding: what failed, on which side, and what
//! the client is told. Mapped to a status and JSON body in exactly one
//! place ([`ProxyError::status`]).

use std::io;
use std::sync::Arc;

use crate::http::HttpError;

/// Why no connection could be made; all of these count as "5xx" for
/// fallback purposes.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot resolve upstream host `{0}`")]
    Unresolved(Arc<str>),
    #[error("connect to {addr} failed: {source}")]
    Io {
        addr: std::net::SocketAddr,
        source: io::Error,
    },
    #[error("connect to {0} timed out")]
    Timeout(std::net::SocketAddr),
    #[error("TLS handshake with {host} failed: {reason}")]
    Tls { host: Arc<str>, reason: String },
}

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// Could not connect (refused, unresolvable, TLS failure).
    #[error("{0}")]
    Connect(ConnectError),
    #[error("timed out connecting to the upstream")]
    ConnectTimeout,
    #[error("timed out waiting for the upstream")]
    UpstreamTimeout,
    #[error("upstream closed the connection before a complete response")]
    UpstreamClosed,
    #[error("upstream failed: {0}")]
    UpstreamIo(std::io::Error),
    /// Closed before sending any response byte (retryable on a reused
    /// connection).
    #[error("upstream closed the connection without responding")]
    NoResponse,
    #[error("upstream failed before responding: {0}")]
    NoResponseIo(std::io::Error),
    #[error("invalid upstream response: {0}")]
    BadResponse(&'static str),
    /// An answer past `max_response_bytes` or `max_stream_duration_ms`.
    #[error("{0}")]
    LimitExceeded(&'static str),
    /// The client's request body was malformed or too large.
    #[error("{0}")]
    ClientBody(HttpError),
    #[error("timed out reading the request body")]
    ClientTimeout,
    /// The client went away; nobody to answer.
    #[error("client closed the connection")]
    ClientGone,
}

impl ProxyError {
    /// Status for the client, when a reply is still possible.
    pub fn status(&self) -> u16 {
        match self {
            ProxyError::Connect(ConnectError::Timeout(_))
            | ProxyError::ConnectTimeout
            | ProxyError::UpstreamTimeout => 504,
            ProxyError::Connect(_)
            | ProxyError::UpstreamClosed
            | ProxyError::UpstreamIo(_)
            | ProxyError::NoResponse
            | ProxyError::NoResponseIo(_)
            | ProxyError::BadResponse(_)
            | ProxyError::LimitExceeded(_) => 502,
            ProxyError::ClientBody(e) => e.status(),
            ProxyError::ClientTimeout => 408,
            ProxyError::ClientGone => 499,
        }
    }

    /// True for failures that happened on the upstream side (count
    /// against the instance for fallback and passive health).
    pub fn is_upstream(&self) -> bool {
        !matches!(
            self,
            ProxyError::ClientBody(_) | ProxyError::ClientTimeout | ProxyError::ClientGone
        )
    }

    /// Whether the instance is to blame (passive health). An answer cut at
    /// a limit of the route's is not: a long answer belongs to the request.
    pub fn counts_against_instance(&self) -> bool {
        self.is_upstream() && !matches!(self, ProxyError::LimitExceeded(_))
    }

    /// Nothing came back at all: on a pooled connection this is most
    /// likely the upstream having closed it while idle.
    pub fn is_no_response(&self) -> bool {
        matches!(self, ProxyError::NoResponse | ProxyError::NoResponseIo(_))
    }

    /// No connection could be made: nothing of the request reached the
    /// upstream, so another node may take it (plain forwarding's
    /// `retries`).
    pub fn is_connect(&self) -> bool {
        matches!(self, ProxyError::Connect(_) | ProxyError::ConnectTimeout)
    }

    pub fn from_connect(e: ConnectError) -> ProxyError {
        match e {
            ConnectError::Timeout(_) => ProxyError::ConnectTimeout,
            e => ProxyError::Connect(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cut_answer_does_not_count_against_the_instance() {
        assert!(!ProxyError::LimitExceeded("x").counts_against_instance());
        assert!(ProxyError::UpstreamTimeout.counts_against_instance());
        assert!(!ProxyError::ClientGone.counts_against_instance());
    }

    #[test]
    fn only_a_failed_connection_says_nothing_was_sent() {
        assert!(ProxyError::ConnectTimeout.is_connect());
        let refused = ConnectError::Unresolved("h".into());
        assert!(ProxyError::from_connect(refused).is_connect());
        assert!(!ProxyError::NoResponse.is_connect());
        assert!(!ProxyError::UpstreamTimeout.is_connect());
    }
}
