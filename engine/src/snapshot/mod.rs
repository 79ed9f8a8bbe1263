//! The compiled, immutable view of the whole configuration that workers
//! serve from, and the cell that publishes new ones.
//!
//! A [`Snapshot`] is built off the request path (loader or Admin API
//! thread), then swapped in atomically. Workers keep a per-core `Rc` of the
//! current one and compare a generation counter between requests, so a
//! request never sees half a config and the hot path touches no shared
//! reference count.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

pub mod compile;
pub mod handler;
pub mod probed;

pub use compile::compile;
pub use handler::Handler;

use crate::config::gateway::GatewaySettings;
use crate::config::resources::Resources;
use crate::config::ConfigError;
use crate::plugins::PluginChain;
use crate::router::Router;
use crate::upstream::{TlsClients, UpstreamSpec};

/// A loaded and validated configuration file.
#[derive(Debug)]
pub struct Loaded {
    pub gateway: Arc<GatewaySettings>,
    pub snapshot: Snapshot,
    /// The (first) file it was read from: the Admin API's changes are
    /// kept beside it.
    pub file: Option<std::path::PathBuf>,
    /// Every file it was read from (re-read together on `SIGHUP` and
    /// change).
    pub files: Vec<std::path::PathBuf>,
}

/// Reads, interpolates, validates and compiles a config file.
pub fn load_file(path: &Path) -> Result<Loaded, ConfigError> {
    load_files(&[path.to_path_buf()])
}

/// Reads the files of one configuration (`-c` repeated: an ADC file and
/// files of Kubernetes manifests, [`crate::config::files`]), validates and
/// compiles it. An error names the file and field.
pub fn load_files(paths: &[std::path::PathBuf]) -> Result<Loaded, ConfigError> {
    let texts = read_files(paths)?;
    let combined = crate::config::files::parse_files(&texts, &crate::config::env::process_env)?;
    let crate::config::Parsed { gateway, resources } = &combined.parsed;
    let compiled = TlsClients::new(gateway.ssl_trusted_certificate.as_deref())
        .and_then(|tls| compile(resources.clone(), gateway.clone(), tls, None));
    let snapshot = compiled.map_err(|e| combined.attribute(e))?;
    Ok(Loaded {
        gateway: gateway.clone(),
        snapshot,
        file: paths.first().cloned(),
        files: paths.to_vec(),
    })
}

/// The text of each file, named as given.
pub fn read_files(
    paths: &[std::path::PathBuf],
) -> Result<Vec<crate::config::files::FileText>, ConfigError> {
    paths
        .iter()
        .map(|p| {
            let name = p.display().to_string();
            let text = crate::config::read_file(p).map_err(|e| e.in_source(&name))?;
            Ok(crate::config::files::FileText { name, text })
        })
        .collect()
}

/// Loads a config document from text (YAML, which includes JSON).
pub fn load_str(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Loaded, ConfigError> {
    let crate::config::Parsed { gateway, resources } = crate::config::parse_str(text, lookup)?;
    let tls = TlsClients::new(gateway.ssl_trusted_certificate.as_deref())?;
    let snapshot = compile(resources, gateway.clone(), tls, None)?;
    Ok(Loaded {
        gateway,
        snapshot,
        file: None,
        files: Vec::new(),
    })
}

#[derive(Debug)]
pub struct CompiledRoute {
    pub id: Arc<str>,
    pub name: Arc<str>,
    pub plugins: PluginChain,
    /// Its AI-path plugins over the global rules' (see
    /// [`crate::plugins::in_force`]).
    pub ai_plugins: crate::plugins::AiChain,
    pub handler: Handler,
    /// With a `_meta.filter` on `ai-proxy-multi`: the upstream that answers
    /// the requests the filter does not hold for.
    pub ai_bypass: Option<Arc<UpstreamSpec>>,
    /// Its labels in APISIX's metric families, escaped once.
    pub metrics: Arc<crate::observe::metrics::labels::RouteLabels>,
}

#[derive(Debug)]
pub struct Snapshot {
    pub generation: u64,
    pub gateway: Arc<GatewaySettings>,
    pub router: Router,
    pub routes: Vec<CompiledRoute>,
    /// Plugins of all global rules, run before each route's.
    pub global_plugins: PluginChain,
    pub consumers: crate::plugins::consumers::Consumers,
    /// What every log output redacts (`gateway.log_redaction`, key-auth's
    /// names), compiled once.
    pub redaction: crate::observe::redact::Redaction,
    /// Number of per-worker round-robin counters plain upstreams use.
    pub upstream_slots: usize,
    /// Instance health, cooldowns and tickets, carried across reloads.
    pub shared: crate::plugins::shared::SharedState,
    pub tls: TlsClients,
    /// The source resources (the Admin API edits a copy and recompiles).
    pub resources: Arc<Resources>,
}

/// Publishes snapshots to workers.
pub struct SnapshotCell {
    current: ArcSwap<Snapshot>,
    generation: AtomicU64,
}

impl SnapshotCell {
    pub fn new(snapshot: Snapshot) -> SnapshotCell {
        let generation = snapshot.generation;
        SnapshotCell {
            current: ArcSwap::from_pointee(snapshot),
            generation: AtomicU64::new(generation),
        }
    }

    /// The generation of the published snapshot (cheap: one relaxed load of
    /// a rarely written cache line).
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Publishes `snapshot` with the next generation number.
    pub fn publish(&self, mut snapshot: Snapshot) -> u64 {
        let generation = self.generation.load(Ordering::Acquire) + 1;
        snapshot.generation = generation;
        self.current.store(Arc::new(snapshot));
        self.generation.store(generation, Ordering::Release);
        generation
    }
}
