//! A request's variables as APISIX names them (its `ctx.var`): the
//! request's own ([`crate::http::vars`]: `remote_addr`, `uri`, `arg_x`,
//! `http_x`, `cookie_x`, …), the response's (`status`, `bytes_sent`,
//! `request_time`, `upstream_addr`, `upstream_status`,
//! `upstream_response_time`), time (`msec`, `time_iso8601`,
//! `time_local`), `route_id`, and the LLM variables (`request_type`,
//! `request_llm_model`, `llm_model`, `llm_prompt_tokens`,
//! `llm_completion_tokens`, `llm_time_to_first_token` in ms), the request
//! id `request-id` made (as `http_<its header>`) and, with the
//! `opentelemetry` plugin's `set_ngx_var`, `opentelemetry_trace_id`,
//! `opentelemetry_span_id` and `opentelemetry_context_traceparent`. All are
//! strings, as nginx gives them; one that is not set (yet) is `None`.
//! Read by `log_format` and by plugins' `_meta.filter`.

use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::entry::ms;
use crate::exchange::ctx::{RequestCtx, RequestType};
use crate::http::vars::VarSource;
use crate::http::RequestHead;

/// The request-side variables of `head` as received by `ctx`'s client.
pub fn source<'a>(head: &'a RequestHead, ctx: &'a RequestCtx) -> VarSource<'a> {
    VarSource {
        head,
        peer: ctx.peer,
        consumer: ctx.consumer.as_deref(),
        tls: ctx.tls,
    }
}

/// Whether condition `expr` holds for the request now.
pub fn holds(expr: &crate::http::expr::Expr, head: &RequestHead, ctx: &RequestCtx) -> bool {
    let vars = source(head, ctx);
    expr.eval(&|name: &str| value(name, &vars, ctx))
}

/// The value of variable `name` (without `$`).
pub fn value<'v>(
    name: &str,
    vars: &'v VarSource<'_>,
    ctx: &'v RequestCtx,
) -> Option<Cow<'v, [u8]>> {
    let l = &ctx.llm;
    let ai = ctx.request_type != RequestType::TraditionalHttp;
    let owned = |s: String| Some(Cow::Owned(s.into_bytes()));
    match name {
        "status" => owned(ctx.status.to_string()),
        "bytes_sent" | "body_bytes_sent" => owned(ctx.bytes_sent.to_string()),
        "request_time" => owned(secs(ctx.started.elapsed())),
        "upstream_addr" => ctx.upstream_addr.and_then(|a| owned(a.to_string())),
        "upstream_status" => ctx.upstream_status.and_then(|s| owned(s.to_string())),
        "upstream_response_time" => ctx.upstream_response_time.and_then(|d| owned(secs(d))),
        "msec" => owned(secs(now())),
        "time_iso8601" => owned(time_iso8601(now())),
        "time_local" => owned(time_local(now())),
        "route_id" => ctx.route_id.as_deref().map(|r| Cow::Borrowed(r.as_bytes())),
        "request_type" => Some(Cow::Borrowed(ctx.request_type.as_str().as_bytes())),
        "request_llm_model" if ai => l
            .request_model
            .as_deref()
            .map(|m| Cow::Borrowed(m.as_bytes())),
        "llm_model" if ai => l.model.as_deref().map(|m| Cow::Borrowed(m.as_bytes())),
        "llm_prompt_tokens" if ai => owned(l.prompt_tokens.to_string()),
        "llm_completion_tokens" if ai => owned(l.completion_tokens.to_string()),
        "llm_time_to_first_token" if ai => l.ttft.and_then(|t| owned(ms(t).to_string())),
        "request_body" => l.request_body.as_deref().map(Cow::Borrowed),
        "request_llm_model"
        | "llm_model"
        | "llm_prompt_tokens"
        | "llm_completion_tokens"
        | "llm_time_to_first_token" => None,
        "opentelemetry_context_traceparent"
        | "opentelemetry_trace_id"
        | "opentelemetry_span_id" => trace_var(name, ctx),
        _ => vars.get(name).or_else(|| {
            // The request id ringway made is the request header's value,
            // as APISIX sets the header.
            let id = ctx.request_id.as_ref()?;
            (id.generated && id.is_var(name)).then(|| Cow::Borrowed(&id.value[..]))
        }),
    }
}

/// The `opentelemetry` plugin's variables (with `set_ngx_var`).
fn trace_var(name: &str, ctx: &RequestCtx) -> Option<Cow<'static, [u8]>> {
    use crate::exchange::ids::hex;
    let t = ctx.trace.as_ref().filter(|t| t.vars)?;
    let v = match name {
        "opentelemetry_trace_id" => hex(&t.trace_id),
        "opentelemetry_span_id" => hex(&t.span_id),
        _ => t.traceparent(),
    };
    Some(Cow::Owned(v.into_bytes()))
}

/// Seconds with milliseconds, as nginx writes times.
fn secs(d: Duration) -> String {
    format!("{}.{:03}", d.as_secs(), d.subsec_millis())
}

fn now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// Year, month, day of a day count since 1970-01-01 (the proleptic
/// Gregorian calendar; Howard Hinnant's `civil_from_days`).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn clock(t: Duration) -> (i64, u32, u32, u64, u64, u64) {
    let s = t.as_secs();
    let (y, m, d) = civil((s / 86_400) as i64);
    (y, m, d, s % 86_400 / 3600, s % 3600 / 60, s % 60)
}

/// nginx's `$time_iso8601` (UTC): `2026-12-04T08:07:40+00:00`.
fn time_iso8601(t: Duration) -> String {
    let (y, m, d, hh, mm, ss) = clock(t);
    format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}+00:00")
}

/// nginx's `$time_local` (UTC): `04/Dec/2026:08:07:40 +0000`.
fn time_local(t: Duration) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (y, m, d, hh, mm, ss) = clock(t);
    let month = MONTHS[(m - 1) as usize];
    format!("{d:02}/{month}/{y:04}:{hh:02}:{mm:02}:{ss:02} +0000")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(
            time_iso8601(Duration::from_secs(0)),
            "1970-01-01T00:00:00+00:00"
        );
        // 2024-02-29 (a leap day) 13:45:07 UTC.
        let t = Duration::from_secs(1_709_214_307);
        assert_eq!(time_iso8601(t), "2024-02-29T13:45:07+00:00");
        assert_eq!(time_local(t), "29/Feb/2024:13:45:07 +0000");
        assert_eq!(
            time_iso8601(Duration::from_secs(1_796_371_660)),
            "2026-12-04T08:07:40+00:00"
        );
    }
}
