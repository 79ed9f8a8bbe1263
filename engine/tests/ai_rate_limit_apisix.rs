//! apache/apisix's own `t/plugin/ai-rate-limiting.t` cases, reproduced
//! through the binary with mock-llm as the providers.
#![allow(clippy::disallowed_types, clippy::unwrap_used)]

mod common;

use common::ai::{chat_url, mocks, ASK};
use common::{Conn, Gateway};
use serde_json::json;

/// apache/apisix `t/plugin/ai-rate-limiting.t` TEST 13–14: a plugin-level
/// `limit` without `instances` gives each instance a budget of its own
/// (not one shared budget): gpt-4 answers, then, its budget spent, gpt-3,
/// then both are spent and the request is refused with `rejected_code`.
/// The same with the counters in Redis, per request and leased.
#[test]
fn plugin_level_limit_is_a_budget_per_instance() {
    let redis = common::redis::RedisServer::start(&[]);
    let in_redis = json!({"policy": "redis", "redis_host": "127.0.0.1", "redis_port": redis.port});
    let mut leased = in_redis.clone();
    leased["redis_lease_tokens"] = json!(5);
    for (n, store) in [json!({}), in_redis, leased].into_iter().enumerate() {
        let m = mocks(&["gpt4", "gpt3"]);
        let inst = |name: &str, priority: i64, model: &str, mock: &str| {
            json!({"name": name, "provider": "openai", "weight": 1, "priority": priority,
                   "auth": {"header": {"Authorization": "Bearer token"}},
                   "options": {"model": model}, "override": {"endpoint": chat_url(&m, mock)}})
        };
        let mut limit = json!({"limit": 10, "time_window": 60});
        for (k, v) in store.as_object().unwrap() {
            limit[k] = v.clone();
        }
        let gw = Gateway::start_json(json!({"services": [{"name": "s", "routes": [{
            "name": format!("r{n}"), "uris": ["/ai"], "methods": ["POST"],
            "plugins": {
                "ai-proxy-multi": {"fallback_strategy": "instance_health_and_rate_limiting",
                    "instances": [inst("openai-gpt4", 1, "gpt-4", "gpt4"), inst("openai-gpt3", 0, "gpt-3", "gpt3")]},
                "ai-rate-limiting": limit,
            },
        }]}]}));
        let ask = || Conn::connect(gw.addr).post_json("/ai", ASK);
        let r = ask();
        assert_eq!(r.status, 200, "{store}: {}", r.text());
        assert_eq!(r.json()["model"], "gpt-4", "{store}");
        // A Redis budget is charged right after the answer.
        std::thread::sleep(std::time::Duration::from_millis(100));
        let r = ask();
        assert_eq!(r.status, 200, "{store}: {}", r.text());
        assert_eq!(r.json()["model"], "gpt-3", "{store}");
        assert_eq!(r.header("x-ai-ratelimit-limit-openai-gpt3"), Some("10"));
        std::thread::sleep(std::time::Duration::from_millis(100));
        let r = ask();
        assert_eq!(r.status, 503, "{store}: {}", r.text());
        assert_eq!(
            (
                m.instance("gpt4").requests().len(),
                m.instance("gpt3").requests().len()
            ),
            (1, 1),
            "{store}"
        );
    }
}
