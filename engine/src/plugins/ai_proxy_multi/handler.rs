//! The request path of `ai-proxy-multi`: take the request in, walk the
//! instances in plan order skipping unavailable ones (cooling down after a
//! 429 or passive ejection, unhealthy, rate-limited), try each at most
//! once, fall back on the failures `fallback_strategy` names, and relay the
//! first acceptable answer. Errors carry JSON bodies (written by
//! [`super::replies`]): 400 for bad requests, 502 naming every attempt when
//! all failed, 503 when none was available.

use std::time::Instant;

use super::attempt::{self, Buffers};
use super::replies::{
    error_msg, exhausted, kept_reply, quota_headers, rejected, rule_headers, Skipped, Tried,
};
use super::request::{classify, intake, LlmRequest, PathKind, Refused};
use super::respond::{relay, AnswerMeta, Kept, Relayed};
use super::retry_after::parse_retry_after;
use super::stream::StreamJob;
use super::AiProxyMulti;
use crate::exchange::ctx::{RequestCtx, RequestType};
use crate::exchange::ClientConn;
use crate::health::Cooldown;
use crate::http::{RequestHead, Version};
use crate::lane::Lane;
use crate::plugins::ai_rate_limiting::rules::RulesVerdict;
use crate::plugins::ai_rate_limiting::{AiRateLimiting, Verdict};
use crate::providers::{Api, Wire};
use crate::timer::now_ms;
use crate::upstream::TlsClients;
use crate::wire::build_request;

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
    lane: &Lane,
    tls_clients: &TlsClients,
    plugin: &'a AiProxyMulti,
    limiter: Option<&'a AiRateLimiting>,
    c: &mut ClientConn,
    head: &RequestHead,
    ctx: &mut RequestCtx,
    keep_alive: bool,
) -> Handled<'a> {
    let request_started = ctx.started;
    let api_wire = match classify(head.path()) {
        PathKind::Llm(api, wire) => (api, wire),
        PathKind::Stored(family, rest) => {
            let rest = rest.to_vec();
            return Handled::Done(
                Box::pin(super::stored::handle(
                    lane,
                    tls_clients,
                    plugin,
                    c,
                    head,
                    ctx,
                    family,
                    &rest,
                    keep_alive,
                ))
                .await,
            );
        }
    };
    ctx.request_type = RequestType::AiChat;
    // The phases are boxed one at a time: the handler's own state stays
    // small and a request holds only the memory of the phase it is in
    // (an idle stream waiting for its first token costs a few KiB, not the
    // sum of every phase's locals).
    let max_body = plugin
        .max_request_body
        .unwrap_or(lane.gateway.limits.max_body_bytes);
    let req = match Box::pin(intake(lane, c, head, api_wire, max_body)).await {
        Ok(r) => r,
        Err(Refused::ClientGone) => return Handled::Done(false),
        Err(Refused::Reply {
            status,
            message,
            keep,
        }) => {
            return error_msg(lane, c, plugin, ctx, status, &message, keep_alive && keep)
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
        ctx.llm.payloads = Some(Box::new(crate::exchange::ctx::Payloads {
            response: Vec::new(),
            wire: req.wire,
            text: None,
        }));
    }
    let vars = crate::observe::vars::source(head, ctx);
    let key = plugin.hash_key(&vars);
    // Key-based budgets (`rules`) hold whichever instance answers: checked
    // once, before any is tried.
    let mut rule_hits = Vec::new();
    if let Some(rl) = limiter.filter(|rl| rl.has_rules()) {
        match Box::pin(rl.check_rules(&vars)).await {
            RulesVerdict::Allowed(hits) => rule_hits = hits,
            RulesVerdict::Exhausted(hits) => {
                return rejected(lane, c, ctx, rl, &rule_headers(rl, &hits), keep_alive)
                    .await
                    .into()
            }
            RulesVerdict::StoreDown(e) => {
                let msg = format!("rate limit store unavailable: {e}");
                return error_msg(lane, c, plugin, ctx, 503, &msg, keep_alive)
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
                skipped.cannot_serve(inst, why, false);
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
            Err(e) => {
                let why = format!("cannot build the request for instance `{}`: {e}", inst.name);
                skipped.cannot_serve(inst, &why, e.too_large);
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
                    return rejected(lane, c, ctx, rl, &headers, keep_alive)
                        .await
                        .into();
                }
                Verdict::StoreDown(e) => {
                    let msg = format!("rate limit store unavailable: {e}");
                    return error_msg(lane, c, plugin, ctx, 503, &msg, keep_alive)
                        .await
                        .into();
                }
            }
        }
        let attempt_started = Instant::now();
        let bearer = match &inst.gcp {
            None => None,
            Some(g) => match Box::pin(g.authorization(tls_clients, plugin.transport.timeout)).await
            {
                Ok(b) => Some(b),
                Err(e) => {
                    tracing::warn!(instance = %inst.name, "GCP access token unavailable: {e}");
                    tried.push(Tried::failed(
                        inst,
                        None,
                        format!("GCP access token unavailable: {e}"),
                    ));
                    if plugin.fallback.http_5xx {
                        continue;
                    }
                    return error_msg(
                        lane,
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
                tls,
                ..
            } = &mut *c;
            let mut bufs = Buffers {
                wbuf: &mut wbuf,
                ubuf,
                scratch: uscratch,
            };
            let work = Box::pin(attempt::send(lane, tls_clients, plugin, target, &mut bufs));
            let r = crate::net::watch::unless_client_leaves(work, watch, *raw_fd, *tls).await;
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
                tried.push(Tried::failed(inst, None, e.to_string()));
                if plugin.fallback.http_5xx {
                    continue;
                }
                ctx.llm.instance = Some(inst.name.clone());
                ctx.llm.attempts = tried.len() as u32;
                return error_msg(lane, c, plugin, ctx, e.status(), &e.to_string(), keep_alive)
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
                tried.push(Tried::failed(
                    inst,
                    Some(429),
                    "rate limited by the provider".into(),
                ));
                continue;
            }
        } else if status >= 500 {
            inst.failed(&plugin.passive);
            if plugin.fallback.http_5xx {
                tried.push(Tried::failed(
                    inst,
                    Some(status),
                    format!("upstream answered {status}"),
                ));
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
            lane, c, ctx, plugin, &req, answered, probe, meta, keep_alive, http10,
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
                tried.push(Tried::failed(inst, Some(status), e.to_string()));
                if plugin.fallback.http_5xx {
                    continue;
                }
                return error_msg(lane, c, plugin, ctx, 502, &e.to_string(), keep_alive)
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
                return Box::pin(kept_reply(lane, c, ctx, kept, tried.len(), keep_alive))
                    .await
                    .into();
            }
            tried.clear();
        }
    }
    if tried.is_empty() && skipped.rate_limited > 0 {
        if let (Some(rl), Some((name, q))) = (limiter, &skipped.quota) {
            let headers = quota_headers(rl, name, q);
            return rejected(lane, c, ctx, rl, &headers, keep_alive)
                .await
                .into();
        }
    }
    exhausted(lane, c, plugin, ctx, &req, tried, skipped, keep_alive)
        .await
        .into()
}

/// Whether a Responses API request follows up on stored state — a
/// response (`previous_response_id`) or a conversation (`conversation`,
/// Conversations API) — and the instance remembered as holding it.
#[cold]
#[inline(never)]
fn follow_up(plugin: &AiProxyMulti, req: &LlmRequest) -> (bool, Option<usize>) {
    let named = req
        .body
        .top_str("previous_response_id")
        .or_else(|| req.body.top_id("conversation"));
    match named {
        Some(id) => (
            true,
            plugin.affinity.recall(id.as_bytes(), &plugin.instances),
        ),
        None => (false, None),
    }
}

/// Whether an error answer to a follow-up says the instance does not hold
/// the state it names: `404` (a conversation not found), or an error about
/// `previous_response_id` / `conversation` (OpenAI: `400`, code
/// `previous_response_not_found`).
pub fn says_not_held(status: u16, body: &[u8]) -> bool {
    status == 404 || names_held_state(body)
}

fn names_held_state(body: &[u8]) -> bool {
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
                || matches!(
                    e.param.as_deref(),
                    Some("previous_response_id" | "conversation")
                )
        })
}

