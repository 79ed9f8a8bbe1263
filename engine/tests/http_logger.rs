//! `http-logger`: batches of entries POSTed to a real HTTP(S) server (the
//! scripted test upstream records them), as a JSON array or one per line,
//! with the `Authorization` header; certificates verified by default
//! against `gateway.ssl_trusted_certificate`; a failing endpoint never
//! touches requests and is counted; bad settings are refused with the
//! field named; `log_format` per logger; response and request bodies
//! under conditions; global rules. The loggers' `plugin_metadata`:
//! `logger_metadata.rs`.
#![allow(clippy::disallowed_types, clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::ai::{ai_config, chat_url, instance, mocks, ASK, ASK_STREAM};
use common::loggers::{answering, ask, logged_route, posts};
use common::{assert_refused, logger_metric, Conn, Gateway, Upstream};
use serde_json::{json, Value};

#[test]
fn batches_are_posted_as_json_arrays_with_the_auth_header() {
    let m = mocks(&["a"]);
    let up = answering(200);
    let gw = Gateway::start_json(logged_route(
        &m,
        json!({"uri": format!("http://{}/logs?src=ringway", up.addr),
               "auth_header": "Bearer log-token", "batch_max_size": 2, "inactive_timeout": 1}),
    ));
    ask(&gw, 3);
    let got = posts(&up, 2);
    assert_eq!(got.len(), 2, "{}", gw.stderr());
    let mut sizes = Vec::new();
    for p in &got {
        assert_eq!(p.method, "POST");
        assert_eq!(p.target, "/logs?src=ringway");
        assert_eq!(p.header("authorization"), Some("Bearer log-token"));
        assert_eq!(p.header("content-type"), Some("application/json"));
        let entries: Vec<Value> = serde_json::from_slice(&p.body).unwrap();
        sizes.push(entries.len());
        for e in entries {
            assert_eq!(e["response"]["status"], 200);
            assert_eq!(e["llm_summary"]["model"], "gpt-4");
            assert_eq!(e["llm_summary"]["completion_tokens"], 4);
        }
    }
    sizes.sort();
    assert_eq!(sizes, [1, 2]);
}

#[test]
fn new_line_bodies_over_https_verified_against_the_trusted_ca() {
    let m = mocks(&["a"]);
    let pki = common::certs::pki();
    let up = Upstream::start_tls(pki.server_config(), |_, s| {
        let _ = write!(s, "HTTP/1.1 204 No Content\r\n\r\n");
        true
    });
    let dir = tempfile::tempdir().unwrap();
    let (ca, _, _) = pki.write(dir.path());
    let logger = json!({"uri": format!("https://localhost:{}/", up.addr.port()),
                        "concat_method": "new_line", "batch_max_size": 2});
    let mut doc = logged_route(&m, logger.clone());
    doc["gateway"]["ssl_trusted_certificate"] = json!(ca.to_str().unwrap());
    let gw = Gateway::start_json(doc);
    ask(&gw, 2);
    let got = posts(&up, 1);
    assert_eq!(got.len(), 1, "{}", gw.stderr());
    assert_eq!(got[0].header("content-type"), Some("text/plain"));
    let body = String::from_utf8(got[0].body.clone()).unwrap();
    let lines: Vec<Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{body}");

    // Without the CA the certificate is refused (ssl_verify defaults to
    // true): nothing is posted, requests are not touched.
    let before = up.requests().len();
    let gw = Gateway::start_json(logged_route(&m, logger));
    ask(&gw, 2);
    assert!(
        gw.wait_for_log("log entries dropped", Duration::from_secs(15)),
        "{}",
        gw.stderr()
    );
    assert_eq!(up.requests().len(), before);
}

#[test]
fn a_failing_endpoint_never_touches_requests_and_is_counted() {
    let m = mocks(&["a"]);
    let up = answering(500);
    let gw = Gateway::start_json(logged_route(
        &m,
        json!({"uri": format!("http://{}/", up.addr), "batch_max_size": 1,
               "max_retry_count": 1, "retry_delay": 0}),
    ));
    ask(&gw, 3);
    assert!(
        gw.wait_for_log("answered 500", Duration::from_secs(15)),
        "{}",
        gw.stderr()
    );
    // Each entry: the first try and one retry.
    let got = posts(&up, 6);
    assert_eq!(got.len(), 6);
    assert_eq!(
        logger_metric(&gw, "http logger (route/ai-route)", "failed", 3),
        3
    );
}

