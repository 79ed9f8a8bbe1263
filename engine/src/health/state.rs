//! Shared per-instance state: cooldowns (a 429's `Retry-After`, passive
//! ejection after consecutive failures, with growing cooldowns) and the
//! verdict of active health checks. Plain atomics in an `Arc` shared by
//! every worker and carried across config reloads, so one worker's 429
//! cools the instance down for all of them at once.

use crate::timer::now_ms;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

/// Passive ejection: consecutive failures before an instance is taken out,
/// and the cooldown it gets (doubling per consecutive ejection, capped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PassivePolicy {
    pub failures: u32,
    pub base: Duration,
    pub max: Duration,
}

impl Default for PassivePolicy {
    fn default() -> Self {
        PassivePolicy {
            failures: 3,
            base: Duration::from_secs(1),
            max: Duration::from_secs(30),
        }
    }
}

/// Why an instance is cooling down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cooldown {
    RetryAfter,
    Ejected,
}

#[derive(Debug)]
pub struct InstanceState {
    cooldown_until: AtomicU64,
    cooldown_reason: AtomicU32,
    consecutive_failures: AtomicU32,
    consecutive_ejections: AtomicU32,
    healthy: AtomicBool,
    /// What happened to the instance, counted for the metrics.
    pub events: InstanceEvents,
}

/// Why an attempt at an instance was given up and the next one tried
/// (`ringway_ai_fallbacks_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FallbackReason {
    /// The provider answered 429.
    Http429,
    /// The provider answered 5xx.
    Http5xx,
    /// Connecting or waiting for the answer timed out.
    Timeout,
    /// The connection could not be made (refused, TLS, DNS).
    ConnectError,
    /// The connection failed or closed before a complete answer.
    UpstreamError,
    /// The answer could not be read or converted.
    BadResponse,
    /// No access token (GCP service account).
    Token,
    /// A follow-up's instance does not hold the stored state.
    NotHeld,
    /// Its `ai-rate-limiting` budget was spent.
    RateLimited,
}

impl FallbackReason {
    pub const ALL: [FallbackReason; 9] = [
        FallbackReason::Http429,
        FallbackReason::Http5xx,
        FallbackReason::Timeout,
        FallbackReason::ConnectError,
        FallbackReason::UpstreamError,
        FallbackReason::BadResponse,
        FallbackReason::Token,
        FallbackReason::NotHeld,
        FallbackReason::RateLimited,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FallbackReason::Http429 => "http_429",
            FallbackReason::Http5xx => "http_5xx",
            FallbackReason::Timeout => "timeout",
            FallbackReason::ConnectError => "connect_error",
            FallbackReason::UpstreamError => "upstream_error",
            FallbackReason::BadResponse => "bad_response",
            FallbackReason::Token => "token",
            FallbackReason::NotHeld => "not_held",
            FallbackReason::RateLimited => "rate_limited",
        }
    }
}

/// Why an instance was passed over without an attempt
/// (`ringway_ai_instances_skipped_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    CoolingDown,
    Unhealthy,
}

impl SkipReason {
    pub const ALL: [SkipReason; 2] = [SkipReason::CoolingDown, SkipReason::Unhealthy];

    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::CoolingDown => "cooling_down",
            SkipReason::Unhealthy => "unhealthy",
        }
    }
}

impl Cooldown {
    pub const ALL: [Cooldown; 2] = [Cooldown::RetryAfter, Cooldown::Ejected];

    pub fn as_str(self) -> &'static str {
        match self {
            Cooldown::RetryAfter => "retry_after",
            Cooldown::Ejected => "ejected",
        }
    }
}

/// An instance's event counters: shared by every worker (a relaxed add
/// when the event happens: fallbacks, skips and cooldowns are not on the
/// path of a request that succeeds at once) and carried across reloads
/// with the rest of its state.
#[derive(Debug, Default)]
pub struct InstanceEvents {
    fallbacks: [AtomicU64; FallbackReason::ALL.len()],
    skipped: [AtomicU64; SkipReason::ALL.len()],
    cooldowns: [AtomicU64; Cooldown::ALL.len()],
}

