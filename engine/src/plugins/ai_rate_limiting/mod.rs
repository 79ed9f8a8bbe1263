//! `ai-rate-limiting`: token budgets per LLM instance (and one budget for
//! every instance without its own), counted in a fixed window with the
//! tokens the provider actually reported, streams included.
//!
//! It has no access phase of its own: which instance a request uses is
//! decided inside `ai-proxy-multi`, which asks [`AiRateLimiting::check`]
//! before trying an instance (skipping an exhausted one when the fallback
//! strategy says so, else answering `rejected_code`) and
//! [`AiRateLimiting::charge`]s the usage once the answer is relayed. A
//! consumer's config replaces the route's, as APISIX merges them.
//!
//! Counters are local (one atomic word per budget shared by all workers,
//! [`window`]) or in Redis (`policy: redis` / `redis-cluster`), where
//! several ringway processes share them. When Redis is slow or down a call
//! gives up after `redis_timeout`: `allow_degradation: true` lets the
//! request through (fail open), otherwise it is refused with 503 (fail
//! closed); either way a log line and a metric record it.

mod config;
pub mod window;

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::config::{from_value, ConfigError, FieldPath};
use crate::health::now_ms;
use crate::http::write::{push_header_name_suffix, push_u64};
use crate::observe::metrics;
use crate::redis::{self, RedisError, Reply};
use config::{cluster_fields, redis_fields, PluginFile};
use window::{LocalWindow, Usage, MAX_USED};

pub const NAME: &str = "ai-rate-limiting";
/// APISIX's priority (runs after ai-proxy-multi picks an instance).
pub const PRIORITY: i32 = 1030;

/// Which reported tokens count against the budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    TotalTokens,
    PromptTokens,
    CompletionTokens,
}

impl Strategy {
    pub fn cost(self, prompt: u64, completion: u64) -> u64 {
        match self {
            Strategy::TotalTokens => prompt + completion,
            Strategy::PromptTokens => prompt,
            Strategy::CompletionTokens => completion,
        }
    }
}

#[derive(Debug)]
enum Counter {
    Local(Arc<LocalWindow>),
    Redis(Box<[u8]>),
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
    per_instance: Box<[(Arc<str>, Limit)]>,
    /// Shared by every instance without its own entry (APISIX's
    /// `ai-rate-limiting#global` key).
    global: Option<Limit>,
    pub strategy: Strategy,
    pub show_headers: bool,
    pub rejected_code: u16,
    rejected_body: String,
    redis: Option<redis::Target>,
    pub allow_degradation: bool,
}

fn positive_int(v: &Value, at: &FieldPath) -> Result<u64, ConfigError> {
    let n = match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    match n {
        Some(n) if n >= 1 => Ok(n),
        _ => Err(at.error("must be a positive integer")),
    }
}

