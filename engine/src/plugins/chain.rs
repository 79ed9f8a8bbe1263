//! A scope's compiled plugins in APISIX's priority order ([`PluginChain`]),
//! how scopes combine (a route's over its service's, global rules side by
//! side), and the phases run over a whole chain: `rewrite` (stopping at
//! the first plugin that answers, with its `_meta.error_response`) and
//! `log`. What the chain's plugins declare for `body_filter` and the log
//! (request body, response body limit) is derived once, when it is built.

use std::sync::Arc;

use super::meta;
use super::phase::{AccessCx, Flow};
use super::registry::Plugin;
use crate::exchange::ctx::RequestCtx;
use crate::http::RequestHead;

/// A compiled plugin with its `_meta`.
#[derive(Debug)]
pub struct Slot {
    pub plugin: Plugin,
    pub meta: meta::Meta,
}

impl Slot {
    pub fn priority(&self) -> i32 {
        self.meta.priority.unwrap_or_else(|| self.plugin.priority())
    }
}

/// A scope's compiled plugins, highest priority first.
#[derive(Debug, Default)]
pub struct PluginChain {
    slots: Vec<Arc<Slot>>,
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
    pub fn ai_proxy(&self) -> Option<(&Arc<super::ai_proxy_multi::AiProxyMulti>, &meta::Meta)> {
        self.slots.iter().find_map(|s| match &s.plugin {
            Plugin::AiProxyMulti(a) => Some((a, &s.meta)),
            _ => None,
        })
    }

    /// The `ai-rate-limiting` config, if the chain has one.
    pub fn ai_rate_limiting(&self) -> Option<&Arc<super::ai_rate_limiting::AiRateLimiting>> {
        self.slots.iter().find_map(|s| match &s.plugin {
            Plugin::AiRateLimiting(a) => Some(a),
            _ => None,
        })
    }

    /// The `prometheus` config, if the chain has one.
    pub fn prometheus(&self) -> Option<super::prometheus::Prometheus> {
        self.slots.iter().find_map(|s| match &s.plugin {
            Plugin::Prometheus(p) => Some(*p),
            _ => None,
        })
    }

    /// Whether the chain has a plugin with a log phase.
    pub fn has_loggers(&self) -> bool {
        self.has_loggers
    }

    /// Whether a plugin's log wants request bodies.
    pub fn wants_request_body(&self) -> bool {
        self.wants_request_body
    }

    /// The most response body bytes a plugin wants (`body_filter`), if
    /// any does.
    pub fn response_body_limit(&self) -> Option<usize> {
        self.response_body_limit
    }

    /// The chain of `slots`, highest priority first.
    pub(super) fn new(mut slots: Vec<Arc<Slot>>, disabled: Vec<&'static str>) -> PluginChain {
        slots.sort_by_key(|s| std::cmp::Reverse(s.priority()));
        PluginChain {
            has_loggers: slots.iter().any(|s| s.plugin.logs()),
            wants_request_body: slots.iter().any(|s| s.plugin.wants_request_body()),
            response_body_limit: slots
                .iter()
                .filter_map(|s| s.plugin.response_body_limit())
                .max(),
            slots,
            disabled,
        }
    }

    /// The slots, highest priority first.
    pub fn slots(&self) -> &[Arc<Slot>] {
        &self.slots
    }

    /// Plugins this scope turns off with `_meta.disable`.
    pub fn disabled(&self) -> &[&'static str] {
        &self.disabled
    }

    /// The log phase: every plugin with one whose filter holds now (the
    /// response's variables set) queues the request's entry.
    /// `redaction` is the snapshot's: what entries must not show.
    pub fn log(
        &self,
        head: &RequestHead,
        ctx: &RequestCtx,
        queue: &crate::loggers::WorkerQueue,
        redaction: &crate::observe::redact::Redaction,
    ) {
        for s in &self.slots {
            if s.plugin.logs() && s.meta.runs_for(head, ctx) {
                s.plugin.log(head, ctx, queue, redaction);
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

    /// The rewrite phase of every plugin in order whose filter holds;
    /// stops at the first that answers (with its `error_response`, if set).
    pub fn rewrite(&self, cx: &mut AccessCx<'_, '_, '_>) -> Flow {
        for s in &self.slots {
            if !s.meta.runs_for(cx.head, cx.ctx) {
                continue;
            }
            if let Flow::Respond {
                status,
                content_type,
                body,
                headers,
            } = s.plugin.rewrite(cx)
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
