//! The soak's route, created and then changed through ringway's Admin API
//! (`PUT /apisix/admin/routes/soak`, APISIX's route JSON), so reloads
//! happen under traffic.
//!
//! The route: `ai-proxy-multi` over mock-llm `a`, `b`, `c` falling back on
//! 429 and 5xx, with a per-attempt `timeout` and `max_stream_duration_ms`
//! (stalls end) and a short upstream `keepalive_timeout` (idle pooled
//! connections close soon after the load, for the file-descriptor
//! check); `ai-rate-limiting` on Redis with a budget never reached and
//! `allow_degradation` (Redis down must not refuse requests);
//! `http-logger` to the log sink, and `kafka-logger` when a broker runs.
//! Each change rotates the weights and `temperature`; every other change
//! also changes the loggers' batch size and the limit, so their sinks and
//! stores are rebuilt too.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use mock_llm::MockServer;
use serde_json::{json, Value};

use super::chaos::{nap, EventLog};

/// The route's id and path.
pub const ROUTE: &str = "soak";
pub const PATH: &str = "/v1/chat/completions";
/// `ai-proxy-multi.timeout`, ms: connect, send and each wait for bytes.
pub const TIMEOUT_MS: u64 = 3_000;
/// `ai-proxy-multi.max_stream_duration_ms`.
pub const MAX_STREAM_MS: u64 = 8_000;
/// Upstream and Redis `keepalive_timeout`, ms (the least allowed is 1000).
pub const KEEPALIVE_MS: u64 = 2_000;

/// Where the route's plugins point.
#[derive(Debug, Clone)]
pub struct Targets {
    pub redis_port: u16,
    pub log_sink: String,
    pub kafka_port: Option<u16>,
}

/// The route body of change number `n`.
pub fn route(m: &MockServer, t: &Targets, n: usize) -> Value {
    let weights = [[5, 3, 2], [2, 5, 3], [3, 2, 5]][n % 3];
    let even = n % 2 == 0;
    let instances: Vec<Value> = ["a", "b", "c"]
        .iter()
        .zip(weights)
        .map(|(name, weight)| {
            json!({
                "name": name,
                "provider": "openai-compatible",
                "weight": weight,
                "auth": {"header": {"Authorization": "Bearer soak"}},
                "options": {"model": format!("m-{name}"), "temperature": (n % 5) as f64 / 10.0},
                "override": {"endpoint": format!("{}/v1/chat/completions", m.instance(name).url())},
            })
        })
        .collect();
    let limit: u64 = if even {
        1_000_000_000_000
    } else {
        2_000_000_000_000
    };
    let batch = if even { 50 } else { 100 };
    let limits: Vec<Value> = ["a", "b", "c"]
        .iter()
        .map(|n| json!({"name": n, "limit": limit, "time_window": 60}))
        .collect();
    let mut plugins = json!({
        "ai-proxy-multi": {
            "fallback_strategy": ["http_429", "http_5xx"],
            "timeout": TIMEOUT_MS,
            "max_stream_duration_ms": MAX_STREAM_MS,
            "keepalive_timeout": KEEPALIVE_MS,
            "instances": instances,
        },
        "ai-rate-limiting": {
            "policy": "redis",
            "redis_host": "127.0.0.1",
            "redis_port": t.redis_port,
            "redis_timeout": 1000,
            "redis_keepalive_timeout": KEEPALIVE_MS,
            "allow_degradation": true,
            "instances": limits,
        },
        "http-logger": {
            "uri": t.log_sink,
            "batch_max_size": batch,
            "inactive_timeout": 1,
            "max_retry_count": 2,
            "retry_delay": 1,
            "timeout": 2,
        },
    });
    if let Some(port) = t.kafka_port {
        plugins["kafka-logger"] = json!({
            "brokers": [{"host": "127.0.0.1", "port": port}],
            "kafka_topic": super::kafka::TOPIC,
            "batch_max_size": batch,
            "inactive_timeout": 1,
            "max_retry_count": 2,
            "retry_delay": 1,
            "timeout": 2,
        });
    }
    json!({"uri": PATH, "plugins": plugins})
}

/// `PUT /apisix/admin/routes/soak`; the status, or why there was none.
pub fn put_route(admin: SocketAddr, key: &str, body: &Value) -> Result<u16, String> {
    let body = body.to_string();
    let mut c = TcpStream::connect(admin).map_err(|e| format!("connect: {e}"))?;
    c.set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    write!(
        c,
        "PUT /apisix/admin/routes/{ROUTE} HTTP/1.1\r\nHost: admin\r\nX-API-KEY: {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .map_err(|e| format!("send: {e}"))?;
    let mut got = Vec::new();
    c.read_to_end(&mut got).map_err(|e| format!("read: {e}"))?;
    let text = String::from_utf8_lossy(&got);
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status in {:?}", &text[..text.len().min(200)]))?;
    if status == 200 || status == 201 {
        Ok(status)
    } else {
        let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
        Err(format!(
            "answered {status}: {}",
            &body[..body.len().min(300)]
        ))
    }
}

/// Changes the route every `every` until `stop`, from change number
/// `first` on; each change is an `admin change` event (with the error
/// when refused).
#[allow(clippy::too_many_arguments)]
pub fn admin_track(
    m: &MockServer,
    t: &Targets,
    admin: SocketAddr,
    key: &str,
    first: usize,
    every: Duration,
    stop: &AtomicBool,
    log: &EventLog,
) {
    let mut n = first;
    while nap(stop, every) {
        let r = put_route(admin, key, &route(m, t, n));
        log.push("admin change", format!("route change {n}"), r.err());
        n += 1;
    }
}
