//! What every logger plugin (`kafka-logger`, `http-logger`) shares: the
//! config fields (APISIX's batch-processor settings, `name`, the body
//! options), taken out of the plugin's config by [`split`] so each
//! plugin's own fields keep `deny_unknown_fields`, with options ringway
//! does not implement refused by name; and the log phase ([`Logger`]):
//! building the entry and queueing it for the plugin's sink.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::metadata::LoggerDefaults;
use super::CompileCx;
use crate::config::{bounds, from_value, ConfigError, FieldPath};
use crate::exchange::ctx::RequestCtx;
use crate::http::RequestHead;
use crate::loggers::{BatchConfig, Sink, SinkStats, WorkerQueue};
use crate::observe::entry::{entry, EntryOptions};
use crate::observe::log_format::LogFormat;
use crate::observe::redact::Redaction;

/// A compiled logger plugin: its sink and what its entries include.
#[derive(Debug)]
pub struct Logger {
    sink: Arc<Sink>,
    opts: EntryOptions,
}

impl Logger {
    /// The logger for `fields` and a destination described by `target`;
    /// the same settings in the same place keep their sink (its queued
    /// entries and connections) across reloads, else `start` makes one.
    pub fn new(
        cx: &mut CompileCx<'_, '_>,
        mut fields: LoggerFields,
        origin: bool,
        target: String,
        start: impl FnOnce(String, BatchConfig, Arc<SinkStats>) -> Arc<Sink>,
    ) -> Logger {
        fields.entry.origin = origin;
        let LoggerFields { name, batch, entry } = fields;
        let key = format!("{target}{batch:?}{name}");
        let name = format!("{name} ({})", cx.owner);
        // Counts follow the logger (owner and name), not its settings: a
        // changed logger gets a new sink but its metric series goes on.
        let stats = cx.carry.logger_stats(&cx.owner, name.clone());
        let sink = cx
            .carry
            .logger(&cx.owner, key, || start(name, batch, stats));
        Logger { sink, opts: entry }
    }
}

/// Loggers are not configured on a consumer (a consumer's requests are
/// logged by the route's and the global rules' loggers): the registry
/// entries of `http-logger` and `kafka-logger` check it here.
pub fn refuse_on_consumer(
    name: &str,
    scope: super::Scope,
    at: &FieldPath,
) -> Result<(), ConfigError> {
    match scope {
        super::Scope::Consumer => {
            Err(at.error(format!("{name} can not be configured on a consumer")))
        }
        _ => Ok(()),
    }
}

/// The log phase, and `body_filter`'s declaration of the response body
/// bytes the entry includes.
impl super::phase::Phases for Logger {
    type Request<'a> = ();
    const LOGS: bool = true;

    fn response_body_limit(&self) -> Option<usize> {
        self.opts.max_response_body
    }

    fn wants_request_body(&self) -> bool {
        self.opts.request_body
    }

    fn log(&self, head: &RequestHead, ctx: &RequestCtx, queue: &WorkerQueue, r: &Redaction) {
        queue.push(&self.sink, entry(head, ctx, &self.opts, r));
    }
}

/// APISIX's default `max_resp_body_bytes`.
const DEFAULT_MAX_RESP_BODY: i64 = 524_288;

/// The shared settings, checked.
pub struct LoggerFields {
    pub name: String,
    pub batch: BatchConfig,
    pub entry: EntryOptions,
}

