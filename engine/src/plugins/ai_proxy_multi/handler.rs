//! The request path of `ai-proxy-multi`: take the request in, walk the
//! instances in plan order skipping unavailable ones (cooling down after a
//! 429 or passive ejection, unhealthy, rate-limited), try each at most
//! once, fall back on the failures `fallback_strategy` names, and relay the
//! first acceptable answer. Errors carry JSON bodies (written by
//! [`super::replies`]): 400 for bad requests, 502 naming every attempt when
//! all failed, 503 when none was available.
//!
//! In order: [`handle`] sends stored-state calls to [`super::stored`],
//! reads the request (`record_request` for the log) and checks key-based
//! budgets; `walk` takes each candidate from `Walk::next_candidate`,
//! checks its budget (`budget`), makes one attempt (the token from
//! [`super::attempt::bearer`], then [`super::attempt::send`] while the
//! client is watched), classifies the outcome once (`judge`,
//! [`super::outcome::Failure`]) and falls back (`Walk::failed`) or
//! relays; `finish` answers when no attempt did. Stored-state calls share
//! the token, the send and the classification.

use std::time::Instant;

use super::attempt;
use super::outcome::{Failure, Tried};
use super::replies::{
    error_msg, exhausted, kept_reply, quota_headers, rejected, rule_headers, Skipped,
};
use super::request::{classify, intake, LlmRequest, PathKind, Refused};
use super::respond::{relay, AnswerMeta, Kept, Relayed};
use super::retry_after::parse_retry_after;
use super::select::Plan;
use super::stream::StreamJob;
use super::AiProxyMulti;
use crate::exchange::ctx::{RequestCtx, RequestType};
use crate::exchange::ClientConn;
use crate::health::Cooldown;
use crate::http::{RequestHead, Version};
use crate::lane::Lane;
use crate::plugins::ai_rate_limiting::rules::RulesVerdict;
use crate::plugins::ai_rate_limiting::{AiRateLimiting, Quota, RuleHits, Verdict};
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

/// What every step of one request on an `ai-proxy-multi` route reads:
/// where it runs, the plugin and budget in force, the request's head.
pub struct Call<'a, 'r> {
    pub lane: &'r Lane,
    /// The snapshot's TLS client settings.
    pub tls_clients: &'r TlsClients,
    pub plugin: &'a AiProxyMulti,
    /// The `ai-rate-limiting` in force (the consumer's, else the route's).
    pub limiter: Option<&'a AiRateLimiting>,
    pub head: &'r RequestHead,
    pub keep_alive: bool,
}

