//! One attempt's transport, shared by plain forwarding (`proxy`) and
//! `ai-proxy-multi`: a pooled connection to the destination if one is
//! idle, else a new one; the request sent; the answer taken. A pooled
//! connection that turns out stale (closed while idle: not one byte of
//! answer, [`ProxyError::is_no_response`]) is given up for one new
//! connection and the request sent again — when it can be, its body kept
//! whole (one streamed from the client cannot).
//!
//! What is sent and how the answer is taken is the caller's
//! ([`Attempt`]): a request whole in a buffer answered by a response head
//! ([`Buffered`], the LLM path), or a forwarded head and body whose answer
//! is relayed while the client is watched (`proxy`). [`run`] is generic,
//! so each caller's path is compiled (and inlined) for it alone. Which
//! node or instance comes next, and what a failure means, is the caller's
//! too: this file only says what happened.

use std::time::{Duration, Instant};

use bytes::BytesMut;

use super::connect::{connect, connect_fresh, TlsTarget};
use super::endpoint::Endpoint;
use super::pool::{Pool, UpstreamConn};
use super::tls::TlsClients;
use crate::exchange::relay::read_response_head;
use crate::exchange::ProxyError;
use crate::http::{HeaderSpan, ResponseHead};
use crate::net;

/// Where an attempt connects.
pub struct Dest<'a> {
    pub endpoint: &'a Endpoint,
    pub tls: Option<&'a TlsTarget>,
    /// For the connection (and TLS handshake), new ones only.
    pub connect_timeout: Duration,
}

/// What one attempt does on a connection: send the request, then take
/// the answer. Either may fail; `run` decides whether to try again.
// One thread per core: nothing here is `Send`, nor needs to be.
#[allow(async_fn_in_trait)]
pub trait Attempt {
    /// What taking the answer gives (a response head; a relayed answer).
    type Answer;

    /// Whether the request can be sent again on another connection.
    fn replayable(&self) -> bool;

    /// Writes the request to `up`.
    async fn send(&mut self, up: &mut UpstreamConn) -> Result<(), ProxyError>;

    /// Takes the answer from `up`, the request sent.
    async fn receive(&mut self, up: &mut UpstreamConn) -> Result<Self::Answer, ProxyError>;
}

/// An attempt that got its answer.
pub struct Exchanged<A> {
    /// The connection it came on (back to the pool once done with).
    pub up: UpstreamConn,
    pub answer: A,
    /// When the request was sent (for `upstream_response_time`).
    pub sent_at: Instant,
}

/// Makes `attempt` at `to`: on a pooled connection if one is idle, again
/// once on a new connection if that one turns out stale and the request
/// can be replayed. A connect failure is `ProxyError::Connect` or
/// `ConnectTimeout` ([`ProxyError::is_connect`]): nothing was sent.
#[inline]
pub async fn run<A: Attempt>(
    pool: &Pool,
    clients: &TlsClients,
    to: &Dest<'_>,
    attempt: &mut A,
) -> Result<Exchanged<A::Answer>, ProxyError> {
    let mut fresh = false;
    loop {
        let conn = if fresh {
            connect_fresh(to.endpoint, to.tls, clients, to.connect_timeout).await
        } else {
            connect(pool, to.endpoint, to.tls, clients, to.connect_timeout).await
        };
        let mut up = conn.map_err(ProxyError::from_connect)?;
        let sent_at = Instant::now();
        let answer = match attempt.send(&mut up).await {
            Ok(()) => attempt.receive(&mut up).await,
            Err(e) => Err(e),
        };
        match answer {
            Ok(answer) => {
                return Ok(Exchanged {
                    up,
                    answer,
                    sent_at,
                })
            }
            Err(e) if up.reused && !fresh && e.is_no_response() && attempt.replayable() => {
                fresh = true
            }
            Err(e) => return Err(e),
        }
    }
}

/// A request whole in `wbuf` (sent again as it is after a stale
/// connection), answered by a response head read into `ubuf`. Never a
/// `HEAD` request. Each step within `timeout`.
pub struct Buffered<'a> {
    pub wbuf: &'a mut Vec<u8>,
    pub ubuf: &'a mut BytesMut,
    pub scratch: &'a mut Vec<HeaderSpan>,
    pub timeout: Duration,
    pub max_headers: usize,
}

impl Attempt for Buffered<'_> {
    type Answer = ResponseHead;

    #[inline]
    fn replayable(&self) -> bool {
        true
    }

    #[inline]
    async fn send(&mut self, up: &mut UpstreamConn) -> Result<(), ProxyError> {
        let out = std::mem::take(self.wbuf);
        let (res, out) =
            match crate::timer::timeout(self.timeout, net::write_all(&mut up.io, out)).await {
                Ok(r) => r,
                Err(_) => return Err(ProxyError::UpstreamTimeout),
            };
        *self.wbuf = out;
        res.map_err(ProxyError::NoResponseIo)
    }

    #[inline]
    async fn receive(&mut self, up: &mut UpstreamConn) -> Result<ResponseHead, ProxyError> {
        let (ubuf, scratch) = (&mut *self.ubuf, &mut *self.scratch);
        read_response_head(
            &mut up.io,
            ubuf,
            false,
            self.max_headers,
            self.timeout,
            scratch,
        )
        .await
    }
}
