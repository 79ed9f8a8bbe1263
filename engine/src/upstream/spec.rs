//! A compiled `upstream` (APISIX shape): resolved nodes with weights, the
//! smooth-WRR cycle, scheme, Host policy, timeouts, retries and keep-alive
//! limits. Immutable; node picking takes a counter owned by the caller.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::connect::TlsTarget;
use super::endpoint::Endpoint;
use super::pool::KeepaliveSpec;
use crate::balance::WrrCycle;
use crate::config::bounds::{self, Min};
use crate::config::resources::Upstream;
use crate::config::{from_value, ConfigError, FieldPath};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

/// Which `Host` header the upstream sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PassHost {
    /// The client's Host (default).
    Pass,
    /// The node's `host[:port]`.
    Node,
    /// A fixed `upstream_host`.
    Rewrite(Arc<str>),
}

#[derive(Debug)]
pub struct Node {
    pub endpoint: Arc<Endpoint>,
    pub weight: u32,
}

#[derive(Debug)]
pub struct UpstreamSpec {
    pub nodes: Box<[Node]>,
    pub wrr: WrrCycle,
    pub scheme: Scheme,
    pub pass_host: PassHost,
    pub connect_timeout: Duration,
    pub send_timeout: Duration,
    pub read_timeout: Duration,
    /// Further nodes tried after a connection failure.
    pub retries: u32,
    pub keepalive: KeepaliveSpec,
    pub tls_verify: bool,
    /// Index of this upstream's round-robin counter in each worker.
    pub slot: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeFile {
    host: String,
    port: Option<i64>,
    #[serde(default = "one")]
    weight: i64,
    #[serde(default)]
    priority: Option<i64>,
    #[serde(default)]
    metadata: Option<Value>,
}

fn one() -> i64 {
    1
}

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

impl UpstreamSpec {
    pub fn compile(u: &Upstream, at: &FieldPath, slot: usize) -> Result<UpstreamSpec, ConfigError> {
        match u.kind.as_deref() {
            None | Some("roundrobin") => {}
            Some(other) => {
                return Err(at.field("type").error(format!(
                    "`{other}` is not supported for plain upstreams; use `roundrobin`"
                )))
            }
        }
        let scheme = match u.scheme.as_deref() {
            None | Some("http") => Scheme::Http,
            Some("https") => Scheme::Https,
            Some(other) => {
                return Err(at
                    .field("scheme")
                    .error(format!("`{other}` is not supported; use `http` or `https`")))
            }
        };
        let nodes = parse_nodes(&u.nodes, &at.field("nodes"), scheme)?;
        let pass_host = match (u.pass_host.as_deref(), &u.upstream_host) {
            (None | Some("pass"), _) => PassHost::Pass,
            (Some("node"), _) => PassHost::Node,
            (Some("rewrite"), Some(h)) if !h.is_empty() => PassHost::Rewrite(Arc::from(h.as_str())),
            (Some("rewrite"), _) => {
                return Err(at
                    .field("upstream_host")
                    .error("required when `pass_host` is `rewrite`"))
            }
            (Some(other), _) => {
                return Err(at
                    .field("pass_host")
                    .error(format!("`{other}` must be one of pass, node, rewrite")))
            }
        };
        let secs = |v: Option<f64>, name: &str| -> Result<Duration, ConfigError> {
            match v {
                None => Ok(DEFAULT_TIMEOUT),
                Some(x) => bounds::seconds(
                    x,
                    Min::Exclusive(0.0),
                    bounds::MAX_SECONDS,
                    &at.field("timeout").field(name),
                ),
            }
        };
        let t = u.timeout.clone().unwrap_or_default();
        let mut keepalive = KeepaliveSpec::default();
        if let Some(k) = &u.keepalive_pool {
            let p = at.field("keepalive_pool");
            if let Some(size) = k.size {
                keepalive.size = bounds::int(size, 1, bounds::MAX_POOL_SIZE, &p.field("size"))?;
            }
            if let Some(idle) = k.idle_timeout {
                keepalive.idle_timeout = bounds::seconds(
                    idle,
                    Min::Inclusive(0.0),
                    bounds::MAX_SECONDS,
                    &p.field("idle_timeout"),
                )?;
                keepalive.enabled = idle > 0.0;
            }
            if let Some(r) = k.requests {
                keepalive.max_requests =
                    bounds::int(r, 1, i64::from(u32::MAX), &p.field("requests"))?;
            }
        }
        let retries = match u.retries {
            None => u32::try_from(nodes.len().saturating_sub(1)).unwrap_or(u32::MAX),
            Some(r) => bounds::int(r, 0, bounds::MAX_RETRIES, &at.field("retries"))?,
        };
        if let Some(t) = u.retry_timeout {
            // Accepted as APISIX does (ringway's retries are immediate).
            bounds::seconds(
                t,
                Min::Inclusive(0.0),
                bounds::MAX_SECONDS,
                &at.field("retry_timeout"),
            )?;
        }
        let weights: Vec<u32> = nodes.iter().map(|n| n.weight).collect();
        Ok(UpstreamSpec {
            wrr: WrrCycle::new(&weights),
            nodes: nodes.into_boxed_slice(),
            scheme,
            pass_host,
            connect_timeout: secs(t.connect, "connect")?,
            send_timeout: secs(t.send, "send")?,
            read_timeout: secs(t.read, "read")?,
            retries,
            keepalive,
            tls_verify: u.tls.as_ref().and_then(|t| t.verify).unwrap_or(true),
            slot,
        })
    }

