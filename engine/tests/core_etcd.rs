//! etcd as the configuration, as an APISIX fleet keeps it (a real etcd,
//! Debian's, started per test): APISIX's keys and JSON shapes are served,
//! a change reaches every node within a second, an invalid key is left
//! out and named while the rest stays live, the Admin API writes there
//! (any node's write reaches all), and an etcd outage leaves every node
//! serving its last good configuration — across a restart too.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::ai::{chat_url, instance, mocks, ASK};
use common::etcd::Etcd;
use common::gateway::GatewayConfig;
use common::{admin, Conn, Gateway};
use serde_json::{json, Value};

/// APISIX's stored JSON of a route to the mock's instance `a`.
fn route(m: &mock_llm::MockServer, uri: &str) -> String {
    json!({
        "uri": uri,
        "plugins": {"ai-proxy-multi": {"instances": [instance("a", 1, &chat_url(m, "a"), "gpt-4o")]}},
    })
    .to_string()
}

fn deployment(etcd: &Etcd, role: &str, extra: &str) -> String {
    format!(
        "deployment:\n  role: {role}\n  role_{role}: {{config_provider: etcd}}\n  etcd:\n    host: [\"{}\"]\n    timeout: 3\n{extra}",
        etcd.endpoint()
    )
}

fn gateway(etcd: &Etcd, role: &str, with_admin: bool) -> Gateway {
    let admin = if with_admin {
        format!("admin: {}", admin::enabled())
    } else {
        "admin: {enabled: false}".to_owned()
    };
    Gateway::start_with(GatewayConfig {
        gateway_extra: format!("{admin}\nmetrics: {{listen: \"127.0.0.1:0\"}}\n"),
        body: deployment(etcd, role, ""),
        ..Default::default()
    })
}

fn status(gw: &Gateway, path: &str) -> u16 {
    Conn::connect(gw.addr).post_json(path, ASK).status
}

/// How long until `path` answers `want` (panics after 10 s).
fn until(gw: &Gateway, path: &str, want: u16) -> Duration {
    let started = Instant::now();
    while status(gw, path) != want {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{path} never answered {want}; log:\n{}",
            gw.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    started.elapsed()
}

fn metric(gw: &Gateway, name: &str) -> u64 {
    let text = Conn::connect(gw.metrics_addr.unwrap())
        .get("/metrics")
        .text();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name}"))
        .parse()
        .unwrap()
}

