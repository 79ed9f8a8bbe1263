//! State that outlives a snapshot: per-instance health and cooldowns,
//! the round-robin tickets of priority groups and which instance holds
//! which stored response. A new snapshot takes the
//! old snapshot's entries for the same owner (the route or service the
//! plugin is configured on) and instance name, so a reload keeps windows,
//! cooldowns and the exact weighted split going (monolake's
//! "build the new service from the old one").

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use ahash::AHashMap;

use crate::health::InstanceState;
use crate::plugins::ai_proxy_multi::affinity::ResponseAffinity;
use crate::plugins::ai_rate_limiting::each::ByName;
use crate::plugins::ai_rate_limiting::lease::Lease;
use crate::plugins::ai_rate_limiting::rules::KeyedWindows;
use crate::plugins::ai_rate_limiting::window::LocalWindow;

/// An instance's state is found by its owner, its name and a fingerprint
/// of its configuration: a changed instance (a new key, endpoint or
/// model, say) starts afresh — no cooldown, failure streak or health
/// verdict earned by what it was before — while an unchanged one keeps
/// them across reloads.
type InstanceKey = (Arc<str>, Arc<str>, u64);

#[derive(Debug, Default)]
pub struct SharedState {
    instances: AHashMap<InstanceKey, Arc<InstanceState>>,
    tickets: AHashMap<(Arc<str>, i64), Arc<AtomicU64>>,
    windows: AHashMap<(Arc<str>, String), Arc<LocalWindow>>,
    keyed_windows: AHashMap<(Arc<str>, String), Arc<KeyedWindows>>,
    leases: AHashMap<(Arc<str>, String), Arc<Lease>>,
    each_windows: AHashMap<(Arc<str>, String), Arc<ByName<LocalWindow>>>,
    each_leases: AHashMap<(Arc<str>, String), Arc<ByName<Lease>>>,
    loggers: AHashMap<(Arc<str>, String), Arc<crate::loggers::Sink>>,
    /// The `opentelemetry` exporter, by its settings.
    tracers: AHashMap<String, Arc<crate::loggers::Sink>>,
    logger_stats: AHashMap<(Arc<str>, String), Arc<crate::loggers::SinkStats>>,
    affinities: AHashMap<Arc<str>, Arc<ResponseAffinity>>,
}

/// Hands out shared state during a compile, reusing the previous
/// snapshot's where the identity matches.
pub struct Carry<'a> {
    prev: Option<&'a SharedState>,
    pub next: SharedState,
    /// TLS client settings, for plugins that open their own connections
    /// (`http-logger`).
    pub tls: Option<crate::upstream::tls::TlsClients>,
}

