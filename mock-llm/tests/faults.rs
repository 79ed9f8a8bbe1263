//! Every fault knob of mock-llm, per instance (API and `POST /_control`) and
//! per request (`x-mock-*` headers). Timing assertions are lower bounds
//! only: a loaded machine may be slower, never faster.
#![allow(clippy::unwrap_used)]

use std::io::Read;
use std::time::{Duration, Instant};

use mock_llm::client::Conn;
use mock_llm::{Faults, InstanceConfig, MockServer};

const CHAT: &str = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
const STREAM: &str = r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;

fn mock(cfg: InstanceConfig) -> MockServer {
    MockServer::builder().instance(cfg).spawn().unwrap()
}

fn send(addr: std::net::SocketAddr, headers: &str, body: &str) -> Conn {
    let mut c = Conn::connect(addr);
    c.send(format!("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{headers}Content-Length: {}\r\n\r\n{body}", body.len()).as_bytes());
    c
}

#[test]
fn status_and_retry_after_per_request_and_per_instance() {
    let m = mock(InstanceConfig::new("a"));
    let a = m.instance("a");
    let r = send(
        a.addr(),
        "x-mock-status: 429\r\nx-mock-retry-after: 7\r\n",
        CHAT,
    )
    .read_response();
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("7"));
    assert_eq!(r.json()["error"]["code"], "rate_limit_exceeded");
    for s in [500u16, 502, 503, 504] {
        let r = send(a.addr(), &format!("x-mock-status: {s}\r\n"), CHAT).read_response();
        assert_eq!(r.status, s);
        assert_eq!(r.json()["error"]["type"], "server_error");
    }
    a.set_faults(Faults {
        status: Some(503),
        ..Default::default()
    });
    assert_eq!(send(a.addr(), "", CHAT).read_response().status, 503);
    a.clear_faults();
    assert_eq!(send(a.addr(), "", CHAT).read_response().status, 200);
    assert_eq!(a.stats().faults_injected, 6);
    // Anthropic's shape on /v1/messages.
    let mut c = Conn::connect(a.addr());
    c.send(b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nx-mock-status: 429\r\nContent-Length: 2\r\n\r\n{}");
    let r = c.read_response();
    assert_eq!(r.json()["error"]["type"], "rate_limit_error");
}

#[test]
fn fail_rate_is_seeded_and_roughly_right() {
    let run = || {
        let m = mock(InstanceConfig::new("a").seed(7));
        let mut c = Conn::connect(m.instance("a").addr());
        (0..200)
            .map(|_| {
                c.send(format!("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nx-mock-fail-rate: 0.3\r\nx-mock-status: 503\r\nContent-Length: {}\r\n\r\n{CHAT}", CHAT.len()).as_bytes());
                c.read_response().status
            })
            .collect::<Vec<u16>>()
    };
    let first = run();
    let failures = first.iter().filter(|&&s| s == 503).count();
    assert!(
        (35..=85).contains(&failures),
        "{failures} of 200 failed at rate 0.3"
    );
    assert_eq!(first, run(), "the same seed gives the same sequence");
}

#[test]
fn reset_before_response_and_mid_stream() {
    let m = mock(InstanceConfig::new("a").tokens(10));
    let a = m.instance("a");
    let mut c = send(a.addr(), "x-mock-reset-before-response: 1\r\n", CHAT);
    let mut buf = [0u8; 64];
    let r = c.stream.read(&mut buf);
    assert!(
        matches!(r, Err(ref e) if e.kind() == std::io::ErrorKind::ConnectionReset)
            || matches!(r, Ok(0)),
        "{r:?}"
    );

    let mut c = send(
        a.addr(),
        "x-mock-reset-after-chunks: 3\r\nx-mock-itl-ms: 5\r\n",
        STREAM,
    );
    let (status, _) = c.read_head();
    assert_eq!(status, 200);
    let mut got = 0;
    let mut all = Vec::new();
    loop {
        match c.stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => all.extend_from_slice(&buf[..n]),
            Err(e) => {
                assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset);
                break;
            }
        }
    }
    got += String::from_utf8_lossy(&all)
        .matches("\"content\":\"")
        .count();
    assert!(got <= 4, "role chunk + 3 tokens at most, got {got}");
    assert!(!String::from_utf8_lossy(&all).contains("[DONE]"));
    assert_eq!(a.stats().faults_injected, 2);
}

#[test]
fn stall_mid_stream_and_ttft() {
    let m = mock(InstanceConfig::new("a").tokens(4));
    let a = m.instance("a");
    let started = Instant::now();
    let mut c = send(
        a.addr(),
        "x-mock-stall-ms: 400\r\nx-mock-stall-after-chunks: 2\r\n",
        STREAM,
    );
    let r = c.read_response();
    assert_eq!(r.status, 200);
    assert!(String::from_utf8_lossy(&r.body).contains("[DONE]"));
    assert!(started.elapsed() >= Duration::from_millis(400));

    let started = Instant::now();
    let mut c = send(a.addr(), "x-mock-ttft-ms: 300\r\n", STREAM);
    let (status, _) = c.read_head();
    assert_eq!(status, 200);
    assert!(c.read_chunk().is_some(), "role chunk arrives with the head");
    assert!(c.read_chunk().is_some());
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "first token after the TTFT"
    );
}

