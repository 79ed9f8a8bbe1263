//! Compiling `ai-rate-limiting`'s config into budgets: APISIX's defaults,
//! one counter per budget (local windows carried across reloads, or Redis
//! keys), and every error with its field path.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::config::{cluster_fields, redis_fields, sentinel_fields, PluginFile, RuleFile};
use super::cost_expr::CostExpr;
use super::each::EachInstance;
use super::rules::{valid_prefix, Amount, Rule, RuleCounter};
use super::window::MAX_USED;
use super::{AiRateLimiting, Counter, Limit, Strategy};
use crate::config::{bounds, from_value, ConfigError, FieldPath};
use crate::redis;
use crate::upstream::tls::TlsClients;

/// A positive integer up to `max`, given as a number or a string (as
/// APISIX's `limit` and `time_window` may be).
fn positive_int(v: &Value, max: i64, at: &FieldPath) -> Result<u64, ConfigError> {
    let n = match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    };
    match n {
        Some(n) => bounds::int(n, 1, max, at),
        None => Err(at.error(format!("must be a positive integer (at most {max})"))),
    }
}

/// The largest budget a Redis counter holds (Redis integers are signed
/// 64-bit); the local policy's is [`MAX_USED`].
const MAX_LIMIT: i64 = i64::MAX;

impl AiRateLimiting {
    pub fn compile(
        value: &Value,
        at: &FieldPath,
        cx: &mut crate::plugins::CompileCx<'_, '_>,
    ) -> Result<AiRateLimiting, ConfigError> {
        let f: PluginFile = from_value(value, at)?;
        let strategy = match f.limit_strategy.as_deref() {
            None | Some("total_tokens") => Strategy::TotalTokens,
            Some("prompt_tokens") => Strategy::PromptTokens,
            Some("completion_tokens") => Strategy::CompletionTokens,
            Some("expression") => {
                let Some(src) = &f.cost_expr else {
                    return Err(at
                        .field("cost_expr")
                        .error("is required with `limit_strategy: expression`"));
                };
                let e = CostExpr::parse(src).map_err(|e| at.field("cost_expr").error(e))?;
                Strategy::Expression(Arc::new(e))
            }
            Some(o) => {
                return Err(at.field("limit_strategy").error(format!(
                "`{o}` must be one of total_tokens, prompt_tokens, completion_tokens, expression"
            )))
            }
        };
        if f.cost_expr.is_some() && !strategy.wants_raw_usage() {
            return Err(at
                .field("cost_expr")
                .error("is used only with `limit_strategy: expression`"));
        }
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
            None => crate::exchange::reply::error_body("LLM token rate limit exceeded"),
        };
        let redis = parse_store(&f, at, cx.carry.tls.as_ref())?.map(redis::Target::prepared);
        let lease_tokens = match f.redis_lease_tokens {
            None => None,
            Some(_) if redis.is_none() => {
                return Err(at.field("redis_lease_tokens").error(
                    "only used with `policy: redis`, `redis-cluster` or `redis-sentinel` (the policy is `local`)",
                ))
            }
            Some(_) if f.rules.is_some() => {
                return Err(at
                    .field("redis_lease_tokens")
                    .error("cannot be combined with `rules` (leases are per budget, not per key)"))
            }
            Some(n) => Some(bounds::int::<u64>(
                n,
                1,
                MAX_LIMIT,
                &at.field("redis_lease_tokens"),
            )?),
        };
        let counter =
            |cx: &mut crate::plugins::CompileCx<'_, '_>, name: &str, limit: u64, window: u64| {
                // One hash tag for the whole key: every budget of this owner
                // lands on one cluster slot.
                let key = || {
                    format!("ringway:ai-rate-limiting:{{{}:{name}}}", cx.owner)
                        .into_bytes()
                        .into_boxed_slice()
                };
                match (&redis, lease_tokens) {
                    (None, _) => Counter::Local(
                        cx.carry
                            .window(&cx.owner, format!("{name}|{limit}|{window}")),
                    ),
                    (Some(_), None) => Counter::Redis(key()),
                    (Some(target), Some(tokens)) => {
                        let key = key();
                        // Same budget on the same servers: the claim goes on.
                        let id = format!(
                            "{name}|{limit}|{window}|{tokens}|{:?}|{:?}",
                            target.nodes,
                            target.sentinel.as_ref().map(|s| &s.id)
                        );
                        Counter::Leased {
                            lease: cx.carry.lease(&cx.owner, id),
                            key,
                            tokens,
                        }
                    }
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
                let limit = check_limit(
                    positive_int(l, MAX_LIMIT, &at.field("limit"))?,
                    &at.field("limit"),
                )?;
                let window = positive_int(t, bounds::MAX_WINDOW_SECONDS, &at.field("time_window"))?;
                Some(EachInstance::new(
                    cx,
                    limit,
                    window,
                    redis.as_ref(),
                    lease_tokens,
                ))
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
                    positive_int(&inst.limit, MAX_LIMIT, &iat.field("limit"))?,
                    &iat.field("limit"),
                )?;
                let window = positive_int(
                    &inst.time_window,
                    bounds::MAX_WINDOW_SECONDS,
                    &iat.field("time_window"),
                )?;
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
        let rules = match &f.rules {
            None => Vec::new(),
            Some(list) => {
                if global.is_some() || !per_instance.is_empty() {
                    return Err(at.field("rules").error(
                        "cannot be combined with `limit`/`time_window` or `instances` (APISIX: one or the other)",
                    ));
                }
                compile_rules(list, &at.field("rules"), cx, redis.is_some())?
            }
        };
        if global.is_none() && per_instance.is_empty() && rules.is_empty() {
            return Err(at.error("needs `limit` and `time_window`, `instances`, or `rules`"));
        }
        Ok(AiRateLimiting {
            rules: rules.into_boxed_slice(),
            per_instance: per_instance.into_boxed_slice(),
            each: global,
            strategy,
            show_headers: f.show_limit_quota_header.unwrap_or(true),
            rejected_code,
            rejected_body,
            rejected_type: "application/json",
            redis,
            allow_degradation: f.allow_degradation.unwrap_or(false),
        })
    }
}

