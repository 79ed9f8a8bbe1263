//! `plugin_metadata`: settings APISIX keeps once per plugin rather than
//! per route (`/apisix/admin/plugin_metadata/<plugin>`, or ADC's
//! top-level `plugin_metadata`). ringway reads the loggers' default
//! `log_format`: an `http-logger` or `kafka-logger` that sets no
//! `log_format` of its own writes the metadata's fields, as in APISIX's
//! `log-util.get_log_entry`. Checked here when a snapshot compiles, so a
//! bad field is refused with its path and nothing is applied.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

use super::{http_logger, kafka_logger};
use crate::config::error::from_value;
use crate::config::resources::Resources;
use crate::config::{ConfigError, FieldPath};
use crate::observe::log_format::LogFormat;

/// Plugins whose metadata ringway reads.
const WITH_METADATA: [&str; 2] = [http_logger::NAME, kafka_logger::NAME];

/// A logger's metadata: `log_format`, and what the Admin API stores
/// alongside it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoggerMetadata {
    log_format: Option<Value>,
    #[serde(rename = "id")]
    _id: Option<Value>,
    #[serde(rename = "create_time")]
    _create_time: Option<Value>,
    #[serde(rename = "update_time")]
    _update_time: Option<Value>,
}

/// The compiled metadata of every plugin that has some.
#[derive(Debug, Default)]
pub struct PluginMetadata {
    log_formats: BTreeMap<&'static str, Arc<LogFormat>>,
}

impl PluginMetadata {
    pub fn compile(res: &Resources) -> Result<PluginMetadata, ConfigError> {
        let mut log_formats = BTreeMap::new();
        for (name, value) in &res.plugin_metadata {
            // The same path in the file and over the Admin API.
            let at = FieldPath::root().field("plugin_metadata").field(name);
            let Some(plugin) = WITH_METADATA.iter().find(|p| **p == name.as_str()) else {
                return Err(at.error(format!(
                    "plugin metadata for `{name}` is not supported by ringway (supported: {})",
                    WITH_METADATA.join(", ")
                )));
            };
            let m: LoggerMetadata = from_value(value, &at)?;
            if let Some(f) = &m.log_format {
                let format = LogFormat::parse(f, &at.field("log_format"))?;
                log_formats.insert(*plugin, Arc::new(format));
            }
        }
        Ok(PluginMetadata { log_formats })
    }

    /// The default `log_format` of `plugin`'s metadata, if any.
    pub fn log_format(&self, plugin: &str) -> Option<Arc<LogFormat>> {
        self.log_formats.get(plugin).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn compile(meta: Value) -> Result<PluginMetadata, ConfigError> {
        let mut res = Resources::default();
        for (k, v) in meta.as_object().unwrap() {
            res.plugin_metadata.insert(k.clone(), v.clone());
        }
        PluginMetadata::compile(&res)
    }

    #[test]
    fn loggers_get_their_default_format() {
        let m = compile(json!({
            "http-logger": {"log_format": {"host": "$host"}},
            "kafka-logger": {"id": "kafka-logger", "update_time": 1},
        }))
        .unwrap();
        assert!(m.log_format("http-logger").is_some());
        assert!(m.log_format("kafka-logger").is_none());
        assert!(m.log_format("key-auth").is_none());
    }

    #[test]
    fn bad_metadata_is_refused_with_its_path() {
        let e = compile(json!({"limit-count": {"x": 1}}))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("plugin_metadata.limit-count") && e.contains("not supported"),
            "{e}"
        );
        let e = compile(json!({"http-logger": {"log_fromat": {}}}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("log_fromat"), "{e}");
        let e = compile(json!({"kafka-logger": {"log_format": "host"}}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("plugin_metadata.kafka-logger.log_format"), "{e}");
    }
}
