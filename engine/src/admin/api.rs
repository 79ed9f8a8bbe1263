//! Admin API operations, sans-IO: method + path + body in, status + JSON
//! out. Shapes follow APISIX 3.x: writes answer `{"key", "value"}` (201
//! when created, 200 when replaced), reads add `createdIndex` and
//! `modifiedIndex`, lists are `{"total", "list"}`, deletes answer
//! `{"key", "deleted": "1"}`, errors `{"error_msg": …}`. In API-driven
//! standalone mode [`super::configs`] answers first.

use http::Method;
use serde_json::{json, Map, Value};

use super::store::{envelope, ChangeError, Store};
use crate::config::resources::{id_string, Kind, Route};
use crate::config::ConfigError;

pub struct Reply {
    pub status: u16,
    pub body: Value,
    /// Headers to send besides the usual ones.
    pub headers: Vec<(&'static str, String)>,
    /// A body sent as is, with its content type, instead of `body`.
    pub raw: Option<(&'static str, Vec<u8>)>,
    /// The validation error behind a `400 invalid configuration` (the
    /// fuzz oracle checks it names a field).
    #[doc(hidden)]
    pub refused: Option<Box<ConfigError>>,
}

pub(super) fn reply(status: u16, body: Value) -> Reply {
    Reply {
        status,
        body,
        headers: Vec::new(),
        raw: None,
        refused: None,
    }
}

pub(super) fn error(status: u16, msg: impl Into<String>) -> Reply {
    reply(status, json!({ "error_msg": msg.into() }))
}

fn not_found() -> Reply {
    reply(404, json!({ "message": "Key not found" }))
}

/// Where an Admin API path points.
#[derive(Debug, PartialEq, Eq)]
enum Target {
    Collection(Kind),
    Item(Kind, String, Vec<String>),
    Credentials(String),
    Credential(String, String),
    /// `plugins/list`: the plugins this build runs.
    PluginList,
}

fn parse_path(path: &str) -> Option<Target> {
    let rest = path.strip_prefix("/apisix/admin/")?;
    let segs: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    if segs == ["plugins", "list"] {
        return Some(Target::PluginList);
    }
    let kind = match *segs.first()? {
        "routes" => Kind::Route,
        "services" => Kind::Service,
        "upstreams" => Kind::Upstream,
        "consumers" => Kind::Consumer,
        "global_rules" => Kind::GlobalRule,
        "plugin_metadata" => Kind::PluginMetadata,
        _ => return None,
    };
    match (kind, segs.as_slice()) {
        (_, [_]) => Some(Target::Collection(kind)),
        (Kind::Consumer, [_, user, "credentials"]) => Some(Target::Credentials((*user).to_owned())),
        (Kind::Consumer, [_, user, "credentials", id]) => {
            Some(Target::Credential((*user).to_owned(), (*id).to_owned()))
        }
        (_, [_, id, sub @ ..]) => Some(Target::Item(
            kind,
            (*id).to_owned(),
            sub.iter().map(|s| (*s).to_owned()).collect(),
        )),
        _ => None,
    }
}

/// An Admin API request as the handlers read it.
pub struct Request<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    pub query: Option<&'a str>,
    /// Name and value of every header, in order.
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
}

impl Request<'_> {
    /// The first value of header `name` (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Handles one authenticated Admin API request.
pub fn serve(store: &mut Store, req: &Request<'_>) -> Reply {
    if store.source().api_driven() {
        // No etcd here: seeing what is served cannot fail.
        let _ = store.refresh();
        if let Some(r) = super::configs::serve(store, req) {
            return r;
        }
    }
    handle(store, req.method, req.path, req.body)
}

/// Handles one authenticated request for a resource (no headers read).
pub fn handle(store: &mut Store, method: &Method, path: &str, body: &[u8]) -> Reply {
    if let Err(e) = store.refresh() {
        return error(503, format!("the configuration store is unavailable: {e}"));
    }
    let Some(target) = parse_path(path) else {
        return error(404, format!("no Admin API resource at {path}"));
    };
    let parsed_body = || -> Result<Map<String, Value>, Reply> {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(m)) => Ok(m),
            Ok(_) => Err(error(
                400,
                "invalid configuration: the body must be a JSON object",
            )),
            Err(e) => Err(error(400, format!("invalid request body: {e}"))),
        }
    };
    match (method.as_str(), target) {
        ("GET", Target::PluginList) => reply(200, json!(crate::plugins::SUPPORTED)),
        (_, Target::PluginList) => error(405, "plugins/list is read-only"),
        ("GET", Target::Collection(kind)) => list(store, kind),
        ("GET", Target::Item(kind, id, sub)) if sub.is_empty() => get(store, kind, &id),
        ("GET", Target::Credentials(user)) => list_credentials(store, &user),
        ("GET", Target::Credential(user, id)) => {
            get(store, Kind::Credential, &format!("{user}/{id}"))
        }
        ("PUT", Target::Collection(kind)) => {
            match parsed_body() {
                Ok(b) => {
                    let id_field = if kind == Kind::Consumer {
                        "username"
                    } else {
                        "id"
                    };
                    match b.get(id_field).and_then(id_string) {
                    Some(id) => put(store, kind, &id, b, false),
                    None => error(400, format!("invalid configuration: missing `{id_field}` (in the body or the path)")),
                }
                }
                Err(r) => r,
            }
        }
        ("PUT", Target::Item(kind, id, sub)) if sub.is_empty() => match parsed_body() {
            Ok(b) => put(store, kind, &id, b, false),
            Err(r) => r,
        },
        // Consumers are named by their username and plugin metadata by its
        // plugin: neither gets a generated id.
        ("POST", Target::Collection(kind))
            if kind != Kind::Consumer && kind != Kind::PluginMetadata =>
        {
            match parsed_body() {
                Ok(b) => {
                    let id = generated_id();
                    put(store, kind, &id, b, false)
                }
                Err(r) => r,
            }
        }
        ("PATCH", Target::Item(kind, id, sub)) => patch(store, kind, &id, &sub, body),
        ("DELETE", Target::Item(kind, id, sub)) if sub.is_empty() => delete(store, kind, &id),
        ("PUT", Target::Credentials(user)) => match parsed_body() {
            Ok(b) => match b.get("id").and_then(id_string) {
                Some(id) => put(store, Kind::Credential, &format!("{user}/{id}"), b, false),
                None => error(
                    400,
                    "invalid configuration: missing `id` (in the body or the path)",
                ),
            },
            Err(r) => r,
        },
        ("PUT", Target::Credential(user, id)) => match parsed_body() {
            Ok(b) => put(store, Kind::Credential, &format!("{user}/{id}"), b, false),
            Err(r) => r,
        },
        ("PATCH", Target::Credential(user, id)) => {
            patch(store, Kind::Credential, &format!("{user}/{id}"), &[], body)
        }
        ("DELETE", Target::Credential(user, id)) => {
            delete(store, Kind::Credential, &format!("{user}/{id}"))
        }
        (m, _) => error(405, format!("method {m} is not allowed here")),
    }
}

