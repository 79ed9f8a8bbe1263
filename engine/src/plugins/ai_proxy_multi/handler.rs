//! The request path of `ai-proxy-multi`: take the request in, walk the
//! instances in plan order skipping unavailable ones (cooling down after a
//! 429 or passive ejection, unhealthy, rate-limited), try each at most
//! once, fall back on the failures `fallback_strategy` names, and relay the
//! first acceptable answer. Errors carry JSON bodies: 400 for bad requests,
//! 502 naming every attempt when all failed, 503 when none was available.

use std::rc::Rc;
use std::time::{Duration, Instant};

use serde_json::json;

use super::attempt::{self, Buffers};
use super::request::{intake, LlmRequest, Refused};
use super::respond::{relay, AnswerMeta, Kept, Relayed};
use super::stream::StreamJob;
use super::AiProxyMulti;
use crate::config::Snapshot;
use crate::health::{now_ms, Cooldown};
use crate::http::vars::VarSource;
use crate::http::{RequestHead, Version};
use crate::plugins::ai_rate_limiting::rules::{write_rule_headers, RulesVerdict};
use crate::plugins::ai_rate_limiting::{
    write_quota_headers, AiRateLimiting, Quota, RuleHits, Verdict,
};
use crate::providers::wire::build_request;
use crate::providers::{Api, Wire};
use crate::server::conn::ClientConn;
use crate::server::ctx::{RequestCtx, RequestType};
use crate::server::reply;
use crate::server::worker::Worker;

/// One failed attempt, for the 502 body and logs.
#[derive(Clone)]
pub(super) struct Tried {
    pub instance: String,
    pub status: Option<u16>,
    pub error: String,
}

impl Tried {
    pub fn failed(inst: &super::Instance, status: Option<u16>, error: String) -> Tried {
        Tried {
            instance: inst.name.to_string(),
            status,
            error,
        }
    }
}

/// Why instances were passed over without an attempt.
#[derive(Default)]
struct Skipped {
    cooling: u32,
    /// Shortest remaining cooldown among them.
    retry_after: Option<Duration>,
    unhealthy: u32,
    /// Instances that cannot serve this request (no endpoint for its API,
    /// or a body their format cannot carry).
    cannot_serve: u32,
    /// Why the first of them cannot.
    why_cannot_serve: Option<String>,
    /// Token budget exhausted (`ai-rate-limiting`), with the last quota seen.
    rate_limited: u32,
    quota: Option<(std::sync::Arc<str>, Quota)>,
}

/// How the handler left a request.
pub enum Handled<'a> {
    /// Answered; whether the client connection stays open.
    Done(bool),
    /// An event stream to relay: the caller runs it (see [`StreamJob`]),
    /// after this handler's state is gone.
    Stream(Box<StreamJob<'a>>),
}

impl From<bool> for Handled<'_> {
    fn from(keep: bool) -> Self {
        Handled::Done(keep)
    }
}

