//! Which AI-path plugins ([`super::phase::Phases::AI_PATH`]) are in force
//! for one request, and their phases run in order over that set.
//!
//! Resolved as far as possible when the snapshot is compiled
//! ([`AiChain`]): a route's AI-path plugins over the global rules' (a
//! scope that configures a plugin decides it, even disabled — APISIX's
//! route-over-global choice for `ai-rate-limiting`), a consumer's own. Per
//! request only two things remain ([`AiChain::in_force`]): the
//! authenticated consumer's plugins replace the route's of the same name
//! (APISIX's consumer-over-route merge), and each plugin's `_meta.filter`
//! decides whether it runs. The result, [`InForce`], carries each
//! plugin's state for the request (what `access` and `before_attempt`
//! found) to `header_filter` and `on_usage`.

use std::sync::Arc;

use smallvec::SmallVec;

use super::chain::{PluginChain, Slot};
use super::phase::{Gate, Used};
use super::registry::{Plugin, RequestState};
use crate::exchange::ctx::RequestCtx;
use crate::http::vars::VarSource;
use crate::http::RequestHead;

/// A scope's AI-path plugins, resolved when the snapshot is compiled.
#[derive(Debug, Default)]
pub struct AiChain {
    /// Highest priority first.
    slots: Vec<Arc<Slot>>,
    /// The plugins this scope decides: those it configures, enabled or not.
    decides: Vec<&'static str>,
}

impl AiChain {
    /// A route's: its own AI-path plugins and the global rules' it neither
    /// configures nor disables (the first rule's, for a plugin two rules
    /// configure).
    pub fn of_route(route: &PluginChain, global: &PluginChain) -> AiChain {
        let mut chain = AiChain::of_scope(route);
        for s in global.slots().iter().filter(|s| s.plugin.on_ai_path()) {
            if !chain.decides(s.plugin.name()) {
                chain.decides.push(s.plugin.name());
                chain.slots.push(s.clone());
            }
        }
        chain.slots.sort_by_key(|s| std::cmp::Reverse(s.priority()));
        chain
    }

    /// A scope's own (a consumer's).
    pub fn of_scope(scope: &PluginChain) -> AiChain {
        let slots: Vec<Arc<Slot>> = scope
            .slots()
            .iter()
            .filter(|s| s.plugin.on_ai_path())
            .cloned()
            .collect();
        let decides = slots
            .iter()
            .map(|s| s.plugin.name())
            .chain(scope.disabled().iter().copied())
            .collect();
        AiChain { slots, decides }
    }

    fn decides(&self, name: &str) -> bool {
        self.decides.contains(&name)
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty() && self.decides.is_empty()
    }

    /// The request's set: `consumer`'s plugins over these, each only if
    /// its filter holds for the request as it is now.
    pub fn in_force<'a>(
        &'a self,
        consumer: Option<&'a AiChain>,
        head: &RequestHead,
        ctx: &RequestCtx,
    ) -> InForce<'a> {
        let consumer = consumer.filter(|c| !c.is_empty());
        if self.slots.is_empty() && consumer.is_none() {
            return InForce::default();
        }
        let n = consumer.map_or(0, |c| c.slots.len()) + self.slots.len();
        let mut items = SmallVec::with_capacity(n);
        for s in consumer.iter().flat_map(|c| c.slots.iter()) {
            if s.meta.runs_for(head, ctx) {
                items.push(Running::new(&s.plugin));
            }
        }
        for s in &self.slots {
            if consumer.is_some_and(|c| c.decides(s.plugin.name())) {
                continue;
            }
            if s.meta.runs_for(head, ctx) {
                items.push(Running::new(&s.plugin));
            }
        }
        if items.len() > 1 {
            items.sort_by_key(|r: &Running<'_>| std::cmp::Reverse(r.plugin.priority()));
        }
        InForce { items }
    }
}

/// One plugin in force and its state for the request.
struct Running<'a> {
    plugin: &'a Plugin,
    state: RequestState<'a>,
}

impl<'a> Running<'a> {
    fn new(plugin: &'a Plugin) -> Running<'a> {
        Running {
            plugin,
            state: plugin.new_request(),
        }
    }
}

/// The AI-path plugins in force for one request, highest priority first,
/// with their state; each phase runs them in order. It moves with the
/// attempt into its answer and back (never copied); one in force lives
/// inline (no allocation).
#[derive(Default)]
pub struct InForce<'a> {
    items: SmallVec<[Running<'a>; 1]>,
}

impl<'a> InForce<'a> {
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// `access`: the first plugin that does not let the request go decides.
    pub async fn access(&mut self, vars: &VarSource<'_>) -> Gate<'a> {
        for r in self.items.iter_mut() {
            match r.plugin.access(&mut r.state, vars).await {
                Gate::Go => {}
                stop => return stop,
            }
        }
        Gate::Go
    }

    /// `before_attempt` at `instance`: the first that does not let the
    /// attempt go decides.
    pub async fn before_attempt(&mut self, instance: &str) -> Gate<'a> {
        for r in self.items.iter_mut() {
            match r.plugin.before_attempt(&mut r.state, instance).await {
                Gate::Go => {}
                stop => return stop,
            }
        }
        Gate::Go
    }

