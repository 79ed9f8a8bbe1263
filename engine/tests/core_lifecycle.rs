//! Engine core: graceful shutdown, client disconnects cancelling upstream
//! work, the epoll fallback, and TLS on both sides.

#![allow(clippy::disallowed_types, clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::gateway::GatewayConfig;
use common::upstream::wait_closed;
use common::{client, Conn, Gateway, Upstream};

/// An upstream that streams `n` SSE events, `every` apart.
fn slow_stream(n: usize, every: Duration) -> Upstream {
    Upstream::start(move |_, s| {
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n");
        for i in 0..n {
            let ev = format!("data: {i}\n\n");
            let _ = write!(s, "{:x}\r\n{ev}\r\n", ev.len());
            let _ = s.flush();
            std::thread::sleep(every);
        }
        let _ = s.write_all(b"0\r\n\r\n");
        true
    })
}

#[test]
fn sigterm_drains_an_open_stream_then_exits_zero() {
    let up = slow_stream(10, Duration::from_millis(100));
    let echo = Upstream::echo();
    let mut gw = Gateway::start(&format!(
        "services:\n  - name: s\n    upstream:\n      nodes: [{}]\n    routes:\n      - name: stream\n        uris: [\"/stream\"]\n  - name: e\n    upstream:\n      nodes: [{}]\n    routes:\n      - name: echo\n        uris: [\"/echo\"]\n",
        up.node_yaml(),
        echo.node_yaml()
    ));
    let mut idle = Conn::connect(gw.addr);
    assert_eq!(idle.get("/echo").status, 200);
    let mut c = Conn::connect(gw.addr);
    c.send(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(c.read_head().0, 200);
    assert_eq!(c.read_chunk().unwrap(), b"data: 0\n\n");
    let signalled = Instant::now();
    gw.signal(libc::SIGTERM);
    // The idle keep-alive connection is closed right away…
    assert!(idle.is_closed());
    // …new connections are refused…
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        std::net::TcpStream::connect(gw.addr).is_err(),
        "listener must be closed during drain"
    );
    // …and the open stream runs to its end.
    let mut got = 1;
    while let Some(chunk) = c.read_chunk() {
        assert_eq!(chunk, format!("data: {got}\n\n").as_bytes());
        got += 1;
    }
    assert_eq!(got, 10);
    assert_eq!(gw.wait(Duration::from_secs(5)), Some(0));
    assert!(signalled.elapsed() < Duration::from_secs(5));
    assert!(gw.stderr().contains("shutting down"));
}

#[test]
fn drain_timeout_bounds_shutdown() {
    let up = slow_stream(100, Duration::from_millis(100));
    let mut gw = Gateway::start_with(GatewayConfig {
        gateway_extra: "timeouts: {drain: 0.5}".into(),
        body: common::catch_all(&up),
        ..Default::default()
    });
    let mut c = Conn::connect(gw.addr);
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(c.read_head().0, 200);
    let t = Instant::now();
    assert_eq!(gw.stop(Duration::from_secs(5)), Some(0));
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
}

