//! Plugins, APISIX-style: each plugin is one folder, compiled from its JSON
//! config (APISIX schema and defaults, field for field) into an immutable
//! value, and run in APISIX's priority order through the phases it needs.
//!
//! The set of plugins is closed (compiled in), so a [`Plugin`] is an enum
//! and phases dispatch with a `match`: no boxing, no virtual calls, async
//! phases without allocation. Adding a plugin is a folder, a variant and a
//! line in [`compile_one`]; the server loop only calls [`PluginChain`].
//! A name the registry does not know is rejected at load time with the
//! field path, never ignored. Every plugin's `_meta` (disable, priority,
//! filter, error_response) is handled here, once for all ([`meta`]).

pub mod ai_proxy_multi;
pub mod ai_rate_limiting;
pub mod consumers;
pub mod http_logger;
pub mod kafka_logger;
pub mod key_auth;
pub mod logger;
pub mod meta;
pub mod metadata;
pub mod shared;

use serde_json::Value;

use crate::config::resources::PluginMap;
use crate::config::{ConfigError, FieldPath};
use crate::exchange::ctx::RequestCtx;
use crate::http::RequestHead;

/// Where a plugin config sits; some plugins mean different things per scope
/// (`key-auth` on a route is an auth check, on a consumer a credential).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Route,
    Service,
    GlobalRule,
    Consumer,
}

/// What plugin compilers may use besides their config: the owner of the
/// config (for state that survives reloads) and the state carrier.
pub struct CompileCx<'c, 'a> {
    /// `route/<id>`, `service/<id>`, `consumer/<name>` or `global`.
    pub owner: std::sync::Arc<str>,
    pub carry: &'c mut crate::plugins::shared::Carry<'a>,
    /// The snapshot's `plugin_metadata`, compiled.
    pub metadata: &'c metadata::PluginMetadata,
}

/// The plugins ringway implements, by APISIX name.
pub const SUPPORTED: &[&str] = &[
    "ai-proxy-multi",
    "ai-rate-limiting",
    "http-logger",
    "kafka-logger",
    "key-auth",
];

/// A compiled plugin.
#[derive(Debug)]
pub enum Plugin {
    KeyAuth(key_auth::KeyAuth),
    /// The route's content handler (answers the request itself).
    AiProxyMulti(std::sync::Arc<ai_proxy_multi::AiProxyMulti>),
    /// Consulted by ai-proxy-multi per instance; no phase of its own.
    AiRateLimiting(std::sync::Arc<ai_rate_limiting::AiRateLimiting>),
    /// Run in the log phase.
    KafkaLogger(logger::Logger),
    HttpLogger(logger::Logger),
}

/// What the access phase decided.
#[derive(Debug)]
pub enum Flow {
    Continue,
    /// Answer now with this status and body (and these header lines,
    /// each ending in CRLF, shared with the plugin's config).
    Respond {
        status: u16,
        content_type: &'static str,
        body: String,
        headers: Option<std::sync::Arc<str>>,
    },
}

impl Flow {
    /// An answer with a JSON body.
    pub fn json(status: u16, body: String) -> Flow {
        Flow::Respond {
            status,
            content_type: "application/json",
            body,
            headers: None,
        }
    }
}

/// The `ai-rate-limiting` in force for a request: a consumer's replaces
/// the route's (APISIX's consumer-over-route merge), which replaces a
/// global rule's. A scope that configures it decides, even disabled or
/// filtered out. `scopes`: the consumer's chain (if any) and the route's.
pub fn ai_rate_limiting_in_force(
    scopes: [Option<&PluginChain>; 2],
    global: &PluginChain,
    head: &RequestHead,
    ctx: &RequestCtx,
) -> Option<std::sync::Arc<ai_rate_limiting::AiRateLimiting>> {
    scopes
        .into_iter()
        .flatten()
        .chain([global])
        .find_map(|chain| chain.ai_rate_limiting_for(head, ctx))
        .flatten()
        .cloned()
}

/// What access-phase plugins may read and change.
pub struct AccessCx<'a, 'c> {
    pub head: &'a RequestHead,
    pub ctx: &'c mut RequestCtx,
    /// The configuration's consumers, for auth plugins to look up.
    pub consumers: &'a consumers::Consumers,
    /// The consumer an auth plugin identified (its name is also in
    /// `ctx.consumer`), whose plugins join the request's.
    pub consumer: Option<&'a consumers::Consumer>,
}

