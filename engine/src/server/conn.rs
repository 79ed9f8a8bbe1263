//! The per-connection loop: read a request head (with idle, header and
//! size limits), route it, run the route's handler, repeat while the
//! connection stays keep-alive. Pipelined requests are answered in order
//! simply because one request is finished before the next head is parsed;
//! bytes already read for the next request stay in the read buffer.

use std::rc::Rc;
use std::time::Instant;

use bytes::BytesMut;

use super::worker::Worker;
use crate::exchange::ctx::{RequestCtx, ResponseBody};
use crate::exchange::reply::{self, Reply};
use crate::exchange::ClientConn;
use crate::http::{self, chunked::ChunkedDecoder, BodyFraming, HttpError, RequestHead};
use crate::net;
use crate::plugins::{AccessCx, Flow};
use crate::snapshot::handler::{Handled, RouteCall};

enum HeadRead {
    Head(RequestHead),
    /// The client went away or stayed idle: close without a reply.
    Closed,
    Error(HttpError),
    /// A head started but did not complete in time.
    Timeout,
}

/// Serves one client connection until it closes.
///
/// Not an `async fn`: one would hold its arguments twice (as arguments,
/// and as the locals its body uses) for the connection's life; a block
/// uses what it captures in place.
#[allow(clippy::manual_async_fn)] // on purpose, see above
pub fn serve(w: Rc<Worker>, mut c: ClientConn) -> impl std::future::Future<Output = ()> {
    async move {
        crate::supervise::fault(crate::supervise::Component::Connection);
        let mut first = true;
        loop {
            let head = match read_head(&w, &mut c, first).await {
                HeadRead::Head(h) => h,
                HeadRead::Closed => break,
                HeadRead::Error(e) => {
                    reply::error(&mut c.wbuf, e.status(), &e.to_string(), false);
                    let _ = c.flush_wbuf(w.lane.gateway.timeouts.send).await;
                    break;
                }
                HeadRead::Timeout => {
                    reply::error(
                        &mut c.wbuf,
                        408,
                        "timed out reading the request head",
                        false,
                    );
                    let _ = c.flush_wbuf(w.lane.gateway.timeouts.send).await;
                    break;
                }
            };
            first = false;
            let keep_alive = dispatch(&w, &mut c, head).await;
            if !keep_alive || w.shutdown.is_fired() {
                break;
            }
        }
        use monoio::io::AsyncWriteRent;
        let _ = crate::timer::timeout(w.lane.gateway.timeouts.send, c.io.shutdown()).await;
    }
}

