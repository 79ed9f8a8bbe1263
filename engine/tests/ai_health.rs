//! Active health checks end to end: ringway's prober takes an instance out
//! of rotation when mock-llm's health path starts failing or its port stops
//! answering, and puts it back when it recovers; with every instance
//! unhealthy, all are used (as APISIX does). Transitions are logged.
#![allow(clippy::disallowed_types, clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::ai::{ai_config, chat_url, instance, mocks, Faults, ASK};
use common::{Conn, Gateway};
use serde_json::{json, Value};

fn checked(name: &str, m: &mock_llm::MockServer, mock: &str) -> Value {
    let mut i = instance(name, 1, &chat_url(m, mock), mock);
    i["checks"] = json!({"active": {
        "type": "http",
        "http_path": "/health",
        "timeout": 1,
        "healthy": {"interval": 1, "successes": 1},
        "unhealthy": {"interval": 1, "http_failures": 1, "tcp_failures": 1, "timeouts": 1},
    }});
    i
}

fn split(gw: &Gateway, n: usize) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for _ in 0..n {
        let r = Conn::connect(gw.addr).post_json("/v1/chat/completions", ASK);
        assert_eq!(r.status, 200, "{}", r.text());
        *seen
            .entry(r.header("x-ringway-instance").unwrap().to_owned())
            .or_default() += 1;
    }
    seen
}

const WAIT: Duration = Duration::from_secs(10);

#[test]
fn failing_health_path_takes_an_instance_out_and_recovery_brings_it_back() {
    let m = mocks(&["a", "b"]);
    let gw = Gateway::start_json(ai_config(
        &["/v1/chat/completions"],
        json!({"instances": [checked("inst-a", &m, "a"), checked("inst-b", &m, "b")]}),
    ));
    assert_eq!(
        split(&gw, 4),
        BTreeMap::from([("inst-a".into(), 2), ("inst-b".into(), 2)])
    );

    m.instance("a").set_faults(Faults {
        health_status: Some(503),
        ..Default::default()
    });
    assert!(
        gw.wait_for_log("instance is unhealthy", WAIT),
        "{}",
        gw.stderr()
    );
    assert_eq!(split(&gw, 6), BTreeMap::from([("inst-b".into(), 6)]));

    m.instance("a").clear_faults();
    assert!(
        gw.wait_for_log("instance is healthy again", WAIT),
        "{}",
        gw.stderr()
    );
    assert_eq!(
        split(&gw, 4),
        BTreeMap::from([("inst-a".into(), 2), ("inst-b".into(), 2)])
    );
}

#[test]
fn a_port_that_stops_answering_is_unhealthy_and_all_unhealthy_uses_all() {
    let m = mocks(&["a", "b"]);
    let gw = Gateway::start_json(ai_config(
        &["/v1/chat/completions"],
        json!({"instances": [checked("inst-a", &m, "a"), checked("inst-b", &m, "b")],
               "fallback_strategy": "instance_health_and_rate_limiting"}),
    ));
    m.instance("a").stop_listening();
    assert!(
        gw.wait_for_log("instance is unhealthy", WAIT),
        "{}",
        gw.stderr()
    );
    assert_eq!(split(&gw, 4), BTreeMap::from([("inst-b".into(), 4)]));
    m.instance("a").start_listening();
    assert!(
        gw.wait_for_log("instance is healthy again", WAIT),
        "{}",
        gw.stderr()
    );

    // Both health paths fail while both still serve chat: with no healthy
    // instance left, ringway uses all of them rather than failing.
    for name in ["a", "b"] {
        m.instance(name).set_faults(Faults {
            health_status: Some(500),
            ..Default::default()
        });
    }
    let deadline = std::time::Instant::now() + WAIT;
    while gw.stderr().matches("instance is unhealthy").count() < 3 {
        assert!(std::time::Instant::now() < deadline, "{}", gw.stderr());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        split(&gw, 4),
        BTreeMap::from([("inst-a".into(), 2), ("inst-b".into(), 2)])
    );
}

/// `checks.active.host` is the Host header and TLS server name of the
/// probe, which goes to the instance's own address (and `port`, when set),
/// as APISIX's healthchecker probes the node's IP with that hostname: the
/// probes reach the recording upstreams at 127.0.0.1 carrying
/// `Host: probe.example`, the HTTPS one after a handshake for that name,
/// and `probe.example` is never looked up.
#[test]
fn probe_host_is_the_host_header_and_sni_at_the_instance_address() {
    let ok = |_: &common::upstream::Recorded, s: &mut dyn common::upstream::Stream| {
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        true
    };
    let plain = common::Upstream::start(ok);
    let pki = common::certs::pki();
    let tls = common::Upstream::start_tls(pki.server_config_requiring_sni("probe.example"), ok);
    // Nothing listens at the endpoint's own port: `checks.active.port`
    // names the one to probe.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let checked = |name: &str, port: u16, active: Value| {
        let mut i = instance(
            name,
            1,
            &format!("http://127.0.0.1:{port}/v1/chat/completions"),
            "m",
        );
        i["checks"] = json!({"active": active});
        i
    };
    let _gw = Gateway::start_json(ai_config(
        &["/v1/chat/completions"],
        json!({"instances": [
            checked("plain", plain.addr.port(), json!({"type": "http", "host": "probe.example", "http_path": "/probe"})),
            checked("tls", closed_port, json!({"type": "https", "host": "probe.example", "port": tls.addr.port(),
                "https_verify_certificate": false, "http_path": "/probe-tls"})),
        ]}),
    ));
    let deadline = std::time::Instant::now() + WAIT;
    for (up, path) in [(&plain, "/probe"), (&tls, "/probe-tls")] {
        let probe = loop {
            if let Some(r) = up.requests().into_iter().next() {
                break r;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no probe reached {path}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(
            (probe.method.as_str(), probe.target.as_str()),
            ("GET", path)
        );
        assert_eq!(probe.header("host"), Some("probe.example"), "{path}");
    }
}
