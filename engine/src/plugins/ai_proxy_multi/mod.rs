//! `ai-proxy-multi`: spreads OpenAI- and Anthropic-style chat and embedding
//! requests over LLM instances by priority and weight (or consistent hash),
//! falls back on rate limits, unhealthy instances, 429 and 5xx, and streams
//! the answer back with time-to-first-token and token accounting.
//!
//! [`config`] parses APISIX's schema, [`instance`] compiles one instance,
//! [`select`] orders instances for a request, [`handler`] runs the
//! attempts, [`replies`] writes the plugin's own answers (errors, `502`
//! naming the attempts, `503`), [`respond`] relays a JSON answer, and [`stream`] relays an SSE
//! answer as a job the connection loop runs once the handler has returned.
//! [`affinity`] remembers which instance stores which Responses API
//! response (follow-ups go there first) and [`stored`] serves the calls on
//! a stored response (`GET` / `DELETE …/responses/{id}`, …);
//! [`retry_after`] reads a 429's `Retry-After`; [`traced`] makes each
//! attempt a span of the request's trace.
//! The plugin is the route's content handler: it answers the request
//! itself, after the rewrite phase; the AI-path plugins in force
//! ([`crate::plugins::InForce`]) run their phases from its steps.

pub mod affinity;
pub mod attempt;
pub mod config;
pub mod follow_up;
pub mod handler;
pub mod instance;
pub mod outcome;
pub mod pump;
pub mod replies;
pub mod request;
pub mod respond;
pub mod retry_after;
pub mod select;
pub mod stored;
pub mod stream;
pub mod traced;
pub mod walk;

use std::time::Duration;

use serde_json::Value;

use crate::config::{bounds, from_value, ConfigError, FieldPath};
use crate::health::PassivePolicy;
use crate::http::vars::VarSource;
use config::{Fallback, LoggingFile, PluginFile, Transport};
pub use instance::Instance;
use select::{Group, Plan};

pub const NAME: &str = "ai-proxy-multi";
/// APISIX runs ai-proxy-multi after auth and before ai-rate-limiting.
pub const PRIORITY: i32 = 1041;

/// The registry's entry: a route's or service's content handler, with
/// `_meta.error_response` for its own errors.
pub fn compile(
    value: &Value,
    at: &FieldPath,
    scope: super::Scope,
    meta: &super::meta::Meta,
    cx: &mut super::CompileCx<'_, '_>,
) -> Result<Option<std::sync::Arc<AiProxyMulti>>, ConfigError> {
    match scope {
        super::Scope::Route | super::Scope::Service => {
            Ok(Some(std::sync::Arc::new(AiProxyMulti {
                error_response: meta.error_response.clone(),
                ..AiProxyMulti::compile(value, at, cx)?
            })))
        }
        _ => Err(at.error("ai-proxy-multi can only be configured on a route or a service")),
    }
}

/// The content handler: its request path is [`handler`], not phases.
impl super::phase::Phases for std::sync::Arc<AiProxyMulti> {
    type Request<'a> = ();
}

/// How `chash` finds a request's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashOn {
    Vars(String),
    Header(String),
    Cookie(String),
    Consumer,
    VarsCombinations(String),
}

#[derive(Debug)]
pub struct AiProxyMulti {
    pub instances: Box<[Instance]>,
    /// Highest priority first.
    pub groups: Box<[Group]>,
    pub hash_on: Option<HashOn>,
    pub fallback: Fallback,
    pub transport: Transport,
    pub logging: LoggingFile,
    /// Attempts per request (first try + retries).
    pub max_attempts: usize,
    pub sse_heartbeat: Option<Duration>,
    /// `max_req_body_size`: the largest request body this route reads
    /// (else the gateway's `limits.max_body_bytes`).
    pub max_request_body: Option<u64>,
    pub passive: PassivePolicy,
    /// `_meta.error_response`: the body of the plugin's own error answers.
    pub error_response: Option<crate::plugins::meta::ErrorResponse>,
    /// Which instance holds which stored Responses API response.
    pub affinity: std::sync::Arc<affinity::ResponseAffinity>,
}

