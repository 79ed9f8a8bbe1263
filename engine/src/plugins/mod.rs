//! Plugins, APISIX-style: each plugin is one folder, compiled from its JSON
//! config (APISIX schema and defaults, field for field) into an immutable
//! value, and run in APISIX's priority order through the phases it needs.
//!
//! The registry below is the only list of plugin names; a name it does not
//! know is rejected at load time with the field path, never ignored.

use crate::config::resources::PluginMap;
use crate::config::{ConfigError, FieldPath};

/// The plugins ringway implements, by APISIX name.
pub const SUPPORTED: &[&str] = &[];

/// A route's compiled plugins, in execution order.
#[derive(Debug, Default)]
pub struct PluginChain {
    names: Vec<&'static str>,
}

impl PluginChain {
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    pub fn names(&self) -> &[&'static str] {
        &self.names
    }
}

/// Compiles a `plugins` map found at `at`.
pub fn compile(map: &PluginMap, at: &FieldPath) -> Result<PluginChain, ConfigError> {
    if let Some(name) = map.keys().next() {
        let supported = if SUPPORTED.is_empty() {
            "none yet".to_owned()
        } else {
            SUPPORTED.join(", ")
        };
        return Err(at.field(name).error(format!(
            "plugin `{name}` is not supported by ringway (supported: {supported})"
        )));
    }
    Ok(PluginChain::default())
}
