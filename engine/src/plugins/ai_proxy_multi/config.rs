//! `ai-proxy-multi`'s configuration, APISIX's schema field for field (plus
//! ringway's documented extensions), parsed with paths for every error.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::config::bounds;
use crate::config::{ConfigError, FieldPath};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PluginFile {
    pub instances: Vec<Value>,
    pub balancer: Option<BalancerFile>,
    pub fallback_strategy: Option<Value>,
    pub logging: Option<LoggingFile>,
    pub timeout: Option<i64>,
    pub keepalive: Option<bool>,
    pub keepalive_timeout: Option<i64>,
    pub keepalive_pool: Option<i64>,
    pub ssl_verify: Option<bool>,
    pub max_stream_duration_ms: Option<i64>,
    pub max_req_body_size: Option<i64>,
    pub max_response_bytes: Option<i64>,
    /// Most attempts after the first (ringway; default: every instance once).
    pub max_retries: Option<i64>,
    /// Seconds between SSE comment heartbeats while a stream is quiet
    /// (ringway; default 15, 0 disables).
    pub sse_heartbeat_interval: Option<f64>,
    #[serde(rename = "_meta")]
    pub _meta: Option<Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct BalancerFile {
    pub algorithm: Option<String>,
    pub hash_on: Option<String>,
    pub key: Option<String>,
}

#[derive(Deserialize, Default, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LoggingFile {
    #[serde(default)]
    pub summaries: bool,
    #[serde(default)]
    pub payloads: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct InstanceFile {
    pub name: String,
    pub provider: String,
    pub priority: Option<i64>,
    pub weight: i64,
    pub auth: AuthFile,
    pub options: Option<Map<String, Value>>,
    #[serde(rename = "override")]
    pub override_: Option<OverrideFile>,
    pub provider_conf: Option<ProviderConfFile>,
    pub checks: Option<Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct AuthFile {
    pub header: Option<BTreeMap<String, Value>>,
    pub query: Option<BTreeMap<String, Value>>,
    pub gcp: Option<Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct OverrideFile {
    pub endpoint: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct ProviderConfFile {
    pub project_id: Option<String>,
    pub region: Option<String>,
}

/// Which failures move a request on to the next instance.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fallback {
    /// Skip instances whose token quota is exhausted.
    pub rate_limiting: bool,
    /// Skip instances marked unhealthy by health checks.
    pub health: bool,
    pub http_429: bool,
    /// 5xx responses, connect errors and timeouts.
    pub http_5xx: bool,
}

impl Fallback {
    pub(super) fn parse(v: Option<&Value>, at: &FieldPath) -> Result<Fallback, ConfigError> {
        let mut f = Fallback::default();
        match v {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) => match s.as_str() {
                "instance_health_and_rate_limiting" => {
                    f.health = true;
                    f.rate_limiting = true;
                }
                "http_429" => f.http_429 = true,
                "http_5xx" => f.http_5xx = true,
                other => {
                    return Err(at.error(format!(
                        "`{other}` must be one of instance_health_and_rate_limiting, http_429, http_5xx (or a list of rate_limiting, http_429, http_5xx)"
                    )))
                }
            },
            Some(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    match item.as_str() {
                        Some("rate_limiting") => f.rate_limiting = true,
                        Some("http_429") => f.http_429 = true,
                        Some("http_5xx") => f.http_5xx = true,
                        _ => return Err(at.index(i).error("must be one of rate_limiting, http_429, http_5xx")),
                    }
                }
            }
            Some(_) => return Err(at.error("must be a string or a list of strings")),
        }
        Ok(f)
    }
}

/// Time limits and connection reuse for LLM requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transport {
    /// Per attempt: connect, send, and each wait for upstream bytes.
    pub timeout: Duration,
    pub keepalive: crate::upstream::KeepaliveSpec,
    pub ssl_verify: bool,
    /// `max_stream_duration_ms`: the longest a stream is relayed, from the
    /// upstream's response head.
    pub max_stream_duration: Option<Duration>,
    /// `max_response_bytes`: the most body bytes read from the upstream
    /// for one answer, streamed or not (`u64::MAX` when unset).
    pub max_response_bytes: u64,
}

impl Transport {
    pub(super) fn parse(f: &PluginFile, at: &FieldPath) -> Result<Transport, ConfigError> {
        let ms = |v: Option<i64>, field: &str, min: i64, max: i64, default: i64| {
            bounds::millis(v.unwrap_or(default), min, max, &at.field(field))
        };
        let pool = match f.keepalive_pool {
            None => 30,
            Some(p) => bounds::int(p, 1, bounds::MAX_POOL_SIZE, &at.field("keepalive_pool"))?,
        };
        Ok(Transport {
            max_stream_duration: match f.max_stream_duration_ms {
                None => None,
                Some(v) => Some(bounds::millis(
                    v,
                    1,
                    bounds::MAX_MILLIS,
                    &at.field("max_stream_duration_ms"),
                )?),
            },
            max_response_bytes: match f.max_response_bytes {
                None => u64::MAX,
                Some(n) => bounds::int(n, 1, i64::MAX, &at.field("max_response_bytes"))?,
            },
            timeout: ms(f.timeout, "timeout", 1, 600_000, 30_000)?,
            keepalive: crate::upstream::KeepaliveSpec {
                enabled: f.keepalive.unwrap_or(true),
                size: pool,
                idle_timeout: ms(
                    f.keepalive_timeout,
                    "keepalive_timeout",
                    1000,
                    bounds::MAX_MILLIS,
                    60_000,
                )?,
                max_requests: u32::MAX,
            },
            ssl_verify: f.ssl_verify.unwrap_or(true),
        })
    }
}

/// Header/query values given as strings (numbers and booleans are accepted
/// and rendered, since `${VAR}` interpolation may type them).
pub(super) fn string_map(
    map: &BTreeMap<String, Value>,
    at: &FieldPath,
    what: &str,
) -> Result<Vec<(String, String)>, ConfigError> {
    let mut out = Vec::with_capacity(map.len());
    for (k, v) in map {
        if k.is_empty()
            || !k
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
        {
            return Err(at.field(k).error(format!(
                "invalid {what} name (allowed: letters, digits, `.`, `_`, `-`)"
            )));
        }
        let v = match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => return Err(at.field(k).error("must be a string")),
        };
        if v.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
            return Err(at.field(k).error("must not contain line breaks"));
        }
        out.push((k.clone(), v));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fallback_forms() {
        let at = FieldPath::root().field("fallback_strategy");
        let f = Fallback::parse(Some(&json!("instance_health_and_rate_limiting")), &at).unwrap();
        assert!(f.health && f.rate_limiting && !f.http_429);
        let f = Fallback::parse(Some(&json!(["rate_limiting", "http_5xx"])), &at).unwrap();
        assert!(f.rate_limiting && f.http_5xx && !f.health);
        assert_eq!(
            Fallback::parse(Some(&json!(["http_500"])), &at)
                .unwrap_err()
                .path,
            "fallback_strategy[0]"
        );
        assert!(Fallback::parse(Some(&json!("rate_limiting")), &at).is_err());
        assert_eq!(Fallback::parse(None, &at).unwrap(), Fallback::default());
    }
}
