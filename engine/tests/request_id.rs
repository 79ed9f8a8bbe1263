//! `request-id` through the real binary: the id's form per algorithm, a
//! client's id kept, the id in every answer (ringway's own errors too,
//! also when the plugin is a global rule), seen by a plain upstream and by
//! mock-llm, and in the access log and an http-logger entry (the full
//! entry's request headers and `$http_x_request_id` in a `log_format`).
#![allow(clippy::disallowed_types, clippy::unwrap_used)]

mod common;

use common::ai::{ai_config, chat_url, instance, mocks, ASK};
use common::loggers::{answering, posts};
use common::{Conn, Gateway, Upstream};
use serde_json::{json, Value};

/// A plain route per algorithm on `up`.
fn plain_routes(up: &Upstream) -> Value {
    let route = |uri: &str, conf: Value| json!({"name": uri, "uris": [uri], "plugins": {"request-id": conf}});
    json!({"services": [{"name": "s", "upstream": {"nodes": [{"host": up.addr.ip().to_string(), "port": up.addr.port(), "weight": 1}]},
    "routes": [
        route("/uuid", json!({})),
        route("/nanoid", json!({"algorithm": "nanoid"})),
        route("/range", json!({"algorithm": "range_id", "range_id": {"char_set": "abcdef", "length": 12}})),
        route("/ksuid", json!({"algorithm": "ksuid"})),
        route("/quiet", json!({"header_name": "X-Trace-Me", "include_in_response": false})),
    ]}]})
}

fn is_uuid_v4(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.iter().map(|p| p.len()).collect::<Vec<_>>() == [8, 4, 4, 4, 12]
        && s.bytes()
            .all(|b| b == b'-' || b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && parts[2].starts_with('4')
}

#[test]
fn each_algorithm_makes_its_form_and_the_upstream_gets_the_same_id() {
    let up = Upstream::echo();
    let gw = Gateway::start_json(plain_routes(&up));
    let mut c = Conn::connect(gw.addr);
    type Form = fn(&str) -> bool;
    let checks: [(&str, Form); 4] = [
        ("/uuid", is_uuid_v4),
        ("/nanoid", |s| {
            s.len() == 21
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        }),
        ("/range", |s| {
            s.len() == 12 && s.bytes().all(|b| (b'a'..=b'f').contains(&b))
        }),
        ("/ksuid", |s| {
            s.len() == 27 && s.bytes().all(|b| b.is_ascii_alphanumeric())
        }),
    ];
    let mut seen = Vec::new();
    for (path, ok) in checks {
        for _ in 0..2 {
            let r = c.get(path);
            assert_eq!(r.status, 200);
            let id = r
                .header("x-request-id")
                .expect("an id in the answer")
                .to_owned();
            assert!(ok(&id), "{path}: {id}");
            let got = up.requests().last().unwrap().clone();
            assert_eq!(got.header("x-request-id"), Some(id.as_str()), "{path}");
            assert!(!seen.contains(&id), "ids differ");
            seen.push(id);
        }
    }
    // Another header name, not in the answer; still sent upstream.
    let r = c.get("/quiet");
    assert_eq!(r.header("x-trace-me"), None);
    assert_eq!(r.header("x-request-id"), None);
    let got = up.requests().last().unwrap().clone();
    assert!(is_uuid_v4(got.header("x-trace-me").unwrap()));
}

#[test]
fn a_client_id_is_kept_and_an_empty_one_replaced() {
    let up = Upstream::echo();
    let gw = Gateway::start_json(plain_routes(&up));
    let mut c = Conn::connect(gw.addr);
    c.send(b"GET /uuid HTTP/1.1\r\nHost: x\r\nX-Request-Id: client-7\r\n\r\n");
    let r = c.read_response();
    assert_eq!(r.header("x-request-id"), Some("client-7"));
    let got = up.requests().last().unwrap().clone();
    let sent: Vec<_> = got
        .headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("x-request-id"))
        .collect();
    assert_eq!(sent.len(), 1, "{:?}", got.headers);
    assert_eq!(sent[0].1, "client-7");
    // An empty header is no id (APISIX): one is made, sent once.
    c.send(b"GET /uuid HTTP/1.1\r\nHost: x\r\nX-Request-Id: \r\n\r\n");
    let r = c.read_response();
    let id = r.header("x-request-id").unwrap().to_owned();
    assert!(is_uuid_v4(&id));
    let got = up.requests().last().unwrap().clone();
    let sent: Vec<_> = got
        .headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("x-request-id"))
        .collect();
    assert_eq!(sent, [&("X-Request-Id".to_owned(), id)]);
}