impl InstanceEvents {
    pub fn fallback(&self, why: FallbackReason) {
        self.fallbacks[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn skipped(&self, why: SkipReason) {
        self.skipped[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn fallbacks(&self, why: FallbackReason) -> u64 {
        self.fallbacks[why as usize].load(Ordering::Relaxed)
    }

    pub fn skips(&self, why: SkipReason) -> u64 {
        self.skipped[why as usize].load(Ordering::Relaxed)
    }

    pub fn cooldowns(&self, why: Cooldown) -> u64 {
        self.cooldowns[why as usize].load(Ordering::Relaxed)
    }
}

impl Default for InstanceState {
    fn default() -> Self {
        InstanceState {
            cooldown_until: AtomicU64::new(0),
            cooldown_reason: AtomicU32::new(0),
            consecutive_failures: AtomicU32::new(0),
            consecutive_ejections: AtomicU32::new(0),
            healthy: AtomicBool::new(true),
            events: InstanceEvents::default(),
        }
    }
}

impl InstanceState {
    /// Time left in the current cooldown, if any.
    #[inline]
    pub fn cooling(&self, now: u64) -> Option<Duration> {
        let until = self.cooldown_until.load(Ordering::Relaxed);
        (until > now).then(|| Duration::from_millis(until - now))
    }

    pub fn cooldown_reason(&self) -> Cooldown {
        if self.cooldown_reason.load(Ordering::Relaxed) == 1 {
            Cooldown::Ejected
        } else {
            Cooldown::RetryAfter
        }
    }

    /// Keeps the instance out of rotation for `d` (extends, never shortens).
    pub fn cool_down(&self, d: Duration, why: Cooldown) {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let now = now_ms();
        let until = now.saturating_add(ms);
        let prev = self.cooldown_until.fetch_max(until, Ordering::Relaxed);
        if prev <= now {
            // A new cooldown, not one extended.
            self.events.cooldowns[why as usize].fetch_add(1, Ordering::Relaxed);
        }
        if prev < until {
            self.cooldown_reason
                .store(u32::from(why == Cooldown::Ejected), Ordering::Relaxed);
        }
    }

    /// The verdict of active health checks (true until proven otherwise).
    #[inline]
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Publishes an active-check verdict; returns true when it changed.
    pub fn set_healthy(&self, healthy: bool) -> bool {
        self.healthy.swap(healthy, Ordering::Relaxed) != healthy
    }

    /// A request succeeded: the failure streak is over.
    pub fn record_success(&self) {
        if self.consecutive_failures.load(Ordering::Relaxed) != 0 {
            self.consecutive_failures.store(0, Ordering::Relaxed);
        }
        if self.consecutive_ejections.load(Ordering::Relaxed) != 0 {
            self.consecutive_ejections.store(0, Ordering::Relaxed);
        }
    }

    /// A request failed (connect error, timeout, 5xx). Returns the cooldown
    /// when this failure ejected the instance.
    pub fn record_failure(&self, policy: &PassivePolicy) -> Option<Duration> {
        let n = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if n < policy.failures {
            return None;
        }
        self.consecutive_failures.store(0, Ordering::Relaxed);
        let k = self
            .consecutive_ejections
            .fetch_add(1, Ordering::Relaxed)
            .min(16);
        let d = policy.base.saturating_mul(1u32 << k).min(policy.max);
        self.cool_down(d, Cooldown::Ejected);
        Some(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_counted_by_reason_and_a_cooldown_once_until_it_ends() {
        let s = InstanceState::default();
        s.events.fallback(FallbackReason::Http429);
        s.events.fallback(FallbackReason::Http429);
        s.events.skipped(SkipReason::Unhealthy);
        assert_eq!(s.events.fallbacks(FallbackReason::Http429), 2);
        assert_eq!(s.events.fallbacks(FallbackReason::Timeout), 0);
        assert_eq!(s.events.skips(SkipReason::Unhealthy), 1);
        s.cool_down(Duration::from_secs(5), Cooldown::RetryAfter);
        // Extended, not started anew.
        s.cool_down(Duration::from_secs(9), Cooldown::RetryAfter);
        assert_eq!(s.events.cooldowns(Cooldown::RetryAfter), 1);
        assert_eq!(s.events.cooldowns(Cooldown::Ejected), 0);
    }

    #[test]
    fn cooldowns_extend_and_expire() {
        let s = InstanceState::default();
        let now = now_ms();
        assert!(s.cooling(now).is_none());
        s.cool_down(Duration::from_millis(200), Cooldown::RetryAfter);
        assert!(s.cooling(now_ms()).is_some());
        s.cool_down(Duration::from_millis(10), Cooldown::RetryAfter);
        assert!(
            s.cooling(now_ms()).unwrap() > Duration::from_millis(100),
            "shorter cooldown must not shorten"
        );
        assert!(s.cooling(now_ms() + 1000).is_none());
    }

    #[test]
    fn passive_ejection_grows() {
        let s = InstanceState::default();
        let p = PassivePolicy::default();
        assert_eq!(s.record_failure(&p), None);
        assert_eq!(s.record_failure(&p), None);
        assert_eq!(s.record_failure(&p), Some(Duration::from_secs(1)));
        assert_eq!(s.cooldown_reason(), Cooldown::Ejected);
        for _ in 0..2 {
            s.record_failure(&p);
        }
        assert_eq!(s.record_failure(&p), Some(Duration::from_secs(2)));
        s.record_success();
        for _ in 0..2 {
            s.record_failure(&p);
        }
        assert_eq!(
            s.record_failure(&p),
            Some(Duration::from_secs(1)),
            "success resets the growth"
        );
    }

    #[test]
    fn health_verdicts() {
        let s = InstanceState::default();
        assert!(s.is_healthy());
        assert!(s.set_healthy(false));
        assert!(!s.set_healthy(false));
        assert!(!s.is_healthy());
    }
}
