//! The metrics of the configuration's state, rendered per scrape from the
//! current snapshot: instance health, cooldowns, fallbacks and skips by
//! reason, logger sinks.

use std::sync::atomic::Ordering;

use crate::health::{Cooldown, FallbackReason, SkipReason};
use crate::observe::metrics::escape;
use crate::snapshot::Snapshot;

/// `ai-rate-limiting`'s local budgets: tokens left in the window and the
/// limit, by the owner of the plugin (`route/<id>`, `consumer/<name>`,
/// `global`) and instance. A route's budgets are listed for its
/// `ai-proxy-multi` instances; a consumer's and the global rules' for the
/// instances they name (a budget for every instance is per route there).
fn render_budgets(out: &mut String, snap: &Snapshot) {
    use std::fmt::Write;
    let mut rows: Vec<(String, &str, u64, u64)> = Vec::new();
    for route in &snap.routes {
        if let (Some(rl), Some((ai, _))) =
            (route.plugins.ai_rate_limiting(), route.plugins.ai_proxy())
        {
            let names = ai.instances.iter().map(|i| &*i.name);
            for (inst, limit, left) in rl.local_budgets(names) {
                rows.push((format!("route/{}", route.id), inst, limit, left));
            }
        }
    }
    for c in snap.consumers.iter() {
        if let Some(rl) = c.plugins.ai_rate_limiting() {
            for (inst, limit, left) in rl.local_budgets(rl.instance_names()) {
                rows.push((format!("consumer/{}", c.username), inst, limit, left));
            }
        }
    }
    if let Some(rl) = snap.global_plugins.ai_rate_limiting() {
        for (inst, limit, left) in rl.local_budgets(rl.instance_names()) {
            rows.push(("global".to_string(), inst, limit, left));
        }
    }
    rows.sort();
    let _ = writeln!(out, "# HELP ringway_ai_budget_remaining_tokens Tokens left in a local ai-rate-limiting budget's window.\n# TYPE ringway_ai_budget_remaining_tokens gauge");
    for (owner, inst, _, left) in &rows {
        let _ = writeln!(
            out,
            "ringway_ai_budget_remaining_tokens{{owner=\"{}\",instance=\"{}\"}} {left}",
            escape(owner),
            escape(inst)
        );
    }
    let _ = writeln!(out, "# HELP ringway_ai_budget_limit_tokens A local ai-rate-limiting budget's tokens per window.\n# TYPE ringway_ai_budget_limit_tokens gauge");
    for (owner, inst, limit, _) in &rows {
        let _ = writeln!(
            out,
            "ringway_ai_budget_limit_tokens{{owner=\"{}\",instance=\"{}\"}} {limit}",
            escape(owner),
            escape(inst)
        );
    }
}

/// Appends instance, budget and logger metrics in the Prometheus text
/// format.
pub fn render_state(out: &mut String, snap: &Snapshot) {
    use std::fmt::Write;
    render_budgets(out, snap);
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