impl Plugin {
    pub fn name(&self) -> &'static str {
        match self {
            Plugin::KeyAuth(_) => key_auth::NAME,
            Plugin::AiProxyMulti(_) => ai_proxy_multi::NAME,
            Plugin::AiRateLimiting(_) => ai_rate_limiting::NAME,
            Plugin::KafkaLogger(_) => kafka_logger::NAME,
            Plugin::HttpLogger(_) => http_logger::NAME,
        }
    }

    /// APISIX's plugin priority: higher runs first.
    pub fn priority(&self) -> i32 {
        match self {
            Plugin::KeyAuth(_) => key_auth::PRIORITY,
            Plugin::AiProxyMulti(_) => ai_proxy_multi::PRIORITY,
            Plugin::AiRateLimiting(_) => ai_rate_limiting::PRIORITY,
            Plugin::KafkaLogger(_) => kafka_logger::PRIORITY,
            Plugin::HttpLogger(_) => http_logger::PRIORITY,
        }
    }

    pub async fn access(&self, cx: &mut AccessCx<'_, '_>) -> Flow {
        match self {
            Plugin::KeyAuth(p) => p.access(cx),
            Plugin::AiProxyMulti(_)
            | Plugin::AiRateLimiting(_)
            | Plugin::KafkaLogger(_)
            | Plugin::HttpLogger(_) => Flow::Continue,
        }
    }
}

/// A compiled plugin with its `_meta`.
#[derive(Debug)]
struct Slot {
    plugin: Plugin,
    meta: meta::Meta,
}

impl Slot {
    fn priority(&self) -> i32 {
        self.meta.priority.unwrap_or_else(|| self.plugin.priority())
    }
}

/// A scope's compiled plugins, highest priority first.
#[derive(Debug, Default)]
pub struct PluginChain {
    slots: Vec<Slot>,
    /// Plugins this scope configures with `_meta.disable`: left out, and
    /// they turn off the same plugin of the scope below ([`Self::overlay`]).
    disabled: Vec<&'static str>,
    /// Derived from `slots` when the chain is built (read per request).
    has_loggers: bool,
    wants_request_body: bool,
    response_body_limit: Option<usize>,
}

impl PluginChain {
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Plugin> {
        self.slots.iter().map(|s| &s.plugin)
    }

    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.iter().map(Plugin::name)
    }

    /// The content handler plugin, if the chain has one, with its `_meta`.
    pub fn ai_proxy(&self) -> Option<(&std::sync::Arc<ai_proxy_multi::AiProxyMulti>, &meta::Meta)> {
        self.slots.iter().find_map(|s| match &s.plugin {
            Plugin::AiProxyMulti(a) => Some((a, &s.meta)),
            _ => None,
        })
    }

    /// The `ai-rate-limiting` config, if the chain has one.
    pub fn ai_rate_limiting(&self) -> Option<&std::sync::Arc<ai_rate_limiting::AiRateLimiting>> {
        self.slots.iter().find_map(|s| match &s.plugin {
            Plugin::AiRateLimiting(a) => Some(a),
            _ => None,
        })
    }

    /// `Some` when this scope decides the request's `ai-rate-limiting`
    /// (it configures the plugin, even disabled): the config, unless
    /// disabled or its filter does not hold. `None`: ask the next scope.
    pub fn ai_rate_limiting_for(
        &self,
        head: &RequestHead,
        ctx: &RequestCtx,
    ) -> Option<Option<&std::sync::Arc<ai_rate_limiting::AiRateLimiting>>> {
        if self.disabled.contains(&ai_rate_limiting::NAME) {
            return Some(None);
        }
        self.slots.iter().find_map(|s| match &s.plugin {
            Plugin::AiRateLimiting(a) => Some(s.meta.runs_for(head, ctx).then_some(a)),
            _ => None,
        })
    }

    /// Whether the chain has a logger plugin.
    pub fn has_loggers(&self) -> bool {
        self.has_loggers
    }

    /// Whether a logger wants request bodies.
    pub fn wants_request_body(&self) -> bool {
        self.wants_request_body
    }

    /// The most response body bytes a logger wants, if any does.
    pub fn response_body_limit(&self) -> Option<usize> {
        self.response_body_limit
    }

    /// The chain of `slots`, highest priority first.
    fn new(mut slots: Vec<Slot>, disabled: Vec<&'static str>) -> PluginChain {
        slots.sort_by_key(|s| std::cmp::Reverse(s.priority()));
        fn logger(s: &Slot) -> Option<&logger::Logger> {
            match &s.plugin {
                Plugin::KafkaLogger(l) | Plugin::HttpLogger(l) => Some(l),
                _ => None,
            }
        }
        PluginChain {
            has_loggers: slots.iter().any(|s| logger(s).is_some()),
            wants_request_body: slots
                .iter()
                .any(|s| logger(s).is_some_and(|l| l.wants_request_body())),
            response_body_limit: slots
                .iter()
                .filter_map(|s| logger(s)?.response_body_limit())
                .max(),
            slots,
            disabled,
        }
    }

    /// The log phase: every logger whose filter holds now (the response's
    /// variables set) queues the request's entry.
    /// `redaction` is the snapshot's: what entries must not show.
    pub fn log(
        &self,
        head: &RequestHead,
        ctx: &RequestCtx,
        queue: &crate::loggers::WorkerQueue,
        redaction: &crate::observe::redact::Redaction,
    ) {
        for s in &self.slots {
            if let Plugin::KafkaLogger(l) | Plugin::HttpLogger(l) = &s.plugin {
                if s.meta.runs_for(head, ctx) {
                    l.log(head, ctx, queue, redaction);
                }
            }
        }
    }

    /// `top`'s plugins plus those of `base` that `top` does not configure,
    /// enabled or not (a route's plugins over its service's, a consumer's
    /// over a route's).
    pub fn overlay(base: PluginChain, top: PluginChain) -> PluginChain {
        let mut slots = top.slots;
        let mut disabled = top.disabled;
        for s in base.slots {
            let name = s.plugin.name();
            if !disabled.contains(&name) && !slots.iter().any(|q| q.plugin.name() == name) {
                slots.push(s);
            }
        }
        for name in base.disabled {
            if !disabled.contains(&name) && !slots.iter().any(|q| q.plugin.name() == name) {
                disabled.push(name);
            }
        }
        PluginChain::new(slots, disabled)
    }

    /// Every plugin of `a` and of `b`, the same plugin twice included:
    /// global rules, each of which runs, as in APISIX (a plugin a rule
    /// disables is simply absent from that rule).
    pub fn concat(a: PluginChain, b: PluginChain) -> PluginChain {
        let mut slots = a.slots;
        slots.extend(b.slots);
        PluginChain::new(slots, Vec::new())
    }

    /// Runs the access phase of every plugin in order whose filter holds;
    /// stops at the first that answers (with its `error_response`, if set).
    pub async fn access(&self, cx: &mut AccessCx<'_, '_>) -> Flow {
        for s in &self.slots {
            if !s.meta.runs_for(cx.head, cx.ctx) {
                continue;
            }
            if let Flow::Respond {
                status,
                content_type,
                body,
                headers,
            } = s.plugin.access(cx).await
            {
                return match &s.meta.error_response {
                    Some(e) if status >= 400 => Flow::Respond {
                        status,
                        content_type: e.content_type,
                        body: e.body.to_string(),
                        headers,
                    },
                    _ => Flow::Respond {
                        status,
                        content_type,
                        body,
                        headers,
                    },
                };
            }
        }
        Flow::Continue
    }
}

