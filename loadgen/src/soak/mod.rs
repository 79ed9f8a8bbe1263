//! Chaos soak: ringway (a child process, Admin API and metrics on) in
//! front of three mock-llm instances, a real Redis, a log sink and (when
//! `tansu` is installed) a Kafka broker, under closed-loop JSON and
//! streaming load for the whole run, while the chaos tracks
//! ([`chaos`]) break instances, Redis, the log sink and the broker, and
//! the route is changed through the Admin API every few seconds
//! ([`admin`]). Then the verdicts ([`verdicts`]): every request
//! answered — by a fallback, a well-formed error status, or a stream that
//! ends with data or an SSE `error` event — none lost; open files,
//! threads and resident memory back to the idle baseline; no panic.
//!
//! The run:
//!
//! 1. start the mock, Redis, the log sink, the broker and ringway; create
//!    the route through the Admin API; wait until it answers;
//! 2. warm up (load, no chaos), let idle connections expire, and take the
//!    idle baseline (RSS, open files, threads);
//! 3. load + chaos + Admin API changes for `--secs`, sampling resources;
//! 4. stop the load, undo the chaos, let idle connections expire and
//!    take the "after" look as the baseline was taken;
//! 5. read the metrics (panics) and stderr, check the gateway still
//!    answers normally and its loggers deliver again.

pub mod admin;
pub mod chaos;
pub mod figures;
pub mod gauge;
pub mod kafka;
pub mod print;
pub mod redis;
pub mod sink;
pub mod verdicts;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use mock_llm::{InstanceConfig, MockServer};

use self::admin::{Targets, PATH};
use self::chaos::{EventLog, Infra};
use self::figures::Observed;
use self::verdicts::Report;
use crate::run::{run_together, Mode, RunSpec};
use crate::workload::{Url, Workload};

/// Knobs of a soak.
#[derive(Debug, Clone)]
pub struct SoakArgs {
    /// Load and chaos time.
    pub duration: Duration,
    /// Connections for JSON requests, and as many for streams.
    pub concurrency: usize,
    /// ringway workers.
    pub workers: usize,
    /// Add a Kafka broker and `kafka-logger` when `tansu` is installed.
    pub kafka: bool,
    /// Print chaos events as they happen.
    pub echo: bool,
}

/// The Admin API key the soak's ringway gets.
const ADMIN_KEY: &str = "soak-admin-key";
/// Per-request timeout of the load: an answer later than this is lost.
/// Far above the longest legitimate answer (three attempts of `timeout`
/// each, or a stream cut at `max_stream_duration_ms`).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Warm-up load before the baseline.
const WARMUP: Duration = Duration::from_secs(5);
/// How often the Admin API changes the route.
const ADMIN_EVERY: Duration = Duration::from_secs(3);
/// Idle upstream connections close after `KEEPALIVE_MS`, swept every 5 s.
const POOL_EXPIRY: Duration = Duration::from_secs(8);
/// The longest wait for open files and threads to stop changing, after
/// [`POOL_EXPIRY`] (before the baseline and after the load alike).
pub const SETTLE_WITHIN: Duration = Duration::from_secs(20);

/// Instance-track slot for a run of `d`: about ten slots a run, between
/// 5 and 20 s, so a 2-minute run sees every event once.
fn slot(d: Duration) -> Duration {
    (d / 10).clamp(Duration::from_secs(5), Duration::from_secs(20))
}

fn load(addr: SocketAddr, stream: bool, concurrency: usize, d: Duration) -> RunSpec {
    let url = Url {
        addr,
        host: addr.to_string(),
        path: PATH.to_owned(),
    };
    let w = Workload {
        stream,
        prompt_words: 8,
        ..Default::default()
    };
    RunSpec {
        addr,
        request: w.request(&url),
        mode: Mode::Closed { concurrency },
        duration: d,
        requests: None,
        warmup: Duration::ZERO,
        timeout: REQUEST_TIMEOUT,
        progress: false,
        label: if stream { "stream" } else { "json" }.into(),
    }
}

