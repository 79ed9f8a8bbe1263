//! OpenAI Responses API (`POST …/responses`): JSON, and the real SSE event
//! sequence (`response.created`, `response.in_progress`,
//! `response.output_item.added`, `response.content_part.added`,
//! `response.output_text.delta`…, `response.output_text.done`,
//! `response.content_part.done`, `response.output_item.done`,
//! `response.completed` carrying the usage), numbered by
//! `sequence_number`, so the official SDK's stream helpers accept it.
//!
//! Like the real API it refuses Chat Completions parameters it does not
//! take (`max_tokens`, `messages`, `stream_options.include_usage`), so a
//! gateway that sends chat-isms to it is caught.
//!
//! Responses are stored (`store`, default true) per mock instance, like
//! per account: `previous_response_id` must name one this instance holds
//! (else `400 previous_response_not_found`, as the real API answers) and
//! counts its conversation as input; `GET` / `DELETE …/responses/{id}`
//! (`GET …?stream=true` replays it as events),
//! `GET …/responses/{id}/input_items` and `POST …/responses/{id}/cancel`
//! answer from the store (`404` for ids it does not hold). `conversation`
//! must name a conversation this instance holds (else `404`); its items
//! count as input and the response's input and output join it.

use serde_json::{json, Value};

use super::{json_body, send_error, timing, unix_now, After, Shape};
use crate::config::Faults;
use crate::content;
use crate::http::{response, Conn, Request};
use crate::state::{Shared, StoredResponse};
use crate::stream::{stream, StreamPlan};