#[test]
fn bad_settings_are_refused_with_the_field() {
    let m = mocks(&["a"]);
    for (logger, field) in [
        (json!({}), "uri"),
        (json!({"uri": "ftp://x/"}), "uri"),
        (
            json!({"uri": "http://x/", "concat_method": "csv"}),
            "concat_method",
        ),
        (json!({"uri": "http://x/", "timeout": 0}), "timeout"),
        (
            json!({"uri": "http://x/", "log_format": {"a": 1}}),
            "log_format.a",
        ),
        (
            json!({"uri": "http://x/", "inactive_timeout": 0}),
            "inactive_timeout",
        ),
    ] {
        assert_refused(&logged_route(&m, logger), "http-logger", field);
    }
}

#[test]
fn an_endpoint_that_never_answers_times_out() {
    let m = mocks(&["a"]);
    // Accepts connections and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in silent.incoming() {
            held.push(s);
        }
    });
    let gw = Gateway::start_json(logged_route(
        &m,
        json!({"uri": format!("http://{addr}/"), "batch_max_size": 1, "timeout": 3}),
    ));
    // Requests that waited for the logger would take 3 s each.
    let t = Instant::now();
    ask(&gw, 3);
    assert!(
        t.elapsed() < Duration::from_secs(6),
        "requests waited for the logger"
    );
    assert!(
        gw.wait_for_log("log entries dropped", Duration::from_secs(10)),
        "{}",
        gw.stderr()
    );
    let err = gw.stderr();
    assert!(err.to_lowercase().contains("time"), "{err}");
}

#[test]
fn a_global_rule_logger_logs_every_request_matched_or_not() {
    let m = mocks(&["a"]);
    let up = answering(200);
    let mut doc = ai_config(
        &["/v1/chat/completions"],
        json!({"instances": [instance("a", 1, &chat_url(&m, "a"), "gpt-4")]}),
    );
    doc["global_rules"] =
        json!({"http-logger": {"uri": format!("http://{}/", up.addr), "batch_max_size": 2}});
    let gw = Gateway::start_json(doc);
    ask(&gw, 1);
    let r = Conn::connect(gw.addr).post_json("/nowhere", ASK);
    assert_eq!(r.status, 404);
    let got = posts(&up, 1);
    assert_eq!(got.len(), 1, "{}", gw.stderr());
    let entries: Vec<Value> = serde_json::from_slice(&got[0].body).unwrap();
    // The two requests may be served by different workers, whose entries
    // reach the logger in either order.
    let mut statuses: Vec<_> = entries
        .iter()
        .map(|e| e["response"]["status"].as_u64().unwrap())
        .collect();
    statuses.sort();
    assert_eq!(statuses, [200, 404]);
    let missed = entries
        .iter()
        .find(|e| e["response"]["status"] == 404)
        .unwrap();
    assert_eq!(missed["request"]["uri"], "/nowhere");
}

