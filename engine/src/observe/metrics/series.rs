//! One label set's counters ([`Series`]) and the histograms they hold.
//! Every value is an atomic written by one worker only, with a plain load
//! and store (no locked read-modify-write instruction), and read by the
//! scrape thread with relaxed loads: a scrape may see a request's status
//! counted before its latency, never a torn value.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::labels::RouteLabels;
use crate::exchange::ctx::RequestType;

/// APISIX's default latency buckets, in milliseconds (`http_latency`,
/// `llm_latency`, `llm_ttft`).
pub const LATENCY_BUCKETS_MS: [u64; 15] = [
    1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 30_000, 60_000,
];

/// Adds `n` to a counter only this thread writes.
#[inline]
pub fn bump(c: &AtomicU64, n: u64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

/// A latency histogram over [`LATENCY_BUCKETS_MS`]: per-bucket counts (the
/// last is +Inf; cumulated when rendered) and the sum in microseconds.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS_MS.len() + 1],
    sum_us: AtomicU64,
}

/// A histogram's values, read once for rendering and summed over series.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct HistogramValues {
    pub buckets: [u64; LATENCY_BUCKETS_MS.len() + 1],
    pub sum_us: u64,
}

impl Histogram {
    /// Observes `d` (the owning worker only).
    #[inline]
    pub fn observe(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        // `le` is inclusive: 1000 µs falls in the 1 ms bucket.
        let i = LATENCY_BUCKETS_MS
            .iter()
            .position(|&le| us <= le * 1000)
            .unwrap_or(LATENCY_BUCKETS_MS.len());
        bump(&self.buckets[i], 1);
        bump(&self.sum_us, us);
    }

    pub fn read(&self) -> HistogramValues {
        let mut v = HistogramValues {
            sum_us: self.sum_us.load(Ordering::Relaxed),
            ..Default::default()
        };
        for (o, b) in v.buckets.iter_mut().zip(&self.buckets) {
            *o = b.load(Ordering::Relaxed);
        }
        v
    }
}

impl HistogramValues {
    pub fn add(&mut self, o: &HistogramValues) {
        for (a, b) in self.buckets.iter_mut().zip(&o.buckets) {
            *a = a.wrapping_add(*b);
        }
        self.sum_us = self.sum_us.wrapping_add(o.sum_us);
    }

    pub fn count(&self) -> u64 {
        self.buckets.iter().fold(0, |a, b| a.wrapping_add(*b))
    }
}

/// The labels of a series, as the scrape renders them (escaped).
#[derive(Debug, Clone)]
pub struct SeriesLabels {
    pub route: Arc<RouteLabels>,
    pub consumer: Arc<str>,
    pub node: Arc<str>,
    pub request_model: Arc<str>,
    pub model: Arc<str>,
    pub request_type: RequestType,
    pub code: u16,
}

/// One label set's counters.
#[derive(Debug)]
pub struct Series {
    pub labels: SeriesLabels,
    /// `apisix_http_status`.
    pub requests: AtomicU64,
    /// `apisix_bandwidth{type="ingress"}`, `{type="egress"}`.
    pub ingress: AtomicU64,
    pub egress: AtomicU64,
    /// `apisix_http_latency{type="request"}`, `"upstream"`, `"apisix"`.
    pub latency: [Histogram; 3],
    /// The LLM families, for AI requests only.
    pub llm: Option<Box<LlmSeries>>,
}

/// The LLM families of a series.
#[derive(Debug, Default)]
pub struct LlmSeries {
    /// `apisix_llm_latency`: time to first token (a stream), else the
    /// answering attempt's whole response time.
    pub latency: Histogram,
    /// `apisix_llm_ttft`: time to first token, streams only.
    pub ttft: Histogram,
    pub prompt_tokens: AtomicU64,
    pub completion_tokens: AtomicU64,
}

/// What one finished request contributes to its series.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    pub request: Duration,
    pub upstream: Option<Duration>,
    pub ingress: u64,
    pub egress: u64,
    pub llm_latency: Option<Duration>,
    pub ttft: Option<Duration>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

impl Series {
    pub fn new(labels: SeriesLabels) -> Series {
        let llm = (labels.request_type != RequestType::TraditionalHttp).then(Box::default);
        Series {
            labels,
            requests: AtomicU64::new(0),
            ingress: AtomicU64::new(0),
            egress: AtomicU64::new(0),
            latency: Default::default(),
            llm,
        }
    }

    /// Records one request (the owning worker only).
    #[inline]
    pub fn record(&self, s: &Sample) {
        bump(&self.requests, 1);
        bump(&self.ingress, s.ingress);
        bump(&self.egress, s.egress);
        self.latency[0].observe(s.request);
        if let Some(u) = s.upstream {
            self.latency[1].observe(u);
        }
        self.latency[2].observe(s.request.saturating_sub(s.upstream.unwrap_or_default()));
        if let Some(l) = &self.llm {
            if let Some(d) = s.llm_latency {
                l.latency.observe(d);
            }
            if let Some(d) = s.ttft {
                l.ttft.observe(d);
            }
            bump(&l.prompt_tokens, s.prompt_tokens);
            bump(&l.completion_tokens, s.completion_tokens);
        }
    }
}

/// `apisix_llm_active_connections` for one route and consumer: LLM
/// requests under way, raised when one starts and lowered when it ends,
/// both by the owning worker.
#[derive(Debug)]
pub struct ActiveSeries {
    pub route: Arc<RouteLabels>,
    pub consumer: Arc<str>,
    pub value: AtomicU64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_apisix_buckets_inclusively() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(1000)); // le=1
        h.observe(Duration::from_micros(1001)); // le=2
        h.observe(Duration::from_millis(150)); // le=200
        h.observe(Duration::from_secs(61)); // +Inf
        let v = h.read();
        assert_eq!(v.buckets[0], 1);
        assert_eq!(v.buckets[1], 1);
        assert_eq!(v.buckets[7], 1);
        assert_eq!(v.buckets[15], 1);
        assert_eq!(v.count(), 4);
        assert_eq!(v.sum_us, 1000 + 1001 + 150_000 + 61_000_000);
    }

    #[test]
    fn a_series_records_apisix_families_and_llm_ones_only_for_ai() {
        let labels = SeriesLabels {
            route: Arc::new(RouteLabels::of("r")),
            consumer: Arc::from(""),
            node: Arc::from(""),
            request_model: Arc::from(""),
            model: Arc::from(""),
            request_type: RequestType::TraditionalHttp,
            code: 200,
        };
        let plain = Series::new(labels.clone());
        assert!(plain.llm.is_none());
        let s = Sample {
            request: Duration::from_millis(30),
            upstream: Some(Duration::from_millis(25)),
            ingress: 100,
            egress: 50,
            ..Default::default()
        };
        plain.record(&s);
        plain.record(&s);
        assert_eq!(plain.requests.load(Ordering::Relaxed), 2);
        assert_eq!(plain.ingress.load(Ordering::Relaxed), 200);
        assert_eq!(plain.latency[2].read().sum_us, 10_000);
        let ai = Series::new(SeriesLabels {
            request_type: RequestType::AiStream,
            ..labels
        });
        ai.record(&Sample {
            ttft: Some(Duration::from_millis(7)),
            prompt_tokens: 3,
            ..s
        });
        let l = ai.llm.as_ref().unwrap();
        assert_eq!(l.ttft.read().count(), 1);
        assert_eq!(l.latency.read().count(), 0);
        assert_eq!(l.prompt_tokens.load(Ordering::Relaxed), 3);
    }
}
