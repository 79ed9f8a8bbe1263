//! Label values: escaping for the Prometheus text format, a route's
//! labels precomputed when the configuration is compiled
//! ([`RouteLabels`]), and the worker-local [`Interner`] that turns a
//! request's label values into small integers (so a series is found by a
//! 24-byte key, not by hashing strings) and keeps each value's escaped text
//! for the scrape.
//!
//! Values a client chooses (the model it asks for, the model a provider
//! says answered) are admitted up to [`MODEL_VALUES`] distinct values per
//! worker; later ones are recorded as [`OTHER`]. Everything else comes
//! from the configuration (routes, consumers, instances, upstream nodes).

use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::Arc;

use ahash::AHashMap;

/// What a label value folds into past a cap.
pub const OTHER: &str = "_other_";
/// The interned id of `""`.
pub const EMPTY_ID: u32 = 0;
/// The interned id of [`OTHER`].
pub const OTHER_ID: u32 = 1;
/// Distinct model names (`request_llm_model`, `llm_model`) one worker
/// admits as label values; later names are recorded as [`OTHER`].
pub const MODEL_VALUES: usize = 256;

/// A Prometheus label value: backslash, quote and newline escaped.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    escape_into(&mut out, s);
    out
}

/// Appends `s` escaped as a label value (text format 0.0.4).
pub fn escape_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// A route's labels as APISIX's prometheus plugin exports them, escaped
/// once when the configuration is compiled.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RouteLabels {
    /// `route`: the route's id, or its name with `prefer_name`.
    pub route: Box<str>,
    pub route_id: Box<str>,
    /// `matched_uri`: the route's `uri` (the first of `uris`).
    pub matched_uri: Box<str>,
    /// `matched_host`: the route's `host` (the first of `hosts`), or "".
    pub matched_host: Box<str>,
    /// `service`: the service's id, or its name with `prefer_name`.
    pub service: Box<str>,
    pub service_id: Box<str>,
}

/// What a route's labels are made of, before `prefer_name` is decided.
#[derive(Debug, Clone, Default)]
pub struct RouteFacts {
    pub id: String,
    pub name: Option<String>,
    pub uri: String,
    pub host: Option<String>,
    pub service_id: Option<String>,
    pub service_name: Option<String>,
}

impl RouteLabels {
    /// The labels of a route; `prefer_name` exports the route's and its
    /// service's names instead of their ids (APISIX's `prefer_name`).
    pub fn new(f: &RouteFacts, prefer_name: bool) -> RouteLabels {
        let e = |s: &str| escape(s).into_boxed_str();
        let sid = f.service_id.as_deref().unwrap_or("");
        let (route, service) = if prefer_name {
            (
                f.name.as_deref().unwrap_or(&f.id),
                f.service_name.as_deref().unwrap_or(sid),
            )
        } else {
            (f.id.as_str(), sid)
        };
        RouteLabels {
            route: e(route),
            route_id: e(&f.id),
            matched_uri: e(&f.uri),
            matched_host: e(f.host.as_deref().unwrap_or("")),
            service: e(service),
            service_id: e(sid),
        }
    }

    /// The labels of requests no route matched (and of the overflow
    /// series, with [`OTHER`]).
    pub fn of(value: &str) -> RouteLabels {
        let v: Box<str> = escape(value).into();
        RouteLabels {
            route: v.clone(),
            route_id: v.clone(),
            matched_uri: v.clone(),
            matched_host: v.clone(),
            service: v.clone(),
            service_id: v,
        }
    }
}

/// Route labels hashed and compared by content: the same route keeps its
/// id across configuration reloads (each compiles a new `Arc`).
#[derive(Debug, Clone)]
struct ByContent(Arc<RouteLabels>);

impl PartialEq for ByContent {
    fn eq(&self, o: &Self) -> bool {
        *self.0 == *o.0
    }
}
impl Eq for ByContent {}
impl Hash for ByContent {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.0.hash(h)
    }
}

/// One worker's label values, by small integer id. Lookups first go by
/// the address of an `Arc` the snapshot holds (a hash of one word; the
/// `Arc` is kept, so the address cannot be reused while it is a key),
/// then by content. The address maps are emptied when a new
/// configuration is picked up ([`Interner::forget_addresses`]), so an old
/// snapshot's strings are let go; ids by content stay.
#[derive(Debug)]
pub struct Interner {
    texts: Vec<Arc<str>>,
    by_text: AHashMap<Box<str>, u32>,
    by_addr: AHashMap<usize, (u32, Arc<str>)>,
    by_ip: AHashMap<IpAddr, u32>,
    models: usize,
    routes: Vec<Arc<RouteLabels>>,
    route_by_content: AHashMap<ByContent, u32>,
    route_by_addr: AHashMap<usize, (u32, Arc<RouteLabels>)>,
}

impl Default for Interner {
    fn default() -> Self {
        let mut i = Interner {
            texts: Vec::new(),
            by_text: AHashMap::new(),
            by_addr: AHashMap::new(),
            by_ip: AHashMap::new(),
            models: 0,
            routes: Vec::new(),
            route_by_content: AHashMap::new(),
            route_by_addr: AHashMap::new(),
        };
        let empty = i.text("");
        let other = i.text(OTHER);
        debug_assert_eq!((empty, other), (EMPTY_ID, OTHER_ID));
        let none = i.route_by_value(Arc::new(RouteLabels::of("")));
        let over = i.route_by_value(Arc::new(RouteLabels::of(OTHER)));
        debug_assert_eq!((none, over), (EMPTY_ID, OTHER_ID));
        i
    }
}

