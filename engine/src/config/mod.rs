//! Configuration: the file model, `${VAR}` interpolation, validation with
//! field paths, and compilation into the immutable [`Snapshot`] workers
//! serve from.
//!
//! Flow: YAML text → JSON value tree → interpolation → ADC conversion into
//! APISIX-shaped [`Resources`] → [`compile`] into a [`Snapshot`]. The Admin
//! API enters at `Resources`, so the file and the API share every check.

pub mod adc;
pub mod bounds;
pub mod compile;
pub mod consumers;
pub mod env;
pub mod error;
pub mod gateway;
pub mod resources;
pub mod shared;
pub mod snapshot;

use std::path::Path;
use std::sync::Arc;

pub use compile::compile;
pub use error::{from_value, ConfigError, FieldPath};
pub use gateway::GatewaySettings;
pub use resources::Resources;
pub use snapshot::{CompiledRoute, Handler, Snapshot, SnapshotCell};

use crate::upstream::TlsClients;

/// A loaded and validated configuration file.
#[derive(Debug)]
pub struct Loaded {
    pub gateway: Arc<GatewaySettings>,
    pub snapshot: Snapshot,
}

/// Reads, interpolates, validates and compiles a config file.
pub fn load_file(path: &Path) -> Result<Loaded, ConfigError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new("", format!("cannot read file: {e}")).in_source(&name))?;
    load_str(&text, &env::process_env).map_err(|e| e.in_source(&name))
}

/// Loads a config document from text (YAML, which includes JSON).
pub fn load_str(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Loaded, ConfigError> {
    let mut doc: serde_json::Value = if text.trim().is_empty() {
        serde_json::Value::Object(Default::default())
    } else {
        serde_yaml_ng::from_str(text).map_err(|e| {
            let at = e
                .location()
                .map(|l| format!("line {} column {}", l.line(), l.column()))
                .unwrap_or_default();
            ConfigError::new(at, format!("invalid YAML: {e}"))
        })?
    };
    let root = FieldPath::root();
    env::interpolate(&mut doc, &root, lookup)?;
    let map = match doc {
        serde_json::Value::Object(m) => m,
        serde_json::Value::Null => Default::default(),
        _ => return Err(ConfigError::new("", "the document must be a mapping")),
    };
    let gateway = Arc::new(GatewaySettings::from_value(
        map.get("gateway"),
        &root.field("gateway"),
    )?);
    let resources = Arc::new(adc::to_resources(&map)?);
    let tls = TlsClients::new(gateway.ssl_trusted_certificate.as_deref())?;
    let snapshot = compile(resources, gateway.clone(), tls, None)?;
    Ok(Loaded { gateway, snapshot })
}
