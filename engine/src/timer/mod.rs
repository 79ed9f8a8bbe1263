//! Timers for the request path: [`sleep`], [`sleep_until`] and
//! [`timeout`], backed by a per-worker wheel ([`wheel`]).
//!
//! monoio's own `Sleep` is 640 bytes with 128-byte alignment, and every
//! future that holds one inline (a write with a deadline, a select with a
//! heartbeat) is padded to match; a suspended connection pays for it at
//! every level of its future chain. A [`Deadline`] here is 16 bytes: the
//! tick and a key into the worker's wheel, where the waker waits. Resolution
//! is one millisecond, and a deadline never fires early.
//!
//! The wheel is fired by a driver task spawned on the thread's runtime at
//! its first deadline. ringway runs one runtime per thread for the
//! thread's life; a thread that ends a runtime and starts another calls
//! [`forget_driver`] in between (monoio cannot wake a task of a runtime
//! that has ended).

mod wheel;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

pub use wheel::forget_driver;
use wheel::Key;

/// A point in time to wait for; registers with the wheel when first
/// polled and unregisters when dropped.
#[must_use = "a deadline does nothing unless awaited"]
pub struct Deadline {
    tick: u64,
    key: Option<Key>,
}

/// Fires this thread's due deadlines when the runtime is not parking to
/// fire them itself (a busy-polling worker).
pub fn fire_due(now: Instant) {
    let _ = wheel::try_with(|w| w.wake_driver_if_due(now));
}

/// Milliseconds on a process-wide monotonic clock (never 0).
pub fn now_ms() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

/// Waits `d`.
pub fn sleep(d: Duration) -> Deadline {
    match Instant::now().checked_add(d) {
        Some(at) => sleep_until(at),
        None => Deadline {
            tick: u64::MAX,
            key: None,
        },
    }
}

/// Waits until `at`.
pub fn sleep_until(at: Instant) -> Deadline {
    Deadline {
        tick: wheel::with(|w| w.tick_at(at)),
        key: None,
    }
}

impl Future for Deadline {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let tick = self.tick;
        match self.key {
            Some(key) => {
                let (ready, old) = wheel::with(|w| {
                    if w.is_pending(key) {
                        (false, w.set_waker(key, cx.waker()))
                    } else {
                        (true, None)
                    }
                });
                drop(old);
                if ready {
                    self.key = None;
                    self.tick = 0;
                    return Poll::Ready(());
                }
                Poll::Pending
            }
            None if tick == 0 => Poll::Ready(()),
            None => {
                // One visit to the wheel: register, and learn whether this
                // thread still needs its driver.
                let (registered, start) = wheel::with(|w| {
                    let registered = (!w.is_past(tick)).then(|| w.insert(tick, cx.waker().clone()));
                    (registered, w.claim_driver())
                });
                if let Some(gen) = start {
                    monoio::spawn(supervised_driver(gen));
                }
                match registered {
                    None => {
                        self.tick = 0;
                        Poll::Ready(())
                    }
                    Some((key, wake)) => {
                        self.key = Some(key);
                        if let Some(driver) = wake {
                            driver.wake();
                        }
                        Poll::Pending
                    }
                }
            }
        }
    }
}

impl Drop for Deadline {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            // During a thread's teardown the wheel may be gone already;
            // then there is nothing left to unregister from.
            let waker = wheel::try_with(|w| w.remove(key)).flatten();
            drop(waker);
        }
    }
}

/// Starts a supervised thread running the future `make` returns on its
/// own runtime (the epoll driver: background work, not the request path),
/// with this module's wheel ready for it; after a panic the thread builds
/// a new runtime and runs a new future ([`crate::supervise::thread`]).
pub fn background_thread<F, Fut>(
    name: &'static str,
    component: crate::supervise::Component,
    mut make: F,
) -> std::io::Result<std::thread::JoinHandle<()>>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    crate::supervise::thread(name, component, move || {
        let rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build();
        match rt {
            Ok(mut rt) => {
                // A run after a panic: the wheel's driver went with the
                // runtime that unwound.
                forget_driver();
                rt.block_on(make());
            }
            Err(e) => tracing::error!("{name}: cannot start a runtime: {e}"),
        }
    })
}

/// This thread's wheel driver, restarted after a panic (the failed one's
/// drop releases the wheel, so the restart claims it again, unless a new
/// deadline already started another driver meanwhile).
async fn supervised_driver(gen: u64) {
    let mut first = Some(gen);
    crate::supervise::task(crate::supervise::Component::Timer, move || {
        let gen = first.take().or_else(|| wheel::with(|w| w.claim_driver()));
        async move {
            if let Some(gen) = gen {
                wheel::Driver::new(gen).await;
            }
        }
    })
    .await
}

/// A deadline passed before the work finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

impl std::fmt::Display for Elapsed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("deadline elapsed")
    }
}

impl std::error::Error for Elapsed {}