#[test]
fn providers_get_the_id_and_errors_carry_it_as_a_global_rule() {
    let m = mocks(&["a"]);
    let mut doc = ai_config(
        &["/v1/chat/completions"],
        json!({"instances": [instance("a", 1, &chat_url(&m, "a"), "gpt-4")]}),
    );
    doc["global_rules"] = json!({"request-id": {}});
    doc["services"][0]["routes"]
        .as_array_mut()
        .unwrap()
        .push(json!({
        "name": "locked", "uris": ["/locked"], "plugins": {"key-auth": {},
            "ai-proxy-multi": {"instances": [instance("a", 1, &chat_url(&m, "a"), "gpt-4")]}}}));
    let gw = Gateway::start_json(doc);
    let mut c = Conn::connect(gw.addr);
    // The client's id reaches the provider and comes back.
    let r = c.post_json_with(
        "/v1/chat/completions",
        ASK,
        &[("X-Request-Id", "from-client")],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-request-id"), Some("from-client"));
    let seen = m.instance("a").requests();
    let header = |req: &mock_llm::RecordedRequest| {
        req.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("x-request-id"))
            .map(|(_, v)| v.clone())
    };
    assert_eq!(header(seen.last().unwrap()).as_deref(), Some("from-client"));
    // A made one too.
    let r = c.post_json("/v1/chat/completions", ASK);
    let id = r.header("x-request-id").unwrap().to_owned();
    assert!(is_uuid_v4(&id));
    assert_eq!(header(m.instance("a").requests().last().unwrap()), Some(id));
    // ringway's own answers: a 400 of ai-proxy-multi, key-auth's 401.
    let r = c.post_json("/v1/chat/completions", "{not json");
    assert_eq!(r.status, 400);
    assert!(is_uuid_v4(r.header("x-request-id").unwrap()));
    let r = c.post_json("/locked", ASK);
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(is_uuid_v4(r.header("x-request-id").unwrap()));
}

#[test]
fn the_id_is_in_the_access_log_and_logger_entries() {
    let m = mocks(&["a"]);
    let sink = answering(200);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let mut doc = ai_config(
        &["/v1/chat/completions"],
        json!({"instances": [instance("a", 1, &chat_url(&m, "a"), "gpt-4")]}),
    );
    let uri = format!("http://{}/logs", sink.addr);
    doc["services"][0]["routes"][0]["plugins"]["request-id"] = json!({});
    doc["services"][0]["routes"][0]["plugins"]["http-logger"] =
        json!({"uri": uri, "batch_max_size": 1});
    doc["global_rules"] = json!({"http-logger": {"uri": uri, "batch_max_size": 1, "log_format": {"rid": "$http_x_request_id"}}});
    doc["gateway"] = json!({"access_log": {"path": log.to_str().unwrap()}});
    let mut gw = Gateway::start_json(doc);
    let r = Conn::connect(gw.addr).post_json("/v1/chat/completions", ASK);
    assert_eq!(r.status, 200);
    let id = r.header("x-request-id").unwrap().to_owned();
    let got = posts(&sink, 2);
    assert_eq!(got.len(), 2, "{}", gw.stderr());
    let entries: Vec<Value> = got
        .iter()
        .flat_map(|p| serde_json::from_slice::<Vec<Value>>(&p.body).unwrap())
        .collect();
    let full = entries
        .iter()
        .find(|e| e.get("request").is_some())
        .expect("the full entry");
    assert_eq!(full["request"]["headers"]["x-request-id"], id.as_str());
    let custom = entries
        .iter()
        .find(|e| e.get("rid").is_some())
        .expect("the log_format entry");
    assert_eq!(custom["rid"], id.as_str());
    let lines = gw.stop_and_read_log(&log);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["request_id"], id.as_str());
}

#[test]
fn bad_configs_are_refused_with_the_field() {
    for (conf, field) in [
        (json!({"algorithm": "snowflake"}), "request-id.algorithm"),
        (
            json!({"algorithm": "range_id", "range_id": {"length": 2}}),
            "request-id.range_id.length",
        ),
        (json!({"header_name": "bad name"}), "request-id.header_name"),
    ] {
        let doc = json!({"services": [{"name": "s", "upstream": {"nodes": [{"host": "127.0.0.1", "port": 1, "weight": 1}]},
            "routes": [{"name": "r", "uris": ["/"], "plugins": {"request-id": conf}}]}]});
        let (code, out) = common::gateway::check(&doc.to_string());
        assert_ne!(code, 0);
        assert!(out.contains(field), "{out}");
    }
}