/// A rule's `count` or `time_window`: a positive integer up to `max`, or
/// `$variable`.
fn amount(v: &Value, max: i64, at: &FieldPath) -> Result<Amount, ConfigError> {
    if let Some(name) = v.as_str().and_then(|s| s.trim().strip_prefix('$')) {
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(at.error("must be a positive integer or `$variable`"));
        }
        return Ok(Amount::Var(name.to_owned()));
    }
    positive_int(v, max, at).map(Amount::Fixed).map_err(|_| {
        at.error(format!(
            "must be a positive integer (at most {max}) or `$variable`"
        ))
    })
}

/// Keys a rule keeps by default (`rules[].max_keys`).
const DEFAULT_MAX_KEYS: usize = 100_000;

fn compile_rules(
    list: &[RuleFile],
    at: &FieldPath,
    cx: &mut crate::plugins::CompileCx<'_, '_>,
    redis: bool,
) -> Result<Vec<Rule>, ConfigError> {
    if list.is_empty() {
        return Err(at.error("must list at least one rule"));
    }
    let mut rules: Vec<Rule> = Vec::with_capacity(list.len());
    for (i, r) in list.iter().enumerate() {
        let rat = at.index(i);
        let count = amount(&r.count, MAX_LIMIT, &rat.field("count"))?;
        if let (Amount::Fixed(n), false) = (&count, redis) {
            if *n > MAX_USED {
                return Err(rat
                    .field("count")
                    .error(format!("must be at most {MAX_USED} with the local policy")));
            }
        }
        let window = amount(
            &r.time_window,
            bounds::MAX_WINDOW_SECONDS,
            &rat.field("time_window"),
        )?;
        if !r.key.contains('$') {
            return Err(rat.field("key").error(
                "must name at least one variable, e.g. `$consumer_name` or `$http_x_user`",
            ));
        }
        if list[..i].iter().any(|o| o.key == r.key) {
            return Err(rat
                .field("key")
                .error(format!("duplicate key `{}` in rules", r.key)));
        }
        let prefix = match &r.header_prefix {
            Some(p) if !valid_prefix(p) => {
                return Err(rat
                    .field("header_prefix")
                    .error("must be letters, digits, `-` or `_`"))
            }
            Some(p) => p.clone(),
            None => (i + 1).to_string(),
        };
        if rules.iter().any(|o| o.prefix == prefix) {
            return Err(rat
                .field("header_prefix")
                .error(format!("`{prefix}` is used by another rule")));
        }
        let max_keys = match r.max_keys {
            None => DEFAULT_MAX_KEYS,
            Some(n @ 1..=10_000_000) if !redis => n as usize,
            Some(1..=10_000_000) => {
                return Err(rat.field("max_keys").error(
                    "only used with the local policy (Redis keys expire with their windows)",
                ))
            }
            Some(_) => {
                return Err(rat
                    .field("max_keys")
                    .error("must be between 1 and 10000000"))
            }
        };
        let id = format!("rule|{}|{:?}|{:?}|{prefix}", r.key, count, window);
        let counter = if redis {
            RuleCounter::Redis(
                format!("ringway:ai-rate-limiting:{{{}:{id}}}:", cx.owner)
                    .into_bytes()
                    .into_boxed_slice(),
            )
        } else {
            RuleCounter::Local(cx.carry.keyed_windows(&cx.owner, id), max_keys)
        };
        rules.push(Rule {
            count,
            window,
            key: r.key.clone(),
            prefix,
            counter,
        });
    }
    Ok(rules)
}

