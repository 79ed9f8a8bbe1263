//! One worker's unlabelled request counters ([`WorkerStats`], shared with
//! the scrape thread through an `Arc`): totals, status classes, LLM
//! totals, the TTFT histogram of `ringway_llm_ttft_seconds`, client
//! connections, and the handle to the worker's labelled series. Written
//! only by the owning worker (a plain load and store), read by the
//! metrics endpoint.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::counters::render_counters;
use super::series::bump;
use super::table::Labelled;

/// TTFT histogram bucket bounds, in milliseconds.
pub const TTFT_BUCKETS_MS: [u64; 12] = [
    5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 30_000,
];

/// One worker's request counters. Written only by its worker thread (a
/// plain load and store, no locked instruction, no shared cache line with
/// other workers' counters); read by the metrics endpoint.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct WorkerStats {
    requests: AtomicU64,
    /// By status class: no status (connection ended first), 1xx … 5xx.
    by_class: [AtomicU64; 6],
    ai_requests: AtomicU64,
    ai_streams: AtomicU64,
    ai_attempts: AtomicU64,
    prompt_tokens: AtomicU64,
    completion_tokens: AtomicU64,
    /// Cumulative-style counts per bucket (the last is +Inf), and the sum.
    ttft_buckets: [AtomicU64; TTFT_BUCKETS_MS.len() + 1],
    ttft_sum_us: AtomicU64,
    /// Client connections accepted, and open now.
    accepted: AtomicU64,
    open: AtomicU64,
    /// The labelled series this worker publishes ([`super::table`]).
    pub labelled: Arc<Labelled>,
}

impl WorkerStats {
    /// A client connection was accepted (the owning worker only).
    #[inline]
    pub fn connection_opened(&self) {
        bump(&self.accepted, 1);
        bump(&self.open, 1);
    }

    /// A client connection closed (the owning worker only).
    #[inline]
    pub fn connection_closed(&self) {
        bump(&self.open, u64::MAX); // wrapping: minus one
    }

    /// Counts one finished request (called by the owning worker only).
    pub fn record(&self, ctx: &crate::exchange::ctx::RequestCtx) {
        use crate::exchange::ctx::RequestType;
        bump(&self.requests, 1);
        let class = (ctx.status / 100).min(5) as usize;
        bump(&self.by_class[class], 1);
        if ctx.request_type == RequestType::TraditionalHttp {
            return;
        }
        bump(&self.ai_requests, 1);
        if ctx.request_type == RequestType::AiStream {
            bump(&self.ai_streams, 1);
        }
        bump(&self.ai_attempts, u64::from(ctx.llm.attempts));
        bump(&self.prompt_tokens, ctx.llm.prompt_tokens);
        bump(&self.completion_tokens, ctx.llm.completion_tokens);
        if let Some(t) = ctx.llm.ttft {
            let ms = t.as_millis() as u64;
            let b = TTFT_BUCKETS_MS
                .iter()
                .position(|&le| ms < le)
                .unwrap_or(TTFT_BUCKETS_MS.len());
            bump(&self.ttft_buckets[b], 1);
            bump(&self.ttft_sum_us, t.as_micros() as u64);
        }
    }
}

