//! API-driven standalone (`deployment.role: traditional` with
//! `role_traditional.config_provider: yaml` or `json`): the configuration
//! is the last document `PUT /apisix/admin/configs` accepted (see
//! [`crate::admin::configs`]); until the first one, the file's resources.
//!
//! An accepted document is compiled whole and published at once, then
//! kept beside the configuration file in `<file>.configs.json` with its
//! digest and time (one JSON document written whole to a temporary file
//! and renamed over the old one, mode 0600: consumers' keys are in it).
//! At start that document is served again, before the first request:
//! a restart loses nothing. APISIX keeps it in memory only (a restarted
//! APISIX serves nothing until its controller pushes again).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::ConfigSource;
use crate::config::{standalone, ConfigError};

/// A document accepted by `PUT /apisix/admin/configs`.
#[derive(Debug, Clone, PartialEq)]
pub struct Accepted {
    /// The collections and their `_conf_version`s.
    pub document: Map<String, Value>,
    /// The client's `X-Digest` for it.
    pub digest: String,
    /// When it was accepted, in seconds since the epoch (`X-Last-Modified`).
    pub last_modified: u64,
}

/// The file's shape.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct OnDisk {
    /// What wrote it, for people reading it.
    note: String,
    last_modified: u64,
    digest: String,
    document: Map<String, Value>,
}

/// Where the accepted document of config file `config` is kept:
/// `<config>.configs.json`, beside it.
pub fn path_for(config: &Path) -> PathBuf {
    let mut name = config.file_name().unwrap_or_default().to_os_string();
    name.push(".configs.json");
    config.with_file_name(name)
}

/// Reads `path`; `None` when there is no such file.
pub fn load(path: &Path) -> Result<Option<Accepted>, String> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let disk: OnDisk =
        serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(Some(Accepted {
        document: disk.document,
        digest: disk.digest,
        last_modified: disk.last_modified,
    }))
}

/// Writes `accepted` to `path` whole, readable by this user only.
pub fn save(path: &Path, accepted: &Accepted) -> std::io::Result<()> {
    let disk = OnDisk {
        note: "ringway: the configuration last accepted by PUT /apisix/admin/configs, \
               served again at start; delete this file to start from the configuration file"
            .into(),
        last_modified: accepted.last_modified,
        digest: accepted.digest.clone(),
        document: accepted.document.clone(),
    };
    let text = serde_json::to_vec_pretty(&disk).map_err(std::io::Error::other)?;
    super::write_private(path, &text)
}

impl ConfigSource {
    /// Whether this node runs API-driven standalone.
    pub fn api_driven(&self) -> bool {
        self.gateway
            .deployment
            .as_ref()
            .is_some_and(|d| d.api_driven())
    }

    /// The document last accepted (`None` before the first).
    pub fn document(&self) -> Option<Arc<Accepted>> {
        self.document.load_full()
    }

    /// Publishes `accepted` in place of the whole configuration: read,
    /// validated and compiled whole first (an error names the resource
    /// and field; nothing changes), then published at once and kept
    /// beside the file. Returns the published generation.
    pub fn accept(&self, accepted: Accepted) -> Result<u64, ConfigError> {
        let res = standalone::to_resources(&accepted.document)?;
        let _state = self.lock();
        let generation = self.publish(res)?;
        tracing::info!(
            generation,
            digest = accepted.digest.as_str(),
            "configuration replaced (PUT /apisix/admin/configs)"
        );
        if let Some(path) = self.file().map(path_for) {
            if let Err(e) = save(&path, &accepted) {
                // Served, but it will not survive a restart: say so.
                tracing::error!(
                    "cannot keep the accepted configuration in {}: {e}; it is served but lost at restart",
                    path.display()
                );
            }
        }
        self.document.store(Some(Arc::new(accepted)));
        Ok(generation)
    }

    /// At start: serves the document kept beside the file, if there is one.
    pub(super) fn restore_document(&self) {
        if !self.api_driven() {
            return;
        }
        let Some(path) = self.file().map(path_for) else {
            return;
        };
        let accepted = match load(&path) {
            Ok(Some(a)) => a,
            Ok(None) => return,
            Err(e) => {
                tracing::error!("ignoring the accepted configuration: {e}");
                return;
            }
        };
        let published = standalone::to_resources(&accepted.document).and_then(|res| {
            let _state = self.lock();
            self.publish(res)
        });
        match published {
            Ok(generation) => {
                tracing::info!(
                    generation,
                    digest = accepted.digest.as_str(),
                    "serving the configuration last accepted by PUT /apisix/admin/configs, from {}",
                    path.display()
                );
                self.document.store(Some(Arc::new(accepted)));
            }
            Err(e) => tracing::error!(
                "the configuration last accepted by PUT /apisix/admin/configs ({}) no longer loads; serving the file's: {e}",
                path.display()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_survives_a_round_trip_readable_by_its_owner_only() {
        let dir = std::env::temp_dir().join(format!("ringway-document-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = path_for(&dir.join("gw.yaml"));
        assert_eq!(path, dir.join("gw.yaml.configs.json"));
        assert_eq!(load(&path).unwrap(), None);
        let a = Accepted {
            document: serde_json::json!({"routes_conf_version": 3, "routes": [{"id": "r"}]})
                .as_object()
                .cloned()
                .unwrap(),
            digest: "d1".into(),
            last_modified: 1_700_000_000,
        };
        save(&path, &a).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(load(&path).unwrap(), Some(a));
        std::fs::write(&path, b"{\"nope\": 1}").unwrap();
        assert!(load(&path).unwrap_err().contains("gw.yaml.configs.json"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
