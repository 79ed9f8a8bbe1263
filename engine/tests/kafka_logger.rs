//! `kafka-logger` beyond the seed example: a broker that is down never
//! touches requests (entries are retried, then dropped with an error
//! line), batches follow `batch_max_size` / `inactive_timeout`, and
//! settings ringway does not implement are refused at load with the field
//! named.
#![allow(clippy::disallowed_types, clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::ai::{ai_config, chat_url, instance, mocks, ASK};
use common::{assert_refused, logger_metric, Conn, Gateway};
use serde_json::json;

/// The route's kafka-logger, as the metrics name it.
const LOGGER: &str = "kafka logger (route/ai-route)";

fn logged_route(m: &mock_llm::MockServer, logger: serde_json::Value) -> serde_json::Value {
    let mut doc = ai_config(
        &["/v1/chat/completions"],
        json!({"instances": [instance("a", 1, &chat_url(m, "a"), "gpt-4")]}),
    );
    doc["services"][0]["routes"][0]["plugins"]["kafka-logger"] = logger;
    doc["gateway"] = json!({"metrics": {"listen": "127.0.0.1:0"}});
    doc
}

#[test]
fn a_broker_that_is_down_never_touches_requests() {
    let m = mocks(&["a"]);
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let gw = Gateway::start_json(logged_route(
        &m,
        json!({
            "brokers": [{"host": "127.0.0.1", "port": closed}],
            "kafka_topic": "t", "batch_max_size": 1, "timeout": 1,
            "max_retry_count": 1, "retry_delay": 0,
        }),
    ));
    let mut c = Conn::connect(gw.addr);
    let t = Instant::now();
    for _ in 0..20 {
        let r = c.post_json("/v1/chat/completions", ASK);
        assert_eq!(r.status, 200, "{}", r.text());
    }
    // Far below one broker timeout per request.
    assert!(t.elapsed() < Duration::from_secs(10));
    assert!(
        gw.wait_for_log("log entries dropped", Duration::from_secs(10)),
        "{}",
        gw.stderr()
    );
    assert!(
        gw.stderr().contains(&format!("127.0.0.1:{closed}")),
        "{}",
        gw.stderr()
    );
    assert_eq!(logger_metric(&gw, LOGGER, "failed", 20), 20);
    assert_eq!(logger_metric(&gw, LOGGER, "sent", 0), 0);
}

#[test]
fn entries_are_batched_and_a_partial_batch_goes_when_inactive() {
    let broker = common::kafka::KafkaBroker::start();
    broker.create_topic("batched", 1);
    let m = mocks(&["a"]);
    let gw = Gateway::start_json(logged_route(
        &m,
        json!({
            "broker_list": {"127.0.0.1": broker.port},
            "kafka_topic": "batched", "batch_max_size": 3, "inactive_timeout": 1,
        }),
    ));
    let mut c = Conn::connect(gw.addr);
    for _ in 0..4 {
        assert_eq!(c.post_json("/v1/chat/completions", ASK).status, 200);
    }
    // Three go as a full batch, the fourth after a second of quiet.
    let got = broker.consume("batched", 4, Duration::from_secs(20));
    assert_eq!(got.len(), 4, "{got:?}\n{}", gw.stderr());
    for (key, e) in &got {
        assert_eq!(key, &None);
        assert_eq!(e["response"]["status"], 200);
        assert_eq!(e["llm_model"], "gpt-4");
        assert!(e.get("llm_summary").is_none(), "logging is off: {e}");
    }
    assert_eq!(logger_metric(&gw, LOGGER, "sent", 4), 4);
    assert_eq!(logger_metric(&gw, LOGGER, "failed", 0), 0);
}

#[test]
fn unsupported_or_invalid_settings_are_refused_with_the_field() {
    let m = mocks(&["a"]);
    let cases = [
        (
            json!({"brokers": [{"host": "h", "port": 9092}]}),
            "kafka_topic",
        ),
        (json!({"kafka_topic": "t"}), "brokers"),
        (
            json!({"brokers": [{"host": "h", "port": 70000}], "kafka_topic": "t"}),
            "brokers[0].port",
        ),
        (
            json!({"brokers": [{"host": "h", "port": 1, "sasl_config": {"user": "u", "password": "p"}}], "kafka_topic": "t"}),
            "sasl_config",
        ),
        (
            json!({"brokers": [{"host": "h", "port": 1}], "kafka_topic": "t", "required_acks": 0}),
            "required_acks",
        ),
        (
            json!({"brokers": [{"host": "h", "port": 1}], "kafka_topic": "t", "meta_format": "raw"}),
            "meta_format",
        ),
        (
            json!({"brokers": [{"host": "h", "port": 1}], "kafka_topic": "t", "batch_max_size": 0}),
            "batch_max_size",
        ),
        (
            json!({"brokers": [{"host": "h", "port": 1}], "kafka_topic": "t", "include_resp_body": true, "max_resp_body_bytes": 0}),
            "max_resp_body_bytes",
        ),
        (
            json!({"brokers": [{"host": "h", "port": 1}], "kafka_topic": "t", "include_resp_body": true, "include_resp_body_expr": [["status", ">>", 1]]}),
            "include_resp_body_expr[0][1]",
        ),
    ];
    for (logger, field) in cases {
        assert_refused(&logged_route(&m, logger), "kafka-logger", field);
    }
}