pub async fn create(sh: &Shared, conn: &mut Conn, req: &Request, faults: &Faults) -> After {
    let body = match json_body(sh, conn, req, Shape::OpenAi).await {
        Ok(b) => b,
        Err(a) => return a,
    };
    if let Some(msg) = refusal(&body) {
        return send_error(sh, conn, req, Shape::OpenAi, 400, &msg, &[]).await;
    }
    let previous = body
        .get("previous_response_id")
        .and_then(Value::as_str)
        .map(str::to_owned);
    // The conversation so far is input again, as the real API counts it.
    let mut history = 0;
    if let Some(prev) = &previous {
        let held = sh.response_store().get(prev).map(|s| {
            s.response
                .pointer("/usage/total_tokens")
                .and_then(Value::as_u64)
                .unwrap_or(0)
        });
        match held {
            Some(tokens) => history = tokens,
            None => {
                let msg = format!("Previous response with id '{prev}' not found.");
                let param = Some("previous_response_id");
                let code = Some("previous_response_not_found");
                return send_api_error(sh, conn, req, 400, &msg, param, code).await;
            }
        }
    }
    // A conversation (Conversations API): its items are input again.
    let conversation = match body.get("conversation") {
        Some(Value::String(c)) => Some(c.clone()),
        Some(c) => c.get("id").and_then(Value::as_str).map(str::to_owned),
        None => None,
    };
    if let Some(conv) = &conversation {
        if previous.is_some() {
            let msg = "Mutually exclusive parameters: Ensure you are only providing one of: 'previous_response_id' or 'conversation'.";
            return send_api_error(sh, conn, req, 400, msg, Some("conversation"), None).await;
        }
        let held = sh.conversation_store().get(conv).map(|c| {
            let items = Value::Array(c.items.clone());
            prompt_tokens(&json!({ "input": items }))
        });
        match held {
            Some(tokens) => history = tokens,
            None => return super::conversations::not_found(sh, conn, req, conv).await,
        }
    }
    let model = body["model"].as_str().unwrap_or_default().to_owned();
    let cap = body.get("max_output_tokens").and_then(Value::as_u64);
    let configured = faults.tokens.unwrap_or(sh.config.tokens);
    let n = cap.map_or(configured, |c| configured.min(c as u32));
    let cut = cap.is_some_and(|c| (c as u32) < configured);
    let input = prompt_tokens(&body) + history;
    let cached = sh.config.cached_tokens.min(input);
    let seq = sh.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let id = format!("resp_{}_{seq}", sh.name());
    let item_id = format!("msg_{}_{seq}", sh.name());
    let created = unix_now();
    let t = timing(sh, faults, n);
    let headers = vec![
        ("x-mock-instance", sh.name().to_owned()),
        ("x-request-id", format!("req_{id}")),
    ];
    let usage = json!({
        "input_tokens": input,
        "input_tokens_details": {"cached_tokens": cached},
        "output_tokens": n,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input + u64::from(n),
    });
    let text = content::completion(n);
    let done_item = |text: &str| {
        json!({"type": "message", "id": item_id, "status": if cut { "incomplete" } else { "completed" }, "role": "assistant",
               "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]})
    };
    let envelope = |status: &str, output: Value, usage: Value| {
        json!({
            "id": id, "object": "response", "created_at": created, "status": status,
            "background": false, "error": null,
            "incomplete_details": if cut && status != "in_progress" { json!({"reason": "max_output_tokens"}) } else { Value::Null },
            "instructions": body.get("instructions").cloned().unwrap_or(Value::Null),
            "max_output_tokens": body.get("max_output_tokens").cloned().unwrap_or(Value::Null),
            "model": model, "output": output, "parallel_tool_calls": true,
            "previous_response_id": previous,
            "conversation": conversation.as_ref().map(|c| json!({"id": c})), "reasoning": {"effort": null, "summary": null},
            "store": body.get("store").cloned().unwrap_or(Value::Bool(true)),
            "temperature": 1.0, "text": {"format": {"type": "text"}}, "tool_choice": "auto",
            "tools": [], "top_p": 1.0, "truncation": "disabled", "usage": usage,
            "metadata": body.get("metadata").cloned().unwrap_or_else(|| json!({})),
        })
    };
    let final_status = if cut { "incomplete" } else { "completed" };
    let whole = envelope(final_status, json!([done_item(&text)]), usage.clone());
    if body.get("store").and_then(Value::as_bool).unwrap_or(true) {
        let stored = StoredResponse {
            response: whole.clone(),
            input_items: with_ids(input_as_items(&body), seq),
        };
        sh.response_store().put(id.clone(), stored);
    }
    if let Some(conv) = &conversation {
        if let Some(c) = sh.conversation_store().get_mut(conv) {
            c.items.extend(with_ids(input_as_items(&body), seq));
            c.items.push(done_item(&text));
        }
    }
    if !body.get("stream").and_then(Value::as_bool).unwrap_or(false) {
        super::pause(t.whole_answer()).await;
        let out = whole;
        sh.count(200);
        sh.add_tokens(input, u64::from(n));
        return super::send_json(conn, req, faults, out.to_string().as_bytes(), &headers).await;
    }
    let mut numbered = Numbered::default();
    let mut event = |kind: &str, data: Value| numbered.event(kind, data);
    let part = |text: &str| json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []});
    let at = |mut v: Value| {
        v["item_id"] = json!(item_id);
        v["output_index"] = json!(0);
        v["content_index"] = json!(0);
        v
    };
    let head = vec![
        event(
            "response.created",
            json!({"response": envelope("in_progress", json!([]), Value::Null)}),
        ),
        event(
            "response.in_progress",
            json!({"response": envelope("in_progress", json!([]), Value::Null)}),
        ),
        event(
            "response.output_item.added",
            json!({"output_index": 0, "item": {"type": "message", "id": item_id, "status": "in_progress", "role": "assistant", "content": []}}),
        ),
        event("response.content_part.added", at(json!({"part": part("")}))),
    ];
    let tokens = (0..n)
        .map(|i| {
            event(
                "response.output_text.delta",
                at(json!({"delta": content::token(i), "logprobs": []})),
            )
        })
        .collect();
    let tail = vec![
        event(
            "response.output_text.done",
            at(json!({"text": text, "logprobs": []})),
        ),
        event(
            "response.content_part.done",
            at(json!({"part": part(&text)})),
        ),
        event(
            "response.output_item.done",
            json!({"output_index": 0, "item": done_item(&text)}),
        ),
        event(
            if cut {
                "response.incomplete"
            } else {
                "response.completed"
            },
            json!({"response": whole}),
        ),
    ];
    let plan = StreamPlan { head, tokens, tail };
    sh.count(200);
    stream(sh, conn, req, faults, &t, plan, &headers, input, n).await
}

/// `…/responses/{id}[/{rest}]` of a path: the id and what follows it.
pub fn stored_path(path: &str) -> Option<(&str, &str)> {
    let at = path.find("/responses/")?;
    let after = &path[at + "/responses/".len()..];
    let (id, rest) = after.split_once('/').unwrap_or((after, ""));
    (!id.is_empty()).then_some((id, rest))
}

