//! Stored Responses API responses across instances: each mock-llm
//! instance stores the responses it makes (as each OpenAI account does)
//! and refuses a `previous_response_id` it does not hold with `400
//! previous_response_not_found`. Through ringway, a follow-up reaches the
//! instance that holds its previous response however the balancer would
//! have picked, `GET` / `DELETE …/responses/{id}` and `…/input_items` find
//! it too, and an id no instance holds gets the provider's own answer. The
//! same for conversations (Conversations API): created balanced, then
//! every response in one and every call on it reach its account.
#![allow(clippy::disallowed_types, clippy::unwrap_used)]

mod common;

use common::{Conn, Gateway};
use mock_llm::client::sdk_check;
use mock_llm::{InstanceConfig, MockServer};
use serde_json::{json, Value};

fn native(m: &MockServer, name: &str, priority: i64) -> Value {
    json!({"name": name, "provider": "openai-compatible", "priority": priority, "weight": 1,
           "auth": {"header": {"Authorization": format!("Bearer key-{name}")}},
           "override": {"endpoint": format!("{}/v1/responses", m.instance(name).url())}})
}

fn route(name: &str, prefix: &str, plugin: Value) -> Value {
    json!({"name": name, "uris": [format!("{prefix}/v1/responses"), format!("{prefix}/v1/responses/*"),
                                  format!("{prefix}/v1/conversations"), format!("{prefix}/v1/conversations/*")],
           "methods": ["POST", "GET", "DELETE"], "plugins": {"ai-proxy-multi": plugin}})
}

fn mocks() -> MockServer {
    MockServer::builder()
        .instance(InstanceConfig::new("acct-a").tokens(3))
        .instance(InstanceConfig::new("acct-b").tokens(3))
        .instance(InstanceConfig::new("chat").tokens(3))
        .spawn()
        .unwrap()
}

fn ask(previous: Option<&str>, stream: bool) -> String {
    let mut v = json!({"model": "gpt-5", "input": "What is 1+1?", "stream": stream});
    if let Some(p) = previous {
        v["previous_response_id"] = json!(p);
    }
    v.to_string()
}

