//! No credential in any log: the access log, `http-logger` and
//! `kafka-logger` entries (the full log, `log_format` variables and
//! `meta_format: origin`) and the gateway's own stderr carry
//! `[REDACTED]` where a request had a credential — `Authorization`,
//! `apikey`, `x-api-key`, cookies, `?apikey=`, `?key=`, key-auth's own
//! configured header and query parameter — for every request: served,
//! refused with 401, or matching no route. `gateway.log_redaction`
//! adds names, or (`enabled: false`) turns it off.
#![allow(clippy::disallowed_types, clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::ai::{chat_url, instance, mocks, ASK};
use common::loggers::{answering, posts};
use common::{Conn, Gateway, Upstream};
use serde_json::{json, Value};

/// The consumer's key, and what else clients send that must not be logged.
const KEY: &str = "john-secret-key-1";
const SECRETS: &[&str] = &[
    KEY,
    "sk-client-secret-2",
    "xak-secret-3",
    "cookie-secret-4",
    "cHJveHktc2VjcmV0LTU=",
    "goog-secret-6",
    "azure-secret-7",
    "wrong-secret-8",
    "gkey-secret-9",
    "ak-secret-10",
    "unmatched-secret-11",
];

/// An AI route behind key-auth (`hide_credentials`), a second one whose
/// key-auth reads `X-Tenant-Token` / `?tenant_token=`, a global rule with
/// `logger` (so 401s and requests matching no route are logged too) and
/// the access log at `log`; `redaction`, if any, as
/// `gateway.log_redaction`.
fn config(m: &mock_llm::MockServer, logger: (&str, Value), log: &Path, redaction: Value) -> Value {
    let ai = json!({"instances": [instance("a", 1, &chat_url(m, "a"), "gpt-4")]});
    let mut gateway = json!({"access_log": {"path": log.to_str().unwrap()}});
    if !redaction.is_null() {
        gateway["log_redaction"] = redaction;
    }
    json!({
        "gateway": gateway,
        "services": [{"name": "ai", "routes": [
            {"name": "chat", "uris": ["/v1/chat/completions"], "methods": ["POST"],
             "plugins": {"ai-proxy-multi": ai, "key-auth": {"hide_credentials": true}}},
            {"name": "tenant", "uris": ["/tenant/v1/chat/completions"], "methods": ["POST"],
             "plugins": {"ai-proxy-multi": ai,
                         "key-auth": {"header": "X-Tenant-Token", "query": "tenant_token"}}},
        ]}],
        "global_rules": {logger.0: logger.1},
        "consumers": [{"username": "johndoe", "credentials": [
            {"name": "primary", "type": "key-auth", "config": {"key": KEY}}]}],
    })
}

