//! The resource model, shaped exactly like APISIX's Admin API objects
//! (routes, services, upstreams, consumers, credentials, global rules,
//! plugin metadata), so a
//! body from the APISIX docs deserialises unchanged. The ADC file
//! ([`super::adc`]) and the Admin API both produce these; [`crate::snapshot`]
//! compiles them.
//!
//! Structural checks (types, unknown fields) happen in serde with
//! `deny_unknown_fields`; plugin configs and upstream nodes stay JSON here
//! and are checked by their compilers, which know the field paths.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::ConfigError;

pub type PluginMap = BTreeMap<String, Value>;

/// APISIX `timeout` object, in seconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timeout {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub send: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeepalivePool {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTls {
    /// Verify the upstream certificate. APISIX defaults to false; ringway
    /// defaults to true (documented difference).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verify: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", alias = "description")]
    pub desc: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// `roundrobin` (default) or `chash`.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// `[{host, port, weight}]` (ADC / APISIX) or `{"host:port": weight}`.
    #[serde(default)]
    pub nodes: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pass_host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Timeout>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retries: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_timeout: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keepalive_pool: Option<KeepalivePool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<UpstreamTls>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash_on: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub create_time: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub update_time: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", alias = "description")]
    pub desc: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uris: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub methods: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hosts: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
    /// Conditions on the request's variables (APISIX's lua-resty-expr).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vars: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plugins: Option<PluginMap>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream: Option<Upstream>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_id: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_id: Option<Value>,
    /// 1 = enabled (default), 0 = disabled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Timeout>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub create_time: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub update_time: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", alias = "description")]
    pub desc: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hosts: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plugins: Option<PluginMap>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream: Option<Upstream>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_id: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub create_time: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub update_time: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Consumer {
    pub username: String,
    #[serde(skip_serializing_if = "Option::is_none", alias = "description")]
    pub desc: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plugins: Option<PluginMap>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub create_time: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub update_time: Option<i64>,
}

/// APISIX credential: `{id, plugins: {key-auth: {key}}}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credential {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none", alias = "description")]
    pub desc: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub plugins: PluginMap,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub create_time: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub update_time: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlobalRule {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<Value>,
    #[serde(default)]
    pub plugins: PluginMap,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub create_time: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub update_time: Option<i64>,
}

/// Every resource the gateway serves, keyed by id. Ordered maps keep
/// compilation and Admin API listings deterministic.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resources {
    pub routes: BTreeMap<String, Route>,
    pub services: BTreeMap<String, Service>,
    pub upstreams: BTreeMap<String, Upstream>,
    pub consumers: BTreeMap<String, Consumer>,
    /// Credentials per consumer username, by credential id.
    pub credentials: BTreeMap<String, BTreeMap<String, Credential>>,
    pub global_rules: BTreeMap<String, GlobalRule>,
    /// Per-plugin settings by plugin name (APISIX's `plugin_metadata`),
    /// kept as JSON and checked by [`crate::plugins::metadata`].
    pub plugin_metadata: BTreeMap<String, Value>,
    /// Where each resource came from, for error messages
    /// (`services[0].routes[1]` in a file, `/routes/1` over the Admin API).
    pub origins: BTreeMap<(Kind, String), String>,
}

/// Resource kinds, as named in Admin API paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Route,
    Service,
    Upstream,
    Consumer,
    Credential,
    GlobalRule,
    PluginMetadata,
}

/// A resource of type `T` from its JSON (errors relative to it).
fn typed<T: serde::de::DeserializeOwned>(value: &Value) -> Result<T, ConfigError> {
    super::from_value(value, &super::FieldPath::root())
}