fn generated_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!("{:020}", nanos % 100_000_000_000_000_000_000)
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn get(store: &Store, kind: Kind, id: &str) -> Reply {
    match store.res.get_json(kind, id) {
        Some(v) => reply(200, envelope(kind, id, v, Some(store.indexes(kind, id)))),
        None => not_found(),
    }
}

fn list(store: &Store, kind: Kind) -> Reply {
    let ids: Vec<String> = match kind {
        Kind::Route => store.res.routes.keys().cloned().collect(),
        Kind::Service => store.res.services.keys().cloned().collect(),
        Kind::Upstream => store.res.upstreams.keys().cloned().collect(),
        Kind::Consumer => store.res.consumers.keys().cloned().collect(),
        Kind::GlobalRule => store.res.global_rules.keys().cloned().collect(),
        Kind::PluginMetadata => store.res.plugin_metadata.keys().cloned().collect(),
        Kind::Credential => Vec::new(),
    };
    let items: Vec<Value> = ids
        .iter()
        .filter_map(|id| {
            store
                .res
                .get_json(kind, id)
                .map(|v| envelope(kind, id, v, Some(store.indexes(kind, id))))
        })
        .collect();
    reply(200, json!({ "total": items.len(), "list": items }))
}

fn list_credentials(store: &Store, user: &str) -> Reply {
    if !store.res.consumers.contains_key(user) {
        return not_found();
    }
    let items: Vec<Value> = store
        .res
        .credentials
        .get(user)
        .into_iter()
        .flatten()
        .filter_map(|(cid, c)| {
            let id = format!("{user}/{cid}");
            serde_json::to_value(c).ok().map(|v| {
                envelope(
                    Kind::Credential,
                    &id,
                    v,
                    Some(store.indexes(Kind::Credential, &id)),
                )
            })
        })
        .collect();
    reply(200, json!({ "total": items.len(), "list": items }))
}

