//! A sampled request's spans, built in its log phase: ringway's server
//! span with APISIX's attributes and the GenAI semantic conventions'
//! (OpenTelemetry `gen_ai.*`), and one client span per attempt at an LLM
//! instance. See `docs/traces.md` for the attribute table.

use std::borrow::Cow;

use crate::config::{ConfigError, FieldPath};
use crate::exchange::ctx::{RequestCtx, RequestType};
use crate::exchange::trace::{unix_ns, AttemptSpan, Recording, TraceCtx};
use crate::http::RequestHead;
use crate::loggers::otlp::proto::{Event, KeyValue, Span, SpanKind, Status, StatusCode, Value};
use crate::observe::redact::Redaction;

/// `additional_attributes` and `additional_header_prefix_attributes`.
#[derive(Debug, Clone, Default)]
pub struct Extra {
    vars: Vec<String>,
    /// Header names, lowercase; `(prefix, true)` for `prefix*`.
    headers: Vec<(String, bool)>,
}

impl Extra {
    pub fn compile(
        vars: Vec<String>,
        headers: Vec<String>,
        at: &FieldPath,
    ) -> Result<Extra, ConfigError> {
        if vars.iter().any(String::is_empty) {
            return Err(at
                .field("additional_attributes")
                .error("items must not be empty"));
        }
        if headers.iter().any(String::is_empty) {
            return Err(at
                .field("additional_header_prefix_attributes")
                .error("items must not be empty"));
        }
        let headers = headers
            .into_iter()
            .map(|h| {
                let h = h.to_ascii_lowercase();
                match h.strip_suffix('*') {
                    Some(p) if !p.is_empty() => (p.to_owned(), true),
                    _ => (h, false),
                }
            })
            .collect();
        Ok(Extra { vars, headers })
    }
}

/// W3C `sampled`, and `SpanFlags`' "has is_remote" (0x100) with
/// "is_remote" (0x200) when the parent came from the caller.
fn flags(t: &TraceCtx, remote_parent: bool) -> u32 {
    u32::from(t.flags()) | 0x100 | if remote_parent { 0x200 } else { 0 }
}

