//! Sending open-loop requests on time, to the microsecond.
//!
//! monoio's timer ticks in milliseconds, so sleeping until each due time
//! would send requests in bunches, one per tick (nine at a time at
//! 9,000 req/s): the gateway would see bursts, not the steady arrivals the
//! rate describes, and the latency measured would be the burst's queue.
//! [`Pacer`] sleeps on the wheel until shortly before the due time, then
//! waits the rest on a `timerfd` armed for the exact instant (an hrtimer
//! with no slack), whose readiness monoio polls like a socket's.

use std::io;
use std::net::TcpStream as StdTcpStream;
use std::os::fd::{AsRawFd, FromRawFd};
use std::time::{Duration, Instant};

use monoio::net::TcpStream;

/// Waits longer than this go on monoio's wheel first (it may wake up to a
/// tick late, so it is asked to wake two ticks early).
const COARSE: Duration = Duration::from_millis(2);

/// Precise waits on one thread's runtime.
pub struct Pacer {
    /// The timerfd, registered with the runtime for readiness polls
    /// (monoio polls any descriptor through its socket type).
    timer: TcpStream,
    /// One instant on both clocks: `Instant` is CLOCK_MONOTONIC, but
    /// opaque, so due times are converted through this pair.
    base: (Instant, Duration),
}

impl Pacer {
    /// A pacer for the calling thread's runtime.
    pub fn new() -> io::Result<Pacer> {
        // SAFETY: plain syscall; the result is checked.
        #[allow(unsafe_code)]
        let fd = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is fresh and owned by nothing else; the stream closes
        // it on drop and is only used to poll readiness.
        #[allow(unsafe_code)]
        let timer = TcpStream::from_std(unsafe { StdTcpStream::from_raw_fd(fd) })?;
        let base = (Instant::now(), monotonic_now());
        Ok(Pacer { timer, base })
    }

    /// Returns at `due` (or at once if it has passed) with the instant it
    /// returned: the request's real send time.
    pub async fn wait_until(&self, due: Instant) -> Instant {
        let now = Instant::now();
        if due <= now {
            return now;
        }
        if due - now > COARSE {
            monoio::time::sleep(due - now - COARSE).await;
        }
        if Instant::now() < due && self.arm(due).is_ok() {
            // A failed poll leaves the wait short; the lateness histogram
            // would not show it, but the latency (from `due`) still counts.
            let _ = self.timer.readable(false).await;
            self.disarm();
        }
        Instant::now()
    }

    fn arm(&self, due: Instant) -> io::Result<()> {
        let at = self.base.1 + due.saturating_duration_since(self.base.0);
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: at.as_secs() as libc::time_t,
                tv_nsec: at.subsec_nanos() as libc::c_long,
            },
        };
        // SAFETY: valid descriptor and pointers to live values.
        #[allow(unsafe_code)]
        let rc = unsafe {
            libc::timerfd_settime(
                self.timer.as_raw_fd(),
                libc::TFD_TIMER_ABSTIME,
                &spec,
                std::ptr::null_mut(),
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Consumes the expiry so the descriptor reads as idle again.
    fn disarm(&self) {
        let mut expirations = 0u64;
        // SAFETY: reads 8 bytes into a live u64; non-blocking descriptor.
        #[allow(unsafe_code)]
        let _ = unsafe {
            libc::read(
                self.timer.as_raw_fd(),
                (&mut expirations as *mut u64).cast(),
                8,
            )
        };
    }
}

fn monotonic_now() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes into a live timespec.
    #[allow(unsafe_code)]
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts)
    };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_until_the_due_time_and_returns_when_it_has_passed() {
        let mut rt = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
            .enable_timer()
            .build()
            .unwrap();
        rt.block_on(async {
            let pacer = Pacer::new().unwrap();
            for wait in [Duration::from_micros(300), Duration::from_millis(5)] {
                let due = Instant::now() + wait;
                let sent = pacer.wait_until(due).await;
                // Never early: the request is not sent before it is due.
                assert!(sent >= due, "returned {:?} early", due - sent);
            }
            let past = Instant::now() - Duration::from_millis(1);
            assert!(pacer.wait_until(past).await >= past);
        });
    }
}
