//! The seed document's health-check example (ai-proxy-multi, ADC tab),
//! kept verbatim in `fixtures/seed-health-check.adc.yaml`: it loads as
//! written, as APISIX loads it (APISIX requires `override.endpoint` of no
//! provider but `vertex-ai` without `provider_conf`; an `openai-compatible`
//! instance without one is accepted and its requests fail), and with its
//! endpoints pointed at mock-llm it runs, its HTTPS probe taking the
//! plain-HTTP instance out of rotation.
#![allow(clippy::disallowed_types, clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::ai::{chat_url, mocks, ASK};
use common::gateway::{check_env, GatewayConfig};
use common::{Conn, Gateway};
use serde_json::Value;

const EXAMPLE: &str = include_str!("fixtures/seed-health-check.adc.yaml");

/// The variables the example names.
const ENV: [(&str, &str); 2] = [
    ("YOUR_LLM_API_KEY", "sk-test"),
    ("YOUR_LLM_MODEL", "m-test"),
];

fn env() -> Vec<(String, String)> {
    ENV.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn seed_health_check_example_loads_as_written() {
    let (code, out) = check_env(EXAMPLE, &ENV);
    assert_eq!(code, 0, "{out}");

    // Running as written: requests to instances without an endpoint fail
    // with a message saying so (APISIX: 500, its driver has no host).
    let gw = Gateway::start_with(GatewayConfig {
        body: EXAMPLE.to_owned(),
        env: env(),
        ..Default::default()
    });
    let r = Conn::connect(gw.addr).post_json("/anything", ASK);
    assert_eq!(r.status, 500, "{}", r.text());
    let msg = r.json()["error_msg"].as_str().unwrap().to_owned();
    assert!(
        msg.contains("has no endpoint") && msg.contains("override.endpoint"),
        "{msg}"
    );
    assert!(
        gw.wait_for_log("health checks skipped", Duration::from_secs(10)),
        "{}",
        gw.stderr()
    );
}

#[test]
fn seed_health_check_example_on_mock_llm() {
    let m = mocks(&["one", "two"]);
    let mut doc: Value = serde_yaml_ng::from_str(EXAMPLE).unwrap();
    let instances = &mut doc["services"][0]["routes"][0]["plugins"]["ai-proxy-multi"]["instances"];
    instances[0]["override"] = serde_json::json!({"endpoint": chat_url(&m, "one")});
    instances[1]["override"] = serde_json::json!({"endpoint": chat_url(&m, "two")});
    let gw = Gateway::start_json_env(doc, env());
    // The HTTPS probe cannot succeed on the plain-HTTP mock: after the
    // default two TCP failures the instance is out.
    assert!(
        gw.wait_for_log("instance is unhealthy", Duration::from_secs(15)),
        "{}",
        gw.stderr()
    );
    let mut seen = BTreeMap::new();
    for _ in 0..4 {
        let r = Conn::connect(gw.addr).post_json("/anything", ASK);
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["model"], "m-test");
        *seen
            .entry(r.header("x-ringway-instance").unwrap().to_owned())
            .or_insert(0) += 1;
    }
    assert_eq!(seen, BTreeMap::from([("llm-instance-1".to_owned(), 4)]));
    let auth = m.instance("one").requests()[0]
        .header("authorization")
        .map(str::to_owned);
    assert_eq!(auth.as_deref(), Some("Bearer sk-test"));
}
