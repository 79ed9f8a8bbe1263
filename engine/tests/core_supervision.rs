//! A panic never kills a part of the gateway for good: with the debug
//! build's fault hook (`RINGWAY_INJECT_PANIC`) every supervised component
//! panics once, and each one is shown working afterwards through the
//! binary — the only worker, its accept loop, TLS handshakes, connections,
//! the timer driver, the pool sweeper, log shipping, the access-log writer,
//! a logger plugin's thread, health checks, DNS, the Admin API, metrics,
//! the Status API and signal handling — while `ringway_panics_total{component}` counts
//! exactly one panic each.
#![allow(clippy::disallowed_types, clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use common::ai::{chat_url, instance, mocks, ASK};
use common::{admin, loggers, Conn, Gateway, Upstream};
use serde_json::{json, Value};

const COMPONENTS: &[&str] = &[
    "worker",
    "accept",
    "tls_handshake",
    "connection",
    "timer",
    "pool_sweeper",
    "log_shipper",
    "health",
    "health_probe",
    "dns",
    "admin",
    "admin_request",
    "metrics",
    "metrics_request",
    "status",
    "status_request",
    "access_log",
    "logger_sink",
    "signals",
];

/// `ringway_panics_total` by component.
fn panics(gw: &Gateway) -> Vec<(String, u64)> {
    let text = Conn::connect(gw.metrics_addr.unwrap())
        .get("/metrics")
        .text();
    text.lines()
        .filter_map(|l| l.strip_prefix("ringway_panics_total{component=\""))
        .map(|l| {
            let (name, v) = l.split_once("\"} ").unwrap();
            (name.to_owned(), v.parse().unwrap())
        })
        .collect()
}

fn panics_of(gw: &Gateway, component: &str) -> u64 {
    panics(gw)
        .into_iter()
        .find(|(c, _)| c == component)
        .unwrap_or_else(|| panic!("no ringway_panics_total for {component}"))
        .1
}