impl AiRateLimiting {
    pub fn compile(
        value: &Value,
        at: &FieldPath,
        cx: &mut super::CompileCx<'_, '_>,
    ) -> Result<AiRateLimiting, ConfigError> {
        let f: PluginFile = from_value(value, at)?;
        if f.rules.is_some() {
            return Err(at
                .field("rules")
                .error("key-based `rules` are not supported by ringway yet; use `limit`/`time_window` and `instances`"));
        }
        if f.cost_expr.is_some() {
            return Err(at
                .field("cost_expr")
                .error("cost expressions are not supported by ringway yet"));
        }
        let strategy = match f.limit_strategy.as_deref() {
            None | Some("total_tokens") => Strategy::TotalTokens,
            Some("prompt_tokens") => Strategy::PromptTokens,
            Some("completion_tokens") => Strategy::CompletionTokens,
            Some("expression") => {
                return Err(at
                    .field("limit_strategy")
                    .error("`expression` is not supported by ringway yet"))
            }
            Some(o) => {
                return Err(at.field("limit_strategy").error(format!(
                    "`{o}` must be one of total_tokens, prompt_tokens, completion_tokens"
                )))
            }
        };
        let rejected_code = match f.rejected_code {
            None => 503,
            Some(c @ 200..=599) => c as u16,
            Some(_) => {
                return Err(at
                    .field("rejected_code")
                    .error("must be between 200 and 599"))
            }
        };
        let rejected_body = match &f.rejected_msg {
            Some(m) if m.is_empty() => {
                return Err(at.field("rejected_msg").error("must not be empty"))
            }
            Some(m) => serde_json::json!({ "error_msg": m }).to_string(),
            None => crate::server::reply::error_body("LLM token rate limit exceeded"),
        };
        let redis = parse_store(&f, at)?;
        let counter = |cx: &mut super::CompileCx<'_, '_>, name: &str, limit: u64, window: u64| {
            match &redis {
                None => Counter::Local(
                    cx.carry
                        .window(&cx.owner, format!("{name}|{limit}|{window}")),
                ),
                // One hash tag for the whole key: every budget of this owner
                // lands on one cluster slot.
                Some(_) => Counter::Redis(
                    format!("ringway:ai-rate-limiting:{{{}:{name}}}", cx.owner)
                        .into_bytes()
                        .into_boxed_slice(),
                ),
            }
        };
        let check_limit = |limit: u64, at: &FieldPath| {
            if redis.is_none() && limit > MAX_USED {
                return Err(at.error(format!("must be at most {MAX_USED} with the local policy")));
            }
            Ok(limit)
        };
        let global = match (&f.limit, &f.time_window) {
            (None, None) => None,
            (Some(_), None) => return Err(at.field("time_window").error("required with `limit`")),
            (None, Some(_)) => return Err(at.field("limit").error("required with `time_window`")),
            (Some(l), Some(t)) => {
                let limit = check_limit(positive_int(l, &at.field("limit"))?, &at.field("limit"))?;
                let window = positive_int(t, &at.field("time_window"))?;
                Some(Limit {
                    limit,
                    window: Duration::from_secs(window),
                    counter: counter(cx, "#global", limit, window),
                })
            }
        };
        let mut per_instance: Vec<(Arc<str>, Limit)> = Vec::new();
        if let Some(list) = &f.instances {
            if list.is_empty() {
                return Err(at
                    .field("instances")
                    .error("must list at least one instance"));
            }
            for (i, inst) in list.iter().enumerate() {
                let iat = at.field("instances").index(i);
                if inst.name.is_empty() {
                    return Err(iat.field("name").error("must not be empty"));
                }
                if per_instance.iter().any(|(n, _)| **n == *inst.name) {
                    return Err(iat
                        .field("name")
                        .error(format!("duplicate instance `{}`", inst.name)));
                }
                let limit = check_limit(
                    positive_int(&inst.limit, &iat.field("limit"))?,
                    &iat.field("limit"),
                )?;
                let window = positive_int(&inst.time_window, &iat.field("time_window"))?;
                per_instance.push((
                    Arc::from(inst.name.as_str()),
                    Limit {
                        limit,
                        window: Duration::from_secs(window),
                        counter: counter(cx, &inst.name, limit, window),
                    },
                ));
            }
        }
        if global.is_none() && per_instance.is_empty() {
            return Err(at.error("needs `limit` and `time_window`, or `instances`"));
        }
        Ok(AiRateLimiting {
            per_instance: per_instance.into_boxed_slice(),
            global,
            strategy,
            show_headers: f.show_limit_quota_header.unwrap_or(true),
            rejected_code,
            rejected_body,
            redis,
            allow_degradation: f.allow_degradation.unwrap_or(false),
        })
    }

    /// Instance names with their own budget (checked against the route's
    /// `ai-proxy-multi` instances at load).
    pub fn instance_names(&self) -> impl Iterator<Item = &str> {
        self.per_instance.iter().map(|(n, _)| &**n)
    }

    /// The budget `instance` draws from, if any.
    pub fn limit_for(&self, instance: &str) -> Option<&Limit> {
        self.per_instance
            .iter()
            .find(|(n, _)| **n == *instance)
            .map(|(_, l)| l)
            .or(self.global.as_ref())
    }

    /// The JSON body of a rejection.
    pub fn rejected_body(&self) -> &str {
        &self.rejected_body
    }