#[test]
fn etcd_is_the_configuration_and_the_admin_api_writes_there() {
    let m = mocks(&["a"]);
    let etcd = Etcd::start();
    etcd.put("/apisix/routes/1", &route(&m, "/one"));
    let mut bad: Value = serde_json::from_str(&route(&m, "/bad")).unwrap();
    bad["plugins"]["ai-proxy-multi"]["instances"][0]["weight"] = json!(-1);
    etcd.put("/apisix/routes/bad", &bad.to_string());
    etcd.put("/apisix/ssls/1", "{}");
    let gw = gateway(&etcd, "traditional", true);
    assert_eq!(status(&gw, "/one"), 200);
    assert_eq!(status(&gw, "/bad"), 404);
    let log = gw.stderr();
    assert!(
        log.contains("etcd key /apisix/routes/bad left out"),
        "{log}"
    );
    assert!(
        log.contains("instances[0].weight"),
        "names the field: {log}"
    );
    assert_eq!(metric(&gw, "ringway_config_source_up"), 1);

    // An operator's change in etcd: served within a second, and no
    // request fails while changes land.
    let addr = gw.addr;
    let load = std::thread::spawn(move || {
        let (mut ok, mut failed) = (0, 0);
        let end = Instant::now() + Duration::from_millis(1500);
        let mut c = Conn::connect(addr);
        while Instant::now() < end {
            match c.post_json("/one", ASK).status {
                200 => ok += 1,
                _ => failed += 1,
            }
        }
        (ok, failed)
    });
    etcd.put("/apisix/routes/2", &route(&m, "/two"));
    let took = until(&gw, "/two", 200);
    assert!(took < Duration::from_secs(1), "took {took:?}");
    for i in 5..10 {
        etcd.put(
            &format!("/apisix/routes/{i}"),
            &route(&m, &format!("/r{i}")),
        );
    }
    let (ok, failed) = load.join().unwrap();
    assert!(ok > 0 && failed == 0, "{ok} answered, {failed} failed");
    etcd.ctl(&["del", "/apisix/routes/1"]).unwrap();
    until(&gw, "/one", 404);

    // The Admin API writes to etcd, with APISIX's times; served at once.
    let body = json!({"uri": "/three", "plugins": {"ai-proxy-multi": {"instances": [instance("a", 1, &chat_url(&m, "a"), "gpt-4o")]}}});
    let r = admin::call(&gw, "PUT", "/apisix/admin/routes/3", &body.to_string());
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(status(&gw, "/three"), 200, "read your write");
    let stored: Value = serde_json::from_str(&etcd.get("/apisix/routes/3").unwrap()).unwrap();
    assert_eq!(stored["uri"], "/three");
    assert!(stored["create_time"].as_i64().unwrap() > 0);
    // Reads come from etcd: its revisions are the indexes.
    let r = admin::call(&gw, "GET", "/apisix/admin/routes/3", "");
    let v: Value = serde_json::from_str(&r.text()).unwrap();
    let modified = v["modifiedIndex"].as_u64().unwrap();
    assert!(modified > 1, "{v}");
    assert!(metric(&gw, "ringway_config_revision") >= modified);
    // A route written by someone else is listed too.
    let r = admin::call(&gw, "GET", "/apisix/admin/routes", "");
    assert!(r.text().contains("/two"), "{}", r.text());
    // PATCH compares and swaps; an invalid change writes nothing.
    let r = admin::call(
        &gw,
        "PATCH",
        "/apisix/admin/routes/3",
        r#"{"desc": "patched"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let mut invalid = body.clone();
    invalid["plugins"]["ai-proxy-multi"]["instances"][0]["weight"] = json!(-1);
    let r = admin::call(&gw, "PUT", "/apisix/admin/routes/4", &invalid.to_string());
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("weight"), "{}", r.text());
    assert_eq!(etcd.get("/apisix/routes/4"), None);
    // DELETE removes the key.
    let r = admin::call(&gw, "DELETE", "/apisix/admin/routes/3", "");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(etcd.get("/apisix/routes/3"), None);
    assert_eq!(status(&gw, "/three"), 404);
}

