//! Shared integration-test harness: the real `ringway` binary on loopback
//! ([`gateway`]), a raw HTTP/1.1 client ([`client`]), a scripted plain
//! HTTP upstream fixture for framing tests ([`upstream`]) and throwaway
//! certificates ([`certs`]), real Redis and Kafka-protocol servers
//! ([`redis`], [`kafka`]), AI routes and budgets on mock-llm ([`ai`]) and
//! logger routes with a recording endpoint ([`loggers`]).
#![allow(
    dead_code,
    unused_imports,
    clippy::unwrap_used,
    clippy::disallowed_types
)]

pub mod admin;
pub mod ai;
pub mod certs;
pub mod client;
pub mod dns;
pub mod etcd;
pub mod gateway;
pub mod kafka;
pub mod loggers;
pub mod otlp;
pub mod prom;
pub mod redis;
pub mod upstream;

pub use client::Conn;
pub use gateway::Gateway;
pub use upstream::Upstream;

/// A service with one catch-all route to `up`.
pub fn catch_all(up: &Upstream) -> String {
    format!(
        "services:\n  - name: s\n    upstream:\n      nodes: [{}]\n    routes:\n      - name: all\n        uris: [\"/*\"]\n",
        up.node_yaml()
    )
}

/// `ringway_logger_entries_total` for `logger` and `outcome`, once it
/// reaches `want` (or what it is after 5 s).
pub fn logger_metric(gw: &Gateway, logger: &str, outcome: &str, want: u64) -> u64 {
    let addr = gw.metrics_addr.expect("metrics address announced");
    let line =
        format!("ringway_logger_entries_total{{logger=\"{logger}\",outcome=\"{outcome}\"}} ");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let text = Conn::connect(addr).get("/metrics").text();
        let v = text
            .lines()
            .find_map(|l| l.strip_prefix(&line))
            .unwrap_or_else(|| panic!("no {line} in {text}"))
            .parse()
            .unwrap();
        if v >= want || std::time::Instant::now() > deadline {
            return v;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Asserts that `ringway --check` refuses `doc` with a message naming
/// `plugin` and `field`.
pub fn assert_refused(doc: &serde_json::Value, plugin: &str, field: &str) {
    let (code, out) = gateway::check(&serde_json::to_string(doc).unwrap());
    assert_ne!(code, 0, "accepted: {doc}");
    assert!(
        out.contains(plugin) && out.contains(field),
        "{field}: {out}"
    );
}