/// Batches share one connection while the endpoint keeps it open; an
/// endpoint that closes it after each answer (without saying so) costs a
/// reconnect per batch, never an entry.
#[test]
fn batches_reuse_the_connection_and_survive_an_endpoint_that_closes_it() {
    let m = mocks(&["a"]);
    let keeps = answering(200);
    let closes = Upstream::start(|_, s| {
        let _ = write!(s, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        false
    });
    for (up, connections) in [(&keeps, 1), (&closes, 3)] {
        let gw = Gateway::start_json(logged_route(
            &m,
            json!({"uri": format!("http://{}/", up.addr), "batch_max_size": 1}),
        ));
        for n in 1..=3 {
            ask(&gw, 1);
            assert_eq!(posts(up, n).len(), n, "{}", gw.stderr());
        }
        assert_eq!(up.connections(), connections);
        assert_eq!(
            logger_metric(&gw, "http logger (route/ai-route)", "sent", 3),
            3
        );
    }
}

/// `log_format`: entries of the chosen fields (variables, literals; an
/// unset variable's field left out), plus `route_id` and the route's
/// `logging` fields, instead of the full log.
#[test]
fn log_format_entries_carry_the_chosen_fields() {
    let m = mocks(&["a"]);
    let up = answering(200);
    let gw = Gateway::start_json(logged_route(
        &m,
        json!({"uri": format!("http://{}/", up.addr), "batch_max_size": 1,
               "log_format": {"host": "$host", "client_ip": "$remote_addr", "@timestamp": "$time_iso8601",
                              "status": "$status", "model": "$llm_model", "tokens": "$llm_completion_tokens",
                              "trace": "$http_x_trace", "absent": "$http_x_absent", "env": "prod"}}),
    ));
    let mut c = Conn::connect(gw.addr);
    c.send(format!("POST /v1/chat/completions HTTP/1.1\r\nHost: gw.test\r\nX-Trace: t-1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{ASK}", ASK.len()).as_bytes());
    assert_eq!(c.read_response().status, 200);
    let got = posts(&up, 1);
    assert_eq!(got.len(), 1, "{}", gw.stderr());
    let entries: Vec<Value> = serde_json::from_slice(&got[0].body).unwrap();
    let mut e = entries[0].clone();
    let stamp = e.as_object_mut().unwrap().remove("@timestamp").unwrap();
    assert!(stamp.as_str().unwrap().ends_with("+00:00"), "{stamp}");
    assert_eq!(
        e,
        json!({"host": "gw.test", "client_ip": "127.0.0.1", "status": "200", "model": "gpt-4",
               "tokens": 4, "trace": "t-1", "env": "prod", "route_id": "ai-route",
               "llm_summary": {"model": "gpt-4", "duration": e["llm_summary"]["duration"],
                               "prompt_tokens": 15, "completion_tokens": 4}})
    );
}

/// `include_req_body` with `include_req_body_expr`: the body is in the
/// entry only when the condition holds for the request (checked when it
/// is done); a bad condition is refused with its path.
#[test]
fn include_req_body_expr_chooses_which_bodies_are_logged() {
    let m = mocks(&["a"]);
    let up = answering(200);
    let logger = json!({"uri": format!("http://{}/", up.addr), "batch_max_size": 1,
                        "include_req_body": true,
                        "include_req_body_expr": [["arg_debug", "==", "1"], ["llm_model", "==", "gpt-4"]]});
    let gw = Gateway::start_json(logged_route(&m, logger.clone()));
    let mut c = Conn::connect(gw.addr);
    for path in ["/v1/chat/completions", "/v1/chat/completions?debug=1"] {
        assert_eq!(c.post_json(path, ASK).status, 200);
    }
    let got = posts(&up, 2);
    assert_eq!(got.len(), 2, "{}", gw.stderr());
    let entry = |i: usize| serde_json::from_slice::<Vec<Value>>(&got[i].body).unwrap()[0].clone();
    assert_eq!(entry(0)["request"]["uri"], "/v1/chat/completions");
    assert!(entry(0)["request"].get("body").is_none(), "{}", entry(0));
    assert_eq!(entry(1)["request"]["uri"], "/v1/chat/completions?debug=1");
    assert_eq!(entry(1)["request"]["body"], ASK);

    let mut bad = logger;
    bad["include_req_body_expr"] = json!([["arg_debug", "=", "1"]]);
    assert_refused(
        &logged_route(&m, bad),
        "http-logger",
        "include_req_body_expr[0][1]",
    );
}

/// `include_resp_body`: the entry's `response.body` is what the client
/// received, without transfer framing — a chunked body relayed from a plain
/// upstream, an AI answer (converted or not), a stream's events, and a
/// refusal of the gateway's own; `include_resp_body_expr` picks requests.
#[test]
fn include_resp_body_logs_what_the_client_received() {
    let m = mocks(&["a"]);
    let collector = answering(200);
    let plain = Upstream::start(|_, s| {
        let _ = write!(
            s,
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nhello \r\n5;ext=1\r\nworld\r\n0\r\n\r\n"
        );
        true
    });
    let mut doc = ai_config(
        &["/v1/chat/completions"],
        json!({"instances": [instance("a", 1, &chat_url(&m, "a"), "gpt-4")]}),
    );
    let service = &mut doc["services"][0];
    service["upstream"] =
        json!({"nodes": [{"host": "127.0.0.1", "port": plain.addr.port(), "weight": 1}]});
    service["plugins"] = json!({"http-logger": {
        "uri": format!("http://{}/", collector.addr), "batch_max_size": 1,
        "include_resp_body": true,
        "include_resp_body_expr": [["arg_quiet", "~=", "1"]]}});
    let routes = service["routes"].as_array_mut().unwrap();
    routes.push(json!({"name": "plain", "uris": ["/plain"]}));
    routes.push(json!({"name": "locked", "uris": ["/locked"], "plugins": {"key-auth": {}}}));
    let gw = Gateway::start_json(doc);

    let mut c = Conn::connect(gw.addr);
    let plain_answer = c.get("/plain");
    assert_eq!(plain_answer.text(), "hello world");
    let chat = c.post_json("/v1/chat/completions", ASK);
    assert_eq!(chat.status, 200);
    let stream = c.post_json("/v1/chat/completions", ASK_STREAM);
    assert_eq!(stream.status, 200);
    assert_eq!(c.get("/locked").status, 401);
    assert_eq!(c.get("/plain?quiet=1").status, 200);

    let got = posts(&collector, 5);
    assert_eq!(got.len(), 5, "{}", gw.stderr());
    let response = |i: usize| {
        serde_json::from_slice::<Vec<Value>>(&got[i].body).unwrap()[0]["response"].clone()
    };
    let body = |i: usize| {
        response(i)
            .get("body")
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    assert_eq!(body(0).as_deref(), Some("hello world"));
    assert_eq!(body(1).as_deref(), Some(chat.text().as_str()));
    assert_eq!(body(2).as_deref(), Some(stream.text().as_str()));
    assert!(
        body(2).unwrap().ends_with("data: [DONE]\n\n"),
        "{:?}",
        body(2)
    );
    assert_eq!(
        body(3).as_deref(),
        Some(r#"{"message":"Missing API key in request"}"#)
    );
    assert_eq!(body(4), None);
    // The gateway's own answer has its size, like a relayed one (whose
    // size, as nginx's `$body_bytes_sent`, counts the chunk framing sent).
    assert_eq!(response(3)["size"], 40);
    assert_eq!(response(0)["size"], 32);
}

/// Global rules each run, as in APISIX: two rules with an `http-logger`
/// each (added over the Admin API) both log every request; a rule that
/// disables its logger just leaves it out.
#[test]
fn every_global_rule_runs_its_own_logger() {
    let m = mocks(&["a"]);
    let (first, second, third) = (answering(200), answering(200), answering(200));
    let mut doc = ai_config(
        &["/v1/chat/completions"],
        json!({"instances": [instance("a", 1, &chat_url(&m, "a"), "gpt-4")]}),
    );
    doc["gateway"] = json!({"admin": {"listen": "127.0.0.1:0", "key": "k"}});
    let gw = Gateway::start_json(doc);
    let admin = gw.admin_addr.expect("admin listener");
    for (id, up, meta) in [
        ("1", &first, json!({})),
        ("2", &second, json!({})),
        ("3", &third, json!({"disable": true})),
    ] {
        let body = json!({"plugins": {"http-logger": {
            "uri": format!("http://{}/", up.addr), "batch_max_size": 1, "_meta": meta}}})
        .to_string();
        let mut c = Conn::connect(admin);
        c.send(format!("PUT /apisix/admin/global_rules/{id} HTTP/1.1\r\nHost: a\r\nX-API-KEY: k\r\nContent-Length: {}\r\n\r\n{body}", body.len()).as_bytes());
        let r = c.read_response();
        assert!(r.status == 200 || r.status == 201, "{}", r.text());
    }
    ask(&gw, 1);
    assert_eq!(posts(&first, 1).len(), 1, "{}", gw.stderr());
    assert_eq!(posts(&second, 1).len(), 1, "{}", gw.stderr());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(third.requests().len(), 0);
}
