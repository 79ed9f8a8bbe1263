//! One worker's labelled series: a worker-local map (no lock, never
//! touched by another thread) from a small integer key to the series
//! holding that label set's counters, and what it publishes to the scrape
//! thread ([`Labelled`]). Per request: the label values become ids through
//! the worker's [`Interner`] (mostly a hash of one pointer), one map
//! lookup finds the series, and its counters are bumped with plain stores.
//! A label set seen for the first time allocates its series once and
//! publishes it ([`super::publish`]).
//!
//! **Cardinality** is bounded per worker: past `max_label_sets` series a
//! new label set is recorded in an overflow series whose labels are all
//! `_other_` (its status code and request type kept: both are bounded),
//! and `ringway_metrics_label_sets_dropped_total` counts each request so
//! recorded. **Reloads** keep the series of routes that still exist
//! (ids go by the labels' content, not by the snapshot); series of removed
//! routes are retired, and leave the scrape and the count with them.

use std::net::IpAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use ahash::{AHashMap, AHashSet};

use super::labels::{Interner, RouteLabels, EMPTY_ID, OTHER_ID};
use super::publish::Published;
use super::series::{bump, ActiveSeries, Sample, Series, SeriesLabels};
use crate::exchange::ctx::RequestType;

/// What a worker publishes to the scrape thread.
#[derive(Debug, Default)]
pub struct Labelled {
    pub series: Published<Series>,
    pub active: Published<ActiveSeries>,
    /// Requests recorded in the overflow series (the cap was reached).
    pub dropped: AtomicU64,
}

/// Which upstream node answered (APISIX's `node` label: the balancer's
/// IP, or the ai-proxy-multi instance's name).
#[derive(Debug, Clone, Copy)]
pub enum Node<'a> {
    None,
    Instance(&'a Arc<str>),
    Ip(IpAddr),
}

/// A finished request's label values.
#[derive(Debug, Clone, Copy)]
pub struct Observation<'a> {
    /// `None`: no route matched.
    pub route: Option<&'a Arc<RouteLabels>>,
    pub consumer: Option<&'a Arc<str>>,
    pub node: Node<'a>,
    pub request_model: Option<&'a str>,
    pub model: Option<&'a str>,
    pub request_type: RequestType,
    pub code: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    route: u32,
    consumer: u32,
    node: u32,
    request_model: u32,
    model: u32,
    code: u16,
    kind: u8,
}

impl Key {
    fn overflow(self) -> Key {
        Key {
            route: OTHER_ID,
            consumer: OTHER_ID,
            node: OTHER_ID,
            request_model: OTHER_ID,
            model: OTHER_ID,
            ..self
        }
    }
}

/// One worker's series (owned by the worker, behind its `RefCell`).
#[derive(Debug)]
pub struct SeriesTable {
    cap: usize,
    shared: Arc<Labelled>,
    interner: Interner,
    map: AHashMap<Key, Arc<Series>>,
    active: AHashMap<(u32, u32), u32>,
    active_list: Vec<Arc<ActiveSeries>>,
}

impl SeriesTable {
    /// A table of at most `cap` label sets (then the overflow series).
    pub fn new(cap: usize, shared: Arc<Labelled>) -> SeriesTable {
        SeriesTable {
            cap,
            shared,
            interner: Interner::default(),
            map: AHashMap::new(),
            active: AHashMap::new(),
            active_list: Vec::new(),
        }
    }

    /// Live label sets (the overflow series included).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Records a finished request.
    #[inline]
    pub fn record(&mut self, o: &Observation<'_>, s: &Sample) {
        let i = &mut self.interner;
        let key = Key {
            route: o.route.map_or(EMPTY_ID, |r| i.route_labels(r)),
            consumer: i.shared(o.consumer),
            node: match o.node {
                Node::None => EMPTY_ID,
                Node::Instance(n) => i.shared(Some(n)),
                Node::Ip(ip) => i.ip(Some(ip)),
            },
            request_model: i.model(o.request_model),
            model: i.model(o.model),
            code: o.code,
            kind: o.request_type as u8,
        };
        if let Some(series) = self.map.get(&key) {
            series.record(s);
            return;
        }
        self.record_new(key, o.request_type, s);
    }

    #[cold]
    fn record_new(&mut self, key: Key, request_type: RequestType, s: &Sample) {
        let key = if self.map.len() >= self.cap {
            bump(&self.shared.dropped, 1);
            let over = key.overflow();
            if let Some(series) = self.map.get(&over) {
                series.record(s);
                return;
            }
            over
        } else {
            key
        };
        let i = &self.interner;
        let series = Arc::new(Series::new(SeriesLabels {
            route: i.route(key.route).clone(),
            consumer: i.value(key.consumer).clone(),
            node: i.value(key.node).clone(),
            request_model: i.value(key.request_model).clone(),
            model: i.value(key.model).clone(),
            request_type,
            code: key.code,
        }));
        series.record(s);
        self.shared.series.push(series.clone());
        self.map.insert(key, series);
    }

