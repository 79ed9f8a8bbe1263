//! ai-rate-limiting's `redis_lease_tokens` against a real redis-server:
//! two ringway processes claim one budget in chunks, pass exactly the
//! budget with one Redis call per claim, start over with the next window,
//! and stay within the documented bounds with many clients at once.
#![allow(clippy::disallowed_types, clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::ai::{cost_of_ask, mocks, redis_limit, seed_priority_route, ASK};
use common::redis::RedisServer;
use common::{Conn, Gateway};
use serde_json::json;

/// Calls of `command` the server has answered (`INFO commandstats`).
fn calls(port: u16, command: &str) -> u64 {
    let out = std::process::Command::new("redis-cli")
        .args(["-p", &port.to_string(), "INFO", "commandstats"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("cmdstat_{command}:calls=")))
        .map_or(0, |rest| rest.split(',').next().unwrap().parse().unwrap())
}

/// `redis_lease_tokens`: each gateway claims the shared budget two
/// requests' worth at a time and admits from its claim without asking
/// Redis; together they still pass exactly the budget, with one Redis call
/// per claim instead of two per request; the window's end starts over.
#[test]
fn leased_budgets_are_shared_with_one_redis_call_per_claim() {
    let redis = RedisServer::start(&[]);
    let m = mocks(&["openai", "deepseek"]);
    let cost = cost_of_ask(&m);
    let store = json!({"policy": "redis", "redis_host": "127.0.0.1", "redis_port": redis.port,
                       "redis_lease_tokens": 2 * cost});
    let mut limit = redis_limit(10 * cost, store);
    limit["instances"][0]["time_window"] = json!(3);
    let cfg = seed_priority_route(&m, limit, false);
    let a = Gateway::start_json(cfg.clone());
    let b = Gateway::start_json(cfg);
    let ask = |gw: &Gateway| Conn::connect(gw.addr).post_json("/anything", ASK).status;
    let round = |n: usize| -> usize {
        (0..n)
            .filter(|i| match ask([&a, &b][i % 2]) {
                200 => true,
                503 => false,
                s => panic!("unexpected {s}"),
            })
            .count()
    };
    let t = std::time::Instant::now();
    // No waiting between requests: a claim is charged locally before the
    // answer's last bytes leave.
    assert_eq!(round(24), 10, "exactly the budget, across both gateways");
    // a: claims at its 1st, 3rd, 5th and 7th request; b: 1st, 3rd, 5th (no
    // room left); spent budgets then refuse without asking.
    assert_eq!(calls(redis.port, "eval"), 7);
    // (Commands a script runs are counted too: the claims' own GETs.)
    assert_eq!(calls(redis.port, "get"), 7, "no per-request check");
    assert!(t.elapsed() < Duration::from_secs(3), "still in the window");
    // The next window: a fresh budget.
    std::thread::sleep(
        Duration::from_secs(3).saturating_sub(t.elapsed()) + Duration::from_millis(200),
    );
    assert_eq!(round(24), 10, "{}", a.stderr());
}

/// Leases under concurrency: two gateways (two workers each), eight
/// clients at once, a budget of 40 requests claimed 5 at a time. What
/// passes stays within the documented bounds: at most the budget plus
/// twice what each gateway has in flight (4 requests each), at least the
/// budget less what each may hold claimed and unused (one claim, 5
/// requests, each: one claim at a time per process; requests arriving
/// while it is on its way go on with it).
#[test]
fn leased_budgets_stay_within_their_bounds_under_concurrency() {
    let redis = RedisServer::start(&[]);
    let m = mocks(&["openai", "deepseek"]);
    let cost = cost_of_ask(&m);
    let store = json!({"policy": "redis", "redis_host": "127.0.0.1", "redis_port": redis.port,
                       "redis_lease_tokens": 5 * cost});
    let cfg = seed_priority_route(&m, redis_limit(40 * cost, store), false);
    let a = Gateway::start_json(cfg.clone());
    let b = Gateway::start_json(cfg);
    let passed = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|s| {
        for i in 0..8 {
            let (gw, passed) = (if i % 2 == 0 { &a } else { &b }, &passed);
            s.spawn(move || {
                let mut c = Conn::connect(gw.addr);
                for _ in 0..15 {
                    let r = c.post_json("/anything", ASK);
                    match r.status {
                        200 => {
                            passed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        503 => {}
                        s => panic!("unexpected {s}: {}", r.text()),
                    }
                }
            });
        }
    });
    let passed = passed.into_inner();
    assert!((30..=56).contains(&passed), "{passed} of 120 passed");
    // Redis never counts more than the budget plus what was owed.
    let total: u64 = redis
        .cmd(&["KEYS", "*"])
        .unwrap()
        .lines()
        .find(|l| l.starts_with("ringway:"))
        .map(|k| redis.cmd(&["GET", k]).unwrap())
        .and_then(|v| v.lines().nth(1).and_then(|n| n.parse().ok()))
        .expect("the budget's key");
    assert!(
        total <= 56 * cost,
        "{total} tokens counted, budget {}",
        40 * cost
    );
}
