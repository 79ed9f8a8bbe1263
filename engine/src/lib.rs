//! ringway: an LLM edge gateway on a thread-per-core io_uring engine.
//!
//! Layout, one folder per concern: [`config`] (file model, validation,
//! snapshots), [`server`] (workers, listeners, connection loop), [`http`]
//! (sans-IO HTTP/1.1 codec), [`router`], [`plugins`], [`proxy`] (plain HTTP
//! forwarding), [`upstream`] (pools, connectors, TLS), [`balance`], [`net`]
//! (stream types and buffer helpers), [`supervise`] (panics caught, counted
//! and the part restarted).

pub mod admin;
pub mod balance;
pub mod config;
pub mod exchange;
pub mod health;
pub mod http;
pub mod lane;
pub mod loggers;
pub mod net;
pub mod observe;
pub mod plugins;
pub mod providers;
pub mod proxy;
pub mod redis;
pub mod router;
pub mod server;
pub mod snapshot;
pub mod sse;
pub mod status;
pub mod supervise;
pub mod timer;
pub mod upstream;
pub mod wire;