    /// `header_filter`: the header lines the plugins add to the answer of
    /// `instance`.
    pub fn header_filter(&self, instance: &str, out: &mut Vec<u8>) {
        for r in &self.items {
            r.plugin.header_filter(&r.state, instance, out);
        }
    }

    /// Whether a plugin wants the provider's own usage object.
    pub fn wants_raw_usage(&self) -> bool {
        self.items.iter().any(|r| r.plugin.wants_raw_usage())
    }

    /// `on_usage`: the answer's usage, before its last bytes leave.
    pub fn on_usage(&self, instance: &str, used: &Used<'_>) {
        for r in &self.items {
            r.plugin.on_usage(&r.state, instance, used);
        }
    }

    /// Whether a plugin has work for `access`.
    pub fn wants_access(&self) -> bool {
        self.items.iter().any(|r| r.plugin.wants_access())
    }

    /// Whether a plugin has work for `after_answer`.
    pub fn wants_after_answer(&self) -> bool {
        self.items.iter().any(|r| r.plugin.wants_after_answer())
    }

    /// `after_answer`: the answer is out.
    pub async fn after_answer(&self, instance: &str, used: &Used<'_>) {
        for r in &self.items {
            r.plugin.after_answer(&r.state, instance, used).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::HeadLimits;

    const AI: &str = "ai-proxy-multi: {instances: [{name: a, provider: openai, weight: 1, auth: {header: {Authorization: k}}}]}";

    /// A config with a global rule's budget (rejecting with 501), routes
    /// `/own` (its own, 502, filtered on `X-Limit`), `/off` (disabled)
    /// and `/none`, and consumer `c` (503).
    fn snapshot() -> crate::snapshot::Snapshot {
        let rl = |code: u16| {
            format!("ai-rate-limiting: {{limit: 10, time_window: 60, rejected_code: {code}}}")
        };
        let yaml = format!(
            "global_rules:\n  {g}\n\
             consumers:\n  - username: c\n    plugins:\n      {c}\n\
             services:\n  - name: s\n    routes:\n\
             \x20     - {{name: own, uris: [/own], plugins: {{{ai}, {own}}}}}\n\
             \x20     - {{name: off, uris: [/off], plugins: {{{ai}, ai-rate-limiting: {{limit: 1, time_window: 1, _meta: {{disable: true}}}}}}}}\n\
             \x20     - {{name: none, uris: [/none], plugins: {{{ai}}}}}\n",
            ai = AI,
            g = rl(501),
            c = rl(503),
            own = rl(502).replace("rejected_code: 502", "rejected_code: 502, _meta: {filter: [[http_x_limit, ==, on]]}"),
        );
        crate::snapshot::load_str(&yaml, &|_| None)
            .expect("config")
            .snapshot
    }

    fn codes(
        snap: &crate::snapshot::Snapshot,
        route: &str,
        consumer: bool,
        header: &str,
    ) -> Vec<u16> {
        let raw = format!("POST /{route} HTTP/1.1\r\nHost: x\r\n{header}\r\n");
        let head = RequestHead::parse(bytes::Bytes::from(raw), &HeadLimits::default(), Vec::new())
            .unwrap();
        let ctx = RequestCtx::new("127.0.0.1:1".parse().unwrap(), std::time::Instant::now());
        let route = snap.routes.iter().find(|r| &*r.name == route).unwrap();
        let consumer = consumer.then(|| &snap.consumers.by_name("c").unwrap().ai);
        let in_force = route.ai_plugins.in_force(consumer, &head, &ctx);
        in_force
            .items
            .iter()
            .map(|r| match r.plugin {
                Plugin::AiRateLimiting(rl) => rl.rejected_code,
                other => panic!("{} is not on the AI path", other.name()),
            })
            .collect()
    }

    #[test]
    fn the_consumers_over_the_routes_over_the_global_rules() {
        let snap = snapshot();
        // The route decides when it configures the plugin: its own (when
        // the filter holds), none when disabled or filtered out.
        assert_eq!(codes(&snap, "own", false, "X-Limit: on\r\n"), [502]);
        assert_eq!(codes(&snap, "own", false, ""), [] as [u16; 0]);
        assert_eq!(codes(&snap, "off", false, ""), [] as [u16; 0]);
        // Else the global rule's.
        assert_eq!(codes(&snap, "none", false, ""), [501]);
        // A consumer's replaces whichever the route has.
        for route in ["own", "off", "none"] {
            assert_eq!(
                codes(&snap, route, true, "X-Limit: on\r\n"),
                [503],
                "{route}"
            );
        }
    }
}
