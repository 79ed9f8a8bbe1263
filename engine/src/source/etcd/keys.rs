//! APISIX's key layout under the etcd prefix, and the configuration a
//! set of keys makes: `{prefix}/routes/{id}`, `services`, `upstreams`,
//! `consumers/{username}` and `consumers/{username}/credentials/{id}`,
//! `global_rules`, `plugin_metadata/{plugin}`, each value the resource's
//! JSON as APISIX's Admin API stores it. A key whose value fails
//! validation is left out with a log line naming the key and the field,
//! the rest stays live — as APISIX does.

use std::collections::BTreeMap;

use super::client::Kv;
use crate::config::resources::{Kind, Resources};
use crate::config::ConfigError;
use crate::observe::metrics;

/// Collections APISIX keeps that ringway does not serve (left out, said
/// once per key at debug level).
const NOT_SERVED: &[&str] = &[
    "plugin_configs",
    "ssls",
    "stream_routes",
    "protos",
    "secrets",
    "plugins",
    "data_plane",
    "consumer_groups",
];

/// The resource `key` holds, if it is one ringway serves.
pub fn resource_of(prefix: &str, key: &str) -> Option<(Kind, String)> {
    let rest = key.strip_prefix(prefix)?.strip_prefix('/')?;
    let (collection, id) = rest.split_once('/')?;
    if id.is_empty() {
        return None;
    }
    if collection == "consumers" {
        return Some(match id.split_once("/credentials/") {
            Some((user, cid)) if !cid.is_empty() && !cid.contains('/') => {
                (Kind::Credential, format!("{user}/{cid}"))
            }
            Some(_) => return None,
            None if id.contains('/') => return None,
            None => (Kind::Consumer, id.to_owned()),
        });
    }
    let kind = Kind::from_collection(collection).filter(|k| *k != Kind::Credential)?;
    (!id.contains('/')).then(|| (kind, id.to_owned()))
}

/// The key of a resource ([`resource_of`]'s inverse).
pub fn key_of(prefix: &str, kind: Kind, id: &str) -> String {
    match kind {
        Kind::Credential => {
            let (user, cid) = id.split_once('/').unwrap_or((id, ""));
            format!("{prefix}/consumers/{user}/credentials/{cid}")
        }
        k => format!("{prefix}/{}/{id}", k.collection()),
    }
}

/// The configuration `kvs` (by key, in key order: a consumer before its
/// credentials) make; invalid keys are skipped and logged. Each resource's
/// origin is its key, so compile errors name it.
pub fn resources(prefix: &str, kvs: &BTreeMap<String, Kv>) -> Resources {
    let mut res = Resources::default();
    for (key, kv) in kvs {
        let Some((kind, id)) = resource_of(prefix, key) else {
            let collection = key
                .strip_prefix(prefix)
                .and_then(|r| r.trim_start_matches('/').split('/').next())
                .unwrap_or("");
            if !NOT_SERVED.contains(&collection) {
                tracing::debug!("etcd key {key} is not a resource ringway serves");
            }
            continue;
        };
        let value: serde_json::Value = match serde_json::from_slice(&kv.value) {
            Ok(v) => v,
            Err(e) => {
                skip(key, &ConfigError::new("", format!("not JSON: {e}")));
                continue;
            }
        };
        if let Err(e) = res.insert_json(kind, &id, &value) {
            skip(key, &e);
            continue;
        }
        res.origins.insert((kind, id), key.clone());
    }
    res
}

/// Logs and counts a key left out.
pub fn skip(key: &str, e: &ConfigError) {
    metrics::ETCD_SKIPPED.inc();
    tracing::error!("etcd key {key} left out of the configuration: {e}");
}

/// The resource an error at `path` is about: the one whose origin (its
/// key) starts the path.
pub fn culprit(res: &Resources, path: &str) -> Option<(Kind, String)> {
    res.origins
        .iter()
        .filter(|(_, origin)| path.starts_with(origin.as_str()))
        .max_by_key(|(_, origin)| origin.len())
        .map(|(k, _)| k.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, value: &str) -> (String, Kv) {
        (
            key.to_owned(),
            Kv {
                key: key.to_owned(),
                value: value.as_bytes().to_vec(),
                create_revision: 1,
                mod_revision: 1,
            },
        )
    }

    #[test]
    fn apisix_keys_and_a_bad_value_left_out() {
        let p = "/apisix";
        assert_eq!(
            resource_of(p, "/apisix/routes/1"),
            Some((Kind::Route, "1".into()))
        );
        assert_eq!(
            resource_of(p, "/apisix/consumers/jack/credentials/k1"),
            Some((Kind::Credential, "jack/k1".into()))
        );
        assert_eq!(
            resource_of(p, "/apisix/consumers/jack"),
            Some((Kind::Consumer, "jack".into()))
        );
        assert_eq!(resource_of(p, "/apisix/routes"), None);
        assert_eq!(resource_of(p, "/apisix/routes/"), None);
        assert_eq!(resource_of(p, "/apisix/ssls/1"), None);
        assert_eq!(resource_of(p, "/apisix/credentials/1"), None);
        assert_eq!(resource_of(p, "/other/routes/1"), None);
        assert_eq!(
            key_of(p, Kind::Credential, "jack/k1"),
            "/apisix/consumers/jack/credentials/k1"
        );
        assert_eq!(
            key_of(p, Kind::PluginMetadata, "http-logger"),
            "/apisix/plugin_metadata/http-logger"
        );
        let kvs: BTreeMap<String, Kv> = [
            kv(
                "/apisix/routes/1",
                r#"{"uri": "/a", "upstream": {"nodes": {"127.0.0.1:1": 1}}}"#,
            ),
            kv("/apisix/routes/2", r#"{"uri": "/b", "bogus": 1}"#),
            kv("/apisix/routes/3", "not json"),
            kv("/apisix/ssls/1", "{}"),
        ]
        .into_iter()
        .collect();
        let res = resources(p, &kvs);
        assert_eq!(res.routes.keys().collect::<Vec<_>>(), ["1"]);
        assert_eq!(res.origin(Kind::Route, "1"), "/apisix/routes/1");
        assert_eq!(
            culprit(&res, "/apisix/routes/1.plugins.x"),
            Some((Kind::Route, "1".into()))
        );
    }
}