/// The body for `inst`: converted to its format, options merged, usage
/// reporting forced for OpenAI streams.
fn upstream_body(
    inst: &super::Instance,
    req: &LlmRequest,
) -> Result<Vec<u8>, crate::wire::WireError> {
    // Applied only if the final body streams (the client's flag or the
    // instance's `options.stream`).
    let to = inst.wire(req.api);
    let force_usage = to == Wire::OpenAi;
    build_request(req.wire, to, req.api, &req.body, &inst.options, force_usage)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_says_an_instance_does_not_hold_a_follow_ups_state() {
        let e = |param: &str, code: &str| {
            format!(
                r#"{{"error":{{"message":"m","type":"invalid_request_error","param":{param},"code":{code}}}}}"#
            )
        };
        // OpenAI's answer to an unknown previous response.
        assert!(says_not_held(
            400,
            e(
                r#""previous_response_id""#,
                r#""previous_response_not_found""#
            )
            .as_bytes()
        ));
        assert!(says_not_held(
            400,
            e("null", r#""previous_response_not_found""#).as_bytes()
        ));
        assert!(says_not_held(
            400,
            e(r#""previous_response_id""#, "null").as_bytes()
        ));
        assert!(says_not_held(
            400,
            e(r#""conversation""#, "null").as_bytes()
        ));
        // A conversation (or anything a follow-up names) not found.
        assert!(says_not_held(404, b"not json"));
        // Other refusals are the request's own.
        assert!(!says_not_held(400, e(r#""input""#, "null").as_bytes()));
        assert!(!says_not_held(400, b"{}"));
        assert!(!says_not_held(400, b"not json"));
    }
}
