//! Plugins, APISIX-style: each plugin is one folder, compiled from its JSON
//! config (APISIX schema and defaults, field for field) into an immutable
//! value, and run in APISIX's priority order through the phases it needs
//! ([`phase`]: `rewrite`, `access`, `before_attempt`, `header_filter`,
//! `on_usage`, `body_filter`, `log`).
//!
//! The set of plugins is closed (compiled in): [`registry`] generates the
//! [`Plugin`] enum and each phase's dispatch from one line per plugin, so
//! adding one is a folder (its config, its [`phase::Phases`]) and a
//! registry line; the server loop only runs chains ([`PluginChain`]) and
//! the route's handler, and the AI handler only the set in force
//! ([`InForce`]). A name the registry does not know is rejected at load
//! time with the field path, never ignored. Every plugin's `_meta`
//! (disable, priority, filter, error_response) is handled here, once for
//! all ([`meta`]).

pub mod ai_proxy_multi;
pub mod ai_rate_limiting;
pub mod chain;
pub mod consumers;
pub mod http_logger;
pub mod in_force;
pub mod kafka_logger;
pub mod key_auth;
pub mod logger;
pub mod meta;
pub mod metadata;
pub mod opentelemetry;
pub mod phase;
pub mod prometheus;
pub mod registry;
pub mod request_id;
pub mod shared;

use crate::config::resources::PluginMap;
use crate::config::{ConfigError, FieldPath};

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

pub use chain::PluginChain;
pub use in_force::{AiChain, InForce};
pub use phase::{AccessCx, Flow, Gate, Refusal};
pub use registry::{Plugin, SUPPORTED};

/// How a route's handler left a request.
pub enum Handled<'a> {
    /// Answered; whether the client connection stays open.
    Done(bool),
    /// An event stream to relay: the caller runs it (see
    /// [`ai_proxy_multi::stream::StreamJob`]), after the handler's state
    /// is gone.
    Stream(Box<ai_proxy_multi::stream::StreamJob<'a>>),
}

impl From<bool> for Handled<'_> {
    fn from(keep: bool) -> Self {
        Handled::Done(keep)
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
        if let Some(plugin) = registry::compile_one(name, value, &at, scope, &meta, cx)? {
            if meta.disable {
                disabled.push(plugin.name());
            } else {
                slots.push(std::sync::Arc::new(chain::Slot { plugin, meta }));
            }
        }
    }
    Ok(PluginChain::new(slots, disabled))
}