/// Waits until `component` has panicked once (some fire on a timer).
fn wait_panicked(gw: &Gateway, component: &str, within: Duration) {
    let deadline = Instant::now() + within;
    while panics_of(gw, component) == 0 {
        assert!(
            Instant::now() < deadline,
            "{component} never reached its fault point"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether a request on a fresh connection is answered (the first one
/// after a connection-level fault is closed instead).
fn answered(addr: std::net::SocketAddr, path: &str) -> Option<u16> {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").as_bytes())
        .unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    text.strip_prefix("HTTP/1.1 ")
        .and_then(|t| t.get(..3))
        .map(|c| c.parse().unwrap())
}

fn tls_get(gw: &Gateway, pki: &common::certs::TestPki, path: &str) -> Option<String> {
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(pki.client_config(), name).unwrap();
    let tcp = std::net::TcpStream::connect(gw.tls_addr.unwrap()).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .ok()?;
    let mut resp = Vec::new();
    let _ = tls.read_to_end(&mut resp);
    (!resp.is_empty()).then(|| String::from_utf8_lossy(&resp).into_owned())
}

#[test]
fn every_supervised_component_comes_back_after_a_panic() {
    let echo = Upstream::echo();
    // Accepts and never answers: a request there ends at the read timeout,
    // which needs the worker's timer driver.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let m = mocks(&["a"]);
    let recorder = loggers::answering(200);
    let pki = common::certs::pki();
    let dir = tempfile::tempdir().unwrap();
    let (_, cert, key) = pki.write(dir.path());
    let log = dir.path().join("access.log");
    let mut inst = instance("a", 1, &chat_url(&m, "a"), "gpt-4");
    inst["checks"] = json!({"active": {"type": "http", "http_path": "/health", "timeout": 1,
        "healthy": {"interval": 1, "successes": 1},
        "unhealthy": {"interval": 1, "http_failures": 1}}});
    let doc = json!({
        "gateway": {
            "workers": 1,
            "tls": {"listen": ["127.0.0.1:0"], "cert": cert, "key": key},
            "admin": admin::enabled(),
            "metrics": {"listen": "127.0.0.1:0"},
            "status": {"listen": "127.0.0.1:0"},
            "access_log": {"path": log},
        },
        "services": [
            {"name": "plain",
             "upstream": {"nodes": [{"host": "localhost", "port": echo.addr.port(), "weight": 1}]},
             "routes": [{"name": "plain", "uris": ["/plain"]}]},
            {"name": "silent",
             "upstream": {"nodes": [{"host": "127.0.0.1", "port": silent.local_addr().unwrap().port(), "weight": 1}],
                          "timeout": {"connect": 1, "send": 1, "read": 1}},
             "routes": [{"name": "silent", "uris": ["/silent"]}]},
            {"name": "ai", "routes": [{"name": "ai", "uris": ["/v1/chat/completions"],
             "plugins": {"ai-proxy-multi": {"instances": [inst]},
                         "http-logger": {"uri": format!("http://{}/", recorder.addr),
                                         "batch_max_size": 1, "max_retry_count": 0}}}]},
        ],
    });
    let all: Vec<String> = COMPONENTS.iter().map(|c| format!("{c}=1")).collect();
    let env = vec![("RINGWAY_INJECT_PANIC".to_owned(), all.join(","))];
    let mut gw = Gateway::start_json_env(doc, env);

    // The metrics endpoint: its thread restarted; the first scrape's
    // connection is the one that panics.
    let metrics = gw.metrics_addr.unwrap();
    assert_eq!(
        answered(metrics, "/metrics"),
        None,
        "the first scrape's fault"
    );
    assert_eq!(panics_of(&gw, "metrics_request"), 1);
    assert_eq!(panics_of(&gw, "metrics"), 1);

    // The Status API: its thread restarted, the first probe's connection
    // panics; then it says ready — the only worker, restarted after its
    // panic, serves again.
    let status = gw.status_addr.unwrap();
    assert_eq!(answered(status, "/status"), None, "the first probe's fault");
    let deadline = Instant::now() + Duration::from_secs(5);
    while answered(status, "/status/ready") != Some(200) {
        assert!(Instant::now() < deadline, "never ready: {}", gw.stderr());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(panics_of(&gw, "status_request"), 1);
    assert_eq!(panics_of(&gw, "status"), 1);

    // The only worker (restarted on its listeners) and its accept loop:
    // the first connection is closed by its fault, the next is served.
    assert_eq!(answered(gw.addr, "/plain"), None, "the connection fault");
    assert_eq!(
        answered(gw.addr, "/plain"),
        Some(200),
        "upstream `localhost` (DNS)"
    );
    for c in ["worker", "accept", "connection", "signals"] {
        assert_eq!(panics_of(&gw, c), 1, "{c}");
    }
    // Timers work after the driver's restart.
    assert_eq!(answered(gw.addr, "/silent"), Some(504));
    assert_eq!(panics_of(&gw, "timer"), 1);
    // TLS: the first handshake fails, the next connection is served.
    assert_eq!(tls_get(&gw, &pki, "/plain"), None);
    let r = tls_get(&gw, &pki, "/plain").expect("served after the handshake fault");
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    // Admin API: thread restarted, first connection's request panics.
    let r = std::panic::catch_unwind(|| admin::call(&gw, "GET", "/apisix/admin/routes", ""));
    assert!(r.is_err(), "the first admin connection is closed");
    let r = admin::call(&gw, "GET", "/apisix/admin/routes", "");
    assert_eq!(r.status, 200, "{}", r.text());
    // LLM requests, their log shipping, the access log and http-logger.
    for _ in 0..6 {
        let r = Conn::connect(gw.addr).post_json("/v1/chat/completions", ASK);
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let posts = loggers::posts(&recorder, 2);
    assert!(
        !posts.is_empty(),
        "http-logger sends after its thread's panic: {}",
        gw.stderr()
    );
    for c in [
        "log_shipper",
        "logger_sink",
        "health",
        "health_probe",
        "dns",
    ] {
        wait_panicked(&gw, c, Duration::from_secs(10));
    }
    wait_panicked(&gw, "pool_sweeper", Duration::from_secs(15));
    // Health checks go on after the probe's restart: they see `a` fail.
    m.instance("a").set_faults(mock_llm::Faults {
        health_status: Some(500),
        ..Default::default()
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let unhealthy = "ringway_instance_healthy{owner=\"route/ai\",instance=\"a\"} 0";
    while !Conn::connect(metrics)
        .get("/metrics")
        .text()
        .contains(unhealthy)
    {
        assert!(
            Instant::now() < deadline,
            "probing goes on after its restart"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    for (c, n) in panics(&gw) {
        let want = u64::from(COMPONENTS.contains(&c.as_str()));
        assert_eq!(n, want, "{c}: {n} panics");
    }
    let stderr = gw.stderr();
    for c in COMPONENTS {
        assert!(
            stderr.contains(&format!("component=\"{c}\""))
                || stderr.contains(&format!("component={c}")),
            "{c} not named in the log:\n{stderr}"
        );
    }
    // Signal handling was restarted too: SIGTERM still drains and exits 0.
    assert_eq!(gw.stop(Duration::from_secs(10)), Some(0));
    let lines = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        lines.iter().any(|l| l["uri"] == "/v1/chat/completions"),
        "the access log is written after its writer's panic"
    );
}

#[test]
fn a_busy_polling_worker_comes_back() {
    let echo = Upstream::echo();
    let body = common::catch_all(&echo);
    let mut gw = Gateway::start_with(common::gateway::GatewayConfig {
        workers: 1,
        gateway_extra: "busy_poll_us: 50\nmetrics: {listen: \"127.0.0.1:0\"}".into(),
        body,
        env: vec![("RINGWAY_INJECT_PANIC".into(), "worker=2,busy_poll=1".into())],
    });
    for _ in 0..20 {
        let r = Conn::connect(gw.addr).get("/x");
        assert_eq!(r.status, 200);
    }
    assert_eq!(panics_of(&gw, "worker"), 2);
    assert_eq!(panics_of(&gw, "busy_poll"), 1);
    assert_eq!(gw.stop(Duration::from_secs(10)), Some(0));
}
