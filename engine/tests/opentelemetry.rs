//! `opentelemetry` through the real binary, exporting to a real OTLP/HTTP
//! receiver that decodes with the official protobufs (common::otlp): span
//! names and kinds, the caller's trace continued, one client span per
//! attempt under ringway's server span (a fallback gives two), GenAI
//! attributes with mock-llm's token counts, a stream's time to first
//! token, `traceparent` to the provider naming the attempt's span, the
//! samplers (always_off exports nothing; trace_id_ratio decides by trace
//! id), `traceparent` passed on untraced, invalid ones ignored, and a
//! collector that is down failing no request (its spans counted).
#![allow(clippy::disallowed_types, clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::ai::{chat_url, instance, mocks, Faults, ASK, ASK_STREAM};
use common::otlp::Receiver;
use common::{Conn, Gateway, Upstream};
use serde_json::{json, Value};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

fn traceparent(trace: &str, flags: &str) -> String {
    format!("00-{trace}-{CALLER_SPAN}-{flags}")
}

/// Routes `/v1/chat/completions` (instances `a` priority 1 then `b`,
/// falling back on 5xx) and `/plain` (to `up`), with `otel` on both;
/// the exporter sends to `collector` quickly.
fn config(m: &mock_llm::MockServer, up: &Upstream, otel: Value, collector: &str) -> Value {
    let mut a = instance("a", 1, &chat_url(m, "a"), "gpt-4");
    a["priority"] = json!(1);
    let b = instance("b", 1, &chat_url(m, "b"), "gpt-4o");
    json!({
        "plugin_metadata": {"opentelemetry": {
            "collector": {"address": collector, "request_headers": {"Authorization": "Bearer otel-secret"}},
            "resource": {"deployment.environment": "test"},
            "batch_span_processor": {"inactive_timeout": 0.05, "batch_timeout": 0.1},
        }},
        "gateway": {"metrics": {"listen": "127.0.0.1:0"}},
        "services": [
            {"name": "ai", "routes": [{"name": "chat", "uris": ["/v1/chat/completions"], "methods": ["POST"],
                "plugins": {"opentelemetry": otel.clone(), "ai-proxy-multi": {"instances": [a, b], "fallback_strategy": ["http_5xx"]}}}]},
            {"name": "plain", "upstream": {"nodes": [{"host": "127.0.0.1", "port": up.addr.port(), "weight": 1}]},
             "routes": [{"name": "plain", "uris": ["/plain"], "plugins": {"opentelemetry": otel}}]},
        ],
    })
}

fn on() -> Value {
    json!({"sampler": {"name": "always_on"}, "additional_attributes": ["request_type"],
           "additional_header_prefix_attributes": ["x-tenant*"]})
}

fn header(req: &mock_llm::RecordedRequest, name: &str) -> Option<String> {
    req.headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.clone())
}

fn attr<'a>(span: &'a Value, key: &str) -> &'a Value {
    &span["attributes"][key]
}