impl Interner {
    /// The escaped text of value `id`.
    pub fn value(&self, id: u32) -> &Arc<str> {
        &self.texts[id as usize]
    }

    /// The labels of route `id`.
    pub fn route(&self, id: u32) -> &Arc<RouteLabels> {
        &self.routes[id as usize]
    }

    /// The id of `s` (configuration-bounded values).
    pub fn text(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.by_text.get(s) {
            return id;
        }
        let id = self.texts.len() as u32;
        self.texts.push(Arc::from(escape(s)));
        self.by_text.insert(s.into(), id);
        id
    }

    /// The id of a model name a client or provider chose: [`OTHER_ID`]
    /// once [`MODEL_VALUES`] names were admitted.
    pub fn model(&mut self, s: Option<&str>) -> u32 {
        let Some(s) = s else { return EMPTY_ID };
        if let Some(&id) = self.by_text.get(s) {
            return id;
        }
        if self.models >= MODEL_VALUES {
            return OTHER_ID;
        }
        self.models += 1;
        self.text(s)
    }

    /// The id of a string the snapshot holds (a consumer's or an
    /// instance's name): by its address, else by content.
    pub fn shared(&mut self, s: Option<&Arc<str>>) -> u32 {
        let Some(s) = s else { return EMPTY_ID };
        let addr = Arc::as_ptr(s) as *const u8 as usize;
        if let Some((id, _)) = self.by_addr.get(&addr) {
            return *id;
        }
        let id = self.text(s);
        self.by_addr.insert(addr, (id, s.clone()));
        id
    }

    /// The id of an upstream node's address (APISIX's `balancer_ip`).
    pub fn ip(&mut self, ip: Option<IpAddr>) -> u32 {
        let Some(ip) = ip else { return EMPTY_ID };
        if let Some(&id) = self.by_ip.get(&ip) {
            return id;
        }
        let id = self.text(&ip.to_string());
        self.by_ip.insert(ip, id);
        id
    }

    /// The id of a route's labels: by the `Arc`'s address, else by content.
    pub fn route_labels(&mut self, r: &Arc<RouteLabels>) -> u32 {
        let addr = Arc::as_ptr(r) as usize;
        if let Some((id, _)) = self.route_by_addr.get(&addr) {
            return *id;
        }
        let id = self.route_by_value(r.clone());
        self.route_by_addr.insert(addr, (id, r.clone()));
        id
    }

    fn route_by_value(&mut self, r: Arc<RouteLabels>) -> u32 {
        let key = ByContent(r);
        if let Some(&id) = self.route_by_content.get(&key) {
            return id;
        }
        let id = self.routes.len() as u32;
        self.routes.push(key.0.clone());
        self.route_by_content.insert(key, id);
        id
    }

    /// A new configuration is served: lets go of the old snapshot's
    /// strings (their ids by content stay).
    pub fn forget_addresses(&mut self) {
        self.by_addr.clear();
        self.route_by_addr.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_follows_the_text_format() {
        assert_eq!(escape(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape("x\ny"), "x\\ny");
        assert_eq!(escape("ünï"), "ünï");
    }

    #[test]
    fn ids_are_stable_by_content_and_fast_by_address() {
        let mut i = Interner::default();
        let a: Arc<str> = Arc::from("alice");
        let id = i.shared(Some(&a));
        assert_eq!(i.shared(Some(&a)), id);
        // A reload compiles a new Arc with the same text: the same id.
        i.forget_addresses();
        let a2: Arc<str> = Arc::from("alice");
        assert_eq!(i.shared(Some(&a2)), id);
        assert_eq!(i.shared(None), EMPTY_ID);
        assert_eq!(&**i.value(id), "alice");
        let q: Arc<str> = Arc::from("a\"b");
        let qid = i.shared(Some(&q));
        assert_eq!(&**i.value(qid), "a\\\"b");

        let f = RouteFacts {
            id: "1".into(),
            name: Some("chat".into()),
            uri: "/v1/*".into(),
            ..Default::default()
        };
        let r1 = Arc::new(RouteLabels::new(&f, false));
        let r2 = Arc::new(RouteLabels::new(&f, false));
        let named = Arc::new(RouteLabels::new(&f, true));
        let id1 = i.route_labels(&r1);
        assert_eq!(i.route_labels(&r2), id1);
        assert_ne!(i.route_labels(&named), id1);
        assert_eq!(&*i.route(id1).route, "1");
        assert_eq!(&*named.route, "chat");
    }

    #[test]
    fn client_chosen_models_fold_into_other_past_the_cap() {
        let mut i = Interner::default();
        let first = i.model(Some("m0"));
        for n in 1..MODEL_VALUES {
            assert_ne!(i.model(Some(&format!("m{n}"))), OTHER_ID);
        }
        assert_eq!(i.model(Some("one-too-many")), OTHER_ID);
        assert_eq!(i.model(Some("m0")), first, "admitted names keep their id");
        assert_eq!(i.model(None), EMPTY_ID);
        // Names from the configuration are not capped.
        assert_ne!(i.text("configured"), OTHER_ID);
    }
}