#[test]
fn nodes_share_etcd_and_serve_the_last_good_configuration_through_an_outage() {
    let m = mocks(&["a"]);
    let mut etcd = Etcd::start();
    etcd.put("/apisix/routes/1", &route(&m, "/one"));
    let control = gateway(&etcd, "traditional", true);
    let data = gateway(&etcd, "data_plane", false);
    assert_eq!(data.admin_addr, None, "a data plane has no Admin API");
    assert_eq!(status(&data, "/one"), 200);

    // One node's Admin API write reaches the other.
    let body = json!({"uri": "/two", "plugins": {"ai-proxy-multi": {"instances": [instance("a", 1, &chat_url(&m, "a"), "gpt-4o")]}}});
    let r = admin::call(&control, "PUT", "/apisix/admin/routes/2", &body.to_string());
    assert_eq!(r.status, 201, "{}", r.text());
    let took = until(&data, "/two", 200);
    assert!(took < Duration::from_secs(1), "took {took:?}");

    // etcd goes away: both keep serving, the data plane says it is stale,
    // the Admin API says it cannot write.
    etcd.stop();
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(&data, "ringway_config_source_up") != 0 {
        assert!(
            Instant::now() < deadline,
            "never noticed: {}",
            data.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(metric(&data, "ringway_config_source_stale_since_seconds") > 1_700_000_000);
    assert_eq!(status(&data, "/two"), 200);
    assert_eq!(status(&control, "/one"), 200);
    let r = admin::call(&control, "PUT", "/apisix/admin/routes/3", &body.to_string());
    assert_eq!(r.status, 503, "{}", r.text());

    // A node restarted during the outage serves the last good configuration.
    let data = data.restart();
    assert!(data.wait_for_log(
        "serving the last good configuration",
        Duration::from_secs(5)
    ));
    assert_eq!(status(&data, "/two"), 200);

    // etcd comes back: changes flow again.
    etcd.restart();
    etcd.put("/apisix/routes/4", &route(&m, "/four"));
    until(&data, "/four", 200);
    until(&control, "/four", 200);
    assert_eq!(metric(&data, "ringway_config_source_up"), 1);
    assert_eq!(
        metric(&data, "ringway_config_source_stale_since_seconds"),
        0
    );
}

#[test]
fn without_etcd_and_without_a_last_good_configuration_it_refuses_to_start() {
    let mut etcd = Etcd::start();
    let port = etcd.port;
    etcd.stop();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ringway.yaml");
    let text = format!(
        "gateway: {{listen: [\"127.0.0.1:0\"], admin: {{enabled: false}}, metrics: {{enabled: false}}, status: {{enabled: false}}}}\n\
         deployment:\n  role: data_plane\n  role_data_plane: {{config_provider: etcd}}\n  etcd: {{host: [\"http://127.0.0.1:{port}\"], timeout: 1, startup_retry: 1, on_unreachable: refuse}}\n"
    );
    std::fs::write(&file, text).unwrap();
    let out = std::process::Command::new(common::gateway::bin())
        .arg("-c")
        .arg(&file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("deployment.etcd"), "{stderr}");
    assert!(
        stderr.contains("cannot read the configuration from etcd"),
        "{stderr}"
    );
}

#[test]
fn etcd_with_authentication() {
    let m = mocks(&["a"]);
    let etcd = Etcd::start();
    etcd.ctl(&["user", "add", "root", "--new-user-password=s3cret"])
        .unwrap();
    etcd.ctl(&["auth", "enable"]).unwrap();
    let as_root = |args: &[&str]| {
        let mut a = vec!["--user", "root:s3cret"];
        a.extend_from_slice(args);
        etcd.ctl(&a).unwrap()
    };
    as_root(&["put", "/apisix/routes/1", &route(&m, "/one")]);
    let gw = Gateway::start_with(GatewayConfig {
        body: deployment(
            &etcd,
            "data_plane",
            "    user: root\n    password: s3cret\n",
        ),
        ..Default::default()
    });
    assert_eq!(status(&gw, "/one"), 200);
    as_root(&["put", "/apisix/routes/2", &route(&m, "/two")]);
    until(&gw, "/two", 200);
    assert!(
        !gw.stderr().contains("s3cret"),
        "the password is never logged"
    );
}

#[test]
fn etcd_over_tls_with_a_client_certificate() {
    let m = mocks(&["a"]);
    let etcd = Etcd::start_tls();
    etcd.put("/apisix/routes/1", &route(&m, "/one"));
    let (ca, cert, key) = etcd.tls.clone().unwrap();
    let tls = format!(
        "    tls: {{cert: \"{}\", key: \"{}\", sni: localhost}}\n",
        cert.display(),
        key.display()
    );
    let gw = Gateway::start_with(GatewayConfig {
        gateway_extra: format!("ssl_trusted_certificate: \"{}\"\n", ca.display()),
        body: deployment(&etcd, "data_plane", &tls),
        ..Default::default()
    });
    assert_eq!(status(&gw, "/one"), 200);
    etcd.put("/apisix/routes/2", &route(&m, "/two"));
    until(&gw, "/two", 200);
}