    /// An LLM request starts on `route` for `consumer`: raises its
    /// `apisix_llm_active_connections`; the slot to [`Self::end_llm`].
    pub fn begin_llm(&mut self, route: &Arc<RouteLabels>, consumer: Option<&Arc<str>>) -> u32 {
        let i = &mut self.interner;
        let key = (i.route_labels(route), i.shared(consumer));
        let slot = match self.active.get(&key) {
            Some(&slot) => slot,
            None => {
                let slot = self.active_list.len() as u32;
                let a = Arc::new(ActiveSeries {
                    route: i.route(key.0).clone(),
                    consumer: i.value(key.1).clone(),
                    value: AtomicU64::new(0),
                });
                self.shared.active.push(a.clone());
                self.active_list.push(a);
                self.active.insert(key, slot);
                slot
            }
        };
        bump(&self.active_list[slot as usize].value, 1);
        slot
    }

    /// The LLM request of `slot` ended.
    pub fn end_llm(&mut self, slot: u32) {
        if let Some(a) = self.active_list.get(slot as usize) {
            bump(&a.value, u64::MAX); // wrapping: minus one
        }
    }

    /// A new configuration is served: series of routes it no longer has
    /// are retired (no longer scraped, no longer counted against the
    /// cap); those of routes it keeps go on counting. `current` tells
    /// whether a route's labels are the new configuration's.
    pub fn reloaded(&mut self, current: &AHashSet<&RouteLabels>) {
        self.interner.forget_addresses();
        let before = self.map.len();
        self.map.retain(|k, s| {
            k.route == EMPTY_ID || k.route == OTHER_ID || current.contains(&*s.labels.route)
        });
        if self.map.len() != before {
            self.shared.series.replace(self.map.values().cloned());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    fn route(id: &str) -> Arc<RouteLabels> {
        Arc::new(RouteLabels::of(id))
    }

    fn obs<'a>(r: &'a Arc<RouteLabels>, c: &'a Arc<str>, code: u16) -> Observation<'a> {
        Observation {
            route: Some(r),
            consumer: Some(c),
            node: Node::Ip("10.0.0.1".parse().unwrap()),
            request_model: None,
            model: None,
            request_type: RequestType::TraditionalHttp,
            code,
        }
    }

    fn sample() -> Sample {
        Sample {
            request: Duration::from_millis(3),
            ..Default::default()
        }
    }

    fn published(t: &Labelled) -> Vec<(String, String, u16, u64)> {
        let mut v = Vec::new();
        t.series.for_each(|s| {
            v.push((
                s.labels.route.route.to_string(),
                s.labels.consumer.to_string(),
                s.labels.code,
                s.requests.load(Ordering::Relaxed),
            ))
        });
        v.sort();
        v
    }

    #[test]
    fn one_series_per_label_set_published_once() {
        let shared = Arc::new(Labelled::default());
        let mut t = SeriesTable::new(100, shared.clone());
        let (r, alice, bob): (_, Arc<str>, Arc<str>) = (route("1"), "alice".into(), "bob".into());
        for _ in 0..3 {
            t.record(&obs(&r, &alice, 200), &sample());
        }
        t.record(&obs(&r, &bob, 200), &sample());
        t.record(&obs(&r, &bob, 429), &sample());
        assert_eq!(t.len(), 3);
        assert_eq!(
            published(&shared),
            vec![
                ("1".into(), "alice".into(), 200, 3),
                ("1".into(), "bob".into(), 200, 1),
                ("1".into(), "bob".into(), 429, 1),
            ]
        );
    }

    #[test]
    fn past_the_cap_label_sets_fold_into_other_and_are_counted() {
        let shared = Arc::new(Labelled::default());
        let mut t = SeriesTable::new(2, shared.clone());
        let r = route("1");
        let names: Vec<Arc<str>> = (0..5).map(|i| Arc::from(format!("c{i}"))).collect();
        for n in &names {
            t.record(&obs(&r, n, 200), &sample());
        }
        // Known sets still count in their own series.
        t.record(&obs(&r, &names[0], 200), &sample());
        assert_eq!(shared.dropped.load(Ordering::Relaxed), 3);
        assert_eq!(t.len(), 3, "two label sets and the overflow series");
        assert_eq!(
            published(&shared),
            vec![
                ("1".into(), "c0".into(), 200, 2),
                ("1".into(), "c1".into(), 200, 1),
                ("_other_".into(), "_other_".into(), 200, 3),
            ]
        );
    }

    #[test]
    fn a_reload_keeps_routes_that_remain_and_retires_the_others() {
        let shared = Arc::new(Labelled::default());
        let mut t = SeriesTable::new(100, shared.clone());
        let c: Arc<str> = "c".into();
        let (kept, gone) = (route("kept"), route("gone"));
        t.record(&obs(&kept, &c, 200), &sample());
        t.record(&obs(&gone, &c, 200), &sample());
        // The new configuration compiles new Arcs with the same content.
        let kept2 = route("kept");
        let current: AHashSet<&RouteLabels> = [&*kept2].into_iter().collect();
        t.reloaded(&current);
        t.record(&obs(&kept2, &c, 200), &sample());
        assert_eq!(
            published(&shared),
            vec![("kept".into(), "c".into(), 200, 2)]
        );
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn active_llm_requests_go_up_and_down() {
        let shared = Arc::new(Labelled::default());
        let mut t = SeriesTable::new(100, shared.clone());
        let r = route("ai");
        let a = t.begin_llm(&r, None);
        let b = t.begin_llm(&r, None);
        assert_eq!(a, b);
        t.end_llm(a);
        let mut v = Vec::new();
        shared
            .active
            .for_each(|s| v.push(s.value.load(Ordering::Relaxed)));
        assert_eq!(v, vec![1]);
    }
}
