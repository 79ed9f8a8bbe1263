//! The ADC declarative file format (what `adc sync -f adc.yaml` takes):
//! `services` with nested `routes`, `consumers` with nested `credentials`,
//! `global_rules` as a plugin map and `plugin_metadata` by plugin name.
//! Converts it into APISIX-shaped
//! [`Resources`], recording where each resource came from so compile errors
//! can name the file path of the bad field.

use serde_json::{Map, Value};

use super::error::{from_value, ConfigError, FieldPath};
use super::resources::{
    id_string, Consumer, Credential, GlobalRule, Kind, PluginMap, Resources, Route, Service,
};

/// Top-level keys of the file besides `gateway`.
const ROOT_KEYS: [&str; 6] = [
    "services",
    "consumers",
    "global_rules",
    "plugin_metadata",
    "gateway",
    "deployment",
];

/// Converts an (interpolated) ADC document into resources.
pub fn to_resources(doc: &Map<String, Value>) -> Result<Resources, ConfigError> {
    let root = FieldPath::root();
    for key in doc.keys() {
        if !ROOT_KEYS.contains(&key.as_str()) {
            return Err(root.field(key).error(format!(
                "unknown top-level field `{key}`, expected one of `services`, `consumers`, `global_rules`, `plugin_metadata`, `gateway`, `deployment`"
            )));
        }
    }
    let mut res = Resources::default();
    for (i, svc) in array_at(doc.get("services"), &root.field("services"))?
        .iter()
        .enumerate()
    {
        add_service(&mut res, svc, &root.field("services").index(i))?;
    }
    for (i, c) in array_at(doc.get("consumers"), &root.field("consumers"))?
        .iter()
        .enumerate()
    {
        add_consumer(&mut res, c, &root.field("consumers").index(i))?;
    }
    if let Some(rules) = doc.get("global_rules") {
        let at = root.field("global_rules");
        let plugins: PluginMap = from_value(rules, &at)?;
        if !plugins.is_empty() {
            res.global_rules.insert(
                "1".to_owned(),
                GlobalRule {
                    id: Some(Value::from("1")),
                    plugins,
                    ..Default::default()
                },
            );
            res.origins
                .insert((Kind::GlobalRule, "1".to_owned()), at.to_string());
        }
    }
    if let Some(meta) = doc.get("plugin_metadata") {
        // `{plugin name: settings}`, as in ADC; checked when compiled.
        res.plugin_metadata = from_value(meta, &root.field("plugin_metadata"))?;
    }
    Ok(res)
}

fn array_at<'a>(v: Option<&'a Value>, at: &FieldPath) -> Result<&'a [Value], ConfigError> {
    match v {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(_) => Err(at.error("expected a list")),
    }
}

fn object_at<'a>(v: &'a Value, at: &FieldPath) -> Result<&'a Map<String, Value>, ConfigError> {
    v.as_object().ok_or_else(|| at.error("expected a mapping"))
}

fn required_name(obj: &Map<String, Value>, at: &FieldPath) -> Result<String, ConfigError> {
    match obj.get("name") {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(_) => Err(at.field("name").error("must be a non-empty string")),
        None => Err(at.error("missing field `name`")),
    }
}

fn add_service(res: &mut Resources, v: &Value, at: &FieldPath) -> Result<(), ConfigError> {
    let obj = object_at(v, at)?;
    let name = required_name(obj, at)?;
    let mut rest = obj.clone();
    let routes = rest.remove("routes");
    let mut svc: Service = from_value(&Value::Object(rest), at)?;
    let id = match &svc.id {
        Some(id) => id_string(id).ok_or_else(|| {
            at.field("id")
                .error("must be a non-empty string or a number")
        })?,
        None => name,
    };
    if res.services.contains_key(&id) {
        return Err(at.field("name").error(format!("duplicate service `{id}`")));
    }
    svc.id = Some(Value::from(id.clone()));
    for (j, r) in array_at(routes.as_ref(), &at.field("routes"))?
        .iter()
        .enumerate()
    {
        let rat = at.field("routes").index(j);
        let robj = object_at(r, &rat)?;
        let rname = required_name(robj, &rat)?;
        if robj.contains_key("service_id") {
            return Err(rat
                .field("service_id")
                .error("routes nested in a service belong to it; remove `service_id`"));
        }
        let mut route: Route = from_value(r, &rat)?;
        let rid = match &route.id {
            Some(rid) => id_string(rid).ok_or_else(|| {
                rat.field("id")
                    .error("must be a non-empty string or a number")
            })?,
            None => rname,
        };
        if res.routes.contains_key(&rid) {
            return Err(rat.field("name").error(format!(
                "duplicate route `{rid}` (route names must be unique, or give each an `id`)"
            )));
        }
        route.id = Some(Value::from(rid.clone()));
        route.service_id = Some(Value::from(id.clone()));
        res.origins
            .insert((Kind::Route, rid.clone()), rat.to_string());
        res.routes.insert(rid, route);
    }
    res.origins
        .insert((Kind::Service, id.clone()), at.to_string());
    res.services.insert(id, svc);
    Ok(())
}

