//! The soak's verdicts and figures, from what the run observed; the
//! tables printed for people and the JSON written with `--json`.
//!
//! | area | verdict |
//! |---|---|
//! | requests | every request answered (`ok`, a well-formed error status, or a stream ended by an error event), 0 lost |
//! | streams | every stream ended with its end marker or an SSE `error` event |
//! | errors | every error status carries a JSON object body |
//! | chaos | every chaos event ran, and every restart came back |
//! | admin | every Admin API change accepted |
//! | resources | open files and threads back to the idle baseline (small slack), RSS within a bound of it |
//! | panics | `ringway_panics_total` zero for every component, no "panicked" in stderr, the process ran throughout |
//! | after | the gateway answers a JSON and a streamed request normally, its loggers deliver again, Redis is in use again |

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::chaos::{Event, INFRA_EVENTS, INSTANCE_EVENTS};
use super::gauge::{self, Resources};
use super::SoakArgs;
use crate::fallback::Verdict;
use crate::stats::{ErrorClass, Second, Stats};

/// Open files allowed above the idle baseline after the run. The
/// baseline is taken before any chaos, with no pooled upstream
/// connection; after it, the Redis probe thread (started at the first
/// Redis outage, kept for good) holds its runtime's epoll and eventfd
/// (2), and ringway's Redis pools may hold a few more idle connections
/// than at the baseline (idle ones are replaced at their next use, not
/// closed at `redis_keepalive_timeout`, so their number follows the
/// busiest moment: 2 or 3 more in the runs of `results/soak.md`).
pub const FD_SLACK: u64 = 6;
/// Threads allowed above the baseline: the Redis probe thread (see
/// [`FD_SLACK`]), and one spare.
pub const THREAD_SLACK: u64 = 2;
/// RSS allowed above the baseline (see the README's "Reliability"
/// section: the allocator keeps freed pages, and the loggers' backlogs
/// and the connections of the busiest moment were memory once).
pub const RSS_SLACK_KIB: u64 = 64 * 1024;

/// Everything the run saw, for [`judge`].
pub struct Observed {
    pub args: SoakArgs,
    pub load_secs: f64,
    pub slot: Duration,
    pub json: Stats,
    pub stream: Stats,
    pub log_start: Instant,
    pub events: Vec<Event>,
    pub baseline: Resources,
    pub after: Resources,
    /// Open files by kind, at the baseline and after.
    pub fds_by_kind: (BTreeMap<String, u64>, BTreeMap<String, u64>),
    /// Threads by name, at the baseline and after.
    pub threads_by_name: (BTreeMap<String, u64>, BTreeMap<String, u64>),
    pub settled_in: Duration,
    pub timeline: Vec<Resources>,
    /// How ringway exited during the run, if it did.
    pub exited: Option<String>,
    pub panics_before: BTreeMap<String, u64>,
    /// The metrics text after the run.
    pub metrics: String,
    pub stderr: String,
    pub after_probe: [Result<(u16, String), String>; 2],
    pub delivered: Result<(), String>,
    /// How long after the run's end Redis held keys again, and how many.
    pub redis_in_use: Result<(Duration, u64), String>,
    /// Log sink: batches, entries, malformed posts.
    pub sink_entries: (u64, u64, u64),
    pub kafka: bool,
    pub stderr_path: Option<PathBuf>,
}

/// Requests of one kind (JSON or streams).
#[derive(Debug, Clone, Serialize)]
pub struct Requests {
    pub total: u64,
    pub ok: u64,
    pub answered: u64,
    pub lost: u64,
    pub errors: BTreeMap<ErrorClass, u64>,
    pub statuses: BTreeMap<u16, u64>,
    pub instances: BTreeMap<String, u64>,
    /// Answers by upstream attempts (`X-Ringway-Attempts`).
    pub attempts: BTreeMap<u32, u64>,
    /// Streams ended by an error event, by its text.
    pub error_events: BTreeMap<String, u64>,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub latency_max_ms: f64,
    /// How long error answers (statuses, stream error events) took.
    pub error_latency_p99_ms: f64,
    pub error_latency_max_ms: f64,
}

