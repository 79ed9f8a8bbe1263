//! `http-logger`: POSTs each request's log entry (the same entry as
//! `kafka-logger`: APISIX's full log with the LLM variables and
//! ai-proxy-multi's `logging` summaries and payloads) in batches to an
//! HTTP(S) endpoint, from a logger thread ([`crate::loggers`]). APISIX's
//! schema and defaults, except `ssl_verify`, which defaults to `true` as
//! everywhere in ringway.

use serde::Deserialize;
use serde_json::Value;

use super::logger::{int, split, Logger};
use super::CompileCx;
use crate::config::{bounds, from_value, ConfigError, FieldPath};
use crate::loggers::http::{Concat, HttpPoster, HttpTargetConfig};
use crate::loggers::Sink;
use crate::providers::url::EndpointUrl;

pub const NAME: &str = "http-logger";
pub const PRIORITY: i32 = 410;

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
    HttpLogger::compile(value, at, cx).map(Some)
}

/// Compiles an `http-logger` config.
pub struct HttpLogger;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpLoggerFile {
    uri: String,
    auth_header: Option<String>,
    #[serde(default = "int::<3>")]
    timeout: i64,
    #[serde(default = "json")]
    concat_method: String,
    #[serde(default = "yes")]
    ssl_verify: bool,
}

fn json() -> String {
    "json".into()
}
fn yes() -> bool {
    true
}

impl HttpLogger {
    pub fn compile(
        value: &Value,
        at: &FieldPath,
        cx: &mut CompileCx<'_, '_>,
    ) -> Result<Logger, ConfigError> {
        let (common, rest) = split(value, at, "http logger", cx.metadata.logger(NAME))?;
        let f: HttpLoggerFile = from_value(&rest, at)?;
        let url = EndpointUrl::parse(&f.uri).map_err(|e| at.field("uri").error(e))?;
        let concat = match f.concat_method.as_str() {
            "json" => Concat::Json,
            "new_line" => Concat::NewLine,
            _ => {
                return Err(at
                    .field("concat_method")
                    .error("must be \"json\" or \"new_line\""))
            }
        };
        let target = HttpTargetConfig {
            url: f.uri,
            auth_header: f.auth_header,
            timeout: bounds::whole_seconds(
                f.timeout,
                1,
                bounds::MAX_SECONDS as i64,
                &at.field("timeout"),
            )?,
            concat,
            ssl_verify: f.ssl_verify,
        };
        let tls = cx
            .carry
            .tls
            .clone()
            .ok_or_else(|| at.error("TLS settings unavailable"))?;
        let key = format!("{target:?}");
        Ok(Logger::new(cx, common, false, key, |name, batch, stats| {
            Sink::http(name, HttpPoster::new(target, url, tls), batch, stats)
        }))
    }
}
