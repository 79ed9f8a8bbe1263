//! The configuration file is re-read on `SIGHUP` and when it changes; an
//! invalid edit never replaces the running configuration; a request in
//! flight across a reload finishes whole; the Admin API's changes are
//! kept beside the file and survive both a reload and a restart.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::ai::{chat_url, instance, mocks, Faults, ASK, ASK_STREAM};
use common::{admin, Conn, Gateway};
use serde_json::{json, Value};

/// A file with one service and an ai-proxy-multi route per uri (route
/// id = its uri without the slash), to the mock's instance `a`.
fn file(m: &mock_llm::MockServer, uris: &[&str], weight: i64, admin: bool) -> String {
    let plugin = json!({"instances": [instance("a", 1, &chat_url(m, "a"), "gpt-4o")]});
    let mut plugin = plugin;
    plugin["instances"][0]["weight"] = json!(weight);
    let routes: Vec<Value> = uris
        .iter()
        .map(|u| json!({"name": &u[1..], "uris": [u], "plugins": {"ai-proxy-multi": plugin}}))
        .collect();
    let mut gateway = json!({"listen": ["127.0.0.1:0"], "workers": 2,
        "metrics": {"enabled": false}, "status": {"enabled": false}});
    gateway["admin"] = if admin {
        admin::enabled()
    } else {
        json!({"enabled": false})
    };
    let doc = json!({"gateway": gateway, "services": [{"name": "s", "routes": routes}]});
    serde_yaml_ng::to_string(&doc).unwrap()
}

fn start(text: &str) -> Gateway {
    // The harness writes its own file; ours replaces it before the start.
    let gw = Gateway::start_with(common::gateway::GatewayConfig {
        body: String::new(),
        ..Default::default()
    });
    std::fs::write(gw.config_path(), text).unwrap();
    gw.restart()
}

fn status(gw: &Gateway, path: &str) -> u16 {
    Conn::connect(gw.addr).post_json(path, ASK).status
}

/// Waits until `path` answers `want` (the file is checked every second).
fn until(gw: &Gateway, path: &str, want: u16) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if status(gw, path) == want {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

#[test]
fn a_changed_file_is_served_an_invalid_one_refused_and_a_stream_in_flight_finishes() {
    let m = mocks(&["a"]);
    // A stream of 30 tokens 60 ms apart: nearly two seconds in flight.
    m.instance("a").set_faults(Faults {
        itl_ms: Some(60),
        tokens: Some(30),
        ..Default::default()
    });
    let gw = start(&file(&m, &["/one"], 1, false));
    assert_eq!(status(&gw, "/one"), 200);
    assert_eq!(status(&gw, "/two"), 404);
    let addr = gw.addr;
    let stream = std::thread::spawn(move || Conn::connect(addr).post_json("/one", ASK_STREAM));
    std::thread::sleep(Duration::from_millis(300));

    // An edit: picked up without a signal.
    std::fs::write(gw.config_path(), file(&m, &["/one", "/two"], 1, false)).unwrap();
    assert!(until(&gw, "/two", 200), "the new route is served");
    assert!(gw.wait_for_log(
        "configuration reloaded (the file changed)",
        Duration::from_secs(5)
    ));

    // An invalid edit, then SIGHUP: refused, named, and the running
    // configuration keeps serving.
    std::fs::write(gw.config_path(), file(&m, &["/one"], -1, false)).unwrap();
    gw.signal(libc::SIGHUP);
    assert!(
        gw.wait_for_log("configuration reload refused", Duration::from_secs(5)),
        "{}",
        gw.stderr()
    );
    let log = gw.stderr();
    assert!(log.contains("ringway.yaml"), "names the file: {log}");
    assert!(
        log.contains("instances[0].weight"),
        "names the field: {log}"
    );
    assert_eq!(
        status(&gw, "/two"),
        200,
        "the previous configuration serves"
    );

    // The stream that started before both finished whole.
    let r = stream.join().unwrap();
    assert_eq!(r.status, 200);
    let (_, tokens) = common::ai::streamed_content(&r.text());
    assert_eq!(tokens, 31, "the role's event and 30 tokens: {}", r.text());
    assert!(r.text().contains("[DONE]"));

    // Fixed and signalled: served again.
    std::fs::write(gw.config_path(), file(&m, &["/three"], 1, false)).unwrap();
    gw.signal(libc::SIGHUP);
    assert!(until(&gw, "/three", 200));
    assert_eq!(status(&gw, "/two"), 404);
}

#[test]
fn admin_api_changes_survive_a_reload_and_a_restart() {
    let m = mocks(&["a"]);
    let gw = start(&file(&m, &["/one", "/gone"], 1, true));
    let route = json!({
        "uri": "/added",
        "plugins": {"ai-proxy-multi": {"instances": [instance("a", 1, &chat_url(&m, "a"), "gpt-4o")]}},
    });
    let r = admin::call(&gw, "PUT", "/apisix/admin/routes/added", &route.to_string());
    assert_eq!(r.status, 201, "{}", r.text());
    let r = admin::call(&gw, "DELETE", "/apisix/admin/routes/gone", "");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(status(&gw, "/added"), 200);
    assert_eq!(status(&gw, "/gone"), 404);

    // Kept beside the file, readable by its owner only (consumers' keys
    // would be in it).
    let saved = gw.dir.path().join("ringway.yaml.admin.json");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&saved).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    // The file changes: the Admin API's changes still apply over it.
    std::fs::write(
        gw.config_path(),
        file(&m, &["/one", "/gone", "/three"], 1, true),
    )
    .unwrap();
    assert!(until(&gw, "/three", 200));
    assert_eq!(status(&gw, "/added"), 200);
    assert_eq!(status(&gw, "/gone"), 404, "a deletion stays deleted");

    // And after a restart.
    let gw = gw.restart();
    assert!(gw.wait_for_log(
        "applied the Admin API's saved changes",
        Duration::from_secs(5)
    ));
    for (path, want) in [
        ("/one", 200),
        ("/three", 200),
        ("/added", 200),
        ("/gone", 404),
    ] {
        assert_eq!(status(&gw, path), want, "{path}");
    }
    let r = admin::call(&gw, "GET", "/apisix/admin/routes/added", "");
    assert_eq!(r.status, 200, "{}", r.text());
}
