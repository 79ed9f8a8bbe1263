//! Shared integration-test harness: the real `ringway` binary on loopback
//! ([`gateway`]), a raw HTTP/1.1 client ([`client`]), a scripted plain
//! HTTP upstream fixture for framing tests ([`upstream`]) and throwaway
//! certificates ([`certs`]).
#![allow(dead_code)]

pub mod certs;
pub mod client;
pub mod gateway;
pub mod upstream;

pub use client::Conn;
pub use gateway::Gateway;
pub use upstream::Upstream;
