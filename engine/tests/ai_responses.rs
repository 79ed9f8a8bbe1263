//! OpenAI's Responses API (`…/v1/responses`) through ai-proxy-multi, with
//! mock-llm (which refuses chat-only parameters as the real API does)
//! behind it: requests go only to instances whose provider serves the API,
//! an instance's `max_tokens` becomes `max_output_tokens`, answers and
//! event streams pass through with model, usage and time to first token
//! read for the log, fallback works as for chat, and a stream broken
//! mid-way ends with the API's own `error` event.
#![allow(clippy::disallowed_types, clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::ai::chat_url;
use common::{Conn, Gateway};
use mock_llm::{Faults, InstanceConfig, MockServer};
use serde_json::{json, Value};

const ASK: &str = r#"{"model":"gpt-5","instructions":"Be brief","input":"What is 1+1?"}"#;
const ASK_STREAM: &str =
    r#"{"model":"gpt-5","stream":true,"input":[{"role":"user","content":"What is 1+1?"}]}"#;

fn responses_url(m: &MockServer, name: &str) -> String {
    format!("{}/v1/responses", m.instance(name).url())
}

fn inst(name: &str, provider: &str, endpoint: String, priority: i64, options: Value) -> Value {
    json!({"name": name, "provider": provider, "priority": priority, "weight": 1,
           "auth": {"header": {"Authorization": format!("Bearer key-{name}")}},
           "options": options, "override": {"endpoint": endpoint}})
}

fn route(name: &str, uri: &str, plugin: Value) -> Value {
    json!({"name": name, "uris": [uri], "methods": ["POST"], "plugins": {"ai-proxy-multi": plugin}})
}

/// The `event:` names of an event stream, in order.
fn event_names(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .map(str::to_owned)
        .collect()
}

/// The data of the stream's events named `name`.
fn events_named(text: &str, name: &str) -> Vec<Value> {
    text.split("\n\n")
        .filter(|e| e.starts_with(&format!("event: {name}\n")))
        .map(|e| serde_json::from_str(e.split_once("\ndata: ").unwrap().1).unwrap())
        .collect()
}

