//! OpenAI chat completions (JSON and SSE `chat.completion.chunk`s ending
//! in `data: [DONE]`, with the usage chunk only when
//! `stream_options.include_usage` is set) and the model list.

use serde::Serialize;
use serde_json::{json, Value};

use super::{json_body, send_error, timing, unix_now, After, Shape};
use crate::config::Faults;
use crate::content;
use crate::http::{response, Conn, Request};
use crate::state::Shared;
use crate::stream::{stream, StreamPlan};

pub async fn chat(sh: &Shared, conn: &mut Conn, req: &Request, faults: &Faults) -> After {
    let body = match json_body(sh, conn, req, Shape::OpenAi).await {
        Ok(b) => b,
        Err(a) => return a,
    };
    let Some(model) = body.get("model").and_then(Value::as_str).map(str::to_owned) else {
        return send_error(
            sh,
            conn,
            req,
            Shape::OpenAi,
            400,
            "you must provide a model parameter",
            &[],
        )
        .await;
    };
    match body.get("messages") {
        Some(Value::Array(m)) if !m.is_empty() => {}
        _ => {
            return send_error(
                sh,
                conn,
                req,
                Shape::OpenAi,
                400,
                "'messages' must be a non-empty array of message objects.",
                &[],
            )
            .await
        }
    }
    let cap = body
        .get("max_completion_tokens")
        .or_else(|| body.get("max_tokens"))
        .and_then(Value::as_u64);
    let configured = faults.tokens.unwrap_or(sh.config.tokens);
    let n = cap.map_or(configured, |c| configured.min(c as u32));
    let finish = if cap.is_some_and(|c| (c as u32) < configured) {
        "length"
    } else {
        "stop"
    };
    let prompt = content::openai_prompt_tokens(&body);
    let cached = sh.config.cached_tokens.min(prompt);
    let usage = Usage {
        prompt_tokens: prompt,
        completion_tokens: u64::from(n),
        total_tokens: prompt + u64::from(n),
        prompt_tokens_details: (cached > 0).then_some(PromptDetails {
            cached_tokens: cached,
        }),
    };
    let seq = sh.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let id = format!("chatcmpl-{}-{seq}", sh.name());
    let fingerprint = format!("mock-{}", sh.name());
    let created = unix_now();
    let t = timing(sh, faults, n);
    let stream_on = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    if !stream_on {
        super::pause(t.whole_answer()).await;
        let out = Completion {
            id: &id,
            object: "chat.completion",
            created,
            model: &model,
            system_fingerprint: &fingerprint,
            choices: [Choice {
                index: 0,
                message: Message {
                    role: "assistant",
                    content: content::completion(n),
                    refusal: None,
                },
                logprobs: None,
                finish_reason: finish,
            }],
            usage,
        };
        sh.count(200);
        sh.add_tokens(prompt, u64::from(n));
        return super::send_json(
            conn,
            req,
            faults,
            &serde_json::to_vec(&out).unwrap_or_default(),
            &headers(sh, &id),
        )
        .await;
    }
    let usage = serde_json::to_value(usage).unwrap_or(Value::Null);
    let include_usage = body
        .get("stream_options")
        .and_then(|s| s.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let chunk = |choices: Value, usage: Option<&Value>| -> Vec<u8> {
        let mut v = json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model, "system_fingerprint": fingerprint, "choices": choices});
        if include_usage {
            v["usage"] = usage.cloned().unwrap_or(Value::Null);
        }
        format!("data: {v}\n\n").into_bytes()
    };
    let plan = StreamPlan {
        head: vec![chunk(
            json!([{"index": 0, "delta": {"role": "assistant", "content": "", "refusal": null}, "logprobs": null, "finish_reason": null}]),
            None,
        )],
        tokens: {
            let stamp = content::TokenStamp::new(&chunk(
                json!([{"index": 0, "delta": {"content": content::TOKEN_MARK}, "logprobs": null, "finish_reason": null}]),
                None,
            ));
            (0..n).map(|i| stamp.render(i)).collect()
        },
        tail: {
            let mut tail = vec![chunk(
                json!([{"index": 0, "delta": {}, "logprobs": null, "finish_reason": finish}]),
                None,
            )];
            if include_usage {
                tail.push(chunk(json!([]), Some(&usage)));
            }
            if faults.omit_done != Some(true) {
                tail.push(b"data: [DONE]\n\n".to_vec());
            }
            tail
        },
    };
    sh.count(200);
    stream(
        sh,
        conn,
        req,
        faults,
        &t,
        plan,
        &headers(sh, &id),
        prompt,
        n,
    )
    .await
}

/// A non-streamed chat completion, in OpenAI's field order (serialised
/// straight from borrowed fields: the throughput path builds no JSON tree).
#[derive(Serialize)]
struct Completion<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    system_fingerprint: &'a str,
    choices: [Choice; 1],
    usage: Usage,
}

#[derive(Serialize)]
struct Choice {
    index: u32,
    message: Message,
    logprobs: Option<()>,
    finish_reason: &'static str,
}

#[derive(Serialize)]
struct Message {
    role: &'static str,
    content: String,
    refusal: Option<()>,
}

#[derive(Serialize)]
struct Usage {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt_tokens_details: Option<PromptDetails>,
}

#[derive(Serialize)]
struct PromptDetails {
    cached_tokens: u64,
}

fn headers(sh: &Shared, id: &str) -> Vec<(&'static str, String)> {
    vec![
        ("x-mock-instance", sh.name().to_owned()),
        ("x-request-id", format!("req-{id}")),
    ]
}

pub async fn models(sh: &Shared, conn: &mut Conn, req: &Request) -> After {
    let body = json!({"object": "list", "data": [
        {"id": "mock-gpt", "object": "model", "created": 1_700_000_000, "owned_by": sh.name()},
        {"id": "mock-embedding", "object": "model", "created": 1_700_000_000, "owned_by": sh.name()},
    ]});
    sh.count(200);
    let out = response(
        200,
        "application/json",
        body.to_string().as_bytes(),
        req.keep_alive,
        &[("x-mock-instance", sh.name().to_owned())],
    );
    if conn.write(out).await.is_ok() && req.keep_alive {
        After::KeepAlive
    } else {
        After::Close
    }
}
