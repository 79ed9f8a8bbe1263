//! Resources → [`Snapshot`]: resolves references (route → service →
//! upstream), compiles upstreams, plugins and the router, and reports the
//! first problem with the path of the field that caused it.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use super::{CompiledRoute, Handler, Snapshot};
use crate::config::bounds;
use crate::config::error::{ConfigError, FieldPath};
use crate::config::gateway::GatewaySettings;
use crate::config::resources::{id_string, Kind, Resources, Route, Upstream};
use crate::observe::metrics::labels::{RouteFacts, RouteLabels};
use crate::observe::redact::Redaction;
use crate::plugins::shared::{Carry, SharedState};
use crate::plugins::{self, CompileCx, PluginChain};
use crate::router::{HostSet, MethodSet, RouteMatch, Router, UriPattern};
use crate::upstream::{TlsClients, UpstreamSpec};

/// Compiles `res` into a snapshot (generation 0; the cell numbers it),
/// carrying shared state over from `prev` (the snapshot being replaced).
pub fn compile(
    res: Arc<Resources>,
    gateway: Arc<GatewaySettings>,
    tls: TlsClients,
    prev: Option<&SharedState>,
) -> Result<Snapshot, ConfigError> {
    let mut carry = Carry::new(prev);
    carry.tls = Some(tls.clone());
    let metadata = plugins::metadata::PluginMetadata::compile(&res)?;
    let mut cx = Compiler {
        res: &res,
        metadata: &metadata,
        slots: 0,
        upstreams_by_id: BTreeMap::new(),
        carry: &mut carry,
    };
    let mut router = Router::builder();
    let mut routes = Vec::with_capacity(res.routes.len());
    let mut metric_facts = Vec::with_capacity(res.routes.len());
    for (id, route) in &res.routes {
        let at = FieldPath::from_origin(res.origin(Kind::Route, id));
        check_route_numbers(route, &at)?;
        if route.status == Some(0) {
            continue;
        }
        let compiled = cx.route(id, route, &at, &mut router, routes.len())?;
        metric_facts.push(cx.metric_facts(id, route));
        routes.push(compiled);
    }
    let slots = cx.slots;
    let mut global_plugins = PluginChain::default();
    for (id, rule) in &res.global_rules {
        // ADC's `global_rules` is the plugin map itself; an Admin API
        // global rule holds it under `plugins`.
        let at = match res.origin(Kind::GlobalRule, id) {
            o if o.is_empty() => FieldPath::root().field("plugins"),
            o => FieldPath::from_origin(o),
        };
        let mut pcx = CompileCx {
            owner: Arc::from("global"),
            carry: &mut carry,
            metadata: &metadata,
        };
        let chain = plugins::compile(&rule.plugins, &at, plugins::Scope::GlobalRule, &mut pcx)?;
        global_plugins = PluginChain::concat(global_plugins, chain);
    }
    // `prometheus`' `prefer_name`: the route's (or its service's), else a
    // global rule's.
    let global_prefer = global_plugins.prometheus().is_some_and(|p| p.prefer_name);
    for (route, facts) in routes.iter_mut().zip(&metric_facts) {
        route.ai_plugins = plugins::AiChain::of_route(&route.plugins, &global_plugins);
        let prefer = route
            .plugins
            .prometheus()
            .map_or(global_prefer, |p| p.prefer_name);
        route.metrics = Arc::new(RouteLabels::new(facts, prefer));
    }
    let consumers = crate::plugins::consumers::Consumers::compile(&res, &mut carry, &metadata)?;
    let redaction = redaction(&gateway, &routes, &global_plugins);
    Ok(Snapshot {
        generation: 0,
        gateway,
        router: router.build(),
        routes,
        global_plugins,
        consumers,
        redaction,
        upstream_slots: slots,
        shared: carry.next,
        tls,
        resources: res.clone(),
    })
}

/// The names logs redact: `gateway.log_redaction`'s, and the `header` /
/// `query` of every key-auth a request can meet (a service's is in its
/// routes' chains).
fn redaction(
    gateway: &GatewaySettings,
    routes: &[CompiledRoute],
    global: &PluginChain,
) -> Redaction {
    let settings = &gateway.log_redaction;
    if !settings.enabled {
        return Redaction::off();
    }
    let key_auths: Vec<&plugins::key_auth::KeyAuth> = routes
        .iter()
        .flat_map(|r| r.plugins.iter())
        .chain(global.iter())
        .filter_map(|p| match p {
            plugins::Plugin::KeyAuth(k) => Some(k),
            _ => None,
        })
        .collect();
    Redaction::new(
        settings
            .headers
            .iter()
            .map(String::as_str)
            .chain(key_auths.iter().map(|k| &*k.header)),
        settings
            .query
            .iter()
            .map(String::as_str)
            .chain(key_auths.iter().map(|k| &*k.query)),
    )
}

