//! The exporter's settings: APISIX's `opentelemetry` plugin metadata
//! (`plugin_metadata.opentelemetry`, what APISIX 3.x reads; older APISIX
//! had the same fields as `plugin_attr.opentelemetry` in `config.yaml`).
//! Without metadata the defaults apply (APISIX's plugin then does
//! nothing and warns). Fields, APISIX's defaults:
//!
//! - `trace_id_source`: `random`, or `x-request-id` (the request id, as
//!   32 hex digits with any dashes removed, when it is one).
//! - `resource`: attributes of every span's resource (strings, numbers,
//!   booleans); `service.name` defaults to `ringway`, `hostname` is added.
//! - `collector`: `address` (`127.0.0.1:4318`; `http://` unless a scheme
//!   is given; `/v1/traces` is appended), `request_timeout` (3 s),
//!   `request_headers` (sent with every export, never logged).
//! - `batch_span_processor`: `max_queue_size` (2048 spans waiting at
//!   most), `max_export_batch_size` (256), `batch_timeout` (5 s),
//!   `inactive_timeout` (2 s), `drop_on_queue_full` (accepted; ringway
//!   always drops rather than export on a worker).
//! - `set_ngx_var`: the `opentelemetry_*` log variables.

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use crate::config::{bounds, from_value, ConfigError, FieldPath};
use crate::loggers::otlp::proto::{KeyValue, Resource, Value as AttrValue};
use crate::loggers::BatchConfig;
use crate::providers::url::EndpointUrl;

/// Where a new trace's id comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceIdSource {
    Random,
    XRequestId,
}

/// The metadata, checked. (Its `Debug` leaves header values out: they
/// may be credentials.)
#[derive(Clone)]
pub struct Settings {
    pub trace_id_source: TraceIdSource,
    pub resource: Resource,
    /// The collector's `/v1/traces` URL.
    pub url: String,
    pub endpoint: EndpointUrl,
    pub timeout: Duration,
    /// `collector.request_headers`, values as text.
    pub headers: Vec<(String, String)>,
    pub batch: BatchConfig,
    pub set_ngx_var: bool,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("url", &crate::observe::redact::configured_url(&self.url))
            .field(
                "headers",
                &self.headers.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("batch", &self.batch)
            .finish_non_exhaustive()
    }
}