impl AiProxyMulti {
    pub fn compile(
        value: &Value,
        at: &FieldPath,
        cx: &mut super::CompileCx<'_, '_>,
    ) -> Result<AiProxyMulti, ConfigError> {
        let f: PluginFile = from_value(value, at)?;
        if f.instances.is_empty() {
            return Err(at
                .field("instances")
                .error("must list at least one instance"));
        }
        bounds::members(&f.instances, &at.field("instances"))?;
        let transport = Transport::parse(&f, at)?;
        let mut instances = Vec::with_capacity(f.instances.len());
        for (i, v) in f.instances.iter().enumerate() {
            let iat = at.field("instances").index(i);
            let inst = Instance::compile(v, &iat, &transport, |name| {
                cx.carry.instance(&cx.owner, name, v)
            })?;
            if instances.iter().any(|o: &Instance| o.name == inst.name) {
                return Err(iat
                    .field("name")
                    .error(format!("duplicate instance name `{}`", inst.name)));
            }
            instances.push(inst);
        }
        let hash_on = parse_balancer(f.balancer.as_ref(), &at.field("balancer"))?;
        let mut priorities: Vec<i64> = instances.iter().map(|i| i.priority).collect();
        priorities.sort_unstable_by(|a, b| b.cmp(a));
        priorities.dedup();
        let groups = priorities
            .into_iter()
            .map(|p| {
                let members: Vec<usize> = (0..instances.len())
                    .filter(|&i| instances[i].priority == p)
                    .collect();
                let weights: Vec<u32> = members.iter().map(|&i| instances[i].weight).collect();
                Group::new(
                    p,
                    members,
                    &weights,
                    hash_on.is_some(),
                    cx.carry.ticket(&cx.owner, p),
                )
            })
            .collect();
        let max_attempts = match f.max_retries {
            None => instances.len(),
            Some(r) => {
                let r: usize = bounds::int(r, 0, bounds::MAX_RETRIES, &at.field("max_retries"))?;
                (r + 1).min(instances.len())
            }
        };
        let sse_heartbeat = match f.sse_heartbeat_interval {
            None => Some(Duration::from_secs(15)),
            Some(s) => Some(bounds::seconds(
                s,
                bounds::Min::Inclusive(0.0),
                bounds::MAX_SECONDS,
                &at.field("sse_heartbeat_interval"),
            )?)
            .filter(|d| !d.is_zero()),
        };
        let max_request_body = match f.max_req_body_size {
            None => None,
            Some(n) => Some(bounds::int(n, 1, i64::MAX, &at.field("max_req_body_size"))?),
        };
        Ok(AiProxyMulti {
            max_request_body,
            instances: instances.into_boxed_slice(),
            groups,
            hash_on,
            fallback: Fallback::parse(
                f.fallback_strategy.as_ref(),
                &at.field("fallback_strategy"),
            )?,
            transport,
            logging: f.logging.unwrap_or_default(),
            max_attempts,
            sse_heartbeat,
            passive: PassivePolicy::default(),
            error_response: None,
            affinity: cx.carry.affinity(&cx.owner),
        })
    }

    /// The instances to try for a request, in order.
    pub fn plan<'a>(&'a self, key: Option<&'a [u8]>) -> Plan<'a> {
        Plan::new(&self.groups, key)
    }

    /// The consistent-hash key of a request (`None` for round robin).
    /// Missing keys fall back to the client address, as APISIX does.
    pub fn hash_key(&self, vars: &VarSource<'_>) -> Option<Vec<u8>> {
        let on = self.hash_on.as_ref()?;
        let key = match on {
            HashOn::Vars(name) => vars.get(name).map(|v| v.into_owned()),
            HashOn::Header(name) => vars.head.header(name).map(<[u8]>::to_vec),
            HashOn::Cookie(name) => vars.cookie(name).map(<[u8]>::to_vec),
            HashOn::Consumer => vars.consumer.map(|c| c.as_bytes().to_vec()),
            HashOn::VarsCombinations(t) => vars.expand(t),
        };
        key.or_else(|| vars.get("remote_addr").map(|v| v.into_owned()))
    }
}

