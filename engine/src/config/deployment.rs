//! The `deployment:` section, APISIX's `conf/config.yaml` keys with their
//! meaning: which role this node plays and where its configuration comes
//! from.
//!
//! | `role` | `config_provider` | ringway |
//! |---|---|---|
//! | (no section) | | the file, re-read on change, plus an Admin API whose changes are kept beside it |
//! | `traditional` | `etcd` | etcd is the configuration; the Admin API writes there |
//! | `traditional` | `yaml` / `json` | API-driven standalone: the Admin API's `/apisix/admin/configs` replaces the whole configuration (the file's resources are the first one) |
//! | `data_plane` | `etcd` | etcd is the configuration, read only; no Admin API |
//! | `data_plane` | `yaml` / `json` | file-driven standalone: the file, re-read on change; no Admin API |
//! | `control_plane` | `etcd` | the Admin API on etcd, no proxy traffic |
//!
//! Anything else (a `control_plane` without etcd, an etcd provider without
//! `deployment.etcd`, an Admin API on a data plane) is refused with the
//! field path. ringway has no conf server: APISIX's decoupled data planes
//! that read a control plane's `conf_server` read etcd directly here.

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::bounds;
use super::error::{from_value, ConfigError, FieldPath};

/// The node's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Traditional,
    DataPlane,
    ControlPlane,
}

/// Where the configuration comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    Etcd,
    /// The file (`yaml` and `json` alike: ringway reads both).
    File,
}

/// The section, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Deployment {
    pub role: Role,
    pub provider: Provider,
    /// Set exactly when `provider` is etcd.
    pub etcd: Option<EtcdSettings>,
    /// APISIX's `deployment.admin`, when given (it then takes the place
    /// of `gateway.admin`).
    pub admin: Option<DeploymentAdmin>,
}

/// `deployment.admin`: the keys of APISIX's that ringway's Admin API has.
#[derive(Debug, Clone, PartialEq)]
pub struct DeploymentAdmin {
    /// `enable_admin` (default true).
    pub enabled: bool,
    /// `admin_listen: {ip, port}` (default ringway's 127.0.0.1:9180:
    /// APISIX's 0.0.0.0 would open it to the network).
    pub listen: Option<std::net::SocketAddr>,
    /// The first `admin_key` entry with `role: admin`.
    pub key: Option<String>,
}

impl Deployment {
    /// Whether this node serves an Admin API.
    pub fn has_admin(&self) -> bool {
        self.role != Role::DataPlane
    }

    /// Whether this node proxies requests.
    pub fn serves_traffic(&self) -> bool {
        self.role != Role::ControlPlane
    }

    /// API-driven standalone: `/apisix/admin/configs` holds everything.
    pub fn api_driven(&self) -> bool {
        self.role == Role::Traditional && self.provider == Provider::File
    }
}

/// `deployment.etcd`.
#[derive(Debug, Clone, PartialEq)]
pub struct EtcdSettings {
    /// `host`: endpoints tried in turn (`http://` or `https://`).
    pub hosts: Vec<EtcdHost>,
    /// `prefix` (default `/apisix`), without a trailing `/`.
    pub prefix: String,
    /// `timeout` for each call (default 30 s).
    pub timeout: Duration,
    /// `watch_timeout`: how long one watch request stays open before it is
    /// renewed (default 50 s).
    pub watch_timeout: Duration,
    /// `startup_retry`: full reads tried at start before giving up
    /// (default 2).
    pub startup_retry: u32,
    pub user: Option<String>,
    pub password: Option<String>,
    pub tls: Option<EtcdTls>,
    /// When etcd cannot be read at start (ringway's key): serve the last
    /// configuration read from it (kept on disk), or refuse to start.
    pub on_unreachable: OnUnreachable,
}

/// `deployment.etcd.on_unreachable`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnUnreachable {
    /// Serve the last good configuration kept on disk, if there is one;
    /// refuse to start without one (the default).
    LastGood,
    /// Refuse to start.
    Refuse,
}

/// One etcd endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct EtcdHost {
    pub tls: bool,
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for EtcdHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        write!(f, "{scheme}://{}:{}", self.host, self.port)
    }
}

