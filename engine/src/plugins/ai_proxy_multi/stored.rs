//! The Responses API's calls on a stored response — `GET` / `DELETE
//! …/responses/{id}`, `GET …/responses/{id}/input_items`, `POST
//! …/responses/{id}/cancel` — its other `…/responses/{name}` calls
//! (`input_tokens`, `compact`), and the Conversations API
//! (`…/conversations[/{id}[/items[/{item_id}]]]`), on an `ai-proxy-multi`
//! route.
//!
//! Stored state lives in the account that made it, so these go only
//! to instances whose provider has the API (conversations to the
//! `…/conversations` sibling of their `…/responses` endpoint): first the
//! one remembered as holding the id ([`super::affinity`]), then the others
//! by priority while they answer `404`. A new conversation is balanced
//! like a new request (falling back on 429 / 5xx as the route's
//! `fallback_strategy` says) and its id remembered from the answer. The answer is relayed as it comes (JSON, or a
//! replayed event stream) with the instance and attempt headers; nothing
//! is converted or charged (these calls generate no tokens). Probing is
//! not a retry: `max_retries` does not cap it, and a failed instance
//! (connect error, timeout) is passed over, ending in `502` naming every
//! attempt when no other instance had the response.
//!
//! The path after `/responses/` is checked before it goes anywhere: one
//! or two segments of letters, digits, `_` and `-` (so no `..` or escapes
//! can reach another API of the provider with the instance's key)
//! (`stored/path.rs`).

mod path;

pub use path::{stored_call, Family};

use std::future::Future;
use std::io::Write;
use std::pin::Pin;

use bytes::Bytes;

use super::attempt;
use super::handler::Call;
use super::instance::{Instance, Target};
use super::outcome::{Failure, Tried};
use super::replies::{attempts_failed, error_msg, kept_reply};
use super::respond::{read_body, Kept};
use crate::exchange::body::read_all;
use crate::exchange::ctx::{RequestCtx, RequestType};
use crate::exchange::relay::{self, RelayError};
use crate::exchange::response_head::{write_response_head, ClientFraming};
use crate::exchange::ClientConn;
use crate::exchange::ProxyError;
use crate::http::{RequestHead, Version};
use crate::providers::{Api, Wire};
use path::{family_base, plain_segments};

/// Serves one call on a stored response; whether the connection stays open.
pub async fn handle(
    call: &Call<'_, '_>,
    c: &mut ClientConn,
    ctx: &mut RequestCtx,
    family: Family,
    rest: &[u8],
) -> bool {
    let (lane, plugin, keep_alive) = (call.lane, call.plugin, call.keep_alive);
    ctx.request_type = RequestType::TraditionalHttp;
    let body = match read_request_body(call, c).await {
        Ok(b) => b,
        Err(ProxyError::ClientGone) => return false,
        Err(e) => return error_msg(lane, c, plugin, ctx, e.status(), &e.to_string(), false).await,
    };
    let sc = match check(call.head, family, rest, &body) {
        Ok(sc) => sc,
        Err((status, msg)) => {
            return error_msg(lane, c, plugin, ctx, status, &msg, keep_alive).await
        }
    };
    let order = order(call, ctx, &sc);
    if order.is_empty() {
        let msg = "no instance of this route stores Responses API responses \
                   (providers with the API: openai, azure-openai, openai-compatible)";
        return error_msg(lane, c, plugin, ctx, 404, msg, keep_alive).await;
    }
    let mut probed = Probed::default();
    for idx in order {
        let inst = &plugin.instances[idx];
        if let Some(keep) = try_instance(call, c, ctx, &sc, inst, &mut probed).await {
            return keep;
        }
    }
    finish(call, c, ctx, probed).await
}

/// A call on stored state, its path and method checked.
struct StoredCall<'b> {
    family: Family,
    /// What follows `/responses/` or `/conversations/`.
    rest: &'b [u8],
    /// The id it is about (the first segment of `rest`).
    id: &'b [u8],
    /// Creating a conversation (`rest` empty).
    creating: bool,
    /// `rest` is the id alone (`GET` / `DELETE` of the object itself).
    whole_id: bool,
    /// The client's request body.
    body: &'b [u8],
}

/// What the instances asked so far said.
#[derive(Default)]
struct Probed {
    tried: Vec<Tried>,
    /// The last `404` answer, kept for the client if no instance had it.
    not_found: Option<Kept>,
}