impl Resources {
    /// The stored JSON of a resource (`id`: `user/credential` for a
    /// credential).
    pub fn get_json(&self, kind: Kind, id: &str) -> Option<Value> {
        let res = self;
        fn v<T: Serialize>(t: Option<&T>) -> Option<Value> {
            t.and_then(|t| serde_json::to_value(t).ok())
        }
        match kind {
            Kind::Route => v(res.routes.get(id)),
            Kind::Service => v(res.services.get(id)),
            Kind::Upstream => v(res.upstreams.get(id)),
            Kind::Consumer => v(res.consumers.get(id)),
            Kind::GlobalRule => v(res.global_rules.get(id)),
            Kind::PluginMetadata => res.plugin_metadata.get(id).cloned(),
            Kind::Credential => {
                let (user, cid) = id.split_once('/')?;
                v(res.credentials.get(user).and_then(|c| c.get(cid)))
            }
        }
    }

    /// Creates or replaces a resource from its stored JSON.
    pub fn insert_json(&mut self, kind: Kind, id: &str, value: &Value) -> Result<(), ConfigError> {
        let res = self;
        match kind {
            Kind::Route => {
                res.routes.insert(id.to_owned(), typed::<Route>(value)?);
            }
            Kind::Service => {
                res.services.insert(id.to_owned(), typed::<Service>(value)?);
            }
            Kind::Upstream => {
                res.upstreams
                    .insert(id.to_owned(), typed::<Upstream>(value)?);
            }
            Kind::Consumer => {
                res.consumers
                    .insert(id.to_owned(), typed::<Consumer>(value)?);
            }
            Kind::GlobalRule => {
                res.global_rules
                    .insert(id.to_owned(), typed::<GlobalRule>(value)?);
            }
            // Checked when the snapshot compiles (crate::plugins::metadata).
            Kind::PluginMetadata => {
                res.plugin_metadata.insert(id.to_owned(), value.clone());
            }
            Kind::Credential => {
                let (user, cid) = id.split_once('/').unwrap_or((id, ""));
                if !res.consumers.contains_key(user) {
                    return Err(ConfigError::new(
                        "",
                        format!("consumer `{user}` does not exist"),
                    ));
                }
                let cred = typed::<Credential>(value)?;
                res.credentials
                    .entry(user.to_owned())
                    .or_default()
                    .insert(cid.to_owned(), cred);
            }
        }
        Ok(())
    }

    /// Removes a resource (a consumer with its credentials).
    pub fn remove(&mut self, kind: Kind, id: &str) {
        let next = self;
        match kind {
            Kind::Route => drop(next.routes.remove(id)),
            Kind::Service => drop(next.services.remove(id)),
            Kind::Upstream => drop(next.upstreams.remove(id)),
            Kind::GlobalRule => drop(next.global_rules.remove(id)),
            Kind::PluginMetadata => drop(next.plugin_metadata.remove(id)),
            Kind::Consumer => {
                next.consumers.remove(id);
                next.credentials.remove(id);
            }
            Kind::Credential => {
                if let Some((user, cid)) = id.split_once('/') {
                    if let Some(c) = next.credentials.get_mut(user) {
                        c.remove(cid);
                    }
                }
            }
        }
    }

    /// The field path a resource came from in the file (`services[0]`),
    /// empty for Admin API resources (their errors are relative).
    pub fn origin(&self, kind: Kind, id: &str) -> String {
        self.origins
            .get(&(kind, id.to_owned()))
            .cloned()
            .unwrap_or_default()
    }
}

impl Kind {
    /// The Admin API collection name.
    pub fn collection(self) -> &'static str {
        match self {
            Kind::Route => "routes",
            Kind::Service => "services",
            Kind::Upstream => "upstreams",
            Kind::Consumer => "consumers",
            Kind::Credential => "credentials",
            Kind::GlobalRule => "global_rules",
            Kind::PluginMetadata => "plugin_metadata",
        }
    }

    /// The kind named by its collection ([`Self::collection`]).
    pub fn from_collection(name: &str) -> Option<Kind> {
        [
            Kind::Route,
            Kind::Service,
            Kind::Upstream,
            Kind::Consumer,
            Kind::Credential,
            Kind::GlobalRule,
            Kind::PluginMetadata,
        ]
        .into_iter()
        .find(|k| k.collection() == name)
    }
}

/// Renders an id given as a JSON string or number the way APISIX keys it.
pub fn id_string(id: &Value) -> Option<String> {
    match id {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}
