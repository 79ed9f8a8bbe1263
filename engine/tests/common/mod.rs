//! Shared integration-test harness: the real `ringway` binary on loopback
//! ([`gateway`]), a raw HTTP/1.1 client ([`client`]), a scripted plain
//! HTTP upstream fixture for framing tests ([`upstream`]) and throwaway
//! certificates ([`certs`]), real Redis and Kafka-protocol servers
//! ([`redis`], [`kafka`]).
#![allow(
    dead_code,
    unused_imports,
    clippy::unwrap_used,
    clippy::disallowed_types
)]

pub mod ai;
pub mod certs;
pub mod client;
pub mod gateway;
pub mod kafka;
pub mod redis;
pub mod upstream;

pub use client::Conn;
pub use gateway::Gateway;
pub use upstream::Upstream;

/// A service with one catch-all route to `up`.
pub fn catch_all(up: &Upstream) -> String {
    format!(
        "services:\n  - name: s\n    upstream:\n      nodes: [{}]\n    routes:\n      - name: all\n        uris: [\"/*\"]\n",
        up.node_yaml()
    )
}
