//! Process-wide counters and gauges for events off the per-request fast
//! path (rate-limit rejections, counter-store failures, health
//! transitions, the configuration source's state, the I/O driver, the
//! build), rendered in the Prometheus text format by the metrics
//! endpoint. Each is one relaxed atomic add when its event happens.

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

    pub fn add(&self, n: u64) {
        self.value.fetch_add(n, Ordering::Relaxed);
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
pub static RATE_LIMIT_CHARGE_FAILURES: Counter = Counter::new(
    "ringway_rate_limit_charge_failures_total",
    "Finished requests whose tokens could not be charged to a Redis budget (the store failed or was down).",
);
pub static RATE_LIMIT_KEYS_SHED: Counter = Counter::new(
    "ringway_rate_limit_keys_shed_total",
    "Live rule windows dropped because a rule held max_keys keys (those keys start afresh).",
);
pub static REDIS_DOWN: Counter = Counter::new(
    "ringway_redis_down_total",
    "Times a Redis deployment was found unreachable (calls then fail at once until a background probe reaches it).",
);
pub static HEALTH_TRANSITIONS: Counter = Counter::new(
    "ringway_health_transitions_total",
    "Active health-check verdict changes (healthy <-> unhealthy).",
);
pub static PASSIVE_EJECTIONS: Counter = Counter::new(
    "ringway_passive_ejections_total",
    "Instances taken out after consecutive failures on real traffic.",
);
pub static HEALTH_PROBES: Counter = Counter::new(
    "ringway_health_probes_total",
    "Active health-check probes sent.",
);
pub static ETCD_EVENTS: Counter = Counter::new(
    "ringway_etcd_events_total",
    "Changes received from etcd's watch.",
);
pub static ETCD_RELOADS: Counter = Counter::new(
    "ringway_etcd_full_reads_total",
    "Full reads of the configuration from etcd (at start, after a lost connection or a compaction).",
);
pub static ETCD_SKIPPED: Counter = Counter::new(
    "ringway_etcd_keys_skipped_total",
    "etcd keys left out of the configuration because their value failed validation (logged with the key and field).",
);
pub static CONFIG_RELOADS: Counter = Counter::new(
    "ringway_config_reloads_total",
    "Configuration file reloads published (SIGHUP or a changed file).",
);
pub static CONFIG_RELOADS_REFUSED: Counter = Counter::new(
    "ringway_config_reloads_refused_total",
    "Configuration file reloads refused as invalid (the previous configuration kept serving).",
);
pub static AI_RESPONSES_CUT: Counter = Counter::new(
    "ringway_ai_responses_cut_total",
    "LLM answers cut at max_response_bytes or max_stream_duration_ms.",
);

/// Every counter, in rendering order.
pub static ALL: &[&Counter] = &[
    &AI_RATE_LIMITED,
    &RATE_LIMIT_STORE_ERRORS,
    &RATE_LIMIT_FAIL_OPEN,
    &RATE_LIMIT_CHARGE_FAILURES,
    &RATE_LIMIT_KEYS_SHED,
    &REDIS_DOWN,
    &HEALTH_TRANSITIONS,
    &PASSIVE_EJECTIONS,
    &HEALTH_PROBES,
    &AI_RESPONSES_CUT,
    &CONFIG_RELOADS,
    &CONFIG_RELOADS_REFUSED,
    &ETCD_EVENTS,
    &ETCD_RELOADS,
    &ETCD_SKIPPED,
];

/// Appends the counters in the Prometheus text format.
pub fn render_counters(out: &mut String) {
    use std::fmt::Write;
    for c in ALL {
        let _ = writeln!(out, "# HELP {} {}", c.name, c.help);
        let _ = writeln!(out, "# TYPE {} counter", c.name);
        let _ = writeln!(out, "{} {}", c.name, c.get());
    }
    for g in GAUGES {
        let _ = writeln!(out, "# HELP {} {}", g.name, g.help);
        let _ = writeln!(out, "# TYPE {} gauge", g.name);
        let _ = writeln!(out, "{} {}", g.name, g.get());
    }
    let _ = writeln!(
        out,
        "# HELP ringway_io_driver_info The workers' I/O driver (io_uring, or epoll where io_uring is unavailable).\n# TYPE ringway_io_driver_info gauge\nringway_io_driver_info{{driver=\"{}\"}} 1",
        io_driver()
    );
    let _ = writeln!(
        out,
        "# HELP ringway_build_info The running build: its version and the commit it was built from.\n# TYPE ringway_build_info gauge\nringway_build_info{{version=\"{}\",commit=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION"),
        env!("RINGWAY_COMMIT")
    );
}

