//! Log entries for logger plugins (`kafka-logger`): APISIX's "full log"
//! (`log-util.get_full_log`, the default `meta_format`) built from a
//! finished request, with the LLM variables and, when the route's
//! `ai-proxy-multi` asks for them (`logging.summaries` / `.payloads`),
//! `llm_summary`, `llm_request` and `llm_response_text`. Those three are
//! also written into access-log lines. Built in the log phase, only for
//! routes that have a logger or ask for them.

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde::Serialize;
use serde_json::Value;

use crate::http::RequestHead;
use crate::server::ctx::{RequestCtx, RequestType};

/// Milliseconds with microsecond precision, as APISIX logs latencies.
pub(crate) fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

fn text(b: &[u8]) -> Cow<'_, str> {
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
    fn includes_request_body(&self, head: &RequestHead, ctx: &RequestCtx) -> bool {
        self.request_body
            && self
                .request_body_when
                .as_ref()
                .is_none_or(|e| super::vars::holds(e, head, ctx))
    }

    /// The response body bytes this request's entry includes, if any.
    fn response_body<'c>(&self, head: &RequestHead, ctx: &'c RequestCtx) -> Option<&'c [u8]> {
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
/// APISIX's kafka-logger), a `log_format`'s fields, or [`full_log`].
pub fn entry(head: &RequestHead, ctx: &RequestCtx, opts: &EntryOptions) -> Vec<u8> {
    if opts.origin {
        original_request(head, ctx, opts)
    } else if let Some(f) = &opts.format {
        f.entry(head, ctx)
    } else {
        full_log(head, ctx, opts)
    }
}

/// APISIX's `meta_format: origin`: the raw request head, then the body
/// when `include_req_body` asks for it (AI routes, where it is read).
pub fn original_request(head: &RequestHead, ctx: &RequestCtx, opts: &EntryOptions) -> Vec<u8> {
    let mut out = head.buf.to_vec();
    if opts.includes_request_body(head, ctx) {
        if let Some(body) = &ctx.llm.request_body {
            let n = opts.max_request_body.unwrap_or(usize::MAX).min(body.len());
            out.extend_from_slice(&body[..n]);
        }
    }
    out
}

/// APISIX's full log for one finished request, as one line of JSON,
/// written straight from the request (no value tree in between).
pub fn full_log(head: &RequestHead, ctx: &RequestCtx, opts: &EntryOptions) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    let _ = serde_json::to_writer(&mut out, &FullLog::of(head, ctx, opts));
    if out.last() == Some(&b'}') {
        out.pop();
        write_llm_logging(&mut out, ctx);
        out.push(b'}');
    }
    out
}

/// [`full_log`] without the `logging` fields.
#[derive(Serialize)]
struct FullLog<'a> {
    request: Request<'a>,
    response: Response,
    #[serde(skip_serializing_if = "Option::is_none")]
    upstream: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    route_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    consumer: Option<Consumer<'a>>,
    client_ip: IpAddr,
    start_time: u64,
    latency: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    upstream_latency: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    apisix_latency: Option<f64>,
    server: Server,
    request_type: &'static str,
    /// The LLM variables, on AI requests.
    #[serde(flatten)]
    llm: Option<LlmVars<'a>>,
}

#[derive(Serialize)]
struct Request<'a> {
    url: String,
    uri: Cow<'a, str>,
    method: &'a str,
    headers: Grouped<'a>,
    querystring: Grouped<'a>,
    size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<Cow<'a, str>>,
}

#[derive(Serialize)]
struct Response {
    status: u16,
    size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<String>,
}

#[derive(Serialize)]
struct Consumer<'a> {
    username: &'a str,
}

#[derive(Serialize)]
struct Server {
    hostname: &'static str,
    version: &'static str,
}

#[derive(Serialize)]
struct LlmVars<'a> {
    request_llm_model: Option<&'a str>,
    llm_model: Option<&'a str>,
    llm_time_to_first_token: Option<f64>,
    llm_prompt_tokens: u64,
    llm_completion_tokens: u64,
    llm_instance: Option<&'a str>,
    llm_attempts: u32,
}

