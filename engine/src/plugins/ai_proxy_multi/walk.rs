//! The walk over a route's instances for one request: which instance is
//! next (passing over those that cannot serve it, cool down or are
//! unhealthy), its token budget, what its answer's status says of it, and
//! the failed attempts kept for the answer.

use super::attempt;
use super::follow_up::follow_up;
use super::handler::Call;
use super::instance::Instance;
use super::outcome::{Failure, Tried};
use super::replies::{error_msg, refuse, Skipped};
use super::request::LlmRequest;
use super::respond::AnswerMeta;
use super::respond::Kept;
use super::retry_after::parse_retry_after;
use super::select::Plan;
use super::AiProxyMulti;
use crate::exchange::ctx::RequestCtx;
use crate::exchange::ClientConn;
use crate::exchange::ProxyError;
use crate::health::{Cooldown, SkipReason};
use crate::plugins::{Gate, InForce, Refusal};
use crate::providers::{Api, Wire};
use crate::timer::now_ms;
use crate::wire::build_request;
use std::time::Instant;

/// Where the walk over a route's instances stands: the plan, what was
/// tried and what was passed over.
pub(super) struct Walk<'p> {
    pub(super) plan: Plan<'p>,
    /// The instance remembered as holding a Responses API follow-up's
    /// previous response: tried first, then passed over in the plan.
    pub(super) held_by: Option<usize>,
    pub(super) first: Option<usize>,
    /// The request follows up on stored state.
    pub(super) follow_up: bool,
    pub(super) tried: Vec<Tried>,
    pub(super) skipped: Skipped,
    /// The last instance's "not found" to a follow-up, and how many
    /// said so (probed, not retried: they do not count against the cap).
    pub(super) not_held: Option<Kept>,
    pub(super) not_held_count: usize,
    /// Any instance with health checks is healthy (or has none): else
    /// unhealthy ones are tried too.
    pub(super) any_healthy: bool,
    pub(super) now: u64,
    /// The attempt under way, as a span of the request's trace.
    pub(super) clock: super::traced::AttemptClock<'p>,
}

/// An instance to try, with its endpoint for the request's API and the
/// body built for it.
pub(super) struct Candidate<'p> {
    pub(super) index: usize,
    pub(super) target: &'p super::instance::Target,
    pub(super) body: Vec<u8>,
}

impl<'p> Walk<'p> {
    pub(super) fn new(
        plugin: &'p AiProxyMulti,
        req: &LlmRequest,
        key: Option<&'p [u8]>,
    ) -> Walk<'p> {
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
            clock: Default::default(),
        }
    }

    /// The next instance worth an attempt: instances that cannot serve
    /// the request, cool down or are unhealthy are passed over (and
    /// counted); `None` when the plan or `max_attempts` runs out.
    pub(super) fn next_candidate(
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
                inst.state.events.skipped(SkipReason::CoolingDown);
                continue;
            }
            if inst.checks.is_some() && !inst.state.is_healthy() && self.any_healthy {
                self.skipped.unhealthy += 1;
                inst.state.events.skipped(SkipReason::Unhealthy);
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

    /// What the relay needs to know of an acceptable answer's attempt.
    pub(super) fn meta<'a>(
        &self,
        ctx: &RequestCtx,
        inst: &'a Instance,
        attempt_started: Instant,
        plugins: InForce<'a>,
    ) -> AnswerMeta<'a> {
        AnswerMeta {
            inst,
            attempts: self.tried.len() as u32 + 1,
            request_started: ctx.started,
            attempt_started,
            // (Given back by the relay, should this attempt fall back.)
            plugins,
        }
    }

    /// A follow-up's instance answered that it does not hold the state
    /// named: passed over, its answer kept in case none holds it.
    pub(super) fn not_held(
        &mut self,
        ctx: &mut RequestCtx,
        inst: &Instance,
        status: u16,
        kept: Kept,
    ) {
        let failure = Failure::NotHeld(status);
        self.clock.failed(ctx, inst, &failure);
        self.tried.push(Tried::new(inst, failure));
        self.not_held = Some(kept);
        self.not_held_count += 1;
    }

    /// Whether `answered` is a follow-up's answer to read for "not held"
    /// before relaying it (an error from an instance speaking Responses).
    pub(super) fn probes(
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
    pub(super) async fn failed(
        &mut self,
        call: &Call<'_, '_>,
        c: &mut ClientConn,
        ctx: &mut RequestCtx,
        inst: &super::Instance,
        failure: Failure,
    ) -> Option<bool> {
        let falls_back = failure.falls_back(&call.plugin.fallback);
        self.clock.failed(ctx, inst, &failure);
        if falls_back {
            inst.state.events.fallback(failure.reason());
        }
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

/// What the AI-path plugins say before an attempt (`before_attempt`).
pub(super) enum Budget<'a> {
    Go,
    /// A budget is spent and `fallback_strategy` has `rate_limiting`:
    /// pass the instance over (the refusal answers if all are).
    PassOver(Refusal<'a>),
    /// The request was answered (spent without fallback, or the budget
    /// store is down): whether the connection stays open.
    Answered(bool),
}

pub(super) async fn budget<'a>(
    call: &Call<'_, '_>,
    plugins: &mut InForce<'a>,
    c: &mut ClientConn,
    ctx: &mut RequestCtx,
    inst: &super::Instance,
) -> Budget<'a> {
    let (lane, keep_alive) = (call.lane, call.keep_alive);
    match plugins.before_attempt(&inst.name).await {
        Gate::Go => Budget::Go,
        Gate::Spent(r) if call.plugin.fallback.rate_limiting => Budget::PassOver(r),
        Gate::Spent(r) => Budget::Answered(refuse(lane, c, ctx, &r, keep_alive).await),
        Gate::Unavailable(msg) => {
            let plugin = call.plugin;
            Budget::Answered(error_msg(lane, c, plugin, ctx, 503, &msg, keep_alive).await)
        }
    }
}

/// What an answer's status says of the instance, applied to its state (a
/// 429's `Retry-After` cools it down, a 5xx counts against it, a 2xx for
/// it), and the failure it is when the route may fall back on it.
pub(super) fn judge(
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

/// The body for `inst`: converted to its format, options merged, usage
/// reporting forced for OpenAI streams.
pub(super) fn upstream_body(
    inst: &super::Instance,
    req: &LlmRequest,
) -> Result<Vec<u8>, crate::wire::WireError> {
    // Applied only if the final body streams (the client's flag or the
    // instance's `options.stream`).
    let to = inst.wire(req.api);
    let force_usage = to == Wire::OpenAi;
    build_request(req.wire, to, req.api, &req.body, &inst.options, force_usage)
}

/// A failed exchange with `inst`, counted against it (passive health).
pub(super) fn transport_failure(plugin: &AiProxyMulti, inst: &Instance, e: ProxyError) -> Failure {
    inst.failed(&plugin.passive);
    tracing::warn!(instance = %inst.name, "LLM attempt failed: {e}");
    Failure::Transport(e)
}

/// An answer that could not be relayed, counted against `inst` when it is
/// to blame (not a limit of the route's).
pub(super) fn not_sent(
    plugin: &AiProxyMulti,
    inst: &Instance,
    status: u16,
    e: ProxyError,
) -> Failure {
    if e.counts_against_instance() {
        inst.failed(&plugin.passive);
    }
    Failure::NotSent(status, e)
}
