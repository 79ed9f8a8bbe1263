//! Every plugin's `_meta` (APISIX's injected settings), through the
//! binary: `disable` turns a plugin off, also the same plugin of the
//! route's service; `error_response` replaces the body of a plugin's own
//! refusals (key-auth, ai-rate-limiting, ai-proxy-multi); `filter` runs a
//! plugin only for the requests it holds for — key-auth on a header,
//! ai-proxy-multi with the route's upstream answering the rest, a logger
//! on the response's status; bad `_meta` is refused at load with its path.
#![allow(clippy::disallowed_types, clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::ai::{chat_url, instance, mocks, ASK};
use common::upstream::Recorded;
use common::{assert_refused, Conn, Gateway, Upstream};
use serde_json::{json, Value};

fn node(up: &Upstream) -> Value {
    json!({"nodes": [{"host": "127.0.0.1", "port": up.addr.port(), "weight": 1}]})
}

fn consumers() -> Value {
    json!([{"username": "john", "plugins": {"key-auth": {"key": "john-key"}}}])
}

fn get(gw: &Gateway, path: &str, headers: &str) -> mock_llm::client::Response {
    let mut c = Conn::connect(gw.addr);
    c.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\n{headers}\r\n").as_bytes());
    c.read_response()
}

fn post(gw: &Gateway, path: &str) -> mock_llm::client::Response {
    Conn::connect(gw.addr).post_json(path, ASK)
}

#[test]
fn disable_turns_off_the_plugin_and_the_same_one_of_the_service() {
    let up = Upstream::echo();
    let doc = json!({
        "services": [{
            "name": "s",
            "upstream": node(&up),
            "plugins": {"key-auth": {}},
            "routes": [
                {"name": "open", "uris": ["/open"],
                 "plugins": {"key-auth": {"_meta": {"disable": true}}}},
                {"name": "closed", "uris": ["/closed"]},
                {"name": "self", "uris": ["/self"],
                 "plugins": {"key-auth": {"query": "k", "_meta": {"disable": false}}}},
            ],
        }],
        "consumers": consumers(),
    });
    let gw = Gateway::start_json(doc.clone());
    assert_eq!(get(&gw, "/open", "").status, 200);
    assert_eq!(get(&gw, "/closed", "").status, 401);
    assert_eq!(get(&gw, "/closed", "apikey: john-key\r\n").status, 200);
    assert_eq!(get(&gw, "/self", "").status, 401);
    assert_eq!(get(&gw, "/self?k=john-key", "").status, 200);

    // A disabled plugin's config is still checked.
    let mut bad = doc;
    bad["services"][0]["routes"][0]["plugins"]["key-auth"]["header"] = json!("");
    assert_refused(&bad, "key-auth", "header");
}

#[test]
fn error_response_replaces_the_plugins_own_refusals() {
    let m = mocks(&["a"]);
    let up = Upstream::echo();
    let dead = "http://127.0.0.1:1/v1/chat/completions";
    let doc = json!({
        "services": [{
            "name": "s",
            "upstream": node(&up),
            "routes": [
                {"name": "json", "uris": ["/json"],
                 "plugins": {"key-auth": {"_meta": {"error_response": {"code": "NO_KEY"}}}}},
                {"name": "text", "uris": ["/text"],
                 "plugins": {"key-auth": {"_meta": {"error_response": "who are you?"}}}},
                {"name": "ai-dead", "uris": ["/ai-dead"], "methods": ["POST"],
                 "plugins": {"ai-proxy-multi": {
                     "instances": [instance("dead", 1, dead, "gpt-4")],
                     "_meta": {"error_response": {"error": "the model is resting"}}}}},
                {"name": "ai-limited", "uris": ["/ai-limited"], "methods": ["POST"],
                 "plugins": {
                     "ai-proxy-multi": {"instances": [instance("a", 1, &chat_url(&m, "a"), "gpt-4")]},
                     "ai-rate-limiting": {"limit": 1, "time_window": 60,
                         "_meta": {"error_response": "slow down"}}}},
            ],
        }],
        "consumers": consumers(),
    });
    let gw = Gateway::start_json(doc);
    let r = get(&gw, "/json", "");
    assert_eq!(r.status, 401);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.json(), json!({"code": "NO_KEY"}));
    // Only refusals: a good key passes as before.
    assert_eq!(get(&gw, "/json", "apikey: john-key\r\n").status, 200);
    let r = get(&gw, "/text", "apikey: wrong\r\n");
    assert_eq!(r.status, 401);
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(r.text(), "who are you?");

    let r = post(&gw, "/ai-dead");
    assert_eq!(r.status, 502);
    assert_eq!(r.json(), json!({"error": "the model is resting"}));

    assert_eq!(post(&gw, "/ai-limited").status, 200);
    let r = post(&gw, "/ai-limited");
    assert_eq!(r.status, 503);
    assert_eq!(r.text(), "slow down");
    assert!(
        r.header("x-ai-ratelimit-remaining-a").is_some(),
        "quota headers stay: {:?}",
        r.headers
    );
}