impl Settings {
    /// What identifies the exporter these settings make: a change starts
    /// a new one.
    pub fn key(&self) -> String {
        format!(
            "{:?}{}{:?}{:?}{:?}{:?}",
            self.resource, self.url, self.timeout, self.headers, self.batch, self.trace_id_source
        )
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct File {
    trace_id_source: Option<String>,
    resource: Option<serde_json::Map<String, Value>>,
    collector: Option<CollectorFile>,
    batch_span_processor: Option<BatchFile>,
    #[serde(default)]
    set_ngx_var: bool,
    #[serde(rename = "id")]
    _id: Option<Value>,
    #[serde(rename = "create_time")]
    _create_time: Option<Value>,
    #[serde(rename = "update_time")]
    _update_time: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CollectorFile {
    #[serde(default = "default_address")]
    address: String,
    #[serde(default = "three")]
    request_timeout: i64,
    request_headers: Option<serde_json::Map<String, Value>>,
}

fn default_address() -> String {
    "127.0.0.1:4318".into()
}
fn three() -> i64 {
    3
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct BatchFile {
    drop_on_queue_full: Option<bool>,
    max_queue_size: Option<i64>,
    batch_timeout: Option<f64>,
    inactive_timeout: Option<f64>,
    max_export_batch_size: Option<i64>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings::compile(&Value::Object(Default::default()), &FieldPath::root())
            .expect("the defaults are valid")
    }
}

impl Settings {
    pub fn compile(value: &Value, at: &FieldPath) -> Result<Settings, ConfigError> {
        let f: File = from_value(value, at)?;
        let trace_id_source = match f.trace_id_source.as_deref() {
            None | Some("random") => TraceIdSource::Random,
            Some("x-request-id") => TraceIdSource::XRequestId,
            Some(_) => {
                return Err(at
                    .field("trace_id_source")
                    .error("must be \"random\" or \"x-request-id\""))
            }
        };
        let collector = f.collector.unwrap_or(CollectorFile {
            address: default_address(),
            request_timeout: three(),
            request_headers: None,
        });
        let at_c = at.field("collector");
        let base = if collector.address.contains("://") {
            collector.address.clone()
        } else {
            format!("http://{}", collector.address)
        };
        let url = format!("{}/v1/traces", base.trim_end_matches('/'));
        let endpoint = EndpointUrl::parse(&url).map_err(|e| at_c.field("address").error(e))?;
        let timeout = bounds::whole_seconds(
            collector.request_timeout,
            1,
            bounds::MAX_SECONDS as i64,
            &at_c.field("request_timeout"),
        )?;
        let mut headers = Vec::new();
        for (k, v) in collector.request_headers.unwrap_or_default() {
            let at_h = at_c.field("request_headers").field(&k);
            if k.is_empty()
                || !k
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
            {
                return Err(at_h.error("must be a header name"));
            }
            let v =
                scalar_text(&v).ok_or_else(|| at_h.error("must be a string, number or boolean"))?;
            if v.bytes().any(|b| b.is_ascii_control()) {
                return Err(at_h.error("must not contain control characters"));
            }
            headers.push((k, v));
        }
        Ok(Settings {
            trace_id_source,
            resource: resource(f.resource.unwrap_or_default(), &at.field("resource"))?,
            url,
            endpoint,
            timeout,
            headers,
            batch: batch(
                f.batch_span_processor.unwrap_or_default(),
                &at.field("batch_span_processor"),
            )?,
            set_ngx_var: f.set_ngx_var,
        })
    }
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// `resource`, with `service.name` (`ringway`) and `hostname` added.
fn resource(map: serde_json::Map<String, Value>, at: &FieldPath) -> Result<Resource, ConfigError> {
    let mut attributes = vec![KeyValue::str("hostname", hostname())];
    if !map.contains_key("service.name") {
        attributes.push(KeyValue::str("service.name", "ringway"));
    }
    for (k, v) in map {
        let value = match &v {
            Value::String(s) => AttrValue::String(s.clone()),
            Value::Bool(b) => AttrValue::Bool(*b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => AttrValue::Int(i),
                None => AttrValue::Double(n.as_f64().unwrap_or_default()),
            },
            _ => return Err(at.field(&k).error("must be a string, number or boolean")),
        };
        attributes.push(KeyValue::new(k, value));
    }
    Ok(Resource { attributes })
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into())
}

/// `batch_span_processor` with opentelemetry-lua's defaults.
fn batch(b: BatchFile, at: &FieldPath) -> Result<BatchConfig, ConfigError> {
    let _ = b.drop_on_queue_full;
    let secs = |v: Option<f64>, default: f64, name: &str| -> Result<Duration, ConfigError> {
        let v = v.unwrap_or(default);
        if !(v > 0.0 && v <= bounds::MAX_SECONDS as f64) {
            return Err(at.field(name).error("must be a positive number of seconds"));
        }
        Ok(Duration::from_secs_f64(v))
    };
    Ok(BatchConfig {
        max_size: bounds::int(
            b.max_export_batch_size.unwrap_or(256),
            1,
            1 << 20,
            &at.field("max_export_batch_size"),
        )?,
        inactive: secs(b.inactive_timeout, 2.0, "inactive_timeout")?,
        buffer: secs(b.batch_timeout, 5.0, "batch_timeout")?,
        max_retry: 2,
        retry_delay: Duration::from_secs(1),
        max_pending: bounds::int(
            b.max_queue_size.unwrap_or(2048),
            1,
            10_000_000,
            &at.field("max_queue_size"),
        )?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_follow_apisix() {
        let s = Settings::default();
        assert_eq!(s.url, "http://127.0.0.1:4318/v1/traces");
        assert_eq!(s.timeout, Duration::from_secs(3));
        assert_eq!(s.batch.max_pending, 2048);
        assert_eq!(s.batch.max_size, 256);
        assert_eq!(s.trace_id_source, TraceIdSource::Random);
        assert!(s
            .resource
            .attributes
            .iter()
            .any(|a| a.key == "service.name"));
    }

    #[test]
    fn fields_are_checked_with_their_paths() {
        let at = FieldPath::root()
            .field("plugin_metadata")
            .field("opentelemetry");
        let s = Settings::compile(
            &json!({"collector": {"address": "https://otel.example:4318/", "request_headers": {"Authorization": "Bearer x", "X-N": 1}},
                    "resource": {"service.name": "gw", "n": 2}, "trace_id_source": "x-request-id"}),
            &at,
        )
        .unwrap();
        assert_eq!(s.url, "https://otel.example:4318/v1/traces");
        assert_eq!(
            s.headers,
            [
                ("Authorization".into(), "Bearer x".into()),
                ("X-N".into(), "1".into())
            ]
        );
        for (bad, path) in [
            (json!({"trace_id_source": "uuid"}), "trace_id_source"),
            (
                json!({"collector": {"address": "::nonsense::"}}),
                "collector.address",
            ),
            (
                json!({"collector": {"request_timeout": 0}}),
                "collector.request_timeout",
            ),
            (
                json!({"collector": {"request_headers": {"A B": "x"}}}),
                "request_headers",
            ),
            (
                json!({"batch_span_processor": {"max_queue_size": 0}}),
                "max_queue_size",
            ),
            (
                json!({"batch_span_processor": {"batch_timeout": -1}}),
                "batch_timeout",
            ),
            (json!({"resource": {"a": [1]}}), "resource.a"),
            (json!({"colector": {}}), "colector"),
        ] {
            let e = Settings::compile(&bad, &at).unwrap_err().to_string();
            assert!(e.contains(path), "{bad}: {e}");
        }
    }
}