/// Answers one request, or hands back the stream to relay.
pub async fn handle<'a>(
    call: Call<'a, '_>,
    c: &mut ClientConn,
    ctx: &mut RequestCtx,
) -> Handled<'a> {
    let (lane, plugin) = (call.lane, call.plugin);
    let api_wire = match classify(call.head.path()) {
        PathKind::Llm(api, wire) => (api, wire),
        PathKind::Stored(family, rest) => {
            let rest = rest.to_vec();
            return Box::pin(super::stored::handle(&call, c, ctx, family, &rest))
                .await
                .into();
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
    let req = match Box::pin(intake(lane, c, call.head, api_wire, max_body)).await {
        Ok(r) => r,
        Err(Refused::ClientGone) => return Handled::Done(false),
        Err(Refused::Reply {
            status,
            message,
            keep,
        }) => {
            let keep_alive = call.keep_alive && keep;
            return error_msg(lane, c, plugin, ctx, status, &message, keep_alive)
                .await
                .into();
        }
    };
    record_request(plugin, ctx, &req);
    let vars = crate::observe::vars::source(call.head, ctx);
    let key = plugin.hash_key(&vars);
    // Key-based budgets (`rules`) hold whichever instance answers: checked
    // once, before any is tried.
    let mut rule_hits = Vec::new();
    if let Some(rl) = call.limiter.filter(|rl| rl.has_rules()) {
        match Box::pin(rl.check_rules(&vars)).await {
            RulesVerdict::Allowed(hits) => rule_hits = hits,
            RulesVerdict::Exhausted(hits) => {
                let headers = rule_headers(rl, &hits);
                return rejected(lane, c, ctx, rl, &headers, call.keep_alive)
                    .await
                    .into();
            }
            RulesVerdict::StoreDown(e) => {
                let msg = format!("rate limit store unavailable: {e}");
                return error_msg(lane, c, plugin, ctx, 503, &msg, call.keep_alive)
                    .await
                    .into();
            }
        }
    }
    walk(&call, c, ctx, &req, key.as_deref(), rule_hits).await
}

/// What the log needs of the request: its type, model, body.
fn record_request(plugin: &AiProxyMulti, ctx: &mut RequestCtx, req: &LlmRequest) {
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
}

/// Tries the instances in plan order until one gives the client its
/// answer (or the plan, or `max_attempts`, runs out).
async fn walk<'a>(
    call: &Call<'a, '_>,
    c: &mut ClientConn,
    ctx: &mut RequestCtx,
    req: &LlmRequest,
    key: Option<&[u8]>,
    rule_hits: RuleHits<'a>,
) -> Handled<'a> {
    let plugin = call.plugin;
    let mut walk = Walk::new(plugin, req, key);
    while let Some(cand) = walk.next_candidate(plugin, req) {
        let inst = &plugin.instances[cand.index];
        let quota = match call.limiter {
            None => None,
            Some(rl) => match budget(call, rl, c, ctx, inst).await {
                Budget::Go(q) => q,
                Budget::PassOver(name, q) => {
                    walk.skipped.spent_budget(name, q);
                    continue;
                }
                Budget::Answered(keep) => return keep.into(),
            },
        };
        let attempt_started = Instant::now();
        let bearer = match inst.gcp {
            None => None,
            Some(_) => {
                match attempt::bearer(inst, call.tls_clients, plugin.transport.timeout).await {
                    Ok(b) => b,
                    Err(f) => match walk.failed(call, c, ctx, inst, f).await {
                        Some(keep) => return keep.into(),
                        None => continue,
                    },
                }
            }
        };
        let (target, body) = (cand.target, &cand.body);
        let result = {
            let mut wbuf = std::mem::take(&mut c.wbuf);
            let bearer = bearer.as_deref();
            attempt::write_request(&mut wbuf, inst, target, body, req, call.head, bearer);
            let r = {
                let (mut bufs, watch, fd, tls) = attempt::lend(c, &mut wbuf);
                let work = Box::pin(attempt::send(
                    call.lane,
                    call.tls_clients,
                    plugin,
                    target,
                    &mut bufs,
                ));
                crate::net::watch::unless_client_leaves(work, watch, fd, tls).await
            };
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
                match walk.failed(call, c, ctx, inst, Failure::Transport(e)).await {
                    Some(keep) => return keep.into(),
                    None => continue,
                }
            }
        };
        let status = answered.head.status;
        if let Some(f) = judge(plugin, inst, &answered) {
            if f.falls_back(&plugin.fallback) {
                walk.tried.push(Tried::new(inst, f));
                continue;
            }
        }
        let meta = AnswerMeta {
            inst,
            attempts: walk.tried.len() as u32 + 1,
            request_started: ctx.started,
            attempt_started,
            quota,
            limiter: call.limiter,
            // (Kept for the next attempt too, should this one fall back.)
            rule_hits: rule_hits.clone(),
        };
        let probe = walk.probes(req, inst, &answered);
        let http10 = call.head.version == Version::Http10;
        let relayed = Box::pin(relay(
            call.lane,
            c,
            ctx,
            plugin,
            req,
            answered,
            probe,
            meta,
            call.keep_alive,
            http10,
        ))
        .await;
        match relayed {
            Relayed::NotHeld(kept) => {
                walk.tried.push(Tried::new(inst, Failure::NotHeld(status)));
                walk.not_held = Some(*kept);
                walk.not_held_count += 1;
            }
            Relayed::Done(keep) => return Handled::Done(keep),
            Relayed::Stream(job) => return Handled::Stream(job),
            Relayed::NotSent(e) => {
                if e.counts_against_instance() {
                    inst.failed(&plugin.passive);
                }
                let f = Failure::NotSent(status, e);
                if let Some(keep) = walk.failed(call, c, ctx, inst, f).await {
                    return keep.into();
                }
            }
        }
    }
    Box::pin(finish(call, c, ctx, req, walk)).await.into()
}