    /// Whether `instance` may take another request.
    pub async fn check(&self, instance: &str) -> Verdict {
        let Some(l) = self.limit_for(instance) else {
            return Verdict::Unlimited;
        };
        let window_ms = l.window.as_millis() as u64;
        let usage = match &l.counter {
            Counter::Local(w) => w.usage(now_ms(), window_ms),
            // Boxed: the Redis client's state stays out of every caller's.
            Counter::Redis(key) => match Box::pin(self.redis_usage(key, window_ms)).await {
                Ok(u) => u,
                Err(e) => return self.degraded(instance, "check", e),
            },
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

    /// Charges a local budget at once. ai-proxy-multi calls this just
    /// before the answer's last bytes go to the client, so the client's next
    /// request (on any worker) already sees the charge. Redis budgets are
    /// left to [`AiRateLimiting::charge_remote`], after the answer.
    pub fn charge_local(&self, instance: &str, prompt: u64, completion: u64) {
        let cost = self.strategy.cost(prompt, completion);
        if cost == 0 {
            return;
        }
        if let Some(l) = self.limit_for(instance) {
            if let Counter::Local(w) = &l.counter {
                w.charge(cost, now_ms(), l.window.as_millis() as u64);
            }
        }
    }

    /// Charges the tokens a finished request used to `instance`'s budget
    /// when that budget lives in Redis (local ones: [`Self::charge_local`]).
    pub async fn charge_remote(&self, instance: &str, prompt: u64, completion: u64) {
        let cost = self.strategy.cost(prompt, completion);
        if cost == 0 {
            return;
        }
        let Some(l) = self.limit_for(instance) else {
            return;
        };
        let window_ms = l.window.as_millis() as u64;
        match &l.counter {
            Counter::Local(_) => {}
            Counter::Redis(key) => {
                let Some(target) = &self.redis else { return };
                let cost = cost.to_string();
                let window = window_ms.to_string();
                let cmd: &[&[u8]] = &[
                    b"EVAL",
                    CHARGE_SCRIPT.as_bytes(),
                    b"1",
                    key,
                    cost.as_bytes(),
                    window.as_bytes(),
                ];
                let r = Box::pin(redis::query(target, key, &[cmd])).await;
                let err = match r {
                    Ok(replies) => match replies.first() {
                        Some(Reply::Error(e)) => Some(RedisError::Server(e.clone())),
                        _ => None,
                    },
                    Err(e) => Some(e),
                };
                if let Some(e) = err {
                    metrics::RATE_LIMIT_STORE_ERRORS.inc();
                    warn_throttled(|| {
                        tracing::warn!(
                            instance,
                            cost,
                            "ai-rate-limiting could not charge tokens: {e}"
                        )
                    });
                }
            }
        }
    }

    async fn redis_usage(&self, key: &[u8], window_ms: u64) -> Result<Usage, RedisError> {
        let Some(target) = &self.redis else {
            return Err(RedisError::Protocol("no redis target".into()));
        };
        let get: &[&[u8]] = &[b"GET", key];
        let ttl: &[&[u8]] = &[b"PTTL", key];
        let replies = redis::query(target, key, &[get, ttl]).await?;
        let int = |r: Option<&Reply>| match r {
            Some(Reply::Error(e)) => Err(RedisError::Server(e.clone())),
            Some(r) => r
                .as_int()
                .ok_or_else(|| RedisError::Protocol(format!("unexpected reply {r:?}"))),
            None => Err(RedisError::Protocol("missing reply".into())),
        };
        let used = int(replies.first())?.max(0) as u64;
        let pttl = int(replies.get(1))?;
        Ok(Usage {
            used,
            reset_ms: if pttl > 0 { pttl as u64 } else { window_ms },
        })
    }
}

/// Adds the cost and opens the window (its expiry) with the first charge.
const CHARGE_SCRIPT: &str = "local v = redis.call('INCRBY', KEYS[1], ARGV[1]) \
if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end \
return v";

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
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = now_ms();
    let last = LAST.load(Ordering::Relaxed);
    if (last == 0 || now >= last + 1000)
        && LAST
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        log();
    }
}

