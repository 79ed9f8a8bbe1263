//! Observability: the JSON access log (APISIX's variables, LLM ones
//! included) written off the request path.

pub mod access_log;
pub mod entry;
pub mod log_format;
pub mod metrics;
pub mod metrics_server;
pub mod throttle;
pub mod vars;

pub use access_log::{AccessLog, WorkerLog};