/// Where the walk over a route's instances stands: the plan, what was
/// tried and what was passed over.
struct Walk<'p> {
    plan: Plan<'p>,
    /// The instance remembered as holding a Responses API follow-up's
    /// previous response: tried first, then passed over in the plan.
    held_by: Option<usize>,
    first: Option<usize>,
    /// The request follows up on stored state.
    follow_up: bool,
    tried: Vec<Tried>,
    skipped: Skipped,
    /// The last instance's "not found" to a follow-up, and how many
    /// said so (probed, not retried: they do not count against the cap).
    not_held: Option<Kept>,
    not_held_count: usize,
    /// Any instance with health checks is healthy (or has none): else
    /// unhealthy ones are tried too.
    any_healthy: bool,
    now: u64,
}

/// An instance to try, with its endpoint for the request's API and the
/// body built for it.
struct Candidate<'p> {
    index: usize,
    target: &'p super::instance::Target,
    body: Vec<u8>,
}

impl<'p> Walk<'p> {
    fn new(plugin: &'p AiProxyMulti, req: &LlmRequest, key: Option<&'p [u8]>) -> Walk<'p> {
        // A Responses API follow-up goes first to the instance remembered
        // as holding its previous response; others that answer "not
        // found" are passed over (see `affinity`).
        let (follow_up, held_by) = match req.api {
            Api::Responses => follow_up(plugin, req),
            _ => (false, None),
        };
        Walk {
            plan: plugin.plan(key),
            held_by,
            first: held_by,
            follow_up,
            tried: Vec::new(),
            skipped: Skipped::default(),
            not_held: None,
            not_held_count: 0,
            any_healthy: plugin
                .instances
                .iter()
                .any(|i| i.checks.is_none() || i.state.is_healthy()),
            now: now_ms(),
        }
    }

    /// The next instance worth an attempt: instances that cannot serve
    /// the request, cool down or are unhealthy are passed over (and
    /// counted); `None` when the plan or `max_attempts` runs out.
    fn next_candidate(
        &mut self,
        plugin: &'p AiProxyMulti,
        req: &LlmRequest,
    ) -> Option<Candidate<'p>> {
        loop {
            let index = match self.first.take() {
                Some(i) => i,
                None => match self.plan.next()? {
                    i if Some(i) == self.held_by => continue,
                    i => i,
                },
            };
            if self.tried.len() - self.not_held_count >= plugin.max_attempts {
                return None;
            }
            let inst = &plugin.instances[index];
            let target = match inst.target(req.api) {
                Ok(t) => t,
                Err(why) => {
                    self.skipped.cannot_serve(inst, why, false);
                    continue;
                }
            };
            if let Some(left) = inst.state.cooling(self.now) {
                let s = &mut self.skipped;
                s.cooling += 1;
                s.retry_after = Some(s.retry_after.map_or(left, |r| r.min(left)));
                continue;
            }
            if inst.checks.is_some() && !inst.state.is_healthy() && self.any_healthy {
                self.skipped.unhealthy += 1;
                continue;
            }
            // Built before the budget check, which may charge the instance.
            match upstream_body(inst, req) {
                Ok(body) => {
                    return Some(Candidate {
                        index,
                        target,
                        body,
                    })
                }
                Err(e) => {
                    let why = format!("cannot build the request for instance `{}`: {e}", inst.name);
                    self.skipped.cannot_serve(inst, &why, e.too_large);
                }
            }
        }
    }

    /// Whether `answered` is a follow-up's answer to read for "not held"
    /// before relaying it (an error from an instance speaking Responses).
    fn probes(
        &self,
        req: &LlmRequest,
        inst: &super::Instance,
        answered: &attempt::Answered,
    ) -> bool {
        self.follow_up
            && matches!(answered.head.status, 400 | 404)
            && inst.wire(req.api) == Wire::Responses
            && !answered.head.is_event_stream()
    }

    /// Records a failed attempt. `None` when the route falls back on it;
    /// else the request is answered with it: whether the connection stays
    /// open.
    async fn failed(
        &mut self,
        call: &Call<'_, '_>,
        c: &mut ClientConn,
        ctx: &mut RequestCtx,
        inst: &super::Instance,
        failure: Failure,
    ) -> Option<bool> {
        let falls_back = failure.falls_back(&call.plugin.fallback);
        self.tried.push(Tried::new(inst, failure));
        if falls_back {
            return None;
        }
        let f = &self.tried[self.tried.len() - 1].failure;
        let (status, message) = (f.client_status(), f.to_string());
        ctx.llm.instance = Some(inst.name.clone());
        ctx.llm.attempts = self.tried.len() as u32;
        let keep_alive = call.keep_alive;
        Some(error_msg(call.lane, c, call.plugin, ctx, status, &message, keep_alive).await)
    }
}