/// Answers one request, or hands back the stream to relay. `limiter` is
/// the `ai-rate-limiting` config in force (the consumer's, else the
/// route's).
#[allow(clippy::too_many_arguments)]
pub async fn handle<'a>(
    w: &Rc<Worker>,
    snap: &Snapshot,
    plugin: &'a AiProxyMulti,
    limiter: Option<&'a AiRateLimiting>,
    c: &mut ClientConn,
    head: &RequestHead,
    ctx: &mut RequestCtx,
    keep_alive: bool,
) -> Handled<'a> {
    let request_started = ctx.started;
    // (Chat paths, the common case, end in `/completions` and skip the
    // search.)
    let path = head.path();
    let stored = match path.ends_with(b"/completions") {
        true => None,
        false => super::stored::stored_path(path),
    };
    if let Some(rest) = stored {
        let rest = rest.to_vec();
        return Handled::Done(
            Box::pin(super::stored::handle(
                w, snap, plugin, c, head, ctx, &rest, keep_alive,
            ))
            .await,
        );
    }
    ctx.request_type = RequestType::AiChat;
    // The phases are boxed one at a time: the handler's own state stays
    // small and a request holds only the memory of the phase it is in
    // (an idle stream waiting for its first token costs a few KiB, not the
    // sum of every phase's locals).
    let max_body = plugin
        .max_request_body
        .unwrap_or(w.gateway.limits.max_body_bytes);
    let req = match Box::pin(intake(w, c, head, max_body)).await {
        Ok(r) => r,
        Err(Refused::ClientGone) => return Handled::Done(false),
        Err(Refused::Reply {
            status,
            message,
            keep,
        }) => {
            return error_msg(w, c, plugin, ctx, status, &message, keep_alive && keep)
                .await
                .into()
        }
    };
    ctx.request_type = if req.body.summary.stream {
        RequestType::AiStream
    } else {
        RequestType::AiChat
    };
    ctx.llm.request_model = req.body.summary.model.clone();
    ctx.llm.summaries = plugin.logging.summaries;
    if plugin.logging.payloads || ctx.keep_request_body {
        ctx.llm.request_body = Some(req.body.bytes.clone());
    }
    if plugin.logging.payloads {
        ctx.llm.payloads = Some(Box::new(crate::server::ctx::Payloads {
            response: Vec::new(),
            wire: req.wire,
            text: None,
        }));
    }
    let vars = VarSource {
        head,
        peer: c.peer,
        consumer: ctx.consumer.as_ref().map(|c| &*c.username),
        tls: c.tls,
    };
    let key = plugin.hash_key(&vars);
    // Key-based budgets (`rules`) hold whichever instance answers: checked
    // once, before any is tried.
    let mut rule_hits = Vec::new();
    if let Some(rl) = limiter.filter(|rl| rl.has_rules()) {
        match Box::pin(rl.check_rules(&vars)).await {
            RulesVerdict::Allowed(hits) => rule_hits = hits,
            RulesVerdict::Exhausted(hits) => {
                return rejected(w, c, ctx, rl, &rule_headers(rl, &hits), keep_alive)
                    .await
                    .into()
            }
            RulesVerdict::StoreDown(e) => {
                let msg = format!("rate limit store unavailable: {e}");
                return error_msg(w, c, plugin, ctx, 503, &msg, keep_alive)
                    .await
                    .into();
            }
        }
    }
    let any_healthy = plugin
        .instances
        .iter()
        .any(|i| i.checks.is_none() || i.state.is_healthy());
    let http10 = head.version == Version::Http10;
    let mut tried: Vec<Tried> = Vec::new();
    let mut skipped = Skipped::default();
    let now = now_ms();
    // A Responses API follow-up goes first to the instance remembered as
    // holding its previous response; others that answer "not found" are
    // passed over (see `affinity`).
    let (follow_up, held_by) = match req.api {
        Api::Responses => follow_up(plugin, &req),
        _ => (false, None),
    };
    let mut not_held: Option<Kept> = None;
    let mut not_held_count = 0;
    let mut plan = plugin.plan(key.as_deref());
    let mut first = held_by;
    loop {
        let idx = match first.take() {
            Some(i) => i,
            None => match plan.next() {
                Some(i) if Some(i) == held_by => continue,
                Some(i) => i,
                None => break,
            },
        };
        // Instances that only said they do not hold the previous response
        // were probed, not retried: they do not count against the cap.
        if tried.len() - not_held_count >= plugin.max_attempts {
            break;
        }
        let inst = &plugin.instances[idx];
        let target = match inst.target(req.api) {
            Ok(t) => t,
            Err(why) => {
                skipped.cannot_serve(why);
                continue;
            }
        };
        if let Some(left) = inst.state.cooling(now) {
            skipped.cooling += 1;
            skipped.retry_after = Some(skipped.retry_after.map_or(left, |r| r.min(left)));
            continue;
        }
        if inst.checks.is_some() && !inst.state.is_healthy() && any_healthy {
            skipped.unhealthy += 1;
            continue;
        }
        // Built before the budget check, which may charge the instance.
        let body = match upstream_body(inst, &req) {
            Ok(b) => b,
            Err(why) => {
                skipped.cannot_serve(&why);
                continue;
            }
        };
        let mut quota = None;
        if let Some(rl) = limiter {
            match rl.check(&inst.name).await {
                Verdict::Unlimited => {}
                Verdict::Allowed(q) => quota = rl.show_headers.then_some(q),
                Verdict::Exhausted(q) => {
                    if plugin.fallback.rate_limiting {
                        skipped.rate_limited += 1;
                        skipped.quota = Some((inst.name.clone(), q));
                        continue;
                    }
                    let headers = quota_headers(rl, &inst.name, &q);
                    return rejected(w, c, ctx, rl, &headers, keep_alive).await.into();
                }
                Verdict::StoreDown(e) => {
                    let msg = format!("rate limit store unavailable: {e}");
                    return error_msg(w, c, plugin, ctx, 503, &msg, keep_alive)
                        .await
                        .into();
                }
            }
        }
        let attempt_started = Instant::now();
        let bearer = match &inst.gcp {
            None => None,
            Some(g) => match Box::pin(g.authorization(&snap.tls, plugin.transport.timeout)).await {
                Ok(b) => Some(b),
                Err(e) => {
                    tracing::warn!(instance = %inst.name, "GCP access token unavailable: {e}");
                    tried.push(Tried {
                        instance: inst.name.to_string(),
                        status: None,
                        error: format!("GCP access token unavailable: {e}"),
                    });
                    if plugin.fallback.http_5xx {
                        continue;
                    }
                    return error_msg(
                        w,
                        c,
                        plugin,
                        ctx,
                        502,
                        &format!("GCP access token unavailable: {e}"),
                        keep_alive,
                    )
                    .await
                    .into();
                }
            },
        };
        let result = {
            let mut wbuf = std::mem::take(&mut c.wbuf);
            attempt::write_request(
                &mut wbuf,
                inst,
                target,
                &body,
                &req,
                head,
                bearer.as_deref(),
            );
            let ClientConn {
                ubuf,
                uscratch,
                watch,
                raw_fd,
                ..
            } = &mut *c;
            let mut bufs = Buffers {
                wbuf: &mut wbuf,
                ubuf,
                scratch: uscratch,
            };
            let work = Box::pin(attempt::send(w, snap, plugin, target, &mut bufs));
            let r = crate::net::watch::unless_client_leaves(work, watch, *raw_fd).await;
            wbuf.clear();
            c.wbuf = wbuf;
            r
        };
        let answered = match result {
            None => return Handled::Done(false), // the client left; the attempt was dropped
            Some(Ok(a)) => a,
            Some(Err(e)) => {
                inst.failed(&plugin.passive);
                tracing::warn!(instance = %inst.name, "LLM attempt failed: {e}");
                tried.push(Tried {
                    instance: inst.name.to_string(),
                    status: None,
                    error: e.to_string(),
                });
                if plugin.fallback.http_5xx {
                    continue;
                }
                ctx.llm.instance = Some(inst.name.clone());
                ctx.llm.attempts = tried.len() as u32;
                return error_msg(w, c, plugin, ctx, e.status(), &e.to_string(), keep_alive)
                    .await
                    .into();
            }
        };
        let status = answered.head.status;
        if status == 429 {
            if let Some(d) = answered
                .head
                .header("retry-after")
                .and_then(parse_retry_after)
            {
                inst.state.cool_down(d, Cooldown::RetryAfter);
            }
            if plugin.fallback.http_429 {
                tried.push(Tried {
                    instance: inst.name.to_string(),
                    status: Some(429),
                    error: "rate limited by the provider".into(),
                });
                continue;
            }
        } else if status >= 500 {
            inst.failed(&plugin.passive);
            if plugin.fallback.http_5xx {
                tried.push(Tried {
                    instance: inst.name.to_string(),
                    status: Some(status),
                    error: format!("upstream answered {status}"),
                });
                continue;
            }
        } else if (200..300).contains(&status) {
            inst.state.record_success();
        }
        let meta = AnswerMeta {
            inst,
            attempts: tried.len() as u32 + 1,
            request_started,
            attempt_started,
            quota,
            limiter,
            // (Kept for the next attempt too, should this one fall back.)
            rule_hits: if rule_hits.is_empty() {
                Vec::new()
            } else {
                rule_hits.clone()
            },
        };
        let probe = follow_up
            && matches!(status, 400 | 404)
            && inst.wire(req.api) == Wire::Responses
            && !answered.head.is_event_stream();
        match Box::pin(relay(
            w, c, ctx, plugin, &req, answered, probe, meta, keep_alive, http10,
        ))
        .await
        {
            Relayed::NotHeld(kept) => {
                let why = "does not hold the previous response".to_owned();
                tried.push(Tried::failed(inst, Some(status), why));
                not_held = Some(*kept);
                not_held_count += 1;
                continue;
            }
            Relayed::Done(keep) => return Handled::Done(keep),
            Relayed::Stream(job) => return Handled::Stream(job),
            Relayed::NotSent(e) => {
                if e.counts_against_instance() {
                    inst.failed(&plugin.passive);
                }
                tried.push(Tried {
                    instance: inst.name.to_string(),
                    status: Some(status),
                    error: e.to_string(),
                });
                if plugin.fallback.http_5xx {
                    continue;
                }
                return error_msg(w, c, plugin, ctx, 502, &e.to_string(), keep_alive)
                    .await
                    .into();
            }
        }
    }
    // Every instance tried said it does not hold the previous response:
    // with none passed over, no instance has it and the client gets the
    // provider's own answer; otherwise the holder may be one passed over
    // (cooling down, unhealthy, out of budget), unavailable rather than
    // missing, and the answer says so (503, `rejected_code`).
    if let Some(kept) = not_held {
        if not_held_count == tried.len() {
            let passed_over = skipped.cooling + skipped.unhealthy + skipped.rate_limited;
            if passed_over == 0 {
                return Box::pin(not_held_reply(w, c, ctx, kept, tried.len(), keep_alive))
                    .await
                    .into();
            }
            tried.clear();
        }
    }
    if tried.is_empty() && skipped.rate_limited > 0 {
        if let (Some(rl), Some((name, q))) = (limiter, &skipped.quota) {
            let headers = quota_headers(rl, name, q);
            return rejected(w, c, ctx, rl, &headers, keep_alive).await.into();
        }
    }
    exhausted(w, c, plugin, ctx, &req, tried, skipped, keep_alive)
        .await
        .into()
}