pin_project_lite::pin_project! {
    /// `work`, unless `deadline` passes first.
    #[must_use = "a timeout does nothing unless awaited"]
    pub struct Timeout<F> {
        #[pin]
        work: F,
        deadline: Deadline,
    }
}

/// Runs `work` for at most `d`; dropping it (and its I/O) when time is up.
pub fn timeout<F: Future>(d: Duration, work: F) -> Timeout<F> {
    Timeout {
        work,
        deadline: sleep(d),
    }
}

/// The instant `d` from now, for [`timeout_at`]; a duration too long to
/// represent is a year (longer than any configured timeout).
pub fn deadline_after(d: Duration) -> Instant {
    const YEAR: Duration = Duration::from_secs(365 * 86_400);
    Instant::now() + d.min(YEAR)
}

/// Runs `work` until `at` at most (a deadline shared by several steps).
pub fn timeout_at<F: Future>(at: Instant, work: F) -> Timeout<F> {
    Timeout {
        work,
        deadline: sleep_until(at),
    }
}

impl<F: Future> Future for Timeout<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(v) = this.work.poll(cx) {
            return Poll::Ready(Ok(v));
        }
        match Pin::new(this.deadline).poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Elapsed)),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Deadlines waiting on this thread's wheel.
pub fn pending() -> usize {
    wheel::with(|w| w.live())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt() -> monoio::Runtime<monoio::time::TimeDriver<monoio::IoUringDriver>> {
        monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
            .enable_timer()
            .build()
            .unwrap()
    }

    #[test]
    fn a_deadline_never_fires_early_and_fires_soon_after() {
        rt().block_on(async {
            for ms in [1u64, 5, 20] {
                let t = Instant::now();
                sleep(Duration::from_millis(ms)).await;
                let took = t.elapsed();
                assert!(took >= Duration::from_millis(ms), "{ms} ms took {took:?}");
                assert!(
                    took < Duration::from_millis(ms + 500),
                    "{ms} ms took {took:?}"
                );
            }
            assert_eq!(pending(), 0);
        });
    }

    #[test]
    fn deadlines_fire_in_order_and_cancelled_ones_leave_nothing_behind() {
        rt().block_on(async {
            let order = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
            let mut handles = Vec::new();
            for (i, ms) in [30u64, 10, 20].into_iter().enumerate() {
                let order = order.clone();
                handles.push(monoio::spawn(async move {
                    sleep(Duration::from_millis(ms)).await;
                    order.borrow_mut().push(i);
                }));
            }
            // Thousands registered then dropped (the common case: work that
            // finished before its timeout) leave no entry.
            for _ in 0..5000 {
                let r = timeout(Duration::from_secs(30), async { 7 }).await;
                assert_eq!(r, Ok(7));
                let mut d = std::pin::pin!(sleep(Duration::from_secs(60)));
                let waker = futures_util::task::noop_waker();
                assert!(d
                    .as_mut()
                    .poll(&mut Context::from_waker(&waker))
                    .is_pending());
            }
            assert_eq!(pending(), 0);
            for h in handles {
                h.await;
            }
            assert_eq!(*order.borrow(), vec![1, 2, 0]);
        });
    }

    #[test]
    fn a_timeout_drops_slow_work_and_keeps_fast_work() {
        rt().block_on(async {
            let slow = timeout(Duration::from_millis(5), sleep(Duration::from_secs(5))).await;
            assert_eq!(slow, Err(Elapsed));
            let fast = timeout(Duration::from_secs(5), async {
                sleep(Duration::from_millis(2)).await;
                "done"
            })
            .await;
            assert_eq!(fast, Ok("done"));
            // An earlier deadline inserted after a later one wakes the
            // driver from its longer sleep.
            let long = monoio::spawn(sleep(Duration::from_millis(400)));
            monoio::time::sleep(Duration::from_millis(5)).await;
            let t = Instant::now();
            sleep(Duration::from_millis(3)).await;
            assert!(
                t.elapsed() < Duration::from_millis(300),
                "{:?}",
                t.elapsed()
            );
            long.await;
            assert_eq!(pending(), 0);
        });
    }

    #[test]
    fn deadlines_past_one_turn_of_the_wheel_wait_their_turn() {
        // 2^16 ticks of 1 ms is one turn; a deadline two turns out shares a
        // slot with nearer ticks and must not fire on their pass.
        rt().block_on(async {
            let far = Instant::now() + Duration::from_millis(2 * 65_536 + 3);
            let mut d = std::pin::pin!(sleep_until(far));
            let waker = futures_util::task::noop_waker();
            assert!(d
                .as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_pending());
            // A near deadline in the same slot (3 ms ahead ≡ far mod 2^16).
            sleep(Duration::from_millis(10)).await;
            assert!(d
                .as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_pending());
            assert_eq!(pending(), 1);
        });
    }

    #[test]
    fn runtimes_started_one_after_another_on_a_thread_each_get_a_driver() {
        for _ in 0..3 {
            rt().block_on(async {
                sleep(Duration::from_millis(2)).await;
            });
            forget_driver();
        }
    }
}