impl<'a> Carry<'a> {
    pub fn new(prev: Option<&'a SharedState>) -> Carry<'a> {
        Carry {
            prev,
            next: SharedState::default(),
            tls: None,
        }
    }

    /// An instance's state; `config` is the instance's configuration as
    /// written (see [`InstanceKey`]).
    pub fn instance(
        &mut self,
        owner: &Arc<str>,
        name: &Arc<str>,
        config: &serde_json::Value,
    ) -> Arc<InstanceState> {
        let prev = self.prev.map(|p| &p.instances);
        carry(
            &mut self.next.instances,
            prev,
            (owner.clone(), name.clone(), fingerprint(config)),
            Arc::default,
        )
    }

    /// A local rate-limit window; `key` names the budget and its shape
    /// (a changed limit or window starts a fresh count).
    pub fn window(&mut self, owner: &Arc<str>, key: String) -> Arc<LocalWindow> {
        let prev = self.prev.map(|p| &p.windows);
        carry(
            &mut self.next.windows,
            prev,
            (owner.clone(), key),
            Arc::default,
        )
    }

    /// A leased Redis budget's claim; `key` names the budget, its shape
    /// and its servers.
    pub fn lease(&mut self, owner: &Arc<str>, key: String) -> Arc<Lease> {
        let prev = self.prev.map(|p| &p.leases);
        carry(
            &mut self.next.leases,
            prev,
            (owner.clone(), key),
            Arc::default,
        )
    }

    /// The windows of a plugin-level `ai-rate-limiting` budget, one per
    /// instance; `key` names the budget's shape.
    pub fn each_windows(&mut self, owner: &Arc<str>, key: String) -> Arc<ByName<LocalWindow>> {
        let prev = self.prev.map(|p| &p.each_windows);
        carry(
            &mut self.next.each_windows,
            prev,
            (owner.clone(), key),
            Arc::default,
        )
    }

    /// The claims of a leased plugin-level budget, one per instance; `key`
    /// names the budget, its shape and its servers.
    pub fn each_leases(&mut self, owner: &Arc<str>, key: String) -> Arc<ByName<Lease>> {
        let prev = self.prev.map(|p| &p.each_leases);
        carry(
            &mut self.next.each_leases,
            prev,
            (owner.clone(), key),
            Arc::default,
        )
    }

    /// An `ai-rate-limiting` rule's windows (one per key value); `key`
    /// names the rule's settings.
    pub fn keyed_windows(&mut self, owner: &Arc<str>, key: String) -> Arc<KeyedWindows> {
        let prev = self.prev.map(|p| &p.keyed_windows);
        carry(
            &mut self.next.keyed_windows,
            prev,
            (owner.clone(), key),
            Arc::default,
        )
    }

    /// A logger's counts, by its name: they outlive a change of its
    /// settings (which starts a new sink).
    pub fn logger_stats(
        &mut self,
        owner: &Arc<str>,
        name: String,
    ) -> Arc<crate::loggers::SinkStats> {
        let prev = self.prev.map(|p| &p.logger_stats);
        carry(
            &mut self.next.logger_stats,
            prev,
            (owner.clone(), name),
            Arc::default,
        )
    }

    /// A logger sink; `key` names its settings (changed settings start a
    /// new sink, and the old one ends once no snapshot holds it).
    pub fn logger(
        &mut self,
        owner: &Arc<str>,
        key: String,
        start: impl FnOnce() -> Arc<crate::loggers::Sink>,
    ) -> Arc<crate::loggers::Sink> {
        let prev = self.prev.map(|p| &p.loggers);
        carry(&mut self.next.loggers, prev, (owner.clone(), key), start)
    }

    /// The span exporter for settings `key` (changed settings start a
    /// new one; the old ends once no snapshot holds it).
    pub fn tracer(
        &mut self,
        key: String,
        start: impl FnOnce() -> Arc<crate::loggers::Sink>,
    ) -> Arc<crate::loggers::Sink> {
        let prev = self.prev.map(|p| &p.tracers);
        carry(&mut self.next.tracers, prev, key, start)
    }

    /// Which instance holds which stored Responses API response.
    pub fn affinity(&mut self, owner: &Arc<str>) -> Arc<ResponseAffinity> {
        let prev = self.prev.map(|p| &p.affinities);
        carry(&mut self.next.affinities, prev, owner.clone(), Arc::default)
    }

    pub fn ticket(&mut self, owner: &Arc<str>, priority: i64) -> Arc<AtomicU64> {
        let prev = self.prev.map(|p| &p.tickets);
        carry(
            &mut self.next.tickets,
            prev,
            (owner.clone(), priority),
            Arc::default,
        )
    }
}

/// A stable digest of a configuration value (SipHash with fixed keys over
/// its JSON text, so equal values give equal digests in one process).
fn fingerprint(config: &serde_json::Value) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    config.to_string().hash(&mut h);
    h.finish()
}

/// The entry at `key`: already taken by this compile, else the previous
/// snapshot's, else a new one from `make`.
fn carry<K: std::hash::Hash + Eq, V: ?Sized>(
    next: &mut AHashMap<K, Arc<V>>,
    prev: Option<&AHashMap<K, Arc<V>>>,
    key: K,
    make: impl FnOnce() -> Arc<V>,
) -> Arc<V> {
    if let Some(v) = next.get(&key) {
        return v.clone();
    }
    let v = prev.and_then(|p| p.get(&key).cloned()).unwrap_or_else(make);
    next.insert(key, v.clone());
    v
}

impl SharedState {
    /// Every logger sink (metrics).
    pub fn loggers(&self) -> impl Iterator<Item = &Arc<crate::loggers::Sink>> {
        self.loggers.values()
    }

    /// Closes every logger sink, sending what they hold, by `deadline`.
    pub fn close_loggers(&self, deadline: std::time::Instant) {
        for s in self.loggers.values().chain(self.tracers.values()) {
            s.close(deadline);
        }
    }

    /// Every instance state with its owner and name (health probes, metrics).
    pub fn instances(&self) -> impl Iterator<Item = (&Arc<str>, &Arc<str>, &Arc<InstanceState>)> {
        self.instances.iter().map(|((o, n, _), s)| (o, n, s))
    }
}