/// The server span, then one per attempt.
pub fn build(
    head: &RequestHead,
    ctx: &RequestCtx,
    t: &TraceCtx,
    rec: &Recording,
    extra: &Extra,
    r: &Redaction,
) -> Vec<Span> {
    let end = unix_ns();
    let mut spans = Vec::with_capacity(1 + rec.attempts.len());
    spans.push(server(head, ctx, t, rec, extra, r, end));
    for a in &rec.attempts {
        spans.push(attempt(ctx, t, a, end));
    }
    spans
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn server(
    head: &RequestHead,
    ctx: &RequestCtx,
    t: &TraceCtx,
    rec: &Recording,
    extra: &Extra,
    r: &Redaction,
    end: u64,
) -> Span {
    let method = head.method.as_str();
    let name = match &rec.route_name {
        Some(route) => format!("{method} {route}"),
        None => method.to_owned(),
    };
    let mut a = vec![
        KeyValue::str("net.host.name", head.host().map(text).unwrap_or_default()),
        KeyValue::str("http.method", method),
        KeyValue::str("http.scheme", if ctx.tls { "https" } else { "http" }),
        KeyValue::str("http.target", text(&r.target(head.target()))),
        KeyValue::str("net.peer.ip", ctx.peer.ip().to_string()),
    ];
    if let Some(ua) = head.header("user-agent") {
        a.push(KeyValue::str("http.user_agent", text(ua)));
    }
    if let Some(id) = &ctx.route_id {
        a.push(KeyValue::str("apisix.route_id", id.to_string()));
    }
    if let Some(n) = &rec.route_name {
        a.push(KeyValue::str("apisix.route_name", n.to_string()));
    }
    if let Some(c) = &ctx.consumer {
        a.push(KeyValue::str("apisix.consumer", c.to_string()));
    }
    if let Some(id) = &ctx.request_id {
        a.push(KeyValue::str(
            "http.request.header.x-request-id",
            text(&id.value),
        ));
    }
    let status = ctx.upstream_status.unwrap_or(ctx.status);
    a.push(KeyValue::int("http.status_code", i64::from(status)));
    a.push(KeyValue::int(
        "http.response.status_code",
        i64::from(ctx.status),
    ));
    if ctx.request_type != RequestType::TraditionalHttp {
        gen_ai(&mut a, ctx, rec.attempts.last());
    }
    extras(&mut a, head, ctx, extra, r);
    Span {
        trace_id: t.trace_id.to_vec(),
        span_id: t.span_id.to_vec(),
        trace_state: t.state.as_deref().map(text).unwrap_or_default(),
        parent_span_id: t.parent.map(|p| p.to_vec()).unwrap_or_default(),
        name,
        kind: SpanKind::Server as i32,
        start_time_unix_nano: rec.start_ns,
        end_time_unix_nano: end,
        attributes: a,
        events: Vec::new(),
        status: (status >= 500).then(|| Status {
            message: format!("upstream response status: {status}"),
            code: StatusCode::Error as i32,
        }),
        flags: flags(t, t.parent.is_some()),
    }
}

/// The request's GenAI attributes: what was asked, what answered, the
/// tokens, the time to the first token, how many attempts it took.
fn gen_ai(a: &mut Vec<KeyValue>, ctx: &RequestCtx, last: Option<&AttemptSpan>) {
    let l = &ctx.llm;
    a.push(KeyValue::str("gen_ai.operation.name", "chat"));
    if let Some(last) = last {
        a.push(KeyValue::str("gen_ai.provider.name", last.provider));
        a.push(KeyValue::str("gen_ai.system", last.provider));
    }
    if let Some(m) = &l.request_model {
        a.push(KeyValue::str("gen_ai.request.model", m.clone()));
    }
    answer(a, ctx);
    if let Some(i) = &l.instance {
        a.push(KeyValue::str("ringway.llm.instance", i.to_string()));
    }
    a.push(KeyValue::int("ringway.llm.attempts", i64::from(l.attempts)));
}

/// What the answer reported: the model, the tokens, the time to the first
/// token (on the request's span, and on the attempt that answered).
fn answer(a: &mut Vec<KeyValue>, ctx: &RequestCtx) {
    let l = &ctx.llm;
    if let Some(m) = &l.model {
        a.push(KeyValue::str("gen_ai.response.model", m.clone()));
    }
    a.push(KeyValue::int(
        "gen_ai.usage.input_tokens",
        l.prompt_tokens as i64,
    ));
    a.push(KeyValue::int(
        "gen_ai.usage.output_tokens",
        l.completion_tokens as i64,
    ));
    if let Some(ttft) = l.ttft {
        a.push(KeyValue::new(
            "gen_ai.server.time_to_first_token",
            Value::Double(ttft.as_secs_f64()),
        ));
    }
}

/// `additional_attributes` (variables) and the headers named or prefixed
/// by `additional_header_prefix_attributes` (credentials redacted).
fn extras(
    a: &mut Vec<KeyValue>,
    head: &RequestHead,
    ctx: &RequestCtx,
    extra: &Extra,
    r: &Redaction,
) {
    if !extra.vars.is_empty() {
        let vars = crate::observe::vars::source(head, ctx);
        for name in &extra.vars {
            if let Some(v) = crate::observe::vars::value(name, &vars, ctx) {
                a.push(KeyValue::str(name.clone(), text(&v)));
            }
        }
    }
    for (name, value) in head.header_pairs() {
        let lower = String::from_utf8_lossy(name).to_ascii_lowercase();
        let wanted = extra.headers.iter().any(|(h, prefix)| {
            if *prefix {
                lower.starts_with(h.as_str())
            } else {
                lower == *h
            }
        });
        if wanted {
            let v: Cow<'_, [u8]> = r.header_value(name, value);
            a.push(KeyValue::str(lower, text(&v)));
        }
    }
}

/// One attempt at an LLM instance.
fn attempt(ctx: &RequestCtx, t: &TraceCtx, at: &AttemptSpan, end: u64) -> Span {
    let l = &ctx.llm;
    let model = at.model.as_deref().or(l.request_model.as_deref());
    let name = match model {
        Some(m) => format!("chat {m}"),
        None => "chat".to_owned(),
    };
    let mut a = vec![
        KeyValue::str("gen_ai.operation.name", "chat"),
        KeyValue::str("gen_ai.provider.name", at.provider),
        KeyValue::str("gen_ai.system", at.provider),
        KeyValue::str("ringway.llm.instance", at.instance.to_string()),
        KeyValue::str("server.address", at.server.clone()),
    ];
    if let Some(m) = model {
        a.push(KeyValue::str("gen_ai.request.model", m));
    }
    if let Some(s) = at.status {
        a.push(KeyValue::int("http.response.status_code", i64::from(s)));
    }
    let answered = at.end_ns == 0;
    let mut events = Vec::new();
    if answered {
        answer(&mut a, ctx);
        if let Some(ttft) = l.ttft {
            events.push(Event {
                time_unix_nano: at.start_ns + ttft.as_nanos() as u64,
                name: "gen_ai.first_token".into(),
                attributes: Vec::new(),
            });
        }
    }
    let status = at.error.as_ref().map(|e| {
        a.push(KeyValue::str(
            "error.type",
            at.status
                .map_or_else(|| "transport".to_owned(), |s| s.to_string()),
        ));
        Status {
            message: e.clone(),
            code: StatusCode::Error as i32,
        }
    });
    Span {
        trace_id: t.trace_id.to_vec(),
        span_id: at.span_id.to_vec(),
        trace_state: t.state.as_deref().map(text).unwrap_or_default(),
        parent_span_id: t.span_id.to_vec(),
        name,
        kind: SpanKind::Client as i32,
        start_time_unix_nano: at.start_ns,
        end_time_unix_nano: if answered { end } else { at.end_ns },
        attributes: a,
        events,
        status,
        flags: flags(t, false),
    }
}