/// Compiles a `plugins` map found at `at`.
pub fn compile(
    map: &PluginMap,
    at: &FieldPath,
    scope: Scope,
    cx: &mut CompileCx<'_, '_>,
) -> Result<PluginChain, ConfigError> {
    let mut slots = Vec::with_capacity(map.len());
    let mut disabled = Vec::new();
    for (name, value) in map {
        let at = at.field(name);
        let meta = meta::Meta::of(value, &at)?;
        // Compiled even when disabled: a bad config is refused either way.
        if let Some(plugin) = compile_one(name, value, &at, scope, &meta, cx)? {
            if meta.disable {
                disabled.push(plugin.name());
            } else {
                slots.push(Slot { plugin, meta });
            }
        }
    }
    Ok(PluginChain::new(slots, disabled))
}

/// The registry: one line per plugin. `Ok(None)` means the config is valid
/// but contributes nothing to a chain in this scope (e.g. a consumer's
/// `key-auth` credential, indexed separately).
fn compile_one(
    name: &str,
    value: &Value,
    at: &FieldPath,
    scope: Scope,
    meta: &meta::Meta,
    cx: &mut CompileCx<'_, '_>,
) -> Result<Option<Plugin>, ConfigError> {
    match name {
        ai_proxy_multi::NAME => match scope {
            Scope::Route | Scope::Service => Ok(Some(Plugin::AiProxyMulti(std::sync::Arc::new(
                ai_proxy_multi::AiProxyMulti {
                    error_response: meta.error_response.clone(),
                    ..ai_proxy_multi::AiProxyMulti::compile(value, at, cx)?
                },
            )))),
            _ => Err(at.error("ai-proxy-multi can only be configured on a route or a service")),
        },
        ai_rate_limiting::NAME => Ok(Some(Plugin::AiRateLimiting(std::sync::Arc::new(
            ai_rate_limiting::AiRateLimiting::compile(value, at, cx)?
                .answering_with(meta.error_response.as_ref()),
        )))),
        kafka_logger::NAME => match scope {
            Scope::Consumer => Err(at.error("kafka-logger can not be configured on a consumer")),
            _ => Ok(Some(Plugin::KafkaLogger(
                kafka_logger::KafkaLogger::compile(value, at, cx)?,
            ))),
        },
        http_logger::NAME => match scope {
            Scope::Consumer => Err(at.error("http-logger can not be configured on a consumer")),
            _ => Ok(Some(Plugin::HttpLogger(http_logger::HttpLogger::compile(
                value, at, cx,
            )?))),
        },
        key_auth::NAME => match scope {
            Scope::Consumer => {
                key_auth::Credential::compile(value, at)?;
                Ok(None)
            }
            _ => Ok(Some(Plugin::KeyAuth(key_auth::KeyAuth::compile(
                value, at,
            )?))),
        },
        _ => Err(at.error(format!(
            "plugin `{name}` is not supported by ringway (supported: {})",
            SUPPORTED.join(", ")
        ))),
    }
}
