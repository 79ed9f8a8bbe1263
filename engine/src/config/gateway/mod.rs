//! The `gateway:` section: engine settings (listeners, workers, Admin API,
//! metrics, the Status API, TLS, limits, timeouts, logging), with the
//! defaults of the contract (proxy `0.0.0.0:9080`, admin `127.0.0.1:9180`,
//! metrics `127.0.0.1:9091`, status `127.0.0.1:7085`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::bounds;
use super::error::{from_value, ConfigError, FieldPath};

mod sections;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct GatewayFile {
    listen: Option<Vec<Value>>,
    workers: Option<Value>,
    admin: Option<AdminFile>,
    metrics: Option<MetricsFile>,
    status: Option<StatusFile>,
    tls: Option<TlsFile>,
    limits: Option<LimitsFile>,
    timeouts: Option<TimeoutsFile>,
    ssl_trusted_certificate: Option<String>,
    access_log: Option<AccessLogFile>,
    log_redaction: Option<LogRedactionFile>,
    busy_poll_us: Option<i64>,
    pin_workers: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AdminFile {
    enabled: Option<bool>,
    listen: Option<Value>,
    key: Option<String>,
    max_connections: Option<i64>,
    request_timeout: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MetricsFile {
    enabled: Option<bool>,
    listen: Option<Value>,
    /// Record APISIX's labelled families (default true).
    labels: Option<bool>,
    /// Label sets one worker holds before new ones fold into `_other_`.
    max_label_sets: Option<i64>,
}

/// `gateway.metrics`' labelled families: on or off, and the cap on label
/// sets per worker (see `observe::metrics::table`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricLabels {
    pub enabled: bool,
    pub max_label_sets: usize,
}

impl Default for MetricLabels {
    fn default() -> Self {
        MetricLabels {
            enabled: true,
            max_label_sets: DEFAULT_MAX_LABEL_SETS,
        }
    }
}

/// The default cap on label sets per worker.
pub const DEFAULT_MAX_LABEL_SETS: usize = 10_000;
/// The largest `gateway.metrics.max_label_sets` accepted.
pub const MAX_LABEL_SETS: i64 = 1_000_000;

/// `gateway.status`: APISIX's `apisix.status` (`ip`, `port`) as one
/// `listen`, plus ringway's staleness threshold.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusFile {
    enabled: Option<bool>,
    listen: Option<Value>,
    stale_after: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsFile {
    listen: Vec<Value>,
    cert: String,
    key: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsFile {
    max_head_bytes: Option<i64>,
    max_headers: Option<i64>,
    max_body_bytes: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TimeoutsFile {
    header: Option<f64>,
    body: Option<f64>,
    idle: Option<f64>,
    send: Option<f64>,
    drain: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AccessLogFile {
    enabled: Option<bool>,
    path: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogRedactionFile {
    enabled: Option<bool>,
    headers: Option<Vec<String>>,
    query: Option<Vec<String>>,
}

/// Engine settings with defaults applied and addresses resolved.
#[derive(Debug, Clone)]
pub struct GatewaySettings {
    pub listen: Vec<SocketAddr>,
    pub workers: usize,
    pub admin: Option<AdminSettings>,
    pub metrics: Option<SocketAddr>,
    /// The labelled families (off with the metrics listener).
    pub metric_labels: MetricLabels,
    /// The Status API (`/status`, `/status/ready`); `None` when disabled.
    pub status: Option<StatusSettings>,
    pub tls: Option<TlsSettings>,
    pub limits: Limits,
    pub timeouts: Timeouts,
    /// Extra CA bundle (PEM) trusted for upstream TLS, besides the bundled
    /// web PKI roots.
    pub ssl_trusted_certificate: Option<PathBuf>,
    pub access_log: Option<AccessLogTarget>,
    /// `log_redaction`: credentials in logs (see `observe::redact`).
    pub log_redaction: LogRedaction,
    /// How long a worker keeps polling its ring after a request or stream
    /// chunk instead of sleeping in the kernel (`ZERO`: off). See
    /// `server::busy_poll`.
    pub busy_poll: Duration,
    /// Pin worker `i` to the `i`-th allowed CPU (`gateway.pin_workers`,
    /// default true); false leaves placement to the kernel (pods sharing
    /// a node's CPUs).
    pub pin_workers: bool,
    /// The top-level `deployment:` section ([`super::deployment`]); `None`
    /// without one.
    pub deployment: Option<super::deployment::Deployment>,
}

#[derive(Debug, Clone)]
pub struct AdminSettings {
    pub listen: SocketAddr,
    /// `None` means "generate one at start-up and print it".
    pub key: Option<String>,
    /// Connections served at once; more are answered 503 and closed.
    pub max_connections: usize,
    /// A request (its head and body, from when the server starts waiting
    /// for it) must arrive within this; an idle connection is closed
    /// after it.
    pub request_timeout: Duration,
}

impl AdminSettings {
    pub const DEFAULT_MAX_CONNECTIONS: usize = 64;
    pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

    pub fn new(listen: SocketAddr, key: Option<String>) -> AdminSettings {
        AdminSettings {
            listen,
            key,
            max_connections: Self::DEFAULT_MAX_CONNECTIONS,
            request_timeout: Self::DEFAULT_REQUEST_TIMEOUT,
        }
    }
}

/// Most Admin API connections `max_connections` may allow.
const MAX_ADMIN_CONNECTIONS: i64 = 10_000;
/// Longest `admin.request_timeout`, in seconds.
const MAX_ADMIN_REQUEST_TIMEOUT: u64 = 3_600;

/// `gateway.status`: where the Status API listens, and how long the
/// configuration source (etcd) may be unreachable before `/status/ready`
/// says not ready.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StatusSettings {
    pub listen: SocketAddr,
    /// `stale_after`: `ZERO` means not ready as soon as the source is lost
    /// (APISIX's way).
    pub stale_after: Duration,
}

impl StatusSettings {
    /// APISIX's default Status API address.
    pub const DEFAULT_LISTEN: SocketAddr =
        SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 7085);
    pub const DEFAULT_STALE_AFTER: Duration = Duration::from_secs(60);
}

impl Default for StatusSettings {
    fn default() -> Self {
        StatusSettings {
            listen: Self::DEFAULT_LISTEN,
            stale_after: Self::DEFAULT_STALE_AFTER,
        }
    }
}

#[derive(Debug, Clone)]
pub struct TlsSettings {
    pub listen: Vec<SocketAddr>,
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_head_bytes: usize,
    pub max_headers: usize,
    pub max_body_bytes: u64,
}

#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// A request head must arrive completely within this time of its first byte.
    pub header: Duration,
    /// Longest wait for the next piece of a request body.
    pub body: Duration,
    /// Keep-alive idle time between requests.
    pub idle: Duration,
    /// Longest wait for a client to accept response bytes.
    pub send: Duration,
    /// Graceful-shutdown drain time for in-flight requests and streams.
    pub drain: Duration,
}

/// `gateway.log_redaction`: whether credentials are redacted in every
/// log output (the default), and names to redact besides the built-in
/// ones and key-auth's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRedaction {
    pub enabled: bool,
    pub headers: Vec<String>,
    pub query: Vec<String>,
}

impl Default for LogRedaction {
    fn default() -> Self {
        LogRedaction {
            enabled: true,
            headers: Vec::new(),
            query: Vec::new(),
        }
    }
}

/// Where access log lines (JSON) go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLogTarget {
    Stdout,
    File(PathBuf),
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head_bytes: 32 * 1024,
            max_headers: 128,
            max_body_bytes: 64 * 1024 * 1024,
        }
    }
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            header: Duration::from_secs(10),
            body: Duration::from_secs(60),
            idle: Duration::from_secs(60),
            send: Duration::from_secs(60),
            drain: Duration::from_secs(30),
        }
    }
}

