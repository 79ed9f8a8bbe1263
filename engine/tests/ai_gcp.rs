//! vertex-ai with `auth.gcp`: a service account exchanged for OAuth access
//! tokens at a local token endpoint (mock-llm's), signed RS256, cached for
//! all workers and refreshed `expire_early_secs` before expiry.
#![allow(clippy::disallowed_types, clippy::unwrap_used)]

mod common;

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::ai::{ai_config, ASK};
use common::{Conn, Gateway};
use mock_llm::{InstanceConfig, MockServer};
use serde_json::{json, Value};

const KEY: &str = include_str!("fixtures/gcp-test-key.pem");
const PUBLIC: &[u8] = include_bytes!("fixtures/gcp-test-key.rsapub.der");

#[test]
fn service_account_tokens_are_fetched_verified_cached_and_refreshed() {
    let m = MockServer::builder()
        .instance(InstanceConfig {
            token_expires_in: 61,
            ..InstanceConfig::new("vertex")
        })
        .spawn()
        .unwrap();
    let url = m.instance("vertex").url();
    let sa = json!({
        "type": "service_account", "project_id": "p1", "client_email": "gw@p1.iam.gserviceaccount.com",
        "private_key": KEY, "token_uri": format!("{url}/oauth2/token"),
    });
    let inst = json!({
        "name": "vertex", "provider": "vertex-ai", "weight": 1,
        "provider_conf": {"project_id": "p1", "region": "us-central1"},
        "auth": {"gcp": {"service_account_json": sa.to_string(), "expire_early_secs": 60}},
        "options": {"model": "google/gemini-2.0-flash"},
        "override": {"endpoint": format!("{url}/v1/projects/p1/locations/us-central1/endpoints/openapi/chat/completions")},
    });
    let gw = Gateway::start_json(ai_config(
        &["/v1/chat/completions"],
        json!({"instances": [inst]}),
    ));
    for _ in 0..3 {
        let r = Conn::connect(gw.addr).post_json("/v1/chat/completions", ASK);
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let a = m.instance("vertex");
    assert_eq!(
        a.stats().token_requests,
        1,
        "the token is cached across requests and workers"
    );
    let reqs = a.requests();
    let token_req = reqs.iter().find(|r| r.path == "/oauth2/token").unwrap();
    let chats: Vec<_> = reqs
        .iter()
        .filter(|r| r.path.ends_with("/chat/completions"))
        .collect();
    assert!(chats
        .iter()
        .all(|r| r.header("authorization") == Some("Bearer mock-token-1")));
    assert_eq!(chats[0].json()["model"], "google/gemini-2.0-flash");

    // The assertion is a JWT signed by the service account's key.
    let assertion = token_req
        .body
        .split('&')
        .find_map(|p| p.strip_prefix("assertion="))
        .unwrap();
    let parts: Vec<&str> = assertion.split('.').collect();
    assert_eq!(parts.len(), 3);
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    assert_eq!(header["alg"], "RS256");
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    assert_eq!(claims["iss"], "gw@p1.iam.gserviceaccount.com");
    assert_eq!(
        claims["scope"],
        "https://www.googleapis.com/auth/cloud-platform"
    );
    assert_eq!(claims["aud"], format!("{url}/oauth2/token"));
    let key = ring::signature::UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        PUBLIC,
    );
    let signed = format!("{}.{}", parts[0], parts[1]);
    key.verify(
        signed.as_bytes(),
        &URL_SAFE_NO_PAD.decode(parts[2]).unwrap(),
    )
    .expect("valid signature");

    // expires_in 61 minus expire_early_secs 60: refreshed after a second.
    std::thread::sleep(Duration::from_millis(1200));
    let r = Conn::connect(gw.addr).post_json("/v1/chat/completions", ASK);
    assert_eq!(r.status, 200);
    assert_eq!(a.stats().token_requests, 2);
    let last = a
        .requests()
        .into_iter()
        .rev()
        .find(|r| r.path.ends_with("/chat/completions"))
        .unwrap();
    assert_eq!(last.header("authorization"), Some("Bearer mock-token-2"));
}

#[test]
fn broken_service_accounts_are_config_errors() {
    let (code, out) = common::gateway::check(
        "services:\n  - name: s\n    routes:\n      - name: r\n        uris: [\"/x\"]\n        plugins:\n          ai-proxy-multi:\n            instances:\n              - name: v\n                provider: vertex-ai\n                weight: 1\n                provider_conf: {project_id: p, region: r}\n                auth: {gcp: {service_account_json: \"{}\"}}\n",
    );
    assert_eq!(code, 2);
    assert!(
        out.contains("instances[0].auth.gcp.service_account_json: not a service-account JSON"),
        "{out}"
    );
}

/// A token endpoint that claims its token lasts u64::MAX seconds: an
/// `Instant` that far ahead panicked in the worker. The lifetime is held
/// to a day, and the worker (one, so nothing else could answer) serves on.
#[test]
fn an_absurd_token_lifetime_does_not_take_the_worker_down() {
    let m = MockServer::builder()
        .instance(InstanceConfig {
            token_expires_in: u64::MAX,
            ..InstanceConfig::new("vertex")
        })
        .spawn()
        .unwrap();
    let url = m.instance("vertex").url();
    let sa = json!({
        "type": "service_account", "project_id": "p1", "client_email": "gw@p1.iam.gserviceaccount.com",
        "private_key": KEY, "token_uri": format!("{url}/oauth2/token"),
    });
    let inst = json!({
        "name": "vertex", "provider": "vertex-ai", "weight": 1,
        "provider_conf": {"project_id": "p1", "region": "us-central1"},
        "auth": {"gcp": {"service_account_json": sa.to_string()}},
        "options": {"model": "google/gemini-2.0-flash"},
        "override": {"endpoint": format!("{url}/v1/projects/p1/locations/us-central1/endpoints/openapi/chat/completions")},
    });
    let mut doc = ai_config(&["/v1/chat/completions"], json!({"instances": [inst]}));
    doc["gateway"]["workers"] = json!(1);
    let gw = Gateway::start_json(doc);
    for _ in 0..3 {
        let r = Conn::connect(gw.addr).post_json("/v1/chat/completions", ASK);
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert_eq!(m.instance("vertex").stats().token_requests, 1, "cached");
}
