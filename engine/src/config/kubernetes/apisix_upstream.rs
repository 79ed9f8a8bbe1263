//! `ApisixUpstream` (`apisix.apache.org/v2`): the settings of a Service's
//! upstream when an ApisixRoute backend names the Service (same name), and
//! the nodes of an upstream an ApisixRoute rule refers to in `upstreams`
//! (`externalNodes`). What maps onto ringway's upstreams is read:
//! `loadbalancer` (roundrobin, chash with hashOn/key), `scheme`,
//! `retries`, `timeout`, `passHost`/`upstreamHost`, `externalNodes`
//! (Domain or Service). `healthCheck` is refused: ringway's plain
//! upstreams have no health checks (ai-proxy-multi instances do).

use serde::Deserialize;
use serde_json::{json, Value};

use super::apisix_route::{timeout, RuleTimeout};
use super::backends::Services;
use super::documents::Object;
use crate::config::error::{from_value, ConfigError};
use crate::config::resources::{Timeout, Upstream};

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Spec {
    #[serde(default)]
    #[allow(dead_code)]
    ingress_class_name: Option<String>,
    #[serde(default)]
    loadbalancer: Option<LoadBalancer>,
    #[serde(default)]
    scheme: Option<String>,
    #[serde(default)]
    retries: Option<i64>,
    #[serde(default)]
    timeout: Option<RuleTimeout>,
    #[serde(default)]
    external_nodes: Vec<ExternalNode>,
    #[serde(default)]
    pass_host: Option<String>,
    #[serde(default)]
    upstream_host: Option<String>,
    #[serde(default)]
    health_check: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct LoadBalancer {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    hash_on: Option<String>,
    #[serde(default)]
    key: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExternalNode {
    name: String,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    weight: Option<u64>,
    #[serde(default)]
    port: Option<Value>,
}

/// The settings an ApisixUpstream gives an upstream (everything but its
/// nodes).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Settings {
    kind: Option<String>,
    hash_on: Option<String>,
    key: Option<String>,
    scheme: Option<String>,
    retries: Option<i64>,
    timeout: Option<Timeout>,
    pass_host: Option<String>,
    upstream_host: Option<String>,
}

impl Settings {
    /// An upstream of `nodes` with these settings.
    pub fn upstream(self, nodes: Vec<Value>) -> Upstream {
        Upstream {
            kind: self.kind,
            hash_on: self.hash_on,
            key: self.key,
            scheme: self.scheme,
            retries: self.retries,
            timeout: self.timeout,
            pass_host: self.pass_host,
            upstream_host: self.upstream_host,
            nodes: Value::Array(nodes),
            ..Default::default()
        }
    }
}

/// An ApisixUpstream's settings and its external nodes (Service nodes
/// resolved through `services`). Errors name its file.
pub fn read(au: &Object, services: &Services) -> Result<(Settings, Vec<Value>), ConfigError> {
    read_spec(au, services).map_err(|e| e.in_source(&au.file))
}

fn read_spec(au: &Object, services: &Services) -> Result<(Settings, Vec<Value>), ConfigError> {
    let at = au.path("spec");
    let spec: Spec = from_value(&au.spec(), &at)?;
    if spec.health_check.is_some() {
        return Err(at.field("healthCheck").error(
            "not supported: ringway's plain upstreams have no health checks (ai-proxy-multi instances do, with `checks`)",
        ));
    }
    let mut s = Settings {
        scheme: spec.scheme.clone(),
        retries: spec.retries,
        pass_host: spec.pass_host,
        upstream_host: spec.upstream_host,
        ..Default::default()
    };
    if let Some(lb) = spec.loadbalancer {
        s.kind = Some(lb.kind);
        s.hash_on = lb.hash_on;
        s.key = lb.key;
    }
    if let Some(t) = &spec.timeout {
        s.timeout = Some(timeout(t, &at.field("timeout"))?);
    }
    let default_port = if spec.scheme.as_deref() == Some("https") {
        443
    } else {
        80
    };
    let mut nodes = Vec::new();
    for (i, n) in spec.external_nodes.iter().enumerate() {
        let nat = at.field("externalNodes").index(i);
        let weight = n.weight.unwrap_or(100);
        let port = n.port.clone().unwrap_or_else(|| json!(default_port));
        match n.kind.as_deref() {
            Some("Domain") => {
                let port = super::backends::port_number(&port, &nat.field("port"))?;
                nodes.push(json!({"host": n.name, "port": port, "weight": weight}));
            }
            Some("Service") | None => {
                nodes.push(services.node(
                    &au.namespace,
                    &n.name,
                    &port,
                    weight,
                    &nat.field("port"),
                )?);
            }
            Some(other) => {
                return Err(nat.field("type").error(format!(
                    "`{other}` is not a node type (expected Domain or Service)"
                )))
            }
        }
    }
    Ok((s, nodes))
}

#[cfg(test)]
mod tests {
    use super::super::{documents, objects};
    use super::*;

    fn au(spec: &str) -> Object {
        let text = format!("apiVersion: apisix.apache.org/v2\nkind: ApisixUpstream\nmetadata: {{name: u, namespace: aic}}\nspec: {spec}\n");
        objects(documents(&text).unwrap(), "m.yaml")
            .unwrap()
            .remove(0)
    }

    #[test]
    fn settings_and_external_nodes() {
        let (s, nodes) = read(&au("{scheme: https, retries: 2, loadbalancer: {type: chash, hashOn: header, key: x-user}, timeout: {connect: 2s}, externalNodes: [{type: Domain, name: llm.example.com, weight: 3}]}"), &Services::default()).unwrap();
        let u = s.upstream(nodes);
        assert_eq!(u.kind.as_deref(), Some("chash"));
        assert_eq!(u.hash_on.as_deref(), Some("header"));
        assert_eq!(u.retries, Some(2));
        assert_eq!(u.timeout.unwrap().connect, Some(2.0));
        assert_eq!(
            u.nodes,
            json!([{"host": "llm.example.com", "port": 443, "weight": 3}])
        );
    }

    #[test]
    fn health_checks_are_refused_with_the_field() {
        let e = read(&au("{healthCheck: {active: {}}}"), &Services::default()).unwrap_err();
        assert_eq!(e.path, "ApisixUpstream/aic/u: spec.healthCheck");
        assert_eq!(e.source.as_deref(), Some("m.yaml"));
    }
}