#[test]
fn a_fallback_is_two_attempt_spans_under_the_callers_trace() {
    let m = mocks(&["a", "b"]);
    m.instance("a").set_faults(Faults {
        status: Some(500),
        ..Default::default()
    });
    let up = Upstream::echo();
    let rx = Receiver::start();
    let gw = Gateway::start_json(config(&m, &up, on(), &format!("127.0.0.1:{}", rx.port)));
    let tp = traceparent(TRACE, "01");
    let r = Conn::connect(gw.addr).post_json_with(
        "/v1/chat/completions",
        ASK,
        &[
            ("traceparent", tp.as_str()),
            ("tracestate", "vendor=1"),
            ("X-Tenant-Id", "t1"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let spans = rx.trace(TRACE, 3);
    assert_eq!(spans.len(), 3, "{spans:?}\n{}", gw.stderr());
    let server = spans
        .iter()
        .find(|s| s["kind"] == 2)
        .expect("a server span");
    assert_eq!(server["name"], "POST chat");
    assert_eq!(server["parent_span_id"], CALLER_SPAN);
    assert_eq!(server["trace_state"], "vendor=1");
    assert_eq!(server["scope"], "ringway");
    assert_eq!(server["resource"]["deployment.environment"], "test");
    assert_eq!(server["resource"]["service.name"], "ringway");
    assert_eq!(attr(server, "http.method"), "POST");
    assert_eq!(attr(server, "http.target"), "/v1/chat/completions");
    assert_eq!(attr(server, "apisix.route_name"), "chat");
    assert_eq!(attr(server, "http.status_code"), 200);
    assert_eq!(attr(server, "request_type"), "ai_chat");
    assert_eq!(attr(server, "x-tenant-id"), "t1");
    // GenAI: what was asked and answered, mock-llm's own token counts.
    let b = m.instance("b").stats();
    assert!(
        attr(server, "gen_ai.request.model").is_null(),
        "the client named no model"
    );
    assert_eq!(attr(server, "gen_ai.response.model"), "gpt-4o");
    assert_eq!(attr(server, "gen_ai.usage.input_tokens"), b.prompt_tokens);
    assert_eq!(
        attr(server, "gen_ai.usage.output_tokens"),
        b.completion_tokens
    );
    assert_eq!(attr(server, "gen_ai.provider.name"), "openai-compatible");
    assert_eq!(attr(server, "ringway.llm.instance"), "b");
    assert_eq!(attr(server, "ringway.llm.attempts"), 2);
    let sid = server["span_id"].as_str().unwrap();
    let mut attempts: Vec<&Value> = spans.iter().filter(|s| s["kind"] == 3).collect();
    attempts.sort_by_key(|s| s["start"].as_u64());
    assert_eq!(attempts.len(), 2);
    for a in &attempts {
        assert_eq!(a["parent_span_id"], sid);
        assert_eq!(a["flags"].as_u64().unwrap() & 0xff, 1);
    }
    let (fell, answered) = (attempts[0], attempts[1]);
    assert_eq!(fell["name"], "chat gpt-4");
    assert_eq!(attr(fell, "ringway.llm.instance"), "a");
    assert_eq!(attr(fell, "http.response.status_code"), 500);
    assert_eq!(attr(fell, "error.type"), "500");
    assert_eq!(fell["status"]["code"], 2, "error");
    assert!(fell["end"].as_u64() <= answered["start"].as_u64());
    assert_eq!(answered["name"], "chat gpt-4o");
    assert_eq!(
        attr(answered, "gen_ai.usage.output_tokens"),
        b.completion_tokens
    );
    assert_eq!(answered["status"]["code"], 0);
    // Each provider saw its own attempt's span as the parent.
    for (inst, span) in [("a", fell), ("b", answered)] {
        let req = m.instance(inst).requests().last().unwrap().clone();
        let want = format!("00-{TRACE}-{}-01", span["span_id"].as_str().unwrap());
        assert_eq!(header(&req, "traceparent"), Some(want), "{inst}");
        assert_eq!(header(&req, "tracestate").as_deref(), Some("vendor=1"));
    }
    // The collector got the configured header; no log shows it.
    let sent = rx
        .lines()
        .into_iter()
        .find_map(|l| l.get("request").cloned())
        .unwrap();
    assert_eq!(sent["headers"]["authorization"], "Bearer otel-secret");
    assert_eq!(sent["headers"]["content-type"], "application/x-protobuf");
    assert_eq!(sent["path"], "/v1/traces");
    assert!(!gw.stderr().contains("otel-secret"));
}

#[test]
fn a_stream_has_its_time_to_first_token_and_a_plain_route_its_span() {
    let m = mocks(&["a", "b"]);
    let up = Upstream::echo();
    let rx = Receiver::start();
    let gw = Gateway::start_json(config(&m, &up, on(), &format!("127.0.0.1:{}", rx.port)));
    let tp = traceparent(TRACE, "01");
    let r = Conn::connect(gw.addr).post_json_with(
        "/v1/chat/completions",
        ASK_STREAM,
        &[("traceparent", tp.as_str())],
    );
    assert_eq!(r.status, 200);
    let spans = rx.trace(TRACE, 2);
    let server = spans.iter().find(|s| s["kind"] == 2).unwrap();
    assert_eq!(attr(server, "request_type"), "ai_stream");
    assert!(
        attr(server, "gen_ai.server.time_to_first_token")
            .as_f64()
            .unwrap()
            > 0.0
    );
    let attempt = spans.iter().find(|s| s["kind"] == 3).unwrap();
    assert_eq!(attempt["events"][0]["name"], "gen_ai.first_token");
    let first = attempt["events"][0]["time"].as_u64().unwrap();
    assert!(
        attempt["start"].as_u64().unwrap() < first && first <= attempt["end"].as_u64().unwrap()
    );
    // A plain upstream gets ringway's server span as the parent.
    let other = "0af7651916cd43dd8448eb211c80319c";
    let mut c = Conn::connect(gw.addr);
    c.send(
        format!(
            "GET /plain HTTP/1.1\r\nHost: x\r\ntraceparent: {}\r\n\r\n",
            traceparent(other, "01")
        )
        .as_bytes(),
    );
    assert_eq!(c.read_response().status, 200);
    let spans = rx.trace(other, 1);
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0]["name"], "GET plain");
    let seen = up.requests().last().unwrap().clone();
    let tps: Vec<_> = seen
        .headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("traceparent"))
        .collect();
    assert_eq!(tps.len(), 1, "the client's is replaced");
    assert_eq!(
        tps[0].1,
        format!("00-{other}-{}-01", spans[0]["span_id"].as_str().unwrap())
    );
}