/// The response id in a JSON answer or in an event stream's first event.
fn response_id(text: &str) -> String {
    let json = match text.split_once("\ndata: ") {
        Some((_, rest)) => rest.split("\n\n").next().unwrap(),
        None => text,
    };
    let v: Value = serde_json::from_str(json).unwrap();
    v.get("response").unwrap_or(&v)["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn follow_ups_and_stored_calls_find_the_instance_that_holds_the_response() {
    let m = mocks();
    let balanced = json!({"instances": [native(&m, "acct-a", 0), native(&m, "acct-b", 0)]});
    let doc = json!({"services": [{"name": "llm", "routes": [route("balanced", "", balanced)]}]});
    let gw = Gateway::start_json(doc);
    let mut c = Conn::connect(gw.addr);

    // Round robin spreads new conversations over both accounts…
    let mut made = Vec::new();
    for stream in [false, false, true, true] {
        let r = c.post_json("/v1/responses", &ask(None, stream));
        assert_eq!(r.status, 200, "{}", r.text());
        let holder = r.header("x-ringway-instance").unwrap().to_owned();
        made.push((response_id(&r.text()), holder));
    }
    let holders: Vec<&str> = made.iter().map(|(_, h)| h.as_str()).collect();
    assert!(holders.contains(&"acct-a") && holders.contains(&"acct-b"));

    // …and every follow-up goes to the account that holds its previous
    // response at the first attempt, twice in a row (the balancer alone
    // would send every other one elsewhere), JSON and streamed.
    for (id, holder) in &made {
        for stream in [false, true, false] {
            let r = c.post_json("/v1/responses", &ask(Some(id), stream));
            assert_eq!(r.status, 200, "{}", r.text());
            assert_eq!(r.header("x-ringway-instance"), Some(holder.as_str()));
            assert_eq!(r.header("x-ringway-attempts"), Some("1"));
        }
    }
    // The table is shared by the workers: follow-ups on fresh connections
    // (spread over both of the gateway's workers) find the holder too.
    for (id, holder) in &made {
        for _ in 0..6 {
            let mut fresh = Conn::connect(gw.addr);
            let r = fresh.post_json("/v1/responses", &ask(Some(id), false));
            assert_eq!(r.status, 200, "{}", r.text());
            assert_eq!(r.header("x-ringway-instance"), Some(holder.as_str()));
            assert_eq!(r.header("x-ringway-attempts"), Some("1"));
        }
    }
    // A follow-up of a follow-up (remembered from its own answer).

    let (first, holder) = &made[0];
    let r = c.post_json("/v1/responses", &ask(Some(first), false));
    let second = response_id(&r.text());
    let r = c.post_json("/v1/responses", &ask(Some(&second), true));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-ringway-instance"), Some(holder.as_str()));
    assert_eq!(r.header("x-ringway-attempts"), Some("1"));

    // The stored-response calls go to the holder too, passed through.
    let (id, holder) = &made[2];
    let r = c.get(&format!("/v1/responses/{id}"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-ringway-instance"), Some(holder.as_str()));
    assert_eq!(r.header("x-ringway-attempts"), Some("1"));
    assert_eq!(r.json()["id"], id.as_str());
    let r = c.get(&format!("/v1/responses/{id}?stream=true"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("text/event-stream"));
    assert_eq!(r.header("x-ringway-instance"), Some(holder.as_str()));
    let replayed = r.text();
    assert!(
        replayed.starts_with("event: response.created\n"),
        "{replayed}"
    );
    assert!(
        replayed.contains("event: response.completed\n"),
        "{replayed}"
    );
    assert_eq!(response_id(&replayed), *id);
    let r = c.get(&format!("/v1/responses/{id}/input_items?order=asc&limit=5"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["data"][0]["content"][0]["text"], "What is 1+1?");
    let seen = m.instance(holder).requests();
    let last = seen.last().unwrap();
    assert_eq!(last.path, format!("/v1/responses/{id}/input_items"));
    assert_eq!(last.query.as_deref(), Some("order=asc&limit=5"));
    assert_eq!(
        last.header("authorization"),
        Some(&*format!("Bearer key-{holder}"))
    );
    let r = c.request("POST", &format!("/v1/responses/{id}/cancel"));
    assert_eq!(r.status, 400, "the holder's own answer: {}", r.text());
    assert_eq!(r.header("x-ringway-instance"), Some(holder.as_str()));
    let r = c.request("DELETE", &format!("/v1/responses/{id}"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["deleted"], true);

    // Held nowhere (deleted, or never made): every account is asked, and
    // the client gets the provider's own 404 / 400 in the API's shape.
    let r = c.get(&format!("/v1/responses/{id}"));
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(r.header("x-ringway-attempts"), Some("2"));
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("not found"));
    let r = c.post_json("/v1/responses", &ask(Some("resp_nowhere"), false));
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.header("x-ringway-attempts"), Some("2"));
    assert_eq!(r.json()["error"]["code"], "previous_response_not_found");

    // Paths that are not a stored response's never leave the gateway.
    let before = m.instance("acct-a").requests().len() + m.instance("acct-b").requests().len();
    for bad in ["/v1/responses/resp.1", "/v1/responses/a/b/c"] {
        let r = c.get(bad);
        assert_eq!(r.status, 404, "{bad}: {}", r.text());
        assert!(r.json()["error_msg"]
            .as_str()
            .unwrap()
            .contains("not a stored-state path: expected …/responses/{id}"));
    }
    let after = m.instance("acct-a").requests().len() + m.instance("acct-b").requests().len();
    assert_eq!(before, after);
}

#[test]
fn responses_made_elsewhere_are_found_by_probing_then_remembered() {
    let m = mocks();
    // acct-a is always tried first; one attempt only (probes do not count).
    let ordered =
        json!({"max_retries": 0, "instances": [native(&m, "acct-a", 1), native(&m, "acct-b", 0)]});
    let chat_only = json!({"instances": [{"name": "chat", "provider": "deepseek", "weight": 1,
        "auth": {"header": {"Authorization": "Bearer k"}},
        "override": {"endpoint": format!("{}/v1/chat/completions", m.instance("chat").url())}}]});
    let doc = json!({"services": [{"name": "llm", "routes": [
        route("ordered", "", ordered),
        route("chat-only", "/chat", chat_only),
    ]}]});
    let gw = Gateway::start_json(doc);
    let mut c = Conn::connect(gw.addr);

    // Responses the gateway never saw (made directly at acct-b, as after
    // a restart or by another gateway).
    let mut direct = Conn::connect(m.instance("acct-b").addr());
    let unseen = |direct: &mut Conn| {
        response_id(&direct.post_json("/v1/responses", &ask(None, false)).text())
    };
    let (one, two) = (unseen(&mut direct), unseen(&mut direct));

    // A follow-up: acct-a says "not found", acct-b answers.
    let r = c.post_json("/v1/responses", &ask(Some(&one), true));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-ringway-instance"), Some("acct-b"));
    assert_eq!(r.header("x-ringway-attempts"), Some("2"));
    assert!(r.text().contains("response.completed"));
    // A retrieve probes the same way and teaches the gateway where it is.
    let r = c.get(&format!("/v1/responses/{two}"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-ringway-attempts"), Some("2"));
    let r = c.post_json("/v1/responses", &ask(Some(&two), false));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-ringway-instance"), Some("acct-b"));
    assert_eq!(r.header("x-ringway-attempts"), Some("1"));
    // acct-a saw two "not found" probes and nothing else so far.
    let a: Vec<String> = m
        .instance("acct-a")
        .requests()
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(
        a,
        vec![
            "POST /v1/responses".to_owned(),
            format!("GET /v1/responses/{two}")
        ]
    );

    // A conversation made elsewhere: found by probing (acct-a answers 404),
    // then remembered from the answer's `conversation`.
    let conv = direct.post_json("/v1/conversations", "{}").json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let in_conv = |stream: bool| {
        json!({"model": "gpt-5", "input": "hi", "conversation": {"id": conv}, "stream": stream})
            .to_string()
    };
    // (Streamed: the conversation is learnt from the stream's first event.)
    let r = c.post_json("/v1/responses", &in_conv(true));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-ringway-instance"), Some("acct-b"));
    assert_eq!(r.header("x-ringway-attempts"), Some("2"));
    assert!(r.text().contains("response.completed"));
    let r = c.post_json("/v1/responses", &in_conv(false));
    assert_eq!(r.header("x-ringway-attempts"), Some("1"));
    assert_eq!(r.json()["conversation"]["id"], conv.as_str());
    // (JSON: learnt from the answer's `conversation`.)
    let conv2 = direct.post_json("/v1/conversations", "{}").json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let ask2 = json!({"model": "gpt-5", "input": "hi", "conversation": conv2}).to_string();
    let r = c.post_json("/v1/responses", &ask2);
    assert_eq!(r.header("x-ringway-attempts"), Some("2"), "{}", r.text());
    let r = c.post_json("/v1/responses", &ask2);
    assert_eq!(r.header("x-ringway-attempts"), Some("1"), "{}", r.text());

    // The holder cooling down (its 429 with Retry-After): unavailable,
    // not missing — 503 with Retry-After, not "not found".
    m.instance("acct-b").set_faults(mock_llm::Faults {
        status: Some(429),
        retry_after: Some(30),
        ..Default::default()
    });
    let r = c.post_json("/v1/responses", &ask(Some(&two), false));
    assert_eq!(r.status, 429, "{}", r.text());
    m.instance("acct-b").clear_faults();
    let r = c.post_json("/v1/responses", &ask(Some(&two), false));
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.header("retry-after").is_some());
    assert!(r.json()["error_msg"]
        .as_str()
        .unwrap()
        .contains("1 cooling down"));

    // A route whose instances cannot keep responses says so.
    let r = c.get("/chat/v1/responses/resp_1");
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(r.json()["error_msg"]
        .as_str()
        .unwrap()
        .contains("openai-compatible"));
}

#[test]
fn the_openai_sdk_holds_a_conversation_across_balanced_accounts() {
    let m = mocks();
    let balanced = json!({"instances": [native(&m, "acct-a", 0), native(&m, "acct-b", 0)]});
    let doc = json!({"services": [{"name": "llm", "routes": [route("balanced", "", balanced)]}]});
    let gw = Gateway::start_json(doc);
    let base = format!("http://{}/v1", gw.addr);
    let out = sdk_check(
        "openai_responses_conversation",
        &base,
        &["--model", "gpt-5"],
    );
    for key in ["instances", "conversation_instances"] {
        let holders = out[key].as_array().unwrap();
        assert!(
            !holders.is_empty() && holders.iter().all(|h| h == &holders[0]),
            "{out}"
        );
    }
    assert!(
        out["attempts"].as_array().unwrap().iter().all(|a| a == "1"),
        "{out}"
    );
    assert_eq!(out["turns"], 3);
    assert_eq!(out["not_found_code"], "previous_response_not_found");
}

#[test]
fn conversations_stay_on_the_account_that_holds_them() {
    let m = mocks();
    let balanced = json!({"fallback_strategy": ["http_429", "http_5xx"],
                          "instances": [native(&m, "acct-a", 0), native(&m, "acct-b", 0)]});
    let doc = json!({"services": [{"name": "llm", "routes": [route("balanced", "", balanced)]}]});
    let gw = Gateway::start_json(doc);
    let mut c = Conn::connect(gw.addr);
    // New conversations are balanced like new requests.
    let mut made = Vec::new();
    for _ in 0..4 {
        let r = c.post_json(
            "/v1/conversations",
            r#"{"items":[{"type":"message","role":"user","content":"hello there"}]}"#,
        );
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["object"], "conversation");
        let holder = r.header("x-ringway-instance").unwrap().to_owned();
        made.push((r.json()["id"].as_str().unwrap().to_owned(), holder));
    }
    let holders: Vec<&str> = made.iter().map(|(_, h)| h.as_str()).collect();
    assert!(
        holders.contains(&"acct-a") && holders.contains(&"acct-b"),
        "{holders:?}"
    );
    let sent = m.instance(&made[0].1).requests();
    assert_eq!(sent.last().unwrap().path, "/v1/conversations");
    // Every response in a conversation goes to its account, first try,
    // JSON and streamed, from any connection.
    for (id, holder) in &made {
        for stream in [false, true, false] {
            let body = json!({"model": "gpt-5", "input": "What is 1+1?", "conversation": id, "stream": stream});
            let r = Conn::connect(gw.addr).post_json("/v1/responses", &body.to_string());
            assert_eq!(r.status, 200, "{}", r.text());
            assert_eq!(r.header("x-ringway-instance"), Some(holder.as_str()));
            assert_eq!(r.header("x-ringway-attempts"), Some("1"));
        }
        // Its items: the first message, then three turns.
        let r = c.get(&format!("/v1/conversations/{id}/items?order=asc"));
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("x-ringway-instance"), Some(holder.as_str()));
        assert_eq!(r.json()["data"].as_array().unwrap().len(), 1 + 3 * 2);
    }
    // Metadata update and delete reach it; afterwards nobody has it.
    let (id, holder) = &made[1];
    let r = c.post_json(
        &format!("/v1/conversations/{id}"),
        r#"{"metadata":{"topic":"math"}}"#,
    );
    assert_eq!(r.json()["metadata"]["topic"], "math");
    let r = c.request("DELETE", &format!("/v1/conversations/{id}"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-ringway-instance"), Some(holder.as_str()));
    let r = c.get(&format!("/v1/conversations/{id}"));
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(r.header("x-ringway-attempts"), Some("2"));
    // A response naming a conversation nobody holds: the provider's 404.
    let body = json!({"model": "gpt-5", "input": "x", "conversation": "conv_nowhere"}).to_string();
    let r = c.post_json("/v1/responses", &body);
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(r.header("x-ringway-attempts"), Some("2"));
    // Creating one needs no particular account: it falls back like a new
    // request when one fails.
    m.instance("acct-b").set_faults(mock_llm::Faults {
        status: Some(503),
        ..Default::default()
    });
    for _ in 0..4 {
        let r = c.post_json("/v1/conversations", "{}");
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("x-ringway-instance"), Some("acct-a"));
    }
    m.instance("acct-b").clear_faults();
    // Only plain paths leave the gateway.
    let r = c.get("/v1/conversations/conv_1/items/msg_1/x");
    assert_eq!(r.status, 404);
    assert!(r.json()["error_msg"]
        .as_str()
        .unwrap()
        .contains("…/conversations[/{id}"));
}

/// A stored-state call carries the client's query after the instance's
/// own, but a parameter the instance sets (Azure's `api-version`, an
/// `auth.query` key) keeps the instance's value, and key-auth's
/// `hide_credentials` keeps a `?apikey=` from it. New requests carry only
/// the instance's query.
#[test]
fn the_instances_own_query_wins_over_the_clients() {
    let m = mocks();
    let mut azure = native(&m, "acct-a", 0);
    azure["override"]["endpoint"] = json!(format!(
        "{}/openai/v1/responses?api-version=2024-10-21",
        m.instance("acct-a").url()
    ));
    azure["auth"]["query"] = json!({"key": "instance-key"});
    let mut r = route("azure", "", json!({"instances": [azure]}));
    r["plugins"]["key-auth"] = json!({"hide_credentials": true});
    let doc = json!({"services": [{"name": "llm", "routes": [r]}],
                     "consumers": [{"username": "u", "credentials": [
                         {"name": "c", "type": "key-auth", "config": {"key": "client-key"}}]}]});
    let gw = Gateway::start_json(doc);
    let mut c = Conn::connect(gw.addr);
    let want = "api-version=2024-10-21&key=instance-key";

    let r = c.post_json(
        "/v1/responses?api-version=evil&key=evil&apikey=client-key",
        &ask(None, false),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let id = response_id(&r.text());
    let seen = m.instance("acct-a").requests();
    assert_eq!(seen.last().unwrap().query.as_deref(), Some(want));

    let evil = "api-version=evil&key=evil&include=x&apikey=client-key&API-Version=evil";
    for path in [
        format!("/v1/responses/{id}?{evil}"),
        format!("/v1/responses/{id}/input_items?{evil}"),
        format!("/v1/conversations?{evil}"),
    ] {
        let r = if path.starts_with("/v1/conversations") {
            c.post_json(&path, "{}")
        } else {
            c.get(&path)
        };
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        let seen = m.instance("acct-a").requests();
        let last = seen.last().unwrap();
        assert!(last.path.starts_with("/openai/v1/"), "{}", last.path);
        assert_eq!(
            last.query.as_deref(),
            Some(&*format!("{want}&include=x")),
            "{path}"
        );
    }
}
