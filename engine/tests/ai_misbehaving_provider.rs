//! A provider that misbehaves cannot bench an instance forever or wedge a
//! request: a far-future `Retry-After` date is capped like the seconds
//! form, changing an instance's configuration clears its cooldown, an
//! endless run of `1xx` heads ends at the read timeout, and absurd token
//! counts are saturated instead of overflowing.
#![allow(clippy::disallowed_types, clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::ai::{ai_config, ASK, ASK_STREAM};
use common::redis::RedisServer;
use common::upstream::{Recorded, Stream};
use common::{admin, Conn, Gateway, Upstream};
use serde_json::{json, Value};

const CHAT: &str = "/v1/chat/completions";

/// An instance of the scripted upstream `up`.
fn instance_of(up: &Upstream, name: &str, model: &str) -> Value {
    common::ai::instance(
        name,
        1,
        &format!("http://{}/v1/chat/completions", up.addr),
        model,
    )
}

fn write_json(s: &mut dyn Stream, status: &str, extra: &str, body: &str) {
    let _ = write!(
        s,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
}

const ANSWER: &str = r#"{"id":"c1","object":"chat.completion","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"2"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}"#;

/// Answers 429 with `retry_after` while `mode` is 0, then 200.
fn limited_then_ok(retry_after: &'static str) -> (Upstream, Arc<AtomicU8>) {
    let mode = Arc::new(AtomicU8::new(0));
    let m = mode.clone();
    let up = Upstream::start(move |_req: &Recorded, s| {
        if m.load(Ordering::SeqCst) == 0 {
            let extra = format!("Retry-After: {retry_after}\r\n");
            write_json(
                s,
                "429 Too Many Requests",
                &extra,
                r#"{"error":{"message":"slow down"}}"#,
            );
        } else {
            write_json(s, "200 OK", "", ANSWER);
        }
        true
    });
    (up, mode)
}

fn route_body(inst: Value) -> String {
    json!({
        "uri": CHAT,
        "methods": ["POST"],
        "plugins": {"ai-proxy-multi": {"fallback_strategy": ["http_429"], "instances": [inst]}},
    })
    .to_string()
}

fn gateway_with_admin() -> Gateway {
    Gateway::start_json(json!({"gateway": {"admin": admin::enabled()}}))
}

/// Seconds of the 503's `Retry-After` once the only instance cools down.
fn cooling_retry_after(gw: &Gateway) -> u64 {
    let mut c = Conn::connect(gw.addr);
    let r = c.post_json(CHAT, ASK);
    assert_eq!(
        r.status,
        502,
        "the only instance answered 429: {}",
        r.text()
    );
    let r = c.post_json(CHAT, ASK);
    assert_eq!(r.status, 503, "{}", r.text());
    r.header("retry-after").unwrap().parse().unwrap()
}

#[test]
fn a_far_future_retry_after_date_is_capped_like_seconds() {
    for value in ["Fri, 31 Dec 9999 23:59:59 GMT", "99999999999"] {
        let (up, _) = limited_then_ok(value);
        let gw = gateway_with_admin();
        let r = admin::call(
            &gw,
            "PUT",
            "/apisix/admin/routes/r1",
            &route_body(instance_of(&up, "a", "m")),
        );
        assert_eq!(r.status, 201, "{}", r.text());
        let secs = cooling_retry_after(&gw);
        assert!(
            (86_000..=86_400).contains(&secs),
            "`Retry-After: {value}` cools down for at most a day, not {secs} s"
        );
    }
}

#[test]
fn changing_an_instance_clears_its_cooldown_and_an_unchanged_one_keeps_it() {
    let (up, mode) = limited_then_ok("3600");
    let gw = gateway_with_admin();
    let first = route_body(instance_of(&up, "a", "m"));
    assert_eq!(
        admin::call(&gw, "PUT", "/apisix/admin/routes/r1", &first).status,
        201
    );
    assert!(cooling_retry_after(&gw) > 3000);
    mode.store(1, Ordering::SeqCst);
    // The same configuration again: still cooling down.
    assert_eq!(
        admin::call(&gw, "PUT", "/apisix/admin/routes/r1", &first).status,
        200
    );
    let r = Conn::connect(gw.addr).post_json(CHAT, ASK);
    assert_eq!(r.status, 503, "an unchanged instance keeps its cooldown");
    // The operator fixes the instance (a new model, say): it is tried at once.
    let fixed = route_body(instance_of(&up, "a", "m2"));
    assert_eq!(
        admin::call(&gw, "PUT", "/apisix/admin/routes/r1", &fixed).status,
        200
    );
    let r = Conn::connect(gw.addr).post_json(CHAT, ASK);
    assert_eq!(
        r.status,
        200,
        "a changed instance starts afresh: {}",
        r.text()
    );
}

/// Sends `100 Continue` heads every `every` until the connection breaks
/// (or 30 s pass), never a final response.
fn endless_interim(every: Duration) -> Upstream {
    Upstream::start(move |_req, s| {
        for _ in 0..(30_000 / every.as_millis().max(1)) {
            if s.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").is_err() || s.flush().is_err() {
                return false;
            }
            std::thread::sleep(every);
        }
        false
    })
}

