//! Picking an instance: smooth weighted round robin from a shared atomic
//! ticket, and the consistent-hash ring walk, for 2, 16 and 1024 members.

use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use ringway::balance::{ChashRing, WrrCycle};

fn pick(c: &mut Criterion) {
    let mut g = c.benchmark_group("balancer_pick");
    for n in [2usize, 16, 1024] {
        let weights: Vec<u32> = (0..n).map(|i| 1 + (i as u32 % 7)).collect();
        let cycle = WrrCycle::new(&weights);
        let ticket = AtomicU64::new(0);
        g.bench_with_input(BenchmarkId::new("wrr_atomic_ticket", n), &n, |b, _| {
            b.iter(|| cycle.pick(ticket.fetch_add(1, Ordering::Relaxed)))
        });
        let ring = ChashRing::new(&weights);
        let keys: Vec<String> = (0..1024).map(|i| format!("session-{i}")).collect();
        let mut k = 0usize;
        g.bench_with_input(BenchmarkId::new("chash_owner", n), &n, |b, _| {
            b.iter(|| {
                k = (k + 1) % keys.len();
                ring.walk(keys[k].as_bytes()).next()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, pick);
criterion_main!(benches);
