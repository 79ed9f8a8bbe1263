//! ai-proxy-multi failure handling end to end with mock-llm: fallback
//! chains on 429 / 5xx / resets / timeouts, the 502 naming every attempt,
//! 503 when nothing is available, Retry-After cooldowns shared by all
//! workers, passive ejection, mid-stream failures ending in an SSE error
//! event, and a client disconnect cancelling the upstream request.
#![allow(clippy::disallowed_types, clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::ai::{ai_config, chat_url, instance, ASK, ASK_STREAM};
use common::{Conn, Gateway};
use mock_llm::{Faults, InstanceConfig, MockServer};
use serde_json::{json, Value};

fn three() -> MockServer {
    MockServer::builder()
        .instance(InstanceConfig::new("a").tokens(4))
        .instance(InstanceConfig::new("b").tokens(4))
        .instance(InstanceConfig::new("c").tokens(4))
        .spawn()
        .unwrap()
}

/// Instances a, b, c with priorities 2, 1, 0 (so the order is fixed).
fn chain(m: &MockServer, extra: Value) -> Gateway {
    let mut instances = Vec::new();
    for (i, n) in ["a", "b", "c"].iter().enumerate() {
        let mut inst = instance(n, 1, &chat_url(m, n), &format!("model-{n}"));
        inst["priority"] = json!(2 - i as i64);
        instances.push(inst);
    }
    let mut plugin = json!({"instances": instances});
    for (k, v) in extra.as_object().unwrap() {
        plugin[k] = v.clone();
    }
    Gateway::start_json(ai_config(&["/v1/chat/completions"], plugin))
}

fn faults(status: u16) -> Faults {
    Faults {
        status: Some(status),
        ..Default::default()
    }
}

#[test]
fn falls_back_through_429_5xx_and_resets() {
    let m = three();
    let gw = chain(&m, json!({"fallback_strategy": ["http_429", "http_5xx"]}));
    m.instance("a").set_faults(faults(429));
    m.instance("b").set_faults(Faults {
        reset_before_response: Some(true),
        ..Default::default()
    });
    let mut c = Conn::connect(gw.addr);
    let r = c.post_json("/v1/chat/completions", ASK);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["model"], "model-c");
    assert_eq!(r.header("x-ringway-attempts"), Some("3"));
    assert_eq!(r.header("x-ringway-instance"), Some("c"));
    // Each instance was tried once.
    assert_eq!(m.instance("a").stats().faults_injected, 1);
    assert_eq!(m.instance("b").stats().faults_injected, 1);
    // 5xx statuses too.
    for s in [500, 502, 503, 504] {
        let m = three();
        let gw = chain(&m, json!({"fallback_strategy": "http_5xx"}));
        m.instance("a").set_faults(faults(s));
        let r = Conn::connect(gw.addr).post_json("/v1/chat/completions", ASK);
        assert_eq!(
            (r.status, r.json()["model"].clone()),
            (200, json!("model-b")),
            "{s}"
        );
    }
}

#[test]
fn without_a_strategy_the_upstream_answer_is_passed_through() {
    let m = three();
    let gw = chain(&m, json!({}));
    m.instance("a").set_faults(Faults {
        status: Some(429),
        retry_after: Some(3),
        ..Default::default()
    });
    let r = Conn::connect(gw.addr).post_json("/v1/chat/completions", ASK);
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("3"));
    assert_eq!(r.json()["error"]["code"], "rate_limit_exceeded");
    assert_eq!(m.instance("b").stats().requests, 0);
}