/// Creates or replaces a resource from its JSON body.
fn put(
    store: &mut Store,
    kind: Kind,
    id: &str,
    mut body: Map<String, Value>,
    patch: bool,
) -> Reply {
    let existing = store.res.get_json(kind, id);
    let created = existing
        .as_ref()
        .and_then(|v| v.get("create_time"))
        .and_then(Value::as_i64)
        .unwrap_or_else(now_secs);
    let id_field = if kind == Kind::Consumer {
        "username"
    } else {
        "id"
    };
    let own_id = if kind == Kind::Credential {
        id.split_once('/').map(|(_, c)| c).unwrap_or(id)
    } else {
        id
    };
    if let Some(given) = body.get(id_field).and_then(id_string) {
        if given != own_id {
            return error(400, format!("invalid configuration: `{id_field}` in the body ({given}) differs from the path ({own_id})"));
        }
    }
    if own_id.is_empty()
        || own_id.len() > 64
        || !own_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        return error(
            400,
            format!(
                "invalid configuration: `{id_field}` must be 1-64 letters, digits, `-`, `_` or `.`"
            ),
        );
    }
    body.insert(id_field.into(), Value::String(own_id.to_owned()));
    body.insert("create_time".into(), Value::from(created));
    body.insert("update_time".into(), Value::from(now_secs()));
    let value = Value::Object(body);
    if let Err(e) = store.change(kind, id, Some(&value), patch) {
        return refused(e);
    }
    store.touch(kind, id);
    let stored = store.res.get_json(kind, id).unwrap_or(Value::Null);
    reply(
        if existing.is_some() { 200 } else { 201 },
        envelope(kind, id, stored, None),
    )
}

fn refused(e: ChangeError) -> Reply {
    match e {
        ChangeError::Invalid(e) => invalid(e),
        ChangeError::Conflict => error(
            409,
            "the resource changed since it was read: read it again and retry",
        ),
        ChangeError::Unavailable(e) => {
            error(503, format!("the configuration store is unavailable: {e}"))
        }
    }
}

fn invalid(e: ConfigError) -> Reply {
    let mut r = error(400, format!("invalid configuration: {e}"));
    r.refused = Some(Box::new(e));
    r
}

