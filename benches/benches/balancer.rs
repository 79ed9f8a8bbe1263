//! Picking an instance: smooth weighted round robin from a shared atomic
//! ticket, and the consistent-hash ring walk, for 2, 16 and 1024 members;
//! and the Responses API affinity table (which instance holds a stored
//! response): remembering an id, recalling a held one and a missing one,
//! among 4 instances.

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

fn affinity(c: &mut Criterion) {
    use ringway::config::FieldPath;
    use ringway::plugins::ai_proxy_multi::AiProxyMulti;
    use ringway::plugins::shared::Carry;
    let inst = |n: usize| serde_json::json!({"name": format!("account-{n}"), "provider": "openai", "weight": 1, "auth": {"header": {"Authorization": "Bearer k"}}});
    let v = serde_json::json!({"instances": (0..4).map(inst).collect::<Vec<_>>()});
    let mut carry = Carry::new(None);
    let mut cx = ringway::plugins::CompileCx {
        owner: std::sync::Arc::from("route/bench"),
        carry: &mut carry,
        metadata: &Default::default(),
    };
    let p = AiProxyMulti::compile(&v, &FieldPath::root(), &mut cx).expect("a valid plugin");
    let ids: Vec<String> = (0..4096)
        .map(|i| format!("resp_68a1b2c3d4e5f6{i:08x}0a1b2c3d4e5f60718293a4b5c6d7e8f9"))
        .collect();
    for (i, id) in ids.iter().enumerate() {
        p.affinity.remember(id.as_bytes(), &p.instances[i % 4]);
    }
    let mut g = c.benchmark_group("response_affinity");
    let mut k = 0usize;
    g.bench_function("remember", |b| {
        b.iter(|| {
            k = (k + 1) % ids.len();
            p.affinity.remember(ids[k].as_bytes(), &p.instances[k % 4])
        })
    });
    g.bench_function("recall_held", |b| {
        b.iter(|| {
            k = (k + 1) % ids.len();
            p.affinity.recall(ids[k].as_bytes(), &p.instances)
        })
    });
    g.bench_function("recall_unknown", |b| {
        let unknown: &[u8] = b"resp_68a1b2c3d4e5f6ffffffff0a1b2c3d4e5f60718293a4b5c6d7e8f9";
        b.iter(|| {
            p.affinity
                .recall(std::hint::black_box(unknown), &p.instances)
        })
    });
    g.finish();
}

criterion_group!(benches, pick, affinity);
criterion_main!(benches);
