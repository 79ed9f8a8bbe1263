//! `ai-rate-limiting`: token budgets per LLM instance (and one budget for
//! every instance without its own), or per value of a request key
//! (`rules`, [`rules`]), counted in a fixed window with the tokens the
//! provider actually reported, streams included.
//!
//! Its phases ([`phases`]) run on the AI path: `access` checks `rules`
//! once the request is read, `before_attempt` checks the budget of each
//! instance `ai-proxy-multi` is about to try (which passes over an
//! exhausted one when its fallback strategy says so, else answers
//! `rejected_code`), `on_usage` charges a local budget just before the
//! answer's last bytes leave ([`AiRateLimiting::charge_local`]),
//! `after_answer` a Redis one right after
//! ([`AiRateLimiting::charge_remote`]). A consumer's config replaces the
//! route's, as APISIX merges them (resolved by
//! [`crate::plugins::in_force`]).
//!
//! Counters are local (one atomic word per budget shared by all workers,
//! [`window`]) or in Redis (`policy: redis` / `redis-cluster`), where
//! several ringway processes share them, checked and charged there on
//! every request or, with `redis_lease_tokens`, claimed in chunks
//! ([`lease`]). When Redis is slow or down a call
//! gives up after `redis_timeout`: `allow_degradation: true` lets the
//! request through (fail open), otherwise it is refused with 503 (fail
//! closed); either way a log line and a metric record it.

mod compile;
mod config;
pub mod cost_expr;
pub mod each;
pub mod lease;
pub mod phases;
pub mod rules;
mod store;
mod strategy;
pub mod window;

use std::sync::Arc;
use std::time::Duration;

use crate::http::write::{push_header_name_suffix, push_u64};
use crate::observe::metrics;
use crate::redis::{self, RedisError};
use crate::timer::now_ms;
use each::{Budget, BudgetCounter};
use rules::{HitCounter, RuleHit, RulesVerdict};
use window::LocalWindow;

pub use crate::plugins::phase::Used;
pub use strategy::Strategy;

/// The rules that apply to a request, with their quotas before it.
pub type RuleHits<'a> = Vec<(RuleHit<'a>, Quota)>;

pub const NAME: &str = "ai-rate-limiting";
/// APISIX's priority (runs after ai-proxy-multi picks an instance).
pub const PRIORITY: i32 = 1030;

/// The registry's entry: on any scope (a consumer's replaces the route's,
/// which replaces a global rule's), rejections answered with
/// `_meta.error_response` when set.
pub fn compile(
    value: &serde_json::Value,
    at: &crate::config::FieldPath,
    _scope: crate::plugins::Scope,
    meta: &crate::plugins::meta::Meta,
    cx: &mut crate::plugins::CompileCx<'_, '_>,
) -> Result<Option<Arc<AiRateLimiting>>, crate::config::ConfigError> {
    let rl = AiRateLimiting::compile(value, at, cx)?;
    Ok(Some(Arc::new(
        rl.answering_with(meta.error_response.as_ref()),
    )))
}

#[derive(Debug)]
enum Counter {
    Local(Arc<LocalWindow>),
    Redis(Box<[u8]>),
    /// A Redis budget claimed `tokens` at a time.
    Leased {
        key: Box<[u8]>,
        lease: Arc<lease::Lease>,
        tokens: u64,
    },
}

/// One budget: `limit` tokens per `window`.
#[derive(Debug)]
pub struct Limit {
    pub limit: u64,
    pub window: Duration,
    counter: Counter,
}

/// A budget's state, for the `X-AI-RateLimit-*` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub limit: u64,
    pub remaining: u64,
    /// Seconds until the window resets.
    pub reset: u64,
}

/// What [`AiRateLimiting::check`] found for an instance.
#[derive(Debug)]
pub enum Verdict {
    /// No budget applies to this instance.
    Unlimited,
    Allowed(Quota),
    Exhausted(Quota),
    /// The counter store failed and `allow_degradation` is off.
    StoreDown(RedisError),
}

