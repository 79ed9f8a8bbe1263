//! Re-reading the configuration files: on `SIGHUP`, and when the
//! modification time or size of any of them changes (checked every
//! second, as APISIX checks its `apisix.yaml`); with `-c` repeated, all
//! files are read again together, so a gateway file and its manifests
//! always make one configuration. A file being written may be read half-way:
//! it fails validation, is reported once, and the finished file is read
//! at the next check. In API-driven standalone the file is read at start
//! only (`SIGHUP` is then ignored).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::{ConfigSource, Reloaded};
use crate::supervise::signal::Shutdown;
use crate::supervise::Component;

/// How often the file is checked.
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// How often the thread looks for `SIGHUP` and shutdown between checks.
const TICK: Duration = Duration::from_millis(100);

/// Starts the thread that re-reads `source`'s files (nothing when the
/// configuration has none).
pub fn start(source: Arc<ConfigSource>, shutdown: Arc<Shutdown>) -> std::io::Result<()> {
    let files = source.files().to_vec();
    let Some(file) = files.first().cloned() else {
        return Ok(());
    };
    let hup = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, hup.clone())?;
    if source.api_driven() {
        // The file's resources were only the first configuration: a
        // reload must not put them back over what the API sent.
        tracing::info!(
            "API-driven standalone: {} is read at start only (SIGHUP and edits are ignored); PUT /apisix/admin/configs replaces the configuration",
            file.display()
        );
        return Ok(());
    }
    crate::supervise::thread("ringway-config", Component::ConfigSource, move || {
        crate::supervise::fault(Component::ConfigSource);
        let mut seen = stamps(&files);
        let mut since_check = Duration::ZERO;
        while !shutdown.is_triggered() {
            std::thread::sleep(TICK);
            since_check += TICK;
            let asked = hup.swap(false, Ordering::AcqRel);
            if !asked && since_check < CHECK_EVERY {
                continue;
            }
            since_check = Duration::ZERO;
            let now = stamps(&files);
            if !asked && now == seen {
                continue;
            }
            seen = now;
            let why = match (asked, files.len()) {
                (true, _) => "SIGHUP",
                (false, 1) => "the file changed",
                (false, _) => "a file changed",
            };
            match source.reload(asked) {
                Ok(Reloaded::Published(generation)) => {
                    tracing::info!(
                        generation,
                        "configuration reloaded ({why}): {}",
                        names(&files)
                    )
                }
                Ok(_) => {}
                Err(e) => tracing::error!(
                    "configuration reload refused ({why}), still serving the previous one: {e}"
                ),
            }
        }
    })?;
    Ok(())
}

/// What tells a changed file: modification time and size.
fn stamp(file: &std::path::Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(file).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// The stamps of every file.
fn stamps(files: &[PathBuf]) -> Vec<Option<(SystemTime, u64)>> {
    files.iter().map(|f| stamp(f)).collect()
}

/// The files' names, for the log.
fn names(files: &[PathBuf]) -> String {
    files
        .iter()
        .map(|f| f.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
