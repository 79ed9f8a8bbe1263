//! The Admin API's view of the resources: APISIX's `key`/`value` envelope,
//! `createdIndex`/`modifiedIndex` counters; changes go through the
//! configuration's [`ConfigSource`] (validated, compiled, published, saved
//! beside the file).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::config::resources::{Kind, Resources};
use crate::config::{ConfigError, GatewaySettings};
use crate::snapshot::SnapshotCell;
use crate::source::ConfigSource;

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

    /// Sees what is served now.
    pub fn refresh(&mut self) {
        self.res = self.source.current();
    }

    /// Writes (`Some`: the stored JSON) or deletes one resource; on error
    /// nothing changes.
    pub fn change(
        &mut self,
        kind: Kind,
        id: &str,
        value: Option<&Value>,
    ) -> Result<(), ConfigError> {
        self.res = self.source.change(kind, id, value)?;
        Ok(())
    }

    /// Records a write; returns (createdIndex, modifiedIndex).
    pub fn touch(&mut self, kind: Kind, id: &str) -> (u64, u64) {
        self.index += 1;
        let i = self.index;
        let e = self.indexes.entry((kind, id.to_owned())).or_insert((i, i));
        e.1 = i;
        *e
    }

    pub fn forget(&mut self, kind: Kind, id: &str) {
        self.indexes.remove(&(kind, id.to_owned()));
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
