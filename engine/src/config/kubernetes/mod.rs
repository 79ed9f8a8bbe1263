//! Kubernetes objects as configuration: a file of manifests (documents
//! with `apiVersion` and `kind`, as `kubectl apply -f` takes them) is
//! translated, as the APISIX Ingress Controller translates them, into the
//! same APISIX-shaped [`Resources`] the ADC file and the Admin API make,
//! so every check and the compiler are shared. What each file owns:
//!
//! - [`documents`]: the multi-document split, each object's kind,
//!   namespace, name and file.
//! - [`secrets`]: `Secret` (`data` base64, `stringData`), and merging one
//!   into a plugin config (`secretRef`).
//! - [`backends`]: `Service` references becoming upstream nodes (cluster
//!   DNS names, or an `ExternalName`).
//! - [`names`]: route, service and consumer names and ids, as the
//!   controller derives them from namespace and name.
//! - [`plugins`]: the objects' plugin lists into plugin maps.
//! - [`apisix_route`], [`apisix_upstream`], [`apisix_consumer`]: the
//!   `apisix.apache.org/v2` CRDs (ApisixRoute with ApisixPluginConfig,
//!   ApisixUpstream, ApisixConsumer, ApisixGlobalRule).
//! - [`gateway_api`]: Gateway API `HTTPRoute` with APISIX's v1alpha1
//!   `PluginConfig` (an `ExtensionRef` filter) and `Consumer`.
//! - [`output`]: collecting the resources, refusing two objects that make
//!   the same one.
//!
//! Kinds ringway does not serve (Deployment, Gateway, GatewayClass,
//! IngressClass, GatewayProxy, ...) are named in one log line and left
//! alone. An object ringway cannot serve as written is refused: the error
//! names `Kind/namespace/name`, the field and the file. Manifests are read
//! as the cluster would store them: `${VAR}` is not replaced in them (use
//! a Secret).

pub mod apisix_consumer;
pub mod apisix_route;
pub mod apisix_upstream;
pub mod backends;
pub mod documents;
pub mod gateway_api;
pub mod names;
pub mod output;
pub mod plugins;
pub mod secrets;

use std::collections::BTreeMap;

use backends::Services;
use documents::Object;
use secrets::Secrets;

use super::error::ConfigError;
use super::resources::Resources;

pub use documents::{documents, is_object, objects};

/// `apisix.apache.org/v2`'s group.
pub const APISIX: &str = "apisix.apache.org";
/// The Gateway API's group.
pub const GATEWAY_API: &str = "gateway.networking.k8s.io";

/// The objects one object may refer to, by `(namespace, name)`.
#[derive(Default)]
pub struct Index<'a> {
    pub secrets: Secrets,
    pub services: Services,
    /// `ApisixPluginConfig` (v2).
    pub apisix_plugin_configs: BTreeMap<(String, String), &'a Object>,
    /// `ApisixUpstream` (v2).
    pub apisix_upstreams: BTreeMap<(String, String), &'a Object>,
    /// `PluginConfig` (v1alpha1).
    pub plugin_configs: BTreeMap<(String, String), &'a Object>,
}

/// What ringway does with an object of a kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Referred to by others (Secret, Service, plugin configs, upstreams).
    Referred,
    /// Becomes resources.
    Translated,
    /// Not ringway's business.
    Ignored,
}

/// The versions ringway reads of each kind it knows.
const KINDS: &[(&str, &str, &str, Role)] = &[
    ("", "v1", "Secret", Role::Referred),
    ("", "v1", "Service", Role::Referred),
    (APISIX, "v2", "ApisixPluginConfig", Role::Referred),
    (APISIX, "v2", "ApisixUpstream", Role::Referred),
    (APISIX, "v1alpha1", "PluginConfig", Role::Referred),
    (APISIX, "v2", "ApisixRoute", Role::Translated),
    (APISIX, "v2", "ApisixConsumer", Role::Translated),
    (APISIX, "v2", "ApisixGlobalRule", Role::Translated),
    (APISIX, "v1alpha1", "Consumer", Role::Translated),
    (GATEWAY_API, "v1", "HTTPRoute", Role::Translated),
];

