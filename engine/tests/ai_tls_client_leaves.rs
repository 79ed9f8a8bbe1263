//! A TLS client that leaves while its LLM answer is still being made —
//! saying so with `close_notify` and keeping TCP open, or with
//! `close_notify` and a FIN — cancels the upstream call, as a plain TCP
//! client closing does: to TCP the alert is data, which the watch used to
//! take for a pipelined request.
#![allow(clippy::disallowed_types, clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::ai::{ai_config, chat_url, instance, ASK};
use common::Gateway;
use mock_llm::{InstanceConfig, MockServer};
use serde_json::{json, Value};

/// The access-log line of the one request, once written.
fn logged(log: &std::path::Path, within: Duration) -> Option<Value> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(l) = std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .next()
        {
            return Some(serde_json::from_str(l).unwrap());
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn close_notify_cancels_a_pending_llm_call() {
    // The answer takes 4 s to start.
    let m = MockServer::builder()
        .instance(InstanceConfig::new("a").ttft(Duration::from_secs(4)))
        .spawn()
        .unwrap();
    let pki = common::certs::pki();
    for fin in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let (_, cert, key) = pki.write(dir.path());
        let log = dir.path().join("access.log");
        let mut doc = ai_config(
            &["/v1/chat/completions"],
            json!({"instances": [instance("a", 1, &chat_url(&m, "a"), "gpt-4")]}),
        );
        doc["gateway"] = json!({
            "tls": {"listen": ["127.0.0.1:0"], "cert": cert, "key": key},
            "access_log": {"path": log},
        });
        let gw = Gateway::start_json(doc);
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let conn = rustls::ClientConnection::new(pki.client_config(), name).unwrap();
        let tcp = std::net::TcpStream::connect(gw.tls_addr.unwrap()).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        write!(
            tls,
            "POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{ASK}",
            ASK.len()
        )
        .unwrap();
        tls.flush().unwrap();
        std::thread::sleep(Duration::from_millis(300));
        tls.conn.send_close_notify();
        tls.conn.complete_io(&mut tls.sock).unwrap();
        if fin {
            tls.sock.shutdown(std::net::Shutdown::Write).unwrap();
        }
        // Logged when the gateway gives up on the request, not as answered
        // (before, the answer came after 4 s and was written to the
        // half-open socket: a 200).
        let line = logged(&log, Duration::from_secs(10)).expect("the request is logged");
        assert_ne!(line["status"], 200, "fin={fin}: {line}");
        drop(tls);
    }
}