impl Skipped {
    fn cannot_serve(&mut self, why: &str) {
        self.cannot_serve += 1;
        if self.why_cannot_serve.is_none() {
            self.why_cannot_serve = Some(why.to_owned());
        }
    }
}

/// Whether a Responses API request follows up on a stored response
/// (`previous_response_id`), and the instance remembered as holding it.
#[cold]
#[inline(never)]
fn follow_up(plugin: &AiProxyMulti, req: &LlmRequest) -> (bool, Option<usize>) {
    match req.body.top_str("previous_response_id") {
        Some(id) => (
            true,
            plugin.affinity.recall(id.as_bytes(), &plugin.instances),
        ),
        None => (false, None),
    }
}

/// Whether an error answer says the instance does not hold the request's
/// `previous_response_id` (OpenAI: `400`, code
/// `previous_response_not_found`; any error about that parameter counts).
pub fn names_previous_response(body: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Body<'a> {
        #[serde(borrow)]
        error: Option<Error<'a>>,
    }
    #[derive(serde::Deserialize)]
    struct Error<'a> {
        #[serde(borrow, default)]
        code: Option<std::borrow::Cow<'a, str>>,
        #[serde(borrow, default)]
        param: Option<std::borrow::Cow<'a, str>>,
    }
    serde_json::from_slice::<Body<'_>>(body)
        .ok()
        .and_then(|b| b.error)
        .is_some_and(|e| {
            e.code.as_deref() == Some("previous_response_not_found")
                || e.param.as_deref() == Some("previous_response_id")
        })
}