impl<'a> FullLog<'a> {
    fn of(head: &'a RequestHead, ctx: &'a RequestCtx, opts: &EntryOptions) -> FullLog<'a> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let latency = ctx.started.elapsed();
        let start = now.saturating_sub(latency);
        let host = head.host().map(text).unwrap_or_default();
        let headers = head
            .header_pairs()
            .map(|(n, v)| (lowercase(n), Scalar::Str(text(v))))
            .collect();
        let query = head
            .query()
            .unwrap_or_default()
            .split(|&b| b == b'&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let mut kv = pair.splitn(2, |&b| b == b'=');
                let k = text(kv.next().unwrap_or_default());
                (k, kv.next().map_or(Scalar::True, |v| Scalar::Str(text(v))))
            })
            .collect();
        let body = ctx
            .llm
            .request_body
            .as_ref()
            .filter(|_| opts.includes_request_body(head, ctx))
            .map(|b| {
                let n = opts.max_request_body.unwrap_or(usize::MAX).min(b.len());
                text(&b[..n])
            });
        let request = Request {
            url: format!("http://{}{}", host, text(head.target())),
            uri: text(head.target()),
            method: head.method.as_str(),
            headers: Grouped(headers),
            querystring: Grouped(query),
            size: head
                .header("content-length")
                .and_then(|v| std::str::from_utf8(v).ok()?.parse::<u64>().ok())
                .unwrap_or(0),
            body,
        };
        let l = &ctx.llm;
        FullLog {
            request,
            response: Response {
                status: ctx.status,
                size: ctx.bytes_sent,
                body: opts.response_body(head, ctx).map(|b| text(b).into_owned()),
            },
            upstream: ctx.upstream_addr,
            route_id: ctx.route_id.as_deref(),
            consumer: ctx.consumer.as_ref().map(|c| Consumer {
                username: &c.username,
            }),
            client_ip: ctx.peer.ip(),
            start_time: start.as_millis() as u64,
            latency: ms(latency),
            upstream_latency: ctx.upstream_response_time.map(ms),
            apisix_latency: ctx
                .upstream_response_time
                .map(|u| ms(latency.saturating_sub(u))),
            server: Server {
                hostname: hostname(),
                version: env!("CARGO_PKG_VERSION"),
            },
            request_type: ctx.request_type.as_str(),
            llm: (ctx.request_type != RequestType::TraditionalHttp).then(|| LlmVars {
                request_llm_model: l.request_model.as_deref(),
                llm_model: l.model.as_deref(),
                llm_time_to_first_token: l.ttft.map(ms),
                llm_prompt_tokens: l.prompt_tokens,
                llm_completion_tokens: l.completion_tokens,
                llm_instance: l.instance.as_deref(),
                llm_attempts: l.attempts,
            }),
        }
    }
}

fn lowercase(name: &[u8]) -> Cow<'_, str> {
    match text(name) {
        Cow::Borrowed(n) if !n.bytes().any(|b| b.is_ascii_uppercase()) => Cow::Borrowed(n),
        n => Cow::Owned(n.to_ascii_lowercase()),
    }
}

/// A header or query value; a query argument without `=` is `true`.
enum Scalar<'a> {
    Str(Cow<'a, str>),
    True,
}

impl Serialize for Scalar<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Scalar::Str(v) => s.serialize_str(v),
            Scalar::True => s.serialize_bool(true),
        }
    }
}

/// Name–value pairs written as an object, a repeated name's values as an
/// array (as `ngx.req.get_headers()` and `get_uri_args()` give them).
struct Grouped<'a>(Vec<(Cow<'a, str>, Scalar<'a>)>);

impl Serialize for Grouped<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let pairs = &self.0;
        let mut map = s.serialize_map(None)?;
        for (i, (name, value)) in pairs.iter().enumerate() {
            if pairs[..i].iter().any(|(n, _)| n == name) {
                continue;
            }
            let rest = &pairs[i..];
            if rest[1..].iter().any(|(n, _)| n == name) {
                map.serialize_entry(name, &Repeated(rest, name))?;
            } else {
                map.serialize_entry(name, value)?;
            }
        }
        map.end()
    }
}

