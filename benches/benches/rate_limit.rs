//! The local ai-rate-limiting policy on the request path: checking an
//! instance's budget (one atomic load) and charging a finished request's
//! tokens (one compare-and-swap), alone and with a second thread charging
//! the same window (two workers sharing one budget).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use ringway::plugins::ai_rate_limiting::window::LocalWindow;

fn window(c: &mut Criterion) {
    let mut g = c.benchmark_group("rate_limit_local");
    let w = LocalWindow::default();
    let mut now = 1_000u64;
    g.bench_function("check", |b| {
        b.iter(|| {
            now += 1;
            w.usage(std::hint::black_box(now), 60_000)
        })
    });
    g.bench_function("charge", |b| {
        b.iter(|| {
            now += 1;
            w.charge(std::hint::black_box(37), now, 3_600_000)
        })
    });
    // Another core charging the same budget all the time: the worst case
    // for the shared cache line.
    let shared = Arc::new(LocalWindow::default());
    let stop = Arc::new(AtomicBool::new(false));
    let other = {
        let (shared, stop) = (shared.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                shared.charge(1, 1_000, 3_600_000);
            }
        })
    };
    g.bench_function("check_and_charge_contended", |b| {
        b.iter(|| {
            let u = shared.usage(1_000, 3_600_000);
            shared.charge(std::hint::black_box(37), 1_000, 3_600_000);
            u
        })
    });
    stop.store(true, Ordering::Relaxed);
    let _ = other.join();
    g.finish();
}

criterion_group!(benches, window);
criterion_main!(benches);
