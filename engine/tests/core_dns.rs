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
