//! The soak's verdicts, from what the run observed ([`super::figures`]),
//! and the report they make (printed by [`super::print`], written whole
//! with `--json`).
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

use serde::Serialize;

use super::chaos::{Event, INFRA_EVENTS, INSTANCE_EVENTS};
use super::figures::{
    failure_samples, quarters, ten_second_timeline, windows, FailureSample, Observed, Requests,
    ResourceFigures, TenSeconds, Window,
};
use super::gauge::{self, Resources};
use super::print::mib;
use crate::fallback::Verdict;
use crate::stats::{ErrorClass, Stats};

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
/// RSS allowed above the baseline (see docs/reliability.md, "Soak"
/// section: the allocator keeps freed pages, and the loggers' backlogs
/// and the connections of the busiest moment were memory once).
pub const RSS_SLACK_KIB: u64 = 64 * 1024;

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

fn verdict(area: &str, check: impl Into<String>, observed: String, ok: bool) -> Verdict {
    Verdict {
        phase: area.into(),
        check: check.into(),
        observed,
        ok,
    }
}

/// Every request answered, none lost, streams ended, error bodies JSON.
fn request_verdicts(o: &Observed, all: &Stats, stream: &Requests) -> Vec<Verdict> {
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

    v
}

/// Every chaos event ran and came back; every Admin API change was
/// accepted. Also how many changes were refused.
fn chaos_verdicts(o: &Observed, chaos: &BTreeMap<String, u64>) -> (Vec<Verdict>, u64) {
    let mut v = Vec::new();
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

    (v, refused.len() as u64)
}

/// Open files, threads and RSS back near the idle baseline.
fn resource_verdicts(o: &Observed) -> Vec<Verdict> {
    let mut v = Vec::new();
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

    v
}

/// No panic counted or printed; the process ran throughout.
fn panic_verdicts(o: &Observed, panics: &BTreeMap<String, u64>, lines: &[String]) -> Vec<Verdict> {
    let mut v = Vec::new();
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

    v
}

/// The gateway, its loggers and Redis work normally after the soak.
fn after_verdicts(o: &Observed) -> Vec<Verdict> {
    let mut v = Vec::new();
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

    v
}

/// The verdicts and figures of a run.
pub fn judge(o: Observed) -> Report {
    let (json, stream) = (Requests::of(&o.json), Requests::of(&o.stream));
    let mut all = o.json.clone();
    all.merge(&o.stream);
    let mut chaos: BTreeMap<String, u64> = BTreeMap::new();
    for e in &o.events {
        *chaos.entry(e.kind.clone()).or_default() += 1;
    }
    let panics = gauge::panics(&o.metrics);
    let lines = gauge::panic_lines(&o.stderr);
    let mut v = request_verdicts(&o, &all, &stream);
    let (chaos_v, refused) = chaos_verdicts(&o, &chaos);
    v.extend(chaos_v);
    v.extend(resource_verdicts(&o));
    v.extend(panic_verdicts(&o, &panics, &lines));
    v.extend(after_verdicts(&o));
    let (b, a) = (o.baseline, o.after);
    let peak = o.timeline.iter().fold(b, |m, r| Resources {
        at: None,
        rss_kib: m.rss_kib.max(r.rss_kib),
        fds: m.fds.max(r.fds),
        threads: m.threads.max(r.threads),
    });
    let error_windows = windows(&all.per_second, &o.events, o.slot.as_secs_f64());
    let stderr_lines: Vec<&str> = o.stderr.lines().collect();
    let stderr_tail = stderr_lines[stderr_lines.len().saturating_sub(40)..]
        .iter()
        .map(|l| (*l).to_owned())
        .collect();
    let samples = failure_samples(&o);
    let timeline = ten_second_timeline(&all);
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
        admin_changes_refused: refused,
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