/// `deployment.etcd.tls`.
#[derive(Debug, Clone, PartialEq)]
pub struct EtcdTls {
    /// A client certificate and its key (PEM files), for mutual TLS.
    pub cert: Option<String>,
    pub key: Option<String>,
    /// `verify` (default true): check the server's certificate.
    pub verify: bool,
    /// `sni`: the name to ask for and check (default the host).
    pub sni: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeploymentFile {
    role: String,
    role_traditional: Option<RoleFile>,
    role_data_plane: Option<RoleFile>,
    role_control_plane: Option<RoleFile>,
    etcd: Option<EtcdFile>,
    admin: Option<AdminFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdminFile {
    enable_admin: Option<bool>,
    admin_key_required: Option<bool>,
    admin_key: Option<Vec<AdminKeyFile>>,
    admin_listen: Option<ListenFile>,
    admin_api_version: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdminKeyFile {
    /// APISIX's label for the key (not used).
    #[allow(dead_code)]
    name: Option<String>,
    key: String,
    role: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListenFile {
    ip: Option<String>,
    port: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleFile {
    config_provider: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EtcdFile {
    host: Vec<String>,
    prefix: Option<String>,
    timeout: Option<f64>,
    watch_timeout: Option<f64>,
    startup_retry: Option<i64>,
    user: Option<String>,
    password: Option<String>,
    tls: Option<EtcdTlsFile>,
    on_unreachable: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EtcdTlsFile {
    cert: Option<String>,
    key: Option<String>,
    verify: Option<bool>,
    sni: Option<String>,
}

impl Deployment {
    /// Parses the section at `at`.
    pub fn from_value(value: &Value, at: &FieldPath) -> Result<Deployment, ConfigError> {
        let file: DeploymentFile = from_value(value, at)?;
        let (role, key) = match file.role.as_str() {
            "traditional" => (Role::Traditional, "role_traditional"),
            "data_plane" => (Role::DataPlane, "role_data_plane"),
            "control_plane" => (Role::ControlPlane, "role_control_plane"),
            other => {
                return Err(at.field("role").error(format!(
                    "unknown role `{other}`: expected traditional, data_plane or control_plane"
                )))
            }
        };
        for (name, given) in [
            ("role_traditional", file.role_traditional.is_some()),
            ("role_data_plane", file.role_data_plane.is_some()),
            ("role_control_plane", file.role_control_plane.is_some()),
        ] {
            if given && name != key {
                return Err(at
                    .field(name)
                    .error(format!("does not apply to role `{}`", file.role)));
            }
        }
        let role_file = match role {
            Role::Traditional => &file.role_traditional,
            Role::DataPlane => &file.role_data_plane,
            Role::ControlPlane => &file.role_control_plane,
        };
        let provider_at = at.field(key).field("config_provider");
        let provider = match role_file.as_ref().map(|r| r.config_provider.as_str()) {
            // APISIX's default provider is etcd.
            None | Some("etcd") => Provider::Etcd,
            Some("yaml" | "json") => Provider::File,
            Some(other) => {
                return Err(provider_at.error(format!(
                    "unknown config_provider `{other}`: expected etcd, yaml or json"
                )))
            }
        };
        if role == Role::ControlPlane && provider != Provider::Etcd {
            return Err(provider_at.error("a control plane keeps its configuration in etcd"));
        }
        let admin = match &file.admin {
            Some(_) if role == Role::DataPlane => {
                return Err(at.field("admin").error("a data plane serves no Admin API"));
            }
            Some(a) => Some(deployment_admin(a, &at.field("admin"))?),
            None => None,
        };
        let etcd = match (provider, &file.etcd) {
            (Provider::Etcd, Some(e)) => Some(etcd_settings(e, &at.field("etcd"))?),
            (Provider::Etcd, None) => {
                return Err(at
                    .field("etcd")
                    .error("is required with config_provider etcd (its `host` list at least)"))
            }
            (Provider::File, Some(_)) => return Err(at.field("etcd").error(
                "does not apply: the configuration comes from the file (config_provider yaml/json)",
            )),
            (Provider::File, None) => None,
        };
        Ok(Deployment {
            role,
            provider,
            etcd,
            admin,
        })
    }
}

fn deployment_admin(a: &AdminFile, at: &FieldPath) -> Result<DeploymentAdmin, ConfigError> {
    if a.admin_key_required == Some(false) {
        return Err(at
            .field("admin_key_required")
            .error("ringway's Admin API always requires a key"));
    }
    if let Some(v) = a.admin_api_version.as_deref().filter(|v| *v != "v3") {
        return Err(at
            .field("admin_api_version")
            .error(format!("`{v}`: ringway speaks APISIX's v3 Admin API")));
    }
    let mut key = None;
    for (i, k) in a.admin_key.iter().flatten().enumerate() {
        let kat = at.field("admin_key").index(i);
        match k.role.as_deref() {
            None | Some("admin") => {}
            Some(r) => {
                return Err(kat
                    .field("role")
                    .error(format!("`{r}`: ringway's Admin API has one role, admin")))
            }
        }
        if k.key.is_empty() {
            return Err(kat.field("key").error("must not be empty"));
        }
        key.get_or_insert_with(|| k.key.clone());
    }
    let listen = match &a.admin_listen {
        None => None,
        Some(l) => {
            let lat = at.field("admin_listen");
            let ip: std::net::IpAddr =
                l.ip.as_deref()
                    .unwrap_or("127.0.0.1")
                    .parse()
                    .map_err(|_| lat.field("ip").error("must be an IP address"))?;
            let port = match l.port {
                None => 9180,
                Some(p) => bounds::int::<u16>(p, 1, 65535, &lat.field("port"))?,
            };
            Some(std::net::SocketAddr::new(ip, port))
        }
    };
    Ok(DeploymentAdmin {
        enabled: a.enable_admin.unwrap_or(true),
        listen,
        key,
    })
}

fn etcd_settings(e: &EtcdFile, at: &FieldPath) -> Result<EtcdSettings, ConfigError> {
    if e.host.is_empty() {
        return Err(at.field("host").error("must list at least one endpoint"));
    }
    let hosts = e
        .host
        .iter()
        .enumerate()
        .map(|(i, h)| etcd_host(h, &at.field("host").index(i)))
        .collect::<Result<Vec<_>, _>>()?;
    let prefix = e.prefix.clone().unwrap_or_else(|| "/apisix".to_owned());
    if !prefix.starts_with('/') || prefix.len() > 256 {
        return Err(at
            .field("prefix")
            .error("must start with `/` (at most 256 bytes)"));
    }
    let secs = |v: Option<f64>, default: u64, name: &str| -> Result<Duration, ConfigError> {
        match v {
            None => Ok(Duration::from_secs(default)),
            Some(s) => bounds::seconds(
                s,
                bounds::Min::Exclusive(0.0),
                bounds::MAX_SECONDS,
                &at.field(name),
            ),
        }
    };
    let tls = e.tls.as_ref().map(|t| EtcdTls {
        cert: t.cert.clone(),
        key: t.key.clone(),
        verify: t.verify.unwrap_or(true),
        sni: t.sni.clone(),
    });
    if let Some(t) = &tls {
        if t.cert.is_some() != t.key.is_some() {
            return Err(at
                .field("tls")
                .error("`cert` and `key` go together (a client certificate and its key)"));
        }
    }
    if e.user.is_some() != e.password.is_some() {
        return Err(at
            .field("password")
            .error("`user` and `password` go together"));
    }
    let on_unreachable = match e.on_unreachable.as_deref() {
        None | Some("last_good") => OnUnreachable::LastGood,
        Some("refuse") => OnUnreachable::Refuse,
        Some(other) => {
            return Err(at
                .field("on_unreachable")
                .error(format!("unknown `{other}`: expected last_good or refuse")))
        }
    };
    Ok(EtcdSettings {
        hosts,
        prefix: prefix.trim_end_matches('/').to_owned(),
        timeout: secs(e.timeout, 30, "timeout")?,
        watch_timeout: secs(e.watch_timeout, 50, "watch_timeout")?,
        startup_retry: match e.startup_retry {
            None => 2,
            Some(n) => bounds::int::<u32>(n, 1, 100, &at.field("startup_retry"))?,
        },
        user: e.user.clone(),
        password: e.password.clone(),
        tls,
        on_unreachable,
    })
}

/// `http://host:port` or `https://host:port` (port default 2379).
fn etcd_host(s: &str, at: &FieldPath) -> Result<EtcdHost, ConfigError> {
    let (tls, rest) = if let Some(r) = s.strip_prefix("http://") {
        (false, r)
    } else if let Some(r) = s.strip_prefix("https://") {
        (true, r)
    } else {
        return Err(at.error("must be an http:// or https:// URL"));
    };
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() || rest.contains('/') || rest.contains('@') {
        return Err(at.error("must be scheme://host[:port], nothing more"));
    }
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => match p.parse::<u16>() {
            Ok(p) if p > 0 => (h, p),
            _ => return Err(at.error("the port must be 1-65535")),
        },
        _ => (rest, 2379),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(at.error("names no host"));
    }
    Ok(EtcdHost {
        tls,
        host: host.to_owned(),
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<Deployment, String> {
        Deployment::from_value(&v, &FieldPath::root().field("deployment"))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn apisix_shapes_and_their_meaning() {
        let d = parse(json!({"role": "traditional", "role_traditional": {"config_provider": "etcd"},
            "etcd": {"host": ["http://127.0.0.1:2379", "https://etcd.local"], "prefix": "/apisix/", "timeout": 5}}))
        .unwrap();
        assert_eq!((d.role, d.provider), (Role::Traditional, Provider::Etcd));
        let e = d.etcd.unwrap();
        assert_eq!(e.hosts[0].to_string(), "http://127.0.0.1:2379");
        assert_eq!(e.hosts[1].to_string(), "https://etcd.local:2379");
        assert_eq!(e.prefix, "/apisix");
        assert_eq!(e.timeout, Duration::from_secs(5));
        assert_eq!(e.on_unreachable, OnUnreachable::LastGood);
        let d =
            parse(json!({"role": "data_plane", "role_data_plane": {"config_provider": "yaml"}}))
                .unwrap();
        assert!(!d.has_admin() && d.serves_traffic() && !d.api_driven());
        let d =
            parse(json!({"role": "traditional", "role_traditional": {"config_provider": "json"}}))
                .unwrap();
        assert!(d.api_driven() && d.has_admin());
        let d = parse(json!({"role": "control_plane", "etcd": {"host": ["http://e:1"]}})).unwrap();
        assert!(!d.serves_traffic() && d.has_admin());
        // APISIX's deployment.admin, as its config.yaml writes it.
        let d = parse(
            json!({"role": "traditional", "role_traditional": {"config_provider": "yaml"},
            "admin": {"admin_key": [{"name": "admin", "key": "edd1c9f0", "role": "admin"}],
                      "admin_listen": {"ip": "0.0.0.0", "port": 9180}, "enable_admin": true}}),
        )
        .unwrap();
        let a = d.admin.unwrap();
        assert_eq!(a.key.as_deref(), Some("edd1c9f0"));
        assert_eq!(a.listen, Some("0.0.0.0:9180".parse().unwrap()));
        assert!(a.enabled);
    }

    #[test]
    fn contradictions_are_refused_with_the_field() {
        for (v, path) in [
            (json!({"role": "edge"}), "deployment.role"),
            (
                json!({"role": "traditional", "role_data_plane": {"config_provider": "yaml"}}),
                "deployment.role_data_plane",
            ),
            (
                json!({"role": "traditional", "role_traditional": {"config_provider": "consul"}}),
                "deployment.role_traditional.config_provider",
            ),
            (
                json!({"role": "control_plane", "role_control_plane": {"config_provider": "yaml"}}),
                "deployment.role_control_plane.config_provider",
            ),
            (json!({"role": "traditional"}), "deployment.etcd"),
            (
                json!({"role": "data_plane", "role_data_plane": {"config_provider": "yaml"}, "etcd": {"host": ["http://e"]}}),
                "deployment.etcd",
            ),
            (
                json!({"role": "traditional", "etcd": {"host": []}}),
                "deployment.etcd.host",
            ),
            (
                json!({"role": "traditional", "etcd": {"host": ["etcd:2379"]}}),
                "deployment.etcd.host[0]",
            ),
            (
                json!({"role": "traditional", "etcd": {"host": ["http://e:0"]}}),
                "deployment.etcd.host[0]",
            ),
            (
                json!({"role": "traditional", "etcd": {"host": ["http://e"], "prefix": "apisix"}}),
                "deployment.etcd.prefix",
            ),
            (
                json!({"role": "traditional", "etcd": {"host": ["http://e"], "timeout": 0}}),
                "deployment.etcd.timeout",
            ),
            (
                json!({"role": "traditional", "etcd": {"host": ["http://e"], "user": "root"}}),
                "deployment.etcd.password",
            ),
            (
                json!({"role": "traditional", "etcd": {"host": ["http://e"], "tls": {"cert": "c.pem"}}}),
                "deployment.etcd.tls",
            ),
            (
                json!({"role": "traditional", "etcd": {"host": ["http://e"], "on_unreachable": "hope"}}),
                "deployment.etcd.on_unreachable",
            ),
            (
                json!({"role": "traditional", "etcd": {"host": ["http://e"], "bogus": 1}}),
                "deployment.etcd",
            ),
            (
                json!({"role": "traditional", "admin": {"allow_admin": ["127.0.0.0/24"]}, "etcd": {"host": ["http://e"]}}),
                "deployment.admin",
            ),
            (
                json!({"role": "traditional", "admin": {"admin_key": [{"name": "v", "key": "k", "role": "viewer"}]}, "etcd": {"host": ["http://e"]}}),
                "deployment.admin.admin_key[0].role",
            ),
            (
                json!({"role": "traditional", "admin": {"admin_key_required": false}, "etcd": {"host": ["http://e"]}}),
                "deployment.admin.admin_key_required",
            ),
            (
                json!({"role": "traditional", "admin": {"admin_listen": {"ip": "x", "port": 9180}}, "etcd": {"host": ["http://e"]}}),
                "deployment.admin.admin_listen.ip",
            ),
            (
                json!({"role": "data_plane", "role_data_plane": {"config_provider": "yaml"}, "admin": {"enable_admin": false}}),
                "deployment.admin",
            ),
        ] {
            let e = parse(v.clone()).unwrap_err();
            assert!(e.starts_with(path), "{v}: {e}");
        }
    }
}
