//! Log entries for logger plugins (`kafka-logger`): APISIX's "full log"
//! (`log-util.get_full_log`, the default `meta_format`) built from a
//! finished request, with the LLM variables and, when the route's
//! `ai-proxy-multi` asks for them (`logging.summaries` / `.payloads`),
//! `llm_summary`, `llm_request` and `llm_response_text`. Those three are
//! also written into access-log lines. Built in the log phase, only for
//! routes that have a logger or ask for them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use crate::http::RequestHead;
use crate::server::ctx::{RequestCtx, RequestType};

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `llm_summary`: the model, the time the upstream took (ms) and the
/// token counts.
pub fn llm_summary(ctx: &RequestCtx) -> Value {
    let l = &ctx.llm;
    json!({
        "model": l.model.as_deref().or(l.request_model.as_deref()),
        "duration": ctx.upstream_response_time.map(ms),
        "prompt_tokens": l.prompt_tokens,
        "completion_tokens": l.completion_tokens,
    })
}

/// Appends `,"llm_request":<the client's body>` when the request asked
/// for payloads. The body was validated as a JSON object on the way in, so
/// it is copied as it is, unless it spans lines (then it is re-written
/// compactly: entries and access-log lines are one line each).
pub fn write_llm_request(out: &mut Vec<u8>, ctx: &RequestCtx) {
    let (Some(_), Some(body)) = (&ctx.llm.payloads, &ctx.llm.request_body) else {
        return;
    };
    out.extend_from_slice(b",\"llm_request\":");
    if !body.iter().any(|&b| b == b'\n' || b == b'\r') {
        out.extend_from_slice(body);
        return;
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(v) => {
            let _ = serde_json::to_writer(&mut *out, &v);
        }
        Err(_) => {
            let _ = serde_json::to_writer(&mut *out, &text(body));
        }
    }
}

/// Adds the `logging` fields the request asked for to `m`, except
/// `llm_request` ([`write_llm_request`] appends it to the written entry).
pub fn add_llm_logging(m: &mut Map<String, Value>, ctx: &RequestCtx) {
    if ctx.request_type == RequestType::TraditionalHttp {
        return;
    }
    if ctx.llm.summaries {
        m.insert("llm_summary".into(), llm_summary(ctx));
    }
    if let Some(p) = &ctx.llm.payloads {
        if let Some(t) = &p.text {
            m.insert("llm_response_text".into(), Value::String(t.clone()));
        }
    }
}

/// What the entry includes beyond the defaults.
#[derive(Debug, Clone, Copy, Default)]
pub struct EntryOptions {
    /// `meta_format: origin` (kafka-logger): the request as it came in —
    /// the raw head, and the body with `include_req_body` — instead of the
    /// JSON full log.
    pub origin: bool,
    /// `include_req_body`: the request body (AI routes, where it is read).
    pub request_body: bool,
    /// `max_req_body_bytes`: most body bytes included.
    pub max_request_body: Option<usize>,
}

/// The entry `opts` asks for: [`full_log`], or [`original_request`].
pub fn entry(head: &RequestHead, ctx: &RequestCtx, opts: EntryOptions) -> Vec<u8> {
    if opts.origin {
        original_request(head, ctx, opts)
    } else {
        full_log(head, ctx, opts)
    }
}

/// APISIX's `meta_format: origin`: the raw request head, then the body
/// when `include_req_body` asks for it (AI routes, where it is read).
pub fn original_request(head: &RequestHead, ctx: &RequestCtx, opts: EntryOptions) -> Vec<u8> {
    let mut out = head.buf.to_vec();
    if opts.request_body {
        if let Some(body) = &ctx.llm.request_body {
            let n = opts.max_request_body.unwrap_or(usize::MAX).min(body.len());
            out.extend_from_slice(&body[..n]);
        }
    }
    out
}

/// APISIX's full log for one finished request, as one line of JSON.
pub fn full_log(head: &RequestHead, ctx: &RequestCtx, opts: EntryOptions) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    let _ = serde_json::to_writer(&mut out, &full_log_value(head, ctx, opts));
    if out.last() == Some(&b'}') {
        out.pop();
        write_llm_request(&mut out, ctx);
        out.push(b'}');
    }
    out
}

