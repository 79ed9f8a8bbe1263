//! Plugin lists as the objects write them, turned into APISIX's plugin map
//! (`{name: config}`): the APISIX CRDs' `[{name, enable, config,
//! secretRef}]` (ApisixRoute, ApisixPluginConfig, ApisixGlobalRule) and the
//! v1alpha1 `[{name, config}]` (PluginConfig, Consumer). The configs stay
//! JSON here: the plugins' own compilers check them when the snapshot is
//! built, with the object's path in the error.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::secrets::{insert_key, Secrets};
use crate::config::error::{from_value, ConfigError, FieldPath};
use crate::config::resources::PluginMap;

/// A plugin of an APISIX CRD (`apisix.apache.org/v2`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CrdPlugin {
    name: String,
    /// The CRD's default is `true`.
    #[serde(default = "yes")]
    enable: bool,
    #[serde(default)]
    config: Value,
    /// A Secret (same namespace) whose keys are merged into `config`.
    #[serde(default)]
    secret_ref: Option<String>,
}

fn yes() -> bool {
    true
}

/// A plugin of a v1alpha1 object (`PluginConfig`, `Consumer`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AlphaPlugin {
    name: String,
    #[serde(default)]
    config: Value,
}

/// An APISIX CRD plugin list (at `at`, objects in `namespace`) into a
/// plugin map: disabled plugins left out, Secrets merged.
pub fn crd_plugins(
    list: &Value,
    at: &FieldPath,
    namespace: &str,
    secrets: &Secrets,
) -> Result<PluginMap, ConfigError> {
    if list.is_null() {
        return Ok(PluginMap::new());
    }
    let plugins: Vec<CrdPlugin> = from_value(list, at)?;
    let mut out = PluginMap::new();
    for (i, p) in plugins.into_iter().enumerate() {
        let pat = at.index(i);
        if !p.enable {
            continue;
        }
        let mut config = object_config(p.config, &pat.field("config"))?;
        if let Some(name) = &p.secret_ref {
            let data = secrets.require(namespace, name, &pat.field("secretRef"))?;
            for (k, v) in data {
                insert_key(&mut config, k, v);
            }
        }
        insert_unique(&mut out, p.name, config, &pat)?;
    }
    Ok(out)
}

/// A v1alpha1 plugin list into a plugin map.
pub fn alpha_plugins(list: &Value, at: &FieldPath) -> Result<PluginMap, ConfigError> {
    if list.is_null() {
        return Ok(PluginMap::new());
    }
    let plugins: Vec<AlphaPlugin> = from_value(list, at)?;
    let mut out = PluginMap::new();
    for (i, p) in plugins.into_iter().enumerate() {
        let pat = at.index(i);
        let config = object_config(p.config, &pat.field("config"))?;
        insert_unique(&mut out, p.name, config, &pat)?;
    }
    Ok(out)
}

/// A plugin list in either shape, or a plugin map (`{name: config}`, as
/// the seed writes an ApisixConsumer's `plugins`).
pub fn any_plugins(
    v: &Value,
    at: &FieldPath,
    namespace: &str,
    secrets: &Secrets,
) -> Result<PluginMap, ConfigError> {
    match v {
        Value::Null => Ok(PluginMap::new()),
        Value::Object(m) => {
            let mut out = PluginMap::new();
            for (name, c) in m {
                out.insert(name.clone(), object_config(c.clone(), &at.field(name))?);
            }
            Ok(out)
        }
        // `[{name, enable, config, secretRef}]` reads `[{name, config}]` too.
        _ => crd_plugins(v, at, namespace, secrets),
    }
}

fn object_config(config: Value, at: &FieldPath) -> Result<Value, ConfigError> {
    match config {
        Value::Null => Ok(Value::Object(Map::new())),
        Value::Object(m) => Ok(Value::Object(m)),
        _ => Err(at.error("a plugin's config must be a mapping")),
    }
}

fn insert_unique(
    out: &mut PluginMap,
    name: String,
    config: Value,
    at: &FieldPath,
) -> Result<(), ConfigError> {
    if name.is_empty() {
        return Err(at.field("name").error("must not be empty"));
    }
    if out.contains_key(&name) {
        return Err(at
            .field("name")
            .error(format!("plugin `{name}` is listed twice")));
    }
    out.insert(name, config);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn crd_plugins_skip_disabled_ones_and_default_to_enabled() {
        let at = FieldPath::from_origin("ApisixRoute/aic/r: spec.http[0].plugins".into());
        let m = crd_plugins(
            &json!([{"name": "key-auth"}, {"name": "x", "enable": false, "config": {"a": 1}}, {"name": "ai-proxy-multi", "enable": true, "config": {"instances": []}}]),
            &at,
            "aic",
            &Secrets::default(),
        )
        .unwrap();
        assert_eq!(m.keys().collect::<Vec<_>>(), ["ai-proxy-multi", "key-auth"]);
        assert_eq!(m["key-auth"], json!({}));
        let e = crd_plugins(
            &json!([{"name": "a", "secretRef": "nope"}]),
            &at,
            "aic",
            &Secrets::default(),
        )
        .unwrap_err();
        assert_eq!(
            e.path,
            "ApisixRoute/aic/r: spec.http[0].plugins[0].secretRef"
        );
        let e = crd_plugins(
            &json!([{"name": "a", "bogus": 1}]),
            &at,
            "aic",
            &Secrets::default(),
        )
        .unwrap_err();
        assert_eq!(
            e.path, "ApisixRoute/aic/r: spec.http[0].plugins[0].bogus",
            "{e}"
        );
    }

    #[test]
    fn consumer_plugins_may_be_a_map() {
        let at = FieldPath::root();
        let m = any_plugins(
            &json!({"ai-rate-limiting": {"limit": 1}}),
            &at,
            "d",
            &Secrets::default(),
        )
        .unwrap();
        assert_eq!(m["ai-rate-limiting"], json!({"limit": 1}));
        let m = any_plugins(
            &json!([{"name": "a", "config": {"k": 1}}]),
            &at,
            "d",
            &Secrets::default(),
        )
        .unwrap();
        assert_eq!(m["a"], json!({"k": 1}));
    }
}