#[test]
fn endless_interim_responses_end_at_the_read_timeout() {
    let up = endless_interim(Duration::from_millis(100));
    let mut plugin = json!({"timeout": 1000, "instances": [instance_of(&up, "a", "m")]});
    let gw = Gateway::start_json(ai_config(&[CHAT], plugin.take()));
    let r = Conn::connect(gw.addr).post_json(CHAT, ASK);
    assert_eq!(
        r.status,
        504,
        "a timeout, not the upstream giving up: {}",
        r.text()
    );
    // The plain proxy path reads heads the same way.
    let gw = Gateway::start(&format!(
        "services:\n  - name: s\n    upstream:\n      nodes: [{}]\n      timeout: {{connect: 1, send: 1, read: 1}}\n    routes:\n      - name: all\n        uris: [\"/*\"]\n",
        up.node_yaml()
    ));
    let r = Conn::connect(gw.addr).get("/x");
    assert_eq!(r.status, 504, "{}", r.text());
}

#[test]
fn a_flood_of_interim_responses_is_a_bad_response() {
    let up = endless_interim(Duration::from_millis(0));
    let plugin = json!({"timeout": 20000, "instances": [instance_of(&up, "a", "m")]});
    let gw = Gateway::start_json(ai_config(&[CHAT], plugin));
    let r = Conn::connect(gw.addr).post_json(CHAT, ASK);
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(r.text().contains("interim"), "{}", r.text());
}

const HUGE: u64 = u64::MAX;

/// Answers every request with absurd token counts, JSON or streamed.
fn absurd_usage() -> Upstream {
    Upstream::start(|req, s| {
        let usage = json!({"prompt_tokens": HUGE, "completion_tokens": HUGE, "total_tokens": HUGE});
        if String::from_utf8_lossy(&req.body).contains("\"stream\":true") {
            let chunk = |v: Value| format!("data: {v}\n\n");
            let body = chunk(
                json!({"id":"c","object":"chat.completion.chunk","model":"m","choices":[{"index":0,"delta":{"content":"2"},"finish_reason":null}]}),
            ) + &chunk(
                json!({"id":"c","object":"chat.completion.chunk","model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}),
            ) + &chunk(
                json!({"id":"c","object":"chat.completion.chunk","model":"m","choices":[],"usage": usage}),
            ) + "data: [DONE]\n\n";
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
        } else {
            let body = json!({"id":"c","object":"chat.completion","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"2"},"finish_reason":"stop"}],"usage": usage});
            write_json(s, "200 OK", "", &body.to_string());
        }
        true
    })
}

/// `c.post_json(path, body)`, showing the gateway's log if no answer comes.
fn answered(gw: &Gateway, c: &mut Conn, path: &str, body: &str) -> mock_llm::client::Response {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| c.post_json(path, body)))
        .unwrap_or_else(|_| panic!("no answer to {path}; gateway log:\n{}", gw.stderr()))
}

#[test]
fn absurd_token_counts_saturate_instead_of_overflowing() {
    let up = absurd_usage();
    let redis = RedisServer::start(&[]);
    let ai = json!({"instances": [instance_of(&up, "a", "m")]});
    let log = tempfile::NamedTempFile::new().unwrap();
    let doc = json!({
        "gateway": {"access_log": {"path": log.path()}},
        "services": [{"name": "ai", "routes": [
            {"name": "open", "uris": [CHAT, "/v1/messages"], "methods": ["POST"],
             "plugins": {"ai-proxy-multi": ai}},
            {"name": "budget", "uris": ["/limited/v1/chat/completions"], "methods": ["POST"],
             "plugins": {"ai-proxy-multi": ai,
                         "ai-rate-limiting": {"limit": 1000, "time_window": 60}}},
            {"name": "shared", "uris": ["/shared/v1/chat/completions"], "methods": ["POST"],
             "plugins": {"ai-proxy-multi": ai,
                         "ai-rate-limiting": {"limit": 1000, "time_window": 60, "policy": "redis",
                                              "redis_host": "127.0.0.1", "redis_port": redis.port}}},
        ]}],
    });
    let mut gw = Gateway::start_json(doc);
    let mut c = Conn::connect(gw.addr);
    let r = answered(&gw, &mut c, CHAT, ASK);
    assert_eq!(r.status, 200, "{}", r.text());
    let r = answered(&gw, &mut c, CHAT, ASK_STREAM);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("[DONE]"), "{}", r.text());
    // Anthropic-format clients get the usage converted (sums saturate).
    let r = answered(
        &gw,
        &mut c,
        "/v1/messages",
        r#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["usage"]["input_tokens"],
        json!(HUGE),
        "{}",
        r.text()
    );
    // A budget charged with an absurd count is spent, not wrapped around
    // (locally and in Redis, whose INCRBY refuses more than i64::MAX).
    for path in [
        "/limited/v1/chat/completions",
        "/shared/v1/chat/completions",
    ] {
        let r = answered(&gw, &mut c, path, ASK);
        assert_eq!(r.status, 200, "{}", r.text());
        let r = answered(&gw, &mut c, path, ASK);
        assert_eq!(r.status, 503, "{path}: the budget is spent: {}", r.text());
    }
    let lines = gw.stop_and_read_log(log.path());
    assert!(!gw.stderr().contains("panicked"), "{}", gw.stderr());
    for line in &lines[..3] {
        assert_eq!(line["llm_prompt_tokens"], json!(HUGE), "{line}");
        assert_eq!(line["llm_completion_tokens"], json!(HUGE), "{line}");
    }
}