/// Trace ids whose last 8 bytes fall in the lower or upper half.
fn low(i: u8) -> String {
    format!("{:02x}{}0000000000000{:03x}", i, "1".repeat(14), i)
}
fn high(i: u8) -> String {
    format!("{:02x}{}f000000000000{:03x}", i, "1".repeat(14), i)
}

#[test]
fn samplers_decide_what_is_exported_and_the_flag_sent_on() {
    let m = mocks(&["a", "b"]);
    let up = Upstream::echo();
    let rx = Receiver::start();
    let collector = format!("127.0.0.1:{}", rx.port);
    let ratio = |f: f64| json!({"sampler": {"name": "trace_id_ratio", "options": {"fraction": f}}});
    let mut doc = config(&m, &up, ratio(0.5), &collector);
    let routes = doc["services"][1]["routes"].as_array_mut().unwrap();
    for (name, otel) in [
        ("off", json!({})),
        ("none", ratio(0.0)),
        ("all", ratio(1.0)),
    ] {
        routes.push(
            json!({"name": name, "uris": [format!("/{name}")], "plugins": {"opentelemetry": otel}}),
        );
    }
    let gw = Gateway::start_json(doc);
    let mut c = Conn::connect(gw.addr);
    let mut get = |path: &str, trace: &str, flags: &str| {
        c.send(
            format!(
                "GET {path} HTTP/1.1\r\nHost: x\r\ntraceparent: {}\r\n\r\n",
                traceparent(trace, flags)
            )
            .as_bytes(),
        );
        assert_eq!(c.read_response().status, 200);
        up.requests()
            .last()
            .unwrap()
            .header("traceparent")
            .unwrap()
            .to_owned()
    };
    // 0.5 by the trace id, whatever the caller's flag says.
    for i in 1..=10 {
        assert!(get("/plain", &low(i), "00").ends_with("-01"));
        assert!(get("/plain", &high(i), "01").ends_with("-00"));
    }
    for i in 11..=15 {
        // always_off (the default) and 0 sample nothing; 1 everything.
        assert!(get("/off", &low(i), "01").ends_with("-00"));
        assert!(get("/none", &low(i + 10), "01").ends_with("-00"));
        assert!(get("/all", &high(i), "00").ends_with("-01"));
    }
    // The last sampled trace's span arrived: everything before it was
    // handed to the exporter first (one worker's queue, in order).
    let last = high(15);
    assert_eq!(rx.trace(&last, 1).len(), 1);
    let mut got: Vec<String> = rx
        .spans()
        .iter()
        .map(|s| s["trace_id"].as_str().unwrap().to_owned())
        .collect();
    got.sort();
    let mut want: Vec<String> = (1..=10).map(low).chain((11..=15).map(high)).collect();
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn untraced_requests_pass_valid_traceparents_on_and_drop_invalid_ones() {
    let m = mocks(&["a", "b"]);
    let up = Upstream::echo();
    let rx = Receiver::start();
    let mut doc = config(&m, &up, on(), &format!("127.0.0.1:{}", rx.port));
    // The chat route untraced.
    doc["services"][0]["routes"][0]["plugins"]
        .as_object_mut()
        .unwrap()
        .remove("opentelemetry");
    let gw = Gateway::start_json(doc);
    let mut c = Conn::connect(gw.addr);
    let tp = traceparent(TRACE, "01");
    let r = c.post_json_with(
        "/v1/chat/completions",
        ASK,
        &[("traceparent", tp.as_str()), ("tracestate", "k=v")],
    );
    assert_eq!(r.status, 200);
    let req = m.instance("a").requests().last().unwrap().clone();
    assert_eq!(header(&req, "traceparent"), Some(tp));
    assert_eq!(header(&req, "tracestate").as_deref(), Some("k=v"));
    for bad in [
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "00-0000-00-01",
        "junk",
    ] {
        let r = c.post_json_with(
            "/v1/chat/completions",
            ASK,
            &[("traceparent", bad), ("tracestate", "k=v")],
        );
        assert_eq!(r.status, 200);
        let req = m.instance("a").requests().last().unwrap().clone();
        assert_eq!(header(&req, "traceparent"), None, "{bad}");
        assert_eq!(header(&req, "tracestate"), None, "{bad}");
    }
    // Traced, an invalid one starts a new trace.
    c.send(b"GET /plain HTTP/1.1\r\nHost: x\r\ntraceparent: 00-zz-00f067aa0ba902b7-01\r\n\r\n");
    assert_eq!(c.read_response().status, 200);
    let sent = up
        .requests()
        .last()
        .unwrap()
        .header("traceparent")
        .unwrap()
        .to_owned();
    let t: Vec<&str> = sent.split('-').collect();
    assert_eq!(
        (t.len(), t[0], t[1].len(), t[3]),
        (4, "00", 32, "01"),
        "{sent}"
    );
    let spans = rx.trace(t[1], 1);
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0]["parent_span_id"], "");
}