/// The last instance's "not found", as it answered (no instance holds
/// the response a request names).
pub(super) async fn not_held_reply(
    w: &Worker,
    c: &mut ClientConn,
    ctx: &mut RequestCtx,
    kept: Kept,
    attempts: usize,
    keep_alive: bool,
) -> bool {
    let status = kept.status;
    ctx.upstream_status = Some(status);
    ctx.upstream_addr = Some(kept.addr);
    ctx.llm.instance = Some(kept.instance.clone());
    ctx.llm.attempts = attempts as u32;
    ctx.answered(status, &kept.body);
    let attempts = attempts.to_string();
    let lines = reply::header_lines(&[
        ("X-Ringway-Instance", &kept.instance),
        ("X-Ringway-Attempts", attempts.as_str()),
    ]);
    c.wbuf.clear();
    reply::typed(
        &mut c.wbuf,
        status,
        "application/json",
        &kept.body,
        keep_alive,
        &lines,
    );
    c.flush_wbuf(w.gateway.timeouts.send).await.is_ok() && keep_alive
}

/// `rejected_code` with `rejected_msg` and the spent budget's headers
/// (`headers`: header lines, empty when `show_limit_quota_header` is off).
async fn rejected(
    w: &Worker,
    c: &mut ClientConn,
    ctx: &mut RequestCtx,
    rl: &AiRateLimiting,
    headers: &[u8],
    keep_alive: bool,
) -> bool {
    ctx.answered(rl.rejected_code, rl.rejected_body().as_bytes());
    c.wbuf.clear();
    reply::typed(
        &mut c.wbuf,
        rl.rejected_code,
        rl.rejected_type(),
        rl.rejected_body().as_bytes(),
        keep_alive,
        headers,
    );
    c.flush_wbuf(w.gateway.timeouts.send).await.is_ok() && keep_alive
}

