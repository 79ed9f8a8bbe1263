//! Engine core: malformed framing, limits and timeouts. Every error is a
//! JSON reply with the right status, the connection closes after protocol
//! errors, and the gateway keeps serving.

#![allow(clippy::disallowed_types)]

mod common;

use std::io::Read;
use std::time::{Duration, Instant};

use common::gateway::GatewayConfig;
use common::{client, Conn, Gateway, Upstream};

/// Sends `raw`, expects `status` with a JSON `error_msg`, then a close.
fn expect_error_and_close(gw: &Gateway, raw: &[u8], status: u16) {
    let (r, mut c) = client::raw(gw.addr, raw);
    assert_eq!(
        r.status,
        status,
        "for {:?}: {}",
        String::from_utf8_lossy(raw),
        r.text()
    );
    assert!(r.json()["error_msg"].is_string(), "{}", r.text());
    assert_eq!(r.header("connection"), Some("close"));
    assert!(
        c.is_closed(),
        "connection must close after {:?}",
        String::from_utf8_lossy(raw)
    );
}

#[test]
fn ambiguous_framing_is_400_and_close() {
    let up = Upstream::echo();
    let gw = Gateway::start(&common::catch_all(&up));
    let cases: [&[u8]; 7] = [
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5x\r\n\r\nhello",
        b"GET / HTTP/1.1\nHost: a\n\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX-Folded: one\r\n two\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",
        b"GARBAGE\r\n\r\n",
    ];
    for raw in cases {
        expect_error_and_close(&gw, raw, 400);
    }
    // Bad chunk sizes are found while reading the body.
    for raw in [
        &b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"[..],
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n",
    ] {
        expect_error_and_close(&gw, raw, 400);
    }
    expect_error_and_close(
        &gw,
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        501,
    );
    // Nothing reached the upstream, and the gateway still serves.
    assert!(up.requests().is_empty());
    assert_eq!(client::get(gw.addr, "/ok").status, 200);
}

#[test]
fn head_and_body_limits() {
    let up = Upstream::echo();
    let gw = Gateway::start_with(GatewayConfig {
        gateway_extra: "limits: {max_head_bytes: 4096, max_headers: 20, max_body_bytes: 1000}"
            .into(),
        body: common::catch_all(&up),
        ..Default::default()
    });
    let big_header = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n",
        "v".repeat(5000)
    );
    expect_error_and_close(&gw, big_header.as_bytes(), 431);
    let mut many = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
    for i in 0..30 {
        many.push_str(&format!("X-{i}: v\r\n"));
    }
    many.push_str("\r\n");
    expect_error_and_close(&gw, many.as_bytes(), 431);
    // A declared length over the limit is refused before reading it.
    let (r, _) = client::raw(
        gw.addr,
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\n\r\n",
    );
    assert_eq!(r.status, 413);
    assert!(r.json()["error_msg"].as_str().unwrap().contains("1000"));
    // A chunked body is cut off once it passes the limit.
    let mut req = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..3 {
        req.extend_from_slice(b"1f4\r\n");
        req.extend_from_slice(&[b'a'; 500]);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let (r, _) = client::raw(gw.addr, &req);
    assert_eq!(r.status, 413);
    // At the limit is fine.
    let mut ok = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n".to_vec();
    ok.extend_from_slice(&[b'b'; 1000]);
    let (r, _) = client::raw(gw.addr, &ok);
    assert_eq!(r.status, 200);
    // The default head limit is 32 KiB.
    let gw2 = Gateway::start(&common::catch_all(&up));
    let just_under = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n",
        "v".repeat(30_000)
    );
    assert_eq!(client::raw(gw2.addr, just_under.as_bytes()).0.status, 200);
    let over = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n",
        "v".repeat(33_000)
    );
    expect_error_and_close(&gw2, over.as_bytes(), 431);
}

