//! ai-proxy-multi balancing: consistent hashing (sticky, minimal remapping
//! when an instance is unavailable, by header or consumer) and SSE
//! heartbeats on quiet streams.
#![allow(clippy::disallowed_types, clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::ai::{ai_config, chat_url, instance, ASK};
use common::{Conn, Gateway};
use mock_llm::{Faults, InstanceConfig, MockServer};
use serde_json::json;

fn post_with(c: &mut Conn, header: &str) -> mock_llm::client::Response {
    c.send(format!("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{header}Content-Length: {}\r\n\r\n{ASK}", ASK.len()).as_bytes());
    c.read_response()
}

#[test]
fn chash_on_a_header_is_sticky_and_remaps_minimally() {
    let m = MockServer::builder()
        .instance(InstanceConfig::new("a"))
        .instance(InstanceConfig::new("b"))
        .instance(InstanceConfig::new("c"))
        .spawn()
        .unwrap();
    let insts: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|n| instance(n, 1, &chat_url(&m, n), &format!("model-{n}")))
        .collect();
    let gw = Gateway::start_json(ai_config(
        &["/v1/chat/completions"],
        json!({"balancer": {"algorithm": "chash", "hash_on": "header", "key": "x-session-id"}, "fallback_strategy": ["http_5xx"], "instances": insts}),
    ));
    let mut owner: BTreeMap<String, String> = BTreeMap::new();
    for i in 0..60 {
        let session = format!("session-{i}");
        let r = post_with(
            &mut Conn::connect(gw.addr),
            &format!("x-session-id: {session}\r\n"),
        );
        owner.insert(session, r.header("x-ringway-instance").unwrap().to_owned());
    }
    let used: BTreeSet<&String> = owner.values().collect();
    assert_eq!(used.len(), 3, "keys spread over every instance: {owner:?}");
    // Sticky: the same session always lands on the same instance, any worker.
    for (session, inst) in owner.iter().take(20) {
        for _ in 0..3 {
            let r = post_with(
                &mut Conn::connect(gw.addr),
                &format!("x-session-id: {session}\r\n"),
            );
            assert_eq!(r.header("x-ringway-instance"), Some(inst.as_str()));
        }
    }
    // b fails: only b's sessions move, the others stay put.
    m.instance("b").set_faults(Faults {
        status: Some(503),
        ..Default::default()
    });
    for (session, inst) in &owner {
        let r = post_with(
            &mut Conn::connect(gw.addr),
            &format!("x-session-id: {session}\r\n"),
        );
        let now = r.header("x-ringway-instance").unwrap();
        if inst != "b" {
            assert_eq!(now, inst, "{session} moved although its instance is up");
        } else {
            assert_ne!(now, "b");
        }
    }
}

#[test]
fn chash_by_consumer_keeps_each_consumer_on_one_instance() {
    let m = MockServer::builder()
        .instance(InstanceConfig::new("a"))
        .instance(InstanceConfig::new("b"))
        .spawn()
        .unwrap();
    let insts: Vec<_> = ["a", "b"]
        .iter()
        .map(|n| instance(n, 1, &chat_url(&m, n), &format!("model-{n}")))
        .collect();
    let mut consumers = Vec::new();
    for i in 0..12 {
        consumers.push(json!({"username": format!("user{i}"), "credentials": [{"name": "k", "type": "key-auth", "config": {"key": format!("key-{i}")}}]}));
    }
    let mut doc = ai_config(
        &["/v1/chat/completions"],
        json!({"balancer": {"algorithm": "chash", "hash_on": "consumer"}, "instances": insts}),
    );
    doc["services"][0]["routes"][0]["plugins"]["key-auth"] = json!({});
    doc["consumers"] = json!(consumers);
    let gw = Gateway::start_json(doc);
    let mut seen = BTreeSet::new();
    for i in 0..12 {
        let first = post_with(&mut Conn::connect(gw.addr), &format!("apikey: key-{i}\r\n"));
        let inst = first.header("x-ringway-instance").unwrap().to_owned();
        seen.insert(inst.clone());
        for _ in 0..3 {
            let r = post_with(&mut Conn::connect(gw.addr), &format!("apikey: key-{i}\r\n"));
            assert_eq!(r.header("x-ringway-instance"), Some(inst.as_str()));
        }
    }
    assert_eq!(seen.len(), 2, "twelve consumers use both instances");
}

#[test]
fn quiet_streams_get_heartbeat_comments() {
    let m = MockServer::builder()
        .instance(
            InstanceConfig::new("a")
                .tokens(3)
                .itl(Duration::from_millis(900)),
        )
        .spawn()
        .unwrap();
    let gw = Gateway::start_json(ai_config(
        &["/v1/chat/completions"],
        json!({"sse_heartbeat_interval": 0.25, "instances": [instance("a", 1, &chat_url(&m, "a"), "model-a")]}),
    ));
    let r = Conn::connect(gw.addr).post_json(
        "/v1/chat/completions",
        r#"{"stream":true,"messages":[{"role":"user","content":"hi"}]}"#,
    );
    let text = r.text();
    assert!(text.matches(": ping\n\n").count() >= 4, "{text}");
    assert!(text.contains("data: [DONE]"));
}