fn parse_balancer(
    b: Option<&config::BalancerFile>,
    at: &FieldPath,
) -> Result<Option<HashOn>, ConfigError> {
    let Some(b) = b else { return Ok(None) };
    match b.algorithm.as_deref() {
        None | Some("roundrobin") => return Ok(None),
        Some("chash") => {}
        Some(o) => {
            return Err(at
                .field("algorithm")
                .error(format!("`{o}` must be roundrobin or chash")))
        }
    }
    let on = b.hash_on.as_deref().unwrap_or("vars");
    let key = || {
        b.key.clone().filter(|k| !k.is_empty()).ok_or_else(|| {
            at.field("key")
                .error(format!("required when `hash_on` is `{on}`"))
        })
    };
    Ok(Some(match on {
        "vars" => {
            let k = key()?;
            let name = k.trim_start_matches('$').to_owned();
            if !name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_') {
                return Err(at
                    .field("key")
                    .error("must be an nginx variable name such as `remote_addr` or `arg_user`"));
            }
            HashOn::Vars(name)
        }
        "header" | "headers" => HashOn::Header(key()?),
        "cookie" => HashOn::Cookie(key()?),
        "consumer" => HashOn::Consumer,
        "vars_combinations" => HashOn::VarsCombinations(key()?),
        o => {
            return Err(at.field("hash_on").error(format!(
                "`{o}` must be one of vars, header, cookie, consumer, vars_combinations"
            )))
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::shared::Carry;
    use serde_json::json;
    use std::sync::Arc;

    fn compile(v: Value) -> Result<AiProxyMulti, ConfigError> {
        compile_with(&mut Carry::new(None), v)
    }

    fn compile_with(carry: &mut Carry<'_>, v: Value) -> Result<AiProxyMulti, ConfigError> {
        let mut cx = super::super::CompileCx {
            owner: Arc::from("route/r"),
            carry,
            metadata: &Default::default(),
        };
        AiProxyMulti::compile(&v, &FieldPath::root().field("ai-proxy-multi"), &mut cx)
    }

    #[test]
    fn response_holders_are_remembered_by_name_across_reloads() {
        let mut first = Carry::new(None);
        let p = compile_with(
            &mut first,
            json!({"instances": [inst("a", 0, 1), inst("b", 0, 1)]}),
        )
        .unwrap();
        p.affinity.remember(b"resp_1", &p.instances[1]);
        p.affinity.remember(b"resp_2", &p.instances[0]);
        assert_eq!(p.affinity.recall(b"resp_1", &p.instances), Some(1));
        assert_eq!(p.affinity.recall(b"resp_3", &p.instances), None);
        // Reordered, one instance gone, one added: names still match.
        let shared = first.next;
        let mut second = Carry::new(Some(&shared));
        let q = compile_with(
            &mut second,
            json!({"instances": [inst("c", 0, 1), inst("b", 0, 1)]}),
        )
        .unwrap();
        assert_eq!(q.affinity.recall(b"resp_1", &q.instances), Some(1));
        assert_eq!(
            q.affinity.recall(b"resp_2", &q.instances),
            None,
            "`a` is gone"
        );
    }

    fn inst(name: &str, priority: i64, weight: i64) -> Value {
        json!({"name": name, "provider": "openai", "priority": priority, "weight": weight, "auth": {"header": {"Authorization": "Bearer k"}}})
    }

    #[test]
    fn groups_by_priority_and_defaults() {
        let p = compile(json!({"instances": [inst("a", 0, 1), inst("b", 1, 0), inst("c", 0, 3)]}))
            .unwrap();
        assert_eq!(p.groups.len(), 2);
        assert_eq!(p.groups[0].priority, 1);
        assert_eq!(&*p.groups[1].members, &[0, 2]);
        assert_eq!(p.transport.timeout, Duration::from_millis(30_000));
        assert_eq!(p.transport.keepalive.size, 30);
        assert_eq!(p.max_attempts, 3);
        assert!(p.hash_on.is_none());
        let first: Vec<usize> = p.plan(None).take(1).collect();
        assert_eq!(first, vec![1]);
    }

    #[test]
    fn validation() {
        let e = compile(json!({"instances": []})).unwrap_err();
        assert_eq!(e.path, "ai-proxy-multi.instances");
        let e = compile(json!({"instances": [inst("a", 0, 1), inst("a", 0, 1)]})).unwrap_err();
        assert_eq!(e.path, "ai-proxy-multi.instances[1].name");
        let e = compile(json!({"instances": [inst("a", 0, 1)], "balancer": {"algorithm": "chash", "hash_on": "header"}})).unwrap_err();
        assert_eq!(e.path, "ai-proxy-multi.balancer.key");
        let e = compile(json!({"instances": [inst("a", 0, 1)], "timeout": 0})).unwrap_err();
        assert_eq!(e.path, "ai-proxy-multi.timeout");
        let p = compile(json!({"instances": [inst("a", 0, 1)], "balancer": {"algorithm": "chash", "hash_on": "consumer"}})).unwrap();
        assert_eq!(p.hash_on, Some(HashOn::Consumer));
        let p = compile(json!({"instances": [inst("a", 0, 1), inst("b", 0, 1)], "max_retries": 0}))
            .unwrap();
        assert_eq!(p.max_attempts, 1);
    }
}
