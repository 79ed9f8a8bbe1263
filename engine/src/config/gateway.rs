//! The `gateway:` section: engine settings (listeners, workers, Admin API,
//! metrics, the Status API, TLS, limits, timeouts, logging), with the
//! defaults of the contract (proxy `0.0.0.0:9080`, admin `127.0.0.1:9180`,
//! metrics `127.0.0.1:9091`, status `127.0.0.1:7085`).

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::bounds;
use super::error::{from_value, ConfigError, FieldPath};

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
            if listen.is_empty() {
                return Err(at.field("listen").error("must list at least one address"));
            }
            s.listen = listen
                .iter()
                .enumerate()
                .map(|(i, v)| parse_addr(v, &at.field("listen").index(i)))
                .collect::<Result<_, _>>()?;
        }
        if let Some(w) = &file.workers {
            s.workers = match w {
                Value::String(a) if a == "auto" => default_workers(),
                Value::Number(n) => match n.as_u64() {
                    Some(n @ 1..=1024) => n as usize,
                    _ => {
                        return Err(at
                            .field("workers")
                            .error("must be \"auto\" or an integer between 1 and 1024"))
                    }
                },
                _ => {
                    return Err(at
                        .field("workers")
                        .error("must be \"auto\" or an integer between 1 and 1024"))
                }
            };
        }
        if let Some(admin) = &file.admin {
            let p = at.field("admin");
            s.admin = if admin.enabled == Some(false) {
                None
            } else {
                let listen = match &admin.listen {
                    Some(v) => parse_addr(v, &p.field("listen"))?,
                    None => SocketAddr::from(([127, 0, 0, 1], 9180)),
                };
                if admin.key.as_deref() == Some("") {
                    return Err(p.field("key").error("must not be empty"));
                }
                let mut a = AdminSettings::new(listen, admin.key.clone());
                if let Some(n) = admin.max_connections {
                    a.max_connections =
                        bounds::int(n, 1, MAX_ADMIN_CONNECTIONS, &p.field("max_connections"))?;
                }
                if let Some(t) = admin.request_timeout {
                    a.request_timeout = bounds::seconds(
                        t,
                        bounds::Min::Exclusive(0.0),
                        MAX_ADMIN_REQUEST_TIMEOUT,
                        &p.field("request_timeout"),
                    )?;
                }
                Some(a)
            };
        }
        if let Some(m) = &file.metrics {
            s.metrics = if m.enabled == Some(false) {
                None
            } else {
                match &m.listen {
                    Some(v) => Some(parse_addr(v, &at.field("metrics").field("listen"))?),
                    None => s.metrics,
                }
            };
            let mat = at.field("metrics");
            if let Some(on) = m.labels {
                s.metric_labels.enabled = on;
            }
            if let Some(n) = m.max_label_sets {
                s.metric_labels.max_label_sets =
                    bounds::int(n, 1, MAX_LABEL_SETS, &mat.field("max_label_sets"))?;
            }
            if s.metrics.is_none() {
                s.metric_labels.enabled = false;
            }
        }
        if let Some(st) = &file.status {
            s.status = status(st, &at.field("status"))?;
        }
        if let Some(t) = &file.tls {
            let p = at.field("tls");
            if t.listen.is_empty() {
                return Err(p.field("listen").error("must list at least one address"));
            }
            s.tls = Some(TlsSettings {
                listen: t
                    .listen
                    .iter()
                    .enumerate()
                    .map(|(i, v)| parse_addr(v, &p.field("listen").index(i)))
                    .collect::<Result<_, _>>()?,
                cert: PathBuf::from(&t.cert),
                key: PathBuf::from(&t.key),
            });
        }
        if let Some(l) = &file.limits {
            let p = at.field("limits");
            if let Some(v) = l.max_head_bytes {
                s.limits.max_head_bytes =
                    bounds::int(v, 1024, 1 << 20, &p.field("max_head_bytes"))?;
            }
            if let Some(v) = l.max_headers {
                s.limits.max_headers = bounds::int(
                    v,
                    8,
                    bounds::MAX_HEADERS_CEILING as i64,
                    &p.field("max_headers"),
                )?;
            }
            if let Some(v) = l.max_body_bytes {
                s.limits.max_body_bytes = bounds::int(v, 0, i64::MAX, &p.field("max_body_bytes"))?;
            }
        }
        if let Some(t) = &file.timeouts {
            let p = at.field("timeouts");
            let secs =
                |v: Option<f64>, name: &str, default: Duration| -> Result<Duration, ConfigError> {
                    match v {
                        None => Ok(default),
                        Some(x) => bounds::seconds(
                            x,
                            bounds::Min::Exclusive(0.0),
                            bounds::MAX_SECONDS,
                            &p.field(name),
                        ),
                    }
                };
            s.timeouts = Timeouts {
                header: secs(t.header, "header", s.timeouts.header)?,
                body: secs(t.body, "body", s.timeouts.body)?,
                idle: secs(t.idle, "idle", s.timeouts.idle)?,
                send: secs(t.send, "send", s.timeouts.send)?,
                drain: secs(t.drain, "drain", s.timeouts.drain)?,
            };
        }
        s.ssl_trusted_certificate = file.ssl_trusted_certificate.as_ref().map(PathBuf::from);
        if let Some(a) = &file.access_log {
            s.access_log = if a.enabled == Some(false) {
                None
            } else {
                match a.path.as_deref() {
                    None | Some("stdout") | Some("-") => Some(AccessLogTarget::Stdout),
                    Some("") => {
                        return Err(at
                            .field("access_log")
                            .field("path")
                            .error("must not be empty"))
                    }
                    Some(p) => Some(AccessLogTarget::File(PathBuf::from(p))),
                }
            };
        }
        if let Some(r) = &file.log_redaction {
            s.log_redaction = log_redaction(r, &at.field("log_redaction"))?;
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

/// `gateway.status`: `None` when `enabled: false` (the other fields are
/// still checked).
fn status(f: &StatusFile, at: &FieldPath) -> Result<Option<StatusSettings>, ConfigError> {
    let mut st = StatusSettings::default();
    if let Some(v) = &f.listen {
        st.listen = parse_addr(v, &at.field("listen"))?;
    }
    if let Some(t) = f.stale_after {
        st.stale_after = bounds::seconds(
            t,
            bounds::Min::Inclusive(0.0),
            bounds::MAX_SECONDS,
            &at.field("stale_after"),
        )?;
    }
    Ok((f.enabled != Some(false)).then_some(st))
}

/// Checks `log_redaction`'s names: header names are tokens (RFC 9110
/// §5.1), query parameter names non-empty without `&`, `=` or spaces.
fn log_redaction(f: &LogRedactionFile, at: &FieldPath) -> Result<LogRedaction, ConfigError> {
    let names = |list: &Option<Vec<String>>,
                 field: &str,
                 ok: fn(u8) -> bool,
                 what: &str|
     -> Result<Vec<String>, ConfigError> {
        let list = list.as_deref().unwrap_or_default();
        for (i, n) in list.iter().enumerate() {
            if n.is_empty() || !n.bytes().all(ok) {
                return Err(at.field(field).index(i).error(what));
            }
        }
        Ok(list.to_vec())
    };
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    let param = |b: u8| b.is_ascii_graphic() && !b"&=#".contains(&b);
    Ok(LogRedaction {
        enabled: f.enabled.unwrap_or(true),
        headers: names(&f.headers, "headers", token, "must be a header name")?,
        query: names(
            &f.query,
            "query",
            param,
            "must be a query parameter name (no `&`, `=`, `#` or spaces)",
        )?,
    })
}

/// Longest busy-poll window accepted: past this, sleeping in the kernel
/// costs less than the wake-up it saves.
const MAX_BUSY_POLL_US: i64 = 100_000;

/// Accepts `"host:port"`, `"[v6]:port"` or a bare port number.
fn parse_addr(v: &Value, at: &FieldPath) -> Result<SocketAddr, ConfigError> {
    match v {
        Value::Number(n) => match n.as_u64() {
            Some(p) if p <= 65535 => Ok(SocketAddr::from(([0, 0, 0, 0], p as u16))),
            _ => Err(at.error("port must be between 0 and 65535")),
        },
        Value::String(s) => {
            if let Ok(p) = s.parse::<u16>() {
                return Ok(SocketAddr::from(([0, 0, 0, 0], p)));
            }
            if let Ok(a) = s.parse::<SocketAddr>() {
                return Ok(a);
            }
            crate::net::dns::dns_enabled()
                .then(|| s.to_socket_addrs().ok())
                .flatten()
                .and_then(|mut it| it.next())
                .ok_or_else(|| at.error(format!("`{s}` is not an address (expected host:port)")))
        }
        _ => Err(at.error("expected an address string \"host:port\" or a port number")),
    }
}

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
