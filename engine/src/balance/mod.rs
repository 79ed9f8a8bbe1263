//! Balancing algorithms as pure functions over compiled tables, no I/O:
//! smooth weighted round robin ([`wrr`]). Callers own the counters (a
//! per-worker `Cell` for plain upstreams, a shared atomic ticket where the
//! split must be exact across workers), so the algorithms stay testable.

pub mod wrr;

pub use wrr::WrrCycle;
