//! The scrape side of the labelled families: every worker's published
//! series are read (relaxed loads), summed by label set — over workers,
//! and over series a reload or a status code split — and written in
//! APISIX's names and label sets, in the Prometheus text format (0.0.4),
//! families and label sets in a stable order.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::series::{HistogramValues, Series, LATENCY_BUCKETS_MS};
use super::worker::WorkerStats;

/// `http_latency`'s `type` label, by index in [`Series::latency`].
const LATENCY_TYPES: [&str; 3] = ["request", "upstream", "apisix"];

#[derive(Default)]
struct Traffic {
    latency: [HistogramValues; 3],
    ingress: u64,
    egress: u64,
}

/// The label sets every family is keyed by, in a stable order.
#[derive(Default)]
struct Sums {
    status: BTreeMap<String, u64>,
    traffic: BTreeMap<String, Traffic>,
    llm_latency: BTreeMap<String, (HistogramValues, HistogramValues)>,
    tokens: BTreeMap<String, (u64, u64)>,
    active: BTreeMap<String, u64>,
}

fn add(s: &mut Sums, x: &Series) {
    let l = &x.labels;
    let r = &l.route;
    let base = format!("route=\"{}\",route_id=\"{}\"", r.route, r.route_id);
    let matched = format!(
        "matched_uri=\"{}\",matched_host=\"{}\"",
        r.matched_uri, r.matched_host
    );
    let who = format!(
        "service=\"{}\",service_id=\"{}\",consumer=\"{}\",node=\"{}\"",
        r.service, r.service_id, l.consumer, l.node
    );
    let n = x.requests.load(Ordering::Relaxed);
    *s.status
        .entry(format!("code=\"{}\",{base},{matched},{who}", l.code))
        .or_default() += n;
    let t = s.traffic.entry(format!("{base},{who}")).or_default();
    for (sum, h) in t.latency.iter_mut().zip(&x.latency) {
        sum.add(&h.read());
    }
    t.ingress = t.ingress.wrapping_add(x.ingress.load(Ordering::Relaxed));
    t.egress = t.egress.wrapping_add(x.egress.load(Ordering::Relaxed));
    let Some(llm) = &x.llm else { return };
    let tail = format!(
        "request_type=\"{}\",request_llm_model=\"{}\",llm_model=\"{}\"",
        l.request_type.as_str(),
        l.request_model,
        l.model
    );
    let h = s
        .llm_latency
        .entry(format!("{base},{who},{tail}"))
        .or_default();
    h.0.add(&llm.latency.read());
    h.1.add(&llm.ttft.read());
    let t = s
        .tokens
        .entry(format!("{base},{matched},{who},{tail}"))
        .or_default();
    t.0 = t.0.wrapping_add(llm.prompt_tokens.load(Ordering::Relaxed));
    t.1 =
        t.1.wrapping_add(llm.completion_tokens.load(Ordering::Relaxed));
}

fn sum(workers: &[Arc<WorkerStats>]) -> Sums {
    let mut s = Sums::default();
    for w in workers {
        w.labelled.series.for_each(|x| add(&mut s, x));
        w.labelled.active.for_each(|a| {
            let r = &a.route;
            let k = format!(
                "route=\"{}\",route_id=\"{}\",matched_uri=\"{}\",matched_host=\"{}\",service=\"{}\",service_id=\"{}\",consumer=\"{}\",node=\"\",request_type=\"\",request_llm_model=\"\",llm_model=\"\"",
                r.route, r.route_id, r.matched_uri, r.matched_host, r.service, r.service_id, a.consumer
            );
            let v = s.active.entry(k).or_default();
            *v = v.wrapping_add(a.value.load(Ordering::Relaxed));
        });
    }
    s
}