impl Default for GatewaySettings {
    fn default() -> Self {
        GatewaySettings {
            listen: vec![SocketAddr::from(([0, 0, 0, 0], 9080))],
            workers: default_workers(),
            admin: Some(AdminSettings::new(
                SocketAddr::from(([127, 0, 0, 1], 9180)),
                None,
            )),
            metrics: Some(SocketAddr::from(([127, 0, 0, 1], 9091))),
            metric_labels: MetricLabels::default(),
            status: Some(StatusSettings::default()),
            tls: None,
            limits: Limits::default(),
            timeouts: Timeouts::default(),
            ssl_trusted_certificate: None,
            access_log: None,
            log_redaction: LogRedaction::default(),
            busy_poll: Duration::ZERO,
            pin_workers: true,
            deployment: None,
        }
    }
}

/// One worker per core the process may run on.
pub fn default_workers() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

impl GatewaySettings {
    /// Parses the `gateway:` section (`value` may be null for "all defaults").
    pub fn from_value(
        value: Option<&Value>,
        at: &FieldPath,
    ) -> Result<GatewaySettings, ConfigError> {
        let file: GatewayFile = match value {
            None | Some(Value::Null) => GatewayFile::default(),
            Some(v) => from_value(v, at)?,
        };
        let mut s = GatewaySettings::default();
        if let Some(listen) = &file.listen {
            s.listen = sections::addresses(listen, &at.field("listen"))?;
        }
        if let Some(w) = &file.workers {
            s.workers = sections::workers(w, &at.field("workers"))?;
        }
        if let Some(admin) = &file.admin {
            s.admin = sections::admin(admin, &at.field("admin"))?;
        }
        if let Some(m) = &file.metrics {
            sections::metrics(m, &at.field("metrics"), &mut s)?;
        }
        if let Some(st) = &file.status {
            s.status = sections::status(st, &at.field("status"))?;
        }
        if let Some(t) = &file.tls {
            s.tls = Some(sections::tls(t, &at.field("tls"))?);
        }
        if let Some(l) = &file.limits {
            sections::limits(l, &at.field("limits"), &mut s.limits)?;
        }
        if let Some(t) = &file.timeouts {
            s.timeouts = sections::timeouts(t, &at.field("timeouts"), s.timeouts)?;
        }
        s.ssl_trusted_certificate = file.ssl_trusted_certificate.as_ref().map(PathBuf::from);
        if let Some(a) = &file.access_log {
            s.access_log = sections::access_log(a, &at.field("access_log"))?;
        }
        if let Some(r) = &file.log_redaction {
            s.log_redaction = sections::log_redaction(r, &at.field("log_redaction"))?;
        }
        if let Some(pin) = file.pin_workers {
            s.pin_workers = pin;
        }
        if let Some(us) = file.busy_poll_us {
            s.busy_poll = Duration::from_micros(bounds::int(
                us,
                0,
                MAX_BUSY_POLL_US,
                &at.field("busy_poll_us"),
            )?);
        }
        Ok(s)
    }
}

