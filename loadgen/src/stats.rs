//! What a run records: latency, time to first token and inter-token
//! latency in HDR histograms (microseconds), status and error counts, the
//! instance that answered each request, and the summaries written to JSON.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hdrhistogram::serialization::{Serializer, V2Serializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Microsecond histogram from 1 µs to 10 minutes, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("constant bounds are valid")
}

pub fn micros(d: Duration) -> u64 {
    (d.as_micros() as u64).max(1)
}

/// Why a request did not succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    Connect,
    Timeout,
    Io,
    BadResponse,
    /// 4xx/5xx status.
    Status,
    /// A stream that ended without its end marker or an error event.
    Truncated,
    /// A stream that ended with an SSE error event.
    ErrorEvent,
    /// A 4xx/5xx whose body is not a JSON object: an error answer nobody
    /// can parse.
    MalformedError,
}

impl ErrorClass {
    /// The server answered, in a form a client understands: a status
    /// with a JSON error body, or a stream ended by an SSE error event.
    /// Every other class is a request lost: no answer, or one cut off or
    /// unreadable.
    pub fn answered(self) -> bool {
        matches!(self, ErrorClass::Status | ErrorClass::ErrorEvent)
    }
}

/// Requests sent in one second, by how they ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Second {
    pub ok: u64,
    /// Answered, but not ok: error statuses and stream error events.
    pub errors: u64,
    pub lost: u64,
}

impl Second {
    pub fn add(&mut self, o: &Second) {
        self.ok += o.ok;
        self.errors += o.errors;
        self.lost += o.lost;
    }

    /// Counts one request that ended as `class` (`None`: ok).
    pub fn count(&mut self, class: Option<ErrorClass>) {
        match class {
            None => self.ok += 1,
            Some(c) if c.answered() => self.errors += 1,
            Some(_) => self.lost += 1,
        }
    }
}

/// A failure's detail without its numbers (ports, counts, times).
fn shape(detail: &str) -> String {
    detail
        .chars()
        .filter(|c| !c.is_ascii_digit())
        .take(120)
        .collect()
}

/// Kinds of stream error events counted apart.
pub const EVENT_KINDS: usize = 32;

/// Examples kept of each error class (the first ones).
pub const SAMPLES_PER_CLASS: usize = 20;

/// One failed request, for finding out what happened.
#[derive(Debug, Clone)]
pub struct Sample {
    /// When the request was sent.
    pub at: Instant,
    pub class: ErrorClass,
    /// 0 when no response head came.
    pub status: u16,
    pub instance: Option<String>,
    pub detail: String,
}

#[derive(Debug, Clone)]
pub struct Stats {
    pub latency: Histogram<u64>,
    pub ttft: Histogram<u64>,
    pub itl: Histogram<u64>,
    /// Open loop: how late each request was sent against its due time
    /// (the pacing's precision; latency counts from the due time anyway).
    pub lateness: Histogram<u64>,
    /// The gateway's own time per successful request, when it reports it
    /// (ringway's `X-Ringway-Overhead-Us`).
    pub overhead: Histogram<u64>,
    /// Latency of answers that were not ok: error statuses and streams
    /// ended by an error event (how long a client waited to hear "no").
    pub error_latency: Histogram<u64>,
    pub ok: u64,
    pub statuses: BTreeMap<u16, u64>,
    pub errors: BTreeMap<ErrorClass, u64>,
    pub instances: BTreeMap<String, u64>,
    /// Answers by the number of upstream attempts they took
    /// (`X-Ringway-Attempts`), when the gateway said.
    pub attempts: BTreeMap<u32, u64>,
    /// The first [`SAMPLES_PER_CLASS`] failures of each class.
    pub samples: Vec<Sample>,
    /// Requests by the second (since the measured window began) they
    /// were sent in.
    pub per_second: BTreeMap<u64, Second>,
    /// Streams ended by an error event, by the instance that answered and
    /// the event's text (numbers aside; at most [`EVENT_KINDS`] kinds, the
    /// rest as "other").
    pub error_events: BTreeMap<String, u64>,
    pub bytes: u64,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            latency: histogram(),
            ttft: histogram(),
            itl: histogram(),
            lateness: histogram(),
            overhead: histogram(),
            error_latency: histogram(),
            ok: 0,
            statuses: BTreeMap::new(),
            errors: BTreeMap::new(),
            instances: BTreeMap::new(),
            attempts: BTreeMap::new(),
            samples: Vec::new(),
            per_second: BTreeMap::new(),
            error_events: BTreeMap::new(),
            bytes: 0,
        }
    }
}

