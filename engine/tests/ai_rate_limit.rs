//! ai-rate-limiting end to end with mock-llm: the seed's "priority with
//! rate limiting" example (an exhausted instance makes ai-proxy-multi fall
//! back, streams charged too), `rejected_code` without fallback, the seed's
//! "Load Balance and Rate Limit by Consumers" example verbatim (key-auth
//! johndoe/janedoe, each limited on its own instance), and a budget shared
//! exactly by both workers under concurrency.
#![allow(clippy::disallowed_types, clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;

use common::ai::{chat_url, mocks, seed_priority_route, ASK, ASK_STREAM};
use common::{Conn, Gateway};
use serde_json::{json, Value};

fn seed_limit() -> Value {
    json!({"instances": [{"name": "openai-instance", "limit": 10, "time_window": 60}],
           "limit_strategy": "total_tokens"})
}

#[test]
fn exhausted_instance_falls_back_to_the_next_priority() {
    let m = mocks(&["openai", "deepseek"]);
    let gw = Gateway::start_json(seed_priority_route(&m, seed_limit(), true));
    let r = Conn::connect(gw.addr).post_json("/anything", ASK);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["model"], "gpt-4");
    assert!(r.json()["usage"]["total_tokens"].as_u64().unwrap() > 10);
    assert_eq!(r.header("x-ai-ratelimit-limit-openai-instance"), Some("10"));
    assert_eq!(
        r.header("x-ai-ratelimit-remaining-openai-instance"),
        Some("10")
    );
    let reset: u64 = r
        .header("x-ai-ratelimit-reset-openai-instance")
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&reset), "{reset}");
    // Within the window every request (new connections: both workers) goes
    // to the lower-priority instance.
    for _ in 0..4 {
        let r = Conn::connect(gw.addr).post_json("/anything", ASK);
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["model"], "deepseek-chat");
        assert_eq!(r.header("x-ringway-instance"), Some("deepseek-instance"));
    }
    assert_eq!(m.instance("openai").requests().len(), 1);
}

#[test]
fn streamed_usage_is_charged() {
    let m = mocks(&["openai", "deepseek"]);
    let gw = Gateway::start_json(seed_priority_route(&m, seed_limit(), true));
    let r = Conn::connect(gw.addr).post_json("/anything", ASK_STREAM);
    assert_eq!(r.status, 200);
    assert!(r.text().contains("[DONE]"));
    assert_eq!(r.header("x-ringway-instance"), Some("openai-instance"));
    // The stream's usage (from the final chunk) exhausted the budget.
    let r = Conn::connect(gw.addr).post_json("/anything", ASK_STREAM);
    assert_eq!(r.header("x-ringway-instance"), Some("deepseek-instance"));
}

#[test]
fn without_fallback_an_exhausted_instance_answers_rejected_code() {
    let m = mocks(&["openai", "deepseek"]);
    let mut limit = seed_limit();
    limit["rejected_code"] = json!(429);
    limit["rejected_msg"] = json!("quota used up, try later");
    let gw = Gateway::start_json(seed_priority_route(&m, limit, false));
    assert_eq!(
        Conn::connect(gw.addr).post_json("/anything", ASK).status,
        200
    );
    let r = Conn::connect(gw.addr).post_json("/anything", ASK);
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.json(), json!({"error_msg": "quota used up, try later"}));
    assert_eq!(
        r.header("x-ai-ratelimit-remaining-openai-instance"),
        Some("0")
    );
    assert_eq!(m.instance("deepseek").requests().len(), 0);

    // Default rejected_code is 503 with a JSON body; headers can be hidden.
    let m = mocks(&["openai", "deepseek"]);
    let gw = Gateway::start_json(seed_priority_route(
        &m,
        json!({"limit": 1, "time_window": 60, "show_limit_quota_header": false}),
        false,
    ));
    let r = Conn::connect(gw.addr).post_json("/anything", ASK);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-ai-ratelimit-limit-openai-instance"), None);
    let r = Conn::connect(gw.addr).post_json("/anything", ASK);
    assert_eq!(r.status, 503);
    assert!(r.json()["error_msg"]
        .as_str()
        .unwrap()
        .contains("rate limit"));
}

