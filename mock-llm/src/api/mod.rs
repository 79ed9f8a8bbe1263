//! Request dispatch: control and stats paths, the health path, the OAuth
//! token endpoint, then model requests (by path suffix, so any prefix
//! works: `/v1/chat/completions`, Azure deployment paths, Vertex paths…)
//! after auth and fault injection.

pub mod anthropic;
pub mod control;
pub mod conversations;
pub mod embeddings;
pub mod openai;
pub mod responses;

use std::time::Duration;

use serde_json::{json, Value};

use crate::config::Faults;
use crate::http::{response, Conn, Request};
use crate::state::Shared;

/// Error body shapes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Shape {
    OpenAi,
    Anthropic,
}

/// What happened to the connection after a request.
pub enum After {
    KeepAlive,
    Close,
    /// The connection was lost (a write failed).
    Gone,
    /// Reset the connection (fault injection).
    Reset,
}

pub fn error_body(shape: Shape, status: u16, message: &str) -> Vec<u8> {
    let v = match shape {
        Shape::OpenAi => {
            let (t, code) = match status {
                401 => ("invalid_request_error", Value::from("invalid_api_key")),
                404 => ("invalid_request_error", Value::from("not_found")),
                429 => ("requests", Value::from("rate_limit_exceeded")),
                s if s >= 500 => ("server_error", Value::Null),
                _ => ("invalid_request_error", Value::Null),
            };
            json!({"error": {"message": message, "type": t, "param": null, "code": code}})
        }
        Shape::Anthropic => {
            let t = match status {
                401 => "authentication_error",
                403 => "permission_error",
                404 => "not_found_error",
                413 => "request_too_large",
                429 => "rate_limit_error",
                529 => "overloaded_error",
                s if s >= 500 => "api_error",
                _ => "invalid_request_error",
            };
            json!({"type": "error", "error": {"type": t, "message": message}})
        }
    };
    v.to_string().into_bytes()
}

/// Writes an error reply and counts it.
pub async fn send_error(
    sh: &Shared,
    conn: &mut Conn,
    req: &Request,
    shape: Shape,
    status: u16,
    message: &str,
    extra: &[(&str, String)],
) -> After {
    sh.count(status);
    let mut headers = vec![("x-mock-instance", sh.name().to_owned())];
    headers.extend(extra.iter().cloned());
    let out = response(
        status,
        "application/json",
        &error_body(shape, status, message),
        req.keep_alive,
        &headers,
    );
    if conn.write(out).await.is_err() {
        return After::Gone;
    }
    if req.keep_alive {
        After::KeepAlive
    } else {
        After::Close
    }
}

/// Faults for one request: the instance's, overridden by `x-mock-*` headers.
fn request_faults(sh: &Shared, req: &Request) -> Faults {
    let base = sh.faults();
    let h = |n: &str| req.header(n);
    let num = |n: &str| h(n).and_then(|v| v.trim().parse::<u64>().ok());
    let per = Faults {
        status: num("x-mock-status").map(|v| v as u16),
        fail_rate: h("x-mock-fail-rate").and_then(|v| v.trim().parse().ok()),
        retry_after: num("x-mock-retry-after"),
        reset_before_response: h("x-mock-reset-before-response").map(|v| v != "0" && v != "false"),
        reset_after_chunks: num("x-mock-reset-after-chunks").map(|v| v as u32),
        stall_ms: num("x-mock-stall-ms"),
        stall_after_chunks: num("x-mock-stall-after-chunks").map(|v| v as u32),
        slow_read_bps: None,
        refuse_for_secs: None,
        ttft_ms: num("x-mock-ttft-ms"),
        itl_ms: num("x-mock-itl-ms"),
        tokens: num("x-mock-tokens").map(|v| v as u32),
        health_status: None,
        omit_done: h("x-mock-omit-done").map(|v| v != "0" && v != "false"),
        json_style: h("x-mock-json-style").and_then(|v| v.parse().ok()),
    };
    base.overlay(&per)
}

