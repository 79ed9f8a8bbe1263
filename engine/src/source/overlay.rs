//! The Admin API's changes over a configuration file, kept beside it so
//! they survive a restart and a reload of the file: for each resource the
//! API wrote, its stored JSON, or a tombstone for one it deleted. On disk
//! it is one JSON document, written whole to a temporary file, synced and
//! renamed over the old one (a crash leaves the old or the new, never
//! half of either), mode 0600: consumers' keys are in it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::resources::{Kind, Resources};

/// Changes by resource: `Some(value)` written, `None` deleted.
#[derive(Debug, Default, Clone)]
pub struct Overlay {
    changes: BTreeMap<(Kind, String), Option<Value>>,
}

/// The file's shape.
#[derive(Serialize, Deserialize)]
struct OnDisk {
    /// What wrote it, for people reading it.
    note: String,
    changes: Vec<Change>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Change {
    /// The collection (`routes`, `consumers`, `credentials`, …).
    kind: String,
    /// The id (`username/credential_id` for a credential).
    id: String,
    /// The stored JSON; absent when the resource was deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    value: Option<Value>,
}

/// Where the overlay of config file `config` is kept:
/// `<config>.admin.json`, beside it.
pub fn path_for(config: &Path) -> PathBuf {
    let mut name = config.file_name().unwrap_or_default().to_os_string();
    name.push(".admin.json");
    config.with_file_name(name)
}

impl Overlay {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    pub fn len(&self) -> usize {
        self.changes.len()
    }

    /// Records a write (`Some`) or a deletion (`None`).
    pub fn record(&mut self, kind: Kind, id: &str, value: Option<Value>) {
        let deleted_consumer = kind == Kind::Consumer && value.is_none();
        self.changes.insert((kind, id.to_owned()), value);
        if deleted_consumer {
            // A deleted consumer takes its credentials along.
            let prefix = format!("{id}/");
            self.changes.retain(|(k, i), v| {
                !(*k == Kind::Credential && i.starts_with(&prefix) && v.is_some())
            });
        }
    }

    /// Applies the changes to `res`. A change that no longer fits (its
    /// consumer is gone, its JSON is refused) is skipped with a log line
    /// naming it; the rest applies.
    pub fn apply(&self, res: &mut Resources, source: &Path) {
        for ((kind, id), value) in &self.changes {
            match value {
                None => res.remove(*kind, id),
                Some(v) => match res.insert_json(*kind, id, v) {
                    Ok(()) => {
                        res.origins.remove(&(*kind, id.clone()));
                    }
                    Err(e) => tracing::error!(
                        "{}: skipping the Admin API's {}/{id}: {e}",
                        source.display(),
                        kind.collection()
                    ),
                },
            }
        }
    }

    /// Reads `path`; an empty overlay when there is no such file.
    pub fn load(path: &Path) -> Result<Overlay, String> {
        let text = match std::fs::read(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Overlay::default()),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let disk: OnDisk =
            serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut o = Overlay::default();
        for (i, c) in disk.changes.into_iter().enumerate() {
            let kind = Kind::from_collection(&c.kind).ok_or_else(|| {
                format!(
                    "{}: changes[{i}].kind: unknown `{}`",
                    path.display(),
                    c.kind
                )
            })?;
            o.changes.insert((kind, c.id), c.value);
        }
        Ok(o)
    }

    /// Writes the overlay to `path` atomically, readable by this user only.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let disk = OnDisk {
            note: "ringway: Admin API changes over the configuration file; \
                   delete this file and send SIGHUP to drop them"
                .into(),
            changes: self
                .changes
                .iter()
                .map(|((kind, id), value)| Change {
                    kind: kind.collection().to_owned(),
                    id: id.clone(),
                    value: value.clone(),
                })
                .collect(),
        };
        let text = serde_json::to_vec_pretty(&disk).map_err(std::io::Error::other)?;
        super::write_private(path, &text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_survive_a_round_trip_and_a_deleted_consumer_takes_its_credentials() {
        let dir = std::env::temp_dir().join(format!("ringway-overlay-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = path_for(&dir.join("gw.yaml"));
        assert_eq!(path, dir.join("gw.yaml.admin.json"));
        let mut o = Overlay::default();
        o.record(Kind::Route, "1", Some(serde_json::json!({"uri": "/a"})));
        o.record(
            Kind::Credential,
            "jack/k1",
            Some(serde_json::json!({"plugins": {}})),
        );
        o.record(Kind::Consumer, "jack", None);
        o.record(Kind::Upstream, "u", None);
        o.save(&path).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let back = Overlay::load(&path).unwrap();
        let keys: Vec<_> = back.changes.keys().cloned().collect();
        assert_eq!(
            keys,
            [
                (Kind::Route, "1".to_owned()),
                (Kind::Upstream, "u".to_owned()),
                (Kind::Consumer, "jack".to_owned())
            ]
        );
        assert!(back.changes[&(Kind::Upstream, "u".to_owned())].is_none());
        std::fs::write(
            &path,
            br#"{"note": "", "changes": [{"kind": "nope", "id": "1"}]}"#,
        )
        .unwrap();
        let e = Overlay::load(&path).unwrap_err();
        assert!(e.contains("changes[0].kind"), "{e}");
        assert!(Overlay::load(&dir.join("none.json")).unwrap().is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