/// An instance budget's headers, when shown.
fn quota_headers(rl: &AiRateLimiting, instance: &str, q: &Quota) -> Vec<u8> {
    let mut out = Vec::new();
    if rl.show_headers {
        write_quota_headers(&mut out, instance, q);
    }
    out
}

/// The checked rules' headers (the spent one last), when shown.
fn rule_headers(rl: &AiRateLimiting, hits: &RuleHits<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    if rl.show_headers {
        for (hit, q) in hits {
            write_rule_headers(&mut out, &hit.rule.prefix, q);
        }
    }
    out
}

/// The body for `inst`: converted to its format, options merged, usage
/// reporting forced for OpenAI streams.
fn upstream_body(inst: &super::Instance, req: &LlmRequest) -> Result<Vec<u8>, String> {
    // Applied only if the final body streams (the client's flag or the
    // instance's `options.stream`).
    let to = inst.wire(req.api);
    let force_usage = to == Wire::OpenAi;
    build_request(req.wire, to, req.api, &req.body, &inst.options, force_usage)
        .map_err(|e| format!("cannot build the request for instance `{}`: {e}", inst.name))
}

/// No instance answered acceptably.
#[allow(clippy::too_many_arguments)]
async fn exhausted(
    w: &Worker,
    c: &mut ClientConn,
    plugin: &AiProxyMulti,
    ctx: &mut RequestCtx,
    req: &LlmRequest,
    tried: Vec<Tried>,
    skipped: Skipped,
    keep_alive: bool,
) -> bool {
    if !tried.is_empty() {
        return attempts_failed(w, c, plugin, ctx, &tried, keep_alive).await;
    }
    ctx.llm.attempts = 0;
    if skipped.cannot_serve > 0 && skipped.cooling == 0 && skipped.unhealthy == 0 {
        let msg = format!(
            "no instance of this route can serve this {} request: {}",
            req.api.label(),
            skipped.why_cannot_serve.as_deref().unwrap_or("")
        );
        return error_msg(w, c, plugin, ctx, 400, &msg, keep_alive).await;
    }
    let msg = format!(
        "no LLM instance available ({} cooling down, {} unhealthy)",
        skipped.cooling, skipped.unhealthy
    );
    let retry_after = skipped.retry_after.map(|d| d.as_secs().max(1).to_string());
    let headers: Vec<(&str, &str)> = retry_after
        .as_deref()
        .map(|r| ("Retry-After", r))
        .into_iter()
        .collect();
    error_reply(
        w,
        c,
        plugin,
        ctx,
        503,
        &reply::error_body(&msg),
        keep_alive,
        &headers,
    )
    .await
}