/// JSON merge patch (RFC 7386) of the whole resource, or replacement of
/// the value at a sub-path (`PATCH /routes/1/plugins`).
fn patch(store: &mut Store, kind: Kind, id: &str, sub: &[String], body: &[u8]) -> Reply {
    let Some(mut value) = store.res.get_json(kind, id) else {
        return not_found();
    };
    let patch: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return error(400, format!("invalid request body: {e}")),
    };
    if sub.is_empty() {
        if !patch.is_object() {
            return error(400, "invalid configuration: the body must be a JSON object");
        }
        merge(&mut value, &patch);
    } else {
        let mut at = &mut value;
        for (i, seg) in sub.iter().enumerate() {
            let Some(obj) = at.as_object_mut() else {
                return error(
                    400,
                    format!(
                        "invalid configuration: `{}` is not an object",
                        sub[..i].join("/")
                    ),
                );
            };
            at = obj.entry(seg.clone()).or_insert(Value::Null);
        }
        *at = patch;
    }
    match value {
        Value::Object(m) => put(store, kind, id, m, true),
        _ => error(
            400,
            "invalid configuration: the resource must stay a JSON object",
        ),
    }
}

fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

fn delete(store: &mut Store, kind: Kind, id: &str) -> Reply {
    if store.res.get_json(kind, id).is_none() {
        return not_found();
    }
    let users = |pred: &dyn Fn(&Route) -> bool| -> Vec<String> {
        store
            .res
            .routes
            .iter()
            .filter(|(_, r)| pred(r))
            .map(|(k, _)| k.clone())
            .collect()
    };
    let same = |v: &Option<Value>| v.as_ref().and_then(id_string).as_deref() == Some(id);
    match kind {
        Kind::Service => {
            let r = users(&|r: &Route| same(&r.service_id));
            if !r.is_empty() {
                return error(
                    400,
                    format!(
                        "can not delete this service directly, route [{}] is still using it now",
                        r.join(", ")
                    ),
                );
            }
        }
        Kind::Upstream => {
            let r = users(&|r: &Route| same(&r.upstream_id));
            if !r.is_empty() {
                return error(
                    400,
                    format!(
                        "can not delete this upstream, route [{}] is still using it now",
                        r.join(", ")
                    ),
                );
            }
            let s: Vec<String> = store
                .res
                .services
                .iter()
                .filter(|(_, s)| same(&s.upstream_id))
                .map(|(k, _)| k.clone())
                .collect();
            if !s.is_empty() {
                return error(
                    400,
                    format!(
                        "can not delete this upstream, service [{}] is still using it now",
                        s.join(", ")
                    ),
                );
            }
        }
        _ => {}
    }
    if let Err(e) = store.change(kind, id, None, false) {
        return refused(e);
    }
    store.forget(kind, id);
    reply(
        200,
        json!({ "key": super::store::key_of(kind, id), "deleted": "1" }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(
            parse_path("/apisix/admin/routes"),
            Some(Target::Collection(Kind::Route))
        );
        assert_eq!(
            parse_path("/apisix/admin/routes/1"),
            Some(Target::Item(Kind::Route, "1".into(), vec![]))
        );
        assert_eq!(
            parse_path("/apisix/admin/routes/1/plugins/key-auth"),
            Some(Target::Item(
                Kind::Route,
                "1".into(),
                vec!["plugins".into(), "key-auth".into()]
            ))
        );
        assert_eq!(
            parse_path("/apisix/admin/consumers/john/credentials"),
            Some(Target::Credentials("john".into()))
        );
        assert_eq!(
            parse_path("/apisix/admin/consumers/john/credentials/k1"),
            Some(Target::Credential("john".into(), "k1".into()))
        );
        assert_eq!(parse_path("/apisix/admin/ssls"), None);
        assert_eq!(parse_path("/other"), None);
    }

    #[test]
    fn the_plugin_list_is_read_only() {
        assert_eq!(
            parse_path("/apisix/admin/plugins/list"),
            Some(Target::PluginList)
        );
        assert_eq!(parse_path("/apisix/admin/plugins/key-auth"), None);
    }

    #[test]
    fn merge_patch() {
        let mut v = json!({"a": 1, "b": {"c": 2, "d": 3}});
        merge(&mut v, &json!({"b": {"c": null, "e": 4}, "f": 5}));
        assert_eq!(v, json!({"a": 1, "b": {"d": 3, "e": 4}, "f": 5}));
    }
}
