//! Where the running configuration comes from, and the one place that
//! changes it: the configuration file (re-read on `SIGHUP` and when it
//! changes, [`watch`]) with the Admin API's changes over it
//! ([`overlay`], kept beside the file so they survive restarts and
//! reloads).
//!
//! Every change — a file reload, an Admin API write — goes through
//! [`ConfigSource`] under one lock: the new resources are validated and
//! compiled whole (carrying the shared state: health, cooldowns, budgets,
//! logger sinks), then published at once; an invalid file or write
//! changes nothing and the error names the file (or resource) and field.
//! Workers pick the new snapshot up between requests; in-flight requests
//! finish on the one they started with.
//!
//! The `gateway:` section (listeners, workers, timeouts) is read at start
//! only, as APISIX reads `conf/config.yaml`: a reload that changes it
//! says so in the log and keeps the running settings.

pub mod document;
pub mod etcd;
pub mod overlay;
pub mod watch;

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
// The one lock of the engine, off the request path: it serializes
// configuration changes between the Admin API thread and the reload
// thread (workers only ever read the published snapshot).
#[allow(clippy::disallowed_types)]
use std::sync::Mutex;

use serde_json::Value;

use crate::config::resources::{Kind, Resources};
use crate::config::{ConfigError, GatewaySettings};
use crate::observe::metrics;
use crate::snapshot::{compile, SnapshotCell};
use overlay::Overlay;

/// The running configuration's sources; see the module docs.
pub struct ConfigSource {
    cell: Arc<SnapshotCell>,
    gateway: Arc<GatewaySettings>,
    /// The configuration files (`-c`, in order): re-read together.
    files: Vec<PathBuf>,
    /// With `config_provider: etcd`: where the configuration lives and
    /// Admin API changes go.
    etcd: Option<Arc<etcd::Etcd>>,
    #[allow(clippy::disallowed_types)]
    state: Mutex<State>,
    /// API-driven standalone: the document last accepted ([`document`]).
    document: arc_swap::ArcSwapOption<document::Accepted>,
}

struct State {
    overlay: Overlay,
    /// Where the overlay is kept (`None`: in memory only).
    overlay_path: Option<PathBuf>,
    /// The files' text as last read (valid or not), hashed: unchanged
    /// files are not compiled again, invalid ones not reported again.
    last_text: Option<u64>,
}

/// What a reload did.
#[derive(Debug, PartialEq, Eq)]
pub enum Reloaded {
    /// Published as this generation.
    Published(u64),
    /// The file's text is what was last read.
    Unchanged,
    /// There is no file (the configuration came from elsewhere).
    NoFile,
}

impl ConfigSource {
    /// The sources of the configuration `cell` serves, loaded from `file`
    /// (if any) with `gateway`: the Admin API's changes kept beside the
    /// file are applied at once (when they no longer compile over the
    /// file, the file alone is served and the log says why).
    pub fn open(
        cell: Arc<SnapshotCell>,
        gateway: Arc<GatewaySettings>,
        file: Option<PathBuf>,
    ) -> ConfigSource {
        ConfigSource::open_files(cell, gateway, file.into_iter().collect())
    }

    /// As [`Self::open`], from several files (`-c` repeated): the Admin
    /// API's changes are kept beside the first.
    pub fn open_files(
        cell: Arc<SnapshotCell>,
        gateway: Arc<GatewaySettings>,
        files: Vec<PathBuf>,
    ) -> ConfigSource {
        let file = files.first().cloned();
        // Saved Admin API changes exist only in the default mode: a data
        // plane has no Admin API, API-driven standalone replaces the whole
        // configuration, and with etcd the Admin API writes there.
        let overlay_path = file
            .as_deref()
            .filter(|_| gateway.deployment.is_none())
            .map(overlay::path_for);
        let overlay = match overlay_path.as_deref().map(Overlay::load) {
            Some(Ok(o)) => o,
            Some(Err(e)) => {
                tracing::error!("ignoring the Admin API's saved changes: {e}");
                Overlay::default()
            }
            None => Overlay::default(),
        };
        let last_text = crate::snapshot::read_files(&files)
            .ok()
            .map(|t| hash_texts(&t));
        let source = ConfigSource {
            cell,
            gateway,
            files,
            etcd: None,
            #[allow(clippy::disallowed_types)]
            state: Mutex::new(State {
                overlay,
                overlay_path,
                last_text,
            }),
            document: Default::default(),
        };
        source.apply_saved_changes();
        source.restore_document();
        source
    }

    fn apply_saved_changes(&self) {
        let state = self.lock();
        if state.overlay.is_empty() {
            return;
        }
        let at = state.overlay_path.clone().unwrap_or_default();
        let mut res = (*self.cell.load().resources).clone();
        state.overlay.apply(&mut res, &at);
        match self.publish(res) {
            Ok(generation) => tracing::info!(
                generation,
                changes = state.overlay.len(),
                "applied the Admin API's saved changes from {}",
                at.display()
            ),
            Err(e) => tracing::error!(
                "the Admin API's saved changes in {} do not fit the configuration file; serving the file alone: {e}",
                at.display()
            ),
        }
    }

