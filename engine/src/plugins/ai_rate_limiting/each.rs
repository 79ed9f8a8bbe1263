//! The plugin-level budget: `limit` / `time_window` beside (or without)
//! `instances` gives every instance without an entry of its own a budget
//! of that size, one per instance, as APISIX does (apache/apisix
//! `t/plugin/ai-rate-limiting.t` TEST 13–14: with `limit: 10` the
//! higher-priority instance answers, then the next one, then both are
//! spent; one shared budget would refuse the second request).
//!
//! Which instances draw from it is known only when a request reaches one:
//! a consumer's or a global rule's config serves the instances of every
//! route. So each instance's counter is made on its first request and
//! kept by instance name ([`ByName`]: write-once slots, then a lock-free
//! map; the names come from the configuration, so it stays as small as the
//! set of instances), carried across reloads with the budget. Redis budgets are one key per instance under the budget's
//! prefix.

use std::sync::Arc;
use std::time::Duration;

use super::lease::Lease;
use super::window::LocalWindow;
use super::Counter;

/// Instance names looked up in slots before the map (a route has a few).
const SLOTS: usize = 16;

/// Counters by instance name, made on first use: the first [`SLOTS`]
/// names in write-once slots, read with one atomic load and a name
/// compare each (a map lookup cost ~165 instructions, three times a
/// request), any more in a lock-free map. Two workers making one slot's
/// counter at once wait for each other, once per name.
#[derive(Debug)]
pub struct ByName<T> {
    slots: [std::sync::OnceLock<(Box<str>, Arc<T>)>; SLOTS],
    more: papaya::HashMap<Box<str>, Arc<T>, ahash::RandomState>,
}

impl<T> Default for ByName<T> {
    fn default() -> Self {
        ByName {
            slots: std::array::from_fn(|_| std::sync::OnceLock::new()),
            more: papaya::HashMap::default(),
        }
    }
}

impl<T: Default> ByName<T> {
    /// The counter of `name`, made on first sight.
    fn get(&self, name: &str) -> Arc<T> {
        for slot in &self.slots {
            let (held, counter) = match slot.get() {
                Some(entry) => entry,
                // Taken by whoever gets there first (maybe for another name).
                None => slot.get_or_init(|| (name.into(), Arc::default())),
            };
            if **held == *name {
                return counter.clone();
            }
        }
        let map = self.more.pin();
        if let Some(c) = map.get(name) {
            return c.clone();
        }
        map.get_or_insert_with(name.into(), Arc::default).clone()
    }
}

/// Where the per-instance counters live.
#[derive(Debug)]
pub(super) enum Store {
    Local(Arc<ByName<LocalWindow>>),
    /// The key prefix (`ringway:ai-rate-limiting:{<owner>:#global}:`); the
    /// instance's name follows it.
    Redis(Box<[u8]>),
    /// Redis keys as above, each claimed `tokens` at a time.
    Leased {
        prefix: Box<[u8]>,
        leases: Arc<ByName<Lease>>,
        tokens: u64,
    },
}

/// `limit` tokens per `window` for each instance without its own budget.
#[derive(Debug)]
pub struct EachInstance {
    pub limit: u64,
    pub window: Duration,
    pub(super) store: Store,
}

impl EachInstance {
    /// `limit` tokens per `window` seconds for each instance, counted
    /// locally, in Redis, or in Redis with `lease_tokens` claims.
    pub(super) fn new(
        cx: &mut crate::plugins::CompileCx<'_, '_>,
        limit: u64,
        window: u64,
        redis: Option<&crate::redis::Target>,
        lease_tokens: Option<u64>,
    ) -> EachInstance {
        let id = format!("#global|{limit}|{window}");
        // One prefix, one hash tag: one cluster slot, as the owner's other
        // budgets.
        let prefix = format!("ringway:ai-rate-limiting:{{{}:#global}}:", cx.owner)
            .into_bytes()
            .into_boxed_slice();
        let store = match (redis, lease_tokens) {
            (None, _) => Store::Local(cx.carry.each_windows(&cx.owner, id)),
            (Some(_), None) => Store::Redis(prefix),
            (Some(target), Some(tokens)) => Store::Leased {
                prefix,
                leases: cx.carry.each_leases(
                    &cx.owner,
                    format!(
                        "{id}|{tokens}|{:?}|{:?}",
                        target.nodes,
                        target.sentinel.as_ref().map(|s| &s.id)
                    ),
                ),
                tokens,
            },
        };
        EachInstance {
            limit,
            window: Duration::from_secs(window),
            store,
        }
    }

    /// `instance`'s counter.
    pub(super) fn counter(&self, instance: &str) -> Counter {
        let key = |prefix: &[u8]| [prefix, instance.as_bytes()].concat().into_boxed_slice();
        match &self.store {
            Store::Local(windows) => Counter::Local(windows.get(instance)),
            Store::Redis(prefix) => Counter::Redis(key(prefix)),
            Store::Leased {
                prefix,
                leases,
                tokens,
            } => Counter::Leased {
                key: key(prefix),
                lease: leases.get(instance),
                tokens: *tokens,
            },
        }
    }
}

/// The budget an instance draws from: its own (`instances`), or its
/// counter of the plugin-level one.
#[derive(Debug)]
pub struct Budget<'a> {
    pub limit: u64,
    pub window: Duration,
    pub(super) counter: BudgetCounter<'a>,
}

#[derive(Debug)]
pub(super) enum BudgetCounter<'a> {
    Own(&'a Counter),
    Each(Counter),
}

impl Budget<'_> {
    pub(super) fn counter(&self) -> &Counter {
        match &self.counter {
            BudgetCounter::Own(c) => c,
            BudgetCounter::Each(c) => c,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_instance_has_its_own_counter() {
        let each = EachInstance {
            limit: 10,
            window: Duration::from_secs(60),
            store: Store::Local(Arc::default()),
        };
        let (Counter::Local(a), Counter::Local(a2), Counter::Local(b)) =
            (each.counter("a"), each.counter("a"), each.counter("b"))
        else {
            panic!("local counters");
        };
        assert!(Arc::ptr_eq(&a, &a2));
        assert!(!Arc::ptr_eq(&a, &b));
        // Past the slots, the map: still one counter per name.
        let many = ByName::<LocalWindow>::default();
        let names: Vec<String> = (0..SLOTS + 5).map(|i| format!("i{i}")).collect();
        let first: Vec<_> = names.iter().map(|n| many.get(n)).collect();
        for (n, c) in names.iter().zip(&first) {
            assert!(Arc::ptr_eq(c, &many.get(n)), "{n}");
        }
        assert!(!Arc::ptr_eq(&first[SLOTS + 1], &first[SLOTS + 2]));
        let redis = EachInstance {
            store: Store::Redis(b"p:"[..].into()),
            ..each
        };
        assert!(matches!(redis.counter("inst"), Counter::Redis(k) if &*k == b"p:inst"));
    }
}