/// The endpoints of a stored response: retrieve, delete, list its input
/// items, cancel.
pub async fn stored(sh: &Shared, conn: &mut Conn, req: &Request, id: &str, rest: &str) -> After {
    let not_found = format!("Response with id '{id}' not found.");
    let found = sh.response_store().get(id).cloned();
    let out = match (req.method.as_str(), rest, found) {
        ("GET", "", Some(s)) if req.query_param("stream") == Some("true") => {
            return replay(sh, conn, req, s.response).await;
        }
        ("GET", "", Some(s)) => s.response,
        ("DELETE", "", Some(_)) => {
            sh.response_store().remove(id);
            json!({"id": id, "object": "response", "deleted": true})
        }
        ("GET", "input_items", Some(s)) => {
            let mut items = s.input_items;
            if req.query_param("order") != Some("asc") {
                items.reverse();
            }
            let limit = req
                .query_param("limit")
                .and_then(|l| l.parse::<usize>().ok())
                .unwrap_or(20)
                .clamp(1, 100);
            let has_more = items.len() > limit;
            items.truncate(limit);
            let first = items.first().and_then(|i| i.get("id")).cloned();
            let last = items.last().and_then(|i| i.get("id")).cloned();
            json!({"object": "list", "data": items, "first_id": first, "last_id": last, "has_more": has_more})
        }
        ("POST", "cancel", Some(_)) => {
            let msg = "Cannot cancel a synchronous response.";
            return send_api_error(sh, conn, req, 400, msg, None, None).await;
        }
        ("GET", "", None)
        | ("DELETE", "", None)
        | ("GET", "input_items", None)
        | ("POST", "cancel", None) => {
            return send_api_error(sh, conn, req, 404, &not_found, None, None).await;
        }
        _ => return unknown_url(sh, conn, req).await,
    };
    send_found(sh, conn, req, &out).await
}

/// A stored response replayed as a stream (`GET …?stream=true`): its
/// creation, its text as one delta per output text part, its completion.
async fn replay(sh: &Shared, conn: &mut Conn, req: &Request, response: Value) -> After {
    let mut numbered = Numbered::default();
    let mut event = |kind: &str, data: Value| numbered.event(kind, data);
    let mut created = response.clone();
    created["status"] = json!("in_progress");
    created["output"] = json!([]);
    let head = vec![event("response.created", json!({ "response": created }))];
    let mut tokens = Vec::new();
    for (i, item) in response["output"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        for (j, part) in item["content"].as_array().into_iter().flatten().enumerate() {
            if let Some(text) = part["text"].as_str() {
                let delta = json!({"item_id": item["id"], "output_index": i, "content_index": j, "delta": text});
                tokens.push(event("response.output_text.delta", delta));
            }
        }
    }
    let done = if response["status"] == "incomplete" {
        "response.incomplete"
    } else {
        "response.completed"
    };
    let tail = vec![event(done, json!({ "response": response }))];
    let plan = StreamPlan { head, tokens, tail };
    let t = super::Timing {
        ttft: std::time::Duration::ZERO,
        itl: Vec::new(),
    };
    let headers = [("x-mock-instance", sh.name().to_owned())];
    sh.count(200);
    stream(sh, conn, req, &Faults::default(), &t, plan, &headers, 0, 0).await
}

/// A request's `input` as items: a string as one user message, an array
/// as given.
fn input_as_items(body: &Value) -> Vec<Value> {
    match body.get("input") {
        Some(Value::String(s)) => vec![json!({"type": "message", "role": "user",
            "content": [{"type": "input_text", "text": s}]})],
        Some(Value::Array(items)) => items.clone(),
        _ => Vec::new(),
    }
}

/// Items as stored: each with an id and a status.
pub(super) fn with_ids(items: Vec<Value>, seq: u64) -> Vec<Value> {
    items
        .into_iter()
        .enumerate()
        .map(|(i, mut item)| {
            if let Some(o) = item.as_object_mut() {
                o.entry("id")
                    .or_insert_with(|| json!(format!("msg_in_{seq}_{i}")));
                o.entry("status").or_insert_with(|| json!("completed"));
            }
            item
        })
        .collect()
}