async fn read_head(w: &Worker, c: &mut ClientConn, first: bool) -> HeadRead {
    let limits = w.lane.head_limits;
    let timeouts = w.lane.gateway.timeouts;
    skip_leading_crlf(&mut c.rbuf);
    if c.rbuf.is_empty() {
        // Idle between requests: wait for a first byte, the idle timeout or
        // shutdown, whichever comes first.
        let wait = if first {
            timeouts.header
        } else {
            timeouts.idle
        };
        let buf = std::mem::take(&mut c.rbuf);
        let read = monoio::select! {
            r = crate::timer::timeout(wait, net::read_more(&mut c.io, buf)) => r,
            _ = w.shutdown.wait() => return HeadRead::Closed,
        };
        match read {
            Ok((Ok(n), buf)) if n > 0 => c.rbuf = buf,
            _ => return HeadRead::Closed,
        }
        skip_leading_crlf(&mut c.rbuf);
    }
    let deadline = Instant::now() + timeouts.header;
    let mut scanned = 0;
    loop {
        if let Some(end) = http::find_head_end(&c.rbuf, scanned) {
            let bytes = c.rbuf.split_to(end).freeze();
            let scratch = std::mem::take(&mut c.scratch);
            return match RequestHead::parse(bytes, &limits, scratch) {
                Ok(h) => HeadRead::Head(h),
                Err(e) => HeadRead::Error(e),
            };
        }
        if c.rbuf.len() > limits.max_head_bytes {
            return HeadRead::Error(HttpError::HeadTooLarge {
                limit: limits.max_head_bytes,
            });
        }
        scanned = c.rbuf.len();
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return HeadRead::Timeout;
        }
        match c.read_more(left).await {
            Ok(0) => return HeadRead::Closed,
            Ok(_) => {
                if scanned == 0 {
                    skip_leading_crlf(&mut c.rbuf);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return HeadRead::Timeout,
            Err(_) => return HeadRead::Closed,
        }
    }
}

/// RFC 9112 §2.2: ignore at least one empty line before a request line.
fn skip_leading_crlf(buf: &mut BytesMut) {
    let n = buf
        .iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count();
    if n > 0 {
        let _ = buf.split_to(n);
    }
}

/// Routes one request and runs its handler; returns whether the
/// connection may serve another request.
#[allow(clippy::manual_async_fn)] // on purpose, see `serve`
fn dispatch<'a>(
    w: &'a Rc<Worker>,
    c: &'a mut ClientConn,
    mut head: RequestHead,
) -> impl std::future::Future<Output = bool> + 'a {
    // A block, not an `async fn`: the head is held once (see `serve`).
    async move {
        w.lane.busy.kick();
        let snap = w.snapshot();
        let mut ctx = RequestCtx::new(c.peer, Instant::now());
        ctx.tls = c.tls;
        let keep = route_and_run(w, &snap, c, &mut head, &mut ctx).await;
        if let Some(p) = &mut ctx.llm.payloads {
            // Once, for the access log and every logger.
            p.settle();
        }
        // Series first: a scrape that sees the request counted sees its series.
        w.record_series(&snap, &head, &ctx);
        w.stats.record(&ctx);
        w.log_request(&snap, &head, &ctx);
        c.scratch = head.recycle();
        // A burst grew the upstream buffer (net::read_more doubles it after a
        // full read): an idle keep-alive connection goes back to a small one,
        // whichever handler relayed.
        if c.ubuf.is_empty() && c.ubuf.capacity() > 4 * net::MIN_READ {
            c.ubuf = BytesMut::new();
        }
        keep
    }
}

/// Matches the route, runs the rewrite phase and the route's handler.
async fn route_and_run(
    w: &Rc<Worker>,
    snap: &crate::snapshot::Snapshot,
    c: &mut ClientConn,
    head: &mut RequestHead,
    ctx: &mut RequestCtx,
) -> bool {
    let keep_alive = head.keep_alive && !w.shutdown.is_fired();
    ResponseBody::want(
        &mut ctx.response_body,
        snap.global_plugins.response_body_limit(),
    );
    let holds = |e: &crate::http::expr::Expr| crate::observe::vars::holds(e, head, ctx);
    let Some(idx) = snap
        .router
        .find(&head.method, head.path(), head.host(), &holds)
    else {
        let body = reply::error_body("404 Route Not Found");
        // Boxed (here and below): rare answers should not size the
        // connection's future, which an open stream keeps for its life.
        let answer = Reply::json(404, &body);
        return Box::pin(reply_before_body(w, c, head, ctx, answer, keep_alive)).await;
    };
    let route = &snap.routes[idx];
    ctx.route_id = Some(route.id.clone());
    ctx.route_index = Some(idx as u32);
    keep_for_the_log(snap, idx, ctx);
    let (flow, consumer) = {
        let mut cx = AccessCx {
            head,
            ctx,
            consumers: &snap.consumers,
            consumer: None,
            route_name: Some(&route.name),
        };
        let flow = match snap.global_plugins.rewrite(&mut cx) {
            Flow::Continue => route.plugins.rewrite(&mut cx),
            answered => answered,
        };
        (flow, cx.consumer)
    };
    if let Flow::Respond {
        status,
        content_type,
        body,
        headers,
    } = flow
    {
        let headers = headers.as_deref().unwrap_or("");
        let answer = Reply {
            status,
            content_type,
            body: body.as_bytes(),
            headers: headers.as_bytes(),
        };
        return Box::pin(reply_before_body(w, c, head, ctx, answer, keep_alive)).await;
    }
    if w.series.is_some() && route.serves_llm(head, ctx) {
        w.begin_llm(snap, idx, ctx);
    }
    let call = RouteCall {
        lane: &w.lane,
        tls_clients: &snap.tls,
        head,
        keep_alive,
        consumer,
    };
    let handled = Box::pin(route.handle(call, c, ctx)).await;
    match handled {
        Handled::Done(keep) => keep,
        // The handler's state is freed; a stream that may stay open for
        // minutes holds only its job (and see `before_a_long_answer`).
        Handled::Stream(job) => {
            before_a_long_answer(c, head);
            Box::pin(job.run(&w.lane, c, ctx)).await
        }
        Handled::Relay(job) => {
            before_a_long_answer(c, head);
            Box::pin(job.run(&w.lane, c, ctx)).await
        }
    }
}

