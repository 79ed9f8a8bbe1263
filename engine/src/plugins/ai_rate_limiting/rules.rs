//! Key-based budgets (`rules`, APISIX 3.16+): each rule gives every value
//! of its `key` — a combination of variables such as `$consumer_name` or
//! `$http_x_team $remote_addr` — its own budget of `count` tokens per
//! `time_window`, whichever instance answers. `count` and `time_window` may
//! be variables too (`$http_x_token_budget`). A rule whose key variables
//! are all unset, or whose count or window does not resolve to a positive
//! integer, does not apply to the request (as in APISIX). Every applying
//! rule is checked before the request goes upstream, and charged with the
//! tokens it used; headers are `X-AI-<prefix>-RateLimit-{Limit,Remaining,
//! Reset}`, the prefix being `header_prefix` or the rule's position (from
//! 1).
//!
//! Local counters live in a lock-free map per rule (key → window; workers
//! look keys up without a lock), whose windows that ended are dropped as
//! new keys arrive (a request racing that sweep for a key whose window had
//! just ended may find its counter replaced: at most its own tokens go
//! uncounted). A key space the client chooses (`$http_x_*`, rotating IPv6
//! addresses) can fill it with live windows, so a rule keeps at most
//! `max_keys` (default 100,000, about 15 MB): a new key that finds the map
//! full first sweeps ended windows, then sheds a tenth of the live ones
//! (those keys start afresh: their spent tokens are forgotten), counted in
//! `ringway_rate_limit_keys_shed_total`. Redis counters are one key per
//! rule and value, expiring with their windows.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::window::{LocalWindow, Usage};
use crate::http::vars::VarSource;

/// A rule's `count` or `time_window`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Amount {
    Fixed(u64),
    /// `$name`: read from the request; the rule does not apply unless it
    /// is a positive integer.
    Var(String),
}

impl Amount {
    /// The amount for this request; a variable must hold an integer in
    /// `1..=max` (the bound a fixed amount was checked against at load).
    fn resolve(&self, vars: &VarSource<'_>, max: u64) -> Option<u64> {
        match self {
            Amount::Fixed(n) => Some(*n),
            Amount::Var(name) => std::str::from_utf8(&vars.get(name)?)
                .ok()?
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|n| (1..=max).contains(n)),
        }
    }
}

/// The longest window a `$variable` may ask for, in seconds.
const MAX_WINDOW: u64 = crate::config::bounds::MAX_WINDOW_SECONDS as u64;

/// One compiled rule.
#[derive(Debug)]
pub struct Rule {
    pub count: Amount,
    pub window: Amount,
    /// The key template (`$var` / `${var}` references and literal text).
    pub key: String,
    /// `X-AI-<prefix>-RateLimit-*`.
    pub prefix: String,
    pub counter: RuleCounter,
}

#[derive(Debug)]
pub enum RuleCounter {
    /// The rule's windows and the most keys they may hold.
    Local(Arc<KeyedWindows>, usize),
    /// Redis keys start with this; the resolved key follows.
    Redis(Box<[u8]>),
}

/// A rule as it applies to one request: its budget and the counter of
/// this request's key.
#[derive(Debug, Clone)]
pub struct RuleHit<'a> {
    pub rule: &'a Rule,
    pub limit: u64,
    pub window_ms: u64,
    pub counter: HitCounter,
}

#[derive(Debug, Clone)]
pub enum HitCounter {
    Local(Arc<LocalWindow>),
    Redis(Vec<u8>),
}

impl Rule {
    /// The rule as it applies to the request `vars` describe, if it does.
    pub fn hit(&self, vars: &VarSource<'_>, now_ms: u64) -> Option<RuleHit<'_>> {
        let limit = self.count.resolve(vars, i64::MAX as u64)?;
        let window_ms = self.window.resolve(vars, MAX_WINDOW)?.saturating_mul(1000);
        let key = vars.expand(&self.key)?;
        let counter = match &self.counter {
            RuleCounter::Local(map, max_keys) => {
                HitCounter::Local(map.window(&key, window_ms, now_ms, *max_keys))
            }
            RuleCounter::Redis(prefix) => {
                let mut k = Vec::with_capacity(prefix.len() + key.len());
                k.extend_from_slice(prefix);
                k.extend_from_slice(&key);
                HitCounter::Redis(k)
            }
        };
        Some(RuleHit {
            rule: self,
            limit,
            window_ms,
            counter,
        })
    }
}

/// Keys inserted between sweeps of ended windows.
const SWEEP_EVERY: u64 = 1024;

/// A rule's local windows, one per key value.
#[derive(Debug, Default)]
pub struct KeyedWindows {
    map: papaya::HashMap<Box<[u8]>, Arc<LocalWindow>, ahash::RandomState>,
    inserted: AtomicU64,
}

impl KeyedWindows {
    /// The window of `key`, made on first sight (keeping at most
    /// `max_keys`, see the module doc).
    fn window(&self, key: &[u8], window_ms: u64, now_ms: u64, max_keys: usize) -> Arc<LocalWindow> {
        let map = self.map.pin();
        if let Some(w) = map.get(key) {
            return w.clone();
        }
        let full = map.len() >= max_keys;
        if full || self.inserted.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            // Ended windows hold nothing: a key seen again starts afresh,
            // exactly as its ended window would have. One still in a
            // request's hands is kept.
            map.retain(|_, w| Arc::strong_count(w) > 1 || w.usage(now_ms, window_ms).used > 0);
        }
        let len = map.len();
        if full && len >= max_keys {
            let mut excess = len - max_keys * 9 / 10;
            let shed = excess;
            map.retain(|_, _| {
                let keep = excess == 0;
                excess = excess.saturating_sub(1);
                keep
            });
            crate::observe::metrics::RATE_LIMIT_KEYS_SHED.add(shed as u64);
            super::warn_throttled(|| {
                tracing::warn!(
                    "ai-rate-limiting rule: {max_keys} keys with live windows (max_keys); {shed} shed, they start afresh"
                )
            });
        }
        map.get_or_insert_with(key.into(), Arc::default).clone()
    }

