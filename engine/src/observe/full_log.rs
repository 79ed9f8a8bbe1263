//! APISIX's "full log" (`log-util.get_full_log`, the default entry of
//! logger plugins): `request` (url, uri, method, headers, querystring,
//! size, body), `response`, `upstream`, `route_id`, `consumer`,
//! `client_ip`, times, `server`, the LLM variables and the `logging`
//! fields — written straight from the finished request as one line of
//! JSON (no value tree in between), with credentials in the URL, headers
//! and query redacted ([`super::redact`]).

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde::Serialize;

use super::entry::{ms, text, write_llm_logging, EntryOptions};
use super::redact::{Redaction, MARKER};
use crate::exchange::ctx::{RequestCtx, RequestType};
use crate::http::RequestHead;

/// APISIX's full log for one finished request, as one line of JSON,
/// written straight from the request (no value tree in between), with
/// credentials in the URL, headers and query redacted.
pub fn full_log(
    head: &RequestHead,
    ctx: &RequestCtx,
    opts: &EntryOptions,
    r: &Redaction,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    let _ = serde_json::to_writer(&mut out, &FullLog::of(head, ctx, opts, r));
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
    fn of(
        head: &'a RequestHead,
        ctx: &'a RequestCtx,
        opts: &EntryOptions,
        r: &Redaction,
    ) -> FullLog<'a> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let latency = ctx.started.elapsed();
        let start = now.saturating_sub(latency);
        FullLog {
            request: Request::of(head, ctx, opts, r),
            response: Response {
                status: ctx.status,
                size: ctx.bytes_sent,
                body: opts.response_body(head, ctx).map(|b| text(b).into_owned()),
            },
            upstream: ctx.upstream_addr,
            route_id: ctx.route_id.as_deref(),
            consumer: ctx
                .consumer
                .as_deref()
                .map(|username| Consumer { username }),
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
            llm: (ctx.request_type != RequestType::TraditionalHttp).then(|| LlmVars::of(ctx)),
        }
    }
}

impl<'a> Request<'a> {
    /// The `request` part: the URL and target with credentials redacted,
    /// headers and query arguments grouped by name, the body when the
    /// options include it.
    fn of(
        head: &'a RequestHead,
        ctx: &'a RequestCtx,
        opts: &EntryOptions,
        r: &Redaction,
    ) -> Request<'a> {
        let host = head.host().map(text).unwrap_or_default();
        // A request id ringway made is a request header, as APISIX sets
        // it (replacing a client's empty one).
        let made = ctx.request_id.as_ref().filter(|id| id.generated);
        let mut headers: Vec<_> = head
            .header_pairs()
            .filter(|(n, _)| !made.is_some_and(|id| id.header.as_bytes().eq_ignore_ascii_case(n)))
            .map(|(n, v)| (lowercase(n), Scalar::Str(redacted(r.header_value(n, v)))))
            .collect();
        if let Some(id) = made {
            headers.push((
                lowercase(id.header.as_bytes()),
                Scalar::Str(text(&id.value)),
            ));
        }
        let body = ctx
            .llm
            .request_body
            .as_ref()
            .filter(|_| opts.includes_request_body(head, ctx))
            .map(|b| {
                let n = opts.max_request_body.unwrap_or(usize::MAX).min(b.len());
                text(&b[..n])
            });
        let target = redacted(r.target(head.target()));
        let scheme = if ctx.tls { "https" } else { "http" };
        Request {
            url: format!("{scheme}://{host}{}", origin_form(&target)),
            uri: target,
            method: head.method.as_str(),
            headers: Grouped(headers),
            querystring: Grouped(query_args(head, r)),
            size: head
                .header("content-length")
                .and_then(|v| std::str::from_utf8(v).ok()?.parse::<u64>().ok())
                .unwrap_or(0),
            body,
        }
    }
}

impl<'a> LlmVars<'a> {
    /// The LLM variables of an AI request.
    fn of(ctx: &'a RequestCtx) -> LlmVars<'a> {
        let l = &ctx.llm;
        LlmVars {
            request_llm_model: l.request_model.as_deref(),
            llm_model: l.model.as_deref(),
            llm_time_to_first_token: l.ttft.map(ms),
            llm_prompt_tokens: l.prompt_tokens,
            llm_completion_tokens: l.completion_tokens,
            llm_instance: l.instance.as_deref(),
            llm_attempts: l.attempts,
        }
    }
}

/// The query's arguments in order, a credential's value redacted (an
/// argument without `=` is `true`).
fn query_args<'a>(head: &'a RequestHead, r: &Redaction) -> Vec<(Cow<'a, str>, Scalar<'a>)> {
    head.query()
        .unwrap_or_default()
        .split(|&b| b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let mut kv = pair.splitn(2, |&b| b == b'=');
            let name = kv.next().unwrap_or_default();
            let value = match kv.next() {
                None => Scalar::True,
                Some(v) if !v.is_empty() && r.param(name) => Scalar::Str(MARKER.into()),
                Some(v) => Scalar::Str(text(v)),
            };
            (text(name), value)
        })
        .collect()
}

/// The path and query of a request target (an absolute-form target,
/// `http://host/p?q`, without its scheme and authority).
fn origin_form(target: &str) -> &str {
    match target.split_once("://") {
        Some((scheme, rest)) if !target.starts_with('/') && !scheme.contains('/') => {
            rest.find('/').map_or("/", |i| &rest[i..])
        }
        _ => target,
    }
}

/// Text of a value that may have been redacted.
fn redacted(v: Cow<'_, [u8]>) -> Cow<'_, str> {
    match v {
        Cow::Borrowed(b) => text(b),
        Cow::Owned(b) => Cow::Owned(
            String::from_utf8(b)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
        ),
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
    use crate::observe::entry::tests::ctx_with_body;
    use serde_json::Value;

    #[test]
    fn the_url_is_the_scheme_host_and_origin_form_target() {
        assert_eq!(origin_form("/p?q=1"), "/p?q=1");
        assert_eq!(origin_form("http://h.test:8080/p?q=1"), "/p?q=1");
        assert_eq!(origin_form("http://h.test"), "/");
        assert_eq!(origin_form("/a?next=http://x/y"), "/a?next=http://x/y");
        let raw = b"GET http://gw.test/v1/x?k=1 HTTP/1.1\r\nHost: gw.test\r\n\r\n";
        let head = RequestHead::parse(
            bytes::Bytes::from_static(raw),
            &crate::http::request::HeadLimits::default(),
            Vec::new(),
        )
        .unwrap();
        let mut ctx = ctx_with_body(b"");
        ctx.tls = true;
        let opts = EntryOptions::default();
        let v: Value =
            serde_json::to_value(FullLog::of(&head, &ctx, &opts, &Redaction::default())).unwrap();
        assert_eq!(v["request"]["url"], "https://gw.test/v1/x?k=1");
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
        let v: Value =
            serde_json::from_slice(&full_log(&head, &ctx, &opts, &Redaction::off())).unwrap();
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
        let v: Value =
            serde_json::from_slice(&full_log(&head, &ctx, &opts, &Redaction::off())).unwrap();
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
