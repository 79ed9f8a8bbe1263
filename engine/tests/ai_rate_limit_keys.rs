//! A rule keyed by what clients choose (`$http_x_*`, rotating addresses)
//! cannot grow the local windows without bound: a rule keeps at most
//! `max_keys` live windows, sheds a tenth when full (counted), and every
//! request is still answered.
#![allow(clippy::disallowed_types, clippy::unwrap_used)]

mod common;

use common::ai::{mocks, seed_priority_route, ASK};
use common::{assert_refused, Conn, Gateway};
use serde_json::json;

fn shed(gw: &Gateway) -> u64 {
    let text = Conn::connect(gw.metrics_addr.unwrap())
        .get("/metrics")
        .text();
    text.lines()
        .find_map(|l| l.strip_prefix("ringway_rate_limit_keys_shed_total "))
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn rotating_keys_are_capped_at_max_keys_and_counted() {
    let m = mocks(&["openai", "deepseek"]);
    let mut doc = seed_priority_route(
        &m,
        json!({"rules": [{"count": 1000, "time_window": 3600, "key": "$http_x_user",
                          "max_keys": 20}]}),
        true,
    );
    doc["gateway"] = json!({"metrics": {"listen": "127.0.0.1:0"}});
    let gw = Gateway::start_json(doc);
    let mut c = Conn::connect(gw.addr);
    for i in 0..100 {
        let user = format!("user-{i}");
        let r = c.post_json_with("/anything", ASK, &[("x-user", &user)]);
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("x-ai-1-ratelimit-limit"), Some("1000"));
    }
    // 100 keys with live windows through a map of 20: shed as it filled.
    let n = shed(&gw);
    assert!((80..=100).contains(&n), "{n} windows shed");
}

#[test]
fn max_keys_is_checked() {
    let m = mocks(&["openai", "deepseek"]);
    for (rule_extra, field) in [
        (json!({"max_keys": 0}), "max_keys"),
        (json!({"max_keys": 20_000_000}), "max_keys"),
    ] {
        let mut rule = json!({"count": 10, "time_window": 60, "key": "$http_x_user"});
        for (k, v) in rule_extra.as_object().unwrap() {
            rule[k] = v.clone();
        }
        let doc = seed_priority_route(&m, json!({"rules": [rule]}), true);
        assert_refused(&doc, "ai-rate-limiting", field);
    }
    let doc = seed_priority_route(
        &m,
        json!({"policy": "redis", "redis_host": "127.0.0.1",
               "rules": [{"count": 10, "time_window": 60, "key": "$http_x_user", "max_keys": 5}]}),
        true,
    );
    assert_refused(&doc, "ai-rate-limiting", "max_keys");
}