const KEYS: &[&str] = &[
    "name",
    "batch_max_size",
    "inactive_timeout",
    "buffer_duration",
    "max_retry_count",
    "retry_delay",
    "include_req_body",
    "include_req_body_expr",
    "include_resp_body",
    "include_resp_body_expr",
    "max_req_body_bytes",
    "max_resp_body_bytes",
    "log_format",
    "_meta",
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Fields {
    name: Option<String>,
    #[serde(default = "int::<1000>")]
    batch_max_size: i64,
    #[serde(default = "int::<5>")]
    inactive_timeout: i64,
    #[serde(default = "int::<60>")]
    buffer_duration: i64,
    #[serde(default)]
    max_retry_count: i64,
    #[serde(default = "int::<1>")]
    retry_delay: i64,
    #[serde(default)]
    include_req_body: bool,
    include_req_body_expr: Option<Value>,
    #[serde(default)]
    include_resp_body: bool,
    include_resp_body_expr: Option<Value>,
    max_req_body_bytes: Option<i64>,
    max_resp_body_bytes: Option<i64>,
    log_format: Option<Value>,
    #[serde(rename = "_meta")]
    _meta: Option<Value>,
}

/// A numeric default for serde (`#[serde(default = "int::<5>")]`).
pub fn int<const N: i64>() -> i64 {
    N
}

/// Most entries in one batch.
const MAX_BATCH: i64 = 1_000_000;

/// Splits a logger's config into the shared settings and the rest.
/// `defaults` come from the plugin's metadata: the `log_format` used
/// when the config sets none, and the backlog limit.
pub fn split(
    value: &Value,
    at: &FieldPath,
    default_name: &str,
    defaults: LoggerDefaults,
) -> Result<(LoggerFields, Value), ConfigError> {
    let obj = value
        .as_object()
        .ok_or_else(|| at.error("must be an object"))?;
    let (mut shared, mut rest) = (Map::new(), Map::new());
    for (k, v) in obj {
        if KEYS.contains(&k.as_str()) {
            shared.insert(k.clone(), v.clone());
        } else {
            rest.insert(k.clone(), v.clone());
        }
    }
    let f: Fields = from_value(&Value::Object(shared), at)?;
    let body_limit = |v: i64, field: &str| -> Result<usize, ConfigError> {
        // Only ever a cap on a body already read (nothing is sized by
        // it), so any positive number will do; past what memory holds it
        // means "all of it".
        let n: u64 = bounds::int(v, 1, i64::MAX, &at.field(field))?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    };
    let max_request_body = match f.max_req_body_bytes {
        Some(m) => Some(body_limit(m, "max_req_body_bytes")?),
        None => None,
    };
    let max_response_body = body_limit(
        f.max_resp_body_bytes.unwrap_or(DEFAULT_MAX_RESP_BODY),
        "max_resp_body_bytes",
    )?;
    let condition = |v: &Option<Value>, field: &str| {
        crate::http::expr::Expr::compile_optional(v.as_ref(), &at.field(field))
    };
    let secs = |v: i64, field: &str, min: i64| {
        bounds::whole_seconds(v, min, bounds::MAX_SECONDS as i64, &at.field(field))
    };
    let batch = BatchConfig {
        max_size: bounds::int(f.batch_max_size, 1, MAX_BATCH, &at.field("batch_max_size"))?,
        inactive: secs(f.inactive_timeout, "inactive_timeout", 1)?,
        buffer: secs(f.buffer_duration, "buffer_duration", 1)?,
        max_retry: bounds::int(
            f.max_retry_count,
            0,
            bounds::MAX_RETRIES,
            &at.field("max_retry_count"),
        )?,
        retry_delay: secs(f.retry_delay, "retry_delay", 0)?,
        max_pending: defaults.max_pending,
    };
    Ok((
        LoggerFields {
            name: f.name.unwrap_or_else(|| default_name.to_owned()),
            batch,
            entry: EntryOptions {
                request_body: f.include_req_body,
                request_body_when: condition(&f.include_req_body_expr, "include_req_body_expr")?,
                max_response_body: f.include_resp_body.then_some(max_response_body),
                response_body_when: condition(&f.include_resp_body_expr, "include_resp_body_expr")?,
                max_request_body,
                origin: false,
                format: match &f.log_format {
                    Some(v) => Some(Arc::new(LogFormat::parse(v, &at.field("log_format"))?)),
                    None => defaults.log_format,
                },
            },
        },
        Value::Object(rest),
    ))
}
