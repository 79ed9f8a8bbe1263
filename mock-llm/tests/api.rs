//! mock-llm's endpoints over real sockets: OpenAI chat (JSON and SSE),
//! Anthropic messages (JSON and SSE), embeddings, models, health, stats,
//! the request log, keep-alive and chunked request bodies, stored
//! Responses API responses.
#![allow(clippy::unwrap_used)]

use mock_llm::client::{Conn, Response};
use mock_llm::{InstanceConfig, MockServer};
use serde_json::{json, Value};

fn mock() -> MockServer {
    MockServer::builder()
        .instance(InstanceConfig::new("alpha").tokens(5))
        .instance(InstanceConfig::new("beta").tokens(3))
        .spawn()
        .unwrap()
}

fn post(c: &mut Conn, path: &str, body: &Value) -> Response {
    c.post_json(path, &body.to_string())
}

/// Data payloads of an SSE body, with their `event:` names.
fn events(body: &[u8]) -> Vec<(Option<String>, String)> {
    String::from_utf8_lossy(body)
        .split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let mut name = None;
            let mut data = String::new();
            for line in e.lines() {
                if let Some(n) = line.strip_prefix("event: ") {
                    name = Some(n.to_owned());
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data.push_str(d);
                }
            }
            (name, data)
        })
        .collect()
}

