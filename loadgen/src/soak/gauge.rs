//! What the soak reads off ringway besides its answers: resident memory,
//! open file descriptors (sockets by peer) and threads (by name) from
//! `/proc`, sampled over the run and read once steady before and after
//! it; and the gateway's own metrics
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

/// A process's open files by kind: sockets by the peer they talk to
/// (named by `ports`: a peer's port, or for accepted connections and
/// listeners the local port), the rest by type (`eventfd`, `io_uring`,
/// `pipe`, `file`, …). What tells a leaked upstream connection from a
/// kept logger connection.
pub fn fd_kinds(pid: u32, ports: &BTreeMap<u16, String>) -> BTreeMap<String, u64> {
    // inode -> (local port, remote port, listening)
    let mut sockets: BTreeMap<u64, (u16, u16, bool)> = BTreeMap::new();
    for table in ["tcp", "tcp6"] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let port = |a: &str| {
                a.rsplit_once(':')
                    .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
                    .unwrap_or(0)
            };
            if let (Some(l), Some(r), Some(st), Some(inode)) =
                (f.get(1), f.get(2), f.get(3), f.get(9))
            {
                if let Ok(inode) = inode.parse() {
                    sockets.insert(inode, (port(l), port(r), *st == "0A"));
                }
            }
        }
    }
    let mut out = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return out;
    };
    for e in dir.flatten() {
        let target = std::fs::read_link(e.path())
            .map(|t| t.to_string_lossy().into_owned())
            .unwrap_or_default();
        let kind = if let Some(inode) = target
            .strip_prefix("socket:[")
            .and_then(|t| t.strip_suffix(']'))
            .and_then(|t| t.parse::<u64>().ok())
        {
            match sockets.get(&inode) {
                Some((local, _, true)) => {
                    format!("listener {}", ports.get(local).map_or("?", String::as_str))
                }
                Some((local, remote, false)) => match (ports.get(remote), ports.get(local)) {
                    (Some(peer), _) => format!("to {peer}"),
                    (None, Some(me)) => format!("from a client of {me}"),
                    (None, None) => "socket, other".into(),
                },
                None => "socket, not TCP".into(),
            }
        } else if let Some(t) = target.strip_prefix("anon_inode:") {
            t.trim_matches(|c| c == '[' || c == ']').to_owned()
        } else if target.starts_with("pipe:") {
            "pipe".into()
        } else {
            "file".into()
        };
        *out.entry(kind).or_default() += 1;
    }
    out
}

/// A process's threads by name.
pub fn thread_names(pid: u32) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in dir.flatten() {
            if let Ok(name) = std::fs::read_to_string(t.path().join("comm")) {
                *out.entry(name.trim().to_owned()).or_default() += 1;
            }
        }
    }
    out
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
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let _c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (_s, _) = l.accept().unwrap();
        let kinds = fd_kinds(
            std::process::id(),
            &BTreeMap::from([(port, "me".to_owned())]),
        );
        assert_eq!(kinds.get("listener me"), Some(&1), "{kinds:?}");
        assert_eq!(kinds.get("to me"), Some(&1), "{kinds:?}");
        assert_eq!(kinds.get("from a client of me"), Some(&1), "{kinds:?}");
        let names = thread_names(std::process::id());
        assert_eq!(names.values().sum::<u64>(), threads(std::process::id()));
    }
}
