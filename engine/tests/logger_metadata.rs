//! Loggers' `plugin_metadata` (APISIX's per-plugin settings), through
//! the binary: the default `log_format` (file and Admin API) and
//! `max_pending_entries` bounding what a stuck endpoint leaves unsent.
#![allow(clippy::disallowed_types, clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::ai::mocks;
use common::loggers::{answering, ask, logged_route, posts};
use common::{assert_refused, logger_metric, Conn, Gateway, Upstream};
use serde_json::{json, Value};

/// `plugin_metadata` (APISIX's per-plugin settings): a logger without a
/// `log_format` of its own writes the metadata's fields — set in the
/// file, then replaced and removed over the Admin API, each taking effect
/// at once; a logger's own `log_format` still wins; bad metadata is
/// refused with its path, in the file and over the Admin API.
#[test]
fn plugin_metadata_log_format_is_the_loggers_default() {
    let m = mocks(&["a"]);
    let up = answering(200);
    let mut doc = logged_route(
        &m,
        json!({"uri": format!("http://{}/", up.addr), "batch_max_size": 1}),
    );
    doc["plugin_metadata"] =
        json!({"http-logger": {"log_format": {"from": "file", "host": "$host"}}});
    doc["gateway"]["admin"] = json!({"listen": "127.0.0.1:0", "key": "k"});
    let gw = Gateway::start_json(doc.clone());
    let admin = gw.admin_addr.expect("admin listener");
    let call = |method: &str, body: &str| {
        let mut c = Conn::connect(admin);
        c.send(format!("{method} /apisix/admin/plugin_metadata/http-logger HTTP/1.1\r\nHost: a\r\nX-API-KEY: k\r\nContent-Length: {}\r\n\r\n{body}", body.len()).as_bytes());
        c.read_response()
    };
    let next_entry = |n: usize| -> Value {
        ask(&gw, 1);
        let got = posts(&up, n);
        assert_eq!(got.len(), n, "{}", gw.stderr());
        serde_json::from_slice::<Vec<Value>>(&got[n - 1].body).unwrap()[0].clone()
    };
    let e = next_entry(1);
    assert_eq!(
        (&e["from"], &e["host"]),
        (&json!("file"), &json!("test")),
        "{e}"
    );
    assert!(e.get("request").is_none(), "{e}");

    let r = call("GET", "");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["value"]["log_format"]["from"], "file");
    let r = call(
        "PUT",
        r#"{"log_format": {"from": "admin", "status": "$status"}}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let e = next_entry(2);
    assert_eq!(
        (&e["from"], &e["status"]),
        (&json!("admin"), &json!("200")),
        "{e}"
    );
    // Refused with its path; what was there stays.
    let r = call("PUT", r#"{"log_format": "$host"}"#);
    assert_eq!(r.status, 400);
    assert!(
        r.text().contains("plugin_metadata.http-logger.log_format"),
        "{}",
        r.text()
    );
    assert_eq!(next_entry(3)["from"], "admin");
    // Without metadata, the full entry again.
    assert_eq!(call("DELETE", "").status, 200);
    let e = next_entry(4);
    assert!(
        e.get("from").is_none() && e["request"]["method"] == "POST",
        "{e}"
    );
    assert_eq!(call("GET", "").status, 404);
    // POST has no plugin name to store the metadata under.
    let mut c = Conn::connect(admin);
    c.send(b"POST /apisix/admin/plugin_metadata HTTP/1.1\r\nHost: a\r\nX-API-KEY: k\r\nContent-Length: 2\r\n\r\n{}");
    assert_eq!(c.read_response().status, 405);

    // A logger's own log_format wins over the metadata's.
    let mut own = doc.clone();
    own["services"][0]["routes"][0]["plugins"]["http-logger"]["log_format"] =
        json!({"from": "route"});
    let gw2 = Gateway::start_json(own);
    ask(&gw2, 1);
    let got = posts(&up, 5);
    let e = serde_json::from_slice::<Vec<Value>>(&got[4].body).unwrap()[0].clone();
    assert_eq!(e["from"], "route", "{e}");

    let mut bad = doc.clone();
    bad["plugin_metadata"] = json!({"limit-count": {}});
    assert_refused(&bad, "plugin_metadata.limit-count", "not supported");
    bad["plugin_metadata"] =
        json!({"kafka-logger": {"log_format": {"x": "$host"}, "max_pending_entries": 0}});
    assert_refused(
        &bad,
        "plugin_metadata.kafka-logger.max_pending_entries",
        "must be >= 1",
    );
}

/// The plugin metadata's `max_pending_entries` bounds what a logger holds
/// unsent: with the endpoint stuck on the first batch, entries past the
/// limit are dropped, counted and reported once; when the endpoint
/// answers, what was kept is sent and new entries are taken again. Set
/// and refused over the Admin API too.
#[test]
fn max_pending_entries_drops_what_a_stuck_endpoint_cannot_take() {
    let m = mocks(&["a"]);
    // Holds every POST until the test lets go of `release`.
    let (release, hold) = flume::unbounded::<()>();
    let up = Upstream::start(move |_, s| {
        let _ = hold.recv();
        let _ = write!(s, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        true
    });
    let mut doc = logged_route(
        &m,
        json!({"uri": format!("http://{}/", up.addr), "batch_max_size": 1, "timeout": 60}),
    );
    doc["plugin_metadata"] = json!({"http-logger": {"max_pending_entries": 3}});
    doc["gateway"]["admin"] = json!({"listen": "127.0.0.1:0", "key": "k"});
    let gw = Gateway::start_json(doc);
    let logger = "http logger (route/ai-route)";
    let pending = || -> u64 {
        let text = Conn::connect(gw.metrics_addr.unwrap())
            .get("/metrics")
            .text();
        let line = format!("ringway_logger_pending_entries{{logger=\"{logger}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&line))
            .unwrap_or_else(|| panic!("no {line} in {text}"))
            .parse()
            .unwrap()
    };

    ask(&gw, 1);
    assert_eq!(posts(&up, 1).len(), 1, "{}", gw.stderr());
    // One in flight: two more fit, seven of nine are dropped.
    ask(&gw, 9);
    assert_eq!(
        logger_metric(&gw, logger, "dropped", 7),
        7,
        "{}",
        gw.stderr()
    );
    assert_eq!(pending(), 3);
    assert!(
        gw.wait_for_log("max pending entries limit exceeded", Duration::from_secs(5)),
        "{}",
        gw.stderr()
    );
    // Requests were never held up meanwhile.
    assert_eq!(up.requests().len(), 1);

    drop(release);
    assert_eq!(posts(&up, 3).len(), 3);
    assert_eq!(logger_metric(&gw, logger, "sent", 3), 3);
    ask(&gw, 1);
    assert_eq!(posts(&up, 4).len(), 4);
    assert_eq!(logger_metric(&gw, logger, "dropped", 8), 7);
    assert_eq!(pending(), 0);

    // Over the Admin API: refused with its path, accepted when valid.
    let admin = gw.admin_addr.expect("admin listener");
    let put = |body: &str| {
        let mut c = Conn::connect(admin);
        c.send(format!("PUT /apisix/admin/plugin_metadata/http-logger HTTP/1.1\r\nHost: a\r\nX-API-KEY: k\r\nContent-Length: {}\r\n\r\n{body}", body.len()).as_bytes());
        c.read_response()
    };
    let r = put(r#"{"max_pending_entries": 0}"#);
    assert_eq!(r.status, 400);
    assert!(
        r.text()
            .contains("plugin_metadata.http-logger.max_pending_entries"),
        "{}",
        r.text()
    );
    assert_eq!(put(r#"{"max_pending_entries": 100}"#).status, 200);
    ask(&gw, 1);
    assert_eq!(posts(&up, 5).len(), 5);
}
