//! The seed document's ai-proxy-multi examples, reproduced end to end with
//! mock-llm as the providers: 8:2 weighted split (exact, across workers,
//! also when configured through the Admin API verbatim), priority with
//! fallback, per-instance max_tokens, embeddings on openai and
//! azure-openai, and the LLM logging variables.
#![allow(clippy::disallowed_types, clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::ai::{ai_config, chat_url, instance, mocks, streamed_content, ASK, ASK_STREAM};
use common::{Conn, Gateway};
use serde_json::{json, Value};

/// Stops the gateway (cleanly) and returns its `n` access-log lines.
fn stop_and_read_log(gw: &mut Gateway, log: &std::path::Path, n: usize) -> Vec<Value> {
    let lines = gw.stop_and_read_log(log);
    assert_eq!(lines.len(), n, "{lines:?}");
    lines
}

fn models_of(gw: &Gateway, n: usize, path: &str) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for _ in 0..n {
        // A new connection each time, so both workers take requests.
        let r = Conn::connect(gw.addr).post_json(path, ASK);
        assert_eq!(r.status, 200, "{}", r.text());
        *seen
            .entry(r.json()["model"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    seen
}

#[test]
fn weighted_split_is_exactly_eight_to_two_across_workers() {
    let m = mocks(&["openai", "deepseek"]);
    let gw = Gateway::start_json(ai_config(
        &["/anything"],
        json!({"instances": [
            instance("openai-instance", 8, &chat_url(&m, "openai"), "gpt-4"),
            instance("deepseek-instance", 2, &chat_url(&m, "deepseek"), "deepseek-chat"),
        ]}),
    ));
    for _ in 0..3 {
        let seen = models_of(&gw, 10, "/anything");
        assert_eq!(
            seen,
            BTreeMap::from([("deepseek-chat".into(), 2), ("gpt-4".into(), 8)])
        );
    }
    // Concurrent clients on both workers: still exact over 40 requests.
    let addr = gw.addr;
    let handles: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(move || {
                let mut c = Conn::connect(addr);
                (0..10)
                    .map(|_| {
                        c.post_json("/anything", ASK).json()["model"]
                            .as_str()
                            .unwrap()
                            .to_owned()
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let all: Vec<String> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    assert_eq!(all.iter().filter(|m| *m == "gpt-4").count(), 32);
    assert_eq!(all.iter().filter(|m| *m == "deepseek-chat").count(), 8);
    // The providers saw the instance's model and auth.
    let req = &m.instance("deepseek").requests()[0];
    assert_eq!(
        req.header("authorization"),
        Some("Bearer key-deepseek-instance")
    );
    assert_eq!(req.json()["model"], "deepseek-chat");
}

#[test]
fn seed_admin_api_example_verbatim() {
    let m = mocks(&["openai", "deepseek"]);
    let gw = Gateway::start_json(
        json!({"gateway": {"admin": {"listen": "127.0.0.1:0", "key": "edd1c9f034335f136f87ad84b625c8f1"}}}),
    );
    let admin = gw.admin_addr.expect("admin listener");
    // The seed's body, with the provider endpoints pointed at the mocks.
    let body = format!(
        r#"{{
    "id": "ai-proxy-multi-route",
    "uri": "/anything",
    "methods": ["POST"],
    "plugins": {{
      "ai-proxy-multi": {{
        "instances": [
          {{
            "name": "openai-instance",
            "provider": "openai",
            "weight": 8,
            "auth": {{ "header": {{ "Authorization": "Bearer sk-openai" }} }},
            "options": {{ "model": "gpt-4" }},
            "override": {{ "endpoint": "{}" }}
          }},
          {{
            "name": "deepseek-instance",
            "provider": "deepseek",
            "weight": 2,
            "auth": {{ "header": {{ "Authorization": "Bearer sk-deepseek" }} }},
            "options": {{ "model": "deepseek-chat" }},
            "override": {{ "endpoint": "{}" }}
          }}
        ]
      }}
    }}
  }}"#,
        chat_url(&m, "openai"),
        chat_url(&m, "deepseek")
    );
    // What a dashboard asks first: which plugins this gateway runs.
    let mut c = Conn::connect(admin);
    c.send(b"GET /apisix/admin/plugins/list HTTP/1.1\r\nHost: a\r\nX-API-KEY: edd1c9f034335f136f87ad84b625c8f1\r\n\r\n");
    let r = c.read_response();
    assert_eq!(r.status, 200, "{}", r.text());
    let names = r.json();
    for p in ["ai-proxy-multi", "ai-rate-limiting", "key-auth"] {
        assert!(names.as_array().unwrap().contains(&json!(p)), "{names}");
    }
    let mut c = Conn::connect(admin);
    c.send(format!("PUT /apisix/admin/routes HTTP/1.1\r\nHost: 127.0.0.1:9180\r\nX-API-KEY: edd1c9f034335f136f87ad84b625c8f1\r\nContent-Length: {}\r\n\r\n{body}", body.len()).as_bytes());
    let r = c.read_response();
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["key"], "/apisix/routes/ai-proxy-multi-route");
    let seen = models_of(&gw, 10, "/anything");
    assert_eq!(
        seen,
        BTreeMap::from([("deepseek-chat".into(), 2), ("gpt-4".into(), 8)])
    );
}

#[test]
fn priority_with_fallback_and_recovery() {
    let m = mocks(&["openai", "deepseek"]);
    let mut hi = instance("openai-instance", 0, &chat_url(&m, "openai"), "gpt-4");
    hi["priority"] = json!(1);
    let mut lo = instance(
        "deepseek-instance",
        0,
        &chat_url(&m, "deepseek"),
        "deepseek-chat",
    );
    lo["priority"] = json!(0);
    let gw = Gateway::start_json(ai_config(
        &["/anything"],
        json!({"fallback_strategy": ["http_429", "http_5xx"], "instances": [hi, lo]}),
    ));
    let mut c = Conn::connect(gw.addr);
    // The higher priority answers while it can.
    for _ in 0..3 {
        assert_eq!(c.post_json("/anything", ASK).json()["model"], "gpt-4");
    }
    // It starts answering 429 (Retry-After 1): the lower priority takes over…
    m.instance("openai").set_faults(mock_llm::Faults {
        status: Some(429),
        retry_after: Some(1),
        ..Default::default()
    });
    let r = c.post_json("/anything", ASK);
    assert_eq!(r.json()["model"], "deepseek-chat");
    assert_eq!(r.header("x-ringway-attempts"), Some("2"));
    assert_eq!(r.header("x-ringway-instance"), Some("deepseek-instance"));
    // …and while it cools down it is not even tried.
    let before = m.instance("openai").stats().requests;
    for _ in 0..3 {
        let r = c.post_json("/anything", ASK);
        assert_eq!(r.header("x-ringway-attempts"), Some("1"));
        assert_eq!(r.json()["model"], "deepseek-chat");
    }
    assert_eq!(m.instance("openai").stats().requests, before);
    // Recovered and cooled down: traffic returns to the higher priority.
    m.instance("openai").clear_faults();
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(c.post_json("/anything", ASK).json()["model"], "gpt-4");
}

#[test]
fn max_tokens_per_instance_is_merged_into_the_body() {
    let m = mocks(&["openai", "deepseek"]);
    let mut a = instance("openai-instance", 1, &chat_url(&m, "openai"), "gpt-4");
    a["options"]["max_tokens"] = json!(50);
    let mut b = instance(
        "deepseek-instance",
        1,
        &chat_url(&m, "deepseek"),
        "deepseek-chat",
    );
    b["options"]["max_tokens"] = json!(100);
    let gw = Gateway::start_json(ai_config(&["/anything"], json!({"instances": [a, b]})));
    let mut c = Conn::connect(gw.addr);
    for _ in 0..4 {
        let r = c.post_json(
            "/anything",
            r#"{"max_tokens": 5, "messages":[{"role":"user","content":"hi"}]}"#,
        );
        assert_eq!(r.status, 200);
    }
    for (mock, want, model) in [("openai", 50, "gpt-4"), ("deepseek", 100, "deepseek-chat")] {
        let reqs = m.instance(mock).requests();
        assert_eq!(reqs.len(), 2);
        for r in reqs {
            let j = r.json();
            assert_eq!(
                j["max_tokens"], want,
                "instance options override the client"
            );
            assert_eq!(j["model"], model);
            assert_eq!(j["messages"][0]["content"], "hi");
        }
    }
}

#[test]
fn embeddings_on_openai_and_azure_openai() {
    let m = mocks(&["openai", "azure"]);
    let openai = json!({
        "name": "openai-instance", "provider": "openai", "weight": 0,
        "auth": {"header": {"Authorization": "Bearer sk-o"}},
        "options": {"model": "text-embedding-3-small"},
        "override": {"endpoint": format!("{}/v1/embeddings", m.instance("openai").url())},
    });
    let azure = json!({
        "name": "az-openai-instance", "provider": "azure-openai", "weight": 0,
        "auth": {"header": {"api-key": "az-key"}},
        "options": {"model": "text-embedding-3-small"},
        "override": {"endpoint": format!("{}/openai/deployments/text-embedding-3-small/embeddings?api-version=2023-05-15", m.instance("azure").url())},
    });
    let gw = Gateway::start_json(ai_config(
        &["/embeddings"],
        json!({"instances": [openai, azure]}),
    ));
    let mut c = Conn::connect(gw.addr);
    for _ in 0..4 {
        let r = c.post_json(
            "/embeddings",
            r#"{"input": "What is the capital of France?"}"#,
        );
        assert_eq!(r.status, 200, "{}", r.text());
        let j = r.json();
        assert_eq!(j["object"], "list");
        assert_eq!(j["data"][0]["object"], "embedding");
        assert_eq!(j["model"], "text-embedding-3-small");
    }
    let az = m.instance("azure").requests();
    assert_eq!(az.len(), 2, "weights 0 and 0 share equally");
    assert_eq!(az[0].header("api-key"), Some("az-key"));
    assert_eq!(az[0].query.as_deref(), Some("api-version=2023-05-15"));
    assert_eq!(
        m.instance("openai").requests()[0].header("authorization"),
        Some("Bearer sk-o")
    );
}

#[test]
fn access_log_carries_the_llm_variables() {
    let m = mock_llm::MockServer::builder()
        .instance(
            mock_llm::InstanceConfig::new("openai")
                .tokens(8)
                .ttft(Duration::from_millis(60)),
        )
        .spawn()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let mut doc = ai_config(
        &["/anything"],
        json!({"instances": [instance("openai-instance", 1, &chat_url(&m, "openai"), "gpt-4")]}),
    );
    doc["gateway"] = json!({"access_log": {"path": log.to_str().unwrap()}});
    let mut gw = Gateway::start_json(doc);
    let mut c = Conn::connect(gw.addr);
    let r = c.post_json("/anything", r#"{"model":"gpt-4","messages":[{"role":"system","content":"You are a mathematician"},{"role":"user","content":"What is 1+1?"}]}"#);
    assert_eq!(r.status, 200);
    let r = c.post_json("/anything", ASK_STREAM);
    assert_eq!(r.status, 200);
    drop(c);
    let lines = stop_and_read_log(&mut gw, &log, 2);
    let chat = &lines[0];
    assert_eq!(chat["request_type"], "ai_chat");
    assert_eq!(chat["request_llm_model"], "gpt-4");
    assert_eq!(chat["llm_model"], "gpt-4");
    assert_eq!(chat["llm_prompt_tokens"], 15);
    assert_eq!(chat["llm_completion_tokens"], 8);
    assert!(chat["apisix_upstream_response_time"].as_f64().unwrap() >= 60.0);
    let stream = &lines[1];
    assert_eq!(stream["request_type"], "ai_stream");
    assert!(
        stream.get("request_llm_model").is_none(),
        "the client named no model"
    );
    assert_eq!(stream["llm_model"], "gpt-4");
    assert!(stream["llm_time_to_first_token"].as_f64().unwrap() >= 60.0);
    assert_eq!(
        stream["llm_completion_tokens"], 8,
        "usage comes from the forced usage chunk"
    );
    assert_eq!(stream["llm_instance"], "openai-instance");
}

/// The text of every `delta.content` in an OpenAI event stream, and the
/// number of events carrying one.
#[test]
fn a_stream_that_waits_then_bursts_arrives_whole_and_in_order() {
    // While a stream waits for its first token the gateway reads with a
    // small buffer (an idle stream holds little memory); the burst that
    // follows (300 tokens back to back, ~60 KB) must still arrive whole.
    let m = mock_llm::MockServer::builder()
        .instance(
            mock_llm::InstanceConfig::new("openai")
                .tokens(300)
                .ttft(Duration::from_millis(80)),
        )
        .spawn()
        .unwrap();
    let ask = r#"{"model":"gpt-4","stream":true,"messages":[{"role":"user","content":"Count."}]}"#;
    let direct = {
        let mut c = Conn::connect(m.instance("openai").addr());
        let r = c.post_json("/v1/chat/completions", ask);
        assert_eq!(r.status, 200);
        streamed_content(&r.text())
    };
    assert!(direct.1 >= 300, "{direct:?}");
    let doc = ai_config(
        &["/anything"],
        json!({"instances": [instance("openai-instance", 1, &chat_url(&m, "openai"), "gpt-4")]}),
    );
    let gw = Gateway::start_json(doc);
    let mut c = Conn::connect(gw.addr);
    for _ in 0..2 {
        let r = c.post_json("/anything", ask);
        assert_eq!(r.status, 200);
        // The gateway's own stream headers replace the upstream's, once each.
        for name in ["content-type", "cache-control"] {
            let n = r
                .headers
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case(name))
                .count();
            assert_eq!(n, 1, "{name} in {:?}", r.headers);
        }
        let text = r.text();
        assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
        assert_eq!(streamed_content(&text), direct);
    }
}

/// The seed's "Send Request Log to Logger" example: `logging.summaries` and
/// `.payloads` with a `kafka-logger` (`batch_max_size: 1`, `key: key1`),
/// against a real Kafka-protocol broker, read back with a real Kafka client.
#[test]
fn request_logs_with_llm_summaries_and_payloads_reach_kafka() {
    let broker = common::kafka::KafkaBroker::start();
    broker.create_topic("test2", 3);
    let m = mocks(&["openai", "deepseek"]);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let mut doc = ai_config(
        &["/anything"],
        json!({
            "instances": [
                {"name": "openai-instance", "provider": "openai", "weight": 8,
                 "auth": {"header": {"Authorization": "Bearer sk-1"}},
                 "options": {"model": "gpt-4"},
                 "override": {"endpoint": chat_url(&m, "openai")}},
                {"name": "deepseek-instance", "provider": "deepseek", "weight": 2,
                 "auth": {"header": {"Authorization": "Bearer sk-2"}},
                 "options": {"model": "deepseek-chat"},
                 "override": {"endpoint": chat_url(&m, "deepseek")}},
            ],
            "logging": {"summaries": true, "payloads": true},
        }),
    );
    doc["services"][0]["routes"][0]["plugins"]["kafka-logger"] = json!({
        "brokers": [{"host": "127.0.0.1", "port": broker.port}],
        "kafka_topic": "test2",
        "key": "key1",
        "batch_max_size": 1,
    });
    doc["gateway"] = json!({"access_log": {"path": log.to_str().unwrap()}});
    let mut gw = Gateway::start_json(doc);
    let mut c = Conn::connect(gw.addr);
    let chat = c.post_json("/anything", ASK);
    assert_eq!(chat.status, 200, "{}", chat.text());
    let answer = chat.json()["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    let stream = c.post_json("/anything", ASK_STREAM);
    assert_eq!(stream.status, 200);
    let (streamed, _) = streamed_content(&stream.text());
    assert!(!answer.is_empty() && !streamed.is_empty());

    let got = broker.consume("test2", 2, Duration::from_secs(20));
    assert_eq!(got.len(), 2, "{got:?}\n{}", gw.stderr());
    let by_type = |t: &str| {
        got.iter()
            .find(|(_, v)| v["request_type"] == t)
            .unwrap_or_else(|| panic!("no {t} entry in {got:?}"))
    };
    let (key, e) = by_type("ai_chat");
    assert_eq!(key.as_deref(), Some("key1"));
    assert_eq!(e["request"]["uri"], "/anything");
    assert_eq!(e["request"]["method"], "POST");
    assert_eq!(e["request"]["headers"]["content-type"], "application/json");
    assert_eq!(e["response"]["status"], 200);
    assert_eq!(e["route_id"], "ai-route");
    assert!(e["latency"].as_f64().unwrap() > 0.0);
    let model = e["llm_summary"]["model"].as_str().unwrap();
    assert!(model == "gpt-4" || model == "deepseek-chat", "{e}");
    assert_eq!(e["llm_summary"]["prompt_tokens"], 15);
    assert_eq!(e["llm_summary"]["completion_tokens"], 4);
    assert!(e["llm_summary"]["duration"].as_f64().unwrap() > 0.0);
    assert_eq!(e["llm_request"]["messages"][1]["content"], "What is 1+1?");
    assert_eq!(e["llm_response_text"], answer.as_str());
    let (_, s) = by_type("ai_stream");
    assert_eq!(s["llm_request"]["stream"], true);
    assert_eq!(s["llm_response_text"], streamed.as_str());
    assert_eq!(s["llm_summary"]["completion_tokens"], 4);

    // The access log carries the same summary and payloads, one line each.
    drop(c);
    let lines = stop_and_read_log(&mut gw, &log, 2);
    assert_eq!(lines[0]["llm_response_text"], answer.as_str());
    assert_eq!(lines[0]["llm_summary"]["completion_tokens"], 4);
    assert_eq!(lines[1]["llm_response_text"], streamed.as_str());
}

/// `logging.payloads` on streams whose format the gateway converts: the
/// logged text is what the client read, whichever format each side spoke.
#[test]
fn payloads_of_converted_streams_are_the_text_the_client_read() {
    let m = common::ai::MockServer::builder()
        .instance(common::ai::InstanceConfig::new("oai").tokens(6))
        .instance(common::ai::InstanceConfig::new("claude").tokens(6))
        .spawn()
        .unwrap();
    let inst = |provider: &str, endpoint: String| {
        json!({"name": provider, "provider": provider, "weight": 1, "auth": {"header": {"x-api-key": "k", "Authorization": "Bearer k"}},
               "options": {"model": "m"}, "override": {"endpoint": endpoint}})
    };
    let route = |name: &str, uri: &str, inst: Value| {
        json!({"name": name, "uris": [uri], "methods": ["POST"], "plugins": {"ai-proxy-multi": {
            "instances": [inst], "logging": {"payloads": true}}}})
    };
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let claude = format!("{}/v1/messages", m.instance("claude").url());
    let oai = chat_url(&m, "oai");
    let mut gw = Gateway::start_json(json!({
        "gateway": {"access_log": {"path": log.to_str().unwrap()}},
        "services": [{"name": "llm", "routes": [
            route("openai-to-claude", "/claude/v1/chat/completions", inst("anthropic", claude)),
            route("anthropic-to-openai", "/oai/v1/messages", inst("openai", oai)),
        ]}],
    }));
    let mut c = Conn::connect(gw.addr);
    let to_claude = c.post_json("/claude/v1/chat/completions", ASK_STREAM);
    assert_eq!(to_claude.status, 200, "{}", to_claude.text());
    let (openai_text, events) = streamed_content(&to_claude.text());
    assert!(events > 1, "{}", to_claude.text());

    let ask = r#"{"model":"m","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"What is 1+1?"}]}"#;
    let to_oai = c.post_json("/oai/v1/messages", ask);
    assert_eq!(to_oai.status, 200, "{}", to_oai.text());
    let anthropic_text: String = to_oai
        .text()
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| v["delta"]["text"].as_str().map(str::to_owned))
        .collect();
    assert!(!anthropic_text.is_empty(), "{}", to_oai.text());

    drop(c);
    let lines = stop_and_read_log(&mut gw, &log, 2);
    assert_eq!(lines[0]["request_type"], "ai_stream");
    assert_eq!(lines[0]["llm_response_text"], openai_text.as_str());
    assert_eq!(lines[1]["llm_response_text"], anthropic_text.as_str());
}