/// A metric's value on the metrics port, once it is at least `want` (or
/// what it is after 20 s).
fn metric(gw: &Gateway, name: &str, want: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = Conn::connect(gw.metrics_addr.unwrap())
            .get("/metrics")
            .text();
        let v = text
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name}"))
            .parse()
            .unwrap();
        if v >= want || Instant::now() > deadline {
            return v;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_collector_that_is_down_fails_no_request() {
    let m = mocks(&["a", "b"]);
    let up = Upstream::echo();
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut doc = config(&m, &up, on(), &closed.to_string());
    doc["plugin_metadata"]["opentelemetry"]["batch_span_processor"]["max_queue_size"] = json!(4);
    doc["plugin_metadata"]["opentelemetry"]["batch_span_processor"]["max_export_batch_size"] =
        json!(1);
    let gw = Gateway::start_json(doc);
    let mut c = Conn::connect(gw.addr);
    for _ in 0..40 {
        assert_eq!(c.post_json("/v1/chat/completions", ASK).status, 200);
    }
    // Exports fail (after retries) and, the backlog full meanwhile, the
    // rest is dropped: both counted, no request touched.
    assert!(
        metric(&gw, "ringway_trace_spans_failed_total", 1) >= 1,
        "{}",
        gw.stderr()
    );
    assert!(metric(&gw, "ringway_trace_spans_dropped_total", 1) >= 1);
    assert_eq!(metric(&gw, "ringway_trace_spans_exported_total", 0), 0);
    assert!(!gw.stderr().contains("otel-secret"));
}
