//! `ApisixConsumer` (`apisix.apache.org/v2`): a consumer named
//! `ns_name` (the controller's username) whose `key-auth` plugin holds
//! `authParameter.keyAuth.value.key`, or the `key` of the Secret
//! `authParameter.keyAuth.secretRef.name` (same namespace). ringway serves
//! `key-auth` only: other `authParameter`s are refused.
//!
//! `spec.plugins` (a plugin map, or a list) is read too, as the seed's
//! example writes it; the controller's CRD has no such field (the API
//! server drops it), so there the consumer's plugins would be lost.

use serde::Deserialize;
use serde_json::{json, Value};

use super::documents::Object;
use super::names::compose;
use super::output::{labels, Output};
use super::plugins::any_plugins;
use super::Index;
use crate::config::error::{from_value, ConfigError};
use crate::config::resources::Consumer;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Spec {
    #[serde(default)]
    #[allow(dead_code)]
    ingress_class_name: Option<String>,
    auth_parameter: AuthParameter,
    #[serde(default)]
    plugins: Value,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AuthParameter {
    #[serde(default)]
    key_auth: Option<KeyAuth>,
    #[serde(flatten)]
    others: serde_json::Map<String, Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct KeyAuth {
    #[serde(default)]
    value: Option<KeyValue>,
    #[serde(default)]
    secret_ref: Option<SecretRef>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyValue {
    key: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretRef {
    name: String,
}

/// Translates an ApisixConsumer.
pub fn translate(obj: &Object, index: &Index, out: &mut Output) -> Result<(), ConfigError> {
    let at = obj.path("spec");
    let spec: Spec = from_value(&obj.spec(), &at)?;
    let pat = at.field("authParameter");
    if let Some(other) = spec.auth_parameter.others.keys().next() {
        return Err(pat
            .field(other)
            .error("not supported by ringway (supported: keyAuth)"));
    }
    let kat = pat.field("keyAuth");
    let ka = spec
        .auth_parameter
        .key_auth
        .ok_or_else(|| kat.error("missing: ringway's consumers authenticate with keyAuth"))?;
    let key = match (ka.value, ka.secret_ref) {
        (Some(v), None) => v.key,
        (None, Some(r)) => {
            let sat = kat.field("secretRef").field("name");
            let data = index.secrets.require(&obj.namespace, &r.name, &sat)?;
            data.get("key")
                .filter(|k| !k.is_empty())
                .cloned()
                .ok_or_else(|| {
                    sat.error(format!(
                        "Secret {}/{} has no non-empty `key`",
                        obj.namespace, r.name
                    ))
                })?
        }
        _ => return Err(kat.error("set one of `value` and `secretRef`")),
    };
    let mut plugins = any_plugins(
        &spec.plugins,
        &at.field("plugins"),
        &obj.namespace,
        &index.secrets,
    )?;
    if plugins.contains_key("key-auth") {
        return Err(at
            .field("plugins")
            .field("key-auth")
            .error("the key comes from `authParameter.keyAuth`"));
    }
    plugins.insert("key-auth".into(), json!({"key": key}));
    let consumer = Consumer {
        username: compose(&[&obj.namespace, &obj.name]),
        desc: Some(format!(
            "from ApisixConsumer {}/{} ({})",
            obj.namespace, obj.name, obj.file
        )),
        labels: labels(obj),
        plugins: Some(plugins),
        ..Default::default()
    };
    out.consumer(obj, consumer, Vec::new(), &at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(text: &str) -> Result<crate::config::Resources, ConfigError> {
        super::super::resources_of(text)
    }

    const JOHN: &str = "apiVersion: apisix.apache.org/v2\nkind: ApisixConsumer\nmetadata: {name: johndoe, namespace: aic}\nspec:\n  authParameter: {keyAuth: {value: {key: john-key}}}\n  plugins: {ai-rate-limiting: {limit: 10}}\n";

    #[test]
    fn the_key_and_plugins_go_on_the_consumer_named_ns_name() {
        let r = res(JOHN).unwrap();
        let c = &r.consumers["aic_johndoe"];
        let p = c.plugins.as_ref().unwrap();
        assert_eq!(p["key-auth"], json!({"key": "john-key"}));
        assert_eq!(p["ai-rate-limiting"], json!({"limit": 10}));
    }

    #[test]
    fn a_key_from_a_secret() {
        let text = JOHN.replace("{value: {key: john-key}}", "{secretRef: {name: k}}")
            + "---\napiVersion: v1\nkind: Secret\nmetadata: {name: k, namespace: aic}\nstringData: {key: s3cret}\n";
        let r = res(&text).unwrap();
        assert_eq!(
            r.consumers["aic_johndoe"].plugins.as_ref().unwrap()["key-auth"]["key"],
            "s3cret"
        );
        let e =
            res(&JOHN.replace("{value: {key: john-key}}", "{secretRef: {name: k}}")).unwrap_err();
        assert_eq!(
            e.path,
            "ApisixConsumer/aic/johndoe: spec.authParameter.keyAuth.secretRef.name"
        );
        let e = res(&JOHN.replace(
            "{keyAuth: {value: {key: john-key}}}",
            "{basicAuth: {value: {username: a, password: b}}}",
        ))
        .unwrap_err();
        assert_eq!(
            e.path,
            "ApisixConsumer/aic/johndoe: spec.authParameter.basicAuth"
        );
    }
}
