//! `/apisix/admin/configs`: API-driven standalone mode's Admin API, as
//! APISIX's (`apisix/admin/standalone.lua`, `apisix/admin/config_validate.lua`)
//! and as the APISIX Ingress Controller drives it (through ADC's
//! `apisix-standalone` backend). Sans-IO like [`super::api`].
//!
//! | request | answer |
//! |---|---|
//! | `PUT /apisix/admin/configs` with `X-Digest` and the whole document (JSON, or YAML with `Content-Type: application/yaml`) | `202` and `X-Last-Modified` / `X-Digest`, the document published; `200` with `?wait=` (published is applied here); `204` when `X-Digest` is the current one (nothing read); `400` `{"error_msg"}` naming the resource and field, nothing changed |
//! | `GET /apisix/admin/configs` | `200`, the document with its versions (YAML with `Accept: application/yaml`) and `X-Last-Modified` / `X-Digest` |
//! | `HEAD /apisix/admin/configs` | `200`, the headers alone |
//! | `POST /apisix/admin/configs/validate` | `200` when the document would be accepted, else `400` `{"error_msg", "errors": [{resource_type, index, error}]}` |
//! | `HEAD` / `GET /apisix/admin` | `200` (ADC's ping and version probe) |
//! | a write to any other resource | `405`: the configuration changes whole, here |
//!
//! Reads of single resources (`GET /apisix/admin/routes/1`) answer from
//! what is served. The document's rules are [`crate::config::standalone`]'s;
//! publishing and keeping it, [`crate::source::document`]'s.

use serde_json::{json, Map, Value};

use super::api::{error, reply, Reply, Request};
use super::store::Store;
use crate::config::standalone::{self, DIGEST, LAST_MODIFIED};
use crate::config::ConfigError;
use crate::source::document::Accepted;

const CONFIGS: &str = "/apisix/admin/configs";
const VALIDATE: &str = "/apisix/admin/configs/validate";

/// Answers `req` if API-driven standalone mode answers it differently
/// from the resource endpoints (`None`: theirs).
pub fn serve(store: &mut Store, req: &Request<'_>) -> Option<Reply> {
    let path = req.path.trim_end_matches('/');
    let method = req.method.as_str();
    Some(match (method, path) {
        ("GET" | "HEAD", "/apisix/admin") => reply(200, Value::Null).with_raw(""),
        ("PUT", CONFIGS) => put(store, req),
        ("GET", CONFIGS) => get(store, req),
        ("HEAD", CONFIGS) => with_metadata(reply(200, Value::Null).with_raw(""), store),
        ("POST", VALIDATE) => validate(store, req),
        (_, CONFIGS | VALIDATE) => error(405, format!("method {method} is not allowed here")),
        ("GET" | "HEAD", _) => return None,
        _ => error(
            405,
            format!(
                "API-driven standalone mode: the configuration is replaced whole with PUT {CONFIGS}; {method} {path} is not allowed"
            ),
        ),
    })
}

impl Reply {
    /// This reply with `body` sent as is (`""`: no body).
    fn with_raw(mut self, body: &str) -> Reply {
        self.raw = Some(("application/json", body.as_bytes().to_vec()));
        self
    }
}

/// The accepted document's `X-Last-Modified` and `X-Digest` as headers
/// (none before the first).
fn with_metadata(mut r: Reply, store: &Store) -> Reply {
    if let Some(a) = store.source().document() {
        r.headers.push((LAST_MODIFIED, a.last_modified.to_string()));
        r.headers.push((DIGEST, a.digest.clone()));
    }
    r
}

