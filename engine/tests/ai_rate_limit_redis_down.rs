//! Redis trouble never blocks a worker: a Redis host name is resolved off
//! the workers (shown against a DNS server of the test's own, on loopback,
//! that stops answering), and a Redis that cannot be reached is marked
//! down — requests are answered at once as `allow_degradation` says, not
//! one dial each — until a background probe reaches it again; failed
//! charges are counted.
#![allow(clippy::disallowed_types, clippy::unwrap_used)]

mod common;

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::ai::{ai_config, chat_url, instance, mocks, ASK};
use common::dns::SlowDns;
use common::redis::RedisServer;
use common::{Conn, Gateway, Upstream};
use serde_json::{json, Value};

const CHAT: &str = "/v1/chat/completions";

fn metric(gw: &Gateway, name: &str) -> u64 {
    let text = Conn::connect(gw.metrics_addr.unwrap())
        .get("/metrics")
        .text();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name}"))
        .parse()
        .unwrap()
}

/// A listener on `port` that accepts and at once closes every connection
/// (a Redis that is not there), counting them.
struct Unreachable {
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    port: u16,
}

impl Unreachable {
    fn start() -> Unreachable {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        l.set_nonblocking(true).unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (a, s) = (accepted.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                match l.accept() {
                    Ok((c, _)) => {
                        a.fetch_add(1, Ordering::SeqCst);
                        drop(c);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Unreachable {
            accepted,
            stop,
            port,
        }
    }

    /// Stops listening; the port is free for a real server.
    fn close(self) -> u16 {
        self.stop.store(true, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(50));
        self.port
    }
}

fn limited(m: &mock_llm::MockServer, store: Value) -> Value {
    let mut plugin = json!({"limit": 100_000, "time_window": 60});
    for (k, v) in store.as_object().unwrap() {
        plugin[k] = v.clone();
    }
    let mut doc = ai_config(
        &[CHAT],
        json!({"instances": [instance("a", 1, &chat_url(m, "a"), "gpt-4")]}),
    );
    doc["services"][0]["routes"][0]["plugins"]["ai-rate-limiting"] = plugin;
    doc
}

#[test]
fn a_down_redis_is_not_dialed_per_request_and_a_probe_brings_it_back() {
    let m = mocks(&["a"]);
    let down = Unreachable::start();
    let mut doc = limited(
        &m,
        json!({"policy": "redis", "redis_host": "127.0.0.1", "redis_port": down.port,
               "allow_degradation": true}),
    );
    doc["gateway"] = json!({"metrics": {"listen": "127.0.0.1:0"}});
    // The probe thread panics once on its way (it is supervised too).
    let gw = Gateway::start_json_env(
        doc,
        vec![("RINGWAY_INJECT_PANIC".into(), "redis_probe=1".into())],
    );
    let mut c = Conn::connect(gw.addr);
    for _ in 0..40 {
        let r = c.post_json(CHAT, ASK);
        assert_eq!(
            r.status,
            200,
            "allow_degradation lets it through: {}",
            r.text()
        );
    }
    // 40 requests check and charge: 80 calls. Dialing each time would be
    // 80 connections; marked down, it is the first and the probes.
    let dials = down.accepted.load(Ordering::SeqCst);
    assert!(dials < 20, "{dials} connections for 80 calls");
    assert_eq!(metric(&gw, "ringway_redis_down_total"), 1);
    assert!(metric(&gw, "ringway_rate_limit_charge_failures_total") >= 39);
    assert!(gw.wait_for_log("redis is down", Duration::from_secs(5)));

    // Redis comes up on that port: the probe finds it, budgets count again.
    let port = down.close();
    let redis = RedisServer::start_on(port, &[]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !gw.stderr().contains("redis answers again") {
        assert!(Instant::now() < deadline, "the probe never reached redis");
        std::thread::sleep(Duration::from_millis(50));
    }
    let r = c.post_json(CHAT, ASK);
    assert_eq!(r.status, 200, "{}", r.text());
    let deadline = Instant::now() + Duration::from_secs(5);
    while !redis
        .cmd(&["KEYS", "*"])
        .unwrap()
        .contains("ai-rate-limiting")
    {
        assert!(Instant::now() < deadline, "no charge reached redis");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(gw.stderr().contains("component=\"redis_probe\""));
}

#[test]
fn without_degradation_a_down_redis_refuses_at_once() {
    let m = mocks(&["a"]);
    let down = Unreachable::start();
    let doc = limited(
        &m,
        json!({"policy": "redis", "redis_host": "127.0.0.1", "redis_port": down.port}),
    );
    let gw = Gateway::start_json(doc);
    let mut c = Conn::connect(gw.addr);
    for _ in 0..20 {
        let r = c.post_json(CHAT, ASK);
        assert!(r.status >= 500, "refused while redis is down: {}", r.text());
    }
    assert!(down.accepted.load(Ordering::SeqCst) < 10);
    assert_eq!(
        m.instance("a").stats().requests,
        0,
        "nothing reached the provider"
    );
}

#[test]
fn a_redis_host_name_is_never_resolved_on_a_worker() {
    let dns = SlowDns::start("127.0.0.77");
    let redis = RedisServer::start(&[]);
    let m = mocks(&["a"]);
    let echo = Upstream::echo();
    let mut doc = limited(
        &m,
        json!({"policy": "redis", "redis_host": "redis.slow.test", "redis_port": redis.port}),
    );
    doc["gateway"] = json!({"workers": 1});
    doc["services"].as_array_mut().unwrap().push(json!({
        "name": "plain",
        "upstream": {"nodes": [{"host": "127.0.0.1", "port": echo.addr.port(), "weight": 1}]},
        "routes": [{"name": "plain", "uris": ["/plain"]}],
    }));
    let wrapper = dns.wrapper();
    let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    let gw = Gateway::start_json_wrapped(doc, Vec::new(), &wrapper);
    let at_start = dns.queries.load(Ordering::SeqCst);
    assert!(
        at_start > 0,
        "the name was resolved when the config was loaded"
    );
    // From now on the DNS server answers nothing.
    dns.hold.store(true, Ordering::SeqCst);
    let addr: SocketAddr = gw.addr;
    let budgeted = std::thread::spawn(move || {
        let mut c = Conn::connect(addr);
        c.set_timeout(Duration::from_secs(60));
        c.post_json(CHAT, ASK).status
    });
    std::thread::sleep(Duration::from_millis(300));
    // The only worker still serves: it is not waiting on DNS.
    let mut c = Conn::connect(gw.addr);
    c.set_timeout(Duration::from_secs(10));
    assert_eq!(
        c.get("/plain").status,
        200,
        "the worker is not blocked on DNS"
    );
    let queried = dns.queries.load(Ordering::SeqCst) - at_start;
    dns.hold.store(false, Ordering::SeqCst);
    assert_eq!(budgeted.join().unwrap(), 200);
    assert_eq!(queried, 0, "no DNS query from a worker");
    let keys = redis.cmd(&["KEYS", "*"]).unwrap();
    assert!(
        keys.contains("ai-rate-limiting"),
        "charged through the resolved name: {keys}"
    );
}