/// The client's whole request body.
async fn read_request_body(call: &Call<'_, '_>, c: &mut ClientConn) -> Result<Bytes, ProxyError> {
    let (lane, plugin, head) = (call.lane, call.plugin, call.head);
    let max_body = plugin
        .max_request_body
        .unwrap_or(lane.gateway.limits.max_body_bytes);
    let gw = &lane.gateway;
    // Shared code is reached through `dyn` futures here, so the LLM path
    // stays the only direct caller of its steps (and keeps them inlined).
    let read: Pin<Box<dyn Future<Output = _> + '_>> = Box::pin(read_all(
        c,
        head.framing,
        head.expect_continue,
        max_body,
        gw.timeouts.body,
        gw.timeouts.send,
    ));
    read.await
}

/// The call's path and method checked; `Err` is the status and message
/// to answer.
fn check<'b>(
    head: &RequestHead,
    family: Family,
    rest: &'b [u8],
    body: &'b [u8],
) -> Result<StoredCall<'b>, (u16, String)> {
    let method = head.method.as_str();
    let creating = rest.is_empty();
    if creating && method != "POST" || !creating && !plain_segments(rest, family.max_segments()) {
        let msg = format!("not a stored-state path: expected {}", family.expected());
        return Err((404, msg));
    }
    if !matches!(method, "GET" | "DELETE" | "POST") {
        let msg = format!("method {method} is not allowed on stored state");
        return Err((405, msg));
    }
    let id = rest.split(|&b| b == b'/').next().unwrap_or(rest);
    let whole_id = !creating && id.len() == rest.len();
    Ok(StoredCall {
        family,
        rest,
        id,
        creating,
        whole_id,
        body,
    })
}

/// The instances to ask, in order: for a new conversation, the route's
/// plan; else the one remembered as holding the id, then the others by
/// priority. Only instances whose provider has the Responses API.
fn order(call: &Call<'_, '_>, ctx: &RequestCtx, sc: &StoredCall<'_>) -> Vec<usize> {
    let plugin = call.plugin;
    let natives = |i: &usize| plugin.instances[*i].wire(Api::Responses) == Wire::Responses;
    if sc.creating {
        // A new conversation is balanced like a new request (reached
        // through `dyn`, see `read_request_body`).
        let vars = crate::observe::vars::source(call.head, ctx);
        let key = plugin.hash_key(&vars);
        let plan: Box<dyn Iterator<Item = usize> + '_> = Box::new(plugin.plan(key.as_deref()));
        return plan.filter(natives).collect();
    }
    let held = plugin
        .affinity
        .recall(sc.id, &plugin.instances)
        .filter(natives);
    // Then the others by priority: every one may be asked, so
    // balancing would only reorder the probes.
    held.into_iter()
        .chain(
            plugin
                .groups
                .iter()
                .flat_map(|g| g.members.iter().copied())
                .filter(|i| Some(*i) != held && natives(i)),
        )
        .collect()
}

/// Asks one instance: `Some` with whether the connection stays open once
/// the client has its answer, `None` to ask the next one (what this one
/// said is in `probed`).
async fn try_instance(
    call: &Call<'_, '_>,
    c: &mut ClientConn,
    ctx: &mut RequestCtx,
    sc: &StoredCall<'_>,
    inst: &Instance,
    probed: &mut Probed,
) -> Option<bool> {
    let target = inst.target(Api::Responses).ok()?;
    let (path, query) = match target.request_target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target.request_target.as_str(), None),
    };
    let base = family_base(sc.family, path)?;
    // A failure here moves on to the next instance whatever the
    // strategy: another may hold the state.
    let token: Pin<Box<dyn Future<Output = _> + '_>> = Box::pin(attempt::bearer(
        inst,
        call.tls_clients,
        call.plugin.transport.timeout,
    ));
    let bearer = match token.await {
        Ok(b) => b,
        Err(f) => {
            probed.tried.push(Tried::new(inst, f));
            return None;
        }
    };
    let to = Upstream {
        base: &base,
        rest: sc.rest,
        query,
        hidden: ctx.hide_query.as_deref(),
    };
    let ids = &*ctx;
    let write = |wbuf: &mut Vec<u8>| {
        write_request(
            wbuf,
            inst,
            target,
            call.head,
            &to,
            sc.body,
            bearer.as_deref(),
        );
        // Before the blank line the request ends with (then the body).
        let end = wbuf.len() - sc.body.len() - 2;
        let mut lines = Vec::new();
        ids.push_upstream_ids(&mut lines, call.head, None);
        wbuf.splice(end..end, lines);
    };
    let tried_it: Pin<Box<dyn Future<Output = _> + '_>> = Box::pin(attempt::try_target(
        call.lane,
        call.tls_clients,
        call.plugin,
        target,
        c,
        write,
    ));
    let answered = match tried_it.await {
        None => return Some(false),
        Some(Ok(a)) => a,
        Some(Err(e)) => {
            tracing::warn!(instance = %inst.name, "stored-response call failed: {e}");
            probed.tried.push(Tried::new(inst, Failure::Transport(e)));
            return None;
        }
    };
    answer(call, c, ctx, sc, inst, answered, probed).await
}