#[test]
fn timeouts_count_as_5xx() {
    let m = MockServer::builder()
        .instance(InstanceConfig::new("a").ttft(Duration::from_secs(5)))
        .instance(InstanceConfig::new("b"))
        .instance(InstanceConfig::new("c"))
        .spawn()
        .unwrap();
    let gw = chain(
        &m,
        json!({"fallback_strategy": ["http_5xx"], "timeout": 300}),
    );
    let started = Instant::now();
    let r = Conn::connect(gw.addr).post_json("/v1/chat/completions", ASK);
    assert_eq!(r.json()["model"], "model-b");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn all_failing_is_502_naming_every_attempt() {
    let m = three();
    let gw = chain(&m, json!({"fallback_strategy": ["http_429", "http_5xx"]}));
    m.instance("a").set_faults(faults(503));
    m.instance("b").set_faults(faults(429));
    m.instance("c").stop_listening();
    let r = Conn::connect(gw.addr).post_json("/v1/chat/completions", ASK);
    assert_eq!(r.status, 502);
    let j = r.json();
    assert!(j["error_msg"].as_str().unwrap().contains("3"), "{j}");
    let attempts = j["attempts"].as_array().unwrap();
    let names: Vec<&str> = attempts
        .iter()
        .map(|a| a["instance"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a", "b", "c"]);
    assert_eq!(attempts[0]["status"], 503);
    assert_eq!(attempts[1]["status"], 429);
    assert!(attempts[2]["status"].is_null());
    assert!(
        attempts[2]["error"].as_str().unwrap().contains("connect"),
        "{j}"
    );
    // With a retry cap, only that many are tried.
    let gw = chain(
        &m,
        json!({"fallback_strategy": ["http_429", "http_5xx"], "max_retries": 1}),
    );
    let r = Conn::connect(gw.addr).post_json("/v1/chat/completions", ASK);
    assert_eq!(r.json()["attempts"].as_array().unwrap().len(), 2);
}

#[test]
fn retry_after_cools_an_instance_down_on_every_worker() {
    let m = MockServer::builder()
        .instance(InstanceConfig::new("a"))
        .instance(InstanceConfig::new("b"))
        .spawn()
        .unwrap();
    let plugin = json!({
        "fallback_strategy": ["http_429"],
        "instances": [instance("a", 1, &chat_url(&m, "a"), "model-a"), instance("b", 1, &chat_url(&m, "b"), "model-b")],
    });
    let gw = Gateway::start_json(ai_config(&["/v1/chat/completions"], plugin));
    m.instance("a").set_faults(Faults {
        status: Some(429),
        retry_after: Some(2),
        ..Default::default()
    });
    // Until a 429 is seen, a gets its share; after it, nobody sends to a.
    let mut saw_429 = false;
    for _ in 0..4 {
        let r = Conn::connect(gw.addr).post_json("/v1/chat/completions", ASK);
        assert_eq!(r.json()["model"], "model-b");
        saw_429 |= r.header("x-ringway-attempts") == Some("2");
    }
    assert!(saw_429);
    let a_requests = m.instance("a").stats().requests;
    assert_eq!(a_requests, 1, "one 429, then a cools down for every worker");
    m.instance("a").clear_faults();
    for _ in 0..10 {
        Conn::connect(gw.addr).post_json("/v1/chat/completions", ASK);
    }
    assert_eq!(
        m.instance("a").stats().requests,
        a_requests,
        "still cooling down"
    );
    std::thread::sleep(Duration::from_millis(2100));
    for _ in 0..4 {
        Conn::connect(gw.addr).post_json("/v1/chat/completions", ASK);
    }
    assert!(
        m.instance("a").stats().requests > a_requests,
        "back in rotation after Retry-After"
    );
}

#[test]
fn nothing_available_is_503_with_retry_after() {
    let m = MockServer::builder()
        .instance(InstanceConfig::new("a"))
        .spawn()
        .unwrap();
    let plugin = json!({"fallback_strategy": ["http_429"], "instances": [instance("a", 1, &chat_url(&m, "a"), "model-a")]});
    let gw = Gateway::start_json(ai_config(&["/v1/chat/completions"], plugin));
    m.instance("a").set_faults(Faults {
        status: Some(429),
        retry_after: Some(30),
        ..Default::default()
    });
    let mut c = Conn::connect(gw.addr);
    let r = c.post_json("/v1/chat/completions", ASK);
    assert_eq!(
        r.status,
        502,
        "the only instance answered 429: {}",
        r.text()
    );
    let r = c.post_json("/v1/chat/completions", ASK);
    assert_eq!(r.status, 503);
    let secs: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((25..=30).contains(&secs), "{secs}");
    assert!(r.json()["error_msg"]
        .as_str()
        .unwrap()
        .contains("cooling down"));
}

#[test]
fn consecutive_failures_eject_an_instance_passively() {
    let m = MockServer::builder()
        .instance(InstanceConfig::new("a"))
        .instance(InstanceConfig::new("b"))
        .spawn()
        .unwrap();
    let plugin = json!({
        "fallback_strategy": "http_5xx",
        "instances": [instance("a", 1, &chat_url(&m, "a"), "model-a"), instance("b", 1, &chat_url(&m, "b"), "model-b")],
    });
    let gw = Gateway::start_json(ai_config(&["/v1/chat/completions"], plugin));
    m.instance("a").set_faults(faults(500));
    let mut c = Conn::connect(gw.addr);
    for _ in 0..12 {
        assert_eq!(
            c.post_json("/v1/chat/completions", ASK).json()["model"],
            "model-b"
        );
    }
    // Three failures eject a for a second; it is not tried meanwhile.
    assert_eq!(m.instance("a").stats().requests, 3);
}

#[test]
fn upstream_failing_mid_stream_ends_with_an_sse_error_event() {
    let m = MockServer::builder()
        .instance(
            InstanceConfig::new("a")
                .tokens(10)
                .itl(Duration::from_millis(5)),
        )
        .spawn()
        .unwrap();
    let plugin = json!({"instances": [instance("a", 1, &chat_url(&m, "a"), "model-a")]});
    let gw = Gateway::start_json(ai_config(&["/v1/chat/completions"], plugin));
    m.instance("a").set_faults(Faults {
        reset_after_chunks: Some(3),
        ..Default::default()
    });
    let mut c = Conn::connect(gw.addr);
    let r = c.post_json("/v1/chat/completions", ASK_STREAM);
    assert_eq!(r.status, 200);
    assert!(r.chunked, "the stream ends with a proper last chunk");
    let text = r.text();
    let last = text.trim_end().rsplit("\n\n").next().unwrap();
    let err: Value = serde_json::from_str(last.strip_prefix("data: ").unwrap()).unwrap();
    assert!(err["error"]["message"].is_string(), "{text}");
    assert!(!text.contains("[DONE]"));
    assert_eq!(
        text.matches("\"content\":\"").count(),
        4,
        "role chunk + 3 tokens, then the error: {text}"
    );
    // The framing stayed intact, so the same connection serves the next
    // request.
    m.instance("a").clear_faults();
    let r = c.post_json("/v1/chat/completions", ASK_STREAM);
    assert_eq!(r.status, 200);
    assert!(r.text().contains("[DONE]"));
}

/// `max_stream_duration_ms` and `max_response_bytes` against an upstream
/// that would stream for 20 s: each cuts the stream short with an SSE error
/// event naming the limit (APISIX just closes the connection); a JSON
/// answer past `max_response_bytes` is a 502 before any byte reaches the
/// client, or the next instance's answer with an http_5xx fallback.
#[test]
fn runaway_answers_are_cut_at_max_stream_duration_ms_and_max_response_bytes() {
    // `slow` streams 2,000 tokens 10 ms apart, `big` at once.
    let m = MockServer::builder()
        .instance(
            InstanceConfig::new("slow")
                .tokens(2000)
                .itl(Duration::from_millis(10)),
        )
        .instance(InstanceConfig::new("big").tokens(2000))
        .instance(InstanceConfig::new("b").tokens(4))
        .spawn()
        .unwrap();
    let inst = |n: &str| instance(n, 1, &chat_url(&m, n), "model");
    let start = |name: &str, extra: Value| {
        let mut plugin = json!({"instances": [inst(name)]});
        for (k, v) in extra.as_object().unwrap() {
            plugin[k] = v.clone();
        }
        Gateway::start_json(ai_config(&["/v1/chat/completions"], plugin))
    };
    let cut_stream = |gw: &Gateway, limit: &str| -> String {
        let t = Instant::now();
        let mut c = Conn::connect(gw.addr);
        let r = c.post_json("/v1/chat/completions", ASK_STREAM);
        assert_eq!(r.status, 200);
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "not cut: {:?}",
            t.elapsed()
        );
        assert!(r.chunked, "ended with a proper last chunk");
        let text = r.text();
        let last = text.trim_end().rsplit("\n\n").next().unwrap();
        let err: Value = serde_json::from_str(last.strip_prefix("data: ").unwrap()).unwrap();
        assert!(
            err["error"]["message"].as_str().unwrap().contains(limit),
            "{last}"
        );
        assert!(!text.contains("[DONE]"));
        assert!(
            gw.wait_for_log(
                &format!("aborting AI stream: {limit} exceeded"),
                Duration::from_secs(5)
            ),
            "{}",
            gw.stderr()
        );
        // The connection is still good for the next request.
        let short = r#"{"max_tokens":2,"messages":[{"role":"user","content":"hi"}]}"#;
        let r = c.post_json("/v1/chat/completions", short);
        assert_eq!(r.status, 200, "{}", r.text());
        text
    };

    let gw = start("slow", json!({"max_stream_duration_ms": 300}));
    let text = cut_stream(&gw, "max_stream_duration_ms");
    let tokens = text.matches("\"content\":\"").count();
    assert!(
        (5..=100).contains(&tokens),
        "~30 tokens in 300 ms: {tokens}"
    );

    // Also when the upstream goes quiet instead (no read to notice it).
    m.instance("slow").set_faults(Faults {
        stall_ms: Some(10_000),
        stall_after_chunks: Some(2),
        ..Default::default()
    });
    let text = cut_stream(&gw, "max_stream_duration_ms");
    assert!(text.matches("\"content\":\"").count() <= 3, "{text}");
    m.instance("slow").clear_faults();

    let gw = start("big", json!({"max_response_bytes": 4096}));
    let text = cut_stream(&gw, "max_response_bytes");
    assert!(text.len() < 4096 + 512, "{} bytes relayed", text.len());

    // A limit smaller than what came with the response head: nothing of
    // the answer is relayed, only the error.
    let gw = start("big", json!({"max_response_bytes": 10}));
    let r = Conn::connect(gw.addr).post_json("/v1/chat/completions", ASK_STREAM);
    let text = r.text();
    assert!(r.chunked && text.contains("max_response_bytes"), "{text}");
    assert_eq!(text.matches("\"content\":\"").count(), 0, "{text}");

    // A JSON answer of 2,000 tokens is well past 1,024 bytes.
    let plugin = json!({"instances": [inst("big")], "max_response_bytes": 1024});
    let mut doc = ai_config(&["/v1/chat/completions"], plugin);
    doc["gateway"] = json!({"metrics": {"listen": "127.0.0.1:0"}});
    let gw = Gateway::start_json(doc);
    let r = Conn::connect(gw.addr).post_json("/v1/chat/completions", ASK);
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(r.text().contains("max_response_bytes"), "{}", r.text());
    assert!(gw.wait_for_log("aborting AI response", Duration::from_secs(5)));
    // Counted for operators, with the stream this gateway cuts next.
    let r = Conn::connect(gw.addr).post_json("/v1/chat/completions", ASK_STREAM);
    assert!(r.text().contains("max_response_bytes"));
    let metrics = Conn::connect(gw.metrics_addr.unwrap())
        .get("/metrics")
        .text();
    assert!(
        metrics.contains("ringway_ai_responses_cut_total 2"),
        "{metrics}"
    );
    // The same for a chunked answer, counted as it is read.
    let chunked = common::Upstream::start(|_, s| {
        let _ = s.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
        );
        for _ in 0..10 {
            let piece = "x".repeat(500);
            let _ = write!(s, "{:x}\r\n{piece}\r\n", piece.len());
        }
        let _ = s.write_all(b"0\r\n\r\n");
        true
    });
    let url = format!("http://{}/v1/chat/completions", chunked.addr);
    let plugin =
        json!({"instances": [instance("chunked", 1, &url, "model")], "max_response_bytes": 1024});
    let gw = Gateway::start_json(ai_config(&["/v1/chat/completions"], plugin));
    let r = Conn::connect(gw.addr).post_json("/v1/chat/completions", ASK);
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(r.text().contains("max_response_bytes"), "{}", r.text());
    // Nothing was sent yet, so an http_5xx fallback takes the next instance.
    let mut plugin = json!({"instances": [inst("big"), inst("b")],
                            "max_response_bytes": 1024, "fallback_strategy": ["http_5xx"]});
    plugin["instances"][0]["priority"] = json!(1);
    let gw = Gateway::start_json(ai_config(&["/v1/chat/completions"], plugin));
    let r = Conn::connect(gw.addr).post_json("/v1/chat/completions", ASK);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-ringway-instance"), Some("b"));

    for (field, v) in [("max_stream_duration_ms", 0), ("max_response_bytes", -1)] {
        let mut bad = ai_config(&["/v1/chat/completions"], json!({"instances": [inst("b")]}));
        bad["services"][0]["routes"][0]["plugins"]["ai-proxy-multi"][field] = json!(v);
        common::assert_refused(&bad, "ai-proxy-multi", field);
    }
}

#[test]
fn client_disconnect_cancels_the_llm_request() {
    let m = MockServer::builder()
        .instance(
            InstanceConfig::new("a")
                .tokens(100)
                .itl(Duration::from_millis(50)),
        )
        .spawn()
        .unwrap();
    let plugin = json!({"instances": [instance("a", 1, &chat_url(&m, "a"), "model-a")]});
    let gw = Gateway::start_json(ai_config(&["/v1/chat/completions"], plugin));
    let a = m.instance("a");
    // Mid-stream.
    let mut c = Conn::connect(gw.addr);
    c.send(format!("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{ASK_STREAM}", ASK_STREAM.len()).as_bytes());
    assert_eq!(c.read_head().0, 200);
    assert!(c.read_chunk().is_some());
    assert_eq!(a.stats().open_streams, 1);
    drop(c);
    let t = Instant::now();
    while a.stats().open_streams != 0 && t.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        a.stats().open_streams,
        0,
        "the upstream stream must be cancelled"
    );
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    // While waiting for the first token.
    a.set_faults(Faults {
        ttft_ms: Some(5000),
        ..Default::default()
    });
    let mut c = Conn::connect(gw.addr);
    c.send(format!("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{ASK_STREAM}", ASK_STREAM.len()).as_bytes());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(a.stats().open_streams, 1);
    drop(c);
    let t = Instant::now();
    while a.stats().open_streams != 0 && t.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(a.stats().open_streams, 0);
}

