//! key-auth end to end: APISIX's 401 bodies, keys from header or query,
//! hide_credentials, consumers from ADC `credentials` and consumer plugins.
#![allow(clippy::disallowed_types)]

mod common;

use common::gateway::check;
use common::{client, Conn, Gateway, Upstream};

fn config(up: &Upstream, hide: bool) -> String {
    format!(
        r#"services:
  - name: s
    upstream:
      nodes: [{node}]
    routes:
      - name: r
        uris: ["/*"]
        plugins:
          key-auth: {{hide_credentials: {hide}}}
consumers:
  - username: johndoe
    credentials:
      - name: primary
        type: key-auth
        config: {{key: john-key}}
  - username: janedoe
    plugins:
      key-auth: {{key: "jane key+1"}}
"#,
        node = up.node_yaml()
    )
}

#[test]
fn missing_and_invalid_keys_get_apisix_bodies() {
    let up = Upstream::echo();
    let gw = Gateway::start(&config(&up, false));
    let r = client::get(gw.addr, "/x");
    assert_eq!(r.status, 401);
    assert_eq!(
        r.json(),
        serde_json::json!({"message": "Missing API key in request"})
    );
    let mut c = Conn::connect(gw.addr);
    c.send(b"GET /x HTTP/1.1\r\nHost: a\r\napikey: wrong\r\n\r\n");
    let r = c.read_response();
    assert_eq!(r.status, 401);
    assert_eq!(
        r.json(),
        serde_json::json!({"message": "Invalid API key in request"})
    );
    // The connection survives a 401.
    c.send(b"GET /x HTTP/1.1\r\nHost: a\r\napikey: john-key\r\n\r\n");
    let r = c.read_response();
    assert_eq!(r.status, 200);
    assert!(up.requests().len() == 1);
}

#[test]
fn keys_from_header_or_query_and_credentials_can_be_hidden() {
    let up = Upstream::echo();
    let gw = Gateway::start(&config(&up, false));
    let mut c = Conn::connect(gw.addr);
    c.send(b"GET /x?apikey=jane%20key%2B1&keep=1 HTTP/1.1\r\nHost: a\r\n\r\n");
    let r = c.read_response();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["target"], "/x?apikey=jane%20key%2B1&keep=1");
    c.send(b"GET /x HTTP/1.1\r\nHost: a\r\nApiKey: john-key\r\n\r\n");
    let r = c.read_response();
    assert_eq!(r.json()["headers"]["apikey"], "john-key");

    let hidden = Gateway::start(&config(&up, true));
    let mut c = Conn::connect(hidden.addr);
    c.send(b"GET /x?a=1&apikey=john-key&b=2 HTTP/1.1\r\nHost: a\r\n\r\n");
    let r = c.read_response();
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["target"], "/x?a=1&b=2");
    c.send(b"GET /x HTTP/1.1\r\nHost: a\r\napikey: john-key\r\n\r\n");
    let r = c.read_response();
    assert!(r.json()["headers"].get("apikey").is_none(), "{}", r.text());
}

#[test]
fn duplicate_keys_and_bad_credentials_are_config_errors() {
    let (code, out) = check(
        "consumers:\n  - username: a\n    credentials: [{name: k, type: key-auth, config: {key: same}}]\n  - username: b\n    credentials: [{name: k, type: key-auth, config: {key: same}}]\n",
    );
    assert_eq!(code, 2);
    assert!(
        out.contains(
            "consumers[1].credentials[0].config.key: this key is already used by consumer `a`"
        ),
        "{out}"
    );
    let (code, out) = check("consumers:\n  - username: a\n    credentials: [{name: k, type: basic-auth, config: {username: u}}]\n");
    assert_eq!(code, 2);
    assert!(
        out.contains(
            "consumers[0].credentials[0].config: credential type `basic-auth` is not supported"
        ),
        "{out}"
    );
    let (code, out) = check(
        "consumers:\n  - username: a\n    credentials: [{name: k, type: key-auth, config: {}}]\n",
    );
    assert_eq!(code, 2);
    assert!(
        out.contains("consumers[0].credentials[0].config: missing field `key`"),
        "{out}"
    );
}