/// What the instance's token budget says before an attempt.
enum Budget {
    /// Try it (with the quota to show, when `ai-rate-limiting` shows it).
    Go(Option<Quota>),
    /// Spent, and `fallback_strategy` has `rate_limiting`: pass it over.
    PassOver(std::sync::Arc<str>, Quota),
    /// The request was answered (spent without fallback, or the budget
    /// store is down): whether the connection stays open.
    Answered(bool),
}

async fn budget(
    call: &Call<'_, '_>,
    rl: &AiRateLimiting,
    c: &mut ClientConn,
    ctx: &mut RequestCtx,
    inst: &super::Instance,
) -> Budget {
    match rl.check(&inst.name).await {
        Verdict::Unlimited => Budget::Go(None),
        Verdict::Allowed(q) => Budget::Go(rl.show_headers.then_some(q)),
        Verdict::Exhausted(q) if call.plugin.fallback.rate_limiting => {
            Budget::PassOver(inst.name.clone(), q)
        }
        Verdict::Exhausted(q) => {
            let headers = quota_headers(rl, &inst.name, &q);
            Budget::Answered(rejected(call.lane, c, ctx, rl, &headers, call.keep_alive).await)
        }
        Verdict::StoreDown(e) => {
            let msg = format!("rate limit store unavailable: {e}");
            let keep_alive = call.keep_alive;
            Budget::Answered(error_msg(call.lane, c, call.plugin, ctx, 503, &msg, keep_alive).await)
        }
    }
}

/// What an answer's status says of the instance, applied to its state (a
/// 429's `Retry-After` cools it down, a 5xx counts against it, a 2xx for
/// it), and the failure it is when the route may fall back on it.
fn judge(
    plugin: &AiProxyMulti,
    inst: &super::Instance,
    answered: &attempt::Answered,
) -> Option<Failure> {
    let status = answered.head.status;
    if status == 429 {
        if let Some(d) = answered
            .head
            .header("retry-after")
            .and_then(parse_retry_after)
        {
            inst.state.cool_down(d, Cooldown::RetryAfter);
        }
        Some(Failure::RateLimited)
    } else if status >= 500 {
        inst.failed(&plugin.passive);
        Some(Failure::ServerError(status))
    } else {
        if (200..300).contains(&status) {
            inst.state.record_success();
        }
        None
    }
}

/// No attempt gave the client its answer: the answer about that.
async fn finish(
    call: &Call<'_, '_>,
    c: &mut ClientConn,
    ctx: &mut RequestCtx,
    req: &LlmRequest,
    walk: Walk<'_>,
) -> bool {
    let (lane, plugin, keep_alive) = (call.lane, call.plugin, call.keep_alive);
    let Walk {
        mut tried,
        skipped,
        not_held,
        not_held_count,
        ..
    } = walk;
    // Every instance tried said it does not hold the previous response:
    // with none passed over, no instance has it and the client gets the
    // provider's own answer; otherwise the holder may be one passed over
    // (cooling down, unhealthy, out of budget), unavailable rather than
    // missing, and the answer says so (503, `rejected_code`).
    if let Some(kept) = not_held {
        if not_held_count == tried.len() {
            let passed_over = skipped.cooling + skipped.unhealthy + skipped.rate_limited;
            if passed_over == 0 {
                return Box::pin(kept_reply(lane, c, ctx, kept, tried.len(), keep_alive)).await;
            }
            tried.clear();
        }
    }
    if tried.is_empty() && skipped.rate_limited > 0 {
        if let (Some(rl), Some((name, q))) = (call.limiter, &skipped.quota) {
            let headers = quota_headers(rl, name, q);
            return rejected(lane, c, ctx, rl, &headers, keep_alive).await;
        }
    }
    exhausted(lane, c, plugin, ctx, req, tried, skipped, keep_alive).await
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
