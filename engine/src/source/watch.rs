//! Re-reading the configuration file: on `SIGHUP`, and when its
//! modification time or size changes (checked every second, as APISIX
//! checks its `apisix.yaml`). A file being written may be read half-way:
//! it fails validation, is reported once, and the finished file is read
//! at the next check. In API-driven standalone the file is read at start
//! only (`SIGHUP` is then ignored).

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

/// Starts the thread that re-reads `source`'s file (nothing when the
/// configuration has none).
pub fn start(source: Arc<ConfigSource>, shutdown: Arc<Shutdown>) -> std::io::Result<()> {
    let Some(file) = source.file().map(|f| f.to_path_buf()) else {
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
        let mut seen = stamp(&file);
        let mut since_check = Duration::ZERO;
        while !shutdown.is_triggered() {
            std::thread::sleep(TICK);
            since_check += TICK;
            let asked = hup.swap(false, Ordering::AcqRel);
            if !asked && since_check < CHECK_EVERY {
                continue;
            }
            since_check = Duration::ZERO;
            let now = stamp(&file);
            if !asked && now == seen {
                continue;
            }
            seen = now;
            let why = if asked { "SIGHUP" } else { "the file changed" };
            match source.reload(asked) {
                Ok(Reloaded::Published(generation)) => {
                    tracing::info!(
                        generation,
                        "configuration reloaded ({why}): {}",
                        file.display()
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
