//! The per-worker timer wheel and the task that fires it.
//!
//! A hashed wheel of 2^16 one-millisecond slots (65.5 s per turn); each
//! slot is a doubly linked list of entries threaded through one slab, and
//! a bitmap marks non-empty slots. Insert and cancel are O(1) with no
//! allocation once the slab has grown; deadlines beyond one turn stay in
//! their slot until their turn comes. One driver task per worker sleeps
//! (on a single monoio timer) until the earliest non-empty slot, fires what
//! is due and re-arms; an insert earlier than the armed time wakes it.

use std::cell::RefCell;
use std::task::Waker;
use std::time::{Duration, Instant};

const SLOT_BITS: u32 = 16;
const SLOTS: usize = 1 << SLOT_BITS;
const MASK: u64 = SLOTS as u64 - 1;
const NIL: u32 = u32::MAX;

/// A registered deadline: where it sits and which use of the slot it is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Key {
    index: u32,
    gen: u32,
}

struct Entry {
    tick: u64,
    waker: Option<Waker>,
    prev: u32,
    next: u32,
    /// Bumped whenever the entry is fired or freed, so a stale [`Key`]
    /// can tell it no longer owns it.
    gen: u32,
}

pub struct Wheel {
    epoch: Instant,
    entries: Vec<Entry>,
    free: u32,
    heads: Box<[u32]>,
    occupied: Box<[u64]>,
    /// Every tick before this one has been fired.
    done: u64,
    live: usize,
    /// The driver's waker and the tick it sleeps until (`u64::MAX`:
    /// parked with nothing to wait for).
    driver: Option<Waker>,
    armed: u64,
    driver_running: bool,
    /// Which driver is current (see [`forget_driver`]).
    driver_gen: u64,
}

thread_local! {
    static WHEEL: RefCell<Wheel> = RefCell::new(Wheel::new());
}

/// Runs `f` on this thread's wheel.
pub fn with<R>(f: impl FnOnce(&mut Wheel) -> R) -> R {
    WHEEL.with(|w| f(&mut w.borrow_mut()))
}

/// Like [`with`], or `None` once the thread is tearing down.
pub fn try_with<R>(f: impl FnOnce(&mut Wheel) -> R) -> Option<R> {
    WHEEL.try_with(|w| f(&mut w.borrow_mut())).ok()
}

impl Wheel {
    fn new() -> Wheel {
        Wheel {
            epoch: Instant::now(),
            entries: Vec::new(),
            free: NIL,
            heads: Box::new([]),
            occupied: Box::new([]),
            done: 0,
            live: 0,
            driver: None,
            armed: u64::MAX,
            driver_running: false,
            driver_gen: 0,
        }
    }

    /// The first tick at or after `at` (a deadline never fires early).
    pub fn tick_at(&self, at: Instant) -> u64 {
        let d = at.saturating_duration_since(self.epoch);
        let ms = d.as_millis() as u64;
        if d > Duration::from_millis(ms) {
            ms + 1
        } else {
            ms
        }
    }

    fn now_tick(&self) -> u64 {
        self.tick_of(Instant::now())
    }

    /// The tick `at` falls in (rounded down, unlike [`Wheel::tick_at`]).
    fn tick_of(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_millis() as u64
    }

    fn instant_of(&self, tick: u64) -> Instant {
        self.epoch + Duration::from_millis(tick)
    }

    /// Wakes the driver when the tick it sleeps until has come. Its monoio
    /// timer only fires when the runtime parks, and a busy-polling worker
    /// does not park (see `server::busy_poll`).
    pub fn wake_driver_if_due(&self, now: Instant) {
        if self.armed == u64::MAX {
            return;
        }
        if self.tick_of(now) >= self.armed {
            if let Some(d) = &self.driver {
                d.wake_by_ref();
            }
        }
    }

    /// Entries waiting (for tests and metrics).
    pub fn live(&self) -> usize {
        self.live
    }