impl Requests {
    fn of(s: &Stats) -> Requests {
        let at = |h: &hdrhistogram::Histogram<u64>, q: f64| {
            if h.is_empty() {
                0.0
            } else {
                h.value_at_quantile(q) as f64 / 1000.0
            }
        };
        let ms = |q: f64| at(&s.latency, q);
        Requests {
            total: s.total(),
            ok: s.ok,
            answered: s.total() - s.lost(),
            lost: s.lost(),
            errors: s.errors.clone(),
            statuses: s.statuses.clone(),
            instances: s.instances.clone(),
            attempts: s.attempts.clone(),
            error_events: s.error_events.clone(),
            latency_p50_ms: ms(0.5),
            latency_p99_ms: ms(0.99),
            latency_max_ms: ms(1.0),
            error_latency_p99_ms: at(&s.error_latency, 0.99),
            error_latency_max_ms: at(&s.error_latency, 1.0),
        }
    }

    /// Answers that took more than one attempt: fallbacks.
    pub fn fallbacks(&self) -> u64 {
        self.attempts
            .iter()
            .filter(|(n, _)| **n > 1)
            .map(|(_, c)| c)
            .sum()
    }
}

/// A failed request, for finding out what happened.
#[derive(Debug, Clone, Serialize)]
pub struct FailureSample {
    pub kind: &'static str,
    /// Seconds since the load started.
    pub at: f64,
    pub class: ErrorClass,
    pub status: u16,
    pub instance: Option<String>,
    pub detail: String,
    /// The chaos events under way when it was sent (started within a slot
    /// before).
    pub during: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ResourceFigures {
    pub baseline: Resources,
    pub peak: Resources,
    pub after: Resources,
    /// RSS sampled at a quarter, half, three quarters and the end of the
    /// load, KiB: growth after the first quarter would be a leak.
    pub rss_quarters_kib: Vec<u64>,
    /// Open files by kind (sockets by peer), at the baseline and after.
    pub fds_baseline_by_kind: BTreeMap<String, u64>,
    pub fds_after_by_kind: BTreeMap<String, u64>,
    pub threads_baseline_by_name: BTreeMap<String, u64>,
    pub threads_after_by_name: BTreeMap<String, u64>,
    pub settle_secs: f64,
    pub timeline: Vec<Resources>,
}

/// A stretch of seconds in which requests were not all ok, and the chaos
/// under way then.
#[derive(Debug, Clone, Serialize)]
pub struct Window {
    /// Seconds since the load started, first and last.
    pub from: u64,
    pub to: u64,
    pub ok: u64,
    pub errors: u64,
    pub lost: u64,
    /// Chaos events that started within a slot before it, or in it.
    pub during: Vec<String>,
}

/// Ten seconds of the run.
#[derive(Debug, Clone, Serialize)]
pub struct TenSeconds {
    pub from: u64,
    #[serde(flatten)]
    pub counts: Second,
}

/// RSS of the samples nearest a quarter, half, three quarters and the end.
fn quarters(timeline: &[Resources]) -> Vec<u64> {
    if timeline.is_empty() {
        return Vec::new();
    }
    let n = timeline.len();
    [n / 4, n / 2, 3 * n / 4, n - 1]
        .iter()
        .map(|&i| timeline[i.min(n - 1)].rss_kib)
        .collect()
}

/// Windows of seconds with errors (gaps of a second or less merged).
fn windows(per_second: &BTreeMap<u64, Second>, events: &[Event], slot: f64) -> Vec<Window> {
    let mut out: Vec<Window> = Vec::new();
    for (&sec, c) in per_second {
        if c.errors + c.lost == 0 {
            continue;
        }
        match out.last_mut() {
            Some(w) if sec <= w.to + 2 => {
                // Seconds in between with only ok answers count too.
                for gap in w.to + 1..sec {
                    if let Some(g) = per_second.get(&gap) {
                        w.ok += g.ok;
                    }
                }
                w.to = sec;
                w.ok += c.ok;
                w.errors += c.errors;
                w.lost += c.lost;
            }
            _ => out.push(Window {
                from: sec,
                to: sec,
                ok: c.ok,
                errors: c.errors,
                lost: c.lost,
                during: Vec::new(),
            }),
        }
    }
    for w in &mut out {
        w.during = events
            .iter()
            .filter(|e| {
                e.kind != "admin change"
                    && !e.kind.ends_with("restarted")
                    && !e.kind.ends_with(" up")
                    && e.at <= (w.to + 1) as f64
                    && e.at + slot >= w.from as f64
            })
            .map(|e| format!("{} ({:.0}s)", e.kind, e.at))
            .collect();
    }
    out
}

/// What a soak found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub ok: bool,
    pub secs: f64,
    pub concurrency: usize,
    pub workers: usize,
    pub kafka: bool,
    pub chaos_slot_secs: f64,
    pub verdicts: Vec<Verdict>,
    pub json: Requests,
    pub stream: Requests,
    /// Chaos events executed, by kind (Admin API changes included).
    pub chaos: BTreeMap<String, u64>,
    pub admin_changes_refused: u64,
    pub resources: ResourceFigures,
    pub panics: BTreeMap<String, u64>,
    pub stderr_panic_lines: Vec<String>,
    /// Non-zero `ringway_*` series after the run.
    pub counters: BTreeMap<String, f64>,
    pub log_sink: BTreeMap<&'static str, u64>,
    pub redis_keys_at_end: u64,
    /// Requests it took after the run until Redis held keys, seconds.
    pub redis_in_use_after_secs: Option<f64>,
    /// Failed requests (up to 20 of each class and kind).
    pub samples: Vec<FailureSample>,
    /// Stretches with answers other than ok, and the chaos then.
    pub error_windows: Vec<Window>,
    /// Requests by ten seconds of the run (JSON and streams together).
    pub timeline: Vec<TenSeconds>,
    /// Chaos events in order (Admin API changes only when refused).
    pub events: Vec<Event>,
    /// ringway's stderr (in its temporary directory, gone after the run).
    pub stderr_tail: Vec<String>,
}

