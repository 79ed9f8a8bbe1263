//! What sharing one cache line between workers costs (issue #25's scaling
//! note, results/scaling.md): `fetch_add` on one atomic from one thread,
//! from two threads at once (the line moves between cores on every add:
//! the shared round-robin ticket of an `ai-proxy-multi` group, a local
//! token budget), and from two threads on counters of their own (padded
//! to separate lines: what per-worker state costs). Each thread runs the
//! same number of adds; the time reported is per add, per thread.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use crossbeam_utils::CachePadded;
use ringway::balance::WrrCycle;

/// Runs `op(thread)` `iters` times on each of `threads` threads started
/// together; the wall time of the slowest.
fn together(threads: usize, iters: u64, op: &(dyn Fn(usize) + Sync)) -> Duration {
    let start = std::sync::Barrier::new(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let start = &start;
                s.spawn(move || {
                    start.wait();
                    let t0 = Instant::now();
                    for _ in 0..iters {
                        op(t);
                    }
                    t0.elapsed()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("bench thread"))
            .max()
            .unwrap_or_default()
    })
}

fn contention(c: &mut Criterion) {
    let mut g = c.benchmark_group("cache_line");
    let shared = CachePadded::new(AtomicU64::new(0));
    let own = [
        CachePadded::new(AtomicU64::new(0)),
        CachePadded::new(AtomicU64::new(0)),
    ];
    let cycle = WrrCycle::new(&[8, 2]);
    for threads in [1usize, 2] {
        g.bench_function(format!("shared_fetch_add/{threads}_threads"), |b| {
            b.iter_custom(|iters| {
                together(threads, iters, &|_| {
                    shared.fetch_add(1, Ordering::Relaxed);
                })
            })
        });
        g.bench_function(format!("own_fetch_add/{threads}_threads"), |b| {
            b.iter_custom(|iters| {
                together(threads, iters, &|t| {
                    own[t].fetch_add(1, Ordering::Relaxed);
                })
            })
        });
        g.bench_function(format!("wrr_pick_shared_ticket/{threads}_threads"), |b| {
            b.iter_custom(|iters| {
                together(threads, iters, &|_| {
                    std::hint::black_box(cycle.pick(shared.fetch_add(1, Ordering::Relaxed)));
                })
            })
        });
    }
    g.finish();
}

criterion_group!(benches, contention);
criterion_main!(benches);