    /// When this thread has no running driver: marks one running and
    /// returns its generation (the caller spawns it).
    pub fn claim_driver(&mut self) -> Option<u64> {
        (!std::mem::replace(&mut self.driver_running, true)).then_some(self.driver_gen)
    }

    /// Whether `tick` has already passed (fire at once, do not insert).
    pub fn is_past(&self, tick: u64) -> bool {
        tick < self.done
    }

    /// Registers `waker` to be woken at `tick`. Returns the waker to wake
    /// now (the driver's, when this deadline is earlier than it sleeps),
    /// to be woken after the wheel is released.
    pub fn insert(&mut self, tick: u64, waker: Waker) -> (Key, Option<Waker>) {
        if self.heads.is_empty() {
            self.heads = vec![NIL; SLOTS].into_boxed_slice();
            self.occupied = vec![0u64; SLOTS / 64].into_boxed_slice();
            self.done = self.now_tick().min(tick);
        }
        let index = if self.free != NIL {
            let i = self.free;
            self.free = self.entries[i as usize].next;
            i
        } else {
            self.entries.push(Entry {
                tick: 0,
                waker: None,
                prev: NIL,
                next: NIL,
                gen: 0,
            });
            (self.entries.len() - 1) as u32
        };
        let slot = (tick & MASK) as usize;
        let head = self.heads[slot];
        {
            let e = &mut self.entries[index as usize];
            e.tick = tick;
            e.waker = Some(waker);
            e.prev = NIL;
            e.next = head;
        }
        if head != NIL {
            self.entries[head as usize].prev = index;
        }
        self.heads[slot] = index;
        self.occupied[slot / 64] |= 1 << (slot % 64);
        self.live += 1;
        let gen = self.entries[index as usize].gen;
        // Wake the driver for an earlier deadline than it sleeps until.
        let wake = if tick < self.armed {
            self.driver.take()
        } else {
            None
        };
        (Key { index, gen }, wake)
    }

    /// Whether `key` still waits (not fired, not cancelled).
    pub fn is_pending(&self, key: Key) -> bool {
        self.entries
            .get(key.index as usize)
            .is_some_and(|e| e.gen == key.gen)
    }

    /// Swaps in a new waker for a pending entry; returns the old one, to
    /// be dropped after the wheel is released.
    pub fn set_waker(&mut self, key: Key, waker: &Waker) -> Option<Waker> {
        let e = &mut self.entries[key.index as usize];
        match &e.waker {
            Some(w) if w.will_wake(waker) => None,
            _ => e.waker.replace(waker.clone()),
        }
    }

    /// Cancels a pending entry; returns its waker (drop it after release).
    pub fn remove(&mut self, key: Key) -> Option<Waker> {
        if !self.is_pending(key) {
            return None;
        }
        let waker = self.unlink(key.index);
        self.release(key.index);
        waker
    }

    fn unlink(&mut self, index: u32) -> Option<Waker> {
        let (tick, prev, next, waker) = {
            let e = &mut self.entries[index as usize];
            (e.tick, e.prev, e.next, e.waker.take())
        };
        let slot = (tick & MASK) as usize;
        if prev == NIL {
            self.heads[slot] = next;
            if next == NIL {
                self.occupied[slot / 64] &= !(1 << (slot % 64));
            }
        } else {
            self.entries[prev as usize].next = next;
        }
        if next != NIL {
            self.entries[next as usize].prev = prev;
        }
        self.live -= 1;
        waker
    }

    fn release(&mut self, index: u32) {
        let e = &mut self.entries[index as usize];
        e.gen = e.gen.wrapping_add(1);
        e.next = self.free;
        e.prev = NIL;
        self.free = index;
    }