fn role(obj: &Object) -> Result<Role, ConfigError> {
    let version = obj.api_version.rsplit('/').next().unwrap_or_default();
    let mut known = KINDS
        .iter()
        .filter(|(g, _, k, _)| *g == obj.group() && *k == obj.kind)
        .peekable();
    if known.peek().is_none() {
        return Ok(Role::Ignored);
    }
    let mut versions = Vec::new();
    for (g, v, _, role) in known {
        if *v == version {
            return Ok(*role);
        }
        versions.push(if g.is_empty() {
            v.to_string()
        } else {
            format!("{g}/{v}")
        });
    }
    Err(obj.path("apiVersion").error(format!(
        "`{}` is not a version ringway reads (expected {})",
        obj.api_version,
        versions.join(", ")
    )))
}

/// Translates the objects of every manifest file into resources. Errors
/// name the object, the field and the file.
pub fn to_resources(objects: &[Object]) -> Result<Resources, ConfigError> {
    let mut index = Index::default();
    let mut translated = Vec::new();
    let mut ignored = Vec::new();
    for obj in objects {
        let in_file = |e: ConfigError| e.in_source(&obj.file);
        let key = (obj.namespace.clone(), obj.name.clone());
        match role(obj).map_err(in_file)? {
            Role::Ignored => ignored.push(obj.id()),
            Role::Translated => translated.push(obj),
            Role::Referred => {
                let dup = match obj.kind.as_str() {
                    "Secret" => {
                        index.secrets.add(obj).map_err(in_file)?;
                        false
                    }
                    "Service" => {
                        index.services.add(obj).map_err(in_file)?;
                        false
                    }
                    "ApisixPluginConfig" => index.apisix_plugin_configs.insert(key, obj).is_some(),
                    "ApisixUpstream" => index.apisix_upstreams.insert(key, obj).is_some(),
                    _ => index.plugin_configs.insert(key, obj).is_some(),
                };
                if dup {
                    return Err(in_file(
                        obj.path("metadata")
                            .field("name")
                            .error(format!("{} is defined twice", obj.id())),
                    ));
                }
            }
        }
    }
    if !ignored.is_empty() {
        tracing::info!(
            "Kubernetes objects ringway does not serve, ignored: {}",
            ignored.join(", ")
        );
    }
    let mut out = output::Output::default();
    for obj in translated {
        let done = match obj.kind.as_str() {
            "ApisixRoute" => apisix_route::translate(obj, &index, &mut out),
            "ApisixConsumer" => apisix_consumer::translate(obj, &index, &mut out),
            "ApisixGlobalRule" => apisix_route::global_rule(obj, &index, &mut out),
            "Consumer" => gateway_api::consumer(obj, &index, &mut out),
            _ => gateway_api::http_route(obj, &index, &mut out),
        };
        done.map_err(|e| e.in_source(&obj.file))?;
    }
    Ok(out.res)
}

/// The resources a manifest's text translates to (the translators' unit
/// tests).
#[cfg(test)]
pub(crate) fn resources_of(text: &str) -> Result<Resources, ConfigError> {
    to_resources(&objects(documents(text).expect("documents"), "m.yaml").expect("objects"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn objs(text: &str) -> Vec<Object> {
        objects(documents(text).unwrap(), "m.yaml").unwrap()
    }

    #[test]
    fn unknown_kinds_are_left_alone_and_wrong_versions_refused() {
        let res = to_resources(&objs(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: g}\n",
        ))
        .unwrap();
        assert!(res.routes.is_empty());
        let e = to_resources(&objs(
            "apiVersion: apisix.apache.org/v2beta3\nkind: ApisixRoute\nmetadata: {name: r}\n",
        ))
        .unwrap_err();
        assert_eq!(e.path, "ApisixRoute/default/r: apiVersion");
        assert_eq!(e.source.as_deref(), Some("m.yaml"));
    }
}
