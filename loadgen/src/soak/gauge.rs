//! What the soak reads off ringway besides its answers: resident memory,
//! open file descriptors and threads from `/proc`, sampled over the run
//! and waited on to settle after it; and the gateway's own metrics
//! (`GET /metrics` on its metrics listener): `ringway_panics_total` by
//! component and the other `ringway_*` counters.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::AtomicBool;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::chaos::nap;
use crate::procs::{open_fds, rss_kib, threads};

/// One look at the process.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Resources {
    /// Seconds since the load started (negative: before it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<i64>,
    pub rss_kib: u64,
    pub fds: u64,
    pub threads: u64,
}

impl Resources {
    pub fn of(pid: u32) -> Resources {
        Resources {
            at: None,
            rss_kib: rss_kib(pid),
            fds: open_fds(pid),
            threads: threads(pid),
        }
    }
}

/// Samples `pid` every `every` until `stop`, into `out`.
pub fn sample_track(
    pid: u32,
    start: Instant,
    every: Duration,
    stop: &AtomicBool,
    out: &Mutex<Vec<Resources>>,
) {
    while nap(stop, every) {
        let mut r = Resources::of(pid);
        r.at = Some(start.elapsed().as_secs() as i64);
        if let Ok(mut v) = out.lock() {
            v.push(r);
        }
    }
}

/// Waits (up to `within`) until the process's open files are at most
/// `target` and its thread count at most `threads_target`, and stay so
/// for a second; returns the last look, and how long it took.
pub fn settle(
    pid: u32,
    fds_target: u64,
    threads_target: u64,
    within: Duration,
) -> (Resources, Duration) {
    let t = Instant::now();
    let mut calm_since: Option<Instant> = None;
    loop {
        let r = Resources::of(pid);
        if r.fds <= fds_target && r.threads <= threads_target {
            let since = *calm_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= Duration::from_secs(1) {
                return (r, t.elapsed());
            }
        } else {
            calm_since = None;
        }
        if t.elapsed() >= within {
            return (r, t.elapsed());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Waits until open files and threads stop changing (the same for 3 s,
/// at most `within`): the idle state a baseline is taken in.
pub fn steady(pid: u32, within: Duration) -> Resources {
    let t = Instant::now();
    let mut last = Resources::of(pid);
    let mut same_since = Instant::now();
    while t.elapsed() < within {
        std::thread::sleep(Duration::from_millis(250));
        let r = Resources::of(pid);
        if (r.fds, r.threads) != (last.fds, last.threads) {
            same_since = Instant::now();
        } else if same_since.elapsed() >= Duration::from_secs(3) {
            return r;
        }
        last = r;
    }
    last
}

/// `GET /metrics`: the Prometheus text.
pub fn scrape(metrics: SocketAddr) -> Result<String, String> {
    let mut c = TcpStream::connect(metrics).map_err(|e| format!("metrics: {e}"))?;
    c.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    c.write_all(b"GET /metrics HTTP/1.1\r\nHost: metrics\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("metrics: {e}"))?;
    let mut got = Vec::new();
    c.read_to_end(&mut got)
        .map_err(|e| format!("metrics: {e}"))?;
    let text = String::from_utf8_lossy(&got).into_owned();
    if !text.starts_with("HTTP/1.1 200") {
        return Err(format!("metrics: {}", text.lines().next().unwrap_or("")));
    }
    Ok(text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default())
}

/// `ringway_panics_total` by component (empty when the metric is absent).
pub fn panics(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| l.strip_prefix("ringway_panics_total{component=\""))
        .filter_map(|l| {
            let (component, rest) = l.split_once("\"}")?;
            Some((component.to_owned(), rest.trim().parse().ok()?))
        })
        .collect()
}

/// Every `ringway_*` series that is not a histogram bucket and not zero,
/// by its full name with labels.
pub fn counters(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| l.starts_with("ringway_") && !l.contains("_bucket{"))
        .filter_map(|l| {
            let (name, v) = l.rsplit_once(' ')?;
            let v: f64 = v.parse().ok()?;
            (v != 0.0).then(|| (name.to_owned(), v))
        })
        .collect()
}

/// Lines of ringway's stderr that report a panic.
pub fn panic_lines(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter(|l| l.contains("panicked"))
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_panics_and_counters() {
        let text = "# HELP ringway_panics_total x\n# TYPE ringway_panics_total counter\n\
                    ringway_panics_total{component=\"connection\"} 0\n\
                    ringway_panics_total{component=\"logger sink\"} 2\n\
                    ringway_redis_down_total 3\n\
                    ringway_llm_ttft_seconds_bucket{le=\"5\"} 7\n\
                    ringway_health_probes_total 0\n";
        let p = panics(text);
        assert_eq!(p.len(), 2);
        assert_eq!(p["logger sink"], 2);
        let c = counters(text);
        assert_eq!(c.len(), 2, "{c:?}");
        assert_eq!(c["ringway_redis_down_total"], 3.0);
        assert_eq!(panic_lines("ok\nthread 'w0' panicked at x\n").len(), 1);
    }

    #[test]
    fn reads_this_process() {
        let r = Resources::of(std::process::id());
        assert!(r.rss_kib > 0 && r.fds > 0 && r.threads > 0, "{r:?}");
    }
}
