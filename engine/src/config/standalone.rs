//! APISIX's standalone document: the body of `PUT /apisix/admin/configs`
//! in API-driven standalone mode (and the shape of APISIX's own
//! `apisix.yaml`). One array per collection (`routes`, `services`,
//! `upstreams`, `consumers` with the credentials among them as
//! `{"id": "<username>/credentials/<id>", …}`, `global_rules`,
//! `plugin_metadata` as `{"id": <plugin>, …settings}`, …) of APISIX
//! Admin API objects, each optionally carrying a `modifiedIndex`, and a
//! `<collection>_conf_version` number per collection.
//!
//! - [`next`] folds a request body into the document accepted before it,
//!   with APISIX's version rules (`apisix/admin/standalone.lua`, `update`):
//!   a collection's version may not go back; the same version keeps the
//!   collection as it was (whatever the body says); a missing one is the
//!   old one plus one, and the body's items replace the old ones.
//! - [`to_resources`] reads a document into [`Resources`], every resource's
//!   origin its place in the document (`routes[2]`), so a compile error
//!   names the resource and the field
//!   (`routes[2].plugins.ai-proxy-multi.instances[0].weight: …`).
//! - [`from_resources`] renders resources as a document (what the file
//!   held, before the first `PUT`).
//!
//! Nothing here decides when a document is published or kept: that is
//! [`crate::source::document`].

use serde_json::{Map, Value};

use super::error::{from_value, ConfigError, FieldPath};
use super::resources::{
    id_string, Consumer, Credential, GlobalRule, Kind, Resources, Route, Service, Upstream,
};

/// Every collection of APISIX's document (`ALL_RESOURCE_KEYS`: the HTTP
/// and stream etcd directories), each with its `_conf_version`.
pub const COLLECTIONS: [&str; 13] = [
    "routes",
    "services",
    "upstreams",
    "consumers",
    "global_rules",
    "plugin_metadata",
    "ssls",
    "stream_routes",
    "protos",
    "plugin_configs",
    "consumer_groups",
    "secrets",
    "plugins",
];

/// The collections ringway serves; an item in any other is refused.
const SERVED: [&str; 6] = [
    "routes",
    "services",
    "upstreams",
    "consumers",
    "global_rules",
    "plugin_metadata",
];

/// The metadata APISIX stores in the document beside the collections
/// (and answers as headers): accepted in a body (a document read back and
/// sent again), never taken from it.
pub const LAST_MODIFIED: &str = "X-Last-Modified";
pub const DIGEST: &str = "X-Digest";

/// `routes` → `routes_conf_version`.
pub fn version_key(collection: &str) -> String {
    format!("{collection}_conf_version")
}

/// A collection's version in `doc` (0 when it has none).
pub fn version(doc: &Map<String, Value>, collection: &str) -> i64 {
    doc.get(&version_key(collection))
        .and_then(whole_number)
        .unwrap_or(0)
}

fn whole_number(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                .map(|f| f as i64)
        }),
        _ => None,
    }
}

/// Checks a body's shape: every top-level key a collection, its
/// `_conf_version` (a number) or the metadata, every collection a list.
pub fn check_shape(body: &Map<String, Value>) -> Result<(), ConfigError> {
    for (key, value) in body {
        if let Some(collection) = COLLECTIONS.iter().find(|c| key == *c) {
            if !matches!(value, Value::Array(_) | Value::Null) {
                return Err(FieldPath::root().field(collection).error("expected a list"));
            }
        } else if COLLECTIONS.iter().any(|c| *key == version_key(c)) {
            if whole_number(value).is_none() {
                return Err(ConfigError::new("", format!("{key} must be a number")));
            }
        } else if key != LAST_MODIFIED && key != DIGEST {
            return Err(FieldPath::root().field(key).error(format!(
                "unknown field `{key}`: expected a collection ({}) or its `_conf_version`",
                COLLECTIONS.join(", ")
            )));
        }
    }
    Ok(())
}