/// `ringway_logger_entries_total{logger=…,outcome="sent"}` by logger.
pub fn logger_sent(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| l.strip_prefix("ringway_logger_entries_total{logger=\""))
        .filter_map(|l| {
            let (logger, rest) = l.split_once("\",outcome=\"sent\"} ")?;
            Some((logger.to_owned(), rest.trim().parse().ok()?))
        })
        .collect()
}

fn verdict(area: &str, check: impl Into<String>, observed: String, ok: bool) -> Verdict {
    Verdict {
        phase: area.into(),
        check: check.into(),
        observed,
        ok,
    }
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// The verdicts and figures of a run.
pub fn judge(o: Observed) -> Report {
    let (json, stream) = (Requests::of(&o.json), Requests::of(&o.stream));
    let mut all = o.json.clone();
    all.merge(&o.stream);
    let total = all.total();
    let lost = all.lost();
    let mut v = Vec::new();
    let class = |c: ErrorClass| all.errors_of(c);
    v.push(verdict(
        "requests",
        "every request answered (ok, fallback, JSON error status, stream error event)",
        format!(
            "{} of {total} answered: {} ok, {} error statuses, {} stream error events",
            total - lost,
            all.ok,
            class(ErrorClass::Status),
            class(ErrorClass::ErrorEvent)
        ),
        total > 0 && lost == 0,
    ));
    let lost_by: BTreeMap<_, _> = all.errors.iter().filter(|(c, _)| !c.answered()).collect();
    v.push(verdict(
        "requests",
        "0 lost (connect, timeout, I/O, bad response, truncated, malformed error)",
        format!("{lost} lost {lost_by:?}"),
        lost == 0,
    ));
    let truncated = o.stream.errors_of(ErrorClass::Truncated);
    v.push(verdict(
        "streams",
        "every stream ended with [DONE] or an SSE error event",
        format!(
            "{} streams: {} complete, {} error events, {truncated} truncated",
            stream.total,
            stream.ok,
            o.stream.errors_of(ErrorClass::ErrorEvent)
        ),
        stream.total > 0 && truncated == 0,
    ));
    let malformed = class(ErrorClass::MalformedError);
    v.push(verdict(
        "errors",
        "every error status has a JSON object body",
        format!(
            "{} error statuses, {malformed} malformed",
            class(ErrorClass::Status) + malformed
        ),
        malformed == 0,
    ));

    // Chaos and the Admin API.
    let mut chaos: BTreeMap<String, u64> = BTreeMap::new();
    for e in &o.events {
        *chaos.entry(e.kind.clone()).or_default() += 1;
    }
    let expected: Vec<&str> = INSTANCE_EVENTS
        .iter()
        .chain(
            INFRA_EVENTS
                .iter()
                .filter(|k| o.kafka || !k.contains("kafka")),
        )
        .copied()
        .collect();
    let missing: Vec<&str> = expected
        .iter()
        .filter(|k| !chaos.contains_key(**k))
        .copied()
        .collect();
    let failed: Vec<&Event> = o
        .events
        .iter()
        .filter(|e| e.error.is_some() && e.kind != "admin change")
        .collect();
    v.push(verdict(
        "chaos",
        "every chaos event ran, every restart came back",
        format!(
            "{} events of {} kinds; missing {missing:?}; failed {:?}",
            o.events.iter().filter(|e| e.kind != "admin change").count(),
            expected.len(),
            failed
                .iter()
                .map(|e| format!(
                    "{} at {:.0}s: {}",
                    e.kind,
                    e.at,
                    e.error.as_deref().unwrap_or("")
                ))
                .collect::<Vec<_>>()
        ),
        missing.is_empty() && failed.is_empty(),
    ));
    let changes = chaos.get("admin change").copied().unwrap_or(0);
    let refused: Vec<&Event> = o
        .events
        .iter()
        .filter(|e| e.error.is_some() && e.kind == "admin change")
        .collect();
    let due = (o.load_secs / super::ADMIN_EVERY.as_secs_f64()) as u64;
    v.push(verdict(
        "admin",
        "every Admin API route change accepted (one every 3 s)",
        format!(
            "{changes} changes, {} refused{}",
            refused.len(),
            refused
                .first()
                .map(|e| format!(", first: {}", e.error.as_deref().unwrap_or("")))
                .unwrap_or_default()
        ),
        refused.is_empty() && changes + 2 >= due && changes > 0,
    ));

    // Resources.
    let (b, a) = (o.baseline, o.after);
    v.push(verdict(
        "resources",
        format!("open files back to the baseline (+{FD_SLACK})"),
        format!(
            "{} before, {} after (taken {:.1} s after the load)",
            b.fds,
            a.fds,
            o.settled_in.as_secs_f64()
        ),
        a.fds > 0 && a.fds <= b.fds + FD_SLACK,
    ));
    v.push(verdict(
        "resources",
        format!("threads back to the baseline (+{THREAD_SLACK})"),
        format!("{} before, {} after", b.threads, a.threads),
        a.threads > 0 && a.threads <= b.threads + THREAD_SLACK,
    ));
    let rss_bound = b.rss_kib + RSS_SLACK_KIB;
    v.push(verdict(
        "resources",
        format!("RSS within the baseline + {}", mib(RSS_SLACK_KIB)),
        format!(
            "{} before, {} after (bound {})",
            mib(b.rss_kib),
            mib(a.rss_kib),
            mib(rss_bound)
        ),
        a.rss_kib > 0 && a.rss_kib <= rss_bound,
    ));

    // Panics.
    let panics = gauge::panics(&o.metrics);
    let panicked: u64 = panics.values().sum();
    v.push(verdict(
        "panics",
        "ringway_panics_total is 0 for every component",
        if panics.is_empty() {
            "ringway_panics_total not found in the metrics".into()
        } else {
            format!(
                "{panicked} over {} components{}",
                panics.len(),
                if panicked > 0 {
                    format!(": {panics:?}")
                } else {
                    String::new()
                }
            )
        },
        !panics.is_empty() && !o.panics_before.is_empty() && panicked == 0,
    ));
    let lines = gauge::panic_lines(&o.stderr);
    v.push(verdict(
        "panics",
        "no \"panicked\" in ringway's stderr; ringway ran throughout",
        format!(
            "{} panic lines{}; {}",
            lines.len(),
            lines
                .first()
                .map(|l| format!(" (first: {l})"))
                .unwrap_or_default(),
            o.exited
                .as_deref()
                .map_or("still running".to_owned(), |e| format!("exited: {e}"))
        ),
        lines.is_empty() && o.exited.is_none(),
    ));

    // After the run.
    let [j, s] = &o.after_probe;
    let normal =
        matches!(j, Ok((200, _))) && matches!(s, Ok((200, body)) if body.contains("data: [DONE]"));
    let brief = |r: &Result<(u16, String), String>| match r {
        Ok((st, _)) => st.to_string(),
        Err(e) => e.clone(),
    };
    v.push(verdict(
        "after",
        "a JSON and a streamed request answered normally after the soak",
        format!("json {}, stream {}", brief(j), brief(s)),
        normal,
    ));
    v.push(verdict(
        "after",
        "loggers deliver again after their sink came back",
        match &o.delivered {
            Ok(()) => format!("all delivered; log sink got {} entries", o.sink_entries.1),
            Err(e) => e.clone(),
        },
        o.delivered.is_ok(),
    ));
    v.push(verdict(
        "after",
        "Redis in use again after its last restart",
        match &o.redis_in_use {
            Ok((d, keys)) => format!(
                "{keys} keys, {:.2} s after the first request",
                d.as_secs_f64()
            ),
            Err(e) => e.clone(),
        },
        o.redis_in_use.is_ok(),
    ));

    // Figures.
    let peak = o.timeline.iter().fold(b, |m, r| Resources {
        at: None,
        rss_kib: m.rss_kib.max(r.rss_kib),
        fds: m.fds.max(r.fds),
        threads: m.threads.max(r.threads),
    });
    let mut samples = Vec::new();
    for (kind, st) in [("json", &o.json), ("stream", &o.stream)] {
        for x in &st.samples {
            let at = x.at.saturating_duration_since(o.log_start).as_secs_f64();
            let during = o
                .events
                .iter()
                .filter(|e| {
                    e.kind != "admin change" && e.at <= at && at - e.at <= o.slot.as_secs_f64()
                })
                .map(|e| format!("{} ({:.0}s)", e.kind, e.at))
                .collect();
            samples.push(FailureSample {
                kind,
                at,
                class: x.class,
                status: x.status,
                instance: x.instance.clone(),
                detail: x.detail.clone(),
                during,
            });
        }
    }
    samples.sort_by(|a, b| {
        (a.class.answered(), a.at)
            .partial_cmp(&(b.class.answered(), b.at))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let error_windows = windows(&all.per_second, &o.events, o.slot.as_secs_f64());
    let mut tens: BTreeMap<u64, Second> = BTreeMap::new();
    for (sec, c) in &all.per_second {
        tens.entry(sec / 10 * 10).or_default().add(c);
    }
    let timeline = tens
        .into_iter()
        .map(|(from, counts)| TenSeconds { from, counts })
        .collect();
    let stderr_lines: Vec<&str> = o.stderr.lines().collect();
    let stderr_tail = stderr_lines[stderr_lines.len().saturating_sub(40)..]
        .iter()
        .map(|l| (*l).to_owned())
        .collect();
    let _ = &o.stderr_path;
    Report {
        ok: v.iter().all(|x| x.ok),
        secs: o.load_secs,
        concurrency: o.args.concurrency,
        workers: o.args.workers,
        kafka: o.kafka,
        chaos_slot_secs: o.slot.as_secs_f64(),
        verdicts: v,
        json,
        stream,
        chaos,
        admin_changes_refused: refused.len() as u64,
        resources: ResourceFigures {
            baseline: b,
            peak,
            after: a,
            settle_secs: o.settled_in.as_secs_f64(),
            rss_quarters_kib: quarters(&o.timeline),
            fds_baseline_by_kind: o.fds_by_kind.0,
            fds_after_by_kind: o.fds_by_kind.1,
            threads_baseline_by_name: o.threads_by_name.0,
            threads_after_by_name: o.threads_by_name.1,
            timeline: o.timeline,
        },
        panics,
        stderr_panic_lines: lines,
        counters: gauge::counters(&o.metrics),
        log_sink: BTreeMap::from([
            ("batches", o.sink_entries.0),
            ("entries", o.sink_entries.1),
            ("malformed", o.sink_entries.2),
        ]),
        redis_keys_at_end: o.redis_in_use.as_ref().map_or(0, |(_, k)| *k),
        redis_in_use_after_secs: o.redis_in_use.as_ref().ok().map(|(d, _)| d.as_secs_f64()),
        samples,
        error_windows,
        timeline,
        events: o
            .events
            .into_iter()
            .filter(|e| e.kind != "admin change" || e.error.is_some())
            .collect(),
        stderr_tail,
    }
}

/// "kind: before -> after" for the kinds whose counts differ.
fn changes(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> String {
    let kinds: std::collections::BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    let changed: Vec<String> = kinds
        .into_iter()
        .filter_map(|k| {
            let (b, a) = (
                before.get(k).copied().unwrap_or(0),
                after.get(k).copied().unwrap_or(0),
            );
            (a != b).then(|| format!("{k}: {b} -> {a}"))
        })
        .collect();
    if changed.is_empty() {
        "none".to_owned()
    } else {
        changed.join(", ")
    }
}

/// The verdict table and the figures, for people.
#[allow(clippy::print_stdout)]
pub fn print_report(r: &Report) {
    crate::fallback::print_verdicts(&r.verdicts);
    println!();
    println!(
        "figures ({:.0} s, {} + {} connections, {} workers, chaos slot {:.0} s{})",
        r.secs,
        r.concurrency,
        r.concurrency,
        r.workers,
        r.chaos_slot_secs,
        if r.kafka { ", with Kafka" } else { "" }
    );
    println!(
        "{:<8} {:>9} {:>9} {:>9} {:>6} {:>10} {:>9} {:>9} {:>9} {:>10}  errors",
        "kind",
        "requests",
        "ok",
        "answered",
        "lost",
        "fallbacks",
        "ok p50",
        "ok p99",
        "ok max",
        "error max"
    );
    for (kind, q) in [("json", &r.json), ("stream", &r.stream)] {
        println!(
            "{:<8} {:>9} {:>9} {:>9} {:>6} {:>10} {:>7.1}ms {:>7.1}ms {:>7.0}ms {:>8.0}ms  {:?}",
            kind,
            q.total,
            q.ok,
            q.answered,
            q.lost,
            q.fallbacks(),
            q.latency_p50_ms,
            q.latency_p99_ms,
            q.latency_max_ms,
            q.error_latency_max_ms,
            q.errors
        );
    }
    println!(
        "statuses json {:?}, stream {:?}",
        r.json.statuses, r.stream.statuses
    );
    for (text, n) in &r.stream.error_events {
        println!("stream error event x{n}: {text}");
    }
    println!("chaos events {:?}", r.chaos);
    let res = &r.resources;
    println!(
        "{:<10} {:>12} {:>12} {:>12}",
        "", "baseline", "peak", "after"
    );
    println!(
        "{:<10} {:>12} {:>12} {:>12}",
        "RSS",
        mib(res.baseline.rss_kib),
        mib(res.peak.rss_kib),
        mib(res.after.rss_kib)
    );
    println!(
        "{:<10} {:>12} {:>12} {:>12}",
        "open fds", res.baseline.fds, res.peak.fds, res.after.fds
    );
    println!(
        "{:<10} {:>12} {:>12} {:>12}",
        "threads", res.baseline.threads, res.peak.threads, res.after.threads
    );
    println!(
        "open files that changed from the baseline: {}",
        changes(&res.fds_baseline_by_kind, &res.fds_after_by_kind)
    );
    println!(
        "threads that changed from the baseline: {}",
        changes(&res.threads_baseline_by_name, &res.threads_after_by_name)
    );
    println!(
        "RSS at 1/4, 1/2, 3/4 and the end of the load: {}",
        res.rss_quarters_kib
            .iter()
            .map(|k| mib(*k))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "panics {:?}; log sink {:?}; redis keys at the end {}",
        r.panics, r.log_sink, r.redis_keys_at_end
    );
    if !r.error_windows.is_empty() {
        println!("answers other than ok, by stretch of the run:");
        for w in r.error_windows.iter().take(40) {
            println!(
                "  {:>5}-{:<5}s ok {:>6} errors {:>6} lost {:>4}  during {}",
                w.from,
                w.to,
                w.ok,
                w.errors,
                w.lost,
                w.during.join(", ")
            );
        }
    }
    let lost: Vec<&FailureSample> = r.samples.iter().filter(|s| !s.class.answered()).collect();
    if !lost.is_empty() {
        println!("lost requests (first of each class):");
        for s in lost.iter().take(20) {
            println!(
                "  {:>7.1}s {:<6} {:?} status {} instance {} during {:?}: {}",
                s.at,
                s.kind,
                s.class,
                s.status,
                s.instance.as_deref().unwrap_or("-"),
                s.during,
                s.detail
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sec(ok: u64, errors: u64, lost: u64) -> Second {
        Second { ok, errors, lost }
    }

    #[test]
    fn error_seconds_make_windows_with_their_chaos() {
        let per_second = BTreeMap::from([
            (0, sec(10, 0, 0)),
            (5, sec(8, 2, 0)),
            (6, sec(9, 0, 0)),
            (7, sec(1, 5, 0)),
            (20, sec(3, 0, 1)),
        ]);
        let ev = |at: f64, kind: &str| Event {
            at,
            kind: kind.into(),
            detail: String::new(),
            error: None,
        };
        let events = [
            ev(4.5, "429 storm"),
            ev(5.0, "admin change"),
            ev(15.0, "redis restarted"),
            ev(19.0, "reset mid-stream"),
        ];
        let w = windows(&per_second, &events, 3.0);
        assert_eq!(w.len(), 2, "{w:?}");
        assert_eq!((w[0].from, w[0].to), (5, 7));
        assert_eq!((w[0].ok, w[0].errors, w[0].lost), (18, 7, 0));
        assert_eq!(w[0].during, ["429 storm (4s)"]);
        assert_eq!((w[1].from, w[1].lost), (20, 1));
        assert_eq!(w[1].during, ["reset mid-stream (19s)"]);
    }

    #[test]
    fn logger_counts_from_the_metrics() {
        let text = "ringway_logger_entries_total{logger=\"http logger (route/soak)\",outcome=\"sent\"} 12\n\
                    ringway_logger_entries_total{logger=\"http logger (route/soak)\",outcome=\"failed\"} 3\n\
                    ringway_logger_entries_total{logger=\"kafka logger (route/soak)\",outcome=\"sent\"} 0\n";
        let sent = logger_sent(text);
        assert_eq!(sent.len(), 2);
        assert_eq!(sent["http logger (route/soak)"], 12);
    }
}
