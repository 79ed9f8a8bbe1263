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
}

impl Default for InstanceState {
    fn default() -> Self {
        InstanceState {
            cooldown_until: AtomicU64::new(0),
            cooldown_reason: AtomicU32::new(0),
            consecutive_failures: AtomicU32::new(0),
            consecutive_ejections: AtomicU32::new(0),
            healthy: AtomicBool::new(true),
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
        let until = now_ms().saturating_add(ms);
        let prev = self.cooldown_until.fetch_max(until, Ordering::Relaxed);
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