/// The document that `body` makes of `prev` (the one accepted before),
/// or why it is refused as a whole ([`check_shape`], or a version that
/// goes back). The version messages are APISIX's, word for word (clients
/// match on `conf_version`).
pub fn next(
    prev: &Map<String, Value>,
    body: &Map<String, Value>,
) -> Result<Map<String, Value>, ConfigError> {
    check_shape(body)?;
    let mut out = Map::new();
    for collection in COLLECTIONS {
        let key = version_key(collection);
        let current = version(prev, collection);
        let wanted = match body.get(&key).and_then(whole_number) {
            None => current.saturating_add(1),
            Some(n) if n < current => {
                return Err(ConfigError::new(
                    "",
                    format!("{key} must be greater than or equal to ({current})"),
                ))
            }
            Some(n) => n,
        };
        out.insert(key, Value::from(wanted));
        // The same version: the collection stays as it was.
        let items = if wanted == current {
            prev.get(collection)
        } else {
            body.get(collection)
        };
        if let Some(Value::Array(a)) = items {
            if !a.is_empty() {
                out.insert(collection.to_owned(), Value::Array(a.clone()));
            }
        }
    }
    Ok(out)
}

/// The items of `collection` in `doc`.
fn items<'a>(doc: &'a Map<String, Value>, collection: &str) -> &'a [Value] {
    match doc.get(collection) {
        Some(Value::Array(a)) => a,
        _ => &[],
    }
}

/// Reads a document (as [`next`] made it) into resources. Every item is
/// checked with its place: `routes[2].uri`, `consumers[1].username`.
pub fn to_resources(doc: &Map<String, Value>) -> Result<Resources, ConfigError> {
    let root = FieldPath::root();
    for collection in COLLECTIONS {
        if !SERVED.contains(&collection) && !items(doc, collection).is_empty() {
            return Err(root.field(collection).index(0).error(format!(
                "ringway does not serve `{collection}` (it serves {}; TLS certificates are set in `gateway.tls`)",
                SERVED.join(", ")
            )));
        }
    }
    let mut res = Resources::default();
    for (i, item) in items(doc, "upstreams").iter().enumerate() {
        let at = root.field("upstreams").index(i);
        let (id, mut obj) = item_with_id(item, &at, i, "id")?;
        // ADC sends an upstream's description twice (`desc` and the
        // `description` it came with): one field here.
        if obj.contains_key("desc") {
            obj.remove("description");
        }
        let mut u: Upstream = from_value(&Value::Object(obj), &at)?;
        u.id = Some(Value::from(id.clone()));
        unique(res.upstreams.contains_key(&id), &at, &id)?;
        res.origins
            .insert((Kind::Upstream, id.clone()), at.to_string());
        res.upstreams.insert(id, u);
    }
    for (i, item) in items(doc, "services").iter().enumerate() {
        let at = root.field("services").index(i);
        let (id, obj) = item_with_id(item, &at, i, "id")?;
        let mut s: Service = from_value(&Value::Object(obj), &at)?;
        s.id = Some(Value::from(id.clone()));
        unique(res.services.contains_key(&id), &at, &id)?;
        res.origins
            .insert((Kind::Service, id.clone()), at.to_string());
        res.services.insert(id, s);
    }
    for (i, item) in items(doc, "routes").iter().enumerate() {
        let at = root.field("routes").index(i);
        let (id, mut obj) = item_with_id(item, &at, i, "id")?;
        match obj.remove("enable_websocket") {
            None | Some(Value::Bool(false)) => {}
            Some(_) => {
                return Err(at
                    .field("enable_websocket")
                    .error("ringway does not proxy WebSocket (only `false` is accepted)"))
            }
        }
        let mut r: Route = from_value(&Value::Object(obj), &at)?;
        r.id = Some(Value::from(id.clone()));
        unique(res.routes.contains_key(&id), &at, &id)?;
        res.origins
            .insert((Kind::Route, id.clone()), at.to_string());
        res.routes.insert(id, r);
    }
    add_consumers(&mut res, items(doc, "consumers"), &root.field("consumers"))?;
    for (i, item) in items(doc, "global_rules").iter().enumerate() {
        let at = root.field("global_rules").index(i);
        let (id, obj) = item_with_id(item, &at, i, "id")?;
        let mut g: GlobalRule = from_value(&Value::Object(obj), &at)?;
        g.id = Some(Value::from(id.clone()));
        unique(res.global_rules.contains_key(&id), &at, &id)?;
        // The compiler names a global rule's plugins by its origin.
        res.origins.insert(
            (Kind::GlobalRule, id.clone()),
            at.field("plugins").to_string(),
        );
        res.global_rules.insert(id, g);
    }
    for (i, item) in items(doc, "plugin_metadata").iter().enumerate() {
        let at = root.field("plugin_metadata").index(i);
        let Some(obj) = item.as_object() else {
            return Err(at.error("expected an object"));
        };
        // `{"id": <plugin name>, …its settings}`.
        let Some(name) = obj.get("id").and_then(id_string) else {
            return Err(at
                .field("id")
                .error("is required: the name of the plugin the metadata is for"));
        };
        let mut settings = obj.clone();
        settings.remove("id");
        modified_index(&mut settings, &at)?;
        unique(res.plugin_metadata.contains_key(&name), &at, &name)?;
        res.plugin_metadata.insert(name, Value::Object(settings));
    }
    Ok(res)
}