fn head(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Writes one histogram's lines (`le` in milliseconds, as APISIX).
fn histogram(out: &mut String, name: &str, labels: &str, h: &HistogramValues) {
    let mut cumulative = 0u64;
    for (i, le) in LATENCY_BUCKETS_MS.iter().enumerate() {
        cumulative = cumulative.wrapping_add(h.buckets[i]);
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {cumulative}");
    }
    cumulative = cumulative.wrapping_add(h.buckets[LATENCY_BUCKETS_MS.len()]);
    let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {cumulative}");
    let _ = writeln!(out, "{name}_sum{{{labels}}} {}", h.sum_us as f64 / 1000.0);
    let _ = writeln!(out, "{name}_count{{{labels}}} {cumulative}");
}

/// Appends APISIX's labelled families (and the cap's own counters).
pub fn render_labelled(out: &mut String, workers: &[Arc<WorkerStats>]) {
    let s = sum(workers);
    render_http(out, &s);
    render_llm(out, &s);
    render_label_sets(out, workers);
}

/// APISIX's HTTP families: status codes, latency by type, bandwidth.
fn render_http(out: &mut String, s: &Sums) {
    head(
        out,
        "apisix_http_status",
        "counter",
        "HTTP status codes per service in APISIX",
    );
    for (k, v) in &s.status {
        let _ = writeln!(out, "apisix_http_status{{{k}}} {v}");
    }
    head(
        out,
        "apisix_http_latency",
        "histogram",
        "HTTP request latency in milliseconds per service in APISIX",
    );
    for (i, ty) in LATENCY_TYPES.iter().enumerate() {
        for (k, t) in &s.traffic {
            if t.latency[i].count() > 0 {
                let labels = format!("type=\"{ty}\",{k}");
                histogram(out, "apisix_http_latency", &labels, &t.latency[i]);
            }
        }
    }
    head(
        out,
        "apisix_bandwidth",
        "counter",
        "Total bandwidth in bytes consumed per service in APISIX",
    );
    for (ty, pick) in [("ingress", 0), ("egress", 1)] {
        for (k, t) in &s.traffic {
            let v = if pick == 0 { t.ingress } else { t.egress };
            let _ = writeln!(out, "apisix_bandwidth{{type=\"{ty}\",{k}}} {v}");
        }
    }
}

/// APISIX's LLM families: latency, time to first token, tokens, active
/// connections.
fn render_llm(out: &mut String, s: &Sums) {
    head(
        out,
        "apisix_llm_latency",
        "histogram",
        "LLM request latency in milliseconds (time to first token of a stream, else the answer's response time)",
    );
    for (k, (lat, _)) in &s.llm_latency {
        if lat.count() > 0 {
            histogram(out, "apisix_llm_latency", k, lat);
        }
    }
    head(
        out,
        "apisix_llm_ttft",
        "histogram",
        "LLM time to first token in milliseconds, streaming requests only",
    );
    for (k, (_, ttft)) in &s.llm_latency {
        if ttft.count() > 0 {
            histogram(out, "apisix_llm_ttft", k, ttft);
        }
    }
    head(
        out,
        "apisix_llm_prompt_tokens",
        "counter",
        "LLM service consumed prompt tokens",
    );
    for (k, (p, _)) in &s.tokens {
        let _ = writeln!(out, "apisix_llm_prompt_tokens{{{k}}} {p}");
    }
    head(
        out,
        "apisix_llm_completion_tokens",
        "counter",
        "LLM service consumed completion tokens",
    );
    for (k, (_, c)) in &s.tokens {
        let _ = writeln!(out, "apisix_llm_completion_tokens{{{k}}} {c}");
    }
    head(
        out,
        "apisix_llm_active_connections",
        "gauge",
        "Number of active connections to LLM service",
    );
    for (k, v) in &s.active {
        // Raised and lowered by one worker each: the sum never dips below
        // zero, but a wrapped read is shown as 0 rather than 2^64-1.
        let v = if *v > u64::MAX / 2 { 0 } else { *v };
        let _ = writeln!(out, "apisix_llm_active_connections{{{k}}} {v}");
    }
}

/// How many label sets the workers hold, and how many requests the cap
/// folded into `_other_`.
fn render_label_sets(out: &mut String, workers: &[Arc<WorkerStats>]) {
    let live: usize = workers.iter().map(|w| w.labelled.series.len()).sum();
    let dropped = workers
        .iter()
        .map(|w| w.labelled.dropped.load(Ordering::Relaxed))
        .fold(0u64, u64::wrapping_add);
    head(
        out,
        "ringway_metrics_label_sets",
        "gauge",
        "Labelled series held by the workers (each worker holds at most gateway.metrics.max_label_sets).",
    );
    let _ = writeln!(out, "ringway_metrics_label_sets {live}");
    head(
        out,
        "ringway_metrics_label_sets_dropped_total",
        "counter",
        "Requests recorded under the _other_ label set because their worker held max_label_sets series.",
    );
    let _ = writeln!(out, "ringway_metrics_label_sets_dropped_total {dropped}");
}

#[cfg(test)]
mod tests {
    use super::super::labels::RouteLabels;
    use super::super::table::{Node, Observation, SeriesTable};
    use super::*;
    use crate::exchange::ctx::RequestType;
    use std::time::Duration;

    fn table(w: &Arc<WorkerStats>, cap: usize) -> SeriesTable {
        SeriesTable::new(cap, w.labelled.clone())
    }

    #[test]
    fn two_workers_sum_into_one_line_per_label_set_with_escaping() {
        let workers: Vec<Arc<WorkerStats>> = (0..2).map(|_| Arc::default()).collect();
        let r = Arc::new(RouteLabels::of("r\"1"));
        let inst: Arc<str> = Arc::from("gpt");
        for w in &workers {
            let mut t = table(w, 10);
            t.record(
                &Observation {
                    route: Some(&r),
                    consumer: None,
                    node: Node::Instance(&inst),
                    request_model: Some("m\\x"),
                    model: Some("m"),
                    request_type: RequestType::AiChat,
                    code: 200,
                },
                &super::super::series::Sample {
                    request: Duration::from_millis(12),
                    upstream: Some(Duration::from_millis(10)),
                    llm_latency: Some(Duration::from_millis(10)),
                    prompt_tokens: 5,
                    completion_tokens: 2,
                    ingress: 10,
                    egress: 20,
                    ..Default::default()
                },
            );
        }
        let mut out = String::new();
        render_labelled(&mut out, &workers);
        let who = r#"route="r\"1",route_id="r\"1""#;
        assert!(
            out.contains(&format!(
                "apisix_http_status{{code=\"200\",{who},matched_uri=\"r\\\"1\",matched_host=\"r\\\"1\",service=\"r\\\"1\",service_id=\"r\\\"1\",consumer=\"\",node=\"gpt\"}} 2"
            )),
            "{out}"
        );
        assert!(
            out.contains(
                "request_type=\"ai_chat\",request_llm_model=\"m\\\\x\",llm_model=\"m\"} 10\n"
            ),
            "{out}"
        );
        assert!(
            out.contains("apisix_http_latency_bucket{type=\"request\","),
            "{out}"
        );
        assert!(out.contains(",le=\"20\"} 2\n"), "{out}");
        assert!(
            out.contains("apisix_http_latency_sum{type=\"apisix\","),
            "{out}"
        );
        assert!(out.contains("apisix_bandwidth{type=\"egress\","), "{out}");
        assert!(
            !out.contains("apisix_llm_ttft_bucket"),
            "no stream, no ttft"
        );
        assert!(out.contains("ringway_metrics_label_sets 2\n"), "{out}");
    }
}
