//! The request path of `ai-proxy-multi`: take the request in, walk the
//! instances in plan order skipping unavailable ones (cooling down after a
//! 429 or passive ejection, unhealthy, rate-limited), try each at most
//! once, fall back on the failures `fallback_strategy` names, and relay the
//! first acceptable answer. Errors carry JSON bodies (written by
//! [`super::replies`]): 400 for bad requests, 502 naming every attempt when
//! all failed, 503 when none was available.
//!
//! In order: [`handle`] sends stored-state calls to [`super::stored`],
//! reads the request (`record_request` for the log) and runs the AI-path
//! plugins' `access` phase; `walk` takes each candidate from
//! `Walk::next_candidate` (the walk's state and steps are
//! [`super::walk`]'s, follow-ups' stored state [`super::follow_up`]'s),
//! runs `before_attempt` (`budget`), makes one attempt (the token from
//! [`super::attempt::bearer`], then [`super::attempt::send`] while the
//! client is watched), classifies the outcome once (`judge`,
//! [`super::outcome::Failure`]) and falls back (`Walk::failed`) or
//! relays; `finish` answers when no attempt did. Stored-state calls share
//! the token, the send and the classification.

use std::time::Instant;

use super::attempt::{self, Answered};
use super::instance::Instance;
use super::outcome::Failure;
use super::replies::{error_msg, exhausted, kept_reply, refuse};
use super::request::{classify, intake, LlmRequest, PathKind, Refused};
use super::respond::{relay, Relayed};
use super::traced::AttemptClock;
use super::walk::{self, budget, judge, Budget, Candidate, Walk};
use super::AiProxyMulti;
use crate::exchange::ctx::{RequestCtx, RequestType};
use crate::exchange::ClientConn;
use crate::http::RequestHead;
use crate::lane::Lane;
use crate::plugins::{Gate, Handled, InForce, Refusal};
use crate::upstream::TlsClients;

/// What every step of one request on an `ai-proxy-multi` route reads:
/// where it runs, the plugin, the request's head.
pub struct Call<'a, 'r> {
    pub lane: &'r Lane,
    /// The snapshot's TLS client settings.
    pub tls_clients: &'r TlsClients,
    pub plugin: &'a AiProxyMulti,
    pub head: &'r RequestHead,
    pub keep_alive: bool,
}

/// Answers one request, or hands back the stream to relay. `plugins`:
/// the AI-path plugins in force, whose phases run from `access` on.
pub async fn handle<'a>(
    call: Call<'a, '_>,
    c: &mut ClientConn,
    ctx: &mut RequestCtx,
    mut plugins: InForce<'a>,
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
    // The access phase (key-based budgets hold whichever instance
    // answers): once, before any instance is tried.
    if plugins.wants_access() {
        let gate = Box::pin(plugins.access(&vars)).await;
        if let Some(keep) = refused(&call, c, ctx, gate).await {
            return keep.into();
        }
    }
    walk(&call, c, ctx, &req, key.as_deref(), plugins).await
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
    plugins: InForce<'a>,
) -> Handled<'a> {
    let plugin = call.plugin;
    let mut walk = Walk::new(plugin, req, key);
    let mut plugins = plugins;
    // The last budget refusal, answered when every instance was passed
    // over for its budget.
    let mut spent = None;
    while let Some(cand) = walk.next_candidate(plugin, req) {
        let inst = &plugin.instances[cand.index];
        if !plugins.is_empty() {
            match budget(call, &mut plugins, c, ctx, inst).await {
                Budget::Go => {}
                Budget::PassOver(r) => {
                    walk.skipped.rate_limited += 1;
                    inst.state
                        .events
                        .fallback(crate::health::FallbackReason::RateLimited);
                    spent = Some(r);
                    continue;
                }
                Budget::Answered(keep) => return keep.into(),
            }
        }
        let attempt_started = Instant::now();
        walk.clock = AttemptClock::start(ctx, cand.target);
        let ids = walk.clock.ids(call.head, ctx);
        let answered = match try_instance(call, c, req, &cand, inst, &ids).await {
            Attempted::Answer(a) => a,
            Attempted::ClientGone => return Handled::Done(false),
            Attempted::Failed(f) => match walk.failed(call, c, ctx, inst, f).await {
                Some(keep) => return keep.into(),
                None => continue,
            },
        };
        let status = answered.head.status;
        let meta = walk.meta(ctx, inst, attempt_started, std::mem::take(&mut plugins));
        let probe = walk.probes(req, inst, &answered);
        let (relayed, back) = Box::pin(relay(call, c, ctx, req, answered, probe, meta)).await;
        plugins = back;
        match relayed {
            Relayed::NotHeld(kept) => walk.not_held(ctx, inst, status, *kept),
            Relayed::Done(keep) => {
                walk.clock.answered(ctx, inst, status);
                return Handled::Done(keep);
            }
            Relayed::Stream(job) => {
                walk.clock.answered(ctx, inst, status);
                return Handled::Stream(job);
            }
            Relayed::NotSent(e) => {
                let f = walk::not_sent(plugin, inst, status, e);
                if let Some(keep) = walk.failed(call, c, ctx, inst, f).await {
                    return keep.into();
                }
            }
        }
    }
    Box::pin(finish(call, c, ctx, req, walk, spent))
        .await
        .into()
}

