//! Worker wake-ups: a process-wide [`Shutdown`] the signal thread trips, a
//! per-worker [`LocalSignal`] that wakes every task of that worker waiting
//! on it (accept loops, idle keep-alive connections), and a [`Doorbell`]
//! that wakes one task when there is work for it. None takes a lock or
//! crosses a thread.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

/// Process-wide shutdown: a flag plus one channel per worker to wake it.
pub struct Shutdown {
    flag: AtomicBool,
    senders: Vec<flume::Sender<()>>,
}

impl Shutdown {
    /// One receiver per worker, in worker order.
    pub fn new(workers: usize) -> (Arc<Shutdown>, Vec<flume::Receiver<()>>) {
        let (senders, receivers): (Vec<_>, Vec<_>) =
            (0..workers).map(|_| flume::bounded(1)).unzip();
        (
            Arc::new(Shutdown {
                flag: AtomicBool::new(false),
                senders,
            }),
            receivers,
        )
    }

    pub fn trigger(&self) {
        if !self.flag.swap(true, Ordering::AcqRel) {
            for s in &self.senders {
                let _ = s.try_send(());
            }
        }
    }

    pub fn is_triggered(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }
}

/// Wakes one worker-local task when there is work for it (the log
/// shipper, when an entry is queued), so an idle worker has no periodic
/// wake-ups. Ringing an already rung bell is one flag load.
#[derive(Default)]
pub struct Doorbell {
    rung: Cell<bool>,
    waker: Cell<Option<Waker>>,
}

impl Doorbell {
    #[inline]
    pub fn ring(&self) {
        if !self.rung.replace(true) {
            if let Some(w) = self.waker.take() {
                w.wake();
            }
        }
    }

    /// Completes once the bell has rung (at once if it has and was not
    /// [`Doorbell::answer`]ed since).
    pub fn rung(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            if self.rung.get() {
                Poll::Ready(())
            } else {
                self.waker.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
    }

    /// The work is being done: later rings wake the task again.
    pub fn answer(&self) {
        self.rung.set(false);
    }
}

/// A one-shot, single-thread broadcast: once fired, every current and
/// future `wait()` completes. Waiters deregister on drop, so long-lived
/// connections waiting many times do not accumulate wakers.
#[derive(Default)]
pub struct LocalSignal {
    fired: Cell<bool>,
    waiters: RefCell<Waiters>,
}

#[derive(Default)]
struct Waiters {
    slots: Vec<Option<Waker>>,
    free: Vec<usize>,
}

impl LocalSignal {
    pub fn new() -> Rc<LocalSignal> {
        Rc::new(LocalSignal::default())
    }

    pub fn fire(&self) {
        self.fired.set(true);
        let wakers: Vec<Waker> = self
            .waiters
            .borrow_mut()
            .slots
            .iter_mut()
            .filter_map(Option::take)
            .collect();
        for w in wakers {
            w.wake();
        }
    }

    pub fn is_fired(&self) -> bool {
        self.fired.get()
    }

    pub fn wait(&self) -> Wait<'_> {
        Wait {
            signal: self,
            slot: None,
        }
    }
}

pub struct Wait<'a> {
    signal: &'a LocalSignal,
    slot: Option<usize>,
}

impl Future for Wait<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.signal.fired.get() {
            return Poll::Ready(());
        }
        let mut w = self.signal.waiters.borrow_mut();
        match self.slot {
            Some(i) => w.slots[i] = Some(cx.waker().clone()),
            None => {
                let i = match w.free.pop() {
                    Some(i) => {
                        w.slots[i] = Some(cx.waker().clone());
                        i
                    }
                    None => {
                        w.slots.push(Some(cx.waker().clone()));
                        w.slots.len() - 1
                    }
                };
                drop(w);
                self.slot = Some(i);
            }
        }
        Poll::Pending
    }
}

impl Drop for Wait<'_> {
    fn drop(&mut self) {
        if let Some(i) = self.slot {
            let mut w = self.signal.waiters.borrow_mut();
            w.slots[i] = None;
            w.free.push(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiters_are_recycled_and_woken() {
        let mut rt = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
            .enable_timer()
            .build()
            .unwrap();
        rt.block_on(async {
            let s = LocalSignal::new();
            for _ in 0..100 {
                let fut = s.wait();
                let r = monoio::time::timeout(std::time::Duration::from_millis(1), fut).await;
                assert!(r.is_err());
            }
            assert!(s.waiters.borrow().slots.len() <= 1);
            let s2 = s.clone();
            let h = monoio::spawn(async move { s2.wait().await });
            monoio::time::sleep(std::time::Duration::from_millis(1)).await;
            s.fire();
            h.await;
            s.wait().await;
        });
    }
}