/// What an instance's answer means: a `404` (kept) or, when creating, a
/// failure the route falls back on, move on (`None`); anything else is
/// the client's.
async fn answer(
    call: &Call<'_, '_>,
    c: &mut ClientConn,
    ctx: &mut RequestCtx,
    sc: &StoredCall<'_>,
    inst: &Instance,
    answered: attempt::Answered,
    probed: &mut Probed,
) -> Option<bool> {
    let (lane, plugin) = (call.lane, call.plugin);
    let status = answered.head.status;
    if status == 404 {
        let mut answered = answered;
        match Box::pin(read_body(c, plugin, inst, &mut answered)).await {
            Ok(read) => {
                probed.tried.push(Tried::new(inst, Failure::NotHeld(404)));
                probed.not_found = Some(Kept::new(lane, plugin, inst, answered, read));
            }
            Err(e) => probed
                .tried
                .push(Tried::new(inst, Failure::NotSent(404, e))),
        }
        return None;
    }
    // Creating a conversation needs no particular instance: the
    // route's fallback strategy applies as to a new request.
    let failure = match status {
        429 => Some(Failure::RateLimited),
        500.. => Some(Failure::ServerError(status)),
        _ => None,
    };
    if let Some(f) = failure.filter(|f| sc.creating && f.falls_back(&plugin.fallback)) {
        probed.tried.push(Tried::new(inst, f));
        return None;
    }
    let attempts = probed.tried.len() + 1;
    if (200..300).contains(&status) && sc.creating {
        return Some(created(call, c, ctx, inst, answered, attempts).await);
    }
    if (200..300).contains(&status) && sc.whole_id {
        match call.head.method.as_str() {
            "GET" => plugin.affinity.remember(sc.id, inst),
            "DELETE" => plugin.affinity.forget(sc.id, inst),
            _ => {}
        }
    }
    Some(pass_answer(call, c, ctx, inst, answered, attempts).await)
}

/// A new conversation: its answer read whole for the id, remembered as
/// held by `inst`.
async fn created(
    call: &Call<'_, '_>,
    c: &mut ClientConn,
    ctx: &mut RequestCtx,
    inst: &Instance,
    mut answered: attempt::Answered,
    attempts: usize,
) -> bool {
    let (lane, plugin, keep_alive) = (call.lane, call.plugin, call.keep_alive);
    match Box::pin(read_body(c, plugin, inst, &mut answered)).await {
        Ok(read) => {
            let kept = Kept::new(lane, plugin, inst, answered, read);
            use crate::wire::json_scan::{string_at, Step};
            if let Some(id) = string_at(&kept.body, &[Step::Key("id")]) {
                plugin.affinity.remember(id.as_bytes(), inst);
            }
            kept_reply(lane, c, ctx, kept, attempts, keep_alive).await
        }
        Err(e) => {
            let msg = format!("instance `{}`: {e}", inst.name);
            error_msg(lane, c, plugin, ctx, 502, &msg, keep_alive).await
        }
    }
}

/// No instance answered but with `404`s: the last of them; else `502`
/// naming every attempt.
async fn finish(
    call: &Call<'_, '_>,
    c: &mut ClientConn,
    ctx: &mut RequestCtx,
    probed: Probed,
) -> bool {
    let (lane, plugin, keep_alive) = (call.lane, call.plugin, call.keep_alive);
    let tried = probed.tried;
    let failed = tried
        .iter()
        .filter(|t| t.failure.status() != Some(404))
        .count();
    match probed.not_found {
        Some(kept) if failed == 0 => kept_reply(lane, c, ctx, kept, tried.len(), keep_alive).await,
        _ => attempts_failed(lane, c, plugin, ctx, &tried, keep_alive).await,
    }
}

