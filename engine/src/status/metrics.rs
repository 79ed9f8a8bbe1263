//! The metrics of the configuration's state, rendered per scrape from the
//! current snapshot: instance health, cooldowns, fallbacks and skips by
//! reason, logger sinks.

use std::sync::atomic::Ordering;

use crate::health::{Cooldown, FallbackReason, SkipReason};
use crate::observe::metrics::escape;
use crate::snapshot::Snapshot;

/// Appends instance and logger metrics in the Prometheus text format.
pub fn render_state(out: &mut String, snap: &Snapshot) {
    use std::fmt::Write;
    // Instance state, from the shared atomics every worker reads.
    let now = crate::timer::now_ms();
    let _ = writeln!(out, "# HELP ringway_instance_healthy Active health-check verdict (1 healthy).\n# TYPE ringway_instance_healthy gauge");
    let mut inst: Vec<_> = snap.shared.instances().collect();
    inst.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    for (owner, name, s) in &inst {
        let _ = writeln!(
            out,
            "ringway_instance_healthy{{owner=\"{}\",instance=\"{}\"}} {}",
            escape(owner),
            escape(name),
            u8::from(s.is_healthy())
        );
    }
    let _ = writeln!(out, "# HELP ringway_instance_cooling_down 1 while an instance is cooling down (Retry-After or passive ejection).\n# TYPE ringway_instance_cooling_down gauge");
    for (owner, name, s) in &inst {
        let _ = writeln!(
            out,
            "ringway_instance_cooling_down{{owner=\"{}\",instance=\"{}\"}} {}",
            escape(owner),
            escape(name),
            u8::from(s.cooling(now).is_some())
        );
    }
    let _ = writeln!(out, "# HELP ringway_ai_fallbacks_total Attempts given up for the next instance (fallback_strategy), by the instance given up and why.\n# TYPE ringway_ai_fallbacks_total counter");
    for (owner, name, s) in &inst {
        for why in FallbackReason::ALL {
            let _ = writeln!(
                out,
                "ringway_ai_fallbacks_total{{owner=\"{}\",instance=\"{}\",reason=\"{}\"}} {}",
                escape(owner),
                escape(name),
                why.as_str(),
                s.events.fallbacks(why)
            );
        }
    }
    let _ = writeln!(out, "# HELP ringway_ai_instances_skipped_total Instances passed over without an attempt, by why.\n# TYPE ringway_ai_instances_skipped_total counter");
    for (owner, name, s) in &inst {
        for why in SkipReason::ALL {
            let _ = writeln!(
                out,
                "ringway_ai_instances_skipped_total{{owner=\"{}\",instance=\"{}\",reason=\"{}\"}} {}",
                escape(owner),
                escape(name),
                why.as_str(),
                s.events.skips(why)
            );
        }
    }
    let _ = writeln!(out, "# HELP ringway_instance_cooldowns_total Cooldowns started (a 429's Retry-After, or passive ejection), by reason.\n# TYPE ringway_instance_cooldowns_total counter");
    for (owner, name, s) in &inst {
        for why in Cooldown::ALL {
            let _ = writeln!(
                out,
                "ringway_instance_cooldowns_total{{owner=\"{}\",instance=\"{}\",reason=\"{}\"}} {}",
                escape(owner),
                escape(name),
                why.as_str(),
                s.events.cooldowns(why)
            );
        }
    }
    // Logger plugins: entries sent, failed after retries, dropped (queue full).
    let _ = writeln!(out, "# HELP ringway_logger_entries_total Logger plugin entries by outcome.\n# TYPE ringway_logger_entries_total counter");
    let mut sinks: Vec<_> = snap.shared.loggers().collect();
    sinks.sort_by(|a, b| a.name().cmp(b.name()));
    for s in &sinks {
        for (outcome, v) in [
            ("sent", &s.stats.sent),
            ("failed", &s.stats.failed),
            ("dropped", &s.stats.dropped),
        ] {
            let _ = writeln!(
                out,
                "ringway_logger_entries_total{{logger=\"{}\",outcome=\"{outcome}\"}} {}",
                escape(s.name()),
                v.load(Ordering::Relaxed)
            );
        }
    }
    // The opentelemetry exporter's spans (process-wide).
    let spans = &crate::loggers::otlp::SPAN_STATS;
    for (name, help, v) in [
        ("ringway_trace_spans_exported_total", "Spans the collector accepted.", &spans.sent),
        ("ringway_trace_spans_failed_total", "Spans given up on after the collector failed (down, timed out, or not 2xx) and retries.", &spans.failed),
        ("ringway_trace_spans_dropped_total", "Spans dropped because the exporter's queue was full (never waiting on a worker).", &spans.dropped),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}", v.load(Ordering::Relaxed));
    }
    let _ = writeln!(out, "# HELP ringway_logger_pending_entries Logger plugin entries handed over and not yet sent (bounded by max_pending_entries).\n# TYPE ringway_logger_pending_entries gauge");
    for s in &sinks {
        let _ = writeln!(
            out,
            "ringway_logger_pending_entries{{logger=\"{}\"}} {}",
            escape(s.name()),
            s.stats.pending.load(Ordering::Relaxed)
        );
    }
}
