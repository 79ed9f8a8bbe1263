//! Observability: the JSON access log (APISIX's variables, LLM ones
//! included) written off the request path, logger entries, metrics, and
//! the credential redaction every log output goes through ([`redact`]).

pub mod access_log;
pub mod entry;
pub mod full_log;
pub mod log_format;
pub mod metrics;
pub mod redact;
pub mod throttle;
pub mod vars;

pub use access_log::{AccessLog, WorkerLog};
