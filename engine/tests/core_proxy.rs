//! Engine core, end to end through the binary: keep-alive reuse,
//! pipelining, chunked bodies both ways, streaming without buffering,
//! hop-by-hop and forwarding headers, errors with JSON bodies.

#![allow(clippy::disallowed_types)]

mod common;

use std::sync::mpsc;
use std::time::Duration;

use common::{client, Conn, Gateway, Upstream};

fn gateway_for(up: &Upstream) -> Gateway {
    Gateway::start(&common::catch_all(up))
}

#[test]
fn upstream_sees_one_connection_for_many_sequential_requests() {
    let up = Upstream::echo();
    let gw = Gateway::start_with(common::gateway::GatewayConfig {
        workers: 1,
        body: common::catch_all(&up),
        ..Default::default()
    });
    let mut c = Conn::connect(gw.addr);
    for i in 0..20 {
        let r = c.get(&format!("/req/{i}"));
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["target"], format!("/req/{i}"));
    }
    // A second client connection on the same worker reuses the pool too.
    let mut c2 = Conn::connect(gw.addr);
    assert_eq!(c2.get("/again").status, 200);
    assert_eq!(
        up.connections(),
        1,
        "the upstream connection must be reused"
    );
    assert_eq!(up.requests().len(), 21);
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let up = Upstream::echo();
    let gw = gateway_for(&up);
    let mut c = Conn::connect(gw.addr);
    let mut batch = Vec::new();
    for p in ["/one", "/two", "/three"] {
        batch.extend_from_slice(format!("GET {p} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
    }
    batch.extend_from_slice(b"POST /four HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nbody");
    c.send(&batch);
    for p in ["/one", "/two", "/three", "/four"] {
        let r = c.read_response();
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["target"], p);
    }
}

#[test]
fn chunked_request_bodies_small_and_large() {
    let up = Upstream::echo();
    let gw = gateway_for(&up);
    let mut c = Conn::connect(gw.addr);
    c.send(b"POST /small HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n");
    let r = c.read_response();
    assert_eq!(r.status, 200);
    let j = r.json();
    assert_eq!(j["body"], "hello world");
    // Small chunked bodies are buffered and sent with a Content-Length.
    assert_eq!(j["chunked"], false);
    assert_eq!(j["headers"]["content-length"], "11");

    // A body over the buffering threshold streams to the upstream chunked.
    let big: String = "x".repeat(200_000);
    let mut req = b"POST /big HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for piece in big.as_bytes().chunks(7000) {
        req.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        req.extend_from_slice(piece);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    c.send(&req);
    let r = c.read_response();
    assert_eq!(r.status, 200);
    let j = r.json();
    assert_eq!(j["chunked"], true);
    assert_eq!(j["body"].as_str().unwrap().len(), big.len());
    // Content-Length bodies over the threshold stream with their length.
    let mut req = format!(
        "POST /cl HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        big.len()
    )
    .into_bytes();
    req.extend_from_slice(big.as_bytes());
    c.send(&req);
    let j = c.read_response().json();
    assert_eq!(j["chunked"], false);
    assert_eq!(j["body"].as_str().unwrap().len(), big.len());
}

/// A `Content-Length` body is forwarded whole however it arrives: the
/// head alone, then pieces growing from one byte with pauses between them
/// (many reads), the last piece carrying the next request; under the
/// buffering threshold (read into one buffer) and over it (streamed).
#[test]
fn content_length_bodies_arriving_in_pieces() {
    let up = Upstream::echo();
    let gw = gateway_for(&up);
    let mut c = Conn::connect(gw.addr);
    for size in [60_000usize, 150_000] {
        let body: String = (0..size)
            .map(|i| char::from(b'a' + (i % 23) as u8))
            .collect();
        c.send(
            format!("POST /pieces HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\n\r\n")
                .as_bytes(),
        );
        let (mut at, mut step) = (0, 1);
        while at < size - 10 {
            let end = (at + step).min(size - 10);
            c.send(&body.as_bytes()[at..end]);
            (at, step) = (end, step * 3);
            std::thread::sleep(Duration::from_millis(5));
        }
        let mut last = body.as_bytes()[at..].to_vec();
        last.extend_from_slice(b"POST /next HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nnext");
        c.send(&last);
        let j = c.read_response().json();
        assert_eq!(j["target"], "/pieces");
        assert!(j["body"] == body.as_str(), "body of {size} bytes changed");
        let j = c.read_response().json();
        assert_eq!(
            (&j["target"], &j["body"]),
            (&"/next".into(), &"next".into())
        );
    }
}