/// Consumers first, then the credentials among them
/// (`{"id": "<username>/credentials/<id>", "plugins": …}`, as APISIX tells
/// them apart), each of an existing consumer.
fn add_consumers(res: &mut Resources, list: &[Value], at: &FieldPath) -> Result<(), ConfigError> {
    let is_credential = |v: &Value| {
        v.get("id")
            .and_then(Value::as_str)
            .is_some_and(|id| id.contains("/credentials/"))
    };
    for (i, item) in list.iter().enumerate() {
        if is_credential(item) {
            continue;
        }
        let cat = at.index(i);
        let Some(obj) = item.as_object() else {
            return Err(cat.error("expected an object"));
        };
        let mut obj = obj.clone();
        modified_index(&mut obj, &cat)?;
        let c: Consumer = from_value(&Value::Object(obj), &cat)?;
        let name = c.username.clone();
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(cat
                .field("username")
                .error("must be a non-empty string of letters, digits, `_` or `-`"));
        }
        if res.consumers.contains_key(&name) {
            return Err(cat
                .field("username")
                .error(format!("duplicate username `{name}`")));
        }
        res.origins
            .insert((Kind::Consumer, name.clone()), cat.to_string());
        res.credentials.insert(name.clone(), Default::default());
        res.consumers.insert(name, c);
    }
    for (i, item) in list.iter().enumerate() {
        if !is_credential(item) {
            continue;
        }
        let cat = at.index(i);
        let mut obj = item.as_object().cloned().unwrap_or_default();
        modified_index(&mut obj, &cat)?;
        // ADC names a credential; the name has no effect.
        obj.remove("name");
        let full = obj
            .remove("id")
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let (user, id) = full.split_once("/credentials/").unwrap_or_default();
        let well_formed = |s: &str, extra: &[u8]| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b) || extra.contains(&b))
        };
        if !well_formed(user, b"") || !well_formed(id, b".") || full.len() > 128 {
            return Err(cat.field("id").error(
                "must be `<username>/credentials/<id>` (letters, digits, `-`, `_`; `.` in the id; at most 128 bytes)",
            ));
        }
        if !res.consumers.contains_key(user) {
            return Err(cat
                .field("id")
                .error(format!("consumer `{user}` does not exist")));
        }
        let mut cred: Credential = from_value(&Value::Object(obj), &cat)?;
        cred.id = Some(Value::from(id));
        let creds = res.credentials.entry(user.to_owned()).or_default();
        if creds.contains_key(id) {
            return Err(cat
                .field("id")
                .error(format!("duplicate credential `{full}`")));
        }
        creds.insert(id.to_owned(), cred);
        res.origins
            .insert((Kind::Credential, format!("{user}/{id}")), cat.to_string());
    }
    Ok(())
}

/// An item's object without its `modifiedIndex`, and its id: the `id`
/// given (a string or a number, 1-64 letters, digits, `-`, `_`, `.`) or,
/// as APISIX keys an item without one, `arr_<position from 1>`.
fn item_with_id(
    item: &Value,
    at: &FieldPath,
    index: usize,
    id_field: &str,
) -> Result<(String, Map<String, Value>), ConfigError> {
    let Some(obj) = item.as_object() else {
        return Err(at.error("expected an object"));
    };
    let mut obj = obj.clone();
    modified_index(&mut obj, at)?;
    let id = match obj.get(id_field) {
        None | Some(Value::Null) => format!("arr_{}", index + 1),
        Some(v) => id_string(v)
            .filter(|s| {
                s.len() <= 64
                    && s.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            })
            .ok_or_else(|| {
                at.field(id_field)
                    .error("must be 1-64 letters, digits, `-`, `_` or `.` (or a number)")
            })?,
    };
    Ok((id, obj))
}

