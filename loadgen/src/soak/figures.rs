//! What the soak observed and the figures reported from it: requests by
//! class, failure samples with the chaos under way, resources, the
//! stretches with errors and the chaos that explains them, counts per ten
//! seconds.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::chaos::Event;
use super::gauge::Resources;
use super::SoakArgs;
use crate::stats::{ErrorClass, Second, Stats};

/// Everything the run saw, for [`super::verdicts::judge`].
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
    pub(super) fn of(s: &Stats) -> Requests {
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
pub(super) fn quarters(timeline: &[Resources]) -> Vec<u64> {
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
pub(super) fn windows(
    per_second: &BTreeMap<u64, Second>,
    events: &[Event],
    slot: f64,
) -> Vec<Window> {
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

/// The failures kept, each with the chaos under way when it happened;
/// lost ones first.
pub(super) fn failure_samples(o: &Observed) -> Vec<FailureSample> {
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
    samples
}

/// Requests by the ten seconds they were sent in.
pub(super) fn ten_second_timeline(all: &Stats) -> Vec<TenSeconds> {
    let mut tens: BTreeMap<u64, Second> = BTreeMap::new();
    for (sec, c) in &all.per_second {
        tens.entry(sec / 10 * 10).or_default().add(c);
    }
    tens.into_iter()
        .map(|(from, counts)| TenSeconds { from, counts })
        .collect()
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