#[test]
fn chunked_and_close_delimited_responses_reach_the_client_intact() {
    let up = Upstream::start(|req, s| {
        if req.target == "/chunked" {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Up: 1\r\n\r\n4\r\nabcd\r\n3;e=1\r\nefg\r\n0\r\nX-Trailer: t\r\n\r\n");
            true
        } else {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil-close body");
            false
        }
    });
    let gw = gateway_for(&up);
    let mut c = Conn::connect(gw.addr);
    let r = c.get("/chunked");
    assert!(r.chunked);
    assert_eq!(r.body, b"abcdefg");
    assert_eq!(r.header("x-up"), Some("1"));
    // Close-delimited upstream bodies are re-chunked; the client connection
    // stays usable.
    let r = c.get("/close");
    assert!(r.chunked, "{:?}", r.headers);
    assert_eq!(r.body, b"until-close body");
    assert_eq!(r.header("connection"), None);
    assert_eq!(c.get("/chunked").body, b"abcdefg");
    // A chunked answer leaves its upstream connection in the pool: the
    // first one served /chunked then /close (which ended it), a second
    // one the last /chunked.
    assert_eq!(up.connections(), 2);
}

#[test]
fn streamed_response_reaches_client_before_upstream_finishes() {
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let go_rx = std::sync::Mutex::new(go_rx);
    let up = Upstream::start(move |_, s| {
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n");
        let _ = s.write_all(b"d\r\ndata: first\n\n\r\n");
        let _ = s.flush();
        // Hold the rest until the test has seen the first event.
        let _ = go_rx.lock().unwrap().recv_timeout(Duration::from_secs(10));
        let _ = s.write_all(b"e\r\ndata: second\n\n\r\n0\r\n\r\n");
        true
    });
    let gw = gateway_for(&up);
    let mut c = Conn::connect(gw.addr);
    c.send(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n");
    let (status, headers) = c.read_head();
    assert_eq!(status, 200);
    assert!(headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("content-type") && v == "text/event-stream"));
    assert_eq!(c.read_chunk().unwrap(), b"data: first\n\n");
    go_tx.send(()).unwrap();
    assert_eq!(c.read_chunk().unwrap(), b"data: second\n\n");
    assert_eq!(c.read_chunk(), None);
}

#[test]
fn hop_by_hop_headers_are_dropped_and_forwarding_headers_set() {
    let up = Upstream::start(|req, s| {
        let body = common::upstream::echo_json(req);
        let _ = write!(
            s,
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nKeep-Alive: timeout=5\r\nX-Hop: secret\r\nConnection: X-Hop\r\nX-Kept: yes\r\n\r\n{}",
            body.len(),
            body
        );
        true
    });
    let gw = gateway_for(&up);
    let mut c = Conn::connect(gw.addr);
    c.send(b"GET /h HTTP/1.1\r\nHost: example.test:8080\r\nConnection: keep-alive, X-Drop\r\nX-Drop: 1\r\nTE: trailers\r\nKeep-Alive: 300\r\nX-Forwarded-For: 10.0.0.1\r\nX-Custom: ok\r\n\r\n");
    let r = c.read_response();
    let h = &r.json()["headers"];
    assert_eq!(h["host"], "example.test:8080");
    assert_eq!(h["x-custom"], "ok");
    assert!(
        h.get("x-drop").is_none(),
        "headers named in Connection must not be forwarded"
    );
    assert!(h.get("te").is_none() && h.get("keep-alive").is_none());
    assert_eq!(h["x-forwarded-for"], "10.0.0.1, 127.0.0.1");
    assert_eq!(h["x-real-ip"], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], "example.test");
    assert_eq!(r.header("x-kept"), Some("yes"));
    assert_eq!(r.header("x-hop"), None);
    assert_eq!(r.header("keep-alive"), None);
}

#[test]
fn no_route_is_404_with_apisix_body() {
    let up = Upstream::echo();
    let gw = Gateway::start(&format!(
        "services:\n  - name: s\n    upstream:\n      nodes: [{}]\n    routes:\n      - name: r\n        uris: [\"/only\"]\n        methods: [GET]\n",
        up.node_yaml()
    ));
    let mut c = Conn::connect(gw.addr);
    let r = c.get("/other");
    assert_eq!(r.status, 404);
    assert_eq!(
        r.json(),
        serde_json::json!({"error_msg": "404 Route Not Found"})
    );
    // Wrong method on a known path is also 404 (APISIX), connection kept.
    let r = c.post_json("/only", "{}");
    assert_eq!(r.status, 404);
    assert_eq!(c.get("/only").status, 200);
}