#[test]
fn client_disconnect_cancels_the_upstream_request() {
    let (tx, rx) = mpsc::channel::<(String, bool)>();
    let tx = std::sync::Mutex::new(tx);
    let up = Upstream::start(move |req, s| {
        if req.target == "/wait" {
            // Think for a long time before answering.
            let closed = wait_closed(s, Duration::from_secs(5));
            let _ = tx.lock().unwrap().send((req.target.clone(), closed));
            return false;
        }
        // Start a stream, then wait.
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n8\r\ndata: 1\n\r\n");
        let _ = s.flush();
        let closed = wait_closed(s, Duration::from_secs(5));
        let _ = tx.lock().unwrap().send((req.target.clone(), closed));
        false
    });
    let gw = Gateway::start(&common::catch_all(&up));
    // While waiting for the response head.
    let mut c = Conn::connect(gw.addr);
    c.send(b"POST /wait HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}");
    std::thread::sleep(Duration::from_millis(300));
    let dropped = Instant::now();
    drop(c);
    let (target, closed) = rx.recv_timeout(Duration::from_secs(6)).unwrap();
    assert_eq!(target, "/wait");
    assert!(
        closed,
        "upstream connection must be closed when the client leaves"
    );
    assert!(
        dropped.elapsed() < Duration::from_secs(2),
        "{:?}",
        dropped.elapsed()
    );
    // While relaying a stream that has gone quiet.
    let mut c = Conn::connect(gw.addr);
    c.send(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(c.read_head().0, 200);
    assert!(c.read_chunk().is_some());
    let dropped = Instant::now();
    drop(c);
    let (target, closed) = rx.recv_timeout(Duration::from_secs(6)).unwrap();
    assert_eq!(target, "/stream");
    assert!(closed);
    assert!(dropped.elapsed() < Duration::from_secs(2));
}

#[test]
fn epoll_fallback_logs_once_and_serves() {
    let up = Upstream::echo();
    let gw = Gateway::start_with(GatewayConfig {
        body: common::catch_all(&up),
        env: vec![("MONOIO_FORCE_LEGACY_DRIVER".into(), "1".into())],
        ..Default::default()
    });
    let mut c = Conn::connect(gw.addr);
    for _ in 0..5 {
        assert_eq!(c.get("/x").status, 200);
    }
    let log = gw.stderr();
    assert_eq!(log.matches("io_uring is unavailable").count(), 1, "{log}");
}

#[test]
fn tls_termination_and_tls_upstreams_with_verification() {
    let pki = common::certs::pki();
    let echo = Upstream::echo();
    let tls_up = Upstream::start_tls(pki.server_config_requiring_sni("localhost"), |req, s| {
        let body = common::upstream::echo_json(req);
        let _ = write!(
            s,
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{}",
            body.len(),
            body
        );
        true
    });
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = pki.write(dir.path());
    let body = format!(
        "services:\n\
         \x20 - name: plain\n    upstream:\n      nodes: [{echo}]\n    routes:\n      - name: plain\n        uris: [\"/plain\"]\n\
         \x20 - name: secure\n    upstream:\n      scheme: https\n      pass_host: node\n      nodes: [{{host: localhost, port: {port}}}]\n    routes:\n      - name: secure\n        uris: [\"/secure\"]\n",
        echo = echo.node_yaml(),
        port = tls_up.addr.port()
    );
    let gw = Gateway::start_with(GatewayConfig {
        gateway_extra: format!(
            "tls: {{listen: [\"127.0.0.1:0\"], cert: \"{}\", key: \"{}\"}}\nssl_trusted_certificate: \"{}\"",
            cert.display(),
            key.display(),
            ca.display()
        ),
        body: body.clone(),
        ..Default::default()
    });
    // Termination: HTTPS client → plain upstream.
    let tls_addr = gw.tls_addr.expect("tls listener");
    let server_name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(pki.client_config(), server_name).unwrap();
    let tcp = std::net::TcpStream::connect(tls_addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(b"GET /plain HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut resp = Vec::new();
    let _ = tls.read_to_end(&mut resp);
    let text = String::from_utf8_lossy(&resp);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("\"x-forwarded-proto\":\"https\""), "{text}");

    // Origination: verified against the trusted CA, SNI `localhost`.
    let r = client::get(gw.addr, "/secure");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["headers"]["host"],
        format!("localhost:{}", tls_up.addr.port())
    );

    // Without the CA the certificate is rejected…
    let untrusted = Gateway::start(&body);
    let r = client::get(untrusted.addr, "/secure");
    assert_eq!(r.status, 502);
    assert!(
        r.json()["error_msg"].as_str().unwrap().contains("TLS"),
        "{}",
        r.text()
    );
    // …unless verification is switched off for that upstream.
    let insecure = Gateway::start(&body.replace(
        "scheme: https\n",
        "scheme: https\n      tls: {verify: false}\n",
    ));
    assert_eq!(client::get(insecure.addr, "/secure").status, 200);
}

/// Voluntary context switches of the gateway's worker threads so far.
fn worker_wakeups(pid: i32) -> u64 {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let dir = task.unwrap().path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if !comm.starts_with("ringway-w") {
            continue;
        }
        let status = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
        total += status
            .lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
            .map_or(0, |v| v.trim().parse::<u64>().unwrap());
    }
    total
}

/// Log shipping wakes a worker only when something was logged: the line
/// of a request still reaches the access log, and afterwards an idle
/// gateway's workers stay asleep (they used to tick 10 times a second).
#[test]
fn idle_workers_sleep_until_there_is_something_to_log() {
    let echo = Upstream::echo();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let gw = Gateway::start_with(GatewayConfig {
        gateway_extra: format!("access_log: {{path: {:?}}}\n", log.to_str().unwrap()),
        body: format!(
            "services:\n  - name: e\n    upstream:\n      nodes: [{}]\n    routes:\n      - name: echo\n        uris: [\"/echo\"]\n",
            echo.node_yaml()
        ),
        ..GatewayConfig::default()
    });
    let mut c = Conn::connect(gw.addr);
    assert_eq!(c.get("/echo").status, 200);
    drop(c);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("/echo")
    {
        assert!(
            Instant::now() < deadline,
            "the request's line was not shipped"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    let before = worker_wakeups(gw.pid());
    std::thread::sleep(Duration::from_secs(1));
    let woke = worker_wakeups(gw.pid()) - before;
    // Two workers; a pool sweep every 5 s may fall in the window.
    assert!(woke <= 4, "idle workers woke {woke} times in a second");
}

/// Whoever reads the error log may go away (`ringway … 2>&1 | head -1`):
/// a log line that cannot be written is lost, and the process still drains
/// and exits on SIGTERM.
#[test]
fn sigterm_drains_after_the_error_log_reader_is_gone() {
    use std::process::{Command, Stdio};
    let up = Upstream::echo();
    let port = common::redis::free_port();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("ringway.yaml");
    std::fs::write(
        &cfg,
        format!(
            "gateway:\n  listen: [\"127.0.0.1:{port}\"]\n  workers: 1\n  admin: {{enabled: false}}\n  metrics: {{enabled: false}}\n  status: {{enabled: false}}\n{}",
            common::catch_all(&up)
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringway"))
        .args(["-c", cfg.to_str().unwrap(), "--log-level", "debug"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "ringway did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The reader leaves; the next log lines meet a broken pipe.
    drop(child.stderr.take());
    let mut c = Conn::connect(format!("127.0.0.1:{port}").parse().unwrap());
    assert_eq!(c.get("/after-the-reader-left").status, 200);
    drop(c);
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("ringway ignored SIGTERM once its error log's reader was gone");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
}