/// A value set, not counted (Prometheus `gauge`).
#[derive(Debug)]
pub struct Gauge {
    pub name: &'static str,
    pub help: &'static str,
    value: AtomicU64,
}

impl Gauge {
    pub const fn new(name: &'static str, help: &'static str) -> Gauge {
        Gauge {
            name,
            help,
            value: AtomicU64::new(0),
        }
    }

    pub fn set(&self, v: u64) {
        self.value.store(v, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.value.load(Ordering::Relaxed)
    }
}

pub static CONFIG_SOURCE_UP: Gauge = Gauge::new(
    "ringway_config_source_up",
    "1 while the configuration source (etcd) is connected and watched, else 0 (0 without etcd).",
);
pub static CONFIG_SOURCE_STALE_SINCE: Gauge = Gauge::new(
    "ringway_config_source_stale_since_seconds",
    "Unix time since when the configuration source (etcd) has been unreachable, the last good configuration serving; 0 while it is connected. Staleness = time() - this.",
);
pub static CONFIG_REVISION: Gauge = Gauge::new(
    "ringway_config_revision",
    "The etcd revision the served configuration is as of (0 without etcd).",
);

/// When the configuration source was lost, on the process clock
/// ([`crate::timer::now_ms`]; 0 while connected): the Status API's
/// measure of staleness, finer than the Unix seconds of
/// [`CONFIG_SOURCE_STALE_SINCE`] and immune to the wall clock's steps.
static CONFIG_SOURCE_LOST_AT_MS: AtomicU64 = AtomicU64::new(0);

/// The configuration source (etcd) is connected and watched: the gauges
/// say so and staleness ends.
pub fn config_source_up() {
    CONFIG_SOURCE_UP.set(1);
    CONFIG_SOURCE_STALE_SINCE.set(0);
    CONFIG_SOURCE_LOST_AT_MS.store(0, Ordering::Relaxed);
}

/// The configuration source is unreachable, the last good configuration
/// serving: staleness starts now, unless it already runs.
pub fn config_source_lost() {
    CONFIG_SOURCE_UP.set(0);
    let first = CONFIG_SOURCE_LOST_AT_MS
        .compare_exchange(
            0,
            crate::timer::now_ms(),
            Ordering::Relaxed,
            Ordering::Relaxed,
        )
        .is_ok();
    if first {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(1);
        CONFIG_SOURCE_STALE_SINCE.set(now);
    }
}

/// How long the configuration source has been unreachable; `None` while
/// it is connected (or there is none: a file never goes stale).
pub fn config_source_stale_for() -> Option<std::time::Duration> {
    match CONFIG_SOURCE_LOST_AT_MS.load(Ordering::Relaxed) {
        0 => None,
        at => Some(std::time::Duration::from_millis(
            crate::timer::now_ms().saturating_sub(at),
        )),
    }
}

const GAUGES: &[&Gauge] = &[
    &CONFIG_SOURCE_UP,
    &CONFIG_SOURCE_STALE_SINCE,
    &CONFIG_REVISION,
];

/// Which I/O driver the workers run: io_uring, or epoll where io_uring is
/// unavailable (a container's seccomp profile, an old kernel).
static IO_DRIVER: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// Records the workers' I/O driver (`true`: io_uring).
pub fn set_io_driver(io_uring: bool) {
    IO_DRIVER.store(if io_uring { 1 } else { 2 }, Ordering::Relaxed);
}

/// `"io_uring"`, `"epoll"`, or `"none"` before any worker started.
pub fn io_driver() -> &'static str {
    match IO_DRIVER.load(Ordering::Relaxed) {
        1 => "io_uring",
        2 => "epoll",
        _ => "none",
    }
}