#[test]
fn connect_refused_is_502_and_unresponsive_upstream_is_504() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_port = dead.local_addr().unwrap().port();
    drop(dead);
    let (hold_tx, hold_rx) = mpsc::channel::<()>();
    let hold_rx = std::sync::Mutex::new(hold_rx);
    let slow = Upstream::start(move |_, _| {
        let _ = hold_rx
            .lock()
            .unwrap()
            .recv_timeout(Duration::from_secs(10));
        false
    });
    let gw = Gateway::start(&format!(
        "services:\n  - name: dead\n    upstream:\n      nodes: [{{host: 127.0.0.1, port: {dead_port}}}]\n    routes:\n      - name: dead\n        uris: [\"/dead\"]\n  - name: slow\n    upstream:\n      timeout: {{read: 0.3}}\n      nodes: [{}]\n    routes:\n      - name: slow\n        uris: [\"/slow\"]\n",
        slow.node_yaml()
    ));
    let r = client::get(gw.addr, "/dead");
    assert_eq!(r.status, 502);
    assert!(
        r.json()["error_msg"].as_str().unwrap().contains("connect"),
        "{}",
        r.text()
    );
    let r = client::get(gw.addr, "/slow");
    assert_eq!(r.status, 504);
    assert!(r.json()["error_msg"].is_string());
    drop(hold_tx);
}

#[test]
fn retries_move_to_the_next_node_on_connect_failure() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_port = dead.local_addr().unwrap().port();
    drop(dead);
    let up = Upstream::echo();
    let gw = Gateway::start(&format!(
        "services:\n  - name: s\n    upstream:\n      nodes: [{{host: 127.0.0.1, port: {dead_port}, weight: 1}}, {}]\n    routes:\n      - name: all\n        uris: [\"/*\"]\n",
        up.node_yaml()
    ));
    for _ in 0..6 {
        assert_eq!(client::get(gw.addr, "/x").status, 200);
    }
}

#[test]
fn http10_client_gets_close_delimited_body() {
    let up = Upstream::start(|_, s| {
        let _ = s.write_all(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        );
        true
    });
    let gw = gateway_for(&up);
    let (r, _c) = client::raw(gw.addr, b"GET / HTTP/1.0\r\n\r\n");
    assert_eq!(r.status, 200);
    assert!(!r.chunked);
    assert_eq!(r.body, b"abc");
}

#[test]
fn expect_100_continue_is_answered_before_the_body() {
    let up = Upstream::echo();
    let gw = gateway_for(&up);
    let mut c = Conn::connect(gw.addr);
    c.send(b"POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    let (status, _) = c.read_head();
    assert_eq!(status, 100);
    c.send(b"hello");
    let r = c.read_response();
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["body"], "hello");
    assert!(r.json()["headers"].get("expect").is_none());
}

/// Route `vars` (APISIX's conditions on request variables): routes on the
/// same path are told apart by a header, a query argument or the client
/// address, in priority order; no route whose `vars` hold is a 404; a bad
/// condition is refused at load with its path.
#[test]
fn routes_on_one_path_are_chosen_by_their_vars() {
    let (canary, beta, stable) = (Upstream::echo(), Upstream::echo(), Upstream::echo());
    let route = |name: &str, up: &Upstream, priority: i64, vars: &str| {
        format!(
            "      - name: {name}\n        uris: [/v1/chat]\n        priority: {priority}\n        upstream: {{nodes: [{}]}}\n{vars}",
            up.node_yaml()
        )
    };
    let config = |stable_vars: &str| {
        format!(
            "services:\n  - name: s\n    routes:\n{}{}{}",
            route("canary", &canary, 10, "        vars: [[\"http_x_env\", \"==\", \"canary\"]]\n"),
            route("beta", &beta, 5, "        vars: [\"OR\", [\"arg_beta\", \"==\", \"1\"], [\"remote_addr\", \"ipmatch\", \"10.0.0.0/8\"]]\n"),
            route("stable", &stable, 0, stable_vars),
        )
    };
    let gw = Gateway::start(&config(
        "        vars: [[\"http_x_env\", \"!\", \"==\", \"blocked\"]]\n",
    ));
    let send = |extra: &str, path: &str| {
        let mut c = Conn::connect(gw.addr);
        c.send(format!("GET {path} HTTP/1.1\r\nHost: a\r\nX-Env: {extra}\r\n\r\n").as_bytes());
        c.read_response().status
    };
    assert_eq!(send("canary", "/v1/chat?beta=1"), 200);
    assert_eq!(send("other", "/v1/chat?beta=1"), 200);
    assert_eq!(send("other", "/v1/chat"), 200);
    assert_eq!(send("blocked", "/v1/chat"), 404);
    assert_eq!(
        (
            canary.requests().len(),
            beta.requests().len(),
            stable.requests().len()
        ),
        (1, 1, 1)
    );

    let (code, out) =
        common::gateway::check(&config("        vars: [[\"http_x_env\", \"=\", \"x\"]]\n"));
    assert_ne!(code, 0);
    assert!(out.contains("routes[2].vars[0][1]"), "{out}");
}