/// An answer that may stay open for minutes holds only what it needs: the
/// head's bytes move out of the read buffer they were parsed in, and an
/// empty read buffer goes (its allocation is shared with the head's
/// bytes until both let go); the next request's read starts a small one.
fn before_a_long_answer(c: &mut ClientConn, head: &mut RequestHead) {
    head.detach();
    if c.rbuf.is_empty() {
        c.rbuf = BytesMut::new();
    }
}

/// What the log phase will need of a request on route `idx`: whether the
/// route's loggers run, the request body, how much of the response body
/// (`body_filter`).
fn keep_for_the_log(snap: &crate::snapshot::Snapshot, idx: usize, ctx: &mut RequestCtx) {
    let route = &snap.routes[idx];
    if route.plugins.has_loggers() {
        ctx.log_route = Some(idx);
    }
    if snap.global_plugins.has_loggers() || ctx.log_route.is_some() {
        ctx.keep_request_body =
            route.plugins.wants_request_body() || snap.global_plugins.wants_request_body();
        ResponseBody::want(&mut ctx.response_body, route.plugins.response_body_limit());
    }
}

/// Answers before the request body was read (a 404, a plugin's refusal),
/// reading and discarding a small body so the connection can stay open, or
/// closing it.
async fn reply_before_body(
    w: &Worker,
    c: &mut ClientConn,
    head: &RequestHead,
    ctx: &mut RequestCtx,
    answer: Reply<'_>,
    keep_alive: bool,
) -> bool {
    let keep = keep_alive && !head.expect_continue && discard_body(w, c, head).await;
    c.reply(ctx, answer, keep, w.lane.gateway.timeouts.send)
        .await
}

/// Most body bytes read just to keep a connection after an early reply.
const DISCARD_LIMIT: u64 = 1 << 20;

/// Reads and drops the request body; false when it is too large, malformed
/// or the client stalls (then the connection is closed instead).
pub async fn discard_body(w: &Worker, c: &mut ClientConn, head: &RequestHead) -> bool {
    let timeout = w.lane.gateway.timeouts.body;
    match head.framing {
        BodyFraming::None => true,
        BodyFraming::Length(n) if n > DISCARD_LIMIT => false,
        BodyFraming::Length(n) => {
            let mut left = n as usize;
            loop {
                let take = left.min(c.rbuf.len());
                let _ = c.rbuf.split_to(take);
                left -= take;
                if left == 0 {
                    return true;
                }
                if !matches!(c.read_more(timeout).await, Ok(n) if n > 0) {
                    return false;
                }
            }
        }
        BodyFraming::Chunked => {
            let mut dec = ChunkedDecoder::new();
            let mut seen = 0usize;
            loop {
                match dec.scan(&c.rbuf) {
                    Ok(Some(end)) => {
                        let _ = c.rbuf.split_to(end);
                        return true;
                    }
                    Ok(None) => {
                        seen += c.rbuf.len();
                        c.rbuf.clear();
                        if seen as u64 > DISCARD_LIMIT {
                            return false;
                        }
                    }
                    Err(_) => return false,
                }
                if !matches!(c.read_more(timeout).await, Ok(n) if n > 0) {
                    return false;
                }
            }
        }
    }
}