fn parse_store(f: &PluginFile, at: &FieldPath) -> Result<Option<redis::Target>, ConfigError> {
    let policy = f.policy.as_deref().unwrap_or("local");
    let timeout = match f.redis_timeout {
        None => 1000,
        Some(t) if t >= 1 => t as u64,
        Some(_) => {
            return Err(at
                .field("redis_timeout")
                .error("must be >= 1 (milliseconds)"))
        }
    };
    let no_tls = |set: Option<bool>, name: &str| match set {
        Some(true) => Err(at
            .field(name)
            .error("TLS to Redis is not supported by ringway yet")),
        _ => Ok(()),
    };
    let password = f.redis_password.clone().filter(|p| !p.is_empty());
    match policy {
        "local" => {
            let mut extra = redis_fields(f);
            extra.extend(cluster_fields(f));
            if f.redis_password.is_some() {
                extra.push("redis_password");
            }
            if f.redis_timeout.is_some() {
                extra.push("redis_timeout");
            }
            if let Some(name) = extra.first() {
                return Err(at.field(name).error(
                    "only used with `policy: redis` or `redis-cluster` (the policy is `local`)",
                ));
            }
            Ok(None)
        }
        "redis" => {
            if let Some(name) = cluster_fields(f).first() {
                return Err(at
                    .field(name)
                    .error("only used with `policy: redis-cluster`"));
            }
            no_tls(f.redis_ssl, "redis_ssl")?;
            let host = match &f.redis_host {
                Some(h) if !h.is_empty() => h.clone(),
                _ => {
                    return Err(at
                        .field("redis_host")
                        .error("required with `policy: redis`"))
                }
            };
            let port = match f.redis_port {
                None => 6379,
                Some(p @ 1..=65535) => p as u16,
                Some(_) => return Err(at.field("redis_port").error("must be between 1 and 65535")),
            };
            let database = match f.redis_database {
                None => 0,
                Some(d) if (0..=u32::MAX as i64).contains(&d) => d as u32,
                Some(_) => return Err(at.field("redis_database").error("must be >= 0")),
            };
            let node = if host.contains(':') && !host.starts_with('[') {
                format!("[{host}]:{port}")
            } else {
                format!("{host}:{port}")
            };
            Ok(Some(redis::Target {
                nodes: vec![node],
                username: f.redis_username.clone().filter(|u| !u.is_empty()),
                password,
                database,
                timeout: Duration::from_millis(timeout),
                cluster: false,
            }))
        }
        "redis-cluster" => {
            if let Some(name) = redis_fields(f).first() {
                return Err(at.field(name).error("only used with `policy: redis`"));
            }
            no_tls(f.redis_cluster_ssl, "redis_cluster_ssl")?;
            let nodes = match &f.redis_cluster_nodes {
                Some(n) if !n.is_empty() => n.clone(),
                _ => {
                    return Err(at
                        .field("redis_cluster_nodes")
                        .error("required with `policy: redis-cluster` (a list of host:port)"))
                }
            };
            for (i, n) in nodes.iter().enumerate() {
                if n.rsplit_once(':')
                    .and_then(|(_, p)| p.parse::<u16>().ok())
                    .is_none()
                {
                    return Err(at
                        .field("redis_cluster_nodes")
                        .index(i)
                        .error("must be host:port"));
                }
            }
            if f.redis_cluster_name.as_deref().is_none_or(str::is_empty) {
                return Err(at
                    .field("redis_cluster_name")
                    .error("required with `policy: redis-cluster`"));
            }
            Ok(Some(redis::Target {
                nodes,
                username: None,
                password,
                database: 0,
                timeout: Duration::from_millis(timeout),
                cluster: true,
            }))
        }
        "redis-sentinel" => Err(at.field("policy").error(
            "`redis-sentinel` is not supported by ringway yet (use redis or redis-cluster)",
        )),
        o => Err(at
            .field("policy")
            .error(format!("`{o}` must be one of local, redis, redis-cluster"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::shared::Carry;
    use serde_json::json;

    fn compile(v: Value) -> Result<AiRateLimiting, ConfigError> {
        let mut carry = Carry::new(None);
        let mut cx = super::super::CompileCx {
            owner: Arc::from("route/r"),
            carry: &mut carry,
        };
        AiRateLimiting::compile(&v, &FieldPath::root().field(NAME), &mut cx)
    }

    #[test]
    fn defaults_and_budgets() {
        let p = compile(json!({"instances": [{"name": "a", "limit": 10, "time_window": 60}], "limit": 100, "time_window": 3600})).unwrap();
        assert_eq!(p.rejected_code, 503);
        assert!(p.show_headers);
        assert_eq!(p.strategy, Strategy::TotalTokens);
        assert_eq!(p.limit_for("a").unwrap().limit, 10);
        assert_eq!(p.limit_for("other").unwrap().limit, 100);
        let p = compile(json!({"instances": [{"name": "a", "limit": "10", "time_window": 60}]}))
            .unwrap();
        assert!(p.limit_for("b").is_none());
        assert_eq!(Strategy::PromptTokens.cost(3, 4), 3);
        assert_eq!(Strategy::TotalTokens.cost(3, 4), 7);
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
                json!({"limit": 5, "time_window": 5, "policy": "redis-cluster", "redis_cluster_nodes": ["a:1"]}),
                "ai-rate-limiting.redis_cluster_name",
            ),
            (
                json!({"limit": 5, "time_window": 5, "bogus": 1}),
                "ai-rate-limiting.bogus",
            ),
            (json!({"rules": []}), "ai-rate-limiting.rules"),
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
            p.charge_local("a", 4, 3);
            // A local budget is not charged again after the answer.
            p.charge_remote("a", 4, 3).await;
            let v = p.check("a").await;
            assert!(
                matches!(v, Verdict::Allowed(q) if q.remaining == 3 && q.reset == 60),
                "{v:?}"
            );
            p.charge_local("a", 2, 2);
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