/// APISIX's connection gauges, where they map: `active` (open client
/// connections), `accepted` and `handled` (the same here: a connection
/// is handled once accepted), and `apisix_http_requests_total`.
fn render_connections(out: &mut String, workers: &[Arc<WorkerStats>]) {
    use std::fmt::Write;
    let sum = |f: &dyn Fn(&WorkerStats) -> &AtomicU64| -> u64 {
        workers
            .iter()
            .map(|w| f(w).load(Ordering::Relaxed))
            .fold(0, u64::wrapping_add)
    };
    let accepted = sum(&|w| &w.accepted);
    let _ = writeln!(out, "# HELP apisix_nginx_http_current_connections Number of HTTP connections\n# TYPE apisix_nginx_http_current_connections gauge");
    for (state, v) in [
        ("accepted", accepted),
        ("active", sum(&|w| &w.open)),
        ("handled", accepted),
    ] {
        let _ = writeln!(
            out,
            "apisix_nginx_http_current_connections{{state=\"{state}\"}} {v}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP apisix_http_requests_total The total number of client requests since APISIX started\n# TYPE apisix_http_requests_total gauge\napisix_http_requests_total {}",
        sum(&|w| &w.requests)
    );
}

/// Appends the request counters (summed over `workers`), APISIX's
/// labelled families, the process-wide counters and the panics in the
/// Prometheus text format (0.0.4).
pub fn render(out: &mut String, workers: &[Arc<WorkerStats>]) {
    use std::fmt::Write;
    let sum = |f: &dyn Fn(&WorkerStats) -> &AtomicU64| -> u64 {
        workers
            .iter()
            .map(|w| f(w).load(Ordering::Relaxed))
            .fold(0, u64::wrapping_add)
    };
    let mut counter = |name: &str, help: &str, v: u64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
        );
    };
    counter(
        "ringway_http_requests_total",
        "Requests answered (all routes).",
        sum(&|w| &w.requests),
    );
    counter(
        "ringway_ai_requests_total",
        "LLM requests (ai-proxy-multi routes).",
        sum(&|w| &w.ai_requests),
    );
    counter(
        "ringway_ai_stream_requests_total",
        "LLM requests answered as SSE streams.",
        sum(&|w| &w.ai_streams),
    );
    counter(
        "ringway_ai_attempts_total",
        "Upstream attempts for LLM requests (fallbacks included).",
        sum(&|w| &w.ai_attempts),
    );
    counter(
        "ringway_llm_prompt_tokens_total",
        "Prompt tokens reported by providers.",
        sum(&|w| &w.prompt_tokens),
    );
    counter(
        "ringway_llm_completion_tokens_total",
        "Completion tokens reported by providers.",
        sum(&|w| &w.completion_tokens),
    );
    let _ = writeln!(out, "# HELP ringway_http_responses_total Responses by status class.\n# TYPE ringway_http_responses_total counter");
    for (i, class) in ["none", "1xx", "2xx", "3xx", "4xx", "5xx"]
        .iter()
        .enumerate()
    {
        let v = sum(&|w| &w.by_class[i]);
        let _ = writeln!(out, "ringway_http_responses_total{{class=\"{class}\"}} {v}");
    }
    let _ = writeln!(out, "# HELP ringway_llm_ttft_seconds Time to first token of the answering attempt.\n# TYPE ringway_llm_ttft_seconds histogram");
    let mut cumulative = 0;
    for (i, le) in TTFT_BUCKETS_MS.iter().enumerate() {
        cumulative += sum(&|w| &w.ttft_buckets[i]);
        let _ = writeln!(
            out,
            "ringway_llm_ttft_seconds_bucket{{le=\"{}\"}} {cumulative}",
            *le as f64 / 1000.0
        );
    }
    cumulative += sum(&|w| &w.ttft_buckets[TTFT_BUCKETS_MS.len()]);
    let _ = writeln!(
        out,
        "ringway_llm_ttft_seconds_bucket{{le=\"+Inf\"}} {cumulative}"
    );
    let _ = writeln!(
        out,
        "ringway_llm_ttft_seconds_sum {}",
        sum(&|w| &w.ttft_sum_us) as f64 / 1e6
    );
    let _ = writeln!(out, "ringway_llm_ttft_seconds_count {cumulative}");
    render_connections(out, workers);
    super::render::render_labelled(out, workers);
    render_counters(out);
    let _ = writeln!(out, "# HELP ringway_panics_total Panics caught by supervision (the component was restarted, or the one connection closed).\n# TYPE ringway_panics_total counter");
    for (c, v) in crate::supervise::panics() {
        let _ = writeln!(
            out,
            "ringway_panics_total{{component=\"{}\"}} {v}",
            c.name()
        );
    }
}