/// Handles one request on `conn`.
pub async fn dispatch(sh: &Shared, conn: &mut Conn, req: Request) -> After {
    let path = req.path.as_str();
    match (req.method.as_str(), path) {
        (_, "/_stats") | (_, "/_requests") | (_, "/_control") => {
            return control::handle(sh, conn, &req).await
        }
        ("GET", "/health") | ("GET", "/healthz") => {
            let status = sh.faults().health_status.unwrap_or(sh.config.health_status);
            let body = json!({"status": if status < 400 { "ok" } else { "unhealthy" }, "instance": sh.name()});
            let out = response(
                status,
                "application/json",
                body.to_string().as_bytes(),
                req.keep_alive,
                &[("x-mock-instance", sh.name().to_owned())],
            );
            return if conn.write(out).await.is_ok() && req.keep_alive {
                After::KeepAlive
            } else {
                After::Close
            };
        }
        ("POST", "/oauth2/token") => return control::token(sh, conn, &req).await,
        _ => {}
    }
    let shape = if path.ends_with("/messages") {
        Shape::Anthropic
    } else {
        Shape::OpenAi
    };
    let req = std::sync::Arc::new(req);
    sh.record_request(req.clone());
    let path = req.path.as_str();
    if let Some(key) = &sh.config.api_key {
        let bearer = req
            .header("authorization")
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        let given = bearer.or(req.header("api-key")).or(req.header("x-api-key"));
        if given != Some(key.as_str()) {
            let msg = match shape {
                Shape::OpenAi => "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.",
                Shape::Anthropic => "invalid x-api-key",
            };
            return send_error(sh, conn, &req, shape, 401, msg, &[]).await;
        }
    }
    let faults = request_faults(sh, &req);
    if faults.reset_before_response == Some(true) {
        sh.fault_injected();
        return After::Reset;
    }
    if let Some(status) = faults.status {
        let hit = match faults.fail_rate {
            None => true,
            Some(p) => sh.with_rng(|r| r.next_f64()) < p,
        };
        if hit {
            sh.fault_injected();
            if let Some(ms) = faults
                .stall_ms
                .filter(|_| faults.reset_after_chunks.is_none())
            {
                monoio::time::sleep(Duration::from_millis(ms)).await;
            }
            let extra: Vec<(&str, String)> = if status == 429 {
                vec![("Retry-After", faults.retry_after.unwrap_or(1).to_string())]
            } else {
                Vec::new()
            };
            let msg = match status {
                429 => "Rate limit reached (mock fault).",
                s if s >= 500 => {
                    "The server had an error while processing your request (mock fault)."
                }
                _ => "Mock fault.",
            };
            return send_error(sh, conn, &req, shape, status, msg, &extra).await;
        }
    } else if let Some(p) = faults.fail_rate {
        if sh.with_rng(|r| r.next_f64()) < p {
            sh.fault_injected();
            return send_error(
                sh,
                conn,
                &req,
                shape,
                500,
                "The server had an error (mock fault).",
                &[],
            )
            .await;
        }
    }
    if path.contains("/openai/deployments/") && req.query_param("api-version").is_none() {
        return send_error(
            sh,
            conn,
            &req,
            shape,
            400,
            "Azure OpenAI requests need the api-version query parameter.",
            &[],
        )
        .await;
    }
    if let Some((id, rest)) = conversations::conversations_path(path) {
        return conversations::handle(sh, conn, &req, id, rest).await;
    }
    if let Some((id, rest)) = responses::stored_path(path) {
        return responses::stored(sh, conn, &req, id, rest).await;
    }
    match (req.method.as_str(), shape) {
        ("POST", Shape::Anthropic) => anthropic::messages(sh, conn, &req, &faults).await,
        ("POST", _) if path.ends_with("/chat/completions") => {
            openai::chat(sh, conn, &req, &faults).await
        }
        ("POST", _) if path.ends_with("/responses") => {
            responses::create(sh, conn, &req, &faults).await
        }
        ("POST", _) if path.ends_with("/embeddings") => {
            embeddings::embeddings(sh, conn, &req, &faults).await
        }
        ("GET", _) if path.ends_with("/models") => openai::models(sh, conn, &req).await,
        _ => {
            let msg = format!("Unknown request URL: {} {}.", req.method, req.path);
            send_error(sh, conn, &req, shape, 404, &msg, &[]).await
        }
    }
}

/// Parses a JSON object body, or answers 400 in the right shape.
pub async fn json_body(
    sh: &Shared,
    conn: &mut Conn,
    req: &Request,
    shape: Shape,
) -> Result<Value, After> {
    match serde_json::from_slice::<Value>(&req.body) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(send_error(
            sh,
            conn,
            req,
            shape,
            400,
            "The request body must be a JSON object.",
            &[],
        )
        .await),
        Err(e) => Err(send_error(
            sh,
            conn,
            req,
            shape,
            400,
            &format!("We could not parse the JSON body of your request. ({e})"),
            &[],
        )
        .await),
    }
}

/// Delays for a response: time to first token and between tokens.
pub struct Timing {
    pub ttft: Duration,
    pub itl: Vec<Duration>,
}

impl Timing {
    /// How long a whole (non-streamed) answer takes: the first token and
    /// the gaps to every later one.
    pub fn whole_answer(&self) -> Duration {
        self.ttft + self.itl.iter().skip(1).sum::<Duration>()
    }
}

/// Writes a `200` JSON answer, spelled as `faults.json_style` says.
pub async fn send_json(
    conn: &mut Conn,
    req: &Request,
    faults: &Faults,
    body: &[u8],
    headers: &[(&str, String)],
) -> After {
    let styled;
    let body = match faults.json_style {
        Some(style) => {
            styled = crate::spacing::restyle(body, style);
            &styled[..]
        }
        None => body,
    };
    let out = response(200, "application/json", body, req.keep_alive, headers);
    if conn.write(out).await.is_ok() && req.keep_alive {
        After::KeepAlive
    } else {
        After::Close
    }
}

pub fn timing(sh: &Shared, faults: &Faults, n: u32) -> Timing {
    let ttft = match faults.ttft_ms {
        Some(ms) => Duration::from_millis(ms),
        None if sh.config.ttft.is_zero() => Duration::ZERO,
        None => sh.with_rng(|r| sh.config.ttft.sample(r)),
    };
    let itl = match faults.itl_ms {
        Some(ms) => vec![Duration::from_millis(ms); n as usize],
        None if sh.config.itl.is_zero() => Vec::new(),
        None => sh.with_rng(|r| (0..n).map(|_| sh.config.itl.sample(r)).collect()),
    };
    Timing { ttft, itl }
}

/// Sleeps unless zero (the zero-delay benchmark path never touches timers).
pub async fn pause(d: Duration) {
    if !d.is_zero() {
        monoio::time::sleep(d).await;
    }
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
