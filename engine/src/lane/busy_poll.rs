//! Busy polling (`gateway.busy_poll_us`): after a request arrives or a
//! stream chunk is relayed, the worker keeps polling its ring for that long
//! instead of going to sleep in `io_uring_enter`.
//!
//! At light load every hop of a proxied request finds the gateway's core
//! idle: the request arrives, the upstream answers, and each time the
//! worker has to be woken from a halted CPU (on a VM, a trip through the
//! hypervisor). Polling for a short window after activity keeps the core
//! awake for the answers that are about to come, trading CPU for latency
//! the way Seastar's reactor or Linux's `net.core.busy_poll` do. Off by
//! default: a polling worker burns its core during the window, which only
//! pays off on cores dedicated to the gateway.
//!
//! monoio has no poll mode, so this is two tasks waking each other. While
//! either is queued the runtime never parks: each round of its loop submits
//! with a non-blocking `io_uring_enter` and reaps completions. (A single
//! task that wakes itself would not do: monoio runs a self-woken task
//! again at the front of its queue, ahead of the handlers it woke.)
//! Two things normally done when the runtime parks are done here instead:
//! due timers on the worker's wheel are fired, and a stop request from the
//! main thread ends polling for good so the runtime can take it.

use std::cell::Cell;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use super::Lane;
use crate::supervise::signal::LocalSignal;

/// How often a polling worker fires due timers and looks for a stop
/// request (the wheel's resolution is one millisecond).
const HOUSEKEEPING: Duration = Duration::from_micros(100);

/// `pause` instructions between two polls of the ring.
const SPIN_PAUSES: u32 = 64;

/// A worker's busy-poll state: the window, and the signal that there was
/// activity.
pub struct BusyPoll {
    window: Duration,
    kicked: Cell<bool>,
    /// The poller's waker while it sleeps waiting for activity.
    idle: Cell<Option<Waker>>,
}

impl BusyPoll {
    pub fn new(window: Duration) -> BusyPoll {
        BusyPoll {
            window,
            kicked: Cell::new(false),
            idle: Cell::new(None),
        }
    }

    pub fn enabled(&self) -> bool {
        !self.window.is_zero()
    }

    /// There was activity: poll (again) for a full window from now.
    #[inline]
    pub fn kick(&self) {
        if self.window.is_zero() {
            return;
        }
        self.kicked.set(true);
        if let Some(w) = self.idle.take() {
            w.wake();
        }
    }

    /// Waits for the next kick.
    async fn kicked(&self) {
        std::future::poll_fn(|cx| {
            if self.kicked.take() {
                Poll::Ready(())
            } else {
                self.idle.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
        .await
    }
}

/// The two tasks' wakers.
#[derive(Default)]
struct Pair {
    poller: Cell<Option<Waker>>,
    partner: Cell<Option<Waker>>,
}

/// Runs the worker's poller until shutdown or a stop request (`stop` is a
/// clone of the receiver the worker's main future waits on).
pub async fn run(lane: Rc<Lane>, shutdown: Rc<LocalSignal>, stop: flume::Receiver<()>) {
    let window = lane.busy.window;
    let pair = Rc::new(Pair::default());
    let partner = pair.clone();
    monoio::spawn(std::future::poll_fn(move |cx| {
        partner.partner.set(Some(cx.waker().clone()));
        if let Some(p) = partner.poller.take() {
            p.wake();
        }
        Poll::<()>::Pending
    }));
    loop {
        lane.busy.kicked().await;
        crate::supervise::fault(crate::supervise::Component::BusyPoll);
        let mut now = Instant::now();
        let mut until = now + window;
        let mut housekeeping = now + HOUSEKEEPING;
        loop {
            bounce(&pair).await;
            // Each round is one `io_uring_enter`; a short pause between
            // rounds spares the kernel (and a sibling hyperthread) most of
            // them for a microsecond or two of added latency.
            for _ in 0..SPIN_PAUSES {
                std::hint::spin_loop();
            }
            now = Instant::now();
            if lane.busy.kicked.take() {
                until = now + window;
            }
            if now >= housekeeping {
                housekeeping = now + HOUSEKEEPING;
                crate::timer::fire_due(now);
                if !stop.is_empty() || stop.is_disconnected() || shutdown.is_fired() {
                    return;
                }
            }
            if now >= until {
                break;
            }
        }
    }
}

/// One round of the runtime's loop: hand the turn to the partner task,
/// which hands it back.
async fn bounce(pair: &Pair) {
    let mut handed = false;
    std::future::poll_fn(|cx| {
        if handed {
            return Poll::Ready(());
        }
        handed = true;
        pair.poller.set(Some(cx.waker().clone()));
        if let Some(p) = pair.partner.take() {
            p.wake();
        }
        Poll::Pending
    })
    .await
}
