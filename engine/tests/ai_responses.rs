//! OpenAI's Responses API (`…/v1/responses`) through ai-proxy-multi, with
//! mock-llm (which refuses chat-only parameters as the real API does)
//! behind it: instances whose provider serves the API get the request as
//! it is (an instance's `max_tokens` becomes `max_output_tokens`), answers
//! and event streams pass through with model, usage and time to first
//! token read for the log; every other instance gets it converted to chat
//! (Anthropic's by way of chat) and answers in the Responses API's format,
//! streamed event for event; fallback works across both, and a stream
//! broken mid-way ends with the API's own `error` event.
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
fn responses_pass_through_to_instances_that_serve_the_api() {
    let m = MockServer::builder()
        .instance(
            InstanceConfig::new("oai")
                .tokens(6)
                .ttft(Duration::from_millis(40)),
        )
        .spawn()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let capped = json!({"instances": [
        inst("oai", "openai-compatible", responses_url(&m, "oai"), 1, json!({"model": "gpt-5-mini", "max_tokens": 3})),
    ]});
    let plain =
        json!({"instances": [inst("oai", "openai", responses_url(&m, "oai"), 0, json!({}))]});
    let doc = json!({
        "gateway": {"access_log": {"path": log.to_str().unwrap()}},
        "services": [{"name": "llm", "routes": [
            route("capped", "/capped/v1/responses", capped),
            route("plain", "/plain/v1/responses", plain),
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

    // A stream passes through event for event, without a forced
    // `stream_options` (the API refuses it) and without `[DONE]`.
    let r = c.post_json("/plain/v1/responses", ASK_STREAM);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    let text = r.text();
    let expected = text_stream_names(6);
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

    drop(c);

    // The log variables, read from the Responses API's own fields.
    let lines = gw.stop_and_read_log(&log);
    assert_eq!(lines.len(), 2);
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

/// The text of a stream's `response.output_text.delta` events, joined.
fn deltas(text: &str) -> String {
    events_named(text, "response.output_text.delta")
        .iter()
        .map(|d| d["delta"].as_str().unwrap().to_owned())
        .collect()
}

/// The event names of a converted text stream of `n` tokens.
fn text_stream_names(n: usize) -> Vec<String> {
    let mut names: Vec<String> = [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    .map(str::to_owned)
    .to_vec();
    names.extend(std::iter::repeat_n(
        "response.output_text.delta".to_owned(),
        n,
    ));
    names.extend(
        [
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ]
        .map(str::to_owned),
    );
    names
}

#[test]
fn responses_are_converted_for_chat_and_anthropic_instances() {
    let m = MockServer::builder()
        .instance(InstanceConfig::new("oai").tokens(5))
        .instance(
            InstanceConfig::new("ds")
                .tokens(5)
                .ttft(Duration::from_millis(30)),
        )
        .instance(InstanceConfig::new("claude").tokens(5))
        .spawn()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let claude_url = format!("{}/v1/messages", m.instance("claude").url());
    let claude = || {
        inst(
            "claude",
            "anthropic",
            claude_url.clone(),
            0,
            json!({"model": "claude-x"}),
        )
    };
    let doc = json!({"gateway": {"access_log": {"path": log.to_str().unwrap()}}, "services": [{"name": "llm", "routes": [
        route("ds", "/ds/v1/responses", json!({"instances": [inst("ds", "deepseek", chat_url(&m, "ds"), 0, json!({"model": "ds-chat"}))]})),
        // A provider that has the API, configured with a chat endpoint.
        route("compat", "/compat/v1/responses", json!({"instances": [inst("compat", "openai-compatible", chat_url(&m, "ds"), 0, json!({"max_tokens": 2}))]})),
        route("claude", "/claude/v1/responses", json!({"instances": [claude()]})),
        route("mixed", "/mixed/v1/responses", json!({"fallback_strategy": ["http_5xx"], "instances": [
            inst("oai", "openai", responses_url(&m, "oai"), 1, json!({})),
            claude(),
        ]})),
        route("chat-first", "/chat-first/v1/responses", json!({"instances": [
            inst("ds", "deepseek", chat_url(&m, "ds"), 1, json!({})),
            inst("oai", "openai", responses_url(&m, "oai"), 0, json!({})),
        ]})),
    ]}]});
    let mut gw = Gateway::start_json(doc);
    let mut c = Conn::connect(gw.addr);
    let words = "The quick brown fox jumps ";

    // A chat provider: the request as chat, the answer as a response.
    let r = c.post_json("/ds/v1/responses", ASK);
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["object"], "response");
    assert_eq!(v["status"], "completed");
    assert_eq!(v["model"], "ds-chat");
    assert_eq!(v["output"][0]["type"], "message");
    assert_eq!(v["output"][0]["content"][0]["type"], "output_text");
    assert_eq!(v["output"][0]["content"][0]["text"], words);
    assert_eq!(v["usage"]["input_tokens"], 4 + 2 + 4 + 3);
    assert_eq!(v["usage"]["output_tokens"], 5);
    let sent: Value = serde_json::from_str(&m.instance("ds").requests()[0].body).unwrap();
    assert_eq!(
        sent["messages"],
        json!([{"role": "system", "content": "Be brief"}, {"role": "user", "content": "What is 1+1?"}])
    );
    assert!(sent.get("input").is_none() && sent.get("instructions").is_none());

    // openai-compatible pointed at a chat endpoint: converted too, with the
    // instance's max_tokens as chat's.
    let r = c.post_json("/compat/v1/responses", ASK);
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["status"], "incomplete");
    assert_eq!(v["incomplete_details"]["reason"], "max_output_tokens");
    assert_eq!(v["usage"]["output_tokens"], 2);

    // Streamed: chat chunks become the API's numbered events.
    let r = c.post_json("/ds/v1/responses", ASK_STREAM);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    let text = r.text();
    assert_eq!(event_names(&text), text_stream_names(5), "{text}");
    assert_eq!(deltas(&text), words);
    let done = &events_named(&text, "response.completed")[0]["response"];
    assert_eq!(done["output"][0]["content"][0]["text"], words);
    assert_eq!(done["usage"]["input_tokens"], 4 + 3);
    assert_eq!(done["usage"]["output_tokens"], 5);
    let created = &events_named(&text, "response.created")[0]["response"];
    assert_eq!(created["id"], done["id"], "one identity from start to end");
    let sent: Value = serde_json::from_str(&m.instance("ds").requests()[2].body).unwrap();
    assert_eq!(
        sent["stream_options"]["include_usage"], true,
        "usage forced"
    );

    // Anthropic, by way of chat, JSON and streamed.
    let r = c.post_json("/claude/v1/responses", ASK);
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["model"], "claude-x");
    assert_eq!(v["output"][0]["content"][0]["text"], words);
    assert_eq!(v["usage"]["input_tokens"], 4 + 2 + 4 + 3);
    assert_eq!(v["usage"]["output_tokens"], 5);
    let sent: Value = serde_json::from_str(&m.instance("claude").requests()[0].body).unwrap();
    assert_eq!(sent["system"], "Be brief");
    let r = c.post_json("/claude/v1/responses", ASK_STREAM);
    assert_eq!(r.status, 200, "{}", r.text());
    let text = r.text();
    assert_eq!(event_names(&text), text_stream_names(5), "{text}");
    assert_eq!(deltas(&text), words);
    let done = &events_named(&text, "response.completed")[0]["response"];
    assert_eq!(done["usage"]["output_tokens"], 5);
    assert_eq!(done["model"], "claude-x");

    // Fallback across formats: the Responses API instance fails, Anthropic
    // answers in the Responses API's format.
    m.instance("oai").set_faults(Faults {
        status: Some(503),
        ..Default::default()
    });
    let r = c.post_json("/mixed/v1/responses", ASK);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-ringway-instance"), Some("claude"));
    assert_eq!(r.header("x-ringway-attempts"), Some("2"));
    assert_eq!(r.json()["object"], "response");

    // What chat cannot carry: that instance is passed over; with none
    // left, 400 naming the reason.
    let stateful = r#"{"model":"gpt-5","input":"And then?","previous_response_id":"resp_1"}"#;
    let r = c.post_json("/ds/v1/responses", stateful);
    assert_eq!(r.status, 400);
    let msg = r.json()["error_msg"].as_str().unwrap().to_owned();
    assert!(
        msg.contains("no instance of this route can serve this Responses API request")
            && msg.contains("`previous_response_id` needs a provider that keeps responses"),
        "{msg}"
    );
    assert_eq!(m.instance("ds").stats().requests, 3, "nothing was sent");
    m.instance("oai").clear_faults();
    // (A response `oai` holds: mock-llm, like the API, refuses others.)
    let held = Conn::connect(m.instance("oai").addr())
        .post_json("/v1/responses", ASK)
        .json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let stateful = stateful.replace("resp_1", &held);
    let r = c.post_json("/chat-first/v1/responses", &stateful);
    assert_eq!(
        r.status, 200,
        "the next instance, which has the API, takes it"
    );
    assert_eq!(r.header("x-ringway-instance"), Some("oai"));
    assert_eq!(
        r.header("x-ringway-attempts"),
        Some("1"),
        "ds was not tried"
    );
    drop(c);

    // Usage, model and the first token are read from the chat side.
    let lines = gw.stop_and_read_log(&log);
    let (json_line, stream_line) = (&lines[0], &lines[2]);
    assert_eq!(json_line["llm_model"], "ds-chat");
    assert_eq!(json_line["llm_prompt_tokens"], 13);
    assert_eq!(json_line["llm_completion_tokens"], 5);
    assert_eq!(stream_line["request_type"], "ai_stream");
    assert_eq!(stream_line["llm_completion_tokens"], 5);
    assert!(
        stream_line["llm_time_to_first_token"].as_f64().unwrap() >= 30.0,
        "the first delta, not the first event: {stream_line}"
    );
    assert_eq!(lines[4]["llm_completion_tokens"], 5, "Anthropic, streamed");
}

/// A chat server that ends its streams without `data: [DONE]` (mock-llm's
/// `omit_done`, as some OpenAI-compatible servers do): a Responses client
/// still gets `response.completed`, an Anthropic client `message_stop`;
/// one that breaks mid-way, a single error event.
#[test]
fn converted_streams_close_when_a_chat_server_omits_done() {
    let m = MockServer::builder()
        .instance(InstanceConfig::new("ds").tokens(4))
        .spawn()
        .unwrap();
    m.instance("ds").set_faults(Faults {
        omit_done: Some(true),
        ..Default::default()
    });
    let direct = Conn::connect(m.instance("ds").addr())
        .post_json(
            "/v1/chat/completions",
            r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#,
        )
        .text();
    assert!(
        direct.contains("\"finish_reason\":\"stop\"") && !direct.contains("[DONE]"),
        "{direct}"
    );
    let ds = || inst("ds", "deepseek", chat_url(&m, "ds"), 0, json!({}));
    let gw = Gateway::start_json(json!({"services": [{"name": "llm", "routes": [
        route("responses", "/v1/responses", json!({"instances": [ds()]})),
        route("messages", "/v1/messages", json!({"instances": [ds()]})),
    ]}]}));
    let mut c = Conn::connect(gw.addr);
    let r = c.post_json("/v1/responses", ASK_STREAM);
    assert_eq!(r.status, 200);
    let text = r.text();
    assert_eq!(event_names(&text), text_stream_names(4), "{text}");
    let r = c.post_json(
        "/v1/messages",
        r#"{"model":"m","max_tokens":50,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#,
    );
    assert_eq!(r.status, 200);
    let names = event_names(&r.text());
    assert_eq!(
        names.last().map(String::as_str),
        Some("message_stop"),
        "{names:?}"
    );
    assert!(!names.iter().any(|n| n == "error"));

    // A chat stream that breaks mid-way ends the converted stream with
    // one error event, nothing after it.
    m.instance("ds").set_faults(Faults {
        reset_after_chunks: Some(2),
        ..Default::default()
    });
    let r = c.post_json("/v1/responses", ASK_STREAM);
    let names = event_names(&r.text());
    assert_eq!(
        names.iter().filter(|n| *n == "error").count(),
        1,
        "{names:?}"
    );
    assert_eq!(names.last().map(String::as_str), Some("error"));
    assert!(!names.iter().any(|n| n == "response.completed"));
}