/// TLS for Redis when `ssl` is on. Certificates are verified unless
/// `ssl_verify` is `false` (APISIX's default is `false`; ringway's is to
/// verify, against the web roots and `gateway.ssl_trusted_certificate`).
fn redis_tls(
    ssl: Option<bool>,
    ssl_verify: Option<bool>,
    verify_field: &str,
    clients: Option<&TlsClients>,
    at: &FieldPath,
) -> Result<Option<redis::RedisTls>, ConfigError> {
    if ssl != Some(true) {
        if ssl_verify.is_some() {
            return Err(at
                .field(verify_field)
                .error("only used with TLS on (`redis_ssl` / `redis_cluster_ssl: true`)"));
        }
        return Ok(None);
    }
    let clients = match clients {
        Some(c) => c.clone(),
        None => TlsClients::new(None)?,
    };
    Ok(Some(redis::RedisTls {
        clients,
        verify: ssl_verify.unwrap_or(true),
    }))
}

/// Refuses the first of `fields` (set, but for another policy).
fn only_with(at: &FieldPath, fields: Vec<&'static str>, policy: &str) -> Result<(), ConfigError> {
    match fields.first() {
        Some(name) => Err(at
            .field(name)
            .error(format!("only used with `policy: {policy}`"))),
        None => Ok(()),
    }
}

fn database(f: &PluginFile, at: &FieldPath) -> Result<u32, ConfigError> {
    match f.redis_database {
        None => Ok(0),
        Some(d) => bounds::int(d, 0, i64::from(u32::MAX), &at.field("redis_database")),
    }
}

/// `value` when set and not empty.
fn non_empty(value: &Option<String>) -> Option<String> {
    value.clone().filter(|v| !v.is_empty())
}

/// `value`, which `policy` requires (`why` says what it holds).
fn required(
    at: &FieldPath,
    field: &str,
    value: &Option<String>,
    why: &str,
) -> Result<String, ConfigError> {
    non_empty(value).ok_or_else(|| at.field(field).error(format!("required with {why}")))
}

