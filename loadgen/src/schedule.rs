//! Open-loop arrivals: request `i` is due at `start + i / rate`, whether or
//! not earlier requests have finished. Latency is measured from that due
//! time, so a stall shows up in every request it delayed instead of hiding
//! (no coordinated omission).

use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    start: Instant,
    interval: Duration,
}

impl Schedule {
    pub fn new(start: Instant, rate: f64) -> Schedule {
        Schedule {
            start,
            // Rounded to whole nanoseconds so 100 req/s is exactly 10 ms.
            interval: Duration::from_nanos((1e9 / rate.max(1e-3)).round().max(1.0) as u64),
        }
    }

    /// When request `i` is due.
    pub fn due(&self, i: u64) -> Instant {
        // Integer nanoseconds: exact and independent of the start instant.
        let nanos = self.interval.as_nanos().saturating_mul(i as u128);
        self.start + Duration::from_nanos(nanos.min(u64::MAX as u128) as u64)
    }

    /// How many requests are due by `now`.
    pub fn due_by(&self, now: Instant) -> u64 {
        let since = now.saturating_duration_since(self.start);
        (since.as_nanos() / self.interval.as_nanos().max(1)) as u64 + 1
    }
}

/// Latency of a request that was due at `due` and finished at `done`.
pub fn latency_from_due(due: Instant, done: Instant) -> Duration {
    done.saturating_duration_since(due)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrivals_are_evenly_spaced() {
        let t0 = Instant::now();
        let s = Schedule::new(t0, 1000.0);
        assert_eq!(s.due(0), t0);
        assert_eq!(s.due(1000) - t0, Duration::from_secs(1));
        assert_eq!(s.due(250) - s.due(249), Duration::from_millis(1));
        assert_eq!(s.due_by(t0), 1);
        assert_eq!(s.due_by(t0 + Duration::from_micros(2500)), 3);
    }

    #[test]
    fn a_stall_is_charged_to_every_request_it_delayed() {
        // 100 req/s; the server stalls for 1 s from t=0, then answers
        // instantly. A closed-loop client would send 1 request and record 1
        // slow sample; open loop records the wait of all 100 due requests.
        let t0 = Instant::now();
        let s = Schedule::new(t0, 100.0);
        let resumed = t0 + Duration::from_secs(1);
        let lat: Vec<Duration> = (0..100)
            .map(|i| latency_from_due(s.due(i), resumed.max(s.due(i))))
            .collect();
        assert_eq!(lat[0], Duration::from_secs(1));
        assert_eq!(lat[50], Duration::from_millis(500));
        let slow = lat
            .iter()
            .filter(|l| **l > Duration::from_millis(100))
            .count();
        assert_eq!(slow, 90);
    }
}
