//! Metrics, in the Prometheus text format, on the metrics listener
//! (`/apisix/prometheus/metrics`, and `/metrics`).
//!
//! | file | owns |
//! |---|---|
//! | [`counters`] | process-wide counters and gauges of events off the request path, build and I/O driver info |
//! | [`worker`] | one worker's unlabelled request counters and connection gauges ([`WorkerStats`]) |
//! | [`labels`] | label values: escaping, a route's labels compiled once, the worker's value [`labels::Interner`] |
//! | [`series`] | one label set's counters and histograms (single-writer atomics) |
//! | [`table`] | one worker's series table: lookup by small integer key, the cardinality cap, reloads |
//! | [`publish`] | how new series reach the scrape thread without a lock |
//! | [`render`] | APISIX's labelled families, summed over workers at scrape time |
//!
//! Nothing here takes a lock or crosses threads on the request path: a
//! worker writes only its own atomics, and the scrape thread only reads.

pub mod counters;
pub mod labels;
pub mod publish;
pub mod render;
pub mod series;
pub mod table;
pub mod worker;

pub use counters::*;
pub use labels::escape;
pub use worker::{render, WorkerStats, TTFT_BUCKETS_MS};