/// Takes an item's `modifiedIndex` out (an integer when given; APISIX's
/// own use of it is noted in the README).
fn modified_index(obj: &mut Map<String, Value>, at: &FieldPath) -> Result<(), ConfigError> {
    match obj.remove("modifiedIndex") {
        None => Ok(()),
        Some(v) if whole_number(&v).is_some() => Ok(()),
        Some(_) => Err(at.field("modifiedIndex").error("must be an integer")),
    }
}

fn unique(taken: bool, at: &FieldPath, id: &str) -> Result<(), ConfigError> {
    if taken {
        return Err(at.field("id").error(format!("duplicate id `{id}`")));
    }
    Ok(())
}

/// `resources` as a document, every version 0: what the file held before
/// the first `PUT`.
pub fn from_resources(res: &Resources) -> Map<String, Value> {
    let mut doc = Map::new();
    for collection in COLLECTIONS {
        doc.insert(version_key(collection), Value::from(0));
    }
    let mut put = |collection: &str, list: Vec<Value>| {
        if !list.is_empty() {
            doc.insert(collection.to_owned(), Value::Array(list));
        }
    };
    let all = |kind: Kind, ids: Vec<&String>| -> Vec<Value> {
        ids.into_iter()
            .filter_map(|id| res.get_json(kind, id))
            .collect()
    };
    put("routes", all(Kind::Route, res.routes.keys().collect()));
    put(
        "services",
        all(Kind::Service, res.services.keys().collect()),
    );
    put(
        "upstreams",
        all(Kind::Upstream, res.upstreams.keys().collect()),
    );
    let mut consumers = all(Kind::Consumer, res.consumers.keys().collect());
    for (user, creds) in &res.credentials {
        for (id, c) in creds {
            if let Ok(Value::Object(mut m)) = serde_json::to_value(c) {
                m.insert(
                    "id".into(),
                    Value::String(format!("{user}/credentials/{id}")),
                );
                consumers.push(Value::Object(m));
            }
        }
    }
    put("consumers", consumers);
    put(
        "global_rules",
        all(Kind::GlobalRule, res.global_rules.keys().collect()),
    );
    let metadata = res
        .plugin_metadata
        .iter()
        .filter_map(|(name, v)| {
            let mut m = v.as_object()?.clone();
            m.insert("id".into(), Value::String(name.clone()));
            Some(Value::Object(m))
        })
        .collect();
    put("plugin_metadata", metadata);
    doc
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn versions_follow_apisix() {
        let empty = Map::new();
        // Nothing given: every collection is one more than before.
        let d = next(&empty, &map(json!({"routes": [{"id": "r1"}]}))).unwrap();
        assert_eq!(version(&d, "routes"), 1);
        assert_eq!(version(&d, "ssls"), 1);
        assert_eq!(d["routes"], json!([{"id": "r1"}]));
        // A version kept: that collection stays, whatever the body says.
        let d2 = next(
            &d,
            &map(json!({"routes_conf_version": 1, "routes": [{"id": "r2"}], "upstreams": [{"id": "u"}]})),
        )
        .unwrap();
        assert_eq!(d2["routes"], json!([{"id": "r1"}]));
        assert_eq!(d2["upstreams"], json!([{"id": "u"}]));
        assert_eq!(version(&d2, "upstreams"), 2);
        // A version raised: replaced (an empty body empties it).
        let d3 = next(&d2, &map(json!({"routes_conf_version": 15}))).unwrap();
        assert!(d3.get("routes").is_none());
        assert_eq!(version(&d3, "routes"), 15);
        // Back is refused, in APISIX's words.
        let e = next(&d3, &map(json!({"routes_conf_version": 3}))).unwrap_err();
        assert_eq!(
            e.to_string(),
            "routes_conf_version must be greater than or equal to (15)"
        );
        let e = next(&d3, &map(json!({"routes_conf_version": "adc"}))).unwrap_err();
        assert_eq!(e.to_string(), "routes_conf_version must be a number");
        let e = next(&d3, &map(json!({"route": []}))).unwrap_err();
        assert_eq!(e.path, "route");
        let e = next(&d3, &map(json!({"routes": {"id": 1}}))).unwrap_err();
        assert_eq!(e.path, "routes");
        // What GET answered can be sent back.
        let mut back = d3.clone();
        back.insert(LAST_MODIFIED.into(), json!(1));
        back.insert(DIGEST.into(), json!("x"));
        assert!(next(&d3, &back).is_ok());
    }

    #[test]
    fn an_adc_document_reads_into_resources_with_places() {
        let doc = map(json!({
            "services": [{"id": "svc", "name": "svc", "modifiedIndex": 3, "upstream_id": "svc",
                          "plugins": {}}],
            "upstreams": [{"id": "svc", "name": "svc", "desc": "d", "description": "d",
                           "nodes": [{"host": "127.0.0.1", "port": 80, "weight": 1}],
                           "modifiedIndex": 3}],
            "routes": [{"id": "r", "name": "r", "uris": ["/a"], "service_id": "svc", "status": 1,
                        "modifiedIndex": 1}, {"uri": "/b"}],
            "consumers": [
                {"id": "jack/credentials/k1", "name": "k1", "plugins": {"key-auth": {"key": "jk"}}},
                {"username": "jack", "modifiedIndex": 1}],
            "global_rules": [{"id": "key-auth", "plugins": {"key-auth": {}}}],
            "plugin_metadata": [{"id": "http-logger", "log_format": {"host": "$host"}}],
        }));
        let res = to_resources(&doc).unwrap();
        assert_eq!(res.routes["r"].service_id, Some(json!("svc")));
        assert_eq!(res.routes["arr_2"].uri.as_deref(), Some("/b"));
        assert_eq!(res.origin(Kind::Route, "arr_2"), "routes[1]");
        assert_eq!(
            res.credentials["jack"]["k1"].plugins["key-auth"],
            json!({"key": "jk"})
        );
        assert_eq!(res.origin(Kind::Credential, "jack/k1"), "consumers[0]");
        assert_eq!(
            res.plugin_metadata["http-logger"],
            json!({"log_format": {"host": "$host"}})
        );
        assert_eq!(
            res.origin(Kind::GlobalRule, "key-auth"),
            "global_rules[0].plugins"
        );
        // And back: the same resources.
        let again = to_resources(&from_resources(&res)).unwrap();
        assert_eq!(again.routes, res.routes);
        assert_eq!(again.credentials, res.credentials);
        assert_eq!(again.plugin_metadata, res.plugin_metadata);
    }

    #[test]
    fn errors_name_the_item_and_field() {
        for (doc, path) in [
            (
                json!({"routes": [{"id": "a", "uri": "/"}, {"id": "b", "uri": 1}]}),
                "routes[1].uri",
            ),
            (
                json!({"routes": [{"id": "a"}, {"id": "a"}]}),
                "routes[1].id",
            ),
            (json!({"routes": [{"id": "a b"}]}), "routes[0].id"),
            (
                json!({"routes": [{"id": "a", "modifiedIndex": "x"}]}),
                "routes[0].modifiedIndex",
            ),
            (
                json!({"routes": [{"id": "a", "enable_websocket": true}]}),
                "routes[0].enable_websocket",
            ),
            (
                json!({"consumers": [{"id": "ghost/credentials/k", "plugins": {}}]}),
                "consumers[0].id",
            ),
            (
                json!({"consumers": [{"id": "a/credentials/", "plugins": {}}]}),
                "consumers[0].id",
            ),
            (
                json!({"consumers": [{"username": "j"}, {"username": "j"}]}),
                "consumers[1].username",
            ),
            (
                json!({"consumers": [{"username": "j k"}]}),
                "consumers[0].username",
            ),
            (
                json!({"plugin_metadata": [{"log_format": {}}]}),
                "plugin_metadata[0].id",
            ),
            (
                json!({"ssls": [{"id": "1", "cert": "", "key": ""}]}),
                "ssls[0]",
            ),
            (json!({"upstreams": ["x"]}), "upstreams[0]"),
        ] {
            let e = to_resources(&map(doc.clone())).unwrap_err();
            assert_eq!(e.path, path, "{doc}: {e}");
        }
    }
}