/// [`full_log`] without `llm_request`, as a value.
fn full_log_value(head: &RequestHead, ctx: &RequestCtx, opts: EntryOptions) -> Value {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let latency = ctx.started.elapsed();
    let start = now.saturating_sub(latency);
    let host = head.host().map(text).unwrap_or_default();
    let mut headers = Map::new();
    for (n, v) in head.header_pairs() {
        let name = text(n).to_ascii_lowercase();
        match headers.get_mut(&name) {
            // Repeated headers become an array, as in ngx.req.get_headers().
            Some(Value::Array(a)) => a.push(Value::String(text(v))),
            Some(prev) => *prev = json!([prev.take(), text(v)]),
            None => {
                headers.insert(name, Value::String(text(v)));
            }
        }
    }
    let mut query = Map::new();
    for pair in head.query().unwrap_or_default().split(|&b| b == b'&') {
        if pair.is_empty() {
            continue;
        }
        let mut kv = pair.splitn(2, |&b| b == b'=');
        let k = text(kv.next().unwrap_or_default());
        let v = kv
            .next()
            .map(|v| Value::String(text(v)))
            .unwrap_or(Value::Bool(true));
        query.insert(k, v);
    }
    let mut request = json!({
        "url": format!("http://{}{}", host, text(head.target())),
        "uri": text(head.target()),
        "method": head.method.as_str(),
        "headers": headers,
        "querystring": query,
        "size": head.header("content-length").and_then(|v| std::str::from_utf8(v).ok()?.parse::<u64>().ok()).unwrap_or(0),
    });
    if opts.request_body {
        if let Some(body) = &ctx.llm.request_body {
            let n = opts.max_request_body.unwrap_or(usize::MAX).min(body.len());
            request["body"] = Value::String(text(&body[..n]));
        }
    }
    let mut m = Map::new();
    m.insert("request".into(), request);
    m.insert(
        "response".into(),
        json!({"status": ctx.status, "size": ctx.bytes_sent}),
    );
    if let Some(a) = ctx.upstream_addr {
        m.insert("upstream".into(), Value::String(a.to_string()));
    }
    if let Some(r) = &ctx.route_id {
        m.insert("route_id".into(), Value::String(r.to_string()));
    }
    if let Some(c) = &ctx.consumer {
        m.insert("consumer".into(), json!({"username": &*c.username}));
    }
    m.insert("client_ip".into(), Value::String(ctx.peer.ip().to_string()));
    m.insert("start_time".into(), json!(start.as_millis() as u64));
    m.insert("latency".into(), json!(ms(latency)));
    if let Some(u) = ctx.upstream_response_time {
        m.insert("upstream_latency".into(), json!(ms(u)));
        m.insert(
            "apisix_latency".into(),
            json!(ms(latency.saturating_sub(u))),
        );
    }
    m.insert(
        "server".into(),
        json!({"hostname": hostname(), "version": env!("CARGO_PKG_VERSION")}),
    );
    m.insert(
        "request_type".into(),
        Value::String(ctx.request_type.as_str().into()),
    );
    if ctx.request_type != RequestType::TraditionalHttp {
        let l = &ctx.llm;
        m.insert("request_llm_model".into(), json!(l.request_model));
        m.insert("llm_model".into(), json!(l.model));
        m.insert("llm_time_to_first_token".into(), json!(l.ttft.map(ms)));
        m.insert("llm_prompt_tokens".into(), json!(l.prompt_tokens));
        m.insert("llm_completion_tokens".into(), json!(l.completion_tokens));
        m.insert("llm_instance".into(), json!(l.instance.as_deref()));
        m.insert("llm_attempts".into(), json!(l.attempts));
    }
    add_llm_logging(&mut m, ctx);
    Value::Object(m)
}

fn hostname() -> &'static str {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_owned())
            .unwrap_or_default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::wire::Wire;
    use crate::server::ctx::Payloads;

    fn ctx_with_body(body: &'static [u8]) -> RequestCtx {
        let mut ctx = RequestCtx::new("127.0.0.1:1".parse().unwrap(), std::time::Instant::now());
        ctx.llm.request_body = Some(bytes::Bytes::from_static(body));
        ctx.llm.payloads = Some(Box::new(Payloads {
            response: Vec::new(),
            wire: Wire::OpenAi,
            text: None,
        }));
        ctx
    }

    #[test]
    fn request_payloads_are_copied_or_made_one_line() {
        let mut out = b"{\"a\":1".to_vec();
        write_llm_request(&mut out, &ctx_with_body(br#"{"model":"m","messages":[]}"#));
        out.push(b'}');
        assert_eq!(out, br#"{"a":1,"llm_request":{"model":"m","messages":[]}}"#);

        let mut out = b"{\"a\":1".to_vec();
        write_llm_request(&mut out, &ctx_with_body(b"{\n  \"model\": \"m\"\r\n}"));
        out.push(b'}');
        assert_eq!(out, br#"{"a":1,"llm_request":{"model":"m"}}"#);

        // Without logging.payloads nothing is written.
        let mut ctx = ctx_with_body(b"{}");
        ctx.llm.payloads = None;
        let mut out = Vec::new();
        write_llm_request(&mut out, &ctx);
        assert!(out.is_empty());
    }
}