#[test]
fn refuse_connections_then_listen_again_on_the_same_port() {
    let m = mock(InstanceConfig::new("a"));
    let a = m.instance("a");
    a.stop_listening();
    assert!(std::net::TcpStream::connect(a.addr()).is_err());
    a.start_listening();
    assert_eq!(send(a.addr(), "", CHAT).read_response().status, 200);
    // And timed, through the control endpoint.
    let mut c = Conn::connect(a.addr());
    c.post_json("/_control", r#"{"refuse_for_secs": 1}"#);
    std::thread::sleep(Duration::from_millis(150));
    assert!(std::net::TcpStream::connect(a.addr()).is_err());
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(send(a.addr(), "", CHAT).read_response().status, 200);
}

#[test]
fn slow_reads() {
    let m = mock(InstanceConfig::new("a"));
    let body = format!(
        r#"{{"model":"m","messages":[{{"role":"user","content":"{}"}}]}}"#,
        "x ".repeat(200)
    );
    let started = Instant::now();
    let r = send(
        m.instance("a").addr(),
        "x-mock-slow-read-bps: 1000\r\n",
        &body,
    )
    .read_response();
    assert_eq!(r.status, 200);
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn api_key_shapes() {
    let m = mock(InstanceConfig::new("a").api_key("sk-test"));
    let a = m.instance("a");
    let r = send(a.addr(), "", CHAT).read_response();
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["code"], "invalid_api_key");
    assert_eq!(
        send(a.addr(), "Authorization: Bearer sk-test\r\n", CHAT)
            .read_response()
            .status,
        200
    );
    assert_eq!(
        send(a.addr(), "api-key: sk-test\r\n", CHAT)
            .read_response()
            .status,
        200
    );
    let mut c = Conn::connect(a.addr());
    c.send(
        b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nx-api-key: wrong\r\nContent-Length: 2\r\n\r\n{}",
    );
    let r = c.read_response();
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["type"], "authentication_error");
}

#[test]
fn control_endpoint_faults_expire() {
    let m = mock(InstanceConfig::new("a"));
    let a = m.instance("a");
    let mut c = Conn::connect(a.addr());
    let r = c.post_json(
        "/_control",
        r#"{"status": 429, "retry_after": 2, "for_secs": 1}"#,
    );
    assert_eq!(r.status, 200);
    assert_eq!(c.get("/_control").json()["status"], 429);
    let r = send(a.addr(), "", CHAT).read_response();
    assert_eq!((r.status, r.header("retry-after")), (429, Some("2")));
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(send(a.addr(), "", CHAT).read_response().status, 200);
    assert_eq!(c.post_json("/_control", r#"{"bogus": 1}"#).status, 400);
    c.post_json("/_control", r#"{"health_status": 503}"#);
    assert_eq!(c.get("/health").status, 503);
    c.post_json("/_control", r#"{"clear": true}"#);
    assert_eq!(c.get("/health").status, 200);
}

/// `json_style`: the same answers and events spelled as Python's
/// `json.dumps` writes them, or pretty-printed over several `data:` lines
/// per event; per request (`x-mock-json-style`) or per instance.
#[test]
fn json_style_respells_answers_and_events() {
    let m = mock(InstanceConfig::new("a").tokens(3));
    let a = m.instance("a");
    let compact = send(a.addr(), "", CHAT).read_response();
    let python = send(a.addr(), "x-mock-json-style: python\r\n", CHAT).read_response();
    assert!(
        python.text().contains(r#""usage": {"prompt_tokens": "#),
        "{}",
        python.text()
    );
    let strip = |mut v: serde_json::Value| {
        v["id"] = serde_json::Value::Null;
        v["created"] = serde_json::Value::Null;
        v
    };
    assert_eq!(strip(python.json()), strip(compact.json()));
    a.set_faults(Faults {
        json_style: Some(mock_llm::JsonStyle::Pretty),
        ..Default::default()
    });
    let pretty = send(a.addr(), "", STREAM).read_response().text();
    // Every line of an event's JSON is a `data:` line of its own.
    let first = pretty.split("\n\n").next().unwrap();
    assert!(first.starts_with("data: {\ndata:   \""), "{first}");
    let joined: serde_json::Value = serde_json::from_str(
        &first
            .lines()
            .map(|l| l.strip_prefix("data: ").unwrap())
            .collect::<Vec<_>>()
            .join("\n"),
    )
    .unwrap();
    assert_eq!(joined["object"], "chat.completion.chunk");
    assert!(pretty.ends_with("data: [DONE]\n\n"));
}
