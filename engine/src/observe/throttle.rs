//! At most one of something a second: a log line for trouble that would
//! otherwise repeat with every request (a dead Redis, a full logger
//! backlog).

use std::sync::atomic::{AtomicU64, Ordering};

use crate::timer::now_ms;

#[derive(Debug, Default)]
pub struct Throttle {
    /// When the last one went ahead (process clock, ms); 0: never.
    last_ms: AtomicU64,
}

impl Throttle {
    pub const fn new() -> Throttle {
        Throttle {
            last_ms: AtomicU64::new(0),
        }
    }

    /// Whether the caller may go ahead now: at most once a second, for one
    /// caller when several race.
    pub fn ready(&self) -> bool {
        let now = now_ms();
        let last = self.last_ms.load(Ordering::Relaxed);
        (last == 0 || now >= last + 1000)
            && self
                .last_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn once_a_second() {
        let t = Throttle::new();
        assert!(t.ready());
        assert!(!t.ready(), "again at once");
    }
}
