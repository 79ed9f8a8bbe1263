//! The local policy's counter: a fixed window that starts with the first
//! charge and lasts `time_window`, shared by every worker through one
//! atomic word, so a limit of N tokens is N for the whole process, never
//! N per worker. The word packs the window start (100 ms ticks of the
//! process clock, 30 bits: 3.4 years) and the tokens used in it (34 bits);
//! every update is one compare-and-swap, so a reset and a concurrent
//! charge can never lose each other.

use std::sync::atomic::{AtomicU64, Ordering};

const USED_BITS: u32 = 34;
/// Largest token count a window can hold (and so the largest `limit`).
pub const MAX_USED: u64 = (1 << USED_BITS) - 1;
const TICK_MS: u64 = 100;

#[derive(Debug, Default)]
pub struct LocalWindow {
    state: AtomicU64,
}

/// Tokens used in the current window and milliseconds until it resets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub used: u64,
    pub reset_ms: u64,
}

/// (window start in ms, tokens used); start 0 means "no window yet".
/// Starts are stored as `ticks + 1` so a window opened at time 0 exists.
fn unpack(s: u64) -> (Option<u64>, u64) {
    let stored = s >> USED_BITS;
    ((stored != 0).then(|| (stored - 1) * TICK_MS), s & MAX_USED)
}

impl LocalWindow {
    /// The window as seen at `now_ms` (a process-clock reading, never 0).
    pub fn usage(&self, now_ms: u64, window_ms: u64) -> Usage {
        match unpack(self.state.load(Ordering::Relaxed)) {
            (Some(start), used) if now_ms < start.saturating_add(window_ms) => Usage {
                used,
                reset_ms: start.saturating_add(window_ms) - now_ms,
            },
            _ => Usage {
                used: 0,
                reset_ms: window_ms,
            },
        }
    }

    /// Adds `cost` tokens, opening a new window if the last one ended.
    /// Returns the usage after the charge.
    pub fn charge(&self, cost: u64, now_ms: u64, window_ms: u64) -> Usage {
        let mut cur = self.state.load(Ordering::Relaxed);
        loop {
            let (start, used) = match unpack(cur) {
                (Some(start), used) if now_ms < start.saturating_add(window_ms) => {
                    (start, used.saturating_add(cost).min(MAX_USED))
                }
                _ => (now_ms / TICK_MS * TICK_MS, cost.min(MAX_USED)),
            };
            let next = ((start / TICK_MS + 1) << USED_BITS) | used;
            match self
                .state
                .compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => {
                    return Usage {
                        used,
                        reset_ms: start.saturating_add(window_ms).saturating_sub(now_ms),
                    }
                }
                Err(actual) => cur = actual,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn window_opens_fills_and_resets() {
        let w = LocalWindow::default();
        assert_eq!(w.usage(5_000, 60_000).used, 0);
        let u = w.charge(7, 5_000, 60_000);
        assert_eq!(u.used, 7);
        assert_eq!(u.reset_ms, 60_000);
        assert_eq!(w.charge(5, 30_000, 60_000).used, 12);
        let u = w.usage(30_000, 60_000);
        assert_eq!((u.used, u.reset_ms), (12, 35_000));
        // The window ends 60 s after it opened, not after the last charge.
        assert_eq!(w.usage(65_000, 60_000).used, 0);
        assert_eq!(w.charge(3, 65_000, 60_000).used, 3);
    }

    #[test]
    fn concurrent_charges_are_never_lost() {
        let w = Arc::new(LocalWindow::default());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let w = w.clone();
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        w.charge(3, 1_000, 3_600_000);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(w.usage(1_000, 3_600_000).used, 120_000);
    }

    #[test]
    fn a_window_longer_than_the_clock_does_not_overflow() {
        // A rule's `$variable` window comes from the request.
        let w = LocalWindow::default();
        assert_eq!(w.charge(5, 1_000, u64::MAX).used, 5);
        let u = w.usage(2_000, u64::MAX);
        assert_eq!((u.used, u.reset_ms), (5, u64::MAX - 2_000));
    }

    #[test]
    fn saturates_instead_of_wrapping() {
        let w = LocalWindow::default();
        w.charge(MAX_USED - 1, 1_000, 60_000);
        assert_eq!(w.charge(10, 1_000, 60_000).used, MAX_USED);
    }
}