/// The body as a document: YAML with `Content-Type: application/yaml`,
/// else JSON (as APISIX reads it).
fn document(req: &Request<'_>) -> Result<Map<String, Value>, Reply> {
    let invalid = |why: String| error(400, format!("invalid request body: {why}"));
    if req.body.is_empty() {
        return Err(invalid("empty request body".into()));
    }
    let yaml = req
        .header("content-type")
        .is_some_and(|t| t.trim_start().starts_with("application/yaml"));
    let value: Value = if yaml {
        let text = std::str::from_utf8(req.body).map_err(|e| invalid(e.to_string()))?;
        serde_yaml_ng::from_str(text).map_err(|e| invalid(e.to_string()))?
    } else {
        serde_json::from_slice(req.body).map_err(|e| invalid(e.to_string()))?
    };
    match value {
        Value::Object(m) => Ok(m),
        _ => Err(invalid("the document must be an object".into())),
    }
}

fn put(store: &mut Store, req: &Request<'_>) -> Reply {
    let Some(digest) = req.header(DIGEST) else {
        return error(400, "missing digest header");
    };
    let body = match document(req) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let source = store.source().clone();
    let current = source.document();
    if current.as_ref().is_some_and(|a| a.digest == digest) {
        // Accepted, not modified: the client sent this one already.
        return reply(204, Value::Null).with_raw("");
    }
    let prev = match &current {
        Some(a) => a.document.clone(),
        None => standalone::from_resources(&store.res),
    };
    let doc = match standalone::next(&prev, &body) {
        Ok(d) => d,
        Err(e) => return refused(e, &body),
    };
    let accepted = Accepted {
        document: doc.clone(),
        digest: digest.to_owned(),
        last_modified: now_secs(),
    };
    if let Err(e) = source.accept(accepted) {
        return refused(e, &doc);
    }
    // No etcd in this mode: seeing what is served cannot fail.
    let _ = store.refresh();
    // Published is applied: every worker serves it from its next request.
    let waited = req
        .query
        .and_then(|q| crate::plugins::key_auth::query_param(q.as_bytes(), b"wait"))
        .and_then(|w| std::str::from_utf8(w).ok()?.parse::<f64>().ok())
        .is_some_and(|w| w > 0.0);
    with_metadata(
        reply(if waited { 200 } else { 202 }, Value::Null).with_raw(""),
        store,
    )
}

fn get(store: &Store, req: &Request<'_>) -> Reply {
    let doc = match store.source().document() {
        Some(a) => {
            let mut d = a.document.clone();
            d.insert(LAST_MODIFIED.into(), Value::from(a.last_modified));
            d.insert(DIGEST.into(), Value::from(a.digest.clone()));
            d
        }
        None => standalone::from_resources(&store.res),
    };
    let yaml = req
        .header("accept")
        .is_some_and(|t| t.trim_start().starts_with("application/yaml"));
    let mut r = reply(200, Value::Null);
    let text = if yaml {
        serde_yaml_ng::to_string(&doc).map(String::into_bytes).ok()
    } else {
        serde_json::to_vec_pretty(&doc).ok()
    };
    let Some(text) = text else {
        return error(500, "cannot encode the configuration");
    };
    r.raw = Some((
        if yaml {
            "application/yaml"
        } else {
            "application/json"
        },
        text,
    ));
    with_metadata(r, store)
}

/// `POST /apisix/admin/configs/validate`: the checks of `PUT` (versions
/// aside: nothing is compared with the current document), nothing
/// published. ringway reports the first problem; APISIX lists one per
/// item it checks.
fn validate(store: &Store, req: &Request<'_>) -> Reply {
    let body = match document(req) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let checked = standalone::check_shape(&body)
        .and_then(|()| standalone::to_resources(&body))
        .and_then(|res| store.source().validate(res));
    match checked {
        Ok(()) => reply(200, Value::Null).with_raw(""),
        Err(e) => {
            let r = refused(e, &body);
            let mut entry = Map::new();
            for k in ["resource_type", "index"] {
                if let Some(v) = r.body.get(k) {
                    entry.insert(k.into(), v.clone());
                }
            }
            entry.insert("error".into(), r.body["error_msg"].clone());
            let mut out = reply(
                400,
                json!({"error_msg": "Configuration validation failed", "errors": [entry]}),
            );
            out.refused = r.refused;
            out
        }
    }
}

