//! Per-worker keep-alive pools of idle upstream connections.
//!
//! One `Pool` per worker thread (`Rc`, `RefCell`: never shared, never
//! locked), keyed by address + TLS identity. Last-in-first-out so hot
//! connections are reused and cold ones age out; limits follow APISIX's
//! `keepalive_pool` (size per key, idle timeout, requests per connection).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ahash::AHashMap;

use crate::net::Io;

/// Identity of a reusable connection.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PoolKey {
    pub addr: SocketAddr,
    /// `(sni, verify)` for TLS connections.
    pub tls: Option<(Arc<str>, bool)>,
}

/// Keep-alive limits (APISIX `keepalive_pool`, ai-proxy-multi `keepalive*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeepaliveSpec {
    pub enabled: bool,
    /// Idle connections kept per key and worker.
    pub size: usize,
    pub idle_timeout: Duration,
    /// Requests served before a connection is retired.
    pub max_requests: u32,
}

impl Default for KeepaliveSpec {
    fn default() -> Self {
        KeepaliveSpec {
            enabled: true,
            size: 320,
            idle_timeout: Duration::from_secs(60),
            max_requests: 1000,
        }
    }
}

/// A connection checked out of (or headed for) a pool.
pub struct UpstreamConn {
    pub io: Io,
    pub key: PoolKey,
    /// Requests completed on this connection so far.
    pub served: u32,
    /// Came from the pool (a failure before any response byte may just be
    /// the upstream having closed it while idle: safe to retry once).
    pub reused: bool,
}

struct Idle {
    io: Io,
    expires: Instant,
    served: u32,
}

#[derive(Default)]
pub struct Pool {
    idle: RefCell<AHashMap<PoolKey, VecDeque<Idle>>>,
}

impl Pool {
    pub fn new() -> Pool {
        Pool::default()
    }

    /// The most recently returned live connection for `key`, if any.
    pub fn take(&self, key: &PoolKey) -> Option<UpstreamConn> {
        let mut idle = self.idle.borrow_mut();
        let queue = idle.get_mut(key)?;
        let now = Instant::now();
        while let Some(c) = queue.pop_back() {
            if c.expires > now {
                return Some(UpstreamConn {
                    io: c.io,
                    key: key.clone(),
                    served: c.served,
                    reused: true,
                });
            }
        }
        None
    }

    /// Returns a connection after a complete exchange; it is closed instead
    /// when keep-alive is off, the request budget is spent or the pool for
    /// its key is full.
    pub fn put(&self, mut conn: UpstreamConn, spec: &KeepaliveSpec) {
        conn.served += 1;
        if !spec.enabled || conn.served >= spec.max_requests {
            return;
        }
        let mut idle = self.idle.borrow_mut();
        let queue = idle.entry(conn.key).or_default();
        if queue.len() >= spec.size {
            // Drop the oldest to make room: it is the likeliest to be stale.
            queue.pop_front();
        }
        queue.push_back(Idle {
            io: conn.io,
            expires: Instant::now() + spec.idle_timeout,
            served: conn.served,
        });
    }

    /// Closes expired idle connections; run periodically by each worker.
    pub fn sweep(&self) {
        let now = Instant::now();
        let mut idle = self.idle.borrow_mut();
        idle.retain(|_, q| {
            q.retain(|c| c.expires > now);
            !q.is_empty()
        });
    }

    /// Idle connections held for `key` (tests and metrics).
    pub fn idle_count(&self, key: &PoolKey) -> usize {
        self.idle.borrow().get(key).map_or(0, VecDeque::len)
    }
}