#[test]
fn chat_json_names_the_instance_and_usage_is_consistent() {
    let m = mock();
    let mut c = Conn::connect(m.instance("alpha").addr());
    let r = post(
        &mut c,
        "/v1/chat/completions",
        &json!({"model": "gpt-4", "messages": [{"role": "system", "content": "You are a mathematician"}, {"role": "user", "content": "What is 1+1?"}]}),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-mock-instance"), Some("alpha"));
    let j = r.json();
    assert_eq!(j["model"], "gpt-4");
    assert!(j["id"].as_str().unwrap().contains("alpha"));
    assert_eq!(
        j["choices"][0]["message"]["content"],
        "The quick brown fox jumps "
    );
    assert_eq!(
        j["usage"],
        json!({"prompt_tokens": 15, "completion_tokens": 5, "total_tokens": 20})
    );
    // max_tokens caps the completion and says so.
    let j = post(
        &mut c,
        "/v1/chat/completions",
        &json!({"model": "m", "max_tokens": 2, "messages": [{"role": "user", "content": "x"}]}),
    )
    .json();
    assert_eq!(j["usage"]["completion_tokens"], 2);
    assert_eq!(j["choices"][0]["finish_reason"], "length");
}

#[test]
fn chat_stream_chunks_done_and_usage_only_when_asked() {
    let m = mock();
    let mut c = Conn::connect(m.instance("alpha").addr());
    let r = post(
        &mut c,
        "/v1/chat/completions",
        &json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
    );
    assert_eq!(
        r.header("content-type"),
        Some("text/event-stream; charset=utf-8")
    );
    let ev = events(&r.body);
    assert_eq!(ev.last().unwrap().1, "[DONE]");
    let chunks: Vec<Value> = ev[..ev.len() - 1]
        .iter()
        .map(|(_, d)| serde_json::from_str(d).unwrap())
        .collect();
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk" && c.get("usage").is_none()));
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "The quick brown fox jumps ");
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "stop"
    );

    let r = post(
        &mut c,
        "/v1/chat/completions",
        &json!({"model": "m", "stream": true, "stream_options": {"include_usage": true}, "messages": [{"role": "user", "content": "hi"}]}),
    );
    let ev = events(&r.body);
    let usage: Value = serde_json::from_str(&ev[ev.len() - 2].1).unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(
        usage["usage"],
        json!({"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10})
    );
    let earlier: Value = serde_json::from_str(&ev[1].1).unwrap();
    assert!(
        earlier["usage"].is_null(),
        "other chunks carry usage: null like OpenAI"
    );
}

#[test]
fn anthropic_messages_json_and_event_sequence() {
    let m = mock();
    let mut c = Conn::connect(m.instance("beta").addr());
    let j = post(&mut c, "/v1/messages", &json!({"model": "claude-x", "max_tokens": 100, "system": "Be brief", "messages": [{"role": "user", "content": "hi there"}]})).json();
    assert_eq!(j["type"], "message");
    assert_eq!(j["content"][0]["text"], "The quick brown ");
    assert_eq!(j["usage"], json!({"input_tokens": 12, "output_tokens": 3}));
    assert_eq!(j["stop_reason"], "end_turn");
    let r = post(
        &mut c,
        "/v1/messages",
        &json!({"model": "claude-x", "max_tokens": 100, "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
    );
    let names: Vec<String> = events(&r.body)
        .into_iter()
        .map(|(n, _)| n.unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    let ev = events(&r.body);
    let delta: Value = serde_json::from_str(&ev[7].1).unwrap();
    assert_eq!(delta["usage"]["output_tokens"], 3);
    let r = post(
        &mut c,
        "/v1/messages",
        &json!({"model": "claude-x", "messages": [{"role": "user", "content": "hi"}]}),
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["type"], "error");
    assert_eq!(r.json()["error"]["type"], "invalid_request_error");
}

#[test]
fn embeddings_models_health_and_azure_paths() {
    let m = mock();
    let mut c = Conn::connect(m.instance("alpha").addr());
    let j = post(
        &mut c,
        "/v1/embeddings",
        &json!({"model": "text-embedding-3-small", "input": ["hello world", "x"]}),
    )
    .json();
    assert_eq!(j["data"].as_array().unwrap().len(), 2);
    assert_eq!(j["data"][0]["embedding"].as_array().unwrap().len(), 8);
    assert_eq!(j["usage"], json!({"prompt_tokens": 3, "total_tokens": 3}));
    let j = post(
        &mut c,
        "/v1/embeddings",
        &json!({"model": "e", "input": "a", "encoding_format": "base64", "dimensions": 4}),
    )
    .json();
    assert_eq!(j["data"][0]["embedding"].as_str().unwrap().len(), 24);
    let r = post(
        &mut c,
        "/openai/deployments/d1/embeddings?api-version=2023-05-15",
        &json!({"model": "e", "input": "a"}),
    );
    assert_eq!(r.status, 200);
    let r = post(
        &mut c,
        "/openai/deployments/d1/chat/completions",
        &json!({"model": "e", "messages": [{"role": "user", "content": "a"}]}),
    );
    assert_eq!(r.status, 400);
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("api-version"));
    assert_eq!(c.get("/v1/models").json()["data"][0]["id"], "mock-gpt");
    let h = c.get("/health");
    assert_eq!(
        (h.status, h.json()["instance"].clone()),
        (200, json!("alpha"))
    );
    assert_eq!(c.get("/nope").status, 404);
}

#[test]
fn bad_input_gets_the_providers_error_shapes() {
    let m = mock();
    let mut c = Conn::connect(m.instance("alpha").addr());
    let r = c.post_json("/v1/chat/completions", "{not json");
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["type"], "invalid_request_error");
    let r = c.post_json("/v1/chat/completions", r#"{"messages": []}"#);
    assert_eq!(r.status, 400);
    let r = c.post_json("/v1/messages", "[]");
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["type"], "error");
}

#[test]
fn stats_request_log_keep_alive_and_chunked_bodies() {
    let m = mock();
    let a = m.instance("alpha");
    let mut c = Conn::connect(a.addr());
    for _ in 0..5 {
        assert_eq!(
            post(
                &mut c,
                "/v1/chat/completions",
                &json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
            )
            .status,
            200
        );
    }
    c.send(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n");
    let body = r#"{"model":"chunky","messages":[{"role":"user","content":"hi"}]}"#;
    let (a1, a2) = body.split_at(10);
    c.send(
        format!(
            "{:x}\r\n{a1}\r\n{:x}\r\n{a2}\r\n0\r\n\r\n",
            a1.len(),
            a2.len()
        )
        .as_bytes(),
    );
    assert_eq!(c.read_response().json()["model"], "chunky");
    let s = a.stats();
    assert_eq!(s.requests, 6);
    assert_eq!(s.by_status[&200], 6);
    assert_eq!(s.connections, 1, "keep-alive: one connection");
    assert_eq!(s.completion_tokens, 30);
    let log = a.requests();
    assert_eq!(log.len(), 6);
    assert_eq!(log[5].json()["model"], "chunky");
    assert_eq!(log[0].path, "/v1/chat/completions");
    // The same over HTTP, and the log can be cleared.
    let stats = c.get("/_stats").json();
    assert_eq!(stats["requests"], 6);
    assert_eq!(c.get("/_requests").json().as_array().unwrap().len(), 6);
    c.send(b"DELETE /_requests HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(c.read_response().status, 200);
    assert!(a.requests().is_empty());
    assert_eq!(m.instance("beta").stats().requests, 0);
}

#[test]
fn oauth_token_endpoint() {
    let m = mock();
    let mut c = Conn::connect(m.instance("alpha").addr());
    c.send(b"POST /oauth2/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 82\r\n\r\ngrant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=aa.bb.cc");
    let j = c.read_response().json();
    assert_eq!(j["access_token"], "mock-token-1");
    assert_eq!(j["expires_in"], 3600);
    assert_eq!(m.instance("alpha").stats().token_requests, 1);
}

#[test]
fn responses_are_stored_per_instance_like_per_account() {
    let m = mock();
    let (alpha, beta) = (m.instance("alpha").addr(), m.instance("beta").addr());
    let mut a = Conn::connect(alpha);
    let mut b = Conn::connect(beta);
    let first = post(
        &mut a,
        "/v1/responses",
        &json!({"model": "m", "input": "one two"}),
    );
    assert_eq!(first.status, 200);
    let first = first.json();
    let id = first["id"].as_str().unwrap().to_owned();
    assert_eq!(first["store"], true);
    let total = first["usage"]["total_tokens"].as_u64().unwrap();
    // Held by alpha only.
    let got = a.get(&format!("/v1/responses/{id}"));
    assert_eq!(got.status, 200);
    assert_eq!(got.json(), first);
    let replay = a.get(&format!("/v1/responses/{id}?stream=true"));
    assert!(replay
        .header("content-type")
        .unwrap()
        .starts_with("text/event-stream"));
    let kinds: Vec<_> = events(&replay.body)
        .into_iter()
        .map(|(k, _)| k.unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "response.created",
            "response.output_text.delta",
            "response.completed"
        ]
    );
    let (_, done) = events(&replay.body).pop().unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&done).unwrap()["response"],
        first
    );
    let missing = b.get(&format!("/v1/responses/{id}"));
    assert_eq!(missing.status, 404);
    assert_eq!(
        missing.json()["error"]["message"],
        format!("Response with id '{id}' not found.")
    );
    // A follow-up elsewhere is refused as the real API refuses it.
    let follow = json!({"model": "m", "input": "three", "previous_response_id": id});
    let refused = post(&mut b, "/v1/responses", &follow);
    assert_eq!(refused.status, 400);
    let e = refused.json();
    assert_eq!(e["error"]["code"], "previous_response_not_found");
    assert_eq!(e["error"]["param"], "previous_response_id");
    // Where it is held, the conversation so far counts as input.
    let second = post(&mut a, "/v1/responses", &follow).json();
    assert_eq!(second["previous_response_id"], id.as_str());
    assert_eq!(second["usage"]["input_tokens"], total + 4 + 1);
    // Its input items, newest first by default.
    let items = a.get(&format!("/v1/responses/{id}/input_items")).json();
    assert_eq!(items["object"], "list");
    assert_eq!(items["data"][0]["content"][0]["text"], "one two");
    assert_eq!(items["has_more"], false);
    // Cancel is for background responses; delete forgets it.
    let cancel = a.request("POST", &format!("/v1/responses/{id}/cancel"));
    assert_eq!(cancel.status, 400);
    let deleted = a.request("DELETE", &format!("/v1/responses/{id}"));
    assert_eq!(
        deleted.json(),
        json!({"id": id, "object": "response", "deleted": true})
    );
    assert_eq!(a.get(&format!("/v1/responses/{id}")).status, 404);
    assert_eq!(
        a.request("DELETE", &format!("/v1/responses/{id}")).status,
        404
    );
    // `store: false` keeps nothing.
    let unstored = post(
        &mut a,
        "/v1/responses",
        &json!({"model": "m", "input": "x", "store": false}),
    )
    .json();
    let uid = unstored["id"].as_str().unwrap();
    assert_eq!(a.get(&format!("/v1/responses/{uid}")).status, 404);
}

#[test]
fn conversations_are_stored_per_instance_and_responses_join_them() {
    let m = mock();
    let mut a = Conn::connect(m.instance("alpha").addr());
    let mut b = Conn::connect(m.instance("beta").addr());
    let conv = post(&mut a, "/v1/conversations", &json!({"metadata": {"topic": "math"}, "items": [{"type": "message", "role": "user", "content": "hello there"}]})).json();
    assert_eq!(conv["object"], "conversation");
    let id = conv["id"].as_str().unwrap().to_owned();
    assert_eq!(a.get(&format!("/v1/conversations/{id}")).json(), conv);
    let missing = b.get(&format!("/v1/conversations/{id}"));
    assert_eq!(missing.status, 404);
    // A response in the conversation: only where it is held; its items
    // are input, and the response joins it.
    let ask = json!({"model": "m", "input": "one two", "conversation": id});
    let refused = post(&mut b, "/v1/responses", &ask);
    assert_eq!(refused.status, 404);
    assert_eq!(refused.json()["error"]["param"], "conversation");
    let r = post(&mut a, "/v1/responses", &ask).json();
    assert_eq!(r["conversation"]["id"], id.as_str());
    assert_eq!(r["usage"]["input_tokens"], (4 + 2) + (4 + 2));
    let items = a
        .get(&format!("/v1/conversations/{id}/items?order=asc"))
        .json();
    let kinds: Vec<&str> = items["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["role"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(kinds, ["user", "user", "assistant"]);
    let both =
        json!({"model": "m", "input": "x", "conversation": id, "previous_response_id": r["id"]});
    assert_eq!(post(&mut a, "/v1/responses", &both).status, 400);
    let deleted = a
        .request("DELETE", &format!("/v1/conversations/{id}"))
        .json();
    assert_eq!(
        deleted,
        json!({"id": id, "object": "conversation.deleted", "deleted": true})
    );
    assert_eq!(a.get(&format!("/v1/conversations/{id}")).status, 404);
}