#[test]
fn filter_runs_key_auth_and_ai_proxy_multi_only_where_it_holds() {
    let m = mocks(&["ai", "plain"]);
    let plain = m.instance("plain").addr();
    let doc = json!({
        "services": [{
            "name": "s",
            "upstream": {"nodes": [{"host": "127.0.0.1", "port": plain.port(), "weight": 1}]},
            "routes": [{
                "name": "chat", "uris": ["/v1/chat/completions"],
                "plugins": {
                    "key-auth": {"_meta": {"filter": [["http_x_internal", "~=", "yes"]]}},
                    "ai-proxy-multi": {
                        "instances": [instance("ai", 1, &chat_url(&m, "ai"), "gpt-4")],
                        "_meta": {"filter": ["OR", ["arg_ai", "==", "1"], ["http_x_route", "~*", "^LLM$"]]},
                    },
                },
            }],
        }],
        "consumers": consumers(),
    });
    let gw = Gateway::start_json(doc.clone());
    // With a model: requests the filter leaves to the upstream go as sent.
    let body = ASK.replacen('{', r#"{"model":"gpt-4","#, 1);
    let ask = |path: &str, headers: &str| {
        let mut c = Conn::connect(gw.addr);
        c.send(format!("POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n{headers}Content-Length: {}\r\n\r\n{body}", body.len()).as_bytes());
        c.read_response()
    };
    // key-auth runs unless `X-Internal: yes`.
    assert_eq!(ask("/v1/chat/completions?ai=1", "").status, 401);
    let r = ask("/v1/chat/completions?ai=1", "X-Internal: yes\r\n");
    assert_eq!(r.status, 200, "{}", r.text());
    // ai-proxy-multi answered: its instance, the gateway's headers.
    assert_eq!(r.header("x-mock-instance"), Some("ai"));
    assert_eq!(r.header("x-ringway-instance"), Some("ai"));
    let r = ask(
        "/v1/chat/completions",
        "apikey: john-key\r\nX-Route: llm\r\n",
    );
    assert_eq!(r.header("x-mock-instance"), Some("ai"));
    // Otherwise the route's upstream did, proxied as plain HTTP.
    let r = ask("/v1/chat/completions", "apikey: john-key\r\n");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-mock-instance"), Some("plain"));
    assert_eq!(r.header("x-ringway-instance"), None);
    assert_eq!(m.instance("ai").stats().requests, 2);
    assert_eq!(m.instance("plain").stats().requests, 1);

    // A filtered ai-proxy-multi needs an upstream for the rest.
    let mut bad = doc;
    bad["services"][0]
        .as_object_mut()
        .unwrap()
        .remove("upstream");
    assert_refused(&bad, "ai-proxy-multi._meta.filter", "needs an `upstream`");
}

#[test]
fn a_loggers_filter_sees_the_response() {
    let collector = Upstream::start(|_, s| {
        let _ = write!(s, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        true
    });
    let up = Upstream::start(|req, s| {
        let status: u16 = req.target.rsplit('/').next().unwrap().parse().unwrap();
        let _ = write!(s, "HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n");
        true
    });
    let gw = Gateway::start_json(json!({
        "services": [{
            "name": "s",
            "upstream": node(&up),
            "plugins": {"http-logger": {
                "uri": format!("http://{}/", collector.addr), "batch_max_size": 1,
                "log_format": {"uri": "$uri", "status": "$status"},
                "_meta": {"filter": [["status", ">=", 500]]}}},
            "routes": [{"name": "r", "uris": ["/status/*"]}],
        }],
    }));
    // One connection: one worker, whose entries are shipped in order.
    let mut c = Conn::connect(gw.addr);
    for status in [200, 500, 204, 503] {
        assert_eq!(c.get(&format!("/status/{status}")).status, status);
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut posts: Vec<Recorded> = collector.requests();
    while posts.len() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        posts = collector.requests();
    }
    // Requests were logged in order: without the filter the first entry
    // would be the 200's.
    let entries: Vec<Value> = posts
        .iter()
        .map(|p| serde_json::from_slice::<Vec<Value>>(&p.body).unwrap()[0].clone())
        .collect();
    assert_eq!(
        entries,
        [
            json!({"uri": "/status/500", "status": "500", "route_id": "r"}),
            json!({"uri": "/status/503", "status": "503", "route_id": "r"}),
        ]
    );
}

#[test]
fn bad_meta_is_refused_with_its_path() {
    let up = Upstream::echo();
    for (meta, field) in [
        (json!({"disable": "yes"}), "_meta.disable"),
        (
            json!({"filter": [["status", "=", 500]]}),
            "_meta.filter[0][1]",
        ),
        (json!({"filter": ["status", "==", 500]}), "_meta.filter"),
        (json!({"error_response": 401}), "_meta.error_response"),
        (json!({"pre_function": "return 1"}), "_meta.pre_function"),
        (json!({"priorty": 1}), "_meta.priorty"),
    ] {
        let doc = json!({
            "services": [{"name": "s", "upstream": node(&up),
                          "routes": [{"name": "r", "uris": ["/*"],
                                      "plugins": {"key-auth": {"_meta": meta}}}]}],
        });
        assert_refused(&doc, "key-auth", field);
    }
}
