//! Balancing algorithms as pure functions over compiled tables, no I/O:
//! smooth weighted round robin ([`wrr`]) and consistent hashing ([`chash`]). Callers own the counters (a
//! per-worker `Cell` for plain upstreams, a shared atomic ticket where the
//! split must be exact across workers), so the algorithms stay testable.

pub mod chash;
pub mod wrr;

pub use chash::ChashRing;
pub use wrr::WrrCycle;