#[test]
fn slowloris_head_gets_408_and_idle_connections_close() {
    let up = Upstream::echo();
    let gw = Gateway::start_with(GatewayConfig {
        gateway_extra: "timeouts: {header: 0.5, idle: 0.5}".into(),
        body: common::catch_all(&up),
        ..Default::default()
    });
    // A head trickling in slower than the header timeout.
    let mut c = Conn::connect(gw.addr);
    let started = Instant::now();
    c.send(b"GET / HTTP/1.1\r\n");
    std::thread::sleep(Duration::from_millis(200));
    c.send(b"Host: a\r\n");
    let r = c.read_response();
    assert_eq!(r.status, 408);
    assert!(r.json()["error_msg"].is_string());
    assert!(c.is_closed());
    assert!(started.elapsed() < Duration::from_secs(5));

    // An idle keep-alive connection is closed without a reply.
    let mut c = Conn::connect(gw.addr);
    assert_eq!(c.get("/").status, 200);
    let idle_from = Instant::now();
    assert!(c.is_closed());
    assert!(idle_from.elapsed() >= Duration::from_millis(400));

    // A connection that never sends anything is closed too.
    let mut s = std::net::TcpStream::connect(gw.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut b = [0u8; 16];
    assert_eq!(s.read(&mut b).unwrap_or(0), 0);
}

#[test]
fn body_timeout_is_408() {
    let up = Upstream::echo();
    let gw = Gateway::start_with(GatewayConfig {
        gateway_extra: "timeouts: {body: 0.4}".into(),
        body: common::catch_all(&up),
        ..Default::default()
    });
    let mut c = Conn::connect(gw.addr);
    c.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc");
    let r = c.read_response();
    assert_eq!(r.status, 408);
    assert!(c.is_closed());
}

#[test]
fn errors_on_one_connection_do_not_affect_others() {
    let up = Upstream::echo();
    let gw = Gateway::start(&common::catch_all(&up));
    let mut good = Conn::connect(gw.addr);
    assert_eq!(good.get("/a").status, 200);
    for _ in 0..20 {
        let (r, _) = client::raw(gw.addr, b"\x00\x01\x02 not http\r\n\r\n");
        assert_eq!(r.status, 400);
    }
    assert_eq!(good.get("/b").status, 200);
}

/// RFC 9112 §3: a request line is `method SP request-target SP
/// HTTP-version`, single spaces, the version exactly `HTTP/DIGIT.DIGIT`
/// (case-sensitive). Anything else is 400; 505 is only for a well-formed
/// version whose major the gateway does not speak. A higher 1.x minor is
/// processed as HTTP/1.1 (RFC 9110 §6.2, as nginx does).
#[test]
fn request_line_grammar_400_and_unsupported_versions_505() {
    let up = Upstream::echo();
    let gw = Gateway::start(&common::catch_all(&up));
    let cases: [(&[u8], u16); 12] = [
        (b"GET /\r\nHost: a\r\n\r\n", 400),
        (b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"GET / HTTP/1.1 x\r\nHost: a\r\n\r\n", 400),
        (b"GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 400),
        (b"GET / FOO/1.1\r\nHost: a\r\n\r\n", 400),
        (b"GET / http/1.1\r\nHost: a\r\n\r\n", 400),
        (b"GET / HTTP/1.10\r\nHost: a\r\n\r\n", 400),
        (b"GET / HTTP/11\r\nHost: a\r\n\r\n", 400),
        (b"GET / HTTP/1.x\r\nHost: a\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
        (b"GET / HTTP/3.0\r\nHost: a\r\n\r\n", 505),
        (b"GET / HTTP/0.9\r\nHost: a\r\n\r\n", 505),
    ];
    let wrong: Vec<String> = cases
        .iter()
        .filter_map(|&(raw, want)| {
            let (r, _c) = client::raw(gw.addr, raw);
            (r.status != want).then(|| {
                format!(
                    "{:?}: {} (want {want})",
                    String::from_utf8_lossy(raw),
                    r.status
                )
            })
        })
        .collect();
    assert!(wrong.is_empty(), "{wrong:#?}");
    for (raw, status) in cases {
        expect_error_and_close(&gw, raw, status);
    }
    // HTTP/1.2: answered as HTTP/1.1, and proxied as such.
    let (r, _c) = client::raw(gw.addr, b"GET /minor HTTP/1.2\r\nHost: a\r\n\r\n");
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].target, "/minor");
}
