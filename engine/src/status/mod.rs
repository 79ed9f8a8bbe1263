//! What the gateway tells operators, on its own listener and thread:
//! `GET /metrics` ([`server`]), the request counters recorded by
//! [`crate::observe::metrics`] and the configuration's state
//! ([`metrics::render_state`]).

pub mod metrics;
pub mod server;
