//! Process-wide counters for events off the per-request fast path
//! (rate-limit rejections, counter-store failures, health transitions),
//! rendered in the Prometheus text format by the metrics endpoint. Each
//! is one relaxed atomic add when its event happens.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug)]
pub struct Counter {
    pub name: &'static str,
    pub help: &'static str,
    value: AtomicU64,
}

impl Counter {
    pub const fn new(name: &'static str, help: &'static str) -> Counter {
        Counter {
            name,
            help,
            value: AtomicU64::new(0),
        }
    }

    #[inline]
    pub fn inc(&self) {
        self.value.fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.value.load(Ordering::Relaxed)
    }
}

pub static AI_RATE_LIMITED: Counter = Counter::new(
    "ringway_ai_rate_limited_total",
    "Instance checks that found the token budget exhausted.",
);
pub static RATE_LIMIT_STORE_ERRORS: Counter = Counter::new(
    "ringway_rate_limit_store_errors_total",
    "Rate-limit counter store (Redis) calls that failed or timed out.",
);
pub static RATE_LIMIT_FAIL_OPEN: Counter = Counter::new(
    "ringway_rate_limit_fail_open_total",
    "Requests let through without a limit check because the store failed (allow_degradation).",
);
pub static HEALTH_TRANSITIONS: Counter = Counter::new(
    "ringway_health_transitions_total",
    "Active health-check verdict changes (healthy <-> unhealthy).",
);
pub static HEALTH_PROBES: Counter = Counter::new(
    "ringway_health_probes_total",
    "Active health-check probes sent.",
);

/// Every counter, in rendering order.
pub static ALL: &[&Counter] = &[
    &AI_RATE_LIMITED,
    &RATE_LIMIT_STORE_ERRORS,
    &RATE_LIMIT_FAIL_OPEN,
    &HEALTH_TRANSITIONS,
    &HEALTH_PROBES,
];

/// Appends the counters in the Prometheus text format.
pub fn render_counters(out: &mut String) {
    use std::fmt::Write;
    for c in ALL {
        let _ = writeln!(out, "# HELP {} {}", c.name, c.help);
        let _ = writeln!(out, "# TYPE {} counter", c.name);
        let _ = writeln!(out, "{} {}", c.name, c.get());
    }
}
