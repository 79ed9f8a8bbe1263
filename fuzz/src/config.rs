//! Oracles for what operators write: the configuration file (YAML or JSON
//! text → interpolation → ADC → compiled snapshot) and every Admin API
//! resource body (through `admin::api::handle`, the Admin API's own
//! validation and commit), and the whole document of API-driven
//! standalone (`PUT /apisix/admin/configs`). Property: no panic, no abort, and a refusal
//! says where — a field path, or a line for YAML syntax.

use std::sync::{Arc, OnceLock};

use http::Method;
use ringway::admin::{api, Store};
use ringway::config::{ConfigError, GatewaySettings, Resources};
use ringway::snapshot::{self, SnapshotCell};
use ringway::upstream::TlsClients;

/// No DNS (configurations name arbitrary hosts), once per process.
fn offline() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(ringway::net::dns::disable_dns);
}

/// `${VAR}`: names of even length are set (to `1`, so a number or a
/// string), odd ones are not (an error naming the variable).
fn lookup(name: &str) -> Option<String> {
    (name.len() % 2 == 0).then(|| "1".to_owned())
}

/// The configuration file.
pub fn config_file(data: &[u8]) {
    offline();
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = snapshot::load_str(text, &lookup) {
        let placed = !e.path.is_empty() || e.reason == "the document must be a mapping";
        assert!(
            placed && !e.reason.is_empty(),
            "refused without a place: {e:?}"
        );
        if e.reason.starts_with("invalid YAML") {
            assert!(
                e.path.starts_with("line "),
                "YAML error without a line: {e:?}"
            );
        }
    }
}

/// What the Admin API is asked, by the input's first byte.
const REQUESTS: &[(&str, &str)] = &[
    ("PUT", "/apisix/admin/routes/r1"),
    ("POST", "/apisix/admin/routes"),
    ("PATCH", "/apisix/admin/routes/r0"),
    ("PUT", "/apisix/admin/services/s1"),
    ("PATCH", "/apisix/admin/services/s0"),
    ("PUT", "/apisix/admin/upstreams/u1"),
    ("PATCH", "/apisix/admin/upstreams/u0"),
    ("PUT", "/apisix/admin/consumers"),
    ("PUT", "/apisix/admin/consumers/jack"),
    ("PUT", "/apisix/admin/consumers/jack/credentials"),
    ("PUT", "/apisix/admin/consumers/jack/credentials/c1"),
    ("PUT", "/apisix/admin/global_rules/g1"),
    ("PUT", "/apisix/admin/plugin_metadata/http-logger"),
    ("PUT", "/apisix/admin/plugin_metadata/kafka-logger"),
];

/// What every request finds: one of each resource to refer to or patch.
const BASE: &str = r#"{"id": "u0", "nodes": {"127.0.0.1:1980": 1}}"#;

/// Resource-level refusals: about the resource as a whole (what a route
/// lacks to be matched or answered), so they have no field of their own.
/// Every other refusal of an Admin API body names its field.
const WHOLE: &[&str] = &[
    "missing field `uris` (or `uri`)",
    "route has nothing to answer it",
];

struct Base {
    resources: Resources,
    gateway: Arc<GatewaySettings>,
    tls: TlsClients,
}

fn base() -> &'static Base {
    static BASE_STATE: OnceLock<Base> = OnceLock::new();
    BASE_STATE.get_or_init(|| {
        offline();
        let file = "services:\n  - name: s0\n    upstream: {nodes: [{host: 127.0.0.1, port: 1980, weight: 1}]}\n    routes:\n      - {name: r0, uris: [/r0]}\nconsumers:\n  - username: jack\n    credentials:\n      - {name: c0, type: key-auth, config: {key: jack-key}}\n";
        let loaded = snapshot::load_str(file, &lookup).expect("the base configuration loads");
        let tls = loaded.snapshot.tls.clone();
        let cell = Arc::new(SnapshotCell::new(loaded.snapshot));
        let mut store = Store::new(cell, loaded.gateway.clone());
        let r = api::handle(
            &mut store,
            &Method::PUT,
            "/apisix/admin/upstreams/u0",
            BASE.as_bytes(),
        );
        assert_eq!(r.status, 201, "{}", r.body);
        Base {
            resources: (*store.res).clone(),
            gateway: loaded.gateway,
            tls,
        }
    })
}

/// A fresh store over the base resources (each input starts from them).
fn store() -> Store {
    let b = base();
    let snapshot = snapshot::compile(
        Arc::new(b.resources.clone()),
        b.gateway.clone(),
        b.tls.clone(),
        None,
    )
    .expect("the base compiles");
    Store::new(Arc::new(SnapshotCell::new(snapshot)), b.gateway.clone())
}

fn names_a_field(e: &ConfigError) -> bool {
    !e.reason.is_empty() && (!e.path.is_empty() || WHOLE.iter().any(|w| e.reason.contains(w)))
}