/// `502` naming every attempt and how it failed.
pub(super) async fn attempts_failed(
    w: &Worker,
    c: &mut ClientConn,
    plugin: &AiProxyMulti,
    ctx: &mut RequestCtx,
    tried: &[Tried],
    keep_alive: bool,
) -> bool {
    ctx.llm.attempts = tried.len() as u32;
    let attempts: Vec<_> = tried
        .iter()
        .map(|t| json!({"instance": t.instance, "status": t.status, "error": t.error}))
        .collect();
    let body = json!({
        "error_msg": format!("all {} attempted LLM instances failed", tried.len()),
        "attempts": attempts,
    });
    error_reply(w, c, plugin, ctx, 502, &body.to_string(), keep_alive, &[]).await
}

/// One of the plugin's own error answers with an `{"error_msg": …}` body.
pub(super) async fn error_msg(
    w: &Worker,
    c: &mut ClientConn,
    plugin: &AiProxyMulti,
    ctx: &mut RequestCtx,
    status: u16,
    message: &str,
    keep_alive: bool,
) -> bool {
    let body = reply::error_body(message);
    error_reply(w, c, plugin, ctx, status, &body, keep_alive, &[]).await
}

/// One of the plugin's own error answers: `body` (JSON), or the plugin's
/// `_meta.error_response`.
#[allow(clippy::too_many_arguments)]
async fn error_reply(
    w: &Worker,
    c: &mut ClientConn,
    plugin: &AiProxyMulti,
    ctx: &mut RequestCtx,
    status: u16,
    body: &str,
    keep_alive: bool,
    headers: &[(&str, &str)],
) -> bool {
    c.wbuf.clear();
    let (content_type, body) = match &plugin.error_response {
        Some(e) => (e.content_type, e.body.as_bytes()),
        None => ("application/json", body.as_bytes()),
    };
    ctx.answered(status, body);
    let lines = reply::header_lines(headers);
    reply::typed(&mut c.wbuf, status, content_type, body, keep_alive, &lines);
    c.flush_wbuf(w.gateway.timeouts.send).await.is_ok() && keep_alive
}

/// `Retry-After`: delay-seconds or an HTTP-date.
pub fn parse_retry_after(v: &[u8]) -> Option<Duration> {
    let s = std::str::from_utf8(v).ok()?.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Some(Duration::from_secs(secs.min(86_400)));
    }
    let when = httpdate::parse_http_date(s).ok()?;
    when.duration_since(std::time::SystemTime::now()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after(b"2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after(b" 30 "), Some(Duration::from_secs(30)));
        assert_eq!(parse_retry_after(b"soon"), None);
        let future =
            httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(120));
        let d = parse_retry_after(future.as_bytes()).unwrap();
        assert!(
            d > Duration::from_secs(100) && d <= Duration::from_secs(120),
            "{d:?}"
        );
        assert_eq!(parse_retry_after(b"Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }
}
