//! Anthropic Messages (`POST …/messages`): JSON, and the real SSE event
//! sequence (`message_start`, `content_block_start`, `ping`,
//! `content_block_delta`…, `content_block_stop`, `message_delta` with
//! usage, `message_stop`), so the official SDK's stream helpers work.

use serde_json::{json, Value};

use super::{json_body, send_error, timing, After, Shape};
use crate::config::Faults;
use crate::content;
use crate::http::{Conn, Request};
use crate::state::Shared;
use crate::stream::{stream, StreamPlan};

fn event(name: &str, data: Value) -> Vec<u8> {
    format!("event: {name}\ndata: {data}\n\n").into_bytes()
}

pub async fn messages(sh: &Shared, conn: &mut Conn, req: &Request, faults: &Faults) -> After {
    let body = match json_body(sh, conn, req, Shape::Anthropic).await {
        Ok(b) => b,
        Err(a) => return a,
    };
    let Some(model) = body.get("model").and_then(Value::as_str).map(str::to_owned) else {
        return send_error(
            sh,
            conn,
            req,
            Shape::Anthropic,
            400,
            "model: Field required",
            &[],
        )
        .await;
    };
    let Some(max_tokens) = body.get("max_tokens").and_then(Value::as_u64) else {
        return send_error(
            sh,
            conn,
            req,
            Shape::Anthropic,
            400,
            "max_tokens: Field required",
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
                Shape::Anthropic,
                400,
                "messages: Field required",
                &[],
            )
            .await
        }
    }
    let configured = faults.tokens.unwrap_or(sh.config.tokens);
    let n = configured.min(max_tokens as u32);
    let stop_reason = if (max_tokens as u32) < configured {
        "max_tokens"
    } else {
        "end_turn"
    };
    let input = content::anthropic_prompt_tokens(&body);
    let seq = sh.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let id = format!("msg_{}_{seq}", sh.name());
    let t = timing(sh, faults, n);
    let headers = vec![
        ("x-mock-instance", sh.name().to_owned()),
        ("request-id", format!("req_{id}")),
    ];
    if !body.get("stream").and_then(Value::as_bool).unwrap_or(false) {
        super::pause(t.whole_answer()).await;
        let out = json!({
            "id": id, "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": content::completion(n)}],
            "stop_reason": stop_reason, "stop_sequence": null,
            "usage": usage(sh, input, u64::from(n)),
        });
        sh.count(200);
        sh.add_tokens(input, u64::from(n));
        return super::send_json(conn, req, faults, out.to_string().as_bytes(), &headers).await;
    }
    let plan = StreamPlan {
        head: vec![
            event(
                "message_start",
                json!({"type": "message_start", "message": {"id": id, "type": "message", "role": "assistant", "model": model, "content": [], "stop_reason": null, "stop_sequence": null, "usage": usage(sh, input, 1)}}),
            ),
            event(
                "content_block_start",
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            ),
            event("ping", json!({"type": "ping"})),
        ],
        tokens: {
            let stamp = content::TokenStamp::new(&event(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": content::TOKEN_MARK}}),
            ));
            (0..n).map(|i| stamp.render(i)).collect()
        },
        tail: vec![
            event(
                "content_block_stop",
                json!({"type": "content_block_stop", "index": 0}),
            ),
            event(
                "message_delta",
                json!({"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": null}, "usage": {"output_tokens": n}}),
            ),
            event("message_stop", json!({"type": "message_stop"})),
        ],
    };
    sh.count(200);
    stream(sh, conn, req, faults, &t, plan, &headers, input, n).await
}

/// Anthropic's usage object; `cache_read_input_tokens` and
/// `cache_creation_input_tokens` when the instance reports cached prompt
/// tokens (on top of `input_tokens`, which leaves them out, as Anthropic
/// counts).
fn usage(sh: &Shared, input: u64, output: u64) -> Value {
    let mut u = json!({"input_tokens": input, "output_tokens": output});
    if sh.config.cached_tokens > 0 {
        u["cache_read_input_tokens"] = json!(sh.config.cached_tokens);
    }
    if sh.config.cache_creation_tokens > 0 {
        u["cache_creation_input_tokens"] = json!(sh.config.cache_creation_tokens);
    }
    u
}
