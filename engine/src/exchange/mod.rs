//! One request's exchange, below everything that decides what to do with
//! it: the request's context ([`ctx::RequestCtx`]), the client
//! connection ([`client::ClientConn`]), reading the request body
//! ([`body`]), the gateway's own replies ([`reply`]), the data-path error
//! ([`error::ProxyError`]) and reading and relaying an upstream's answer
//! ([`relay`], with the client's response head: [`response_head`]), and
//! what a request carries for correlation ([`trace`]: its request id and
//! trace context; [`ids`] makes them). Plain forwarding, the AI handler, health probes and
//! one-shot calls all build on these.

pub mod body;
pub mod client;
pub mod ctx;
pub mod error;
pub mod ids;
pub mod relay;
pub mod reply;
pub mod response_head;
pub mod trace;

pub use client::ClientConn;
pub use error::{ConnectError, ProxyError};
