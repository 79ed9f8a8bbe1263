//! A pooled upstream connection that turns out dead when reused (the
//! upstream closed it while idle, the request crossing its FIN) is retried
//! once on a fresh connection, on a plain upstream route and on an
//! `ai-proxy-multi` route: the client sees only its answer.

#![allow(clippy::disallowed_types)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::ai::{ai_config, instance};
use common::{Conn, Gateway};
use serde_json::json;

/// An upstream whose first connection answers one request, then takes the
/// next request and closes without answering (as a server closing an idle
/// keep-alive connection does when a request crosses its FIN); every later
/// connection answers every request.
struct StaleFirst {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
}

impl StaleFirst {
    fn start(answer: &'static str) -> StaleFirst {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let (conns, reqs) = (connections.clone(), requests.clone());
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { return };
                let n = conns.fetch_add(1, Ordering::SeqCst);
                let reqs = reqs.clone();
                std::thread::spawn(move || {
                    let mut served = 0;
                    while read_request(&mut s) {
                        reqs.fetch_add(1, Ordering::SeqCst);
                        if n == 0 && served == 1 {
                            return; // dropped: closed without an answer
                        }
                        let head = format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                            answer.len()
                        );
                        if s.write_all(head.as_bytes()).is_err()
                            || s.write_all(answer.as_bytes()).is_err()
                        {
                            return;
                        }
                        served += 1;
                    }
                });
            }
        });
        StaleFirst {
            addr,
            connections,
            requests,
        }
    }
}

/// Reads one request (head and `Content-Length` body); false at the end.
fn read_request(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => buf.push(byte[0]),
            _ => return false,
        }
    }
    let head = String::from_utf8_lossy(&buf).to_ascii_lowercase();
    let len = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse::<usize>().expect("length"));
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).is_ok()
}

#[test]
fn a_plain_route_retries_a_stale_pooled_connection_once_on_a_fresh_one() {
    let up = StaleFirst::start(r#"{"ok":true}"#);
    let gw = Gateway::start_with(common::gateway::GatewayConfig {
        workers: 1,
        body: format!(
            "services:\n  - name: s\n    upstream:\n      nodes: [{{host: \"127.0.0.1\", port: {}, weight: 1}}]\n    routes:\n      - name: all\n        uris: [\"/*\"]\n",
            up.addr.port()
        ),
        ..Default::default()
    });
    let mut c = Conn::connect(gw.addr);
    assert_eq!(c.get("/one").status, 200);
    let second = c.get("/two");
    assert_eq!(second.status, 200, "{}", second.text());
    assert_eq!(second.text(), r#"{"ok":true}"#);
    assert_eq!(
        up.connections.load(Ordering::SeqCst),
        2,
        "one fresh connection"
    );
    assert_eq!(
        up.requests.load(Ordering::SeqCst),
        3,
        "the second request sent twice"
    );
}

#[test]
fn an_ai_route_retries_a_stale_pooled_connection_once_on_a_fresh_one() {
    const ANSWER: &str = r#"{"id":"c1","object":"chat.completion","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}"#;
    let up = StaleFirst::start(ANSWER);
    let endpoint = format!("http://{}/v1/chat/completions", up.addr);
    let mut doc = ai_config(
        &["/v1/chat/completions"],
        json!({"instances": [instance("only", 1, &endpoint, "m")]}),
    );
    doc["gateway"] = json!({"workers": 1});
    let gw = Gateway::start_json(doc);
    let body = r#"{"model":"m","messages":[{"role":"user","content":"hello"}]}"#;
    let mut c = Conn::connect(gw.addr);
    for round in 0..2 {
        let r = c.post_json("/v1/chat/completions", body);
        assert_eq!(r.status, 200, "round {round}: {}", r.text());
        assert_eq!(r.json()["choices"][0]["message"]["content"], "hi");
        assert_eq!(r.header("x-ringway-attempts"), Some("1"), "not a fallback");
    }
    assert_eq!(
        up.connections.load(Ordering::SeqCst),
        2,
        "one fresh connection"
    );
    assert_eq!(
        up.requests.load(Ordering::SeqCst),
        3,
        "the second request sent twice"
    );
}
