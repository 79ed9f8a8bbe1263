//! The plugin's own answers: `{"error_msg": …}` bodies (or the route's
//! `_meta.error_response`), `502` naming every attempt, `503` with
//! `Retry-After` when no instance was available, `400` when none can serve
//! the request, a plugin's refusal (a spent budget), and a kept provider
//! "not found" when no instance holds the response a request names.

use std::time::Duration;

use serde_json::json;

use super::outcome::Tried;
use super::request::LlmRequest;
use super::respond::Kept;
use super::AiProxyMulti;
use crate::exchange::ctx::RequestCtx;
use crate::exchange::reply::{self, Reply};
use crate::exchange::ClientConn;
use crate::lane::Lane;
use crate::plugins::Refusal;

/// Why instances were passed over without an attempt.
#[derive(Default)]
pub(super) struct Skipped {
    pub(super) cooling: u32,
    /// Shortest remaining cooldown among them.
    pub(super) retry_after: Option<Duration>,
    pub(super) unhealthy: u32,
    /// Instances that cannot serve this request (no endpoint for its API,
    /// or a body their format cannot carry).
    pub(super) cannot_serve: u32,
    /// Why the first of them cannot.
    pub(super) why_cannot_serve: Option<String>,
    /// Some instance could not take the body for its size (413, not 400).
    pub(super) too_large: bool,
    /// The first instance passed over for having no endpoint at all.
    pub(super) no_endpoint: Option<String>,
    /// A plugin's budget (`before_attempt`) spent.
    pub(super) rate_limited: u32,
}

impl Skipped {
    /// An instance that cannot take this request (`too_large`: its body
    /// is too large to convert for it).
    pub(super) fn cannot_serve(&mut self, inst: &super::Instance, why: &str, too_large: bool) {
        if inst.no_endpoint {
            if self.no_endpoint.is_none() {
                self.no_endpoint = Some(format!("instance `{}` has no endpoint: {why}", inst.name));
            }
            return;
        }
        self.cannot_serve += 1;
        self.too_large |= too_large;
        if self.why_cannot_serve.is_none() || too_large {
            self.why_cannot_serve = Some(why.to_owned());
        }
    }
}

/// The last instance's "not found", as it answered (no instance holds
/// the response a request names).
pub(super) async fn kept_reply(
    lane: &Lane,
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
    let attempts = attempts.to_string();
    let lines = reply::header_lines(&[
        ("X-Ringway-Instance", &kept.instance),
        ("X-Ringway-Attempts", attempts.as_str()),
    ]);
    let answer = Reply {
        status,
        content_type: "application/json",
        body: &kept.body,
        headers: &lines,
    };
    c.reply(ctx, answer, keep_alive, lane.gateway.timeouts.send)
        .await
}

/// A plugin's refusal (a spent budget's `rejected_code`, body and
/// headers).
pub(super) async fn refuse(
    lane: &Lane,
    c: &mut ClientConn,
    ctx: &mut RequestCtx,
    r: &Refusal<'_>,
    keep_alive: bool,
) -> bool {
    let answer = Reply {
        status: r.status,
        content_type: r.content_type,
        body: r.body.as_bytes(),
        headers: &r.headers,
    };
    c.reply(ctx, answer, keep_alive, lane.gateway.timeouts.send)
        .await
}

/// No instance answered acceptably.
pub(super) async fn exhausted(
    call: &super::handler::Call<'_, '_>,
    c: &mut ClientConn,
    ctx: &mut RequestCtx,
    req: &LlmRequest,
    tried: Vec<Tried>,
    skipped: Skipped,
) -> bool {
    let (lane, plugin, keep_alive) = (call.lane, call.plugin, call.keep_alive);
    if !tried.is_empty() {
        return attempts_failed(lane, c, plugin, ctx, &tried, keep_alive).await;
    }
    ctx.llm.attempts = 0;
    if skipped.cannot_serve > 0 && skipped.cooling == 0 && skipped.unhealthy == 0 {
        let msg = format!(
            "no instance of this route can serve this {} request: {}",
            req.api.label(),
            skipped.why_cannot_serve.as_deref().unwrap_or("")
        );
        let status = if skipped.too_large { 413 } else { 400 };
        return error_msg(lane, c, plugin, ctx, status, &msg, keep_alive).await;
    }
    if let Some(why) = skipped
        .no_endpoint
        .filter(|_| skipped.cooling + skipped.unhealthy == 0)
    {
        // A configuration error, not the client's (APISIX: 500, its driver
        // has no host to connect to).
        return error_msg(lane, c, plugin, ctx, 500, &why, keep_alive).await;
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
    let body = reply::error_body(&msg);
    let answer = OwnError {
        status: 503,
        body: &body,
        headers: &headers,
    };
    error_reply(lane, c, plugin, ctx, answer, keep_alive).await
}

/// `502` naming every attempt and how it failed.
pub(super) async fn attempts_failed(
    lane: &Lane,
    c: &mut ClientConn,
    plugin: &AiProxyMulti,
    ctx: &mut RequestCtx,
    tried: &[Tried],
    keep_alive: bool,
) -> bool {
    ctx.llm.attempts = tried.len() as u32;
    let attempts: Vec<_> = tried
        .iter()
        .map(|t| {
            json!({
                "instance": &*t.instance,
                "status": t.failure.status(),
                "error": t.failure.to_string(),
            })
        })
        .collect();
    let body = json!({
        "error_msg": format!("all {} attempted LLM instances failed", tried.len()),
        "attempts": attempts,
    });
    let body = body.to_string();
    let answer = OwnError {
        status: 502,
        body: &body,
        headers: &[],
    };
    error_reply(lane, c, plugin, ctx, answer, keep_alive).await
}

/// One of the plugin's own error answers with an `{"error_msg": …}` body.
pub(super) async fn error_msg(
    lane: &Lane,
    c: &mut ClientConn,
    plugin: &AiProxyMulti,
    ctx: &mut RequestCtx,
    status: u16,
    message: &str,
    keep_alive: bool,
) -> bool {
    let body = reply::error_body(message);
    let answer = OwnError {
        status,
        body: &body,
        headers: &[],
    };
    error_reply(lane, c, plugin, ctx, answer, keep_alive).await
}

/// One of the plugin's own error answers: a status, its JSON body and
/// header lines.
pub(super) struct OwnError<'b> {
    pub(super) status: u16,
    pub(super) body: &'b str,
    pub(super) headers: &'b [(&'b str, &'b str)],
}

/// One of the plugin's own error answers: `answer`'s body (JSON), or the
/// plugin's `_meta.error_response`.
pub(super) async fn error_reply(
    lane: &Lane,
    c: &mut ClientConn,
    plugin: &AiProxyMulti,
    ctx: &mut RequestCtx,
    answer: OwnError<'_>,
    keep_alive: bool,
) -> bool {
    let OwnError {
        status,
        body,
        headers,
    } = answer;
    let (content_type, body) = match &plugin.error_response {
        Some(e) => (e.content_type, e.body.as_bytes()),
        None => ("application/json", body.as_bytes()),
    };
    let lines = reply::header_lines(headers);
    let answer = Reply {
        status,
        content_type,
        body,
        headers: &lines,
    };
    c.reply(ctx, answer, keep_alive, lane.gateway.timeouts.send)
        .await
}