    /// Fires every entry due by now into `woken`; returns the next tick
    /// worth waking at, if any entry waits.
    fn advance(&mut self, woken: &mut Vec<Waker>) -> Option<u64> {
        let now = self.now_tick();
        if self.heads.is_empty() {
            return None;
        }
        if now >= self.done {
            let span = (now - self.done + 1).min(SLOTS as u64);
            let mut t = self.done;
            while t < self.done + span {
                let slot = (t & MASK) as usize;
                // Skip to the next occupied slot within the span.
                match self.next_occupied(slot, (self.done + span - t) as usize) {
                    None => break,
                    Some(skip) => t += skip as u64,
                }
                let slot = (t & MASK) as usize;
                let mut i = self.heads[slot];
                while i != NIL {
                    let next = self.entries[i as usize].next;
                    if self.entries[i as usize].tick <= now {
                        if let Some(w) = self.unlink(i) {
                            woken.push(w);
                        }
                        self.release(i);
                    }
                    i = next;
                }
                t += 1;
            }
            self.done = now + 1;
        }
        if self.live == 0 {
            return None;
        }
        let slot = (self.done & MASK) as usize;
        self.next_occupied(slot, SLOTS)
            .map(|skip| self.done + skip as u64)
    }

    /// Distance from `slot` to the first occupied slot among the next
    /// `within` slots (wrapping).
    fn next_occupied(&self, slot: usize, within: usize) -> Option<usize> {
        let mut off = 0usize;
        while off < within {
            let s = (slot + off) & (SLOTS - 1);
            let word = self.occupied[s / 64] >> (s % 64);
            if word != 0 {
                let d = word.trailing_zeros() as usize;
                // Bits past the end of this word were shifted out; `d` is
                // within the word.
                return (off + d < within).then_some(off + d);
            }
            off += 64 - s % 64;
        }
        None
    }
}

/// Forgets this thread's driver (its runtime ended); the next deadline
/// starts a new one on the runtime then running.
pub fn forget_driver() {
    let stale = with(|w| {
        w.driver_running = false;
        w.driver_gen += 1;
        w.armed = u64::MAX;
        w.driver.take()
    });
    drop(stale);
}

/// The task that fires the wheel: sleeps on one monoio timer until the
/// earliest occupied slot.
pub struct Driver {
    gen: u64,
    sleep: std::pin::Pin<Box<monoio::time::Sleep>>,
    sleeping_until: Option<u64>,
    woken: Vec<Waker>,
}

impl Driver {
    pub fn new(gen: u64) -> Driver {
        Driver {
            gen,
            sleep: Box::pin(monoio::time::sleep(Duration::from_secs(3600))),
            sleeping_until: None,
            woken: Vec::new(),
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // A new runtime on this thread starts a new driver.
        let gen = self.gen;
        let stale = try_with(|w| {
            if w.driver_gen != gen {
                return None;
            }
            w.driver_running = false;
            w.armed = u64::MAX;
            w.driver.take()
        })
        .flatten();
        drop(stale);
    }
}

impl std::future::Future for Driver {
    type Output = ();

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        crate::supervise::fault(crate::supervise::Component::Timer);
        let this = &mut *self;
        loop {
            let mut woken = std::mem::take(&mut this.woken);
            let (next, at) = with(|w| {
                let next = w.advance(&mut woken);
                w.armed = next.unwrap_or(u64::MAX);
                let old = w.driver.replace(cx.waker().clone());
                drop(old);
                (next, next.map(|t| w.instant_of(t)))
            });
            for waker in woken.drain(..) {
                waker.wake();
            }
            this.woken = woken;
            let (Some(next), Some(at)) = (next, at) else {
                this.sleeping_until = None;
                return std::task::Poll::Pending;
            };
            if this.sleeping_until != Some(next) {
                this.sleep
                    .as_mut()
                    .reset(monoio::time::Instant::from_std(at));
                this.sleeping_until = Some(next);
            }
            if this.sleep.as_mut().poll(cx).is_pending() {
                return std::task::Poll::Pending;
            }
        }
    }
}
