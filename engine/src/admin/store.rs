//! The Admin API's view of the resources: APISIX's `key`/`value` envelope,
//! `createdIndex`/`modifiedIndex` counters; changes go through the
//! configuration's [`ConfigSource`] (validated, compiled, published, saved
//! beside the file) or, with `config_provider: etcd`, to etcd, whose
//! revisions are the indexes and from which reads come.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::config::resources::{Kind, Resources};
use crate::config::{ConfigError, GatewaySettings};
use crate::snapshot::SnapshotCell;
use crate::source::etcd::client::EtcdError;
use crate::source::etcd::keys;
use crate::source::ConfigSource;

/// Why a change was not made.
#[derive(Debug)]
pub enum ChangeError {
    /// It does not validate (400).
    Invalid(ConfigError),
    /// The resource changed since it was read (409).
    Conflict,
    /// The configuration store (etcd) cannot be reached (503).
    Unavailable(String),
}

impl From<ConfigError> for ChangeError {
    fn from(e: ConfigError) -> Self {
        ChangeError::Invalid(e)
    }
}

pub struct Store {
    /// What is served, as of this request (refreshed by [`Self::refresh`]:
    /// the file may have been reloaded since).
    pub res: Arc<Resources>,
    source: Arc<ConfigSource>,
    index: u64,
    /// (createdIndex, modifiedIndex) per resource.
    indexes: BTreeMap<(Kind, String), (u64, u64)>,
}

impl Store {
    /// A store over a configuration with no file (changes in memory).
    pub fn new(cell: Arc<SnapshotCell>, gateway: Arc<GatewaySettings>) -> Store {
        Store::over(Arc::new(ConfigSource::open(cell, gateway, None)))
    }

    /// A store whose changes go through `source`.
    pub fn over(source: Arc<ConfigSource>) -> Store {
        let mut s = Store {
            res: source.current(),
            source,
            index: 0,
            indexes: BTreeMap::new(),
        };
        let keys: Vec<(Kind, String)> = s.all_keys();
        for k in keys {
            s.index += 1;
            s.indexes.insert(k, (s.index, s.index));
        }
        s
    }

    fn all_keys(&self) -> Vec<(Kind, String)> {
        let mut v: Vec<(Kind, String)> = Vec::new();
        v.extend(self.res.routes.keys().map(|k| (Kind::Route, k.clone())));
        v.extend(self.res.services.keys().map(|k| (Kind::Service, k.clone())));
        v.extend(
            self.res
                .upstreams
                .keys()
                .map(|k| (Kind::Upstream, k.clone())),
        );
        v.extend(
            self.res
                .consumers
                .keys()
                .map(|k| (Kind::Consumer, k.clone())),
        );
        v.extend(
            self.res
                .global_rules
                .keys()
                .map(|k| (Kind::GlobalRule, k.clone())),
        );
        v.extend(
            self.res
                .plugin_metadata
                .keys()
                .map(|k| (Kind::PluginMetadata, k.clone())),
        );
        for (u, creds) in &self.res.credentials {
            v.extend(creds.keys().map(|k| (Kind::Credential, format!("{u}/{k}"))));
        }
        v
    }

    /// Where the configuration comes from and changes go.
    pub fn source(&self) -> &Arc<ConfigSource> {
        &self.source
    }

    /// Sees what is served now; with etcd, reads it from etcd (with its
    /// revisions as `createdIndex` / `modifiedIndex`).
    pub fn refresh(&mut self) -> Result<(), String> {
        let Some(etcd) = self.source.etcd().cloned() else {
            self.res = self.source.current();
            return Ok(());
        };
        let (_, kvs) = etcd.client().range_prefix().map_err(|e| e.to_string())?;
        let prefix = &etcd.settings.prefix;
        self.indexes = kvs
            .iter()
            .filter_map(|kv| {
                let at = (kv.create_revision as u64, kv.mod_revision as u64);
                keys::resource_of(prefix, &kv.key).map(|k| (k, at))
            })
            .collect();
        let kvs = kvs.into_iter().map(|kv| (kv.key.clone(), kv)).collect();
        self.res = Arc::new(keys::resources(prefix, &kvs));
        Ok(())
    }