fn add_consumer(res: &mut Resources, v: &Value, at: &FieldPath) -> Result<(), ConfigError> {
    let obj = object_at(v, at)?;
    let mut rest = obj.clone();
    let creds = rest.remove("credentials");
    let consumer: Consumer = from_value(&Value::Object(rest), at)?;
    let username = consumer.username.clone();
    if username.is_empty()
        || !username
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(at
            .field("username")
            .error("must be a non-empty string of letters, digits, `_` or `-`"));
    }
    if res.consumers.contains_key(&username) {
        return Err(at
            .field("username")
            .error(format!("duplicate consumer `{username}`")));
    }
    let mut by_id = std::collections::BTreeMap::new();
    for (j, c) in array_at(creds.as_ref(), &at.field("credentials"))?
        .iter()
        .enumerate()
    {
        let cat = at.field("credentials").index(j);
        let (id, cred) = adc_credential(c, &cat)?;
        if by_id.contains_key(&id) {
            return Err(cat
                .field("name")
                .error(format!("duplicate credential `{id}`")));
        }
        res.origins.insert(
            (Kind::Credential, format!("{username}/{id}")),
            cat.to_string(),
        );
        by_id.insert(id, cred);
    }
    res.origins
        .insert((Kind::Consumer, username.clone()), at.to_string());
    res.credentials.insert(username.clone(), by_id);
    res.consumers.insert(username, consumer);
    Ok(())
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct AdcCredential {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    config: Value,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    labels: Option<std::collections::BTreeMap<String, String>>,
}

/// ADC `{name, type, config}` → APISIX `{id, plugins: {type: config}}`.
fn adc_credential(v: &Value, at: &FieldPath) -> Result<(String, Credential), ConfigError> {
    let c: AdcCredential = from_value(v, at)?;
    if c.name.is_empty() {
        return Err(at.field("name").error("must not be empty"));
    }
    let mut plugins = PluginMap::new();
    let config = if c.config.is_null() {
        Value::Object(Map::new())
    } else {
        c.config
    };
    plugins.insert(c.kind, config);
    Ok((
        c.name.clone(),
        Credential {
            id: Some(Value::from(c.name)),
            desc: c.description,
            labels: c.labels,
            plugins,
            ..Default::default()
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn nested_routes_and_credentials_become_resources() {
        let res = to_resources(&doc(json!({
            "services": [{"name": "svc", "upstream": {"nodes": [{"host": "127.0.0.1", "port": 80, "weight": 1}]},
                          "routes": [{"name": "r1", "uris": ["/a"]}, {"name": "r2", "uris": ["/b/*"], "methods": ["GET"]}]}],
            "consumers": [{"username": "johndoe", "credentials": [{"name": "key-auth", "type": "key-auth", "config": {"key": "john-key"}}]}],
            "global_rules": {"key-auth": {}}
        })))
        .unwrap();
        assert_eq!(res.routes.len(), 2);
        assert_eq!(res.routes["r2"].service_id, Some(json!("svc")));
        assert_eq!(res.origin(Kind::Route, "r2"), "services[0].routes[1]");
        assert_eq!(
            res.credentials["johndoe"]["key-auth"].plugins["key-auth"],
            json!({"key": "john-key"})
        );
        assert_eq!(res.global_rules.len(), 1);
    }

    #[test]
    fn errors_carry_paths() {
        let e = to_resources(&doc(json!({"services": [{"name": "s", "routes": [{"name": "r", "uris": ["/"], "bogus": 1}]}]}))).unwrap_err();
        assert_eq!(e.path, "services[0].routes[0].bogus");
        assert!(e.reason.contains("unknown field `bogus`"), "{e}");
        let e = to_resources(&doc(json!({"services": [{"routes": []}]}))).unwrap_err();
        assert_eq!(e.path, "services[0]");
        let e = to_resources(&doc(json!({"servics": []}))).unwrap_err();
        assert_eq!(e.path, "servics");
        let e = to_resources(&doc(
            json!({"services": [{"name": "s", "routes": [{"name": "r"}, {"name": "r"}]}]}),
        ))
        .unwrap_err();
        assert_eq!(e.path, "services[0].routes[1].name");
    }
}
