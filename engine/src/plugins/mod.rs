//! Plugins, APISIX-style: each plugin is one folder, compiled from its JSON
//! config (APISIX schema and defaults, field for field) into an immutable
//! value, and run in APISIX's priority order through the phases it needs.
//!
//! The set of plugins is closed (compiled in), so a [`Plugin`] is an enum
//! and phases dispatch with a `match`: no boxing, no virtual calls, async
//! phases without allocation. Adding a plugin is a folder, a variant and a
//! line in [`compile_one`]; the server loop only calls [`PluginChain`].
//! A name the registry does not know is rejected at load time with the
//! field path, never ignored.

pub mod ai_proxy_multi;
pub mod ai_rate_limiting;
pub mod http_logger;
pub mod kafka_logger;
pub mod key_auth;
pub mod logger;
pub mod metadata;

use serde_json::Value;

use crate::config::resources::PluginMap;
use crate::config::{ConfigError, FieldPath};
use crate::http::RequestHead;
use crate::server::ctx::RequestCtx;

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
    pub carry: &'c mut crate::config::shared::Carry<'a>,
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
    /// Answer now with this status and JSON body.
    Respond {
        status: u16,
        body: String,
    },
}

/// What access-phase plugins may read and change.
pub struct AccessCx<'a> {
    pub head: &'a RequestHead,
    pub ctx: &'a mut RequestCtx,
    pub snap: &'a crate::config::Snapshot,
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

    pub async fn access(&self, cx: &mut AccessCx<'_>) -> Flow {
        match self {
            Plugin::KeyAuth(p) => p.access(cx),
            Plugin::AiProxyMulti(_)
            | Plugin::AiRateLimiting(_)
            | Plugin::KafkaLogger(_)
            | Plugin::HttpLogger(_) => Flow::Continue,
        }
    }
}

/// A scope's compiled plugins, highest priority first.
#[derive(Debug, Default)]
pub struct PluginChain {
    plugins: Vec<Plugin>,
    /// Derived from `plugins` when the chain is built (read per request).
    has_loggers: bool,
    wants_request_body: bool,
}

impl PluginChain {
    pub fn is_empty(&self) -> bool {
        self.plugins.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Plugin> {
        self.plugins.iter()
    }

    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.plugins.iter().map(Plugin::name)
    }

    /// The content handler plugin, if the chain has one.
    pub fn ai_proxy(&self) -> Option<&std::sync::Arc<ai_proxy_multi::AiProxyMulti>> {
        self.plugins.iter().find_map(|p| match p {
            Plugin::AiProxyMulti(a) => Some(a),
            _ => None,
        })
    }

    /// The `ai-rate-limiting` config, if the chain has one.
    pub fn ai_rate_limiting(&self) -> Option<&std::sync::Arc<ai_rate_limiting::AiRateLimiting>> {
        self.plugins.iter().find_map(|p| match p {
            Plugin::AiRateLimiting(a) => Some(a),
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

    /// The chain of `plugins`, highest priority first.
    fn new(mut plugins: Vec<Plugin>) -> PluginChain {
        plugins.sort_by_key(|p| std::cmp::Reverse(p.priority()));
        let logger = |p: &Plugin| match p {
            Plugin::KafkaLogger(l) | Plugin::HttpLogger(l) => Some(l.wants_request_body()),
            _ => None,
        };
        PluginChain {
            has_loggers: plugins.iter().any(|p| logger(p).is_some()),
            wants_request_body: plugins.iter().any(|p| logger(p) == Some(true)),
            plugins,
        }
    }

    /// The log phase: every logger queues the request's entry.
    pub fn log(&self, head: &RequestHead, ctx: &RequestCtx, queue: &crate::loggers::WorkerQueue) {
        for p in &self.plugins {
            if let Plugin::KafkaLogger(l) | Plugin::HttpLogger(l) = p {
                l.log(head, ctx, queue);
            }
        }
    }

    /// `top`'s plugins plus those of `base` that `top` does not configure
    /// (a route's plugins over its service's, a consumer's over a route's).
    pub fn overlay(base: PluginChain, top: PluginChain) -> PluginChain {
        let mut plugins = top.plugins;
        for p in base.plugins {
            if !plugins.iter().any(|q| q.name() == p.name()) {
                plugins.push(p);
            }
        }
        PluginChain::new(plugins)
    }

    /// Runs the access phase of every plugin in order; stops at the first
    /// that answers.
    pub async fn access(&self, cx: &mut AccessCx<'_>) -> Flow {
        for p in &self.plugins {
            if let Flow::Respond { status, body } = p.access(cx).await {
                return Flow::Respond { status, body };
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
    let mut plugins = Vec::with_capacity(map.len());
    for (name, value) in map {
        if let Some(p) = compile_one(name, value, &at.field(name), scope, cx)? {
            plugins.push(p);
        }
    }
    Ok(PluginChain::new(plugins))
}

/// The registry: one line per plugin. `Ok(None)` means the config is valid
/// but contributes nothing to a chain in this scope (e.g. a consumer's
/// `key-auth` credential, indexed separately).
fn compile_one(
    name: &str,
    value: &Value,
    at: &FieldPath,
    scope: Scope,
    cx: &mut CompileCx<'_, '_>,
) -> Result<Option<Plugin>, ConfigError> {
    match name {
        ai_proxy_multi::NAME => match scope {
            Scope::Route | Scope::Service => Ok(Some(Plugin::AiProxyMulti(std::sync::Arc::new(
                ai_proxy_multi::AiProxyMulti::compile(value, at, cx)?,
            )))),
            _ => Err(at.error("ai-proxy-multi can only be configured on a route or a service")),
        },
        ai_rate_limiting::NAME => Ok(Some(Plugin::AiRateLimiting(std::sync::Arc::new(
            ai_rate_limiting::AiRateLimiting::compile(value, at, cx)?,
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
