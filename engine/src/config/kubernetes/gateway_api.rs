//! Gateway API `HTTPRoute` (`gateway.networking.k8s.io/v1`) with APISIX's
//! `PluginConfig` and `Consumer` (`apisix.apache.org/v1alpha1`), as the
//! Ingress Controller translates them: rule *i* becomes a service
//! `ns_name_i` (its `hostnames`, its `backendRefs` as the upstream, the
//! plugins of its `ExtensionRef` PluginConfig filters); match *j* of it a
//! route `ns_name_i-j` with the controller's priority. `PathPrefix` `/p`
//! matches `/p` and `/p/*`, `Exact` only `/p`, `RegularExpression` a
//! `uri ~~` var; headers and query parameters become vars.
//!
//! A rule with neither backendRefs nor `ai-proxy-multi` is refused (the
//! controller serves it as a 500 `No existing backendRef provided`); one
//! with `ai-proxy-multi` and no backendRefs is what the seed writes, and
//! the plugin answers. Filters other than `ExtensionRef` are refused:
//! ringway has no plugin to carry them out.

use serde::Deserialize;
use serde_json::{json, Value};

use super::documents::Object;
use super::names::{compose, gen_id};
use super::output::{labels, Output};
use super::plugins::{alpha_plugins, any_plugins};
use super::{Index, APISIX};
use crate::config::error::{from_value, ConfigError, FieldPath};
use crate::config::resources::{Consumer, Credential, PluginMap, Route, Service, Upstream};

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Spec {
    #[serde(default)]
    #[allow(dead_code)]
    parent_refs: Value,
    #[serde(default)]
    hostnames: Option<Vec<String>>,
    #[serde(default)]
    rules: Vec<Rule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Rule {
    #[serde(default)]
    #[allow(dead_code)]
    name: Option<String>,
    #[serde(default)]
    matches: Vec<Match>,
    #[serde(default)]
    filters: Vec<Filter>,
    #[serde(default)]
    backend_refs: Vec<BackendRef>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Match {
    #[serde(default)]
    path: Option<PathMatch>,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    headers: Vec<ValueMatch>,
    #[serde(default)]
    query_params: Vec<ValueMatch>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PathMatch {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    value: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ValueMatch {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    name: String,
    value: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Filter {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    extension_ref: Option<ExtensionRef>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExtensionRef {
    group: String,
    kind: String,
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BackendRef {
    #[serde(default)]
    group: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    port: Option<Value>,
    #[serde(default)]
    weight: Option<u64>,
}

/// Translates an HTTPRoute.
pub fn http_route(obj: &Object, index: &Index, out: &mut Output) -> Result<(), ConfigError> {
    let at = obj.path("spec");
    let spec: Spec = from_value(&obj.spec(), &at)?;
    let ns = obj.namespace.as_str();
    let hosts = spec.hostnames.filter(|h| !h.is_empty());
    for (i, rule) in spec.rules.into_iter().enumerate() {
        let rat = at.field("rules").index(i);
        let plugins = filters(obj, index, &rule.filters, &rat.field("filters"))?;
        let upstream = backends(obj, index, &rule.backend_refs, &rat.field("backendRefs"))?;
        if upstream.is_none() && !plugins.contains_key("ai-proxy-multi") {
            return Err(rat.field("backendRefs").error(
                "a rule needs backendRefs, or an ExtensionRef PluginConfig with ai-proxy-multi to answer it",
            ));
        }
        let svc_name = compose(&[ns, &obj.name, &i.to_string()]);
        let svc_id = gen_id(&svc_name);
        let svc = Service {
            name: Some(svc_name),
            labels: labels(obj),
            hosts: hosts.clone(),
            plugins: Some(plugins),
            upstream,
            ..Default::default()
        };
        out.service(obj, svc_id.clone(), svc, &rat)?;
        let matches = if rule.matches.is_empty() {
            vec![Match::default()]
        } else {
            rule.matches
        };
        for (j, m) in matches.iter().enumerate() {
            let mat = rat.field("matches").index(j);
            let name = compose(&[ns, &obj.name, &format!("{i}-{j}")]);
            let mut route = route_of(m, &mat)?;
            route.name = Some(name.clone());
            route.desc = Some(format!("from HTTPRoute {ns}/{} ({})", obj.name, obj.file));
            route.labels = labels(obj);
            route.hosts = hosts.clone();
            route.priority = Some(priority(m, i, hosts.as_deref().unwrap_or(&[])));
            route.service_id = Some(Value::from(svc_id.clone()));
            out.route(obj, gen_id(&name), route, &mat)?;
        }
    }
    Ok(())
}

fn filters(
    obj: &Object,
    index: &Index,
    list: &[Filter],
    at: &FieldPath,
) -> Result<PluginMap, ConfigError> {
    let mut plugins = PluginMap::new();
    for (k, f) in list.iter().enumerate() {
        let fat = at.index(k);
        let r = match (f.kind.as_str(), &f.extension_ref) {
            ("ExtensionRef", Some(r)) => r,
            ("ExtensionRef", None) => return Err(fat.field("extensionRef").error("missing")),
            (other, _) => {
                return Err(fat.field("type").error(format!(
                    "`{other}` filters are not supported by ringway (supported: ExtensionRef to an apisix.apache.org PluginConfig)"
                )))
            }
        };
        let eat = fat.field("extensionRef");
        if r.group != APISIX || r.kind != "PluginConfig" {
            return Err(eat.error(format!(
                "refers to {}/{}: ringway reads {APISIX} PluginConfig only",
                r.group, r.kind
            )));
        }
        let pc = index
            .plugin_configs
            .get(&(obj.namespace.clone(), r.name.clone()))
            .ok_or_else(|| {
                eat.field("name").error(format!(
                    "PluginConfig {}/{} is not among the manifests given with -c",
                    obj.namespace, r.name
                ))
            })?;
        plugins.extend(plugin_config(pc)?);
    }
    Ok(plugins)
}

/// The plugins of a v1alpha1 PluginConfig.
fn plugin_config(pc: &Object) -> Result<PluginMap, ConfigError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct PcSpec {
        #[serde(default)]
        plugins: Value,
    }
    let at = pc.path("spec");
    from_value::<PcSpec>(&pc.spec(), &at)
        .and_then(|s| alpha_plugins(&s.plugins, &at.field("plugins")))
        .map_err(|e| e.in_source(&pc.file))
}

fn backends(
    obj: &Object,
    index: &Index,
    refs: &[BackendRef],
    at: &FieldPath,
) -> Result<Option<Upstream>, ConfigError> {
    let mut nodes = Vec::new();
    for (k, b) in refs.iter().enumerate() {
        let bat = at.index(k);
        let core = b.group.as_deref().unwrap_or("").is_empty();
        if !core || b.kind.as_deref().unwrap_or("Service") != "Service" {
            return Err(bat.field("kind").error("ringway routes to Services only"));
        }
        let port = b
            .port
            .clone()
            .ok_or_else(|| bat.field("port").error("a Service backendRef needs a port"))?;
        let ns = b.namespace.as_deref().unwrap_or(&obj.namespace);
        nodes.push(index.services.node(
            ns,
            &b.name,
            &port,
            b.weight.unwrap_or(1),
            &bat.field("port"),
        )?);
    }
    Ok((!nodes.is_empty()).then(|| Upstream {
        nodes: Value::Array(nodes),
        ..Default::default()
    }))
}

fn route_of(m: &Match, at: &FieldPath) -> Result<Route, ConfigError> {
    let mut vars = Vec::new();
    let uris = match &m.path {
        None => vec!["/".to_owned(), "/*".to_owned()],
        Some(p) => {
            let value = p.value.clone().unwrap_or_else(|| "/".to_owned());
            match p.kind.as_deref().unwrap_or("PathPrefix") {
                "Exact" => vec![value],
                "PathPrefix" => {
                    let star = if value.ends_with('/') { format!("{value}*") } else { format!("{value}/*") };
                    vec![value, star]
                }
                "RegularExpression" => {
                    vars.push(json!(["uri", "~~", value]));
                    vec!["/*".to_owned()]
                }
                other => {
                    return Err(at.field("path").field("type").error(format!(
                        "`{other}` is not a path match type (expected Exact, PathPrefix, RegularExpression)"
                    )))
                }
            }
        }
    };
    for (list, field, prefix) in [
        (&m.headers, "headers", "http_"),
        (&m.query_params, "queryParams", "arg_"),
    ] {
        for (k, h) in list.iter().enumerate() {
            let op = match h.kind.as_deref().unwrap_or("Exact") {
                "Exact" => "==",
                "RegularExpression" => "~~",
                other => {
                    return Err(at.field(field).index(k).field("type").error(format!(
                        "`{other}` is not a match type (expected Exact, RegularExpression)"
                    )))
                }
            };
            let name = if prefix == "http_" {
                h.name.to_ascii_lowercase().replace('-', "_")
            } else {
                h.name.clone()
            };
            vars.push(json!([format!("{prefix}{name}"), op, h.value]));
        }
    }
    Ok(Route {
        uris: Some(uris),
        methods: m.method.clone().map(|m| vec![m]),
        vars: (!vars.is_empty()).then_some(Value::Array(vars)),
        ..Default::default()
    })
}

/// The controller's `calculateHTTPRoutePriority`: precise host length,
/// host length, method, header and query counts, then earlier rules.
fn priority(m: &Match, rule: usize, hosts: &[String]) -> i64 {
    let precise = hosts
        .iter()
        .filter(|h| !h.contains('*'))
        .map(|h| h.len())
        .max()
        .unwrap_or(0) as u64;
    let longest = hosts.iter().map(|h| h.len()).max().unwrap_or(0) as u64;
    let mut p: u64 = (precise << 31) | (longest << 23);
    if m.method.is_some() {
        p |= 1 << 22;
    }
    p |= (m.headers.len() as u64) << 17;
    p |= (m.query_params.len() as u64) << 12;
    p |= (16u64.saturating_sub(rule as u64)) << 7;
    i64::try_from(p).unwrap_or(i64::MAX)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ConsumerSpec {
    #[serde(default)]
    #[allow(dead_code)]
    gateway_ref: Value,
    #[serde(default)]
    credentials: Vec<CredentialSpec>,
    #[serde(default)]
    plugins: Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CredentialSpec {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    config: Option<Value>,
    #[serde(default)]
    secret_ref: Option<SecretRef>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretRef {
    name: String,
    #[serde(default)]
    namespace: Option<String>,
}

/// Translates a v1alpha1 Consumer: username `ns_name`, its credentials
/// (`config`, or every key of a Secret) and plugins.
pub fn consumer(obj: &Object, index: &Index, out: &mut Output) -> Result<(), ConfigError> {
    let at = obj.path("spec");
    let spec: ConsumerSpec = from_value(&obj.spec(), &at)?;
    let mut creds = Vec::new();
    for (i, c) in spec.credentials.into_iter().enumerate() {
        let cat = at.field("credentials").index(i);
        let config = match (c.config, c.secret_ref) {
            (Some(v), None) => v,
            (None, Some(r)) => {
                let ns = r.namespace.as_deref().unwrap_or(&obj.namespace);
                let data =
                    index
                        .secrets
                        .require(ns, &r.name, &cat.field("secretRef").field("name"))?;
                Value::Object(
                    data.iter()
                        .map(|(k, v)| (k.clone(), Value::from(v.clone())))
                        .collect(),
                )
            }
            _ => return Err(cat.error("set one of `config` and `secretRef`")),
        };
        let id = c.name.unwrap_or_else(|| format!("{}-{i}", c.kind));
        let mut plugins = PluginMap::new();
        plugins.insert(c.kind, config);
        let cred = Credential {
            id: Some(Value::from(id.clone())),
            plugins,
            ..Default::default()
        };
        creds.push((id, cred, cat));
    }
    let plugins = any_plugins(
        &spec.plugins,
        &at.field("plugins"),
        &obj.namespace,
        &index.secrets,
    )?;
    let consumer = Consumer {
        username: compose(&[&obj.namespace, &obj.name]),
        desc: Some(format!(
            "from Consumer {}/{} ({})",
            obj.namespace, obj.name, obj.file
        )),
        labels: labels(obj),
        plugins: Some(plugins),
        ..Default::default()
    };
    out.consumer(obj, consumer, creds, &at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(text: &str) -> Result<crate::config::Resources, ConfigError> {
        super::super::resources_of(text)
    }

    const ROUTE: &str = "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r, namespace: aic}\nspec:\n  parentRefs: [{name: apisix}]\n  hostnames: [a.example.com]\n  rules:\n    - matches:\n        - path: {type: PathPrefix, value: /v1}\n          method: POST\n          headers: [{name: X-Team, value: b}]\n        - path: {type: Exact, value: /x}\n      backendRefs: [{name: web, port: 80}]\n      filters: [{type: ExtensionRef, extensionRef: {group: apisix.apache.org, kind: PluginConfig, name: pc}}]\n---\napiVersion: apisix.apache.org/v1alpha1\nkind: PluginConfig\nmetadata: {name: pc, namespace: aic}\nspec: {plugins: [{name: key-auth, config: {_meta: {disable: false}}}]}\n";

    #[test]
    fn each_match_is_a_route_of_the_rules_service() {
        let r = res(ROUTE).unwrap();
        let svc = &r.services[&gen_id("aic_r_0")];
        assert_eq!(
            svc.plugins.as_ref().unwrap()["key-auth"],
            json!({"_meta": {"disable": false}})
        );
        assert_eq!(
            svc.upstream.as_ref().unwrap().nodes[0]["host"],
            "web.aic.svc.cluster.local"
        );
        let a = &r.routes[&gen_id("aic_r_0-0")];
        assert_eq!(a.uris, Some(vec!["/v1".into(), "/v1/*".into()]));
        assert_eq!(a.methods, Some(vec!["POST".into()]));
        assert_eq!(a.vars, Some(json!([["http_x_team", "==", "b"]])));
        let b = &r.routes[&gen_id("aic_r_0-1")];
        assert_eq!(b.uris, Some(vec!["/x".into()]));
        assert!(a.priority > b.priority, "a method and a header weigh more");
        assert_eq!(
            r.origin(crate::config::resources::Kind::Route, &gen_id("aic_r_0-1")),
            "HTTPRoute/aic/r: spec.rules[0].matches[1]"
        );
    }

    #[test]
    fn what_ringway_cannot_serve_is_refused_by_field() {
        let e = res(&ROUTE.replace("name: pc}}]", "name: nope}}]")).unwrap_err();
        assert_eq!(
            e.path,
            "HTTPRoute/aic/r: spec.rules[0].filters[0].extensionRef.name"
        );
        let e = res(&ROUTE.replace(
            "type: ExtensionRef, extensionRef",
            "type: RequestMirror, extensionRef",
        ))
        .unwrap_err();
        assert_eq!(e.path, "HTTPRoute/aic/r: spec.rules[0].filters[0].type");
        let e = res(&ROUTE.replace("backendRefs: [{name: web, port: 80}]", "backendRefs: []"))
            .unwrap_err();
        assert_eq!(e.path, "HTTPRoute/aic/r: spec.rules[0].backendRefs");
        let e = res(&ROUTE.replace("{name: web, port: 80}", "{name: web}")).unwrap_err();
        assert_eq!(e.path, "HTTPRoute/aic/r: spec.rules[0].backendRefs[0].port");
    }

    #[test]
    fn consumers_take_credentials_from_config_or_secrets() {
        let text = "apiVersion: apisix.apache.org/v1alpha1\nkind: Consumer\nmetadata: {name: jane, namespace: aic}\nspec:\n  gatewayRef: {name: apisix}\n  credentials:\n    - {type: key-auth, name: primary-key, config: {key: k1}}\n    - {type: key-auth, name: second, secretRef: {name: s}}\n  plugins: [{name: ai-rate-limiting, config: {limit: 1}}]\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: aic}\ndata: {key: azI=}\n";
        let r = res(text).unwrap();
        let creds = &r.credentials["aic_jane"];
        assert_eq!(
            creds["primary-key"].plugins["key-auth"],
            json!({"key": "k1"})
        );
        assert_eq!(creds["second"].plugins["key-auth"], json!({"key": "k2"}));
        assert_eq!(
            r.consumers["aic_jane"].plugins.as_ref().unwrap()["ai-rate-limiting"],
            json!({"limit": 1})
        );
    }
}