/// Longest busy-poll window accepted: past this, sleeping in the kernel
/// costs less than the wake-up it saves.
const MAX_BUSY_POLL_US: i64 = 100_000;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn metric_labels_are_on_with_a_cap_and_bounded() {
        let at = FieldPath::root().field("gateway");
        let s = GatewaySettings::from_value(None, &at).unwrap();
        assert_eq!(s.metric_labels, MetricLabels::default());
        assert_eq!(s.metric_labels.max_label_sets, 10_000);
        let v = json!({"metrics": {"max_label_sets": 3, "labels": false}});
        let s = GatewaySettings::from_value(Some(&v), &at).unwrap();
        assert_eq!(
            s.metric_labels,
            MetricLabels {
                enabled: false,
                max_label_sets: 3
            }
        );
        let v = json!({"metrics": {"enabled": false}});
        let s = GatewaySettings::from_value(Some(&v), &at).unwrap();
        assert!(!s.metric_labels.enabled, "no listener, nothing to record");
        let v = json!({"metrics": {"max_label_sets": 0}});
        let e = GatewaySettings::from_value(Some(&v), &at).unwrap_err();
        assert!(
            e.to_string()
                .contains("gateway.metrics.max_label_sets: must be >= 1"),
            "{e}"
        );
    }

    #[test]
    fn defaults_follow_the_contract() {
        let s = GatewaySettings::from_value(None, &FieldPath::root().field("gateway")).unwrap();
        assert_eq!(s.listen, vec!["0.0.0.0:9080".parse().unwrap()]);
        assert_eq!(s.admin.unwrap().listen, "127.0.0.1:9180".parse().unwrap());
        assert_eq!(s.metrics, Some("127.0.0.1:9091".parse().unwrap()));
        let st = s.status.unwrap();
        assert_eq!(st.listen, "127.0.0.1:7085".parse().unwrap());
        assert_eq!(st.stale_after, Duration::from_secs(60));
        assert_eq!(s.limits.max_head_bytes, 32 * 1024);
        assert_eq!(s.limits.max_body_bytes, 64 * 1024 * 1024);
        assert_eq!(s.busy_poll, Duration::ZERO);
    }

    #[test]
    fn busy_poll_is_microseconds_within_bounds() {
        let at = FieldPath::root().field("gateway");
        let s = GatewaySettings::from_value(Some(&json!({"busy_poll_us": 250})), &at).unwrap();
        assert_eq!(s.busy_poll, Duration::from_micros(250));
        for bad in [json!(-1), json!(100_001), json!("200")] {
            let e = GatewaySettings::from_value(Some(&json!({ "busy_poll_us": bad })), &at)
                .unwrap_err();
            assert_eq!(e.path, "gateway.busy_poll_us", "{bad}");
        }
    }

    #[test]
    fn status_listens_where_told_or_not_at_all() {
        let at = FieldPath::root().field("gateway");
        let s = GatewaySettings::from_value(
            Some(&json!({"status": {"listen": "127.0.0.1:0", "stale_after": 1.5}})),
            &at,
        )
        .unwrap();
        let st = s.status.unwrap();
        assert_eq!(st.listen, "127.0.0.1:0".parse().unwrap());
        assert_eq!(st.stale_after, Duration::from_millis(1500));
        let s =
            GatewaySettings::from_value(Some(&json!({"status": {"stale_after": 0}})), &at).unwrap();
        assert_eq!(s.status.unwrap().stale_after, Duration::ZERO);
        let s =
            GatewaySettings::from_value(Some(&json!({"status": {"enabled": false}})), &at).unwrap();
        assert_eq!(s.status, None);
        for (bad, path) in [
            (json!({"stale_after": -1}), "gateway.status.stale_after"),
            (json!({"stale_after": 1e20}), "gateway.status.stale_after"),
            (json!({"stale_after": "1s"}), "gateway.status.stale_after"),
            (json!({"listen": "nowhere"}), "gateway.status.listen"),
            // Checked even when disabled: a typo is not silently ignored.
            (
                json!({"enabled": false, "stale_after": -1}),
                "gateway.status.stale_after",
            ),
        ] {
            let e = GatewaySettings::from_value(Some(&json!({ "status": bad })), &at).unwrap_err();
            assert_eq!(e.path, path, "{bad}: {e}");
        }
        let e =
            GatewaySettings::from_value(Some(&json!({"status": {"port": 7085}})), &at).unwrap_err();
        assert!(e.reason.contains("unknown field `port`"), "{e}");
    }

    #[test]
    fn errors_name_the_field() {
        let at = FieldPath::root().field("gateway");
        let e = GatewaySettings::from_value(Some(&json!({"listen": ["nope"]})), &at).unwrap_err();
        assert_eq!(e.path, "gateway.listen[0]");
        let e = GatewaySettings::from_value(Some(&json!({"workers": 0})), &at).unwrap_err();
        assert_eq!(e.path, "gateway.workers");
        let e = GatewaySettings::from_value(Some(&json!({"limits": {"max_headers": 100000}})), &at)
            .unwrap_err();
        assert_eq!(e.path, "gateway.limits.max_headers");
        let e = GatewaySettings::from_value(Some(&json!({"bogus": 1})), &at).unwrap_err();
        assert!(e.reason.contains("unknown field `bogus`"), "{e}");
    }
}