/// One request on a fresh connection: its status and body.
pub fn ask(addr: SocketAddr, stream: bool) -> Result<(u16, String), String> {
    let url = Url {
        addr,
        host: addr.to_string(),
        path: PATH.to_owned(),
    };
    let w = Workload {
        stream,
        prompt_words: 8,
        headers: vec![("Connection".into(), "close".into())],
        ..Default::default()
    };
    let mut c = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    c.set_read_timeout(Some(REQUEST_TIMEOUT))
        .map_err(|e| e.to_string())?;
    c.write_all(&w.request(&url)).map_err(|e| e.to_string())?;
    let mut got = Vec::new();
    c.read_to_end(&mut got).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&got).into_owned();
    let status = text
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status in {:?}", &text[..text.len().min(100)]))?;
    Ok((status, text))
}

/// Runs the soak; the report holds the verdicts.
pub fn run_soak(ringway: &Path, args: &SoakArgs) -> Result<Report, String> {
    let mut b = MockServer::builder();
    for n in ["a", "b", "c"] {
        b = b.instance(
            InstanceConfig::new(n)
                .tokens(12)
                .ttft(Duration::from_millis(2))
                .itl(Duration::from_millis(2)),
        );
    }
    let m = b.spawn().map_err(|e| format!("mock-llm: {e}"))?;
    let mut redis = redis::Redis::start()?;
    let mut sink = sink::LogSink::start()?;
    let mut broker = match kafka::tansu().filter(|_| args.kafka) {
        Some(bin) => Some(kafka::Broker::start(bin)?),
        None => None,
    };
    let targets = Targets {
        redis_port: redis.port,
        log_sink: sink.url(),
        kafka_port: broker.as_ref().map(|b| b.port),
    };
    // Client connections idle this long are closed: short, so the
    // after-run look is not waiting on them.
    let mut gw = crate::procs::start_ringway_observed(
        ringway,
        ADMIN_KEY,
        "timeouts: {idle: 5}",
        "",
        args.workers,
        None,
    )?;
    let (addr, pid) = (gw.addr, gw.proc.pid());
    let admin = gw.admin.ok_or("no admin listener")?;
    let metrics = gw.metrics.ok_or("no metrics listener")?;
    admin::put_route(admin, ADMIN_KEY, &admin::route(&m, &targets, 0))
        .map_err(|e| format!("creating the route through the Admin API: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match ask(addr, false) {
            Ok((200, _)) => break,
            other if Instant::now() > deadline => {
                return Err(format!("the new route does not answer: {other:?}"))
            }
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }

    // Warm up, let idle connections expire, take the idle baseline.
    let c = args.concurrency;
    let warm = run_together(&[load(addr, false, c, WARMUP), load(addr, true, c, WARMUP)])
        .map_err(|e| e.to_string())?;
    if warm.iter().any(|r| r.stats.ok == 0) {
        return Err(format!(
            "warm-up: nothing answered ({:?})",
            warm.iter().map(|r| &r.stats.errors).collect::<Vec<_>>()
        ));
    }
    std::thread::sleep(POOL_EXPIRY);
    let baseline = gauge::steady(pid, SETTLE_WITHIN);
    let mut ports: BTreeMap<u16, String> = BTreeMap::new();
    for i in m.instances() {
        ports.insert(i.addr().port(), format!("mock-llm {}", i.name()));
    }
    ports.insert(redis.port, "redis".into());
    ports.insert(sink.port(), "log sink".into());
    if let Some(b) = &broker {
        ports.insert(b.port, "kafka broker".into());
    }
    ports.insert(addr.port(), "proxy".into());
    ports.insert(admin.port(), "admin API".into());
    ports.insert(metrics.port(), "metrics".into());
    let baseline_fds = gauge::fd_kinds(pid, &ports);
    let baseline_threads = gauge::thread_names(pid);
    let panics_before = gauge::panics(&gauge::scrape(metrics)?);

    // The soak.
    let stop = AtomicBool::new(false);
    let samples = Mutex::new(Vec::new());
    let log = EventLog::new(Instant::now(), args.echo);
    let slot = slot(args.duration);
    let results = std::thread::scope(|s| {
        s.spawn(|| chaos::instance_track(&m, slot, &stop, &log));
        let infra = Infra {
            redis: &mut redis,
            sink: &mut sink,
            kafka: broker.as_mut(),
        };
        s.spawn(|| chaos::infra_track(infra, slot.mul_f64(1.3), &stop, &log));
        s.spawn(|| admin::admin_track(&m, &targets, admin, ADMIN_KEY, 1, ADMIN_EVERY, &stop, &log));
        s.spawn(|| gauge::sample_track(pid, log.start(), Duration::from_secs(5), &stop, &samples));
        let r = run_together(&[
            load(addr, false, c, args.duration),
            load(addr, true, c, args.duration),
        ]);
        stop.store(true, Ordering::Release);
        r.map(|r| (r, log.start().elapsed().as_secs_f64()))
    })
    .map_err(|e| e.to_string())?;
    let (results, load_secs) = results;

    // After: everything is back (the tracks undo their chaos on stop).
    let exited = gw.proc.exited();
    // Taken as the baseline was: idle connections expired, then steady.
    let t = Instant::now();
    std::thread::sleep(POOL_EXPIRY);
    let after = gauge::steady(pid, SETTLE_WITHIN);
    let settled_in = t.elapsed();
    let after_fds = gauge::fd_kinds(pid, &ports);
    let after_threads = gauge::thread_names(pid);
    let text = gauge::scrape(metrics).unwrap_or_default();
    let sent_before = figures::logger_sent(&text);
    let after_probe = [ask(addr, false), ask(addr, true)];
    let delivered = wait_for_delivery(metrics, &sent_before, &sink);
    let metrics_text = gauge::scrape(metrics).unwrap_or_default();
    let stderr = gw
        .proc
        .stderr_path()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_default();
    let observed = Observed {
        args: args.clone(),
        load_secs,
        slot,
        json: results.first().map(|r| r.stats.clone()).unwrap_or_default(),
        stream: results.get(1).map(|r| r.stats.clone()).unwrap_or_default(),
        log_start: log.start(),
        events: log.events(),
        baseline,
        after,
        fds_by_kind: (baseline_fds, after_fds),
        threads_by_name: (baseline_threads, after_threads),
        settled_in,
        timeline: samples.into_inner().unwrap_or_default(),
        exited: exited.map(|e| e.to_string()),
        panics_before,
        metrics: metrics_text,
        stderr,
        after_probe,
        delivered,
        redis_in_use: redis_in_use(addr, &redis),
        sink_entries: (sink.batches(), sink.entries(), sink.malformed()),
        kafka: broker.is_some(),
    };
    drop(gw);
    Ok(verdicts::judge(observed))
}

/// Asks through ringway until Redis holds its windows again (up to
/// 15 s): how long it took, and the keys.
fn redis_in_use(addr: SocketAddr, redis: &redis::Redis) -> Result<(Duration, u64), String> {
    let t = Instant::now();
    loop {
        let answer = ask(addr, false);
        let keys = redis.dbsize();
        if keys > 0 {
            return Ok((t.elapsed(), keys));
        }
        if t.elapsed() > Duration::from_secs(15) {
            return Err(format!(
                "no key in Redis after 15 s of requests (last answer {:?})",
                answer.map(|(s, _)| s)
            ));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// After the post-run requests: waits (up to 15 s) until every logger
/// sent more entries than `before` says and the log sink got entries since
/// it last came up; the loggers that did not.
fn wait_for_delivery(
    metrics: SocketAddr,
    before: &BTreeMap<String, u64>,
    sink: &sink::LogSink,
) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let now = figures::logger_sent(&gauge::scrape(metrics).unwrap_or_default());
        let mut stuck: Vec<String> = now
            .iter()
            .filter(|(k, v)| before.get(*k).is_some_and(|b| *v <= b))
            .map(|(k, _)| k.clone())
            .collect();
        if now.is_empty() {
            stuck.push("no logger in the metrics".into());
        }
        if sink.entries_since_up() == 0 {
            stuck.push("the log sink got nothing since it came back".into());
        }
        if stuck.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(stuck.join("; "));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_instance_event_fits_a_two_minute_run() {
        let two = Duration::from_secs(120);
        let events = chaos::INSTANCE_EVENTS.len() as u32;
        assert!(slot(two) * events < two);
        assert_eq!(slot(Duration::from_secs(1800)), Duration::from_secs(20));
        assert_eq!(slot(Duration::from_secs(10)), Duration::from_secs(5));
    }
}
