//! Where a Kubernetes backend (a `Service` named by an ApisixRoute
//! backend, an HTTPRoute backendRef, an ApisixUpstream external node)
//! sends requests. ringway runs outside the cluster's control plane: it
//! watches no Endpoints, so a Service becomes one upstream node, the
//! Service's cluster DNS name `<name>.<namespace>.svc.cluster.local`,
//! resolved by ringway's DNS like any upstream host. A `Service` of
//! `type: ExternalName` among the manifests overrides that with its
//! `externalName` (a host name or an address); a Service's named ports
//! resolve `servicePort: http`-style references.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::documents::Object;
use crate::config::error::{ConfigError, FieldPath};

/// What the manifests say about one Service.
#[derive(Debug, Default, Clone)]
struct ServiceInfo {
    external_name: Option<String>,
    /// Named ports: name → port.
    ports: BTreeMap<String, u16>,
}

/// The `Service` objects of the manifests.
#[derive(Debug, Default)]
pub struct Services {
    by_name: BTreeMap<(String, String), ServiceInfo>,
}

impl Services {
    /// Reads a `Service` object (only `type`, `externalName` and named
    /// `ports` matter here; the rest is the cluster's business).
    pub fn add(&mut self, obj: &Object) -> Result<(), ConfigError> {
        let spec = obj.spec();
        let at = obj.path("spec");
        let mut info = ServiceInfo::default();
        if spec.get("type").and_then(Value::as_str) == Some("ExternalName") {
            match spec.get("externalName") {
                Some(Value::String(s)) if !s.is_empty() => info.external_name = Some(s.clone()),
                _ => {
                    return Err(at
                        .field("externalName")
                        .error("an ExternalName Service needs a non-empty `externalName`"))
                }
            }
        }
        for (i, p) in spec
            .get("ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            if let (Some(name), Some(port)) = (p.get("name").and_then(Value::as_str), p.get("port"))
            {
                let port = port_number(port, &at.field("ports").index(i).field("port"))?;
                info.ports.insert(name.to_owned(), port);
            }
        }
        self.by_name
            .insert((obj.namespace.clone(), obj.name.clone()), info);
        Ok(())
    }

    /// The upstream node of Service `name` in `namespace` on `port` (a
    /// number, or a port name the Service defines), with `weight`.
    pub fn node(
        &self,
        namespace: &str,
        name: &str,
        port: &Value,
        weight: u64,
        at: &FieldPath,
    ) -> Result<Value, ConfigError> {
        let info = self.by_name.get(&(namespace.to_owned(), name.to_owned()));
        let port = match port {
            Value::String(s) if s.parse::<u16>().is_err() => *info
                .and_then(|i| i.ports.get(s))
                .ok_or_else(|| {
                    at.error(format!(
                        "named port `{s}`: no Service {namespace}/{name} among the manifests defines it"
                    ))
                })?,
            other => port_number(other, at)?,
        };
        let host = match info.and_then(|i| i.external_name.clone()) {
            Some(h) => h,
            None => format!("{name}.{namespace}.svc.cluster.local"),
        };
        Ok(json!({"host": host, "port": port, "weight": weight}))
    }
}

/// A port number 1..=65535 given as a number or a numeric string.
pub fn port_number(v: &Value, at: &FieldPath) -> Result<u16, ConfigError> {
    let n = match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse::<u64>().ok(),
        _ => None,
    };
    n.and_then(|n| u16::try_from(n).ok())
        .filter(|n| *n > 0)
        .ok_or_else(|| at.error("must be a port number between 1 and 65535"))
}

#[cfg(test)]
mod tests {
    use super::super::documents::{documents, objects};
    use super::*;

    #[test]
    fn services_resolve_by_cluster_dns_unless_external_name() {
        let mut s = Services::default();
        for o in objects(
            documents("apiVersion: v1\nkind: Service\nmetadata: {name: llm, namespace: aic}\nspec: {type: ExternalName, externalName: 127.0.0.1, ports: [{name: http, port: 8080}]}\n").unwrap(),
            "f",
        )
        .unwrap()
        {
            s.add(&o).unwrap();
        }
        let at = FieldPath::root();
        assert_eq!(
            s.node("aic", "llm", &json!("http"), 3, &at).unwrap(),
            json!({"host": "127.0.0.1", "port": 8080, "weight": 3})
        );
        assert_eq!(
            s.node("aic", "web", &json!(80), 1, &at).unwrap()["host"],
            "web.aic.svc.cluster.local"
        );
        assert!(s.node("aic", "web", &json!("http"), 1, &at).is_err());
        assert!(s.node("aic", "web", &json!(0), 1, &at).is_err());
    }
}
