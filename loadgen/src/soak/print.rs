//! The soak's report printed for people: the verdict table, then the
//! figures.

use std::collections::BTreeMap;

use super::figures::FailureSample;
use super::verdicts::Report;

/// `kib` in MiB, one decimal.
pub(super) fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
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
