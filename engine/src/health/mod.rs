//! Instance health: the `checks.active` spec (APISIX's
//! `health_checker_active` schema, field for field) and the shared state
//! probes and passive observations publish into.

pub mod prober;
pub mod spec;
pub mod state;

pub use spec::ActiveCheck;
pub use state::{Cooldown, FallbackReason, InstanceState, PassivePolicy, SkipReason};