/// Where a stored-state call goes at one instance.
struct Upstream<'a> {
    /// `…/responses` or `…/conversations` at the instance.
    base: &'a str,
    /// The client's path after it.
    rest: &'a [u8],
    /// The instance endpoint's own query (`api-version`, `auth.query`):
    /// the client's parameters of these names are left out.
    query: Option<&'a str>,
    /// key-auth's `hide_credentials` query parameter, left out too.
    hidden: Option<&'a str>,
}

/// The upstream request: the instance's endpoint for the family with the
/// client's path after it and its query (the instance's own parameters
/// winning), the instance's auth.
fn write_request(
    out: &mut Vec<u8>,
    inst: &Instance,
    target: &Target,
    client: &RequestHead,
    to: &Upstream<'_>,
    body: &[u8],
    bearer: Option<&str>,
) {
    out.clear();
    out.extend_from_slice(client.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(to.base.as_bytes());
    if !to.rest.is_empty() {
        out.push(b'/');
        out.extend_from_slice(to.rest);
    }
    crate::providers::url::append_query(out, to.query, client.query(), to.hidden);
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    out.extend_from_slice(target.host_header.as_bytes());
    out.extend_from_slice(b"\r\n");
    if !body.is_empty() || client.method == http::Method::POST {
        let ct = client.header("content-type").unwrap_or(b"application/json");
        out.extend_from_slice(b"Content-Type: ");
        out.extend_from_slice(ct);
        let _ = write!(out, "\r\nContent-Length: {}\r\n", body.len());
    }
    out.extend_from_slice(b"Accept: ");
    out.extend_from_slice(client.header("accept").unwrap_or(b"application/json"));
    out.extend_from_slice(b"\r\n");
    attempt::write_auth(out, inst, bearer);
    for (k, v) in inst.provider.extra_headers {
        let _ = write!(out, "{k}: {v}\r\n");
    }
    for name in attempt::FORWARDED {
        attempt::forward_header(out, client, name);
    }
    out.extend_from_slice(b"User-Agent: ringway\r\n\r\n");
    out.extend_from_slice(body);
}

/// Relays an answer as it comes, with the instance and attempt headers.
async fn pass_answer(
    call: &Call<'_, '_>,
    c: &mut ClientConn,
    ctx: &mut RequestCtx,
    inst: &Instance,
    answered: attempt::Answered,
    attempts: usize,
) -> bool {
    let (lane, plugin, head, keep_alive) = (call.lane, call.plugin, call.head, call.keep_alive);
    let attempt::Answered {
        mut up,
        head: resp,
        sent_at,
    } = answered;
    let client_http10 = head.version == Version::Http10;
    let out = ClientFraming::for_response(resp.framing, client_http10);
    let keep = keep_alive && out != ClientFraming::Raw;
    let attempts = attempts.to_string();
    let id = ctx.response_id().filter(|(name, _)| {
        !resp
            .header_pairs()
            .any(|(n, _)| n.eq_ignore_ascii_case(name))
    });
    let mut extra: [(&[u8], &[u8]); 3] = [
        (b"X-Ringway-Instance", inst.name.as_bytes()),
        (b"X-Ringway-Attempts", attempts.as_bytes()),
        (b"", b""),
    ];
    let n = match id {
        Some(h) => {
            extra[2] = h;
            3
        }
        None => 2,
    };
    let ClientConn { io, ubuf, wbuf, .. } = &mut *c;
    wbuf.clear();
    write_response_head(wbuf, &resp, out, keep, client_http10, &extra[..n]);
    ctx.status = resp.status;
    ctx.upstream_status = Some(resp.status);
    ctx.upstream_addr = Some(up.key.addr);
    ctx.llm.instance = Some(inst.name.clone());
    ctx.llm.attempts = attempts.parse().unwrap_or(1);
    let ends = relay::Ends {
        up: &mut up.io,
        client: io,
        ubuf,
        wbuf,
    };
    let framing = relay::Framing {
        upstream: resp.framing,
        client: out,
    };
    let timeouts = relay::Timeouts {
        read: plugin.transport.timeout,
        send: lane.gateway.timeouts.send,
    };
    let relayed = relay::relay_body(ends, framing, timeouts, None).await;
    ctx.upstream_response_time = Some(sent_at.elapsed());
    match relayed {
        Ok(r) => {
            ctx.bytes_sent = r.bytes;
            if r.reusable && resp.keep_alive {
                lane.pool.put(up, &plugin.transport.keepalive);
            }
            keep
        }
        Err(RelayError::Upstream(e)) => {
            tracing::debug!(instance = %inst.name, "stored-response answer cut: {e}");
            false
        }
        Err(RelayError::Client) => false,
    }
}
