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
//! can reach another API of the provider with the instance's key).

use std::future::Future;
use std::io::Write;
use std::pin::Pin;

use super::attempt;
use super::handler::Call;
use super::instance::{Instance, Target};
use super::outcome::{Failure, Tried};
use super::replies::{attempts_failed, error_msg, kept_reply};
use super::respond::{read_body, Kept};
use super::AiProxyMulti;
use crate::exchange::body::read_all;
use crate::exchange::ctx::{RequestCtx, RequestType};
use crate::exchange::relay::{relay_body, RelayError};
use crate::exchange::response_head::{write_response_head, ClientFraming};
use crate::exchange::ClientConn;
use crate::exchange::ProxyError;
use crate::http::{RequestHead, Version};
use crate::lane::Lane;
use crate::providers::{Api, Wire};

/// What stored state a call is about.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Family {
    /// `…/responses/{id}[/…]`, `…/responses/{name}`.
    Responses,
    /// `…/conversations[/{id}[/items[/{item_id}]]]` (Conversations API).
    Conversations,
}

impl Family {
    /// Most path segments after the family's name.
    fn max_segments(self) -> usize {
        match self {
            Family::Responses => 2,
            Family::Conversations => 3,
        }
    }

    fn expected(self) -> &'static str {
        match self {
            Family::Responses => "…/responses/{id}[/input_items|/cancel]",
            Family::Conversations => "…/conversations[/{id}[/items[/{item_id}]]]",
        }
    }
}

/// A call on stored state: its family and what follows `/responses/` or
/// `/conversations/` (empty: creating a conversation).
pub fn stored_call(path: &[u8]) -> Option<(Family, &[u8])> {
    if path.ends_with(b"/conversations") {
        return Some((Family::Conversations, b""));
    }
    for (mark, family) in [
        (&b"/responses/"[..], Family::Responses),
        (&b"/conversations/"[..], Family::Conversations),
    ] {
        if let Some(at) = path.windows(mark.len()).position(|w| w == mark) {
            let rest = &path[at + mark.len()..];
            return (!rest.is_empty()).then_some((family, rest));
        }
    }
    None
}

/// Up to `max` plain segments (`{id}`, `{id}/input_items`, `compact`).
fn plain_segments(rest: &[u8], max: usize) -> bool {
    let mut n = 0;
    for seg in rest.split(|&b| b == b'/') {
        n += 1;
        let plain = !seg.is_empty()
            && seg
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !plain || n > max {
            return false;
        }
    }
    true
}

/// Where the family's calls go for an instance whose Responses endpoint
/// path is `responses` (no query): that path, or its sibling
/// `…/conversations`; `None` if the endpoint is not a `…/responses` one.
fn family_base(family: Family, responses: &str) -> Option<String> {
    let base = responses.trim_end_matches('/');
    match family {
        Family::Responses => Some(base.to_owned()),
        Family::Conversations => base
            .strip_suffix("/responses")
            .map(|b| format!("{b}/conversations")),
    }
}

