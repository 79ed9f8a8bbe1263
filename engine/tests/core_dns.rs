//! Host names are looked up once, off the workers: a configuration naming
//! one host for many instances, and an Admin API change that re-compiles
//! every route, wait for DNS at most once per new name (shown against a
//! DNS server of the test's own, counting queries).
#![allow(clippy::disallowed_types, clippy::unwrap_used)]

mod common;

use std::sync::atomic::Ordering;

use common::ai::{mocks, ASK};
use common::dns::SlowDns;
use common::{admin, Conn, Gateway};
use serde_json::json;

fn instances(port: u16, n: usize) -> Vec<serde_json::Value> {
    (0..n)
        .map(|i| {
            json!({"name": format!("i{i}"), "provider": "openai-compatible", "weight": 1,
                   "auth": {"header": {"Authorization": "Bearer k"}}, "options": {"model": "m"},
                   "override": {"endpoint": format!("http://llm.slow.test:{port}/v1/chat/completions")}})
        })
        .collect()
}

#[test]
fn one_host_named_many_times_is_resolved_once() {
    let dns = SlowDns::start("127.0.0.78");
    let m = mocks(&["a"]);
    let port = m.instance("a").addr().port();
    let route = |n| {
        json!({"uri": "/v1/chat/completions", "methods": ["POST"],
               "plugins": {"ai-proxy-multi": {"instances": instances(port, n)}}})
        .to_string()
    };
    let wrapper = dns.wrapper();
    let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    let gw = Gateway::start_json_wrapped(
        json!({"gateway": {"admin": admin::enabled()}}),
        Vec::new(),
        &wrapper,
    );
    let r = admin::call(&gw, "PUT", "/apisix/admin/routes/r1", &route(40));
    assert_eq!(r.status, 201, "{}", r.text());
    // One lookup: an A and an AAAA query.
    let first = dns.queries.load(Ordering::SeqCst);
    assert!(
        (1..=2).contains(&first),
        "{first} queries for 40 instances of one host"
    );
    let r = Conn::connect(gw.addr).post_json("/v1/chat/completions", ASK);
    assert_eq!(r.status, 200, "{}", r.text());
    // Changes re-compile every route: the name is not looked up again.
    for n in [39, 40, 38] {
        let r = admin::call(&gw, "PUT", "/apisix/admin/routes/r1", &route(n));
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert_eq!(dns.queries.load(Ordering::SeqCst), first);
}

/// Health probes go to the instance's resolved endpoint: none waits for
/// DNS (the probe thread used to look the name up for every probe).
#[test]
fn health_probes_never_wait_for_dns() {
    let dns = SlowDns::start("127.0.0.79");
    let m = mocks(&["a"]);
    let port = m.instance("a").addr().port();
    let mut inst = instances(port, 1).remove(0);
    inst["checks"] = json!({"active": {"type": "http", "http_path": "/health", "timeout": 1,
        "healthy": {"interval": 1, "successes": 1},
        "unhealthy": {"interval": 1, "http_failures": 1}}});
    let doc = common::ai::ai_config(&["/v1/chat/completions"], json!({"instances": [inst]}));
    let mut doc = doc;
    doc["gateway"] = json!({"metrics": {"listen": "127.0.0.1:0"}});
    let wrapper = dns.wrapper();
    let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    let gw = Gateway::start_json_wrapped(doc, Vec::new(), &wrapper);
    let at_start = dns.queries.load(Ordering::SeqCst);
    // DNS stops answering; the instance starts failing its health checks.
    dns.hold.store(true, Ordering::SeqCst);
    m.instance("a").set_faults(mock_llm::Faults {
        health_status: Some(500),
        ..Default::default()
    });
    let unhealthy = "ringway_instance_healthy{owner=\"route/ai-route\",instance=\"i0\"} 0";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !Conn::connect(gw.metrics_addr.unwrap())
        .get("/metrics")
        .text()
        .contains(unhealthy)
    {
        assert!(std::time::Instant::now() < deadline, "the probes stalled");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    dns.hold.store(false, Ordering::SeqCst);
    assert_eq!(
        dns.queries.load(Ordering::SeqCst),
        at_start,
        "a probe asked DNS"
    );
}
