//! What the gateway tells operators, each on its own listener and thread
//! so that no probe or scrape touches a worker: `GET /metrics`
//! ([`server`]), the request counters recorded by
//! [`crate::observe::metrics`] and the configuration's state
//! ([`metrics::render_state`]); and the Status API, APISIX's `/status`
//! and `/status/ready` ([`api`]), judged by [`ready`].

pub mod api;
pub mod metrics;
pub mod ready;
pub mod server;