    /// Writes (`Some`: the stored JSON) or deletes one resource; on error
    /// nothing changes. With etcd the change is validated against the
    /// whole configuration, written there (`patch`: only if the resource
    /// is still as read — compare-and-swap on its revision, as APISIX's
    /// PATCH) and served once the watch has brought it back.
    pub fn change(
        &mut self,
        kind: Kind,
        id: &str,
        value: Option<&Value>,
        patch: bool,
    ) -> Result<(), ChangeError> {
        let Some(etcd) = self.source.etcd().cloned() else {
            self.res = self.source.change(kind, id, value)?;
            return Ok(());
        };
        // Checked against what is served (keys that fail validation left
        // out), not the raw keys.
        let mut next = (*self.source.current()).clone();
        match value {
            Some(v) => {
                next.insert_json(kind, id, v)?;
                next.origins.remove(&(kind, id.to_owned()));
            }
            None => next.remove(kind, id),
        }
        self.source.validate(next)?;
        let key = keys::key_of(&etcd.settings.prefix, kind, id);
        let mut client = etcd.client();
        let down = |e: EtcdError| ChangeError::Unavailable(e.to_string());
        let revision = match value {
            Some(v) => {
                let expected = patch.then(|| self.indexes(kind, id).1 as i64);
                client
                    .put(&key, v.to_string().as_bytes(), expected)
                    .map_err(down)?
                    .ok_or(ChangeError::Conflict)?
            }
            None => client.delete(&key, kind == Kind::Consumer).map_err(down)?,
        };
        if !etcd.wait_applied(revision, etcd.settings.timeout) {
            tracing::warn!(
                revision,
                "written to etcd, not yet served (the watch is behind)"
            );
        }
        self.refresh().map_err(ChangeError::Unavailable)
    }

    /// Records a write; returns (createdIndex, modifiedIndex). (With etcd
    /// they are its revisions, read at [`Self::refresh`].)
    pub fn touch(&mut self, kind: Kind, id: &str) -> (u64, u64) {
        if self.source.etcd().is_some() {
            return self.indexes(kind, id);
        }
        self.index += 1;
        let i = self.index;
        let e = self.indexes.entry((kind, id.to_owned())).or_insert((i, i));
        e.1 = i;
        *e
    }

    pub fn forget(&mut self, kind: Kind, id: &str) {
        if self.source.etcd().is_none() {
            self.indexes.remove(&(kind, id.to_owned()));
        }
    }

    pub fn indexes(&self, kind: Kind, id: &str) -> (u64, u64) {
        self.indexes
            .get(&(kind, id.to_owned()))
            .copied()
            .unwrap_or((0, 0))
    }
}

/// APISIX's storage key for a resource (`/apisix/routes/1`).
pub fn key_of(kind: Kind, id: &str) -> String {
    match kind {
        Kind::Credential => {
            let (user, cid) = id.split_once('/').unwrap_or((id, ""));
            format!("/apisix/consumers/{user}/credentials/{cid}")
        }
        k => format!("/apisix/{}/{id}", k.collection()),
    }
}

/// `{"key": …, "value": …}` (plus indexes for reads).
pub fn envelope(kind: Kind, id: &str, value: Value, indexes: Option<(u64, u64)>) -> Value {
    let mut m = Map::new();
    m.insert("key".into(), Value::String(key_of(kind, id)));
    m.insert("value".into(), value);
    if let Some((c, mo)) = indexes {
        m.insert("createdIndex".into(), Value::from(c));
        m.insert("modifiedIndex".into(), Value::from(mo));
    }
    Value::Object(m)
}
