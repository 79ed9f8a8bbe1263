//! `ApisixRoute` (`apisix.apache.org/v2`) and `ApisixGlobalRule`, as the
//! Ingress Controller translates them: each `spec.http[i]` becomes a
//! service `ns_name_i` holding one route `ns_name_<rule name>` (ids: crc32
//! of the names). A rule's plugins are its ApisixPluginConfig's
//! (`plugin_config_name`) under its own, plus `authentication`
//! (`keyAuth` → `key-auth`). Its `backends` (Services) and `upstreams`
//! (ApisixUpstreams) become the service's upstream; the controller splits
//! several with `traffic-split`, ringway makes them the nodes of one
//! upstream with the same weights.

use serde::Deserialize;
use serde_json::{json, Value};

use super::apisix_upstream::{self, Settings};
use super::documents::Object;
use super::names::{compose, gen_id};
use super::output::{labels, Output};
use super::plugins::crd_plugins;
use super::Index;
use crate::config::error::{from_value, ConfigError, FieldPath};
use crate::config::resources::{GlobalRule, Route, Service, Timeout};

/// The controller's default backend weight (`apiv2.DefaultWeight`).
const DEFAULT_WEIGHT: u64 = 100;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Spec {
    #[serde(default)]
    #[allow(dead_code)]
    ingress_class_name: Option<String>,
    #[serde(default)]
    http: Vec<Rule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Rule {
    name: String,
    #[serde(default)]
    priority: Option<i64>,
    #[serde(default)]
    timeout: Option<RuleTimeout>,
    #[serde(rename = "match")]
    matches: Match,
    #[serde(default)]
    backends: Vec<Backend>,
    #[serde(default)]
    upstreams: Vec<UpstreamRef>,
    #[serde(default)]
    websocket: bool,
    #[serde(default)]
    plugins: Value,
    #[serde(default, rename = "plugin_config_name")]
    plugin_config_name: Option<String>,
    #[serde(default, rename = "plugin_config_namespace")]
    plugin_config_namespace: Option<String>,
    #[serde(default)]
    authentication: Option<Authentication>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleTimeout {
    #[serde(default)]
    pub connect: Option<String>,
    #[serde(default)]
    pub send: Option<String>,
    #[serde(default)]
    pub read: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Match {
    paths: Vec<String>,
    #[serde(default)]
    methods: Option<Vec<String>>,
    #[serde(default)]
    hosts: Option<Vec<String>>,
    #[serde(default)]
    exprs: Vec<Expr>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Expr {
    subject: Subject,
    op: String,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    set: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Subject {
    scope: String,
    #[serde(default)]
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Backend {
    service_name: String,
    service_port: Value,
    #[serde(default)]
    #[allow(dead_code)]
    resolve_granularity: Option<String>,
    #[serde(default)]
    weight: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpstreamRef {
    name: String,
    #[serde(default)]
    weight: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Authentication {
    enable: bool,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    key_auth: Option<Value>,
}

/// Translates an ApisixRoute.
pub fn translate(obj: &Object, index: &Index, out: &mut Output) -> Result<(), ConfigError> {
    let at = obj.path("spec");
    let spec: Spec = from_value(&obj.spec(), &at)?;
    for (i, rule) in spec.http.into_iter().enumerate() {
        rule_to_resources(obj, index, out, rule, i, &at.field("http").index(i))?;
    }
    Ok(())
}

fn rule_to_resources(
    obj: &Object,
    index: &Index,
    out: &mut Output,
    rule: Rule,
    i: usize,
    at: &FieldPath,
) -> Result<(), ConfigError> {
    let ns = obj.namespace.as_str();
    if rule.websocket {
        return Err(at
            .field("websocket")
            .error("ringway does not proxy WebSocket"));
    }
    if rule.matches.paths.is_empty() {
        return Err(at
            .field("match")
            .field("paths")
            .error("needs at least one path"));
    }
    // Plugins: the ApisixPluginConfig's, the rule's over them.
    let mut plugins = match &rule.plugin_config_name {
        None => Default::default(),
        Some(name) => {
            let pns = rule.plugin_config_namespace.as_deref().unwrap_or(ns);
            let pc = index
                .apisix_plugin_configs
                .get(&(pns.to_owned(), name.clone()))
                .ok_or_else(|| {
                    at.field("plugin_config_name").error(format!(
                        "ApisixPluginConfig {pns}/{name} is not among the manifests given with -c"
                    ))
                })?;
            plugin_config_plugins(pc, index)?
        }
    };
    plugins.extend(crd_plugins(
        &rule.plugins,
        &at.field("plugins"),
        ns,
        &index.secrets,
    )?);
    if let Some(auth) = rule.authentication.filter(|a| a.enable) {
        if auth.kind != "keyAuth" {
            return Err(at.field("authentication").field("type").error(format!(
                "`{}` is not supported by ringway (supported: keyAuth)",
                auth.kind
            )));
        }
        plugins.insert(
            "key-auth".into(),
            auth.key_auth.unwrap_or_else(|| json!({})),
        );
    }
    let upstream = upstream_of(obj, index, &rule.backends, &rule.upstreams, at)?;
    let vars = rule
        .matches
        .exprs
        .iter()
        .enumerate()
        .map(|(j, e)| expr_var(e, &at.field("match").field("exprs").index(j)))
        .collect::<Result<Vec<_>, _>>()?;
    let timeout = rule
        .timeout
        .as_ref()
        .map(|t| timeout(t, &at.field("timeout")))
        .transpose()?;

    let svc_name = compose(&[ns, &obj.name, &i.to_string()]);
    let svc_id = gen_id(&svc_name);
    let svc = Service {
        name: Some(svc_name),
        labels: labels(obj),
        hosts: rule.matches.hosts.clone(),
        upstream,
        ..Default::default()
    };
    let route_name = compose(&[ns, &obj.name, &rule.name]);
    let route = Route {
        name: Some(route_name.clone()),
        desc: Some(format!("from ApisixRoute {ns}/{} ({})", obj.name, obj.file)),
        labels: labels(obj),
        uris: Some(rule.matches.paths),
        methods: rule.matches.methods,
        hosts: rule.matches.hosts,
        priority: rule.priority,
        vars: (!vars.is_empty()).then_some(Value::Array(vars)),
        plugins: Some(plugins),
        service_id: Some(Value::from(svc_id.clone())),
        timeout,
        ..Default::default()
    };
    out.service(obj, svc_id, svc, at)?;
    out.route(obj, gen_id(&route_name), route, at)
}

/// The plugins of an ApisixPluginConfig.
fn plugin_config_plugins(
    pc: &Object,
    index: &Index,
) -> Result<crate::config::resources::PluginMap, ConfigError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct PcSpec {
        #[serde(default)]
        plugins: Value,
    }
    let at = pc.path("spec");
    let spec: PcSpec = from_value(&pc.spec(), &at)?;
    crd_plugins(
        &spec.plugins,
        &at.field("plugins"),
        &pc.namespace,
        &index.secrets,
    )
    .map_err(|e| e.in_source(&pc.file))
}

/// The upstream of a rule: every backend and referred ApisixUpstream's
/// nodes, with the settings of the ApisixUpstream(s) they name (which
/// must agree).
fn upstream_of(
    obj: &Object,
    index: &Index,
    backends: &[Backend],
    refs: &[UpstreamRef],
    at: &FieldPath,
) -> Result<Option<crate::config::resources::Upstream>, ConfigError> {
    let ns = obj.namespace.as_str();
    let mut nodes = Vec::new();
    let mut settings: Vec<(Settings, FieldPath)> = Vec::new();
    for (j, b) in backends.iter().enumerate() {
        let bat = at.field("backends").index(j);
        let weight = b.weight.unwrap_or(DEFAULT_WEIGHT);
        nodes.push(index.services.node(
            ns,
            &b.service_name,
            &b.service_port,
            weight,
            &bat.field("servicePort"),
        )?);
        // The ApisixUpstream named as the Service carries its settings.
        if let Some(au) = index
            .apisix_upstreams
            .get(&(ns.to_owned(), b.service_name.clone()))
        {
            settings.push((apisix_upstream::read(au, &index.services)?.0, bat));
        }
    }
    for (j, r) in refs.iter().enumerate() {
        let rat = at.field("upstreams").index(j);
        let au = index
            .apisix_upstreams
            .get(&(ns.to_owned(), r.name.clone()))
            .ok_or_else(|| {
                rat.field("name").error(format!(
                    "ApisixUpstream {ns}/{} is not among the manifests given with -c",
                    r.name
                ))
            })?;
        let (s, mut n) = apisix_upstream::read(au, &index.services)?;
        if n.is_empty() {
            return Err(rat.field("name").error(format!(
                "ApisixUpstream {ns}/{} has no `externalNodes` to send requests to",
                r.name
            )));
        }
        if let Some(w) = r.weight {
            for node in &mut n {
                node["weight"] = Value::from(w);
            }
        }
        nodes.extend(n);
        settings.push((s, rat));
    }
    if nodes.is_empty() {
        return Ok(None);
    }
    let chosen = match settings.split_first() {
        None => Settings::default(),
        Some(((first, _), rest)) => {
            if let Some((_, sat)) = rest.iter().find(|(s, _)| s != first) {
                return Err(sat.error(
                    "its ApisixUpstream's settings differ from the rule's other backends': ringway serves a rule's backends as one upstream",
                ));
            }
            first.clone()
        }
    };
    Ok(Some(chosen.upstream(nodes)))
}

/// An `exprs` entry as an APISIX `vars` rule.
fn expr_var(e: &Expr, at: &FieldPath) -> Result<Value, ConfigError> {
    let name = e.subject.name.to_ascii_lowercase().replace('-', "_");
    let var = match e.subject.scope.as_str() {
        "Header" => format!("http_{name}"),
        "Query" => format!("arg_{}", e.subject.name),
        "Cookie" => format!("cookie_{}", e.subject.name),
        "Path" => "uri".to_owned(),
        "Variable" => e.subject.name.clone(),
        other => {
            return Err(at.field("subject").field("scope").error(format!(
                "`{other}` is not a scope (expected Header, Query, Cookie, Path, Variable)"
            )))
        }
    };
    let (negate, op) = match e.op.as_str() {
        "Equal" => (false, "=="),
        "NotEqual" => (true, "=="),
        "GreaterThan" => (false, ">"),
        "LessThan" => (false, "<"),
        "In" => (false, "in"),
        "NotIn" => (true, "in"),
        "RegexMatch" => (false, "~~"),
        "RegexNotMatch" => (true, "~~"),
        "RegexMatchCaseInsensitive" => (false, "~*"),
        "RegexNotMatchCaseInsensitive" => (true, "~*"),
        other => {
            return Err(at
                .field("op")
                .error(format!("`{other}` is not an operator")))
        }
    };
    let value = if op == "in" {
        json!(e
            .set
            .clone()
            .ok_or_else(|| at.field("set").error("`In`/`NotIn` need `set`"))?)
    } else {
        json!(e
            .value
            .clone()
            .ok_or_else(|| at.field("value").error("needs a `value`"))?)
    };
    Ok(if negate {
        json!([var, "!", op, value])
    } else {
        json!([var, op, value])
    })
}

/// A rule's (or ApisixUpstream's) timeouts, Go durations (`5s`, `1m30s`).
pub fn timeout(t: &RuleTimeout, at: &FieldPath) -> Result<Timeout, ConfigError> {
    let d =
        |v: &Option<String>, f: &str| v.as_deref().map(|s| duration(s, &at.field(f))).transpose();
    Ok(Timeout {
        connect: d(&t.connect, "connect")?,
        send: d(&t.send, "send")?,
        read: d(&t.read, "read")?,
    })
}

/// A Go duration (`300ms`, `5s`, `1m30s`, `1h`) in seconds.
pub fn duration(s: &str, at: &FieldPath) -> Result<f64, ConfigError> {
    let bad = || at.error(format!("`{s}` is not a duration (e.g. 5s, 500ms, 1m30s)"));
    let mut total = 0.0;
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let n_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let n: f64 = rest[..n_end].parse().map_err(|_| bad())?;
        rest = &rest[n_end..];
        let u_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = match &rest[..u_end] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            "us" | "µs" => 0.000_001,
            _ => return Err(bad()),
        };
        total += n * unit;
        rest = &rest[u_end..];
    }
    Ok(total)
}

/// Translates an ApisixGlobalRule: one global rule, id crc32 of `ns_name`.
pub fn global_rule(obj: &Object, index: &Index, out: &mut Output) -> Result<(), ConfigError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    struct GrSpec {
        #[serde(default)]
        #[allow(dead_code)]
        ingress_class_name: Option<String>,
        #[serde(default)]
        plugins: Value,
    }
    let at = obj.path("spec");
    let spec: GrSpec = from_value(&obj.spec(), &at)?;
    let plugins = crd_plugins(
        &spec.plugins,
        &at.field("plugins"),
        &obj.namespace,
        &index.secrets,
    )?;
    let id = gen_id(&compose(&[&obj.namespace, &obj.name]));
    let rule = GlobalRule {
        plugins,
        ..Default::default()
    };
    out.global_rule(obj, id, rule, &at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(text: &str) -> Result<crate::config::Resources, ConfigError> {
        super::super::resources_of(text)
    }

    const ROUTE: &str = "apiVersion: apisix.apache.org/v2\nkind: ApisixRoute\nmetadata: {name: r, namespace: aic}\nspec:\n  http:\n    - name: main\n      match: {paths: [/a/*], methods: [GET], exprs: [{subject: {scope: Header, name: X-Team}, op: NotEqual, value: b}]}\n      backends: [{serviceName: web, servicePort: 80, weight: 5}, {serviceName: api, servicePort: 8080}]\n      timeout: {read: 1m30s}\n      plugin_config_name: pc\n      plugins: [{name: key-auth, enable: false}, {name: b, config: {x: 2}}]\n      authentication: {enable: true, type: keyAuth, keyAuth: {header: apikey}}\n---\napiVersion: apisix.apache.org/v2\nkind: ApisixPluginConfig\nmetadata: {name: pc, namespace: aic}\nspec: {plugins: [{name: a, enable: true, config: {y: 1}}, {name: b, config: {x: 1}}]}\n";

    #[test]
    fn a_rule_becomes_a_service_and_a_route_named_as_the_controller_names_them() {
        let r = res(ROUTE).unwrap();
        let sid = gen_id("aic_r_0");
        let rid = gen_id("aic_r_main");
        let route = &r.routes[&rid];
        assert_eq!(route.name.as_deref(), Some("aic_r_main"));
        assert_eq!(route.service_id, Some(json!(sid)));
        assert_eq!(route.vars, Some(json!([["http_x_team", "!", "==", "b"]])));
        assert_eq!(route.timeout.as_ref().unwrap().read, Some(90.0));
        let p = route.plugins.as_ref().unwrap();
        assert_eq!(p["a"], json!({"y": 1}));
        assert_eq!(p["b"], json!({"x": 2}), "the rule's plugin wins");
        assert_eq!(p["key-auth"], json!({"header": "apikey"}));
        let nodes = &r.services[&sid].upstream.as_ref().unwrap().nodes;
        assert_eq!(
            nodes,
            &json!([{"host": "web.aic.svc.cluster.local", "port": 80, "weight": 5},
                    {"host": "api.aic.svc.cluster.local", "port": 8080, "weight": 100}])
        );
        assert_eq!(
            r.origin(crate::config::resources::Kind::Route, &rid),
            "ApisixRoute/aic/r: spec.http[0]"
        );
    }

    #[test]
    fn bad_fields_and_missing_references_name_the_object() {
        let e = res(&ROUTE.replace("servicePort: 80,", "servicePort: 0,")).unwrap_err();
        assert_eq!(
            e.path,
            "ApisixRoute/aic/r: spec.http[0].backends[0].servicePort"
        );
        assert_eq!(e.source.as_deref(), Some("m.yaml"));
        let e =
            res(&ROUTE.replace("plugin_config_name: pc", "plugin_config_name: nope")).unwrap_err();
        assert_eq!(e.path, "ApisixRoute/aic/r: spec.http[0].plugin_config_name");
        let e = res(&ROUTE.replace("backends:", "backendz:")).unwrap_err();
        assert_eq!(e.path, "ApisixRoute/aic/r: spec.http[0].backendz", "{e}");
        let e = res(&ROUTE.replace("type: keyAuth", "type: jwtAuth")).unwrap_err();
        assert_eq!(
            e.path,
            "ApisixRoute/aic/r: spec.http[0].authentication.type"
        );
    }

    #[test]
    fn durations_are_go_durations() {
        let at = FieldPath::root();
        assert_eq!(duration("5s", &at).unwrap(), 5.0);
        assert_eq!(duration("1m30s", &at).unwrap(), 90.0);
        assert_eq!(duration("250ms", &at).unwrap(), 0.25);
        assert!(duration("5", &at).is_err());
        assert!(duration("s", &at).is_err());
    }
}
