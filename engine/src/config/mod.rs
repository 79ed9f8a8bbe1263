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
    let doc: serde_json::Value = if text.trim().is_empty() {
        serde_json::Value::Object(Default::default())
    } else {
        serde_yaml_ng::from_str(text).map_err(|e| {
            let at = match (e.location(), second_document(text)) {
                (Some(l), _) => format!("line {} column {}", l.line(), l.column()),
                // The one error serde_yaml gives without a place.
                (None, Some(line)) => format!("line {line} column 1"),
                (None, None) => "line 1 column 1".to_owned(),
            };
            ConfigError::new(at, format!("invalid YAML: {e}"))
        })?
    };
    let root = FieldPath::root();
    // A document that is not a mapping is refused as such, before a
    // placeholder that would be all of it is looked at (an error there
    // would have no field to name).
    let mut doc = match doc {
        serde_json::Value::Object(m) => serde_json::Value::Object(m),
        serde_json::Value::Null => serde_json::Value::Object(Default::default()),
        _ => return Err(ConfigError::new("", "the document must be a mapping")),
    };
    env::interpolate(&mut doc, &root, lookup)?;
    let serde_json::Value::Object(map) = doc else {
        return Err(ConfigError::new("", "the document must be a mapping"));
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

/// The line where a second YAML document starts (a `---` after content),
/// if the text has one.
fn second_document(text: &str) -> Option<usize> {
    let mut content = false;
    for (i, line) in text.lines().enumerate() {
        let marker = line == "---" || line.starts_with("--- ") || line.starts_with("---\t");
        if marker && content {
            return Some(i + 1);
        }
        let t = line.trim_start();
        content |= marker || !(t.is_empty() || t.starts_with('#') || t.starts_with('%'));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_errors_say_which_line() {
        let none = |_: &str| None;
        let e = load_str("services: [\n  - {name: x\n", &none).unwrap_err();
        assert!(e.path.starts_with("line "), "{e}");
        let e = load_str("# two\n---\ngateway: {}\n---\nservices: []\n", &none).unwrap_err();
        assert_eq!(e.path, "line 4 column 1", "{e}");
        assert!(e.reason.contains("more than one document"), "{e}");
        let e = load_str("a: 1\n--- \nb: 2\n", &none).unwrap_err();
        assert_eq!(e.path, "line 2 column 1", "{e}");
    }
}