/// An Admin API resource body: the first byte picks the resource and
/// method, the rest is the body.
pub fn admin_resource(input: &[u8]) {
    let Some((pick, body)) = input.split_first() else {
        return;
    };
    let (method, path) = REQUESTS[usize::from(*pick) % REQUESTS.len()];
    let method = Method::from_bytes(method.as_bytes()).expect("a method");
    let mut store = store();
    let r = api::handle(&mut store, &method, path, body);
    match r.status {
        200 | 201 => {
            // What was taken reads back.
            let key = r.body["key"].as_str().unwrap_or_default().to_owned();
            let at = key.replacen("/apisix/", "/apisix/admin/", 1);
            let back = api::handle(&mut store, &Method::GET, &at, b"");
            assert_eq!(back.status, 200, "{at}: {}", back.body);
        }
        400 => {
            let msg = r.body["error_msg"].as_str().unwrap_or_default();
            assert!(!msg.is_empty(), "a 400 without a message: {}", r.body);
            if let Some(e) = &r.refused {
                assert!(names_a_field(e), "refused without naming a field: {e:?}");
            }
        }
        404 => {}
        s => panic!("{method} {path}: status {s}: {}", r.body),
    }
}

/// `cost_expr`: the first line is the expression, the rest a usage object.
/// Any text parses (within the length and depth bounds) or is refused with
/// where; a parsed one evaluates, twice the same, on any usage.
pub fn cost_expr(data: &[u8]) {
    use ringway::plugins::ai_rate_limiting::cost_expr::{CostExpr, MAX_LEN};
    let (src, usage) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b"{}"[..]),
    };
    let Ok(src) = std::str::from_utf8(src) else {
        return;
    };
    match CostExpr::parse(src) {
        Ok(e) => {
            assert!(src.len() <= MAX_LEN, "took {} bytes", src.len());
            let usage: serde_json::Value = serde_json::from_slice(usage).unwrap_or_else(
                |_| serde_json::json!({"prompt_tokens": 3, "completion_tokens": 5}),
            );
            assert_eq!(e.cost(&usage), e.cost(&usage), "not deterministic");
        }
        Err(msg) => assert!(
            msg.contains("at character") || msg.contains("bytes long"),
            "refused without saying where: {msg}"
        ),
    }
}

/// A store of an API-driven standalone node (no file: nothing is kept).
fn standalone_store() -> Store {
    static GATEWAY: OnceLock<Arc<GatewaySettings>> = OnceLock::new();
    let gateway = GATEWAY.get_or_init(|| {
        offline();
        let file = "deployment: {role: traditional, role_traditional: {config_provider: json}}\n";
        snapshot::load_str(file, &lookup)
            .expect("an empty API-driven node loads")
            .gateway
    });
    let snapshot = snapshot::compile(
        Arc::new(Resources::default()),
        gateway.clone(),
        TlsClients::new(None).expect("the default trust store"),
        None,
    )
    .expect("nothing compiles");
    Store::new(Arc::new(SnapshotCell::new(snapshot)), gateway.clone())
}

/// `PUT /apisix/admin/configs` (API-driven standalone) with the input as
/// its document (JSON, or YAML when the first byte is odd): accepted
/// (`202`) or refused (`400`) naming a field, a version or the body; an
/// accepted document reads back, its digest again is `204`, and the
/// document read back and sent again (new versions, a new digest) serves
/// the same resources.
pub fn standalone_document(input: &[u8]) {
    let Some((pick, body)) = input.split_first() else {
        return;
    };
    let content_type = if pick % 2 == 1 {
        "application/yaml"
    } else {
        "application/json"
    };
    let mut store = standalone_store();
    let put = |store: &mut Store, body: &[u8], digest: &str| {
        let headers = [
            ("Content-Type".to_owned(), content_type.to_owned()),
            ("X-Digest".to_owned(), digest.to_owned()),
        ];
        api::serve(
            store,
            &api::Request {
                method: &Method::PUT,
                path: "/apisix/admin/configs",
                query: None,
                headers: &headers,
                body,
            },
        )
    };
    let r = put(&mut store, body, "d1");
    match r.status {
        202 => {}
        400 => {
            let msg = r.body["error_msg"].as_str().unwrap_or_default();
            assert!(!msg.is_empty(), "a 400 without a message: {}", r.body);
            if let Some(e) = &r.refused {
                assert!(
                    names_a_field(e) || e.reason.contains("_conf_version"),
                    "refused without naming a field: {e:?}"
                );
            }
            return;
        }
        s => panic!("status {s}: {}", r.body),
    }
    let served = (*store.res).clone();
    let get = |store: &mut Store| {
        api::serve(
            store,
            &api::Request {
                method: &Method::GET,
                path: "/apisix/admin/configs",
                query: None,
                headers: &[],
                body: b"",
            },
        )
    };
    let back = get(&mut store);
    assert_eq!(back.status, 200);
    let (_, text) = back.raw.expect("the document");
    assert_eq!(put(&mut store, b"{}", "d1").status, 204, "the same digest");
    // Without its versions, every collection is replaced by what was read.
    let mut doc: serde_json::Value = serde_json::from_slice(&text).expect("JSON");
    let doc = doc.as_object_mut().expect("an object");
    doc.retain(|k, _| !k.ends_with("_conf_version"));
    let text = serde_json::to_vec(doc).expect("JSON");
    let again = api::serve(
        &mut store,
        &api::Request {
            method: &Method::PUT,
            path: "/apisix/admin/configs",
            query: None,
            headers: &[("X-Digest".to_owned(), "d2".to_owned())],
            body: &text,
        },
    );
    assert_eq!(again.status, 202, "read back, refused: {}", again.body);
    assert_eq!(*store.res, served, "read back and sent again, it changed");
}