/// The seed's consumers example: the route (key-auth + two weight-0
/// instances, fallback on rate limiting) and both consumers, verbatim.
const CONSUMERS_EXAMPLE: &str = r#"
consumers:
  - username: johndoe
    plugins:
      ai-rate-limiting:
        instances:
          - name: openai-instance
            limit: 10
            time_window: 60
        rejected_code: 429
        limit_strategy: total_tokens
    credentials:
      - name: key-auth
        type: key-auth
        config:
          key: john-key
  - username: janedoe
    plugins:
      ai-rate-limiting:
        instances:
          - name: deepseek-instance
            limit: 10
            time_window: 60
        rejected_code: 429
        limit_strategy: total_tokens
    credentials:
      - name: key-auth
        type: key-auth
        config:
          key: jane-key
services:
  - name: ai-proxy-multi-service
    routes:
      - name: ai-proxy-multi-route
        uris:
          - /anything
        methods:
          - POST
        plugins:
          key-auth: {}
          ai-proxy-multi:
            fallback_strategy:
              - rate_limiting
            instances:
              - name: openai-instance
                provider: openai
                weight: 0
                auth:
                  header:
                    Authorization: "Bearer ${OPENAI_API_KEY}"
                options:
                  model: gpt-4
                override:
                  endpoint: "${OPENAI_URL}"
              - name: deepseek-instance
                provider: deepseek
                weight: 0
                auth:
                  header:
                    Authorization: "Bearer ${DEEPSEEK_API_KEY}"
                options:
                  model: deepseek-chat
                override:
                  endpoint: "${DEEPSEEK_URL}"
"#;

/// A gateway on `body` (the consumers example or a variant), its
/// `${…}` variables pointing at the mocks.
fn start_example(m: &mock_llm::MockServer, body: String) -> Gateway {
    Gateway::start_with(common::gateway::GatewayConfig {
        // The metrics listener too: consumers' budgets are scraped.
        gateway_extra: "metrics: {listen: \"127.0.0.1:0\"}".into(),
        body,
        env: vec![
            ("OPENAI_API_KEY".into(), "sk-o".into()),
            ("DEEPSEEK_API_KEY".into(), "sk-d".into()),
            ("OPENAI_URL".into(), chat_url(m, "openai")),
            ("DEEPSEEK_URL".into(), chat_url(m, "deepseek")),
        ],
        ..Default::default()
    })
}

fn instances_used(gw: &Gateway, key: &str, n: usize) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for _ in 0..n {
        let r = Conn::connect(gw.addr).post_json_with("/anything", ASK, &[("apikey", key)]);
        assert_eq!(r.status, 200, "{}", r.text());
        *seen
            .entry(r.header("x-ringway-instance").unwrap().to_owned())
            .or_default() += 1;
    }
    seen
}

#[test]
fn seed_consumers_are_each_limited_on_their_own_instance() {
    let m = mocks(&["openai", "deepseek"]);
    let gw = start_example(&m, CONSUMERS_EXAMPLE.into());
    let r = Conn::connect(gw.addr).post_json("/anything", ASK);
    assert_eq!(r.status, 401);
    assert_eq!(r.json(), json!({"message": "Missing API key in request"}));
    let r = Conn::connect(gw.addr).post_json_with("/anything", ASK, &[("apikey", "nope")]);
    assert_eq!(r.status, 401);
    assert_eq!(r.json(), json!({"message": "Invalid API key in request"}));

    // Equal weights alternate; once john's first openai answer used his 10
    // tokens there, all his traffic goes to deepseek.
    let john = instances_used(&gw, "john-key", 8);
    assert_eq!(john.get("openai-instance"), Some(&1), "{john:?}");
    assert_eq!(john.get("deepseek-instance"), Some(&7), "{john:?}");
    // Jane has her own budget, on deepseek: john's use does not touch it,
    // and her openai traffic is unlimited.
    let jane = instances_used(&gw, "jane-key", 8);
    assert_eq!(jane.get("deepseek-instance"), Some(&1), "{jane:?}");
    assert_eq!(jane.get("openai-instance"), Some(&7), "{jane:?}");
    // Only the instance a consumer is limited on reports quota headers.
    let r = Conn::connect(gw.addr).post_json_with("/anything", ASK, &[("apikey", "john-key")]);
    assert_eq!(r.header("x-ai-ratelimit-limit-openai-instance"), None);
    // Each consumer's budget is a gauge of its own, spent.
    let text = Conn::connect(gw.metrics_addr.expect("metrics address"))
        .get("/metrics")
        .text();
    for (who, inst) in [
        ("johndoe", "openai-instance"),
        ("janedoe", "deepseek-instance"),
    ] {
        for (family, want) in [("limit", 10), ("remaining", 0)] {
            let line = format!(
                "ringway_ai_budget_{family}_tokens{{owner=\"consumer/{who}\",instance=\"{inst}\"}} {want}\n"
            );
            assert!(text.contains(&line), "no {line} in\n{text}");
        }
    }
}

