//! Writing an SSE answer with scripted timing and mid-stream faults:
//! time to first token before the first token event, inter-token delay
//! between them, a stall or a reset after N token chunks. With no delays
//! the whole stream goes out in one write (the throughput mode).

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::api::{After, Timing};
use crate::config::Faults;
use crate::http::{chunk, sse_head, Conn, Request};
use crate::state::Shared;

/// The events of one answer.
pub struct StreamPlan {
    /// Sent at once, before the first token (role/message_start…).
    pub head: Vec<Vec<u8>>,
    /// One per completion token.
    pub tokens: Vec<Vec<u8>>,
    /// Sent right after the last token (finish, usage, [DONE]…).
    pub tail: Vec<Vec<u8>>,
}

#[allow(clippy::too_many_arguments)]
pub async fn stream(
    sh: &Shared,
    conn: &mut Conn,
    req: &Request,
    faults: &Faults,
    t: &Timing,
    plan: StreamPlan,
    headers: &[(&str, String)],
    prompt: u64,
    n: u32,
) -> After {
    let plan = match faults.json_style {
        Some(style) => {
            let restyle = |events: Vec<Vec<u8>>| {
                events
                    .iter()
                    .map(|e| crate::spacing::restyle_event(e, style))
                    .collect()
            };
            StreamPlan {
                head: restyle(plan.head),
                tokens: restyle(plan.tokens),
                tail: restyle(plan.tail),
            }
        }
        None => plan,
    };
    sh.open_streams.fetch_add(1, Ordering::Relaxed);
    let result = run(sh, conn, req, faults, t, plan, headers).await;
    sh.open_streams.fetch_sub(1, Ordering::Relaxed);
    if matches!(result, After::KeepAlive | After::Close) {
        sh.add_tokens(prompt, u64::from(n));
    }
    result
}

async fn run(
    sh: &Shared,
    conn: &mut Conn,
    req: &Request,
    faults: &Faults,
    t: &Timing,
    plan: StreamPlan,
    headers: &[(&str, String)],
) -> After {
    let mut out = sse_head(req.keep_alive, headers);
    for e in &plan.head {
        chunk(&mut out, e);
    }
    let quiet = t.ttft.is_zero()
        && t.itl.is_empty()
        && faults.stall_ms.is_none()
        && faults.reset_after_chunks.is_none();
    if quiet {
        for e in plan.tokens.iter().chain(plan.tail.iter()) {
            chunk(&mut out, e);
        }
        out.extend_from_slice(b"0\r\n\r\n");
        return finish(conn, out, req).await;
    }
    if conn.write(std::mem::take(&mut out)).await.is_err() {
        return After::Gone;
    }
    let stall_after = faults.stall_after_chunks.unwrap_or(1);
    for (i, e) in plan.tokens.iter().enumerate() {
        let i = i as u32;
        if faults.reset_after_chunks == Some(i) {
            sh.fault_injected();
            return After::Reset;
        }
        if i == stall_after {
            if let Some(ms) = faults.stall_ms {
                sh.fault_injected();
                monoio::time::sleep(Duration::from_millis(ms)).await;
            }
        }
        let delay = if i == 0 {
            t.ttft
        } else {
            t.itl.get(i as usize).copied().unwrap_or_default()
        };
        if !conn.wait_connected(delay).await {
            return After::Gone;
        }
        chunk(&mut out, e);
        if conn.write(std::mem::take(&mut out)).await.is_err() {
            return After::Gone;
        }
    }
    if faults
        .reset_after_chunks
        .is_some_and(|c| c as usize >= plan.tokens.len())
    {
        sh.fault_injected();
        return After::Reset;
    }
    for e in &plan.tail {
        chunk(&mut out, e);
    }
    out.extend_from_slice(b"0\r\n\r\n");
    finish(conn, out, req).await
}

async fn finish(conn: &mut Conn, out: Vec<u8>, req: &Request) -> After {
    if conn.write(out).await.is_err() {
        return After::Gone;
    }
    if req.keep_alive {
        After::KeepAlive
    } else {
        After::Close
    }
}