/// A `400` for a refused document: `error_msg` names the field
/// (`routes[2].plugins.ai-proxy-multi.instances[0].weight: …`; a version
/// refusal in APISIX's words), and `resource_type`, `index` and `id` say
/// which item it is in.
fn refused(e: ConfigError, doc: &Map<String, Value>) -> Reply {
    let msg = if e.path.is_empty() {
        e.to_string()
    } else {
        format!("invalid configuration: {e}")
    };
    let mut body = json!({ "error_msg": msg });
    if let Some((collection, index)) = item_of(&e.path, doc) {
        body["resource_type"] = Value::from(collection);
        body["index"] = Value::from(index);
        let item = doc
            .get(collection)
            .and_then(|l| l.get(index))
            .and_then(|i| i.get("id").or_else(|| i.get("username")));
        if let Some(id) = item.and_then(crate::config::resources::id_string) {
            body["id"] = Value::from(id);
        }
    }
    let mut r = reply(400, body);
    r.refused = Some(Box::new(e));
    r
}

/// The item an error path is in: `routes[2].plugins…` → (`routes`, 2);
/// plugin metadata, which the compiler names by plugin
/// (`plugin_metadata.http-logger.log_format`), by its `id` in `doc`.
fn item_of<'a>(path: &'a str, doc: &Map<String, Value>) -> Option<(&'a str, usize)> {
    if let Some(rest) = path.strip_prefix("plugin_metadata.") {
        let name = rest.split('.').next()?;
        let list = doc.get("plugin_metadata")?.as_array()?;
        let index = list
            .iter()
            .position(|m| m.get("id").and_then(Value::as_str) == Some(name))?;
        return Some(("plugin_metadata", index));
    }
    let (collection, rest) = path.split_once('[')?;
    let index = rest.split_once(']')?.0.parse().ok()?;
    standalone::COLLECTIONS
        .contains(&collection)
        .then_some((collection, index))
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_path_names_its_item() {
        let doc = json!({"plugin_metadata": [{"id": "kafka-logger"}, {"id": "http-logger"}]});
        let doc = doc.as_object().unwrap();
        let of = |p| item_of(p, doc);
        assert_eq!(
            of("routes[2].plugins.ai-proxy-multi.instances[0].weight"),
            Some(("routes", 2))
        );
        assert_eq!(of("consumers[10]"), Some(("consumers", 10)));
        assert_eq!(
            of("plugin_metadata.http-logger.log_format"),
            Some(("plugin_metadata", 1))
        );
        assert_eq!(of("plugin_metadata.ghost"), None);
        assert_eq!(of("services[0].routes[1]"), Some(("services", 0)));
        assert_eq!(of("nope[1]"), None);
    }

    #[test]
    fn a_refusal_names_the_item_by_index_and_id() {
        let doc = json!({"routes": [{"id": "a"}, {"id": 7, "uri": 1}],
                         "consumers": [{"username": "jack"}]});
        let doc = doc.as_object().unwrap();
        let r = refused(ConfigError::new("routes[1].uri", "invalid type"), doc);
        assert_eq!(r.status, 400);
        assert_eq!(
            r.body,
            json!({"error_msg": "invalid configuration: routes[1].uri: invalid type",
                   "resource_type": "routes", "index": 1, "id": "7"})
        );
        let r = refused(ConfigError::new("consumers[0].plugins", "x"), doc);
        assert_eq!(r.body["id"], "jack");
        // A version refusal is APISIX's sentence alone.
        let r = refused(
            ConfigError::new("", "routes_conf_version must be a number"),
            doc,
        );
        assert_eq!(
            r.body,
            json!({"error_msg": "routes_conf_version must be a number"})
        );
    }
}