#[test]
fn responses_requests_reach_only_the_instances_that_serve_them() {
    let m = MockServer::builder()
        .instance(
            InstanceConfig::new("oai")
                .tokens(6)
                .ttft(Duration::from_millis(40)),
        )
        .instance(InstanceConfig::new("ds").tokens(6))
        .spawn()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    // deepseek (chat only) comes first by priority and is passed over.
    let deepseek = || {
        inst(
            "ds",
            "deepseek",
            chat_url(&m, "ds"),
            2,
            json!({"model": "ds-chat"}),
        )
    };
    let capped = json!({"instances": [
        deepseek(),
        inst("oai", "openai-compatible", responses_url(&m, "oai"), 1, json!({"model": "gpt-5-mini", "max_tokens": 3})),
    ]});
    let plain =
        json!({"instances": [inst("oai", "openai", responses_url(&m, "oai"), 0, json!({}))]});
    let doc = json!({
        "gateway": {"access_log": {"path": log.to_str().unwrap()}},
        "services": [{"name": "llm", "routes": [
            route("capped", "/capped/v1/responses", capped),
            route("plain", "/plain/v1/responses", plain),
            route("chat-only", "/chat-only/v1/responses", json!({"instances": [deepseek()]})),
        ]}],
    });
    let mut gw = Gateway::start_json(doc);
    let mut c = Conn::connect(gw.addr);

    // JSON: the instance's model and its max_tokens as max_output_tokens.
    let r = c.post_json("/capped/v1/responses", ASK);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-ringway-instance"), Some("oai"));
    let v = r.json();
    assert_eq!(v["object"], "response");
    assert_eq!(v["model"], "gpt-5-mini");
    assert_eq!(v["status"], "incomplete", "{v}");
    assert_eq!(v["incomplete_details"]["reason"], "max_output_tokens");
    assert_eq!(v["usage"]["output_tokens"], 3);
    let sent: Value = serde_json::from_str(&m.instance("oai").requests()[0].body).unwrap();
    assert_eq!(sent["max_output_tokens"], 3);
    assert!(sent.get("max_tokens").is_none(), "{sent}");
    assert_eq!(
        sent["instructions"], "Be brief",
        "the client's body is kept"
    );
    assert_eq!(m.instance("ds").stats().requests, 0);

    // A stream passes through event for event, without a forced
    // `stream_options` (the API refuses it) and without `[DONE]`.
    let r = c.post_json("/plain/v1/responses", ASK_STREAM);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    let text = r.text();
    let mut expected: Vec<String> = [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    .map(str::to_owned)
    .to_vec();
    expected.extend(std::iter::repeat_n(
        "response.output_text.delta".to_owned(),
        6,
    ));
    expected.extend(
        [
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ]
        .map(str::to_owned),
    );
    assert_eq!(event_names(&text), expected, "{text}");
    assert!(!text.contains("[DONE]"));
    let numbers: Vec<u64> = text
        .split("\n\n")
        .filter_map(|e| e.split_once("\ndata: "))
        .map(|(_, d)| {
            serde_json::from_str::<Value>(d).unwrap()["sequence_number"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(
        numbers,
        (0..expected.len() as u64).collect::<Vec<_>>(),
        "events arrive whole and in order"
    );
    let sent: Value = serde_json::from_str(&m.instance("oai").requests()[1].body).unwrap();
    assert!(sent.get("stream_options").is_none(), "{sent}");

    // No instance of the route serves the API: 400 naming the ones that do.
    let r = c.post_json("/chat-only/v1/responses", ASK);
    assert_eq!(r.status, 400);
    let msg = r.json()["error_msg"].as_str().unwrap().to_owned();
    assert!(
        msg.contains("no instance of this route serves Responses API requests")
            && msg.contains("`deepseek` does not serve the OpenAI Responses API")
            && msg.contains("openai, azure-openai, openai-compatible"),
        "{msg}"
    );
    assert_eq!(m.instance("ds").stats().requests, 0);
    drop(c);

    // The log variables, read from the Responses API's own fields.
    assert_eq!(gw.stop(Duration::from_secs(5)), Some(0));
    let lines: Vec<Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    let (json_line, stream_line) = (&lines[0], &lines[1]);
    assert_eq!(json_line["request_type"], "ai_chat");
    assert_eq!(json_line["request_llm_model"], "gpt-5");
    assert_eq!(json_line["llm_model"], "gpt-5-mini");
    assert_eq!(json_line["llm_prompt_tokens"], 4 + 2 + 4 + 3);
    assert_eq!(json_line["llm_completion_tokens"], 3);
    assert_eq!(stream_line["request_type"], "ai_stream");
    assert_eq!(stream_line["llm_model"], "gpt-5");
    assert_eq!(stream_line["llm_prompt_tokens"], 4 + 3);
    assert_eq!(stream_line["llm_completion_tokens"], 6);
    assert!(
        stream_line["llm_time_to_first_token"].as_f64().unwrap() >= 40.0,
        "{stream_line}"
    );
    assert_eq!(lines[2]["status"], 400);
}

#[test]
fn responses_fall_back_and_broken_streams_end_with_the_apis_error_event() {
    let m = MockServer::builder()
        .instance(
            InstanceConfig::new("a")
                .tokens(8)
                .itl(Duration::from_millis(5)),
        )
        .instance(InstanceConfig::new("b").tokens(8))
        .spawn()
        .unwrap();
    let plugin = json!({
        "fallback_strategy": ["http_5xx"],
        "instances": [
            inst("a", "openai-compatible", responses_url(&m, "a"), 1, json!({})),
            inst("b", "azure-openai", responses_url(&m, "b"), 0, json!({})),
        ],
    });
    let gw = Gateway::start_json(
        json!({"services": [{"name": "llm", "routes": [route("r", "/v1/responses", plugin)]}]}),
    );
    let mut c = Conn::connect(gw.addr);

    m.instance("a").set_faults(Faults {
        status: Some(503),
        ..Default::default()
    });
    let r = c.post_json("/v1/responses", ASK);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-ringway-instance"), Some("b"));
    assert_eq!(r.header("x-ringway-attempts"), Some("2"));
    assert_eq!(r.json()["usage"]["output_tokens"], 8);

    // a breaks its stream after three deltas: the client's stream ends
    // with an `error` event, not with a silent cut or a fake completion.
    m.instance("a").set_faults(Faults {
        reset_after_chunks: Some(3),
        ..Default::default()
    });
    let r = c.post_json("/v1/responses", ASK_STREAM);
    assert_eq!(r.status, 200);
    assert!(r.chunked, "the stream ends with a proper last chunk");
    let text = r.text();
    let names = event_names(&text);
    assert_eq!(names.last().map(String::as_str), Some("error"), "{text}");
    assert_eq!(
        names
            .iter()
            .filter(|n| *n == "response.output_text.delta")
            .count(),
        3
    );
    assert!(!names.iter().any(|n| n == "response.completed"));
    let err = &events_named(&text, "error")[0];
    assert_eq!(err["type"], "error");
    assert!(
        err["message"].as_str().is_some_and(|s| !s.is_empty()),
        "{err}"
    );

    // The connection is still good for the next request.
    m.instance("a").clear_faults();
    let r = c.post_json("/v1/responses", ASK_STREAM);
    assert_eq!(r.status, 200);
    let done = events_named(&r.text(), "response.completed");
    assert_eq!(done[0]["response"]["usage"]["output_tokens"], 8);
}
