//! The local ai-rate-limiting policy on the request path: checking an
//! instance's budget (one atomic load) and charging a finished request's
//! tokens (one compare-and-swap), alone and with a second thread charging
//! the same window (two workers sharing one budget); and a `rules` budget,
//! whose window is found per request by its key value (`$http_x_user`:
//! the header read, the lock-free map looked up, the window checked).

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

fn rule(c: &mut Criterion) {
    use ringway::http::vars::VarSource;
    use ringway::http::{HeadLimits, RequestHead};
    use ringway::plugins::ai_rate_limiting::rules::{Amount, KeyedWindows, Rule, RuleCounter};

    let mut g = c.benchmark_group("rate_limit_rule");
    let rule = Rule {
        count: Amount::Fixed(10_000),
        window: Amount::Fixed(3600),
        key: "$http_x_user".into(),
        prefix: "user".into(),
        counter: RuleCounter::Local(Arc::new(KeyedWindows::default()), 100_000),
    };
    let head = RequestHead::parse(
        bytes::Bytes::from_static(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nX-User: alice\r\nContent-Length: 2\r\n\r\n",
        ),
        &HeadLimits::default(),
        Vec::new(),
    )
    .expect("head");
    let vars = VarSource {
        head: &head,
        peer: "127.0.0.1:1".parse().expect("addr"),
        consumer: None,
        tls: false,
    };
    // Many keys already known, as on a busy gateway.
    for i in 0..10_000 {
        let h = RequestHead::parse(
            bytes::Bytes::from(format!(
                "GET / HTTP/1.1\r\nHost: gw\r\nX-User: u{i}\r\n\r\n"
            )),
            &HeadLimits::default(),
            Vec::new(),
        )
        .expect("head");
        let v = VarSource { head: &h, ..vars };
        let _ = rule.hit(&v, 1_000);
    }
    g.bench_function("hit_and_check_known_key", |b| {
        b.iter(|| {
            let hit = rule
                .hit(std::hint::black_box(&vars), 1_000)
                .expect("applies");
            match &hit.counter {
                ringway::plugins::ai_rate_limiting::rules::HitCounter::Local(w) => {
                    w.usage(1_000, hit.window_ms).used
                }
                _ => 0,
            }
        })
    });
    g.finish();
}

criterion_group!(benches, window, rule);
criterion_main!(benches);
