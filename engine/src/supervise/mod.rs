//! Supervision: no panic ends a long-lived part of the gateway for good.
//!
//! monoio does not catch panics in tasks: one that unwinds out of a task's
//! `poll` unwinds the whole runtime and ends its thread — for a worker,
//! its `SO_REUSEPORT` listeners close and their accept queues are reset.
//! So every long-lived task runs under [`task`] (restarted after a panic),
//! every per-connection task under [`contain`] (the connection closes, the
//! task's siblings go on), and every thread under [`thread`] (restarted
//! with a fresh runtime). A panic is logged with its [`Component`] and
//! counted (`ringway_panics_total{component}`); a component that keeps
//! panicking is restarted with a growing delay instead of spinning.
//!
//! Debug builds (what the test suite runs) carry a fault hook, [`fault`]:
//! `RINGWAY_INJECT_PANIC=accept=1,timer=2` makes those components panic
//! that many times at their fault point. Release builds compile it out.

mod component;
mod fault;
pub mod signal;

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::FutureExt;

pub use component::Component;
pub use fault::fault;

static PANICS: [AtomicU64; Component::ALL.len()] =
    [const { AtomicU64::new(0) }; Component::ALL.len()];

/// Panics caught so far, by component (every component, zeros included).
pub fn panics() -> impl Iterator<Item = (Component, u64)> {
    Component::ALL
        .iter()
        .map(|&c| (c, PANICS[c as usize].load(Ordering::Relaxed)))
}

/// Logs and counts a caught panic.
fn record(component: Component, payload: &(dyn std::any::Any + Send), what: &str) {
    PANICS[component as usize].fetch_add(1, Ordering::Relaxed);
    let msg = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)");
    tracing::error!(component = component.name(), "panic caught: {msg}; {what}");
}

/// Delays between restarts of a component that keeps panicking: none for
/// the first, then doubling from 10 ms to 5 s; a component that ran a
/// minute since its last panic starts over.
struct Backoff {
    streak: u32,
    last: Option<Instant>,
}

impl Backoff {
    const fn new() -> Backoff {
        Backoff {
            streak: 0,
            last: None,
        }
    }

    fn next(&mut self) -> Duration {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) > Duration::from_secs(60))
        {
            self.streak = 0;
        }
        self.last = Some(now);
        let d = match self.streak {
            0 => Duration::ZERO,
            n => Duration::from_millis(10u64 << (n - 1).min(9)).min(Duration::from_secs(5)),
        };
        self.streak = self.streak.saturating_add(1);
        d
    }
}

/// Runs the future `start` makes until it returns; after a panic, logs,
/// counts and starts a new one. The failed future is dropped before the
/// next is made.
pub async fn task<F, Fut>(component: Component, mut start: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut backoff = Backoff::new();
    loop {
        let run = AssertUnwindSafe(start()).catch_unwind().await;
        match run {
            Ok(()) => return,
            Err(p) => {
                record(component, &*p, "restarting it");
                drop(p);
                let d = backoff.next();
                if !d.is_zero() {
                    monoio::time::sleep(d).await;
                }
            }
        }
    }
}

/// Runs `work` (one connection or request); a panic is logged and counted
/// and ends only this work. `None` when it panicked.
///
/// Not an `async fn`: one would keep `work` as its argument next to the
/// future it awaits, twice the size of `work` for every open connection.
pub fn contain<Fut: Future>(
    component: Component,
    work: Fut,
) -> impl Future<Output = Option<Fut::Output>> {
    AssertUnwindSafe(work).catch_unwind().map(move |r| match r {
        Ok(v) => Some(v),
        Err(p) => {
            record(component, &*p, "its connection is closed, the rest goes on");
            None
        }
    })
}

/// Starts a thread named `name` that runs `body` until it returns; after a
/// panic (which has unwound whatever runtime `body` built), logs, counts
/// and runs `body` again on the same thread. A body that builds a monoio
/// runtime calls `crate::timer::forget_driver` before using it: the timer
/// wheel's driver task went with the runtime that unwound.
pub fn thread<F>(
    name: &str,
    component: Component,
    mut body: F,
) -> std::io::Result<std::thread::JoinHandle<()>>
where
    F: FnMut() + Send + 'static,
{
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let mut backoff = Backoff::new();
            loop {
                match std::panic::catch_unwind(AssertUnwindSafe(&mut body)) {
                    Ok(()) => return,
                    Err(p) => {
                        record(component, &*p, "restarting its thread");
                        drop(p);
                        std::thread::sleep(backoff.next());
                    }
                }
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;

    fn count(c: Component) -> u64 {
        panics().find(|(x, _)| *x == c).map_or(0, |(_, n)| n)
    }

    #[test]
    fn a_task_that_panics_is_restarted_until_it_returns() {
        let before = count(Component::PoolSweeper);
        let runs = Rc::new(Cell::new(0));
        let r = runs.clone();
        let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .expect("runtime");
        rt.block_on(task(Component::PoolSweeper, move || {
            let r = r.clone();
            async move {
                r.set(r.get() + 1);
                if r.get() < 3 {
                    panic!("run {}", r.get());
                }
            }
        }));
        assert_eq!(runs.get(), 3);
        assert_eq!(count(Component::PoolSweeper) - before, 2);
    }

    #[test]
    fn contained_work_reports_its_panic_and_the_caller_goes_on() {
        let before = count(Component::AdminRequest);
        let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .build()
            .expect("runtime");
        let (a, b) = rt.block_on(async {
            let a = contain(Component::AdminRequest, async { panic!("boom") }).await;
            let b = contain(Component::AdminRequest, async { 7 }).await;
            (a, b)
        });
        assert_eq!((a, b), (None::<()>, Some(7)));
        assert_eq!(count(Component::AdminRequest) - before, 1);
    }

    /// An open connection's task is mostly the future `contain` wraps:
    /// the wrapper must not hold a second copy of it.
    #[test]
    fn contain_adds_little_to_the_work_it_wraps() {
        let work = async {
            let state = [7u8; 4096];
            std::future::ready(()).await;
            state.iter().map(|&b| usize::from(b)).sum::<usize>()
        };
        let work_size = std::mem::size_of_val(&work);
        let wrapped = contain(Component::Connection, work);
        assert!(work_size >= 4096);
        assert!(
            std::mem::size_of_val(&wrapped) < work_size + 64,
            "{} for {work_size}",
            std::mem::size_of_val(&wrapped)
        );
    }

    #[test]
    fn a_thread_that_panics_runs_again() {
        let before = count(Component::Dns);
        let mut n = 0;
        let t = thread("t", Component::Dns, move || {
            n += 1;
            if n < 3 {
                panic!("run {n}");
            }
        })
        .expect("thread");
        t.join().expect("the supervisor itself never panics");
        assert_eq!(count(Component::Dns) - before, 2);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let mut b = Backoff::new();
        let d: Vec<Duration> = (0..14).map(|_| b.next()).collect();
        assert_eq!(d[0], Duration::ZERO);
        assert_eq!(d[1], Duration::from_millis(10));
        assert_eq!(d[2], Duration::from_millis(20));
        assert_eq!(d[13], Duration::from_secs(5));
    }
}