/// A route's own numbers: `status` (APISIX: 0 or 1) and `timeout`
/// (seconds > 0; accepted as APISIX's schema has it, and bounded like the
/// upstream's).
fn check_route_numbers(route: &Route, at: &FieldPath) -> Result<(), ConfigError> {
    if let Some(s) = route.status {
        bounds::int::<u8>(s, 0, 1, &at.field("status"))?;
    }
    if let Some(t) = &route.timeout {
        for (name, v) in [("connect", t.connect), ("send", t.send), ("read", t.read)] {
            if let Some(v) = v {
                bounds::seconds(
                    v,
                    bounds::Min::Exclusive(0.0),
                    bounds::MAX_SECONDS,
                    &at.field("timeout").field(name),
                )?;
            }
        }
    }
    Ok(())
}

struct Compiler<'a, 'c, 'p> {
    res: &'a Resources,
    metadata: &'a plugins::metadata::PluginMetadata,
    slots: usize,
    upstreams_by_id: BTreeMap<String, Arc<UpstreamSpec>>,
    carry: &'c mut Carry<'p>,
}

impl Compiler<'_, '_, '_> {
    fn route(
        &mut self,
        id: &str,
        route: &Route,
        at: &FieldPath,
        router: &mut crate::router::RouterBuilder,
        index: usize,
    ) -> Result<CompiledRoute, ConfigError> {
        let service = match &route.service_id {
            None => None,
            Some(sid) => {
                let sid = id_string(sid)
                    .ok_or_else(|| at.field("service_id").error("must be a string or number"))?;
                let svc = self.res.services.get(&sid).ok_or_else(|| {
                    at.field("service_id")
                        .error(format!("service `{sid}` does not exist"))
                })?;
                Some((sid, svc))
            }
        };
        let svc_at = service
            .as_ref()
            .map(|(sid, _)| FieldPath::from_origin(self.res.origin(Kind::Service, sid)));

        // Match criteria.
        let uris: Vec<(String, FieldPath)> = match (&route.uri, &route.uris) {
            (Some(_), Some(_)) => {
                return Err(at
                    .field("uris")
                    .error("set either `uri` or `uris`, not both"))
            }
            (Some(u), None) => vec![(u.clone(), at.field("uri"))],
            (None, Some(list)) if !list.is_empty() => list
                .iter()
                .enumerate()
                .map(|(i, u)| (u.clone(), at.field("uris").index(i)))
                .collect(),
            _ => return Err(at.error("missing field `uris` (or `uri`)")),
        };
        let methods = MethodSet::parse(
            route.methods.as_deref().unwrap_or(&[]),
            &at.field("methods"),
        )?;
        let hosts = match (&route.host, &route.hosts) {
            (Some(_), Some(_)) => {
                return Err(at
                    .field("hosts")
                    .error("set either `host` or `hosts`, not both"))
            }
            (Some(h), None) => HostSet::parse(std::slice::from_ref(h), &at.field("host"))?,
            (None, Some(list)) => HostSet::parse(list, &at.field("hosts"))?,
            (None, None) => match (&service, &svc_at) {
                (Some((_, svc)), Some(sat)) => {
                    HostSet::parse(svc.hosts.as_deref().unwrap_or(&[]), &sat.field("hosts"))?
                }
                _ => HostSet::default(),
            },
        };
        let vars =
            crate::http::expr::Expr::compile_optional(route.vars.as_ref(), &at.field("vars"))?;
        for (uri, uat) in uris {
            let pattern = UriPattern::parse(&uri, &uat)?;
            router.add(
                pattern,
                RouteMatch {
                    route: index,
                    priority: route.priority.unwrap_or(0),
                    methods,
                    hosts: hosts.clone(),
                    vars: vars.clone(),
                },
            );
        }

        // Plugins: the service's, overridden by the route's of the same name
        // (each checked where it is written, so errors name the right path).
        let service_chain = match (&service, &svc_at) {
            (Some((sid, svc)), Some(sat)) => match &svc.plugins {
                Some(p) => {
                    let mut pcx = CompileCx {
                        owner: Arc::from(format!("service/{sid}")),
                        carry: self.carry,
                        metadata: self.metadata,
                    };
                    plugins::compile(p, &sat.field("plugins"), plugins::Scope::Service, &mut pcx)?
                }
                None => PluginChain::default(),
            },
            _ => PluginChain::default(),
        };
        let route_chain = match &route.plugins {
            Some(p) => {
                let mut pcx = CompileCx {
                    owner: Arc::from(format!("route/{id}")),
                    carry: self.carry,
                    metadata: self.metadata,
                };
                plugins::compile(p, &at.field("plugins"), plugins::Scope::Route, &mut pcx)?
            }
            None => PluginChain::default(),
        };
        let chain = PluginChain::overlay(service_chain, route_chain);

        // What answers the request.
        let upstream = if let Some(u) = &route.upstream {
            Some(self.inline_upstream(u, &at.field("upstream"))?)
        } else if let Some(uid) = &route.upstream_id {
            Some(self.upstream_by_id(uid, &at.field("upstream_id"))?)
        } else if let (Some((_, svc)), Some(sat)) = (&service, &svc_at) {
            if let Some(u) = &svc.upstream {
                Some(self.inline_upstream(u, &sat.field("upstream"))?)
            } else if let Some(uid) = &svc.upstream_id {
                Some(self.upstream_by_id(uid, &sat.field("upstream_id"))?)
            } else {
                None
            }
        } else {
            None
        };
        if let Some(rl) = chain.ai_rate_limiting() {
            let rat = at.field("plugins").field(plugins::ai_rate_limiting::NAME);
            let Some((ai, _)) = chain.ai_proxy() else {
                return Err(rat.error(
                    "needs `ai-proxy-multi` on the same route (it limits that plugin's instances)",
                ));
            };
            for (i, name) in rl.instance_names().enumerate() {
                if !ai.instances.iter().any(|inst| &*inst.name == name) {
                    return Err(rat.field("instances").index(i).field("name").error(format!(
                        "`{name}` is not an instance of this route's ai-proxy-multi"
                    )));
                }
            }
        }
        let mut ai_bypass = None;
        let handler = match (chain.ai_proxy(), upstream) {
            (Some((ai, meta)), upstream) => {
                if meta.filter.is_some() {
                    ai_bypass = Some(upstream.ok_or_else(|| {
                        at.field("plugins")
                            .field(plugins::ai_proxy_multi::NAME)
                            .field("_meta")
                            .field("filter")
                            .error("needs an `upstream` on the route or its service, to answer the requests the filter does not hold for")
                    })?);
                }
                Handler::Ai(ai.clone())
            }
            (None, Some(u)) => Handler::Upstream(u),
            (None, None) => {
                return Err(at.error(
                    "route has nothing to answer it: set an `upstream` (on the route or its service) or the `ai-proxy-multi` plugin",
                ))
            }
        };
        Ok(CompiledRoute {
            id: Arc::from(id),
            name: Arc::from(route.name.as_deref().unwrap_or(id)),
            plugins: chain,
            ai_plugins: plugins::AiChain::default(),
            handler,
            ai_bypass,
            // Set once the global rules are known (`prefer_name`).
            metrics: Arc::new(RouteLabels::of("")),
        })
    }

    /// What route `id`'s metric labels are made of: its id and name, its
    /// first URI pattern and host, its service's id and name.
    fn metric_facts(&self, id: &str, route: &Route) -> RouteFacts {
        let service_id = route.service_id.as_ref().and_then(id_string);
        let service_name = service_id
            .as_ref()
            .and_then(|sid| self.res.services.get(sid))
            .and_then(|s| s.name.clone());
        RouteFacts {
            id: id.to_owned(),
            name: route.name.clone(),
            uri: route
                .uri
                .clone()
                .or_else(|| route.uris.as_ref().and_then(|u| u.first().cloned()))
                .unwrap_or_default(),
            host: route
                .host
                .clone()
                .or_else(|| route.hosts.as_ref().and_then(|h| h.first().cloned())),
            service_id,
            service_name,
        }
    }

    fn inline_upstream(
        &mut self,
        u: &Upstream,
        at: &FieldPath,
    ) -> Result<Arc<UpstreamSpec>, ConfigError> {
        let spec = UpstreamSpec::compile(u, at, self.slots)?;
        self.slots += 1;
        Ok(Arc::new(spec))
    }

    fn upstream_by_id(
        &mut self,
        uid: &Value,
        at: &FieldPath,
    ) -> Result<Arc<UpstreamSpec>, ConfigError> {
        let uid = id_string(uid).ok_or_else(|| at.error("must be a string or number"))?;
        if let Some(spec) = self.upstreams_by_id.get(&uid) {
            return Ok(spec.clone());
        }
        let u = self
            .res
            .upstreams
            .get(&uid)
            .ok_or_else(|| at.error(format!("upstream `{uid}` does not exist")))?;
        let uat = FieldPath::from_origin(self.res.origin(Kind::Upstream, &uid));
        let spec = self.inline_upstream(u, &uat)?;
        self.upstreams_by_id.insert(uid, spec.clone());
        Ok(spec)
    }
}