    /// The sources of a configuration kept in etcd ([`etcd::start`] reads
    /// and publishes it).
    pub fn with_etcd(
        cell: Arc<SnapshotCell>,
        gateway: Arc<GatewaySettings>,
        etcd: Arc<etcd::Etcd>,
    ) -> ConfigSource {
        ConfigSource {
            etcd: Some(etcd),
            ..ConfigSource::open(cell, gateway, None)
        }
    }

    /// The etcd the configuration lives in, if it does.
    pub fn etcd(&self) -> Option<&Arc<etcd::Etcd>> {
        self.etcd.as_ref()
    }

    /// Publishes `res` whole (compiled, shared state carried over); on
    /// error nothing changes.
    pub fn replace(&self, res: Resources) -> Result<u64, ConfigError> {
        let _state = self.lock();
        self.publish(res)
    }

    /// The (first) configuration file, if the configuration came from
    /// one.
    pub fn file(&self) -> Option<&Path> {
        self.files.first().map(PathBuf::as_path)
    }

    /// Every configuration file, in the order given.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// The resources being served.
    pub fn current(&self) -> Arc<Resources> {
        self.cell.load().resources.clone()
    }

    /// An Admin API write (`Some`: the resource's stored JSON) or
    /// deletion (`None`) of one resource, over what is served now:
    /// validated, compiled and published whole, then saved beside the
    /// file. On error nothing changes.
    pub fn change(
        &self,
        kind: Kind,
        id: &str,
        value: Option<&Value>,
    ) -> Result<Arc<Resources>, ConfigError> {
        let mut state = self.lock();
        let mut next = (*self.current()).clone();
        match value {
            Some(v) => {
                next.insert_json(kind, id, v)?;
                next.origins.remove(&(kind, id.to_owned()));
            }
            None => next.remove(kind, id),
        }
        let generation = self.publish(next)?;
        tracing::info!(generation, "admin API change published");
        state.overlay.record(kind, id, value.cloned());
        if let Some(path) = &state.overlay_path {
            if let Err(e) = state.overlay.save(path) {
                // Served, but it will not survive a restart: say so.
                tracing::error!(
                    "cannot save the Admin API's changes to {}: {e}; they are served but lost at restart",
                    path.display()
                );
            }
        }
        Ok(self.current())
    }

    /// Re-reads the configuration files (`force`: even if their text did
    /// not change) and publishes them with the Admin API's changes over
    /// them. Invalid files change nothing; the error names the file and
    /// field.
    pub fn reload(&self, force: bool) -> Result<Reloaded, ConfigError> {
        if self.files.is_empty() {
            return Ok(Reloaded::NoFile);
        }
        let mut state = self.lock();
        let texts = crate::snapshot::read_files(&self.files)?;
        let h = hash_texts(&texts);
        if !force && state.last_text == Some(h) {
            return Ok(Reloaded::Unchanged);
        }
        state.last_text = Some(h);
        let result = self.reload_texts(&texts, &state);
        match &result {
            Ok(_) => metrics::CONFIG_RELOADS.inc(),
            Err(_) => metrics::CONFIG_RELOADS_REFUSED.inc(),
        }
        result.map(Reloaded::Published)
    }

    fn reload_texts(
        &self,
        texts: &[crate::config::files::FileText],
        state: &State,
    ) -> Result<u64, ConfigError> {
        let combined = crate::config::files::parse_files(texts, &crate::config::env::process_env)?;
        let parsed = &combined.parsed;
        if format!("{:?}", parsed.gateway) != format!("{:?}", self.gateway) {
            tracing::warn!(
                "the `gateway` section changed; it is read at start only: restart to apply it"
            );
        }
        let mut res = (*parsed.resources).clone();
        if let Some(at) = &state.overlay_path {
            state.overlay.apply(&mut res, at);
        }
        self.publish(res).map_err(|e| combined.attribute(e))
    }

    /// Compiles `res` as [`Self::publish`] would, publishing nothing.
    pub fn validate(&self, res: Resources) -> Result<(), ConfigError> {
        let prev = self.cell.load();
        compile(
            Arc::new(res),
            self.gateway.clone(),
            prev.tls.clone(),
            Some(&prev.shared),
        )
        .map(drop)
    }

    /// Compiles `res` (carrying the shared state over) and publishes it.
    fn publish(&self, res: Resources) -> Result<u64, ConfigError> {
        let prev = self.cell.load();
        let snap = compile(
            Arc::new(res),
            self.gateway.clone(),
            prev.tls.clone(),
            Some(&prev.shared),
        )?;
        Ok(self.cell.publish(snap))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding it left nothing half-published (publishing
        // is one store): the state is still good.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Writes `data` to `path` whole or not at all: a temporary file (mode
/// 0600, no symbolic link followed) synced and renamed over `path`, the
/// directory synced.
pub fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut tmp = path.as_os_str().to_os_string();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// One hash of the files' names and texts.
fn hash_texts(texts: &[crate::config::files::FileText]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for t in texts {
        t.name.hash(&mut h);
        t.text.hash(&mut h);
    }
    h.finish()
}