#[test]
fn bad_requests_get_clear_400s_and_the_connection_survives() {
    let m = MockServer::builder()
        .instance(InstanceConfig::new("a"))
        .spawn()
        .unwrap();
    let plugin = json!({"instances": [instance("a", 1, &chat_url(&m, "a"), "model-a")]});
    let mut doc = ai_config(&["/v1/chat/completions"], plugin);
    doc["gateway"] = json!({"limits": {"max_body_bytes": 2000}});
    let gw = Gateway::start_json(doc);
    let mut c = Conn::connect(gw.addr);
    c.send(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi");
    let r = c.read_response();
    assert_eq!(r.status, 400);
    assert!(r.json()["error_msg"]
        .as_str()
        .unwrap()
        .contains("Content-Type"));
    c.send(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 0\r\n\r\n");
    let r = c.read_response();
    assert_eq!(r.status, 400);
    assert!(r.json()["error_msg"].as_str().unwrap().contains("empty"));
    let r = c.post_json("/v1/chat/completions", "{\"messages\": [");
    assert_eq!(r.status, 400);
    assert!(r.json()["error_msg"].as_str().unwrap().contains("JSON"));
    let r = c.post_json("/v1/chat/completions", "[1,2]");
    assert_eq!(r.status, 400);
    // JSON is UTF-8: a body that is not is refused, not passed on.
    let latin1 = b"{\"messages\":[{\"role\":\"user\",\"content\":\"caf\xe9\"}]}";
    c.send(format!("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", latin1.len()).as_bytes());
    c.send(latin1);
    let r = c.read_response();
    assert_eq!(r.status, 400);
    assert!(
        r.json()["error_msg"].as_str().unwrap().contains("UTF-8"),
        "{}",
        r.text()
    );
    assert_eq!(c.post_json("/v1/chat/completions", ASK).status, 200);
    let big = format!(
        "{{\"messages\":[{{\"role\":\"user\",\"content\":\"{}\"}}]}}",
        "x".repeat(3000)
    );
    assert_eq!(c.post_json("/v1/chat/completions", &big).status, 413);
    assert_eq!(
        m.instance("a").stats().requests,
        1,
        "nothing invalid reached the provider"
    );

    // A route's own limit (`max_req_body_size`), above or below the
    // gateway's.
    for (limit, size, status) in [(200, 300, 413), (10_000, 3000, 200), (10_000, 12_000, 413)] {
        let mut plugin = json!({"instances": [instance("a", 1, &chat_url(&m, "a"), "model-a")]});
        plugin["max_req_body_size"] = json!(limit);
        let mut doc = ai_config(&["/v1/chat/completions"], plugin);
        doc["gateway"] = json!({"limits": {"max_body_bytes": 2000}});
        let gw = Gateway::start_json(doc);
        let body = format!(
            "{{\"messages\":[{{\"role\":\"user\",\"content\":\"{}\"}}]}}",
            "x".repeat(size)
        );
        let r = Conn::connect(gw.addr).post_json("/v1/chat/completions", &body);
        assert_eq!(r.status, status, "limit {limit}, body {size}: {}", r.text());
        if status == 413 {
            assert!(r.json()["error_msg"].is_string(), "{}", r.text());
        }
    }
    let mut bad = ai_config(
        &["/v1/chat/completions"],
        json!({"instances": [instance("a", 1, &chat_url(&m, "a"), "model-a")], "max_req_body_size": 0}),
    );
    bad["gateway"] = json!({});
    common::assert_refused(&bad, "ai-proxy-multi", "max_req_body_size");
}
