//! The Status API, as APISIX's (`apisix.status`, here
//! `gateway.status`): `/status` answers 200 `{"status":"ok"}` while the
//! process runs, `/status/ready` 200 `{"status":"ok"}` once every worker
//! serves and 503 `{"status":"error","error":…}` while draining or while
//! etcd has been unreachable past `stale_after` — through the binary, on
//! ports the kernel picks, with a real etcd.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::ai::{ai_config, chat_url, instance, mocks, Faults, ASK, ASK_STREAM};
use common::etcd::Etcd;
use common::gateway::{check, GatewayConfig};
use common::{Conn, Gateway};
use serde_json::{json, Value};

/// A status listener on a free port, and `extra` besides.
fn status_section(extra: &str) -> String {
    format!("status: {{listen: \"127.0.0.1:0\"{extra}}}")
}

fn get(gw: &Gateway, path: &str) -> (u16, Value) {
    let r = Conn::connect(gw.status_addr.expect("status announced")).get(path);
    let body = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    (r.status, body)
}

/// Waits (as a readiness probe would) until `/status/ready` answers
/// `want`; returns how long that took and the body.
fn until_ready_is(gw: &Gateway, want: u16, within: Duration) -> (Duration, Value) {
    let started = Instant::now();
    loop {
        let (code, body) = get(gw, "/status/ready");
        if code == want {
            return (started.elapsed(), body);
        }
        assert!(
            started.elapsed() < within,
            "/status/ready never answered {want} (last {code} {body}); log:\n{}",
            gw.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn ready_once_every_worker_serves_and_answers_as_apisix() {
    let m = mocks(&["a"]);
    let mut doc = ai_config(
        &["/v1/chat/completions"],
        json!({"instances": [instance("a", 1, &chat_url(&m, "a"), "gpt-4o")]}),
    );
    doc["gateway"] = json!({"workers": 2, "status": {"listen": "127.0.0.1:0"}});
    let gw = Gateway::start_json(doc);
    let addr = gw.status_addr.expect("announced");
    assert!(gw
        .stdout()
        .contains(&format!("ringway: status listening on http://{addr}")));

    let (_, body) = until_ready_is(&gw, 200, Duration::from_secs(5));
    assert_eq!(body, json!({"status": "ok"}));
    let r = Conn::connect(addr).get("/status/ready");
    assert_eq!(r.header("content-type"), Some("application/json"));

    let (code, s) = get(&gw, "/status");
    assert_eq!(code, 200);
    assert_eq!(s["status"], "ok");
    assert_eq!(s["ready"], true);
    assert_eq!(s["workers"], json!({"total": 2, "serving": 2}));
    assert_eq!(s["draining"], false);
    assert_eq!(s["configuration"]["source"], "file");
    assert_eq!(s["configuration"]["generation"], 0);

    // Any method (APISIX's `location` blocks do not look at it), HEAD
    // without a body, keep-alive, and a JSON 404 for anything else.
    let mut c = Conn::connect(addr);
    assert_eq!(c.request("POST", "/status/ready").status, 200);
    c.send(b"HEAD /status HTTP/1.1\r\nHost: x\r\n\r\n");
    let head = c.read_response_to(true);
    assert_eq!(head.status, 200);
    assert!(
        head.header("content-length")
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > 0
    );
    let r = c.get("/status/nope");
    assert_eq!(r.status, 404);
    assert!(r.text().contains("/status/ready"), "{}", r.text());
    assert_eq!(c.get("/status/").status, 200);

    // Requests are served meanwhile (a probe touches no worker).
    let r = Conn::connect(gw.addr).post_json("/v1/chat/completions", ASK);
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn a_worker_restarting_after_panics_is_not_ready_until_it_serves_again() {
    // The debug build's fault hook: the only worker's runtime panics nine
    // times before its accept loops run, restarted after growing delays
    // (about 2.5 s in all).
    let mut doc = ai_config(
        &["/x"],
        json!({"instances": [instance("a", 1, "http://127.0.0.1:1/v1/chat/completions", "m")]}),
    );
    doc["gateway"] = json!({"workers": 1, "status": {"listen": "127.0.0.1:0"}});
    let env = vec![("RINGWAY_INJECT_PANIC".to_owned(), "worker=9".to_owned())];
    let gw = Gateway::start_json_env(doc, env);
    let (code, body) = get(&gw, "/status/ready");
    assert_eq!(code, 503, "{body}");
    assert_eq!(
        body["error"],
        "worker count: 1 but serving count: 0 (worker id: 0 not serving)"
    );
    let (code, s) = get(&gw, "/status");
    assert_eq!(code, 200);
    assert_eq!(s["workers"], json!({"total": 1, "serving": 0}));
    until_ready_is(&gw, 200, Duration::from_secs(10));
    let log = gw.stderr();
    assert!(log.matches("panic caught").count() >= 9, "{log}");
}

#[test]
fn draining_is_not_ready_while_status_stays_ok() {
    let m = mocks(&["a"]);
    // 30 tokens 60 ms apart: nearly two seconds in flight.
    m.instance("a").set_faults(Faults {
        itl_ms: Some(60),
        tokens: Some(30),
        ..Default::default()
    });
    let mut doc = ai_config(
        &["/v1/chat/completions"],
        json!({"instances": [instance("a", 1, &chat_url(&m, "a"), "gpt-4o")]}),
    );
    doc["gateway"] = json!({"status": {"listen": "127.0.0.1:0"}, "timeouts": {"drain": 20}});
    let mut gw = Gateway::start_json(doc);
    until_ready_is(&gw, 200, Duration::from_secs(5));

    let addr = gw.addr;
    let stream = std::thread::spawn(move || {
        Conn::connect(addr).post_json("/v1/chat/completions", ASK_STREAM)
    });
    std::thread::sleep(Duration::from_millis(300));
    gw.signal(libc::SIGTERM);

    let (took, body) = until_ready_is(&gw, 503, Duration::from_secs(2));
    assert!(took < Duration::from_secs(1), "took {took:?}");
    assert_eq!(body["status"], "error");
    let error = body["error"].as_str().unwrap();
    assert!(error.contains("draining"), "{error}");
    let (code, s) = get(&gw, "/status");
    assert_eq!(code, 200, "liveness holds through the drain: {s}");
    assert_eq!(s["status"], "ok");
    assert_eq!(s["draining"], true);
    assert_eq!(s["ready"], false);

    // The stream in flight finishes whole, then the process exits.
    let r = stream.join().unwrap();
    assert_eq!(r.status, 200);
    assert!(r.text().contains("[DONE]"), "{}", r.text());
    assert_eq!(get(&gw, "/status/ready").0, 503, "still draining");
    assert_eq!(gw.wait(Duration::from_secs(10)), Some(0));
}

#[test]
fn disabled_status_has_no_listener() {
    let mut doc = ai_config(
        &["/x"],
        json!({"instances": [instance("a", 1, "http://127.0.0.1:1/v1/chat/completions", "m")]}),
    );
    doc["gateway"] = json!({"status": {"enabled": false, "listen": "127.0.0.1:0"}});
    let gw = Gateway::start_json(doc);
    assert_eq!(gw.status_addr, None);
    assert!(
        !gw.stdout().iter().any(|l| l.contains("status listening")),
        "{:?}",
        gw.stdout()
    );
}

#[test]
fn a_bad_stale_after_is_refused_with_its_field() {
    for bad in ["-1", "1e20", "\"soon\""] {
        let (code, out) = check(&format!(
            "gateway:\n  status: {{listen: \"127.0.0.1:0\", stale_after: {bad}}}\n"
        ));
        assert_eq!(code, 2, "{bad}: {out}");
        assert!(out.contains("gateway.status.stale_after"), "{bad}: {out}");
    }
    let (code, out) = check("gateway:\n  status: {listen: \"127.0.0.1:0\", stale_after: 0.5}\n");
    assert_eq!(code, 0, "{out}");
}

/// APISIX's stored JSON of a route to the mock's instance `a`.
fn etcd_route(m: &mock_llm::MockServer, uri: &str) -> String {
    json!({
        "uri": uri,
        "plugins": {"ai-proxy-multi": {"instances": [instance("a", 1, &chat_url(m, "a"), "gpt-4o")]}},
    })
    .to_string()
}

#[test]
fn etcd_stale_past_stale_after_is_not_ready_and_ready_again_when_back() {
    let m = mocks(&["a"]);
    let mut etcd = Etcd::start();
    etcd.put("/apisix/routes/1", &etcd_route(&m, "/one"));
    let gw = Gateway::start_with(GatewayConfig {
        gateway_extra: status_section(", stale_after: 1"),
        body: format!(
            "deployment:\n  role: data_plane\n  role_data_plane: {{config_provider: etcd}}\n  etcd:\n    host: [\"{}\"]\n    timeout: 3\n",
            etcd.endpoint()
        ),
        ..Default::default()
    });
    until_ready_is(&gw, 200, Duration::from_secs(5));
    let (_, s) = get(&gw, "/status");
    assert_eq!(s["configuration"]["source"], "etcd");
    assert_eq!(s["configuration"]["source_up"], true);
    assert_eq!(s["configuration"]["stale_seconds"], 0.0);
    assert_eq!(s["configuration"]["stale_after_seconds"], 1.0);
    assert!(s["configuration"]["revision"].as_u64().unwrap() > 0, "{s}");

    // etcd goes away: the last good configuration serves, and readiness
    // holds for stale_after, then turns 503 saying why.
    let stopped = Instant::now();
    etcd.stop();
    let (_, body) = until_ready_is(&gw, 503, Duration::from_secs(10));
    let took = stopped.elapsed();
    assert!(
        took >= Duration::from_secs(1),
        "not before stale_after: {took:?}"
    );
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains("configuration source (etcd) unreachable"),
        "{error}"
    );
    assert!(error.contains("stale_after is 1s"), "{error}");
    let (code, s) = get(&gw, "/status");
    assert_eq!(code, 200, "{s}");
    assert_eq!(s["configuration"]["source_up"], false);
    assert!(
        s["configuration"]["stale_seconds"].as_f64().unwrap() >= 1.0,
        "{s}"
    );
    let r = Conn::connect(gw.addr).post_json("/one", ASK);
    assert_eq!(r.status, 200, "still served: {}", r.text());

    // etcd is back: read again, ready again.
    etcd.restart();
    until_ready_is(&gw, 200, Duration::from_secs(15));
    let (_, s) = get(&gw, "/status");
    assert_eq!(s["configuration"]["source_up"], true, "{s}");
}
