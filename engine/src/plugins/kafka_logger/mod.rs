//! `kafka-logger`: pushes each request's log entry (APISIX's full log, with
//! the LLM variables and ai-proxy-multi's `logging` summaries and payloads,
//! or the fields of a `log_format`) to a Kafka topic, batched by APISIX's
//! batch-processor settings, from a logger thread ([`crate::loggers`]).
//! APISIX's schema and defaults; what ringway does not implement (SASL,
//! response bodies) is refused at load with the field named.

use serde::Deserialize;
use serde_json::Value;

use super::logger::{int, split, Logger};
use super::CompileCx;
use crate::config::{bounds, from_value, ConfigError, FieldPath};
use crate::loggers::kafka::ProducerConfig;
use crate::loggers::Sink;

/// The largest record batch (`producer_batch_size`; APISIX: `minimum = 1`,
/// default 1 MiB): 64 MiB, past any broker's default message size.
const MAX_BATCH_BYTES: i64 = 64 << 20;

pub const NAME: &str = "kafka-logger";
pub const PRIORITY: i32 = 403;

/// The registry's entry (not on a consumer: see
/// [`super::logger::refuse_on_consumer`]).
pub fn compile(
    value: &Value,
    at: &FieldPath,
    scope: super::Scope,
    _meta: &super::meta::Meta,
    cx: &mut CompileCx<'_, '_>,
) -> Result<Option<Logger>, ConfigError> {
    super::logger::refuse_on_consumer(NAME, scope, at)?;
    KafkaLogger::compile(value, at, cx).map(Some)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BrokerFile {
    host: String,
    port: i64,
    sasl_config: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KafkaLoggerFile {
    brokers: Option<Vec<BrokerFile>>,
    broker_list: Option<serde_json::Map<String, Value>>,
    kafka_topic: String,
    #[serde(default = "default_producer_type")]
    producer_type: String,
    #[serde(default = "int::<1>")]
    required_acks: i64,
    key: Option<String>,
    #[serde(default = "int::<3>")]
    timeout: i64,
    #[serde(default = "default_meta_format")]
    meta_format: String,
    #[serde(default = "int::<1>")]
    cluster_name: i64,
    #[serde(default = "int::<1048576>")]
    producer_batch_size: i64,
    // lua-resty-kafka's own buffering; ringway batches with the batch
    // processor settings below, so these are checked and not used.
    producer_batch_num: Option<i64>,
    producer_max_buffering: Option<i64>,
    producer_time_linger: Option<i64>,
    #[serde(default = "int::<30>")]
    meta_refresh_interval: i64,
}

fn default_producer_type() -> String {
    "async".into()
}
fn default_meta_format() -> String {
    "default".into()
}

/// Compiles a `kafka-logger` config.
pub struct KafkaLogger;

impl KafkaLogger {
    pub fn compile(
        value: &Value,
        at: &FieldPath,
        cx: &mut CompileCx<'_, '_>,
    ) -> Result<Logger, ConfigError> {
        let (common, rest) = split(value, at, "kafka logger", cx.metadata.logger(NAME))?;
        let f: KafkaLoggerFile = from_value(&rest, at)?;
        let mut brokers = Vec::new();
        for (i, b) in f.brokers.iter().flatten().enumerate() {
            let bat = at.field("brokers").index(i);
            if b.host.is_empty() {
                return Err(bat.field("host").error("must not be empty"));
            }
            if !(1..=65535).contains(&b.port) {
                return Err(bat.field("port").error("must be between 1 and 65535"));
            }
            if b.sasl_config.is_some() {
                return Err(bat
                    .field("sasl_config")
                    .error("SASL authentication is not implemented by ringway"));
            }
            brokers.push((b.host.clone(), b.port as u16));
        }
        for (host, port) in f.broker_list.iter().flatten() {
            let p = port
                .as_i64()
                .filter(|p| (1..=65535).contains(p))
                .ok_or_else(|| {
                    at.field("broker_list")
                        .field(host)
                        .error("must be a port between 1 and 65535")
                })?;
            brokers.push((host.clone(), p as u16));
        }
        if brokers.is_empty() {
            return Err(at.field("brokers").error("at least one broker is required"));
        }
        if f.kafka_topic.is_empty() {
            return Err(at.field("kafka_topic").error("must not be empty"));
        }
        if !matches!(f.producer_type.as_str(), "async" | "sync") {
            return Err(at
                .field("producer_type")
                .error("must be \"async\" or \"sync\""));
        }
        if !matches!(f.required_acks, 1 | -1) {
            return Err(at.field("required_acks").error("must be 1 or -1"));
        }
        if !matches!(f.meta_format.as_str(), "default" | "origin") {
            return Err(at
                .field("meta_format")
                .error("must be \"default\" or \"origin\""));
        }
        bounds::int::<i64>(f.cluster_name, 1, i64::MAX, &at.field("cluster_name"))?;
        // lua-resty-kafka's buffering knobs: checked (APISIX: >= 1), unused.
        for (field, v) in [
            ("producer_batch_num", f.producer_batch_num),
            ("producer_max_buffering", f.producer_max_buffering),
            ("producer_time_linger", f.producer_time_linger),
        ] {
            if let Some(v) = v {
                bounds::int::<i64>(v, 1, i64::MAX, &at.field(field))?;
            }
        }
        let secs = |v: i64, field: &str| {
            bounds::whole_seconds(v, 1, bounds::MAX_SECONDS as i64, &at.field(field))
        };
        let producer = ProducerConfig {
            brokers,
            topic: f.kafka_topic,
            key: f.key,
            acks: f.required_acks as i16,
            timeout: secs(f.timeout, "timeout")?,
            meta_refresh: secs(f.meta_refresh_interval, "meta_refresh_interval")?,
            max_batch_bytes: bounds::int(
                f.producer_batch_size,
                1,
                MAX_BATCH_BYTES,
                &at.field("producer_batch_size"),
            )?,
        };
        let origin = f.meta_format == "origin";
        Ok(Logger::new(
            cx,
            common,
            origin,
            format!("{producer:?}"),
            |name, batch, stats| Sink::kafka(name, producer, batch, stats),
        ))
    }
}