/// The values of `.1` among the pairs `.0`, as an array.
struct Repeated<'s, 'a>(&'s [(Cow<'a, str>, Scalar<'a>)], &'s str);

impl Serialize for Repeated<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(None)?;
        for (_, v) in self.0.iter().filter(|(n, _)| n == self.1) {
            seq.serialize_element(v)?;
        }
        seq.end()
    }
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

    #[test]
    fn the_full_log_groups_repeated_names_and_carries_the_llm_fields() {
        let raw = b"POST /v1/chat?a=1&flag&a=2&b=x%20y HTTP/1.1\r\nHost: gw.test\r\nX-Tag: one\r\nContent-Length: 2\r\nx-tag: two\r\nX-TAG: three\r\n\r\n";
        let head = RequestHead::parse(
            bytes::Bytes::from_static(raw),
            &crate::http::request::HeadLimits::default(),
            Vec::new(),
        )
        .unwrap();
        let mut ctx = ctx_with_body(br#"{"model":"m"}"#);
        ctx.status = 200;
        ctx.bytes_sent = 42;
        ctx.route_id = Some("r1".into());
        ctx.request_type = RequestType::AiChat;
        ctx.llm.request_model = Some("m".into());
        ctx.llm.model = Some("gpt-4".into());
        ctx.llm.prompt_tokens = 3;
        ctx.llm.completion_tokens = 4;
        ctx.llm.attempts = 1;
        ctx.llm.summaries = true;
        ctx.llm.payloads.as_mut().unwrap().text = Some("Hi \"there\"".into());
        let opts = EntryOptions {
            request_body: true,
            max_request_body: Some(5),
            ..EntryOptions::default()
        };
        let v: Value = serde_json::from_slice(&full_log(&head, &ctx, &opts)).unwrap();
        let r = &v["request"];
        assert_eq!(r["url"], "http://gw.test/v1/chat?a=1&flag&a=2&b=x%20y");
        assert_eq!(r["uri"], "/v1/chat?a=1&flag&a=2&b=x%20y");
        assert_eq!(r["method"], "POST");
        assert_eq!(r["size"], 2);
        assert_eq!(r["body"], "{\"mod");
        assert_eq!(
            r["headers"],
            serde_json::json!({"host": "gw.test", "x-tag": ["one", "two", "three"], "content-length": "2"})
        );
        assert_eq!(
            r["querystring"],
            serde_json::json!({"a": ["1", "2"], "flag": true, "b": "x%20y"})
        );
        assert_eq!(
            v["response"],
            serde_json::json!({"status": 200, "size": 42})
        );
        assert_eq!(v["route_id"], "r1");
        assert_eq!(v["client_ip"], "127.0.0.1");
        assert!(v.get("upstream").is_none() && v.get("consumer").is_none());
        assert_eq!(v["request_type"], "ai_chat");
        assert_eq!(v["request_llm_model"], "m");
        assert_eq!(v["llm_model"], "gpt-4");
        assert_eq!(v["llm_time_to_first_token"], Value::Null);
        assert_eq!(v["llm_prompt_tokens"], 3);
        assert_eq!(v["llm_attempts"], 1);
        assert_eq!(
            v["llm_summary"],
            serde_json::json!({"model": "gpt-4", "duration": null, "prompt_tokens": 3, "completion_tokens": 4})
        );
        assert_eq!(v["llm_response_text"], "Hi \"there\"");
        assert_eq!(v["llm_request"], serde_json::json!({"model": "m"}));

        // A plain proxied request has none of the LLM fields.
        ctx.request_type = RequestType::TraditionalHttp;
        let v: Value = serde_json::from_slice(&full_log(&head, &ctx, &opts)).unwrap();
        for k in [
            "llm_model",
            "llm_attempts",
            "llm_summary",
            "llm_response_text",
            "llm_request",
        ] {
            assert!(v.get(k).is_none(), "{k}: {v}");
        }
        assert_eq!(v["request_type"], "traditional_http");
    }
}