/// Serves one call on a stored response; whether the connection stays open.
pub async fn handle(
    call: &Call<'_, '_>,
    c: &mut ClientConn,
    ctx: &mut RequestCtx,
    family: Family,
    rest: &[u8],
) -> bool {
    let (lane, plugin, head, keep_alive) = (call.lane, call.plugin, call.head, call.keep_alive);
    ctx.request_type = RequestType::TraditionalHttp;
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
    let body = match read.await {
        Ok(b) => b,
        Err(ProxyError::ClientGone) => return false,
        Err(e) => return error_msg(lane, c, plugin, ctx, e.status(), &e.to_string(), false).await,
    };
    let method = head.method.as_str();
    let creating = rest.is_empty();
    if creating && method != "POST" || !creating && !plain_segments(rest, family.max_segments()) {
        let msg = format!("not a stored-state path: expected {}", family.expected());
        return error_msg(lane, c, plugin, ctx, 404, &msg, keep_alive).await;
    }
    if !matches!(method, "GET" | "DELETE" | "POST") {
        let msg = format!("method {method} is not allowed on stored state");
        return error_msg(lane, c, plugin, ctx, 405, &msg, keep_alive).await;
    }
    let id = rest.split(|&b| b == b'/').next().unwrap_or(rest);
    let whole_id = !creating && id.len() == rest.len();
    let natives = |i: &usize| plugin.instances[*i].wire(Api::Responses) == Wire::Responses;
    let order: Vec<usize> = if creating {
        // A new conversation is balanced like a new request (reached
        // through `dyn`, see above).
        let vars = crate::observe::vars::source(head, ctx);
        let key = plugin.hash_key(&vars);
        let plan: Box<dyn Iterator<Item = usize> + '_> = Box::new(plugin.plan(key.as_deref()));
        plan.filter(natives).collect()
    } else {
        let held = plugin
            .affinity
            .recall(id, &plugin.instances)
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
    };
    if order.is_empty() {
        let msg = "no instance of this route stores Responses API responses \
                   (providers with the API: openai, azure-openai, openai-compatible)";
        return error_msg(lane, c, plugin, ctx, 404, msg, keep_alive).await;
    }
    let mut tried: Vec<Tried> = Vec::new();
    let mut not_found = None;
    for idx in order {
        let inst = &plugin.instances[idx];
        let Ok(target) = inst.target(Api::Responses) else {
            continue;
        };
        let (path, query) = match target.request_target.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (target.request_target.as_str(), None),
        };
        let Some(base) = family_base(family, path) else {
            continue;
        };
        // A failure here moves on to the next instance whatever the
        // strategy: another may hold the state.
        let token: Pin<Box<dyn Future<Output = _> + '_>> = Box::pin(attempt::bearer(
            inst,
            call.tls_clients,
            plugin.transport.timeout,
        ));
        let bearer = match token.await {
            Ok(b) => b,
            Err(f) => {
                tried.push(Tried::new(inst, f));
                continue;
            }
        };
        let to = Upstream {
            base: &base,
            rest,
            query,
            hidden: ctx.hide_query.as_deref(),
        };
        let write = |wbuf: &mut Vec<u8>| {
            write_request(wbuf, inst, target, head, &to, &body, bearer.as_deref())
        };
        let tried_it: Pin<Box<dyn Future<Output = _> + '_>> = Box::pin(attempt::try_target(
            lane,
            call.tls_clients,
            plugin,
            target,
            c,
            write,
        ));
        let answered = match tried_it.await {
            None => return false,
            Some(Ok(a)) => a,
            Some(Err(e)) => {
                tracing::warn!(instance = %inst.name, "stored-response call failed: {e}");
                tried.push(Tried::new(inst, Failure::Transport(e)));
                continue;
            }
        };
        let status = answered.head.status;
        if status == 404 {
            let mut answered = answered;
            match Box::pin(read_body(c, plugin, inst, &mut answered)).await {
                Ok(read) => {
                    tried.push(Tried::new(inst, Failure::NotHeld(404)));
                    not_found = Some(Kept::new(lane, plugin, inst, answered, read));
                }
                Err(e) => tried.push(Tried::new(inst, Failure::NotSent(404, e))),
            }
            continue;
        }
        // Creating a conversation needs no particular instance: the
        // route's fallback strategy applies as to a new request.
        let failure = match status {
            429 => Some(Failure::RateLimited),
            500.. => Some(Failure::ServerError(status)),
            _ => None,
        };
        if let Some(f) = failure.filter(|f| creating && f.falls_back(&plugin.fallback)) {
            tried.push(Tried::new(inst, f));
            continue;
        }
        let attempts = tried.len() + 1;
        if (200..300).contains(&status) && creating {
            // The new conversation's id is in the answer: read it whole.
            let mut answered = answered;
            return match Box::pin(read_body(c, plugin, inst, &mut answered)).await {
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
            };
        }
        if (200..300).contains(&status) && whole_id {
            match method {
                "GET" => plugin.affinity.remember(id, inst),
                "DELETE" => plugin.affinity.forget(id, inst),
                _ => {}
            }
        }
        return pass_answer(
            lane, c, ctx, plugin, head, inst, answered, attempts, keep_alive,
        )
        .await;
    }
    let failed = tried
        .iter()
        .filter(|t| t.failure.status() != Some(404))
        .count();
    match not_found {
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
#[allow(clippy::too_many_arguments)]
async fn pass_answer(
    lane: &Lane,
    c: &mut ClientConn,
    ctx: &mut RequestCtx,
    plugin: &AiProxyMulti,
    head: &RequestHead,
    inst: &Instance,
    answered: attempt::Answered,
    attempts: usize,
    keep_alive: bool,
) -> bool {
    let attempt::Answered {
        mut up,
        head: resp,
        sent_at,
    } = answered;
    let client_http10 = head.version == Version::Http10;
    let out = ClientFraming::for_response(resp.framing, client_http10);
    let keep = keep_alive && out != ClientFraming::Raw;
    let attempts = attempts.to_string();
    let extra: [(&[u8], &[u8]); 2] = [
        (b"X-Ringway-Instance", inst.name.as_bytes()),
        (b"X-Ringway-Attempts", attempts.as_bytes()),
    ];
    let ClientConn { io, ubuf, wbuf, .. } = &mut *c;
    wbuf.clear();
    write_response_head(wbuf, &resp, out, keep, client_http10, &extra);
    ctx.status = resp.status;
    ctx.upstream_status = Some(resp.status);
    ctx.upstream_addr = Some(up.key.addr);
    ctx.llm.instance = Some(inst.name.clone());
    ctx.llm.attempts = attempts.parse().unwrap_or(1);
    let relayed = relay_body(
        &mut up.io,
        io,
        ubuf,
        wbuf,
        resp.framing,
        out,
        plugin.transport.timeout,
        lane.gateway.timeouts.send,
        None,
    )
    .await;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_calls_and_their_paths() {
        use Family::*;
        assert_eq!(stored_call(b"/v1/responses"), None);
        assert_eq!(stored_call(b"/v1/responses/"), None);
        assert_eq!(stored_call(b"/v1/chat/completions"), None);
        assert_eq!(
            stored_call(b"/v1/responses/resp_1"),
            Some((Responses, &b"resp_1"[..]))
        );
        assert_eq!(
            stored_call(b"/openai/v1/responses/resp_1/input_items"),
            Some((Responses, &b"resp_1/input_items"[..]))
        );
        assert_eq!(
            stored_call(b"/v1/conversations"),
            Some((Conversations, &b""[..]))
        );
        assert_eq!(
            stored_call(b"/v1/conversations/conv_1/items/msg_2"),
            Some((Conversations, &b"conv_1/items/msg_2"[..]))
        );
        for ok in [
            &b"resp_1"[..],
            b"resp_1/cancel",
            b"compact",
            b"a-b_C9/input_items",
        ] {
            assert!(plain_segments(ok, 2), "{ok:?}");
        }
        assert!(plain_segments(b"conv_1/items/msg_2", 3));
        for bad in [
            &b"resp_1/../../files"[..],
            b"..",
            b"resp_1/",
            b"resp_1//x",
            b"resp_1/input_items/x",
            b"%2e%2e",
            b"resp.1",
        ] {
            assert!(!plain_segments(bad, 2), "{bad:?}");
        }
        assert_eq!(
            family_base(Conversations, "/openai/v1/responses").as_deref(),
            Some("/openai/v1/conversations")
        );
        assert_eq!(family_base(Conversations, "/v1/chat/completions"), None);
        assert_eq!(
            family_base(Responses, "/v1/responses/").as_deref(),
            Some("/v1/responses")
        );
    }
}