/// A consumer's `ai-rate-limiting` replaces the route's (APISIX's
/// consumer-over-route merge): with a route budget of 10 tokens per
/// instance, john (limited on openai only) still has deepseek unlimited,
/// while a consumer without a limiter of its own gets the route's.
#[test]
fn a_consumers_rate_limit_replaces_the_routes() {
    let m = mocks(&["openai", "deepseek"]);
    let body = CONSUMERS_EXAMPLE
        .replace(
            "          key-auth: {}",
            "          key-auth: {}\n          ai-rate-limiting: {limit: 10, time_window: 60, rejected_code: 503}",
        )
        .replace(
            "consumers:\n",
            "consumers:\n  - username: plain\n    credentials:\n      - name: key-auth\n        type: key-auth\n        config:\n          key: plain-key\n",
        );
    let gw = start_example(&m, body);
    let john = instances_used(&gw, "john-key", 8);
    assert_eq!(john.get("openai-instance"), Some(&1), "{john:?}");
    assert_eq!(john.get("deepseek-instance"), Some(&7), "{john:?}");
    // The route's budget: one answer on each instance, then none left.
    let plain = instances_used(&gw, "plain-key", 2);
    assert_eq!(plain.len(), 2, "{plain:?}");
    let r = Conn::connect(gw.addr).post_json_with("/anything", ASK, &[("apikey", "plain-key")]);
    assert_eq!(r.status, 503, "{}", r.text());
}

/// APISIX's anonymous-consumer example: requests without a key go through
/// as consumer `anonymous`, whose own, smaller budget applies to them
/// alone; keyed consumers keep theirs.
#[test]
fn an_anonymous_consumer_has_its_own_budget() {
    let m = mocks(&["openai", "deepseek"]);
    let body = CONSUMERS_EXAMPLE
        .replace(
            "          key-auth: {}",
            "          key-auth: {anonymous_consumer: anonymous}",
        )
        .replace(
            "consumers:\n",
            "consumers:\n  - username: anonymous\n    plugins:\n      ai-rate-limiting: {limit: 10, time_window: 60, rejected_code: 429}\n",
        );
    let gw = start_example(&m, body);
    // `limit` without `instances`: 10 tokens for each instance (as in
    // APISIX), so two anonymous answers spend them, one on each.
    let mut c = Conn::connect(gw.addr);
    let first = c.post_json("/anything", ASK);
    assert_eq!(first.status, 200);
    let second = c.post_json("/anything", ASK);
    assert_eq!(second.status, 200, "{}", second.text());
    assert_ne!(
        first.header("x-ringway-instance"),
        second.header("x-ringway-instance")
    );
    let r = c.post_json("/anything", ASK);
    assert_eq!(r.status, 429, "{}", r.text());
    let r = Conn::connect(gw.addr).post_json_with("/anything", ASK, &[("apikey", "nope")]);
    assert_eq!(r.status, 429, "a wrong key is anonymous too");
    // John is not anonymous: his budget, untouched.
    let john = instances_used(&gw, "john-key", 2);
    assert_eq!(john.values().sum::<usize>(), 2, "{john:?}");
}

#[test]
fn budget_is_exact_across_workers_under_concurrency() {
    let m = mocks(&["openai", "deepseek"]);
    // Tokens one request costs, read from the mock directly.
    let direct = Conn::connect(m.instance("openai").addr()).post_json(
        "/v1/chat/completions",
        &ASK.replace("{\"messages\"", "{\"model\":\"gpt-4\",\"messages\""),
    );
    let cost = direct.json()["usage"]["total_tokens"].as_u64().unwrap();
    let per_budget = 20;
    let gw = Gateway::start_json(seed_priority_route(
        &m,
        json!({"instances": [{"name": "openai-instance", "limit": per_budget * cost, "time_window": 600}]}),
        false,
    ));
    let threads = 8;
    let addr = gw.addr;
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            std::thread::spawn(move || {
                let mut ok = 0u64;
                for _ in 0..12 {
                    match Conn::connect(addr).post_json("/anything", ASK).status {
                        200 => ok += 1,
                        503 => {}
                        s => panic!("unexpected status {s}"),
                    }
                }
                ok
            })
        })
        .collect();
    let ok: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    // The budget was used up (never under-counted)…
    assert!(ok >= per_budget, "only {ok} requests passed");
    // …and overshot by at most the requests in flight when it ran out: one
    // per client thread. Per-worker counters would let ~2x through.
    assert!(
        ok < per_budget + threads,
        "{ok} requests passed a budget of {per_budget}"
    );
}

