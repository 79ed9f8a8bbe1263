//! `plugin_metadata`: settings APISIX keeps once per plugin rather than
//! per route (`/apisix/admin/plugin_metadata/<plugin>`, or ADC's
//! top-level `plugin_metadata`). ringway reads the loggers' settings:
//! the default `log_format` (an `http-logger` or `kafka-logger` that sets
//! no `log_format` of its own writes the metadata's fields, as in APISIX's
//! `log-util.get_log_entry`) and `max_pending_entries`, the most entries a
//! logger holds unsent before it drops new ones (default 8192, as in
//! APISIX 3.18); and the `opentelemetry` exporter's settings (collector,
//! resource, batching: [`super::opentelemetry::settings`]). Checked here when a snapshot compiles, so a bad field is
//! refused with its path and nothing is applied.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

use super::opentelemetry::settings::Settings as OtelSettings;
use super::{http_logger, kafka_logger, opentelemetry};
use crate::config::error::from_value;
use crate::config::resources::Resources;
use crate::config::{bounds, ConfigError, FieldPath};
use crate::loggers::DEFAULT_MAX_PENDING;
use crate::observe::log_format::LogFormat;

/// The most entries a logger may hold unsent (APISIX: `minimum = 1`, no
/// maximum): ten million, gigabytes of log lines.
const MAX_PENDING: i64 = 10_000_000;

/// Plugins whose metadata ringway reads.
const WITH_METADATA: [&str; 3] = [http_logger::NAME, kafka_logger::NAME, opentelemetry::NAME];

/// A logger's metadata: `log_format`, `max_pending_entries`, and what the
/// Admin API stores alongside them.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoggerMetadata {
    log_format: Option<Value>,
    max_pending_entries: Option<i64>,
    #[serde(rename = "id")]
    _id: Option<Value>,
    #[serde(rename = "create_time")]
    _create_time: Option<Value>,
    #[serde(rename = "update_time")]
    _update_time: Option<Value>,
}

/// What a logger plugin takes from its metadata.
#[derive(Debug, Clone)]
pub struct LoggerDefaults {
    /// Used by loggers that set no `log_format` of their own.
    pub log_format: Option<Arc<LogFormat>>,
    /// `max_pending_entries`.
    pub max_pending: usize,
}

impl Default for LoggerDefaults {
    fn default() -> Self {
        LoggerDefaults {
            log_format: None,
            max_pending: DEFAULT_MAX_PENDING,
        }
    }
}

/// The compiled metadata of every plugin that has some.
#[derive(Debug, Default)]
pub struct PluginMetadata {
    loggers: BTreeMap<&'static str, LoggerDefaults>,
    /// The span exporter's settings ([`opentelemetry::settings`]).
    opentelemetry: Option<Arc<OtelSettings>>,
}

impl PluginMetadata {
    pub fn compile(res: &Resources) -> Result<PluginMetadata, ConfigError> {
        let mut loggers = BTreeMap::new();
        let mut otel = None;
        for (name, value) in &res.plugin_metadata {
            // The same path in the file and over the Admin API.
            let at = FieldPath::root().field("plugin_metadata").field(name);
            let Some(plugin) = WITH_METADATA.iter().find(|p| **p == name.as_str()) else {
                return Err(at.error(format!(
                    "plugin metadata for `{name}` is not supported by ringway (supported: {})",
                    WITH_METADATA.join(", ")
                )));
            };
            if *plugin == opentelemetry::NAME {
                otel = Some(Arc::new(OtelSettings::compile(value, &at)?));
                continue;
            }
            let m: LoggerMetadata = from_value(value, &at)?;
            let log_format = match &m.log_format {
                Some(f) => Some(Arc::new(LogFormat::parse(f, &at.field("log_format"))?)),
                None => None,
            };
            let max_pending = match m.max_pending_entries {
                Some(n) => bounds::int(n, 1, MAX_PENDING, &at.field("max_pending_entries"))?,
                None => DEFAULT_MAX_PENDING,
            };
            loggers.insert(
                *plugin,
                LoggerDefaults {
                    log_format,
                    max_pending,
                },
            );
        }
        Ok(PluginMetadata {
            loggers,
            opentelemetry: otel,
        })
    }

    /// The span exporter's settings (the defaults without metadata).
    pub fn opentelemetry(&self) -> Arc<OtelSettings> {
        self.opentelemetry.clone().unwrap_or_default()
    }

    /// What `plugin`'s loggers take from its metadata (the defaults when
    /// it has none).
    pub fn logger(&self, plugin: &str) -> LoggerDefaults {
        self.loggers.get(plugin).cloned().unwrap_or_default()
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
        assert!(m.logger("http-logger").log_format.is_some());
        assert!(m.logger("kafka-logger").log_format.is_none());
        assert!(m.logger("key-auth").log_format.is_none());
    }

    #[test]
    fn max_pending_entries_bounds_the_loggers_backlog() {
        let m = compile(json!({"kafka-logger": {"max_pending_entries": 16}})).unwrap();
        assert_eq!(m.logger("kafka-logger").max_pending, 16);
        assert_eq!(m.logger("http-logger").max_pending, 8192);
        for bad in [json!(0), json!(-1), json!("16"), json!(1.5)] {
            let e = compile(json!({"http-logger": {"max_pending_entries": bad}}))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("plugin_metadata.http-logger.max_pending_entries"),
                "{e}"
            );
        }
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
