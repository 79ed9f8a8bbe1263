//! The Admin API cannot be held down by its clients: the key is checked
//! as soon as a request's head is in (a wrong or missing key is answered
//! 401 without reading a byte of the body, however large it is
//! announced), `Expect: 100-continue` is answered only for the right key,
//! at most `gateway.admin.max_connections` connections are served at once
//! (more are answered 503 and closed), and every request must arrive
//! whole within `gateway.admin.request_timeout` (a slowloris client is
//! cut off with 408 while the others are served).

#![allow(clippy::disallowed_types, clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Conn, Gateway};
use serde_json::json;

const KEY: &str = "guard-admin-key";
const ROUTE: &str =
    r#"{"uri": "/x", "upstream": {"nodes": [{"host": "127.0.0.1", "port": 1980, "weight": 1}]}}"#;

fn gateway(admin: serde_json::Value) -> (Gateway, SocketAddr) {
    let mut a = json!({"listen": "127.0.0.1:0", "key": KEY});
    for (k, v) in admin.as_object().unwrap() {
        a[k] = v.clone();
    }
    let gw = Gateway::start_json(json!({"gateway": {"admin": a}}));
    let addr = gw.admin_addr.expect("admin listener");
    (gw, addr)
}

fn list_routes(c: &mut Conn) -> u16 {
    c.send(
        format!("GET /apisix/admin/routes HTTP/1.1\r\nHost: a\r\nX-API-KEY: {KEY}\r\n\r\n")
            .as_bytes(),
    );
    c.read_response().status
}

#[test]
fn a_wrong_or_missing_key_is_answered_before_the_body_is_read() {
    let (_gw, admin) = gateway(json!({}));
    for key_header in ["X-API-KEY: wrong\r\n", "", "X-API-KEY: \r\n"] {
        let mut c = Conn::connect(admin);
        // 16 MiB announced, not a byte of it sent: the 401 comes anyway.
        c.send(
            format!(
                "PUT /apisix/admin/routes/1 HTTP/1.1\r\nHost: a\r\n{key_header}Content-Type: application/json\r\nContent-Length: 16777216\r\n\r\n"
            )
            .as_bytes(),
        );
        let r = c.read_response();
        assert_eq!(r.status, 401, "{key_header:?}: {}", r.text());
        assert_eq!(r.json()["error_msg"], "failed to check token");
        assert_eq!(r.header("connection"), Some("close"));
        assert!(c.is_closed(), "the unread body is not waited for");
    }
    // `?api_key=` is checked the same way.
    let mut c = Conn::connect(admin);
    c.send(b"PUT /apisix/admin/routes/1?api_key=nope HTTP/1.1\r\nHost: a\r\nContent-Length: 16777216\r\n\r\n");
    assert_eq!(c.read_response().status, 401);
    // The API is still there for the right key.
    assert_eq!(list_routes(&mut Conn::connect(admin)), 200);
}

#[test]
fn a_body_announced_over_the_limit_is_refused_from_its_length() {
    let (_gw, admin) = gateway(json!({}));
    let mut c = Conn::connect(admin);
    c.send(
        format!(
            "PUT /apisix/admin/routes/1 HTTP/1.1\r\nHost: a\r\nX-API-KEY: {KEY}\r\nContent-Length: 16777217\r\n\r\n"
        )
        .as_bytes(),
    );
    let r = c.read_response();
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(c.is_closed());
}

#[test]
fn expect_100_continue_is_answered_for_the_right_key_only() {
    let (_gw, admin) = gateway(json!({}));
    let head = |key: &str| {
        format!(
            "PUT /apisix/admin/routes/1 HTTP/1.1\r\nHost: a\r\nX-API-KEY: {key}\r\nContent-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
            ROUTE.len()
        )
    };
    let mut c = Conn::connect(admin);
    c.send(head(KEY).as_bytes());
    let (status, _) = c.read_head();
    assert_eq!(status, 100, "the client is told to send the body");
    c.send(ROUTE.as_bytes());
    let r = c.read_response();
    assert_eq!(r.status, 201, "{}", r.text());

    let mut c = Conn::connect(admin);
    c.send(head("wrong").as_bytes());
    let (status, _) = c.read_head();
    assert_eq!(status, 401, "a final answer instead of 100 Continue");
}

#[test]
fn connections_past_the_cap_are_refused_and_the_api_keeps_answering() {
    let (_gw, admin) = gateway(json!({"max_connections": 2}));
    let mut first = Conn::connect(admin);
    let mut second = Conn::connect(admin);
    assert_eq!(list_routes(&mut first), 200);
    assert_eq!(list_routes(&mut second), 200);
    // Both are held open (keep-alive): a third is turned away at once.
    let mut third = Conn::connect(admin);
    let r = third.read_response();
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(
        r.text().contains("too many Admin API connections"),
        "{}",
        r.text()
    );
    assert!(third.is_closed());
    // The held connections are still served...
    assert_eq!(list_routes(&mut second), 200);
    // ...and a slot freed is a slot taken again (the server learns of the
    // close when its read ends; until then a new connection may still be
    // turned away).
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut c = Conn::connect(admin);
        c.send(
            format!("GET /apisix/admin/routes HTTP/1.1\r\nHost: a\r\nX-API-KEY: {KEY}\r\n\r\n")
                .as_bytes(),
        );
        match c.read_response().status {
            200 => break,
            503 if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            s => panic!("status {s}"),
        }
    }
}

#[test]
fn a_request_trickling_in_is_cut_off_at_the_deadline_while_others_are_served() {
    let (_gw, admin) = gateway(json!({"request_timeout": 1}));
    // The slowloris: a good head, then a body of 200 bytes one byte per
    // 50 ms (10 s in all, ten times the deadline).
    let mut slow = Conn::connect(admin);
    slow.send(
        format!("PUT /apisix/admin/routes/1 HTTP/1.1\r\nHost: a\r\nX-API-KEY: {KEY}\r\nContent-Length: 200\r\n\r\n").as_bytes(),
    );
    let sent = Arc::new(AtomicUsize::new(0));
    let trickle = {
        let mut w = slow.stream.try_clone().unwrap();
        let sent = sent.clone();
        std::thread::spawn(move || {
            for _ in 0..200 {
                if w.write_all(b" ").is_err() {
                    return;
                }
                sent.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    // Meanwhile the API answers others.
    assert_eq!(list_routes(&mut Conn::connect(admin)), 200);
    let r = slow.read_response();
    let when = sent.load(Ordering::SeqCst);
    assert_eq!(r.status, 408, "{}", r.text());
    assert!(
        when < 200,
        "cut off before the body was complete ({when} of 200 bytes)"
    );
    assert!(slow.is_closed());
    trickle.join().unwrap();
    // An idle connection is closed at the deadline too (no request, no
    // answer).
    let mut idle = Conn::connect(admin);
    assert!(idle.is_closed());
    assert_eq!(list_routes(&mut Conn::connect(admin)), 200);
}

#[test]
fn admin_limits_are_bounded_settings() {
    for (field, v) in [
        ("max_connections", json!(0)),
        ("max_connections", json!(i64::MAX)),
        ("request_timeout", json!(0)),
        ("request_timeout", json!(1e20)),
    ] {
        let doc = json!({"gateway": {"admin": {"key": KEY, field: v}}});
        let (code, out) = common::gateway::check(&doc.to_string());
        assert_eq!(code, 2, "{field}={v}: {out}");
        assert!(out.contains(&format!("gateway.admin.{field}")), "{out}");
    }
}