    /// Keys held (for tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.len()
    }
}

/// What [`super::AiRateLimiting::check_rules`] found.
#[derive(Debug)]
pub enum RulesVerdict<'a> {
    /// Every applying rule has room (its quota before this request).
    Allowed(Vec<(RuleHit<'a>, super::Quota)>),
    /// A rule is spent: the quotas checked so far, the spent one last.
    Exhausted(Vec<(RuleHit<'a>, super::Quota)>),
    StoreDown(crate::redis::RedisError),
}

/// A rule hit's quota from its window usage.
pub fn quota(hit: &RuleHit<'_>, usage: Usage) -> super::Quota {
    super::Quota {
        limit: hit.limit,
        remaining: hit.limit.saturating_sub(usage.used),
        reset: usage.reset_ms.div_ceil(1000),
    }
}

/// `X-AI-<prefix>-RateLimit-{Limit,Remaining,Reset}`.
pub fn write_rule_headers(out: &mut Vec<u8>, prefix: &str, q: &super::Quota) {
    for (name, v) in [
        ("Limit", q.limit),
        ("Remaining", q.remaining),
        ("Reset", q.reset),
    ] {
        out.extend_from_slice(b"X-AI-");
        out.extend_from_slice(prefix.as_bytes());
        out.extend_from_slice(b"-RateLimit-");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        crate::http::write::push_u64(out, v);
        out.extend_from_slice(b"\r\n");
    }
}

/// A header prefix is a header-name fragment: refused otherwise.
pub fn valid_prefix(p: &str) -> bool {
    !p.is_empty()
        && p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ended_windows_are_swept_as_keys_arrive() {
        let m = KeyedWindows::default();
        let kept = m.window(b"busy", 60_000, 1_000, 100_000);
        kept.charge(5, 1_000, 60_000);
        for i in 0..SWEEP_EVERY {
            let _ = m.window(format!("k{i}").as_bytes(), 60_000, 1_000, 100_000);
        }
        // The sweep (at the 1,024th insert) kept the key with tokens in a
        // live window and the one being inserted; one key came after it.
        assert_eq!(m.len(), 3);
        assert_eq!(
            m.window(b"busy", 60_000, 2_000, 100_000)
                .usage(2_000, 60_000)
                .used,
            5
        );
    }

    #[test]
    fn live_windows_are_capped_at_max_keys() {
        let m = KeyedWindows::default();
        let before = crate::observe::metrics::RATE_LIMIT_KEYS_SHED.get();
        for i in 0..100 {
            let w = m.window(format!("k{i}").as_bytes(), 60_000, 1_000, 10);
            w.charge(1, 1_000, 60_000);
            drop(w);
            assert!(m.len() <= 10, "{} keys after {i}", m.len());
        }
        // Each time the map was full a tenth of it went: 90 inserts past
        // the first 10, one key shed per full map.
        assert_eq!(
            crate::observe::metrics::RATE_LIMIT_KEYS_SHED.get() - before,
            90
        );
        // A key with a live window that was not shed keeps its count.
        let last = m.window(b"k99", 60_000, 1_000, 10);
        assert_eq!(last.usage(1_000, 60_000).used, 1);
    }

    #[test]
    fn headers_carry_the_prefix() {
        let mut out = Vec::new();
        write_rule_headers(
            &mut out,
            "team",
            &super::super::Quota {
                limit: 100,
                remaining: 40,
                reset: 7,
            },
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "X-AI-team-RateLimit-Limit: 100\r\nX-AI-team-RateLimit-Remaining: 40\r\nX-AI-team-RateLimit-Reset: 7\r\n"
        );
        assert!(valid_prefix("1") && valid_prefix("team-a"));
        assert!(!valid_prefix("") && !valid_prefix("a b") && !valid_prefix("x\r\n"));
    }
}
