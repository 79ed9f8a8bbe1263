//! Memory per idle open SSE stream: streams held open through a fresh
//! gateway, waiting for a first token that never comes.

use std::time::Duration;

use serde_json::{json, Value};

use std::path::Path;

use mock_llm::MockServer;

use super::{ringway_config, workload};
use crate::procs;

/// Most idle streams the open-file limit allows: ringway holds three
/// descriptors per stream (client, its disconnect watch, upstream).
pub(crate) fn fd_cap(nofile: u64) -> usize {
    ((nofile.saturating_sub(512) / 3) as usize).max(1)
}

/// The route the idle streams take: `ai-proxy-multi` (the stream job), or
/// a plain upstream route to the same mock instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum IdleRoute {
    Ai,
    Plain,
}

impl IdleRoute {
    fn path(self) -> &'static str {
        match self {
            IdleRoute::Ai => "/idle/v1/chat/completions",
            IdleRoute::Plain => "/idle-plain/v1/chat/completions",
        }
    }
}

/// Opens `n` streams that wait for a first token that never comes (the
/// mock's `slow` instance) and reads ringway's RSS before and during.
/// A fresh gateway serves them: in the one that ran the load sections, the
/// allocator's retained free pages would absorb the streams without RSS
/// growing, and the figure would come out too low.
pub(super) fn idle_streams(
    mock: &MockServer,
    ringway: &Path,
    gateway_cpu: Option<usize>,
    n: usize,
    route: IdleRoute,
) -> Result<Value, String> {
    use std::io::Write;
    let (gateway, addr) = procs::start_ringway(ringway, &ringway_config(mock, 2), 1, gateway_cpu)?;
    let pid = gateway.pid();
    let body = workload(true, 16).body();
    let req = format!(
        "POST {} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        route.path(),
        body.len()
    );
    let slow = mock.instance("slow");
    let open_now = || slow.stats().open_streams as usize;
    // In batches, each established end to end before the next: 10,000
    // connects at once overflow listen backlogs, and SYN retries would leave
    // part of the streams unopened when RSS is read. The first batch is a
    // small warm-up, so per-thread allocator and ring setup is in "before".
    const BATCH: usize = 250;
    const WARM: usize = 50;
    let base = open_now();
    let mut socks = Vec::with_capacity(n + WARM);
    let mut before = None;
    while socks.len() < n + WARM {
        let batch = if socks.is_empty() {
            WARM
        } else {
            BATCH.min(n + WARM - socks.len())
        };
        for _ in 0..batch {
            let mut s = std::net::TcpStream::connect(addr)
                .map_err(|e| format!("idle stream connect: {e}"))?;
            s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
            socks.push(s);
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while open_now() < base + socks.len() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        if before.is_none() {
            std::thread::sleep(Duration::from_millis(200));
            before = Some((procs::rss_kib(pid), open_now()));
        }
    }
    let (before, base) = before.unwrap_or((0, base));
    let open = open_now().saturating_sub(base);
    std::thread::sleep(Duration::from_millis(200));
    let during = procs::rss_kib(pid);
    drop(socks);
    drop(gateway);
    // The next measurement counts from a mock with these streams gone.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while open_now() > base && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    // Per stream that reached the upstream after the warm-up (all of them,
    // unless the deadline above ran out).
    let per = (during.saturating_sub(before)) as f64 / open.max(1) as f64;
    Ok(
        json!({"route": format!("{route:?}").to_lowercase(), "streams": n, "open_upstream_streams": open, "rss_before_kib": before,
              "rss_during_kib": during, "kib_per_stream": per, "fresh_gateway": true}),
    )
}