/// A `200` with a stored object (or what became of it).
pub(super) async fn send_found(sh: &Shared, conn: &mut Conn, req: &Request, out: &Value) -> After {
    sh.count(200);
    let headers = [("x-mock-instance", sh.name().to_owned())];
    super::send_json(
        conn,
        req,
        &sh.faults(),
        out.to_string().as_bytes(),
        &headers,
    )
    .await
}

/// `404` for a method and path no endpoint serves.
pub(super) async fn unknown_url(sh: &Shared, conn: &mut Conn, req: &Request) -> After {
    let msg = format!("Unknown request URL: {} {}.", req.method, req.path);
    send_api_error(sh, conn, req, 404, &msg, None, None).await
}

/// An error in the API's shape with its `param` and `code`.
pub(super) async fn send_api_error(
    sh: &Shared,
    conn: &mut Conn,
    req: &Request,
    status: u16,
    message: &str,
    param: Option<&str>,
    code: Option<&str>,
) -> After {
    sh.count(status);
    let body = json!({"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}});
    let headers = [("x-mock-instance", sh.name().to_owned())];
    let out = response(
        status,
        "application/json",
        body.to_string().as_bytes(),
        req.keep_alive,
        &headers,
    );
    if conn.write(out).await.is_err() {
        After::Gone
    } else if req.keep_alive {
        After::KeepAlive
    } else {
        After::Close
    }
}

/// Writes a stream's events, numbered by `sequence_number` from 0.
#[derive(Default)]
struct Numbered {
    next: u64,
}

impl Numbered {
    fn event(&mut self, kind: &str, mut data: Value) -> Vec<u8> {
        data["type"] = json!(kind);
        data["sequence_number"] = json!(self.next);
        self.next += 1;
        format!("event: {kind}\ndata: {data}\n\n").into_bytes()
    }
}

/// Why the real API would refuse this body (400), if it would.
fn refusal(body: &Value) -> Option<String> {
    if !body.get("model").is_some_and(Value::is_string) {
        return Some("Missing required parameter: 'model'.".into());
    }
    for chat_only in ["max_tokens", "max_completion_tokens", "messages"] {
        if body.get(chat_only).is_some() {
            return Some(format!("Unsupported parameter: '{chat_only}'."));
        }
    }
    if body.pointer("/stream_options/include_usage").is_some() {
        return Some("Unknown parameter: 'stream_options.include_usage'.".into());
    }
    match body.get("input") {
        Some(Value::String(_)) | Some(Value::Array(_)) => None,
        None => Some("Missing required parameter: 'input'.".into()),
        Some(_) => Some("Invalid type for 'input': expected a string or an array.".into()),
    }
}

/// Input tokens by mock-llm's rule: 1 per word of text, +4 per input item
/// (a string `input` is one item), +4 for `instructions`.
pub fn prompt_tokens(body: &Value) -> u64 {
    let instructions = body
        .get("instructions")
        .and_then(Value::as_str)
        .map_or(0, |s| 4 + content::words(s));
    let input = match body.get("input") {
        Some(Value::String(s)) => 4 + content::words(s),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(s) => 4 + content::words(s),
                _ => 4 + item.get("content").map_or(0, content::content_words),
            })
            .sum(),
        _ => 0,
    };
    instructions + input
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_tokens_follow_the_documented_rule() {
        let b = json!({"instructions": "Be brief", "input": "What is 1+1?"});
        assert_eq!(prompt_tokens(&b), 4 + 2 + 4 + 3);
        let b = json!({"input": [{"role": "user", "content": "hi there"}, {"role": "user", "content": [{"type": "input_text", "text": "one"}]}]});
        assert_eq!(prompt_tokens(&b), 4 + 2 + 4 + 1);
    }

    #[test]
    fn chat_isms_are_refused_as_the_real_api_does() {
        let ok = json!({"model": "m", "input": "hi"});
        assert_eq!(refusal(&ok), None);
        for bad in [
            json!({"input": "hi"}),
            json!({"model": "m"}),
            json!({"model": "m", "input": 3}),
            json!({"model": "m", "input": "hi", "max_tokens": 5}),
            json!({"model": "m", "input": "hi", "stream_options": {"include_usage": true}}),
        ] {
            assert!(refusal(&bad).is_some(), "{bad}");
        }
    }
}