#[test]
fn metrics_count_requests_tokens_and_rejections() {
    let m = mocks(&["openai", "deepseek"]);
    let mut cfg = seed_priority_route(&m, json!({"limit": 1, "time_window": 60}), false);
    cfg["gateway"] = json!({"metrics": {"listen": "127.0.0.1:0"}});
    let gw = Gateway::start_json(cfg);
    let r = Conn::connect(gw.addr).post_json("/anything", ASK_STREAM);
    assert_eq!(r.status, 200);
    let r = Conn::connect(gw.addr).post_json("/anything", ASK);
    assert_eq!(r.status, 503);
    let addr = gw.metrics_addr.expect("metrics address announced");
    // A worker records a request's metrics once its answer has gone out,
    // so a scrape right after the reply may run a moment ahead of them.
    let mut text = Conn::connect(addr).get("/metrics").text();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !text.contains("\nringway_ai_requests_total 2\n") && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(20));
        text = Conn::connect(addr).get("/metrics").text();
    }
    let value = |name: &str| -> f64 {
        let line = text
            .lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
            .unwrap_or_else(|| panic!("{name} missing in\n{text}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert_eq!(value("ringway_ai_requests_total"), 2.0);
    assert_eq!(value("ringway_ai_stream_requests_total"), 1.0);
    assert_eq!(value("ringway_http_responses_total{class=\"5xx\"}"), 1.0);
    assert_eq!(value("ringway_ai_rate_limited_total"), 1.0);
    assert!(value("ringway_llm_completion_tokens_total") >= 4.0);
    assert_eq!(value("ringway_llm_ttft_seconds_count"), 1.0);
    assert_eq!(
        value("ringway_instance_healthy{owner=\"route/ai-proxy-multi-route\",instance=\"openai-instance\"}"),
        1.0
    );
    // Each instance's budget of 1 token: the stream spent openai's, the
    // refused request never reached deepseek.
    let budget = |family: &str, inst: &str| {
        value(&format!(
            "ringway_ai_budget_{family}_tokens{{owner=\"route/ai-proxy-multi-route\",instance=\"{inst}\"}}"
        ))
    };
    assert_eq!(budget("limit", "openai-instance"), 1.0);
    assert_eq!(budget("remaining", "openai-instance"), 0.0);
    assert_eq!(budget("limit", "deepseek-instance"), 1.0);
    assert_eq!(budget("remaining", "deepseek-instance"), 1.0);
    assert_eq!(Conn::connect(addr).get("/other").status, 404);
}

/// `rules` (APISIX 3.16+): each value of a key has its own budget across
/// all instances; `count` can come from a variable; a rule whose key
/// variables are unset does not apply; headers are `X-AI-<prefix>-…`, the
/// prefix being `header_prefix` or the rule's position.
#[test]
fn rules_give_every_key_value_its_own_budget() {
    let m = mocks(&["openai", "deepseek"]);
    let gw = Gateway::start_json(seed_priority_route(
        &m,
        json!({"rules": [
                  {"count": 30, "time_window": 60, "key": "$http_x_user", "header_prefix": "user"},
                  {"count": "$http_x_team_budget", "time_window": 60, "key": "team-$http_x_team"},
               ],
               "rejected_code": 429}),
        true,
    ));
    let ask =
        |headers: &[(&str, &str)]| Conn::connect(gw.addr).post_json_with("/anything", ASK, headers);
    // Each answer costs 19 tokens (15 prompt + 4 completion): alice gets
    // two requests out of 30, the third is refused before any instance.
    for remaining in ["30", "11"] {
        let r = ask(&[("x-user", "alice")]);
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("x-ai-user-ratelimit-limit"), Some("30"));
        assert_eq!(r.header("x-ai-user-ratelimit-remaining"), Some(remaining));
        assert_eq!(
            r.header("x-ai-2-ratelimit-limit"),
            None,
            "no team: rule 2 off"
        );
    }
    let upstream_before =
        m.instance("openai").requests().len() + m.instance("deepseek").requests().len();
    let r = ask(&[("x-user", "alice")]);
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.header("x-ai-user-ratelimit-remaining"), Some("0"));
    assert_eq!(
        m.instance("openai").requests().len() + m.instance("deepseek").requests().len(),
        upstream_before,
        "a spent rule never reaches an instance"
    );
    // Bob has his own budget; a request with no user is not limited.
    assert_eq!(ask(&[("x-user", "bob")]).status, 200);
    let r = ask(&[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-ai-user-ratelimit-limit"), None);

    // The team rule reads its budget from a header: 20 tokens, one answer.
    let team = [("x-team", "blue"), ("x-team-budget", "20")];
    let r = ask(&team);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-ai-2-ratelimit-limit"), Some("20"));
    assert_eq!(r.header("x-ai-2-ratelimit-remaining"), Some("20"));
    let r = ask(&team);
    assert_eq!(r.status, 200, "19 of 20 used: still room");
    assert_eq!(r.header("x-ai-2-ratelimit-remaining"), Some("1"));
    let r = ask(&team);
    assert_eq!(r.status, 429);
    assert_eq!(r.header("x-ai-2-ratelimit-remaining"), Some("0"));
    // A budget that is not a number: the rule does not apply.
    let r = ask(&[("x-team", "blue"), ("x-team-budget", "lots")]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-ai-2-ratelimit-limit"), None);
}

/// `limit_strategy: expression`: a `cost_expr` prices each answer from the
/// provider's own usage fields — here cached prompt tokens at a tenth —
/// for JSON and streamed answers, OpenAI and Anthropic instances.
#[test]
fn cost_expr_prices_answers_from_the_providers_usage_fields() {
    let m = common::ai::MockServer::builder()
        .instance(
            common::ai::InstanceConfig::new("oai")
                .tokens(4)
                .cached_tokens(10),
        )
        .instance(
            common::ai::InstanceConfig::new("claude")
                .tokens(4)
                .cached_tokens(100),
        )
        .spawn()
        .unwrap();
    let route = |name: &str, provider: &str, endpoint: String, limit: u64, expr: &str| {
        json!({"name": name, "uris": [format!("/{name}")], "methods": ["POST"], "plugins": {
            "ai-proxy-multi": {"instances": [{"name": provider, "provider": provider, "weight": 1,
                "auth": {"header": {"Authorization": "Bearer k", "x-api-key": "k"}},
                "options": {"model": "m"}, "override": {"endpoint": endpoint}}]},
            "ai-rate-limiting": {"limit": limit, "time_window": 60,
                "limit_strategy": "expression", "cost_expr": expr}}})
    };
    let gw = Gateway::start_json(json!({"services": [{"name": "s", "routes": [
        // 15 prompt tokens, 10 of them cached, 4 completion: 15 - 9 + 4 = 10.
        route("oai", "openai", chat_url(&m, "oai"), 25,
              "prompt_tokens - cached_tokens * 0.9 + completion_tokens"),
        // 100 cache reads at a tenth and 4 output tokens: 14.
        route("claude", "anthropic", format!("{}/v1/messages", m.instance("claude").url()), 100,
              "cache_read_input_tokens * 0.1 + output_tokens"),
    ]}]}));
    let remaining = |path: &str, body: &str, instance: &str| {
        let r = Conn::connect(gw.addr).post_json(path, body);
        let left = r
            .header(&format!("x-ai-ratelimit-remaining-{instance}"))
            .map(str::to_owned);
        (r.status, left)
    };
    assert_eq!(remaining("/oai", ASK, "openai"), (200, Some("25".into())));
    assert_eq!(
        remaining("/oai", ASK_STREAM, "openai"),
        (200, Some("15".into()))
    );
    // The streamed question is shorter: 10 prompt tokens, so it cost 5.
    assert_eq!(remaining("/oai", ASK, "openai"), (200, Some("10".into())));
    assert_eq!(remaining("/oai", ASK, "openai").0, 503, "25 of 25 used");

    assert_eq!(
        remaining("/claude", ASK, "anthropic"),
        (200, Some("100".into()))
    );
    assert_eq!(
        remaining("/claude", ASK_STREAM, "anthropic"),
        (200, Some("86".into()))
    );
    assert_eq!(
        remaining("/claude", ASK, "anthropic"),
        (200, Some("72".into()))
    );
}
