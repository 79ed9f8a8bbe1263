//! Each section of the `gateway:` block read and checked on its own:
//! addresses, workers, the Admin API, metrics, status, TLS, limits,
//! timeouts, the access log, log redaction. `GatewaySettings::from_value`
//! (in the parent) puts them together.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use super::super::bounds;
use super::super::error::{ConfigError, FieldPath};
use super::*;

/// A non-empty list of listen addresses.
pub(super) fn addresses(list: &[Value], at: &FieldPath) -> Result<Vec<SocketAddr>, ConfigError> {
    if list.is_empty() {
        return Err(at.error("must list at least one address"));
    }
    list.iter()
        .enumerate()
        .map(|(i, v)| parse_addr(v, &at.index(i)))
        .collect()
}

/// `workers`: `"auto"` (the CPUs this process may use) or 1 to 1024.
pub(super) fn workers(w: &Value, at: &FieldPath) -> Result<usize, ConfigError> {
    let bad = || at.error("must be \"auto\" or an integer between 1 and 1024");
    match w {
        Value::String(a) if a == "auto" => Ok(default_workers()),
        Value::Number(n) => match n.as_u64() {
            Some(n @ 1..=1024) => Ok(n as usize),
            _ => Err(bad()),
        },
        _ => Err(bad()),
    }
}

/// `admin`: `None` when `enabled: false`.
pub(super) fn admin(
    admin: &AdminFile,
    p: &FieldPath,
) -> Result<Option<AdminSettings>, ConfigError> {
    if admin.enabled == Some(false) {
        return Ok(None);
    }
    let listen = match &admin.listen {
        Some(v) => parse_addr(v, &p.field("listen"))?,
        None => SocketAddr::from(([127, 0, 0, 1], 9180)),
    };
    if admin.key.as_deref() == Some("") {
        return Err(p.field("key").error("must not be empty"));
    }
    let mut a = AdminSettings::new(listen, admin.key.clone());
    if let Some(n) = admin.max_connections {
        a.max_connections = bounds::int(n, 1, MAX_ADMIN_CONNECTIONS, &p.field("max_connections"))?;
    }
    if let Some(t) = admin.request_timeout {
        a.request_timeout = bounds::seconds(
            t,
            bounds::Min::Exclusive(0.0),
            MAX_ADMIN_REQUEST_TIMEOUT,
            &p.field("request_timeout"),
        )?;
    }
    Ok(Some(a))
}

/// `metrics`: the listener (off with `enabled: false`) and the labelled
/// families (off without a listener).
pub(super) fn metrics(
    m: &MetricsFile,
    at: &FieldPath,
    s: &mut GatewaySettings,
) -> Result<(), ConfigError> {
    s.metrics = if m.enabled == Some(false) {
        None
    } else {
        match &m.listen {
            Some(v) => Some(parse_addr(v, &at.field("listen"))?),
            None => s.metrics,
        }
    };
    if let Some(on) = m.labels {
        s.metric_labels.enabled = on;
    }
    if let Some(n) = m.max_label_sets {
        s.metric_labels.max_label_sets =
            bounds::int(n, 1, MAX_LABEL_SETS, &at.field("max_label_sets"))?;
    }
    if s.metrics.is_none() {
        s.metric_labels.enabled = false;
    }
    Ok(())
}

/// `tls`: its listeners, certificate and key.
pub(super) fn tls(t: &TlsFile, p: &FieldPath) -> Result<TlsSettings, ConfigError> {
    Ok(TlsSettings {
        listen: addresses(&t.listen, &p.field("listen"))?,
        cert: PathBuf::from(&t.cert),
        key: PathBuf::from(&t.key),
    })
}

/// `limits`, over the defaults in `limits`.
pub(super) fn limits(
    l: &LimitsFile,
    p: &FieldPath,
    limits: &mut Limits,
) -> Result<(), ConfigError> {
    if let Some(v) = l.max_head_bytes {
        limits.max_head_bytes = bounds::int(v, 1024, 1 << 20, &p.field("max_head_bytes"))?;
    }
    if let Some(v) = l.max_headers {
        limits.max_headers = bounds::int(
            v,
            8,
            bounds::MAX_HEADERS_CEILING as i64,
            &p.field("max_headers"),
        )?;
    }
    if let Some(v) = l.max_body_bytes {
        limits.max_body_bytes = bounds::int(v, 0, i64::MAX, &p.field("max_body_bytes"))?;
    }
    Ok(())
}

/// `timeouts`, each over its default in `d`.
pub(super) fn timeouts(
    t: &TimeoutsFile,
    p: &FieldPath,
    d: Timeouts,
) -> Result<Timeouts, ConfigError> {
    let secs = |v: Option<f64>, name: &str, default: Duration| -> Result<Duration, ConfigError> {
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
    Ok(Timeouts {
        header: secs(t.header, "header", d.header)?,
        body: secs(t.body, "body", d.body)?,
        idle: secs(t.idle, "idle", d.idle)?,
        send: secs(t.send, "send", d.send)?,
        drain: secs(t.drain, "drain", d.drain)?,
    })
}

/// `access_log`: `None` when `enabled: false`; stdout unless a path is set.
pub(super) fn access_log(
    a: &AccessLogFile,
    at: &FieldPath,
) -> Result<Option<AccessLogTarget>, ConfigError> {
    if a.enabled == Some(false) {
        return Ok(None);
    }
    match a.path.as_deref() {
        None | Some("stdout") | Some("-") => Ok(Some(AccessLogTarget::Stdout)),
        Some("") => Err(at.field("path").error("must not be empty")),
        Some(p) => Ok(Some(AccessLogTarget::File(PathBuf::from(p)))),
    }
}

/// `gateway.status`: `None` when `enabled: false` (the other fields are
/// still checked).
pub(super) fn status(
    f: &StatusFile,
    at: &FieldPath,
) -> Result<Option<StatusSettings>, ConfigError> {
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
pub(super) fn log_redaction(
    f: &LogRedactionFile,
    at: &FieldPath,
) -> Result<LogRedaction, ConfigError> {
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

/// Accepts `"host:port"`, `"[v6]:port"` or a bare port number.
pub(super) fn parse_addr(v: &Value, at: &FieldPath) -> Result<SocketAddr, ConfigError> {
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