#[derive(Debug)]
pub struct AiRateLimiting {
    /// Key-based budgets; when set, there are no instance budgets.
    rules: Box<[rules::Rule]>,
    per_instance: Box<[(Arc<str>, Limit)]>,
    /// `limit` / `time_window`: a budget for each instance without its own
    /// entry (one per instance, as in APISIX).
    each: Option<each::EachInstance>,
    pub strategy: Strategy,
    pub show_headers: bool,
    pub rejected_code: u16,
    rejected_body: String,
    /// `application/json`, unless `_meta.error_response` is a string.
    rejected_type: &'static str,
    redis: Option<redis::Target>,
    pub allow_degradation: bool,
}

impl AiRateLimiting {
    /// Instance names with their own budget (checked against the route's
    /// `ai-proxy-multi` instances at load).
    pub fn instance_names(&self) -> impl Iterator<Item = &str> {
        self.per_instance.iter().map(|(n, _)| &**n)
    }

    /// The budget `instance` draws from, if any.
    pub fn limit_for(&self, instance: &str) -> Option<Budget<'_>> {
        if let Some((_, l)) = self.per_instance.iter().find(|(n, _)| **n == *instance) {
            return Some(Budget {
                limit: l.limit,
                window: l.window,
                counter: BudgetCounter::Own(&l.counter),
            });
        }
        self.each.as_ref().map(|e| Budget {
            limit: e.limit,
            window: e.window,
            counter: BudgetCounter::Each(e.counter(instance)),
        })
    }

    /// The local budgets `instances` draw from, as they stand now: the
    /// instance, the budget's limit and the tokens left in its window. For
    /// the metrics scrape. Redis budgets (their count is in Redis, a round
    /// trip away) and per-key `rules` (as many as keys) are not listed.
    pub fn local_budgets<'i>(
        &self,
        instances: impl Iterator<Item = &'i str>,
    ) -> Vec<(&'i str, u64, u64)> {
        let now = now_ms();
        instances
            .filter_map(|name| {
                let b = self.limit_for(name)?;
                let Counter::Local(w) = b.counter() else {
                    return None;
                };
                let used = w.usage(now, b.window.as_millis() as u64).used;
                Some((name, b.limit, b.limit.saturating_sub(used)))
            })
            .collect()
    }

    /// Whether any budget lives in Redis (charged after the answer).
    pub fn uses_redis(&self) -> bool {
        self.redis.is_some()
    }

    /// Whether budgets are per key (`rules`) rather than per instance.
    pub fn has_rules(&self) -> bool {
        !self.rules.is_empty()
    }

    /// Checks every rule that applies to the request `vars` describe,
    /// before any instance is tried: a spent rule refuses the request
    /// whichever instance would answer.
    pub async fn check_rules(&self, vars: &crate::http::vars::VarSource<'_>) -> RulesVerdict<'_> {
        let now = now_ms();
        let mut hits: RuleHits<'_> = Vec::with_capacity(self.rules.len());
        for rule in self.rules.iter() {
            let Some(hit) = rule.hit(vars, now) else {
                continue;
            };
            let usage = match &hit.counter {
                HitCounter::Local(w) => w.usage(now, hit.window_ms),
                HitCounter::Redis(key) => {
                    match Box::pin(self.redis_usage(key, hit.window_ms)).await {
                        Ok(u) => u,
                        Err(e) => match self.degraded(&rule.prefix, "check", e) {
                            Verdict::StoreDown(e) => return RulesVerdict::StoreDown(e),
                            _ => continue,
                        },
                    }
                }
            };
            let q = rules::quota(&hit, usage);
            let spent = usage.used >= hit.limit;
            hits.push((hit, q));
            if spent {
                metrics::AI_RATE_LIMITED.inc();
                return RulesVerdict::Exhausted(hits);
            }
        }
        RulesVerdict::Allowed(hits)
    }

    /// Charges the local counters of the rules a request hit (see
    /// [`Self::charge_local`] for when).
    pub fn charge_rules_local(&self, hits: &[(RuleHit<'_>, Quota)], used: &Used<'_>) {
        let cost = self.strategy.cost(used);
        if cost == 0 {
            return;
        }
        for (h, _) in hits {
            if let HitCounter::Local(w) = &h.counter {
                w.charge(cost, now_ms(), h.window_ms);
            }
        }
    }

    /// Charges the Redis counters of the rules a request hit.
    pub async fn charge_rules_remote(&self, hits: &[(RuleHit<'_>, Quota)], used: &Used<'_>) {
        let cost = self.strategy.cost(used);
        if cost == 0 {
            return;
        }
        for (h, _) in hits {
            if let HitCounter::Redis(key) = &h.counter {
                Box::pin(self.redis_charge(&h.rule.prefix, key, cost, h.window_ms)).await;
            }
        }
    }

    /// The body of a rejection.
    pub fn rejected_body(&self) -> &str {
        &self.rejected_body
    }

    /// The content type of [`Self::rejected_body`].
    pub fn rejected_type(&self) -> &'static str {
        self.rejected_type
    }

    /// Rejections answered with `_meta.error_response` instead of
    /// `rejected_msg`.
    pub fn answering_with(mut self, e: Option<&crate::plugins::meta::ErrorResponse>) -> Self {
        if let Some(e) = e {
            self.rejected_body = e.body.to_string();
            self.rejected_type = e.content_type;
        }
        self
    }

    /// Whether `instance` may take another request.
    pub async fn check(&self, instance: &str) -> Verdict {
        let Some(l) = self.limit_for(instance) else {
            return Verdict::Unlimited;
        };
        let window_ms = l.window.as_millis() as u64;
        let usage = match l.counter() {
            Counter::Local(w) => w.usage(now_ms(), window_ms),
            // Boxed: the Redis client's state stays out of every caller's.
            Counter::Redis(key) => match Box::pin(self.redis_usage(key, window_ms)).await {
                Ok(u) => u,
                Err(e) => return self.degraded(instance, "check", e),
            },
            Counter::Leased { key, lease, tokens } => {
                let decision = match lease.check(l.limit, now_ms()) {
                    Some(d) => d,
                    None => match lease.start_claim() {
                        Some(_claiming) => {
                            let owed = lease.owed(now_ms());
                            let claim = self.redis_claim(key, owed, *tokens, l.limit, window_ms);
                            match Box::pin(claim).await {
                                Ok(c) => lease.claimed(owed, c, l.limit, now_ms()),
                                Err(e) => return self.degraded(instance, "claim", e),
                            }
                        }
                        // Another request's claim is on its way: go on with
                        // what it is claiming (an overrun, paid at the next
                        // claim, like any request in flight).
                        None => lease::Decision::Allowed(lease.quota(l.limit, now_ms())),
                    },
                };
                return match decision {
                    lease::Decision::Allowed(q) => Verdict::Allowed(q),
                    lease::Decision::Exhausted(q) => {
                        metrics::AI_RATE_LIMITED.inc();
                        Verdict::Exhausted(q)
                    }
                };
            }
        };
        let quota = Quota {
            limit: l.limit,
            remaining: l.limit.saturating_sub(usage.used),
            reset: usage.reset_ms.div_ceil(1000),
        };
        if usage.used >= l.limit {
            metrics::AI_RATE_LIMITED.inc();
            Verdict::Exhausted(quota)
        } else {
            Verdict::Allowed(quota)
        }
    }

    fn degraded(&self, instance: &str, what: &str, e: RedisError) -> Verdict {
        metrics::RATE_LIMIT_STORE_ERRORS.inc();
        if self.allow_degradation {
            metrics::RATE_LIMIT_FAIL_OPEN.inc();
            warn_throttled(|| {
                tracing::warn!(
                    instance,
                    "ai-rate-limiting {what} failed, letting the request through (allow_degradation): {e}"
                )
            });
            Verdict::Unlimited
        } else {
            warn_throttled(|| {
                tracing::warn!(
                    instance,
                    "ai-rate-limiting {what} failed, refusing the request: {e}"
                )
            });
            Verdict::StoreDown(e)
        }
    }

    /// The budget `instance` draws from and what this usage costs it, if
    /// anything.
    fn charge_for(&self, instance: &str, used: &Used<'_>) -> Option<(Budget<'_>, u64)> {
        let cost = self.strategy.cost(used);
        if cost == 0 {
            return None;
        }
        self.limit_for(instance).map(|l| (l, cost))
    }

    /// Charges a local budget at once. ai-proxy-multi calls this just
    /// before the answer's last bytes go to the client, so the client's next
    /// request (on any worker) already sees the charge. Redis budgets are
    /// left to [`AiRateLimiting::charge_remote`], after the answer.
    pub fn charge_local(&self, instance: &str, used: &Used<'_>) {
        if let Some((l, cost)) = self.charge_for(instance, used) {
            match l.counter() {
                Counter::Local(w) => {
                    w.charge(cost, now_ms(), l.window.as_millis() as u64);
                }
                // Leased: charged to the claim; Redis hears of it with the
                // next claim.
                Counter::Leased { lease, .. } => lease.charge(cost),
                Counter::Redis(_) => {}
            }
        }
    }

    /// Charges the tokens a finished request used to `instance`'s budget
    /// when that budget lives in Redis (local ones: [`Self::charge_local`]).
    pub async fn charge_remote(&self, instance: &str, used: &Used<'_>) {
        if self.redis.is_none() {
            // Every budget is local: nothing to look up.
            return;
        }
        if let Some((l, cost)) = self.charge_for(instance, used) {
            if let Counter::Redis(key) = l.counter() {
                Box::pin(self.redis_charge(instance, key, cost, l.window.as_millis() as u64)).await;
            }
        }
    }
}

/// `X-AI-RateLimit-{Limit,Remaining,Reset}-<instance>`.
pub fn write_quota_headers(out: &mut Vec<u8>, instance: &str, q: &Quota) {
    for (name, v) in [
        (&b"X-AI-RateLimit-Limit-"[..], q.limit),
        (b"X-AI-RateLimit-Remaining-", q.remaining),
        (b"X-AI-RateLimit-Reset-", q.reset),
    ] {
        push_header_name_suffix(out, name, instance.as_bytes());
        push_u64(out, v);
        out.extend_from_slice(b"\r\n");
    }
}

/// At most one warning a second for store trouble (a dead Redis would
/// otherwise log once per request).
fn warn_throttled(log: impl FnOnce()) {
    static STORE_TROUBLE: crate::observe::throttle::Throttle =
        crate::observe::throttle::Throttle::new();
    if STORE_TROUBLE.ready() {
        log();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ConfigError, FieldPath};
    use crate::plugins::shared::Carry;
    use serde_json::json;
    use serde_json::Value;

    fn used(prompt: u64, completion: u64) -> Used<'static> {
        Used {
            prompt,
            completion,
            raw: None,
        }
    }

    fn compile(v: Value) -> Result<AiRateLimiting, ConfigError> {
        let mut carry = Carry::new(None);
        let mut cx = super::super::CompileCx {
            owner: Arc::from("route/r"),
            carry: &mut carry,
            metadata: &Default::default(),
        };
        AiRateLimiting::compile(&v, &FieldPath::root().field(NAME), &mut cx)
    }

    #[test]
    fn defaults_and_budgets() {
        let p = compile(json!({"instances": [{"name": "a", "limit": 10, "time_window": 60}], "limit": 100, "time_window": 3600})).unwrap();
        assert_eq!(p.rejected_code, 503);
        assert!(p.show_headers);
        assert_eq!(p.strategy, Strategy::TotalTokens);
        let e = compile(
            json!({"limit": 100, "time_window": 60, "limit_strategy": "expression",
                               "cost_expr": "input_tokens + output_tokens * 2"}),
        )
        .unwrap();
        let raw = json!({"input_tokens": 3, "output_tokens": 4});
        let with_raw = Used {
            raw: Some(&raw),
            ..used(0, 0)
        };
        assert_eq!(e.strategy.cost(&with_raw), 11);
        assert_eq!(
            e.strategy.cost(&used(3, 4)),
            0,
            "no usage object: nothing charged"
        );
        assert_eq!(p.limit_for("a").unwrap().limit, 10);
        assert_eq!(p.limit_for("other").unwrap().limit, 100);
        let p = compile(json!({"instances": [{"name": "a", "limit": "10", "time_window": 60}]}))
            .unwrap();
        assert!(p.limit_for("b").is_none());
        assert_eq!(Strategy::PromptTokens.cost(&used(3, 4)), 3);
        assert_eq!(Strategy::TotalTokens.cost(&used(3, 4)), 7);
        // Whatever a provider reports, a cost fits every policy's counter.
        let absurd = used(u64::MAX, u64::MAX);
        for s in [Strategy::TotalTokens, Strategy::PromptTokens] {
            assert_eq!(s.cost(&absurd), window::MAX_USED);
        }
    }

    #[test]
    fn validation_names_the_field() {
        let cases = [
            (json!({}), "ai-rate-limiting"),
            (json!({"limit": 5}), "ai-rate-limiting.time_window"),
            (
                json!({"limit": 0, "time_window": 5}),
                "ai-rate-limiting.limit",
            ),
            (
                json!({"instances": [{"name": "a", "limit": 1, "time_window": -1}]}),
                "ai-rate-limiting.instances[0].time_window",
            ),
            (
                json!({"limit": 5, "time_window": 5, "rejected_code": 600}),
                "ai-rate-limiting.rejected_code",
            ),
            (
                json!({"limit": 5, "time_window": 5, "limit_strategy": "x"}),
                "ai-rate-limiting.limit_strategy",
            ),
            (
                json!({"limit": 5, "time_window": 5, "policy": "redis"}),
                "ai-rate-limiting.redis_host",
            ),
            (
                json!({"limit": 5, "time_window": 5, "redis_host": "h"}),
                "ai-rate-limiting.redis_host",
            ),
            (
                json!({"limit": 5, "time_window": 5, "redis_lease_tokens": 10}),
                "ai-rate-limiting.redis_lease_tokens",
            ),
            (
                json!({"limit": 5, "time_window": 5, "policy": "redis", "redis_host": "h",
                       "redis_lease_tokens": 0}),
                "ai-rate-limiting.redis_lease_tokens",
            ),
            (
                json!({"rules": [{"count": 5, "time_window": 5, "key": "$remote_addr"}],
                       "policy": "redis", "redis_host": "h", "redis_lease_tokens": 10}),
                "ai-rate-limiting.redis_lease_tokens",
            ),
            (
                json!({"limit": 5, "time_window": 5, "policy": "redis-cluster", "redis_cluster_nodes": ["a:1"]}),
                "ai-rate-limiting.redis_cluster_name",
            ),
            (
                json!({"limit": 5, "time_window": 5, "bogus": 1}),
                "ai-rate-limiting.bogus",
            ),
            (json!({"rules": []}), "ai-rate-limiting.rules"),
            (
                json!({"limit": 5, "time_window": 5, "policy": "redis-sentinel", "redis_master_name": "m"}),
                "ai-rate-limiting.redis_sentinels",
            ),
            (
                json!({"limit": 5, "time_window": 5, "policy": "redis-sentinel", "redis_sentinels": [{"host": "h", "port": 26379}]}),
                "ai-rate-limiting.redis_master_name",
            ),
            (
                json!({"limit": 5, "time_window": 5, "policy": "redis-sentinel", "redis_master_name": "m",
                       "redis_sentinels": [{"host": "h", "port": 0}]}),
                "ai-rate-limiting.redis_sentinels[0].port",
            ),
            (
                json!({"limit": 5, "time_window": 5, "policy": "redis-sentinel", "redis_master_name": "m",
                       "redis_sentinels": [{"host": "h", "port": 1}], "redis_host": "x"}),
                "ai-rate-limiting.redis_host",
            ),
            (
                json!({"limit": 5, "time_window": 5, "policy": "redis", "redis_host": "h", "redis_master_name": "m"}),
                "ai-rate-limiting.redis_master_name",
            ),
            (
                json!({"limit": 5, "time_window": 5, "limit_strategy": "expression"}),
                "ai-rate-limiting.cost_expr",
            ),
            (
                json!({"limit": 5, "time_window": 5, "limit_strategy": "expression", "cost_expr": "os.exit(1)"}),
                "ai-rate-limiting.cost_expr",
            ),
            (
                json!({"limit": 5, "time_window": 5, "cost_expr": "input_tokens"}),
                "ai-rate-limiting.cost_expr",
            ),
            (
                json!({"rules": [{"count": 5, "time_window": 60, "key": "$remote_addr"}], "limit": 5, "time_window": 5}),
                "ai-rate-limiting.rules",
            ),
            (
                json!({"rules": [{"count": 0, "time_window": 60, "key": "$remote_addr"}]}),
                "ai-rate-limiting.rules[0].count",
            ),
            (
                json!({"rules": [{"count": "$", "time_window": 60, "key": "$remote_addr"}]}),
                "ai-rate-limiting.rules[0].count",
            ),
            (
                json!({"rules": [{"count": 5, "time_window": "soon", "key": "$remote_addr"}]}),
                "ai-rate-limiting.rules[0].time_window",
            ),
            (
                json!({"rules": [{"count": 5, "time_window": 60, "key": "everyone"}]}),
                "ai-rate-limiting.rules[0].key",
            ),
            (
                json!({"rules": [{"count": 5, "time_window": 60, "key": "$a"}, {"count": 9, "time_window": 60, "key": "$a"}]}),
                "ai-rate-limiting.rules[1].key",
            ),
            (
                json!({"rules": [{"count": 5, "time_window": 60, "key": "$a", "header_prefix": "a b"}]}),
                "ai-rate-limiting.rules[0].header_prefix",
            ),
            (
                json!({"rules": [{"count": 5, "time_window": 60, "key": "$a", "header_prefix": "2"}, {"count": 5, "time_window": 60, "key": "$b"}]}),
                "ai-rate-limiting.rules[1].header_prefix",
            ),
            (
                json!({"rules": [{"count": 5, "time_window": 60, "key": "$a", "bogus": 1}]}),
                "ai-rate-limiting.rules[0].bogus",
            ),
        ];
        for (v, path) in cases {
            let e = compile(v.clone()).unwrap_err();
            assert_eq!(e.path, path, "{v}: {e}");
        }
    }

    #[test]
    fn local_budget_is_checked_and_charged() {
        let p =
            compile(json!({"instances": [{"name": "a", "limit": 10, "time_window": 60}]})).unwrap();
        let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .unwrap();
        rt.block_on(async {
            assert!(matches!(p.check("a").await, Verdict::Allowed(q) if q.remaining == 10));
            p.charge_local("a", &used(4, 3));
            // A local budget is not charged again after the answer.
            p.charge_remote("a", &used(4, 3)).await;
            let v = p.check("a").await;
            assert!(
                matches!(v, Verdict::Allowed(q) if q.remaining == 3 && q.reset == 60),
                "{v:?}"
            );
            p.charge_local("a", &used(2, 2));
            assert!(matches!(p.check("a").await, Verdict::Exhausted(q) if q.remaining == 0));
            assert!(matches!(p.check("b").await, Verdict::Unlimited));
        });
    }

    #[test]
    fn quota_headers() {
        let mut out = Vec::new();
        write_quota_headers(
            &mut out,
            "inst-a",
            &Quota {
                limit: 10,
                remaining: 3,
                reset: 42,
            },
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "X-AI-RateLimit-Limit-inst-a: 10\r\nX-AI-RateLimit-Remaining-inst-a: 3\r\nX-AI-RateLimit-Reset-inst-a: 42\r\n"
        );
    }
}
