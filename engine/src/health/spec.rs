//! `checks.active`: APISIX's active health-check schema with its defaults
//! and ranges. Accepts the seed document's `unhealthy.timeout` spelling as
//! well as the code's `timeouts`.

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use crate::config::bounds::{self, Min};
use crate::config::{from_value, ConfigError, FieldPath};

/// Longest probe interval (APISIX: `minimum = 1`, no maximum).
const MAX_INTERVAL: i64 = bounds::MAX_SECONDS as i64;
/// Most probes at once (APISIX: default 10, no maximum).
const MAX_CONCURRENCY: i64 = 1_024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeType {
    Http,
    Https,
    Tcp,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ActiveCheck {
    pub kind: ProbeType,
    pub timeout: Duration,
    pub concurrency: u32,
    /// The probe's `Host` header and TLS server name; the probe still
    /// goes to the instance's own address (as in APISIX).
    pub host: Option<String>,
    /// The port probed at the instance's address (default: the endpoint's).
    pub port: Option<u16>,
    pub http_path: String,
    pub https_verify_certificate: bool,
    /// `Name: value` lines.
    pub req_headers: Vec<(String, String)>,
    pub healthy: Healthy,
    pub unhealthy: Unhealthy,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Healthy {
    pub interval: Duration,
    pub http_statuses: Vec<u16>,
    pub successes: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Unhealthy {
    pub interval: Duration,
    pub http_statuses: Vec<u16>,
    pub http_failures: u32,
    pub tcp_failures: u32,
    pub timeouts: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChecksFile {
    active: Value,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ActiveFile {
    #[serde(rename = "type")]
    kind: Option<String>,
    timeout: Option<f64>,
    concurrency: Option<i64>,
    host: Option<String>,
    port: Option<i64>,
    http_path: Option<String>,
    https_verify_certificate: Option<bool>,
    req_headers: Option<Vec<String>>,
    healthy: Option<HealthyFile>,
    unhealthy: Option<UnhealthyFile>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct HealthyFile {
    interval: Option<i64>,
    http_statuses: Option<Vec<i64>>,
    successes: Option<i64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct UnhealthyFile {
    interval: Option<i64>,
    http_statuses: Option<Vec<i64>>,
    http_failures: Option<i64>,
    tcp_failures: Option<i64>,
    timeouts: Option<i64>,
    /// The seed document's spelling of `timeouts`.
    timeout: Option<i64>,
}

impl ActiveCheck {
    /// Parses an instance's `checks` object (`{active: {...}}`).
    pub fn compile_checks(value: &Value, at: &FieldPath) -> Result<ActiveCheck, ConfigError> {
        let c: ChecksFile = from_value(value, at).map_err(|e| {
            if e.reason.contains("missing field `active`") {
                at.error("missing field `active`")
            } else {
                e
            }
        })?;
        ActiveCheck::compile(&c.active, &at.field("active"))
    }

    pub fn compile(value: &Value, at: &FieldPath) -> Result<ActiveCheck, ConfigError> {
        let f: ActiveFile = from_value(value, at)?;
        let kind = match f.kind.as_deref() {
            None | Some("http") => ProbeType::Http,
            Some("https") => ProbeType::Https,
            Some("tcp") => ProbeType::Tcp,
            Some(o) => {
                return Err(at
                    .field("type")
                    .error(format!("`{o}` must be one of http, https, tcp")))
            }
        };
        let timeout = match f.timeout {
            None => Duration::from_secs(1),
            Some(t) => bounds::seconds(
                t,
                Min::Exclusive(0.0),
                bounds::MAX_SECONDS,
                &at.field("timeout"),
            )?,
        };
        let range = |v: Option<i64>,
                     name: &str,
                     at: &FieldPath,
                     lo: i64,
                     hi: i64,
                     default: u32|
         -> Result<u32, ConfigError> {
            match v {
                None => Ok(default),
                Some(x) => bounds::int(x, lo, hi, &at.field(name)),
            }
        };
        let statuses = |v: Option<Vec<i64>>,
                        name: &str,
                        at: &FieldPath,
                        default: &[u16]|
         -> Result<Vec<u16>, ConfigError> {
            match v {
                None => Ok(default.to_vec()),
                Some(list) => list
                    .iter()
                    .enumerate()
                    .map(|(i, &s)| {
                        if (200..=599).contains(&s) {
                            Ok(s as u16)
                        } else {
                            Err(at
                                .field(name)
                                .index(i)
                                .error("must be a status between 200 and 599"))
                        }
                    })
                    .collect(),
            }
        };
        let port = match f.port {
            None => None,
            Some(p @ 1..=65535) => Some(p as u16),
            Some(_) => return Err(at.field("port").error("must be between 1 and 65535")),
        };
        let mut req_headers = Vec::new();
        for (i, line) in f.req_headers.iter().flatten().enumerate() {
            let (name, value) = line
                .split_once(':')
                .filter(|(n, _)| !n.trim().is_empty())
                .ok_or_else(|| {
                    at.field("req_headers")
                        .index(i)
                        .error("expected `Name: value`")
                })?;
            req_headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
        let h = f.healthy.unwrap_or_default();
        let hat = at.field("healthy");
        let u = f.unhealthy.unwrap_or_default();
        let uat = at.field("unhealthy");
        let secs = |v: u32| Duration::from_secs(u64::from(v));
        Ok(ActiveCheck {
            kind,
            timeout,
            concurrency: range(f.concurrency, "concurrency", at, 1, MAX_CONCURRENCY, 10)?,
            host: f.host,
            port,
            http_path: f.http_path.unwrap_or_else(|| "/".to_owned()),
            https_verify_certificate: f.https_verify_certificate.unwrap_or(true),
            req_headers,
            healthy: Healthy {
                interval: secs(range(h.interval, "interval", &hat, 1, MAX_INTERVAL, 1)?),
                http_statuses: statuses(h.http_statuses, "http_statuses", &hat, &[200, 302])?,
                successes: range(h.successes, "successes", &hat, 1, 254, 2)?,
            },
            unhealthy: Unhealthy {
                interval: secs(range(u.interval, "interval", &uat, 1, MAX_INTERVAL, 1)?),
                http_statuses: statuses(
                    u.http_statuses,
                    "http_statuses",
                    &uat,
                    &[429, 404, 500, 501, 502, 503, 504, 505],
                )?,
                http_failures: range(u.http_failures, "http_failures", &uat, 1, 254, 5)?,
                tcp_failures: range(u.tcp_failures, "tcp_failures", &uat, 1, 254, 2)?,
                timeouts: range(u.timeouts.or(u.timeout), "timeouts", &uat, 1, 254, 3)?,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_follow_apisix() {
        let c = ActiveCheck::compile_checks(&json!({"active": {}}), &FieldPath::root()).unwrap();
        assert_eq!(c.kind, ProbeType::Http);
        assert_eq!(c.timeout, Duration::from_secs(1));
        assert_eq!(c.concurrency, 10);
        assert_eq!(c.http_path, "/");
        assert_eq!(c.healthy.http_statuses, vec![200, 302]);
        assert_eq!(c.healthy.successes, 2);
        assert_eq!(
            c.unhealthy.http_statuses,
            vec![429, 404, 500, 501, 502, 503, 504, 505]
        );
        assert_eq!(
            (
                c.unhealthy.http_failures,
                c.unhealthy.tcp_failures,
                c.unhealthy.timeouts
            ),
            (5, 2, 3)
        );
    }

    #[test]
    fn seed_example_and_errors() {
        let c = ActiveCheck::compile_checks(
            &json!({"active": {"type": "https", "host": "yourhost.com", "http_path": "/your/probe/path",
                    "healthy": {"interval": 2, "successes": 1}, "unhealthy": {"interval": 1, "http_failures": 3, "timeout": 4}}}),
            &FieldPath::root(),
        )
        .unwrap();
        assert_eq!(c.kind, ProbeType::Https);
        assert_eq!(c.unhealthy.timeouts, 4);
        let at = FieldPath::root().field("checks");
        assert_eq!(
            ActiveCheck::compile_checks(&json!({}), &at)
                .unwrap_err()
                .path,
            "checks"
        );
        let e =
            ActiveCheck::compile_checks(&json!({"active": {"healthy": {"successes": 300}}}), &at)
                .unwrap_err();
        assert_eq!(e.path, "checks.active.healthy.successes");
        let e = ActiveCheck::compile_checks(
            &json!({"active": {"unhealthy": {"http_statuses": [100]}}}),
            &at,
        )
        .unwrap_err();
        assert_eq!(e.path, "checks.active.unhealthy.http_statuses[0]");
    }
}