#[test]
fn entries_still_batched_at_shutdown_are_sent_before_exit() {
    let broker = common::kafka::KafkaBroker::start();
    broker.create_topic("late", 1);
    let m = mocks(&["a"]);
    let mut gw = Gateway::start_json(logged_route(
        &m,
        json!({
            "brokers": [{"host": "127.0.0.1", "port": broker.port}],
            "kafka_topic": "late", "batch_max_size": 1000,
            "inactive_timeout": 600, "buffer_duration": 600,
        }),
    ));
    let mut c = Conn::connect(gw.addr);
    for _ in 0..3 {
        assert_eq!(c.post_json("/v1/chat/completions", ASK).status, 200);
    }
    drop(c);
    assert_eq!(gw.stop(Duration::from_secs(10)), Some(0));
    let got = broker.consume("late", 3, Duration::from_secs(20));
    assert_eq!(got.len(), 3, "{got:?}\n{}", gw.stderr());
}

#[test]
fn a_batch_larger_than_producer_batch_size_goes_in_pieces() {
    let broker = common::kafka::KafkaBroker::start();
    broker.create_topic("pieces", 1);
    let m = mocks(&["a"]);
    // Entries are ~1 KB: a 2 KB record-batch limit cuts 6 into 3 or more
    // produce requests, all delivered once.
    let gw = Gateway::start_json(logged_route(
        &m,
        json!({
            "brokers": [{"host": "127.0.0.1", "port": broker.port}],
            "kafka_topic": "pieces", "batch_max_size": 6, "producer_batch_size": 2048,
        }),
    ));
    let mut c = Conn::connect(gw.addr);
    for _ in 0..6 {
        assert_eq!(c.post_json("/v1/chat/completions", ASK).status, 200);
    }
    let got = broker.consume("pieces", 7, Duration::from_secs(8));
    assert_eq!(got.len(), 6, "{got:?}\n{}", gw.stderr());
    assert_eq!(logger_metric(&gw, LOGGER, "sent", 6), 6);
}

#[test]
fn an_admin_api_change_of_topic_takes_effect_at_once() {
    let broker = common::kafka::KafkaBroker::start();
    broker.create_topic("first", 1);
    broker.create_topic("second", 1);
    let m = mocks(&["a"]);
    let gw = Gateway::start_json(json!({"gateway": {
        "admin": {"listen": "127.0.0.1:0", "key": "k"},
        "metrics": {"listen": "127.0.0.1:0"},
    }}));
    let admin = gw.admin_addr.expect("admin listener");
    let put = |topic: &str| {
        let body = json!({
            "uri": "/v1/chat/completions",
            "plugins": {
                "ai-proxy-multi": {"instances": [instance("a", 1, &chat_url(&m, "a"), "gpt-4")]},
                "kafka-logger": {"brokers": [{"host": "127.0.0.1", "port": broker.port}],
                                 "kafka_topic": topic, "batch_max_size": 1},
            },
        })
        .to_string();
        let mut c = Conn::connect(admin);
        c.send(format!("PUT /apisix/admin/routes/r HTTP/1.1\r\nHost: a\r\nX-API-KEY: k\r\nContent-Length: {}\r\n\r\n{body}", body.len()).as_bytes());
        let r = c.read_response();
        assert!(r.status == 200 || r.status == 201, "{}", r.text());
    };
    put("first");
    let mut c = Conn::connect(gw.addr);
    assert_eq!(c.post_json("/v1/chat/completions", ASK).status, 200);
    put("second");
    assert_eq!(c.post_json("/v1/chat/completions", ASK).status, 200);
    assert_eq!(c.post_json("/v1/chat/completions", ASK).status, 200);
    let first = broker.consume("first", 2, Duration::from_secs(5));
    let second = broker.consume("second", 3, Duration::from_secs(5));
    assert_eq!((first.len(), second.len()), (1, 2), "{}", gw.stderr());
    assert_eq!(second[0].1["route_id"], "r");
    // The changed logger has a new sink, but its counts go on: 1 + 2.
    assert_eq!(logger_metric(&gw, "kafka logger (route/r)", "sent", 3), 3);
}

#[test]
fn meta_format_origin_sends_the_request_as_it_came_in() {
    let broker = common::kafka::KafkaBroker::start();
    broker.create_topic("origin", 1);
    let m = mocks(&["a"]);
    let gw = Gateway::start_json(logged_route(
        &m,
        json!({
            "brokers": [{"host": "127.0.0.1", "port": broker.port}],
            "kafka_topic": "origin", "batch_max_size": 1,
            "meta_format": "origin", "include_req_body": true,
        }),
    ));
    let r = Conn::connect(gw.addr).post_json("/v1/chat/completions", ASK);
    assert_eq!(r.status, 200);
    let got = broker.consume_raw("origin", 1, Duration::from_secs(20));
    assert_eq!(got.len(), 1, "{}", gw.stderr());
    let raw = &got[0].1;
    assert!(
        raw.starts_with("POST /v1/chat/completions HTTP/1.1\r\n"),
        "{raw}"
    );
    assert!(raw.contains("\r\n\r\n"), "{raw}");
    assert!(raw.ends_with(ASK), "{raw}");
}