impl Stats {
    pub fn total(&self) -> u64 {
        self.ok + self.errors.values().sum::<u64>()
    }

    /// Requests that failed as `class`.
    pub fn errors_of(&self, class: ErrorClass) -> u64 {
        self.errors.get(&class).copied().unwrap_or(0)
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Requests lost: not answered at all, or not in a form a client
    /// understands (see [`ErrorClass::answered`]).
    pub fn lost(&self) -> u64 {
        self.errors
            .iter()
            .filter(|(c, _)| !c.answered())
            .map(|(_, n)| n)
            .sum()
    }

    /// Counts `n` streams ended by the error event `text`.
    pub fn count_error_event(&mut self, text: &str, n: u64) {
        let key = shape(text);
        let key = if self.error_events.len() < EVENT_KINDS || self.error_events.contains_key(&key) {
            key
        } else {
            "other".to_owned()
        };
        *self.error_events.entry(key).or_default() += n;
    }

    /// Keeps `s` if its class has fewer than [`SAMPLES_PER_CLASS`]
    /// samples, or (up to three times that) if none of them looks like it
    /// (the same status, instance and detail, numbers aside): the first
    /// failures of a long run are often all of one kind.
    pub fn sample(&mut self, s: Sample) {
        let same: Vec<&Sample> = self.samples.iter().filter(|x| x.class == s.class).collect();
        let new_shape = !same.iter().any(|x| {
            x.status == s.status && x.instance == s.instance && shape(&x.detail) == shape(&s.detail)
        });
        if same.len() < SAMPLES_PER_CLASS || (new_shape && same.len() < 3 * SAMPLES_PER_CLASS) {
            self.samples.push(s);
        }
    }

    pub fn merge(&mut self, other: &Stats) {
        let _ = self.latency.add(&other.latency);
        let _ = self.ttft.add(&other.ttft);
        let _ = self.itl.add(&other.itl);
        let _ = self.lateness.add(&other.lateness);
        let _ = self.overhead.add(&other.overhead);
        let _ = self.error_latency.add(&other.error_latency);
        self.ok += other.ok;
        for (k, v) in &other.statuses {
            *self.statuses.entry(*k).or_default() += v;
        }
        for (k, v) in &other.errors {
            *self.errors.entry(*k).or_default() += v;
        }
        for (k, v) in &other.instances {
            *self.instances.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &other.attempts {
            *self.attempts.entry(*k).or_default() += v;
        }
        for x in &other.samples {
            self.sample(x.clone());
        }
        for (k, v) in &other.per_second {
            self.per_second.entry(*k).or_default().add(v);
        }
        for (k, v) in &other.error_events {
            self.count_error_event(k, *v);
        }
        self.bytes += other.bytes;
    }

    pub fn summary(&self, elapsed: Duration) -> Summary {
        let secs = elapsed.as_secs_f64().max(1e-9);
        Summary {
            requests: self.total(),
            ok: self.ok,
            errors: self.errors.clone(),
            statuses: self
                .statuses
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            instances: self.instances.clone(),
            seconds: secs,
            rps: self.ok as f64 / secs,
            latency: Percentiles::of(&self.latency),
            ttft: (!self.ttft.is_empty()).then(|| Percentiles::of(&self.ttft)),
            itl: (!self.itl.is_empty()).then(|| Percentiles::of(&self.itl)),
            lateness: (!self.lateness.is_empty()).then(|| Percentiles::of(&self.lateness)),
            overhead: (!self.overhead.is_empty()).then(|| Percentiles::of(&self.overhead)),
            error_latency: (!self.error_latency.is_empty())
                .then(|| Percentiles::of(&self.error_latency)),
            histograms: Histograms {
                latency: encode(&self.latency),
                ttft: encode(&self.ttft),
                itl: encode(&self.itl),
            },
        }
    }
}

/// Percentiles in microseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub count: u64,
    pub min: u64,
    pub mean: f64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        Percentiles {
            count: h.len(),
            min: h.min(),
            mean: h.mean(),
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

/// Raw histograms, HdrHistogram V2 format, base64.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Histograms {
    pub latency: String,
    pub ttft: String,
    pub itl: String,
}

pub fn encode(h: &Histogram<u64>) -> String {
    let mut buf = Vec::new();
    if V2Serializer::new().serialize(h, &mut buf).is_err() {
        return String::new();
    }
    STANDARD.encode(buf)
}

pub fn decode(s: &str) -> Option<Histogram<u64>> {
    let bytes = STANDARD.decode(s).ok()?;
    hdrhistogram::serialization::Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .ok()
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub requests: u64,
    pub ok: u64,
    pub errors: BTreeMap<ErrorClass, u64>,
    pub statuses: BTreeMap<String, u64>,
    pub instances: BTreeMap<String, u64>,
    pub seconds: f64,
    /// Successful requests per second.
    pub rps: f64,
    pub latency: Percentiles,
    pub ttft: Option<Percentiles>,
    pub itl: Option<Percentiles>,
    /// Open loop only: how late requests were sent (see `Stats::lateness`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lateness: Option<Percentiles>,
    /// The gateway's own time as it reports it (see `Stats::overhead`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overhead: Option<Percentiles>,
    /// Latency of error answers (see `Stats::error_latency`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_latency: Option<Percentiles>,
    pub histograms: Histograms,
}

/// Formats microseconds for people.
pub fn human_us(us: u64) -> String {
    if us >= 1_000_000 {
        format!("{:.2}s", us as f64 / 1e6)
    } else if us >= 1000 {
        format!("{:.2}ms", us as f64 / 1e3)
    } else {
        format!("{us}µs")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut h = histogram();
        for v in 1..=1000u64 {
            h.record(v * 10).unwrap();
        }
        let p = Percentiles::of(&h);
        assert_eq!(p.count, 1000);
        assert_eq!(p.min, 10);
        // 3 significant digits: values within 0.1%.
        assert!((4990..=5010).contains(&p.p50), "{}", p.p50);
        assert!((9890..=9910).contains(&p.p99), "{}", p.p99);
        assert!((9990..=10010).contains(&p.max), "{}", p.max);
        assert!((p.mean - 5005.0).abs() < 10.0);
    }

    #[test]
    fn histograms_round_trip_and_merge() {
        let mut a = Stats::default();
        a.latency.record(100).unwrap();
        a.ok = 1;
        let mut b = Stats::default();
        b.latency.record(300).unwrap();
        b.ok = 1;
        *b.errors.entry(ErrorClass::Timeout).or_default() += 1;
        b.overhead.record(15).unwrap();
        a.merge(&b);
        assert_eq!(a.total(), 3);
        let s = a.summary(Duration::from_secs(2));
        assert_eq!(s.rps, 1.0);
        let back = decode(&s.histograms.latency).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back.max(), a.latency.max());
        assert_eq!(s.overhead.map(|o| o.count), Some(1));
        assert_eq!(
            Stats::default().summary(Duration::from_secs(1)).overhead,
            None
        );
        assert_eq!(human_us(1500), "1.50ms");
    }

    #[test]
    fn answered_and_lost() {
        let mut s = Stats {
            ok: 5,
            ..Default::default()
        };
        for (c, n) in [
            (ErrorClass::Status, 3),
            (ErrorClass::ErrorEvent, 2),
            (ErrorClass::Truncated, 1),
            (ErrorClass::MalformedError, 1),
            (ErrorClass::Timeout, 1),
        ] {
            s.errors.insert(c, n);
        }
        assert_eq!((s.total(), s.lost()), (13, 3));
        for _ in 0..SAMPLES_PER_CLASS + 5 {
            s.sample(Sample {
                at: std::time::Instant::now(),
                class: ErrorClass::Io,
                status: 0,
                instance: None,
                detail: String::new(),
            });
        }
        assert_eq!(s.samples.len(), SAMPLES_PER_CLASS);
        // A new kind of failure of the class is still kept.
        let odd = |detail: &str| Sample {
            at: std::time::Instant::now(),
            class: ErrorClass::Io,
            status: 0,
            instance: None,
            detail: detail.into(),
        };
        s.sample(odd("reset after 3 tokens"));
        s.sample(odd("reset after 4 tokens"));
        assert_eq!(s.samples.len(), SAMPLES_PER_CLASS + 1);
        let mut sec = Second::default();
        for c in [None, Some(ErrorClass::Status), Some(ErrorClass::Connect)] {
            sec.count(c);
        }
        assert_eq!((sec.ok, sec.errors, sec.lost), (1, 1, 1));
    }
}
