//! A logger whose settings change through the Admin API gets a new sink,
//! and the old one sends what it holds and ends: no thread, connection or
//! memory is left behind per change, with several workers (each worker's
//! queue of entries used to keep every sink it had logged to alive as
//! long as another worker's did too — found by `loadgen soak`: 22
//! `ringway-logger` threads after 11 route changes), and without traffic
//! after the change (an idle worker kept the configuration it last used,
//! and with it the old sink, until its next request).
#![allow(clippy::disallowed_types, clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::ai::{chat_url, instance, mocks, ASK};
use common::gateway::GatewayConfig;
use common::loggers::answering;
use common::{admin, Conn, Gateway};
use serde_json::{json, Value};

/// `ringway-logger` threads of process `pid`.
fn logger_threads(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim() == "ringway-logger")
        .count()
}

/// Entries in the JSON arrays the log endpoint got.
fn entries(up: &common::Upstream) -> usize {
    up.requests()
        .iter()
        .map(|r| serde_json::from_slice::<Vec<Value>>(&r.body).unwrap().len())
        .sum()
}

fn logged_route(m: &mock_llm::MockServer, up: &common::Upstream, batch: usize) -> String {
    json!({
        "uri": "/v1/chat/completions",
        "plugins": {
            "ai-proxy-multi": {"instances": [instance("a", 1, &chat_url(m, "a"), "gpt-4")]},
            "http-logger": {"uri": format!("http://{}/logs", up.addr),
                            "batch_max_size": batch, "inactive_timeout": 1},
        },
    })
    .to_string()
}

/// Sends `n` requests, each on a fresh connection (so both workers serve
/// some), retrying while the route reaches every worker.
fn ask_fresh(gw: &Gateway, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut sent = 0;
    while sent < n {
        let r = Conn::connect(gw.addr).post_json("/v1/chat/completions", ASK);
        if r.status == 200 {
            sent += 1;
        } else {
            assert!(Instant::now() < deadline, "{} {}", r.status, r.text());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Waits (up to `within`) for at most `n` logger threads; how many there are.
fn logger_threads_down_to(gw: &Gateway, n: usize, within: Duration) -> usize {
    let deadline = Instant::now() + within;
    while logger_threads(gw.pid()) > n && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    logger_threads(gw.pid())
}

fn admin_gateway() -> Gateway {
    Gateway::start_with(GatewayConfig {
        workers: 2,
        gateway_extra: format!("admin: {}", admin::enabled()),
        ..Default::default()
    })
}

#[test]
fn a_replaced_logger_ends_without_further_traffic() {
    let m = mocks(&["a"]);
    let up = answering(200);
    let gw = admin_gateway();
    let put = |batch| {
        let r = admin::call(
            &gw,
            "PUT",
            "/apisix/admin/routes/r",
            &logged_route(&m, &up, batch),
        );
        assert!(r.status == 200 || r.status == 201, "{}", r.text());
    };
    put(100);
    ask_fresh(&gw, 8);
    let deadline = Instant::now() + Duration::from_secs(10);
    while entries(&up) < 8 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(entries(&up), 8);
    assert_eq!(logger_threads(gw.pid()), 1);
    // A new sink starts; nothing is asked any more, and the old one ends.
    put(101);
    let deadline = Instant::now() + Duration::from_secs(2);
    while logger_threads(gw.pid()) < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        logger_threads_down_to(&gw, 1, Duration::from_secs(15)),
        1,
        "{}",
        gw.stderr()
    );
}

#[test]
fn changed_loggers_leave_no_sink_thread_behind() {
    let m = mocks(&["a"]);
    let up = answering(200);
    let gw = Gateway::start_with(GatewayConfig {
        workers: 2,
        gateway_extra: format!("admin: {}", admin::enabled()),
        ..Default::default()
    });
    let changes = 8;
    let per_change = 8;
    for n in 0..changes {
        // A new batch size each time: a new sink each time.
        let route = json!({
            "uri": "/v1/chat/completions",
            "plugins": {
                "ai-proxy-multi": {"instances": [instance("a", 1, &chat_url(&m, "a"), "gpt-4")]},
                "http-logger": {"uri": format!("http://{}/logs", up.addr),
                                "batch_max_size": 100 + n, "inactive_timeout": 1},
            },
        });
        let r = admin::call(&gw, "PUT", "/apisix/admin/routes/r", &route.to_string());
        assert!(r.status == 200 || r.status == 201, "{}", r.text());
        // Fresh connections, so both workers log through this sink.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut sent = 0;
        while sent < per_change {
            let r = Conn::connect(gw.addr).post_json("/v1/chat/completions", ASK);
            if r.status == 200 {
                sent += 1;
            } else {
                // The route may take a moment to reach every worker.
                assert!(Instant::now() < deadline, "{} {}", r.status, r.text());
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
    // Every entry arrives (old sinks send what they hold before ending) …
    let deadline = Instant::now() + Duration::from_secs(20);
    while entries(&up) < changes * per_change && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(entries(&up), changes * per_change, "{}", gw.stderr());
    // … and only the current logger's thread is left.
    let deadline = Instant::now() + Duration::from_secs(10);
    while logger_threads(gw.pid()) > 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(logger_threads(gw.pid()), 1, "{}", gw.stderr());
}
