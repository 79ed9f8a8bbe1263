//! API-driven standalone (`deployment: {role: traditional,
//! role_traditional: {config_provider: json}}`): `PUT /apisix/admin/configs`
//! replaces the whole configuration the way the APISIX Ingress Controller
//! (through ADC's `apisix-standalone` backend) sends it — services with
//! their upstream as an `upstreams` entry of the same id, routes by
//! `service_id`, consumers with their credentials among them, every item
//! with a `modifiedIndex`, a `_conf_version` per collection, an `X-Digest`.
//! A bad document is refused naming the resource and field and changes
//! nothing; the accepted one survives a restart.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::ai::{chat_url, instance, mocks, ASK};
use common::{admin, Conn, Gateway};
use mock_llm::client::Response;
use serde_json::{json, Value};

/// ADC stamps versions with the time in milliseconds.
const V1: i64 = 1_760_000_000_000;

/// A request to the Admin API with `headers` besides the key.
fn call(gw: &Gateway, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Response {
    let mut c = Conn::connect(gw.admin_addr.expect("admin API"));
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    c.send(
        format!(
            "{method} {path} HTTP/1.1\r\nHost: admin\r\nX-API-KEY: {}\r\n{extra}Content-Length: {}\r\n\r\n{body}",
            admin::KEY,
            body.len()
        )
        .as_bytes(),
    );
    c.read_response_to(method == "HEAD")
}

fn put(gw: &Gateway, doc: &Value, digest: &str) -> Response {
    call(
        gw,
        "PUT",
        "/apisix/admin/configs",
        &[("Content-Type", "application/json"), ("X-Digest", digest)],
        &doc.to_string(),
    )
}

/// What the ingress controller sends for one Gateway API backend with an
/// AI route (key-auth) and a plain route, and one consumer with a key.
fn document(m: &mock_llm::MockServer, weight: i64, version: i64) -> Value {
    let mut ai = json!({"instances": [instance("a", 1, &chat_url(m, "a"), "gpt-4o")]});
    ai["instances"][0]["weight"] = json!(weight);
    let addr = m.instance("a").addr();
    json!({
        "services": [{"id": "svc-ai", "name": "default_llm", "modifiedIndex": version,
                      "upstream_id": "svc-ai", "labels": {"k8s/kind": "HTTPRoute"}}],
        "upstreams": [{"id": "svc-ai", "name": "default_llm", "modifiedIndex": version,
                       "type": "roundrobin", "scheme": "http",
                       "nodes": [{"host": addr.ip().to_string(), "port": addr.port(), "weight": 100}]}],
        "routes": [
            {"id": "r-chat", "name": "chat", "modifiedIndex": version, "service_id": "svc-ai",
             "uris": ["/v1/chat/completions"], "methods": ["POST"], "status": 1,
             "plugins": {"ai-proxy-multi": ai, "key-auth": {}}},
            {"id": "r-health", "name": "health", "modifiedIndex": version, "service_id": "svc-ai",
             "uris": ["/health"], "methods": ["GET"], "status": 1},
        ],
        "consumers": [
            {"username": "jack", "modifiedIndex": version},
            {"id": "jack/credentials/k1", "name": "k1", "modifiedIndex": version,
             "plugins": {"key-auth": {"key": "jack-key"}}},
        ],
        "routes_conf_version": version,
        "services_conf_version": version,
        "upstreams_conf_version": version,
        "consumers_conf_version": version,
        "global_rules_conf_version": 0,
        "plugin_metadata_conf_version": 0,
        "ssls_conf_version": 0,
        "stream_routes_conf_version": 0,
    })
}

fn chat(gw: &Gateway, key: Option<&str>) -> u16 {
    let headers: Vec<(&str, &str)> = key.map(|k| ("apikey", k)).into_iter().collect();
    Conn::connect(gw.addr)
        .post_json_with("/v1/chat/completions", ASK, &headers)
        .status
}

fn start(m: &mock_llm::MockServer) -> Gateway {
    // The file: the gateway section and a first configuration of one route.
    Gateway::start_json(json!({
        "deployment": {"role": "traditional", "role_traditional": {"config_provider": "json"}},
        "gateway": {"admin": admin::enabled()},
        "services": [{"name": "file", "routes": [{"name": "from-file", "uris": ["/v1/chat/completions"],
            "plugins": {"ai-proxy-multi": {"instances": [instance("a", 1, &chat_url(m, "a"), "gpt-4o")]}}}]}],
    }))
}

#[test]
fn a_pushed_document_replaces_the_configuration_and_survives_a_restart() {
    let m = mocks(&["a"]);
    let gw = start(&m);
    // Before any PUT: the file's configuration, every version 0.
    assert_eq!(chat(&gw, None), 200);
    let r = call(&gw, "GET", "/apisix/admin/configs", &[], "");
    assert_eq!(r.status, 200, "{}", r.text());
    let doc = r.json();
    assert_eq!(doc["routes_conf_version"], 0);
    assert_eq!(doc["routes"][0]["id"], "from-file");
    assert_eq!(r.header("x-digest"), None);
    // ADC's ping and version probe.
    assert_eq!(call(&gw, "HEAD", "/apisix/admin", &[], "").status, 200);

    // The controller's push.
    let r = put(&gw, &document(&m, 1, V1), "digest-1");
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(r.header("x-digest"), Some("digest-1"));
    let modified: u64 = r.header("x-last-modified").unwrap().parse().unwrap();
    assert!(modified > 1_700_000_000, "{modified}");
    assert_eq!(chat(&gw, None), 401, "key-auth is in force");
    assert_eq!(chat(&gw, Some("wrong")), 401);
    assert_eq!(chat(&gw, Some("jack-key")), 200);
    assert_eq!(Conn::connect(gw.addr).get("/health").status, 200);

    // Read back: the document, its versions and its digest.
    let r = call(&gw, "GET", "/apisix/admin/configs", &[], "");
    assert_eq!(r.header("x-digest"), Some("digest-1"));
    let back = r.json();
    assert_eq!(back["routes_conf_version"], V1);
    assert_eq!(back["global_rules_conf_version"], 0);
    assert_eq!(back["secrets_conf_version"], 1, "not sent: one more");
    assert_eq!(back["routes"].as_array().unwrap().len(), 2);
    assert_eq!(back["consumers"][1]["id"], "jack/credentials/k1");
    assert_eq!(back["X-Digest"], "digest-1");
    let r = call(
        &gw,
        "GET",
        "/apisix/admin/configs",
        &[("Accept", "application/yaml")],
        "",
    );
    assert_eq!(r.header("content-type"), Some("application/yaml"));
    let yaml: Value = serde_yaml_ng::from_str(&r.text()).unwrap();
    assert_eq!(yaml["routes"][0]["id"], "r-chat");
    let r = call(&gw, "HEAD", "/apisix/admin/configs", &[], "");
    assert_eq!((r.status, r.header("x-digest")), (200, Some("digest-1")));
    // A resource reads as in any mode; writing one is refused.
    let r = call(&gw, "GET", "/apisix/admin/routes/r-chat", &[], "");
    assert_eq!(r.status, 200, "{}", r.text());
    let r = call(&gw, "DELETE", "/apisix/admin/routes/r-chat", &[], "");
    assert_eq!(r.status, 405, "{}", r.text());
    assert!(r.json()["error_msg"]
        .as_str()
        .unwrap()
        .contains("PUT /apisix/admin/configs"));

    // The same digest again: nothing to do.
    let r = put(&gw, &document(&m, 1, V1 + 1), "digest-1");
    assert_eq!(r.status, 204);

    // A bad document: refused with the resource and the field, the
    // running configuration untouched.
    let r = put(&gw, &document(&m, -1, V1 + 1), "digest-2");
    assert_eq!(r.status, 400, "{}", r.text());
    let e = r.json();
    let msg = e["error_msg"].as_str().unwrap();
    assert!(
        msg.contains("routes[0].plugins.ai-proxy-multi.instances[0].weight"),
        "{msg}"
    );
    assert_eq!(
        (&e["resource_type"], &e["index"], &e["id"]),
        (&json!("routes"), &json!(0), &json!("r-chat"))
    );
    assert_eq!(chat(&gw, Some("jack-key")), 200);
    let r = call(&gw, "HEAD", "/apisix/admin/configs", &[], "");
    assert_eq!(r.header("x-digest"), Some("digest-1"));
    // A version going back, in APISIX's words.
    let r = put(&gw, &document(&m, 1, V1 - 1), "digest-3");
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["error_msg"],
        format!("routes_conf_version must be greater than or equal to ({V1})")
    );
    // No digest: refused as APISIX does.
    let r = call(
        &gw,
        "PUT",
        "/apisix/admin/configs",
        &[],
        &document(&m, 1, V1 + 1).to_string(),
    );
    assert_eq!(
        (r.status, r.json()["error_msg"].clone()),
        (400, json!("missing digest header"))
    );

    // SIGHUP does not put the file's configuration back.
    gw.signal(libc::SIGHUP);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(chat(&gw, None), 401);

    // Kept beside the file, readable by its owner only (keys are in it).
    let kept = gw.dir.path().join("ringway.yaml.configs.json");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&kept).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    // A restart serves the accepted document from the first request.
    let gw = gw.restart();
    assert_eq!(chat(&gw, Some("jack-key")), 200);
    assert_eq!(chat(&gw, None), 401);
    assert!(gw.wait_for_log(
        "serving the configuration last accepted",
        Duration::from_secs(5)
    ));
    let r = call(&gw, "HEAD", "/apisix/admin/configs", &[], "");
    assert_eq!(r.header("x-digest"), Some("digest-1"));
    assert_eq!(
        r.header("x-last-modified").unwrap().parse::<u64>().unwrap(),
        modified
    );
    assert_eq!(put(&gw, &document(&m, 1, V1), "digest-1").status, 204);

    // The next push (YAML this time) replaces it whole: an empty routes
    // collection at a new version empties it.
    let mut next = document(&m, 1, V1 + 5);
    next["routes"] = json!([]);
    let r = call(
        &gw,
        "PUT",
        "/apisix/admin/configs?wait=5000",
        &[
            ("Content-Type", "application/yaml"),
            ("X-Digest", "digest-4"),
        ],
        &serde_yaml_ng::to_string(&next).unwrap(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(chat(&gw, Some("jack-key")), 404);
}

#[test]
fn validate_checks_without_publishing() {
    let m = mocks(&["a"]);
    let gw = start(&m);
    let path = "/apisix/admin/configs/validate";
    let json_type = [("Content-Type", "application/json")];
    let r = call(
        &gw,
        "POST",
        path,
        &json_type,
        &document(&m, 1, V1).to_string(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let mut bad = document(&m, 1, V1);
    bad["consumers"][1]["id"] = json!("ghost/credentials/k1");
    let r = call(&gw, "POST", path, &json_type, &bad.to_string());
    assert_eq!(r.status, 400, "{}", r.text());
    let e = r.json();
    assert_eq!(e["error_msg"], "Configuration validation failed");
    assert_eq!(e["errors"][0]["resource_type"], "consumers");
    assert_eq!(e["errors"][0]["index"], 1);
    assert!(
        e["errors"][0]["error"]
            .as_str()
            .unwrap()
            .contains("consumer `ghost` does not exist"),
        "{e}"
    );
    // Nothing was published by either.
    assert_eq!(chat(&gw, None), 200);
    let r = call(&gw, "GET", "/apisix/admin/configs", &[], "");
    assert_eq!(r.json()["routes"][0]["id"], "from-file");
}

#[test]
fn an_api_driven_node_without_its_admin_api_is_refused() {
    let doc = json!({
        "deployment": {"role": "traditional", "role_traditional": {"config_provider": "yaml"}},
        "gateway": {"admin": {"enabled": false}},
    });
    let (code, out) = common::gateway::check(&serde_yaml_ng::to_string(&doc).unwrap());
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("gateway.admin") && out.contains("/apisix/admin/configs"),
        "{out}"
    );
}