/// Answers a request an AI-path plugin's `access` did not let through;
/// `None` when it did.
async fn refused(
    call: &Call<'_, '_>,
    c: &mut ClientConn,
    ctx: &mut RequestCtx,
    gate: Gate<'_>,
) -> Option<bool> {
    let (lane, keep_alive) = (call.lane, call.keep_alive);
    match gate {
        Gate::Go => None,
        Gate::Spent(r) => Some(refuse(lane, c, ctx, &r, keep_alive).await),
        Gate::Unavailable(msg) => {
            Some(error_msg(lane, c, call.plugin, ctx, 503, &msg, keep_alive).await)
        }
    }
}

/// How one attempt at an instance ended, classified once.
enum Attempted {
    /// The answer the client gets: acceptable, or a failure the route's
    /// `fallback_strategy` does not fall back on (relayed as it came).
    Answer(Answered),
    /// No token, a transport failure, or an answer the route falls back
    /// on ([`Walk::failed`] records it and decides).
    Failed(Failure),
    /// The client left; the attempt was dropped (cancelled).
    ClientGone,
}

/// One attempt: the instance's token, the request sent while the client
/// is watched, the answer's head judged ([`judge`]).
async fn try_instance(
    call: &Call<'_, '_>,
    c: &mut ClientConn,
    req: &LlmRequest,
    cand: &Candidate<'_>,
    inst: &Instance,
    ids: &attempt::Ids<'_>,
) -> Attempted {
    let (plugin, lane, tls_clients) = (call.plugin, call.lane, call.tls_clients);
    let bearer = match inst.gcp {
        None => None,
        Some(_) => match attempt::bearer(inst, tls_clients, plugin.transport.timeout).await {
            Ok(b) => b,
            Err(f) => return Attempted::Failed(f),
        },
    };
    let target = cand.target;
    let mut wbuf = std::mem::take(&mut c.wbuf);
    let bearer = bearer.as_deref();
    attempt::write_request(&mut wbuf, inst, target, &cand.body, req, bearer, ids);
    let result = {
        let (mut bufs, watch, fd, tls) = attempt::lend(c, &mut wbuf);
        let mut work = Box::pin(attempt::send(lane, tls_clients, plugin, target, &mut bufs));
        crate::net::watch::unless_client_leaves(work.as_mut(), watch, fd, tls).await
    };
    wbuf.clear();
    c.wbuf = wbuf;
    match result {
        None => Attempted::ClientGone,
        Some(Err(e)) => Attempted::Failed(walk::transport_failure(plugin, inst, e)),
        Some(Ok(answered)) => match judge(plugin, inst, &answered) {
            Some(f) if f.falls_back(&plugin.fallback) => Attempted::Failed(f),
            _ => Attempted::Answer(answered),
        },
    }
}

/// No attempt gave the client its answer: the answer about that.
async fn finish(
    call: &Call<'_, '_>,
    c: &mut ClientConn,
    ctx: &mut RequestCtx,
    req: &LlmRequest,
    walk: Walk<'_>,
    spent: Option<Refusal<'_>>,
) -> bool {
    let (lane, keep_alive) = (call.lane, call.keep_alive);
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
        if let Some(r) = &spent {
            return refuse(lane, c, ctx, r, keep_alive).await;
        }
    }
    exhausted(call, c, ctx, req, tried, skipped).await
}
