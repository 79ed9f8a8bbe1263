//! OpenAI embeddings (also behind Azure deployment paths): deterministic
//! vectors (8 dimensions, or `dimensions`), as floats or base64 (what the
//! official Python SDK asks for by default).

use serde_json::{json, Value};

use super::{json_body, send_error, timing, After, Shape};
use crate::config::Faults;
use crate::content;
use crate::http::{response, Conn, Request};
use crate::state::Shared;

pub async fn embeddings(sh: &Shared, conn: &mut Conn, req: &Request, faults: &Faults) -> After {
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
    let inputs: Vec<String> = match body.get("input") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) if !items.is_empty() => {
            items.iter().map(|i| i.to_string()).collect()
        }
        _ => {
            return send_error(
                sh,
                conn,
                req,
                Shape::OpenAi,
                400,
                "'input' is a required property",
                &[],
            )
            .await
        }
    };
    let dims = body
        .get("dimensions")
        .and_then(Value::as_u64)
        .unwrap_or(8)
        .clamp(1, 4096) as usize;
    let base64 = match body.get("encoding_format").and_then(Value::as_str) {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return send_error(
                sh,
                conn,
                req,
                Shape::OpenAi,
                400,
                &format!("'{other}' is not one of ['float', 'base64']"),
                &[],
            )
            .await
        }
    };
    let tokens = content::embedding_input_tokens(body.get("input").unwrap_or(&Value::Null));
    super::pause(timing(sh, faults, 0).ttft).await;
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let v = content::embedding(text, dims);
            let embedding = if base64 {
                Value::from(content::base64_f32(&v))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    let out = json!({"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}});
    sh.count(200);
    sh.add_tokens(tokens, 0);
    let bytes = response(
        200,
        "application/json",
        out.to_string().as_bytes(),
        req.keep_alive,
        &[("x-mock-instance", sh.name().to_owned())],
    );
    if conn.write(bytes).await.is_ok() && req.keep_alive {
        After::KeepAlive
    } else {
        After::Close
    }
}
