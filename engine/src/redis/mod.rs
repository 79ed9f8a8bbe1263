//! A small Redis client for shared rate-limit counters: RESP2 ([`resp`])
//! over monoio TCP ([`client`]). Each worker keeps its own idle
//! connections (thread-local, no locks); a command borrows one, so
//! concurrent requests on a worker never wait for each other. AUTH and
//! SELECT run on connect (over TLS when configured), every call is bounded
//! by the configured timeout,
//! and Redis Cluster redirects (`MOVED`, `ASK`) are followed. No worker
//! resolves a name ([`address`]) or dials a deployment known to be down
//! ([`health`]).

pub mod address;
pub mod client;
pub mod health;
pub mod resp;

pub use client::{node, query, RedisError, RedisTls, Sentinel, Target, TargetState};
pub use resp::Reply;