/// Sends every kind of request with credentials: five logged entries.
fn send_requests(gw: &Gateway) {
    let mut c = Conn::connect(gw.addr);
    // (a) authenticated, with every credential header there is.
    let r = c.post_json_with(
        "/v1/chat/completions?keep=visible",
        ASK,
        &[
            ("apikey", KEY),
            ("Authorization", "Bearer sk-client-secret-2"),
            ("X-API-Key", "xak-secret-3"),
            ("Cookie", "sid=cookie-secret-4; theme=dark"),
            ("Proxy-Authorization", "Basic cHJveHktc2VjcmV0LTU="),
            ("x-goog-api-key", "goog-secret-6"),
            ("api-key", "azure-secret-7"),
            ("User-Agent", "sdk/1"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    // (b) refused: an unknown key.
    let r = c.post_json_with("/v1/chat/completions", ASK, &[("apikey", "wrong-secret-8")]);
    assert_eq!(r.status, 401, "{}", r.text());
    // (c) the key in the query, with provider-style keys beside it.
    let r = c.post_json(
        &format!(
            "/v1/chat/completions?apikey={KEY}&key=gkey-secret-9&api_key=ak-secret-10&keep=visible"
        ),
        ASK,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    // key-auth's own names, header and query.
    let r = c.post_json_with(
        "/tenant/v1/chat/completions",
        ASK,
        &[("X-Tenant-Token", KEY)],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let r = c.post_json(
        &format!("/tenant/v1/chat/completions?tenant_token={KEY}"),
        ASK,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    // No route at all (key-auth's names from the routes hold here too).
    let r = c.get("/nowhere?apikey=unmatched-secret-11&tenant_token=unmatched-secret-11b");
    assert_eq!(r.status, 404, "{}", r.text());
}

fn assert_clean(text: &str, what: &str) {
    for s in SECRETS {
        assert!(!text.contains(s), "{what} contains {s}:\n{text}");
    }
}

/// Every posted entry, in order.
fn entries(up: &Upstream, n: usize) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while out.len() < n && std::time::Instant::now() < deadline {
        out = posts(up, 1)
            .iter()
            .flat_map(|p| serde_json::from_slice::<Vec<Value>>(&p.body).unwrap())
            .collect();
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(out.len(), n, "{out:?}");
    out
}

fn http_logger(up: &Upstream, extra: Value) -> (&'static str, Value) {
    let mut v = json!({"uri": format!("http://{}/logs", up.addr), "batch_max_size": 1});
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    ("http-logger", v)
}

#[test]
fn full_logs_and_the_access_log_carry_no_credential() {
    let m = mocks(&["a"]);
    let up = answering(200);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let mut gw = Gateway::start_json(config(&m, http_logger(&up, json!({})), &log, Value::Null));
    send_requests(&gw);
    let got = entries(&up, 6);
    for e in &got {
        assert_clean(&e.to_string(), "an http-logger entry");
    }
    // The names stay, so operators see a credential was sent.
    let a = got
        .iter()
        .find(|e| e["request"]["headers"]["user-agent"] == "sdk/1")
        .unwrap();
    let h = &a["request"]["headers"];
    assert_eq!(h["apikey"], "[REDACTED]", "{a}");
    assert_eq!(h["authorization"], "Bearer [REDACTED]");
    assert_eq!(h["proxy-authorization"], "Basic [REDACTED]");
    assert_eq!(h["x-api-key"], "[REDACTED]");
    assert_eq!(h["x-goog-api-key"], "[REDACTED]");
    assert_eq!(h["api-key"], "[REDACTED]");
    assert_eq!(h["cookie"], "[REDACTED]");
    assert_eq!(a["request"]["querystring"]["keep"], "visible");
    let refused = got.iter().find(|e| e["response"]["status"] == 401).unwrap();
    assert_eq!(refused["request"]["headers"]["apikey"], "[REDACTED]");
    let unmatched = got.iter().find(|e| e["response"]["status"] == 404).unwrap();
    assert_eq!(
        unmatched["request"]["uri"],
        "/nowhere?apikey=[REDACTED]&tenant_token=[REDACTED]"
    );
    let c = got
        .iter()
        .find(|e| e["request"]["querystring"]["api_key"].is_string())
        .unwrap();
    assert_eq!(
        c["request"]["uri"],
        "/v1/chat/completions?apikey=[REDACTED]&key=[REDACTED]&api_key=[REDACTED]&keep=visible"
    );
    assert_eq!(
        c["request"]["url"],
        "http://test/v1/chat/completions?apikey=[REDACTED]&key=[REDACTED]&api_key=[REDACTED]&keep=visible"
    );
    assert_eq!(c["request"]["querystring"]["apikey"], "[REDACTED]");
    assert!(got
        .iter()
        .any(|e| e["request"]["headers"]["x-tenant-token"] == "[REDACTED]"));
    assert!(got
        .iter()
        .any(|e| e["request"]["querystring"]["tenant_token"] == "[REDACTED]"));

    // The access log's `uri`.
    let lines = gw.stop_and_read_log(&log);
    assert_eq!(lines.len(), 6, "{lines:?}");
    for l in &lines {
        assert_clean(&l.to_string(), "an access log line");
    }
    assert!(lines.iter().any(|l| {
        l["uri"]
        == "/v1/chat/completions?apikey=[REDACTED]&key=[REDACTED]&api_key=[REDACTED]&keep=visible"
    }));
    assert!(lines
        .iter()
        .any(|l| l["uri"] == "/tenant/v1/chat/completions?tenant_token=[REDACTED]"));
    assert_clean(&gw.stderr(), "stderr");
    // And nothing of the client's credentials reached the instance (the
    // AI path sends the instance's own key; `hide_credentials` or not).
    for r in m.instance("a").requests() {
        assert_clean(&format!("{r:?}"), "a request to the instance");
        assert_eq!(r.header("authorization"), Some("Bearer key-a"));
    }
}

/// Configuration in error lines: a log endpoint's key in its query
/// (`?dd-api-key=`), an endpoint's userinfo, a key in a field of the
/// wrong type.
#[test]
fn error_lines_show_configured_urls_without_their_secrets() {
    let m = mocks(&["a"]);
    let up = answering(500);
    let dir = tempfile::tempdir().unwrap();
    let logger = json!({"uri": format!("http://{}/logs?dd-api-key=log-secret-12&src=gw", up.addr),
                        "batch_max_size": 1, "max_retry_count": 0});
    let gw = Gateway::start_json(config(
        &m,
        ("http-logger", logger),
        &dir.path().join("access.log"),
        Value::Null,
    ));
    let r = Conn::connect(gw.addr).get("/nowhere");
    assert_eq!(r.status, 404);
    assert!(
        gw.wait_for_log("answered 500", Duration::from_secs(15)),
        "{}",
        gw.stderr()
    );
    let err = gw.stderr();
    assert!(!err.contains("log-secret-12"), "{err}");
    assert!(
        err.contains("/logs?dd-api-key=[REDACTED]&src=[REDACTED]"),
        "{err}"
    );

    let mut doc = config(
        &m,
        http_logger(&up, json!({})),
        &dir.path().join("a.log"),
        Value::Null,
    );
    doc["services"][0]["routes"][0]["plugins"]["ai-proxy-multi"]["instances"][0]["override"]
        ["endpoint"] = json!("http://user:pw-secret-13@127.0.0.1:1/v1?key=ep-secret-14");
    let (code, out) = common::gateway::check(&serde_json::to_string(&doc).unwrap());
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("override.endpoint"), "{out}");
    for s in ["pw-secret-13", "ep-secret-14"] {
        assert!(!out.contains(s), "{s}: {out}");
    }
    // A key written where a map belongs: the error names the field, not
    // the value.
    let mut doc = config(
        &m,
        http_logger(&up, json!({})),
        &dir.path().join("a.log"),
        Value::Null,
    );
    doc["services"][0]["routes"][0]["plugins"]["ai-proxy-multi"]["instances"][0]["auth"]
        ["header"] = json!("Bearer sk-misplaced-15");
    let (code, out) = common::gateway::check(&serde_json::to_string(&doc).unwrap());
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("auth.header: invalid type: a string, expected a map"),
        "{out}"
    );
    assert!(!out.contains("sk-misplaced-15"), "{out}");
}

#[test]
fn log_format_variables_are_redacted() {
    let m = mocks(&["a"]);
    let up = answering(200);
    let dir = tempfile::tempdir().unwrap();
    let format = json!({"auth": "$http_authorization", "key": "$http_apikey", "arg": "$arg_apikey",
        "uri": "$request_uri", "args": "$args", "tenant": "$http_x_tenant_token",
        "tenant_arg": "$arg_tenant_token", "sid": "$cookie_sid", "ua": "$http_user_agent",
        "path": "$uri", "status": "$status"});
    let gw = Gateway::start_json(config(
        &m,
        http_logger(&up, json!({"log_format": format})),
        &dir.path().join("access.log"),
        Value::Null,
    ));
    send_requests(&gw);
    let got = entries(&up, 6);
    for e in &got {
        assert_clean(&e.to_string(), "a log_format entry");
    }
    let a = got.iter().find(|e| e["ua"] == "sdk/1").unwrap();
    assert_eq!(a["auth"], "Bearer [REDACTED]", "{a}");
    assert_eq!(a["key"], "[REDACTED]");
    assert_eq!(a["sid"], "[REDACTED]");
    assert_eq!(a["uri"], "/v1/chat/completions?keep=visible");
    assert_eq!(a["path"], "/v1/chat/completions");
    let c = got.iter().find(|e| e["arg"].is_string()).unwrap();
    assert_eq!(c["arg"], "[REDACTED]", "{c}");
    assert_eq!(
        c["args"],
        "apikey=[REDACTED]&key=[REDACTED]&api_key=[REDACTED]&keep=visible"
    );
    assert!(got.iter().any(|e| e["tenant"] == "[REDACTED]"));
    assert!(got.iter().any(|e| e["tenant_arg"] == "[REDACTED]"));
    assert_clean(&gw.stderr(), "stderr");
}

#[test]
fn the_opt_out_restores_raw_values_and_more_names_can_be_added() {
    let m = mocks(&["a"]);
    let up = answering(200);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let mut gw = Gateway::start_json(config(
        &m,
        http_logger(&up, json!({})),
        &log,
        json!({"enabled": false}),
    ));
    send_requests(&gw);
    let got = entries(&up, 6);
    let all: String = got.iter().map(Value::to_string).collect();
    for s in SECRETS {
        assert!(all.contains(s), "{s} is not in {all}");
    }
    assert!(!all.contains("[REDACTED]"), "{all}");
    let lines = gw.stop_and_read_log(&log);
    assert!(lines.iter().any(|l| l["uri"]
        == format!(
            "/v1/chat/completions?apikey={KEY}&key=gkey-secret-9&api_key=ak-secret-10&keep=visible"
        )));

    // Names of one's own, on top of the built-in ones.
    let up = answering(200);
    let log = dir.path().join("access2.log");
    let gw = Gateway::start_json(config(
        &m,
        http_logger(&up, json!({})),
        &log,
        json!({"headers": ["X-Session"], "query": ["sig"]}),
    ));
    let mut c = Conn::connect(gw.addr);
    let r = c.post_json_with(
        "/v1/chat/completions?sig=sig-secret&keep=visible",
        ASK,
        &[("apikey", KEY), ("x-session", "session-secret")],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let got = entries(&up, 1);
    let e = &got[0];
    assert_eq!(e["request"]["headers"]["x-session"], "[REDACTED]", "{e}");
    assert_eq!(e["request"]["headers"]["apikey"], "[REDACTED]");
    assert_eq!(e["request"]["querystring"]["sig"], "[REDACTED]");
    assert_eq!(e["request"]["querystring"]["keep"], "visible");
}

#[test]
fn bad_redaction_settings_are_refused_with_the_field() {
    for (v, field) in [
        (json!({"enabled": "no"}), "gateway.log_redaction.enabled"),
        (json!({"headers": [""]}), "gateway.log_redaction.headers[0]"),
        (
            json!({"headers": ["a b"]}),
            "gateway.log_redaction.headers[0]",
        ),
        (json!({"query": ["a&b"]}), "gateway.log_redaction.query[0]"),
        (json!({"bodies": true}), "gateway.log_redaction"),
    ] {
        let doc = json!({"gateway": {"log_redaction": v}});
        let (code, out) = common::gateway::check(&serde_json::to_string(&doc).unwrap());
        assert_eq!(code, 2, "accepted: {v}");
        assert!(out.contains(field), "{field}: {out}");
    }
}

/// `kafka-logger`'s full log and `meta_format: origin` (the raw request
/// head), read back from a real broker.
#[test]
fn kafka_entries_and_origin_heads_carry_no_credential() {
    let broker = common::kafka::KafkaBroker::start();
    broker.create_topic("full", 1);
    broker.create_topic("origin", 1);
    let m = mocks(&["a"]);
    let dir = tempfile::tempdir().unwrap();
    let kafka = |topic: &str, origin: bool| {
        let mut v = json!({"broker_list": {"127.0.0.1": broker.port}, "kafka_topic": topic,
                           "batch_max_size": 1});
        if origin {
            v["meta_format"] = json!("origin");
        }
        v
    };
    let mut doc = config(
        &m,
        ("kafka-logger", kafka("origin", true)),
        &dir.path().join("access.log"),
        Value::Null,
    );
    // The route's own logger (full log) beside the global origin one.
    doc["services"][0]["routes"][0]["plugins"]["kafka-logger"] = kafka("full", false);
    let gw = Gateway::start_json(doc);
    send_requests(&gw);
    // The chat route's three requests (one refused), in full.
    let full = broker.consume("full", 3, Duration::from_secs(20));
    assert_eq!(full.len(), 3, "{full:?}\n{}", gw.stderr());
    for (_, e) in &full {
        assert_clean(&e.to_string(), "a kafka-logger entry");
    }
    assert!(full
        .iter()
        .any(|(_, e)| e["request"]["headers"]["authorization"] == "Bearer [REDACTED]"));
    // Every request's head, as received, with the credentials replaced.
    let origin = broker.consume_raw("origin", 6, Duration::from_secs(20));
    assert_eq!(origin.len(), 6, "{origin:?}\n{}", gw.stderr());
    for (_, head) in &origin {
        assert_clean(head, "an origin entry");
        assert!(head.ends_with("\r\n\r\n"), "{head:?}");
    }
    let heads: Vec<&str> = origin.iter().map(|(_, h)| h.as_str()).collect();
    assert!(heads.iter().any(|h| h.starts_with(
        "POST /v1/chat/completions?apikey=[REDACTED]&key=[REDACTED]&api_key=[REDACTED]&keep=visible HTTP/1.1\r\n"
    )), "{heads:?}");
    let a = heads
        .iter()
        .find(|h| h.contains("User-Agent: sdk/1"))
        .unwrap();
    for line in [
        "\r\napikey: [REDACTED]\r\n",
        "\r\nAuthorization: Bearer [REDACTED]\r\n",
        "\r\nX-API-Key: [REDACTED]\r\n",
        "\r\nCookie: [REDACTED]\r\n",
        "\r\nContent-Type: application/json\r\n",
    ] {
        assert!(a.contains(line), "{line:?} in {a:?}");
    }
    assert_clean(&gw.stderr(), "stderr");
}