    /// The node for round-robin position `counter`, and the fallback order
    /// after it.
    pub fn pick(&self, counter: u64) -> Option<usize> {
        self.wrr.pick(counter)
    }

    pub fn tls_target(&self, node: &Node) -> Option<TlsTarget> {
        match self.scheme {
            Scheme::Http => None,
            Scheme::Https => Some(TlsTarget {
                sni: node.endpoint.host.clone(),
                verify: self.tls_verify,
            }),
        }
    }
}

fn parse_nodes(v: &Value, at: &FieldPath, scheme: Scheme) -> Result<Vec<Node>, ConfigError> {
    let mut out = Vec::new();
    match v {
        Value::Array(items) => {
            bounds::members(items, at)?;
            for (i, item) in items.iter().enumerate() {
                let p = at.index(i);
                let n: NodeFile = from_value(item, &p)?;
                let _ = (&n.priority, &n.metadata);
                if n.host.is_empty() {
                    return Err(p.field("host").error("must not be empty"));
                }
                let port = match n.port {
                    None => scheme.default_port(),
                    Some(x @ 1..=65535) => x as u16,
                    Some(_) => return Err(p.field("port").error("must be between 1 and 65535")),
                };
                let weight = bounds::int(n.weight, 0, bounds::MAX_WEIGHT, &p.field("weight"))?;
                out.push(Node {
                    endpoint: Endpoint::resolve(&n.host, port),
                    weight,
                });
            }
        }
        Value::Object(map) => {
            if map.len() > bounds::MAX_MEMBERS {
                return Err(at.error(format!(
                    "lists {} nodes; at most {} are allowed",
                    map.len(),
                    bounds::MAX_MEMBERS
                )));
            }
            for (k, w) in map {
                let p = at.field(k);
                let (host, port) =
                    split_host_port(k, scheme).ok_or_else(|| p.error("expected `host:port`"))?;
                let weight = w
                    .as_i64()
                    .ok_or_else(|| p.error("weight must be an integer >= 0"))?;
                out.push(Node {
                    endpoint: Endpoint::resolve(host, port),
                    weight: bounds::int(weight, 0, bounds::MAX_WEIGHT, &p)?,
                });
            }
        }
        Value::Null => return Err(at.error("missing field `nodes`")),
        _ => {
            return Err(at.error(
                "expected a list of {host, port, weight} or a map of \"host:port\": weight",
            ))
        }
    }
    if out.is_empty() {
        return Err(at.error("must contain at least one node"));
    }
    Ok(out)
}

fn split_host_port(s: &str, scheme: Scheme) -> Option<(&str, u16)> {
    if s.is_empty() {
        return None;
    }
    if let Some(rest) = s.strip_prefix('[') {
        let end = rest.find(']')?;
        let host = &s[..end + 2];
        return match &rest[end + 1..] {
            "" => Some((host, scheme.default_port())),
            p => Some((host, p.strip_prefix(':')?.parse().ok()?)),
        };
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() => Some((h, p.parse().ok().filter(|p| *p > 0)?)),
        Some(_) => None,
        None => Some((s, scheme.default_port())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn up(v: Value) -> Result<UpstreamSpec, ConfigError> {
        let u: Upstream = serde_json::from_value(v).unwrap();
        UpstreamSpec::compile(&u, &FieldPath::root().field("upstream"), 0)
    }

    #[test]
    fn both_node_forms() {
        let a = up(json!({"nodes": [{"host": "127.0.0.1", "port": 1980, "weight": 3}]})).unwrap();
        assert_eq!(a.nodes[0].endpoint.port, 1980);
        assert_eq!(a.retries, 0);
        let b = up(json!({"nodes": {"127.0.0.1:1980": 1, "127.0.0.1:1981": 1}, "scheme": "https"}))
            .unwrap();
        assert_eq!(b.nodes.len(), 2);
        assert!(b.tls_verify);
        assert_eq!(b.retries, 1);
    }

    #[test]
    fn errors_name_fields() {
        assert_eq!(
            up(json!({"nodes": [{"host": "a", "port": 0}]}))
                .unwrap_err()
                .path,
            "upstream.nodes[0].port"
        );
        assert_eq!(
            up(json!({"nodes": [{"host": "a", "weight": -1}]}))
                .unwrap_err()
                .path,
            "upstream.nodes[0].weight"
        );
        assert_eq!(
            up(json!({"nodes": {"a:x": 1}})).unwrap_err().path,
            "upstream.nodes.a:x"
        );
        assert_eq!(up(json!({"nodes": []})).unwrap_err().path, "upstream.nodes");
        assert_eq!(
            up(json!({"nodes": [{"host": "a"}], "scheme": "grpc"}))
                .unwrap_err()
                .path,
            "upstream.scheme"
        );
        assert_eq!(
            up(json!({"nodes": [{"host": "a"}], "pass_host": "rewrite"}))
                .unwrap_err()
                .path,
            "upstream.upstream_host"
        );
    }

    #[test]
    fn host_port_split() {
        assert_eq!(split_host_port("a:1", Scheme::Http), Some(("a", 1)));
        assert_eq!(split_host_port("a", Scheme::Https), Some(("a", 443)));
        assert_eq!(split_host_port("[::1]:8", Scheme::Http), Some(("[::1]", 8)));
        assert_eq!(split_host_port(":8", Scheme::Http), None);
    }
}
