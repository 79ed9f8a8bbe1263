//! Log entries for logger plugins (`kafka-logger`, `http-logger`): which
//! entry a logger's options ask for ([`entry`]: APISIX's full log,
//! [`super::full_log`], the default; a `log_format`'s fields; or
//! `meta_format: origin`'s raw request), and the `logging` fields the
//! route's `ai-proxy-multi` asks for (`logging.summaries` / `.payloads`):
//! `llm_summary`, `llm_request` and `llm_response_text`, also written
//! into access-log lines. Built in the log phase, only for routes that
//! have a logger or ask for them; every kind redacts credentials
//! ([`super::redact`]).

use std::borrow::Cow;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use super::redact::Redaction;
use crate::exchange::ctx::{RequestCtx, RequestType};
use crate::http::RequestHead;

/// Milliseconds with microsecond precision, as APISIX logs latencies.
pub(crate) fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

pub(super) fn text(b: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(b)
}

/// `llm_summary`: the model, the time the upstream took (ms) and the
/// token counts.
#[derive(Serialize)]
struct Summary<'a> {
    model: Option<&'a str>,
    duration: Option<f64>,
    prompt_tokens: u64,
    completion_tokens: u64,
}

impl<'a> Summary<'a> {
    fn of(ctx: &'a RequestCtx) -> Summary<'a> {
        let l = &ctx.llm;
        Summary {
            model: l.model.as_deref().or(l.request_model.as_deref()),
            duration: ctx.upstream_response_time.map(ms),
            prompt_tokens: l.prompt_tokens,
            completion_tokens: l.completion_tokens,
        }
    }
}

/// Appends the `logging` fields the request asked for, as `,"name":value`
/// members of an object being written: `llm_summary`, `llm_response_text`
/// and `llm_request`.
pub fn write_llm_logging(out: &mut Vec<u8>, ctx: &RequestCtx) {
    if ctx.request_type == RequestType::TraditionalHttp {
        return;
    }
    if ctx.llm.summaries {
        out.extend_from_slice(b",\"llm_summary\":");
        let _ = serde_json::to_writer(&mut *out, &Summary::of(ctx));
    }
    if let Some(t) = ctx.llm.payloads.as_ref().and_then(|p| p.text.as_deref()) {
        out.extend_from_slice(b",\"llm_response_text\":");
        let _ = serde_json::to_writer(&mut *out, t);
    }
    write_llm_request(out, ctx);
}

/// Appends `,"llm_request":<the client's body>` when the request asked
/// for payloads. The body was validated as a JSON object on the way in, so
/// it is copied as it is, unless it spans lines (then it is re-written
/// compactly: entries and access-log lines are one line each).
fn write_llm_request(out: &mut Vec<u8>, ctx: &RequestCtx) {
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

/// What the entry includes beyond the defaults.
#[derive(Debug, Clone, Default)]
pub struct EntryOptions {
    /// `meta_format: origin` (kafka-logger): the request as it came in —
    /// the raw head, and the body with `include_req_body` — instead of the
    /// JSON full log.
    pub origin: bool,
    /// `log_format`: chosen fields instead of the full log.
    pub format: Option<std::sync::Arc<super::log_format::LogFormat>>,
    /// `include_req_body`: the request body (AI routes, where it is read).
    pub request_body: bool,
    /// `include_req_body_expr`: only when this holds at log time.
    pub request_body_when: Option<std::sync::Arc<crate::http::expr::Expr>>,
    /// `include_resp_body` with `max_resp_body_bytes`: the response body,
    /// up to this many bytes.
    pub max_response_body: Option<usize>,
    /// `include_resp_body_expr`: only when this holds at log time.
    pub response_body_when: Option<std::sync::Arc<crate::http::expr::Expr>>,
    /// `max_req_body_bytes`: most body bytes included.
    pub max_request_body: Option<usize>,
}

impl EntryOptions {
    /// Whether this request's entry includes its body.
    pub(super) fn includes_request_body(&self, head: &RequestHead, ctx: &RequestCtx) -> bool {
        self.request_body
            && self
                .request_body_when
                .as_ref()
                .is_none_or(|e| super::vars::holds(e, head, ctx))
    }

    /// The response body bytes this request's entry includes, if any.
    pub(super) fn response_body<'c>(
        &self,
        head: &RequestHead,
        ctx: &'c RequestCtx,
    ) -> Option<&'c [u8]> {
        let max = self.max_response_body?;
        let body = &ctx.response_body.as_ref()?.bytes;
        let holds = self
            .response_body_when
            .as_ref()
            .is_none_or(|e| super::vars::holds(e, head, ctx));
        holds.then(|| &body[..body.len().min(max)])
    }
}

/// The entry `opts` asks for: [`original_request`] (which wins, as in
/// APISIX's kafka-logger), a `log_format`'s fields, or the
/// [full log](super::full_log::full_log);
/// credentials redacted as `r` says.
pub fn entry(head: &RequestHead, ctx: &RequestCtx, opts: &EntryOptions, r: &Redaction) -> Vec<u8> {
    if opts.origin {
        original_request(head, ctx, opts, r)
    } else if let Some(f) = &opts.format {
        f.entry(head, ctx, r)
    } else {
        super::full_log::full_log(head, ctx, opts, r)
    }
}

/// APISIX's `meta_format: origin`: the raw request head (credentials
/// redacted), then the body when `include_req_body` asks for it (AI
/// routes, where it is read).
pub fn original_request(
    head: &RequestHead,
    ctx: &RequestCtx,
    opts: &EntryOptions,
    r: &Redaction,
) -> Vec<u8> {
    let mut out = r.head(head).into_owned();
    if opts.includes_request_body(head, ctx) {
        if let Some(body) = &ctx.llm.request_body {
            let n = opts.max_request_body.unwrap_or(usize::MAX).min(body.len());
            out.extend_from_slice(&body[..n]);
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::exchange::ctx::Payloads;
    use crate::wire::Wire;

    /// A request context with `body` as the client's request body and
    /// `logging.payloads` on (also used by `full_log`'s tests).
    pub(crate) fn ctx_with_body(body: &'static [u8]) -> RequestCtx {
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