fn parse_store(
    f: &PluginFile,
    at: &FieldPath,
    tls_clients: Option<&TlsClients>,
) -> Result<Option<redis::Target>, ConfigError> {
    let policy = f.policy.as_deref().unwrap_or("local");
    let timeout = bounds::millis(
        f.redis_timeout.unwrap_or(1000),
        1,
        bounds::MAX_MILLIS,
        &at.field("redis_timeout"),
    )?;
    // APISIX's redis schema: idle connections kept (per worker here) and
    // for how long.
    let keepalive_timeout = bounds::millis(
        f.redis_keepalive_timeout.unwrap_or(10_000),
        1000,
        bounds::MAX_MILLIS,
        &at.field("redis_keepalive_timeout"),
    )?;
    let keepalive_pool = bounds::int(
        f.redis_keepalive_pool.unwrap_or(100),
        1,
        bounds::MAX_POOL_SIZE,
        &at.field("redis_keepalive_pool"),
    )?;
    // What every Redis policy shares; each fills in the rest.
    let base = redis::Target {
        nodes: Vec::new(),
        username: None,
        password: non_empty(&f.redis_password),
        database: 0,
        timeout,
        keepalive_timeout,
        keepalive_pool,
        cluster: false,
        tls: None,
        sentinel: None,
        state: Default::default(),
    };
    match policy {
        "local" => {
            let mut extra = redis_fields(f);
            extra.extend(cluster_fields(f));
            extra.extend(sentinel_fields(f));
            if f.redis_password.is_some() {
                extra.push("redis_password");
            }
            for (set, name) in [
                (f.redis_timeout.is_some(), "redis_timeout"),
                (
                    f.redis_keepalive_timeout.is_some(),
                    "redis_keepalive_timeout",
                ),
                (f.redis_keepalive_pool.is_some(), "redis_keepalive_pool"),
            ] {
                if set {
                    extra.push(name);
                }
            }
            if let Some(name) = extra.first() {
                return Err(at.field(name).error(
                    "only used with `policy: redis`, `redis-cluster` or `redis-sentinel` (the policy is `local`)",
                ));
            }
            Ok(None)
        }
        "redis" => {
            only_with(at, cluster_fields(f), "redis-cluster")?;
            only_with(at, sentinel_fields(f), "redis-sentinel")?;
            let tls = redis_tls(
                f.redis_ssl,
                f.redis_ssl_verify,
                "redis_ssl_verify",
                tls_clients,
                at,
            )?;
            let host = required(at, "redis_host", &f.redis_host, "`policy: redis`")?;
            let port = match f.redis_port {
                None => 6379,
                Some(p @ 1..=65535) => p as u16,
                Some(_) => return Err(at.field("redis_port").error("must be between 1 and 65535")),
            };
            Ok(Some(redis::Target {
                nodes: vec![redis::node(&host, port)],
                username: non_empty(&f.redis_username),
                database: database(f, at)?,
                tls,
                ..base
            }))
        }
        "redis-cluster" => {
            only_with(at, redis_fields(f), "redis")?;
            only_with(at, sentinel_fields(f), "redis-sentinel")?;
            let tls = redis_tls(
                f.redis_cluster_ssl,
                f.redis_cluster_ssl_verify,
                "redis_cluster_ssl_verify",
                tls_clients,
                at,
            )?;
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
            required(
                at,
                "redis_cluster_name",
                &f.redis_cluster_name,
                "`policy: redis-cluster`",
            )?;
            Ok(Some(redis::Target {
                nodes,
                cluster: true,
                tls,
                ..base
            }))
        }
        "redis-sentinel" => {
            for (set, name) in [
                (f.redis_host.is_some(), "redis_host"),
                (f.redis_port.is_some(), "redis_port"),
            ] {
                if set {
                    return Err(at.field(name).error(
                        "not used with `policy: redis-sentinel` (the sentinels name the master)",
                    ));
                }
            }
            only_with(at, cluster_fields(f), "redis-cluster")?;
            let list = match &f.redis_sentinels {
                Some(l) if !l.is_empty() => l,
                _ => {
                    return Err(at
                        .field("redis_sentinels")
                        .error("required with `policy: redis-sentinel` (a list of {host, port})"))
                }
            };
            let mut nodes = Vec::with_capacity(list.len());
            for (i, n) in list.iter().enumerate() {
                let nat = at.field("redis_sentinels").index(i);
                if n.host.is_empty() {
                    return Err(nat.field("host").error("must not be empty"));
                }
                if !(1..=65535).contains(&n.port) {
                    return Err(nat.field("port").error("must be between 1 and 65535"));
                }
                nodes.push(redis::node(&n.host, n.port));
            }
            let master = required(
                at,
                "redis_master_name",
                &f.redis_master_name,
                "`policy: redis-sentinel`",
            )?;
            let tls = redis_tls(
                f.redis_ssl,
                f.redis_ssl_verify,
                "redis_ssl_verify",
                tls_clients,
                at,
            )?;
            Ok(Some(redis::Target {
                username: non_empty(&f.redis_username),
                database: database(f, at)?,
                tls,
                sentinel: Some(redis::Sentinel {
                    id: format!("{master}@{}", nodes.join(",")),
                    nodes,
                    master,
                    username: non_empty(&f.sentinel_username),
                    password: non_empty(&f.sentinel_password),
                }),
                ..base
            }))
        }
        o => Err(at.field("policy").error(format!(
            "`{o}` must be one of local, redis, redis-cluster, redis-sentinel"
        ))),
    }
}
