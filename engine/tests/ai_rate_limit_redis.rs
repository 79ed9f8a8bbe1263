//! ai-rate-limiting with `policy: redis` and `redis-cluster` against real
//! redis-server processes: two ringway processes share one budget (fleet
//! mode), AUTH and database selection, a dead or stalled Redis answered
//! per `allow_degradation` (fail closed with 503, or fail open) without
//! ever hanging a request, a three-node cluster with redirects, TLS with
//! the certificate verified, Redis Sentinel (a real failover, and a
//! master demoted under a kept connection that answers `READONLY`), and
//! pooled connections (kept apart per database, replaced after
//! `redis_keepalive_timeout`). Leased budgets: `ai_rate_limit_lease.rs`.
#![allow(clippy::disallowed_types, clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::ai::{cost_of_ask, mocks, redis_limit, seed_priority_route, ASK};
use common::redis::{RedisCluster, RedisSentinel, RedisServer};
use common::{Conn, Gateway};
use serde_json::json;

/// Sends `n` requests one after another, alternating gateways, and counts
/// those that passed. A Redis budget is charged right after the answer has
/// gone out (a remote store never delays the answer), so each request
/// waits a moment for the previous one's charge to land.
fn passed(gws: &[&Gateway], n: usize) -> usize {
    (0..n)
        .filter(|i| {
            let r = Conn::connect(gws[i % gws.len()].addr).post_json("/anything", ASK);
            match r.status {
                200 => {
                    std::thread::sleep(Duration::from_millis(100));
                    true
                }
                503 => false,
                s => panic!("unexpected {s}: {}", r.text()),
            }
        })
        .count()
}

#[test]
fn two_gateways_share_one_budget_through_redis() {
    let redis = RedisServer::start(&["--requirepass", "s3cret"]);
    let m = mocks(&["openai", "deepseek"]);
    let cost = cost_of_ask(&m);
    let store = json!({"policy": "redis", "redis_host": "127.0.0.1", "redis_port": redis.port,
                       "redis_password": "s3cret", "redis_database": 3});
    let cfg = seed_priority_route(&m, redis_limit(3 * cost, store), false);
    let a = Gateway::start_json(cfg.clone());
    let b = Gateway::start_json(cfg);
    // Sequential requests: exactly the budget passes, across both processes
    // (each alone would let 3 through).
    assert_eq!(passed(&[&a, &b], 8), 3);
    // The counter lives in database 3 under ringway's key, with the window.
    let cli = |args: &[&str]| {
        let out = std::process::Command::new("redis-cli")
            .args([
                "-p",
                &redis.port.to_string(),
                "-a",
                "s3cret",
                "--no-auth-warning",
                "-n",
                "3",
            ])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let key = cli(&["--scan"]);
    assert!(
        key.starts_with("ringway:ai-rate-limiting:{") && key.ends_with(":openai-instance}"),
        "{key}"
    );
    assert!(cli(&["GET", &key]).parse::<u64>().unwrap() >= 3 * cost);
    let ttl: i64 = cli(&["TTL", &key]).parse().unwrap();
    assert!((1..=600).contains(&ttl), "{ttl}");
}

/// Two budgets on one Redis server in different databases, on one worker:
/// each request's counter lands in its own route's database (pooled
/// connections are kept per login and database, not per server).
#[test]
fn budgets_in_different_databases_of_one_server_stay_apart() {
    let redis = RedisServer::start(&[]);
    let m = mocks(&["openai", "deepseek"]);
    let route = |name: &str, db: u32| {
        let store = json!({"policy": "redis", "redis_host": "127.0.0.1",
                           "redis_port": redis.port, "redis_database": db});
        let mut doc = seed_priority_route(&m, redis_limit(1_000_000, store), false);
        let r = &mut doc["services"][0]["routes"][0];
        r["name"] = json!(name);
        r["uris"] = json!([format!("/{name}")]);
        doc["services"][0]["routes"][0].clone()
    };
    let mut doc = seed_priority_route(&m, json!({"limit": 1, "time_window": 1}), false);
    doc["services"][0]["routes"] = json!([route("one", 1), route("two", 2)]);
    doc["gateway"] = json!({"workers": 1});
    let gw = Gateway::start_json(doc);
    let mut c = Conn::connect(gw.addr);
    for path in ["/one", "/two", "/one", "/two"] {
        assert_eq!(c.post_json(path, ASK).status, 200);
        // Charged right after the answer.
        std::thread::sleep(Duration::from_millis(100));
    }
    let keys = |db: &str| {
        let out = std::process::Command::new("redis-cli")
            .args(["-p", &redis.port.to_string(), "-n", db, "--scan"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let (one, two) = (keys("1"), keys("2"));
    assert!(
        one.contains("route/one") && !one.contains("route/two"),
        "db 1: {one}"
    );
    assert!(
        two.contains("route/two") && !two.contains("route/one"),
        "db 2: {two}"
    );
}

/// `redis_keepalive_timeout`: an idle connection is reused within it and
/// replaced after it (APISIX's redis fields; one worker).
#[test]
fn idle_redis_connections_are_reused_until_the_keepalive_timeout() {
    let redis = RedisServer::start(&[]);
    let m = mocks(&["openai", "deepseek"]);
    let store = json!({"policy": "redis", "redis_host": "127.0.0.1", "redis_port": redis.port,
                       "redis_keepalive_timeout": 1000, "redis_keepalive_pool": 4});
    let mut doc = seed_priority_route(&m, redis_limit(1_000_000, store), false);
    doc["gateway"] = json!({"workers": 1});
    let gw = Gateway::start_json(doc);
    // Each INFO is a connection of its own, counted in its own answer.
    let received = || -> u64 {
        let info = redis.cmd(&["INFO", "stats"]).unwrap();
        info.lines()
            .find_map(|l| l.strip_prefix("total_connections_received:"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let ask = || {
        assert_eq!(
            Conn::connect(gw.addr).post_json("/anything", ASK).status,
            200
        )
    };
    let before = received();
    for _ in 0..3 {
        ask();
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(received() - before - 1, 1, "one connection, reused");
    std::thread::sleep(Duration::from_millis(1200));
    let before = received();
    ask();
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        received() - before - 1,
        1,
        "the idle one expired: a new one"
    );

    for (field, v) in [
        ("redis_keepalive_timeout", 999),
        ("redis_keepalive_pool", 0),
    ] {
        let mut bad = redis_limit(100, json!({"policy": "redis", "redis_host": "h"}));
        bad[field] = json!(v);
        common::assert_refused(
            &seed_priority_route(&m, bad, false),
            "ai-rate-limiting",
            field,
        );
    }
    let mut local = redis_limit(100, json!({}));
    local["redis_keepalive_pool"] = json!(4);
    common::assert_refused(
        &seed_priority_route(&m, local, false),
        "ai-rate-limiting",
        "redis_keepalive_pool",
    );
}

/// `rules` with `policy: redis`: a key value's budget is shared by two
/// gateways, and each value has its own (one Redis key each).
#[test]
fn rule_budgets_per_key_are_shared_through_redis() {
    let redis = RedisServer::start(&[]);
    let m = mocks(&["openai", "deepseek"]);
    let cost = cost_of_ask(&m);
    let limit = json!({"rules": [{"count": 2 * cost, "time_window": 600, "key": "$http_x_user"}],
                       "policy": "redis", "redis_host": "127.0.0.1", "redis_port": redis.port});
    let cfg = seed_priority_route(&m, limit, false);
    let a = Gateway::start_json(cfg.clone());
    let b = Gateway::start_json(cfg);
    let passed_for = |user: &str, n: usize| {
        (0..n)
            .filter(|i| {
                let gw = if i % 2 == 0 { &a } else { &b };
                let r =
                    Conn::connect(gw.addr).post_json_with("/anything", ASK, &[("x-user", user)]);
                match r.status {
                    200 => {
                        // The Redis charge lands right after the answer.
                        std::thread::sleep(Duration::from_millis(100));
                        true
                    }
                    503 => {
                        assert_eq!(r.header("x-ai-1-ratelimit-remaining"), Some("0"));
                        false
                    }
                    s => panic!("unexpected {s}: {}", r.text()),
                }
            })
            .count()
    };
    assert_eq!(passed_for("alice", 5), 2);
    assert_eq!(passed_for("bob", 5), 2);
    let keys = std::process::Command::new("redis-cli")
        .args(["-p", &redis.port.to_string(), "--scan"])
        .output()
        .unwrap();
    let keys = String::from_utf8_lossy(&keys.stdout);
    let mut keys: Vec<&str> = keys.lines().collect();
    keys.sort();
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(
        keys[0].ends_with(":alice") && keys[1].ends_with(":bob"),
        "{keys:?}"
    );
}

/// `redis_ssl`: budgets over TLS to a real redis-server's TLS port, the
/// certificate verified against `gateway.ssl_trusted_certificate` by
/// default; without that CA the store is unreachable (fail closed, the
/// certificate named in the log), unless `redis_ssl_verify: false`.
#[test]
fn budgets_over_tls_with_the_certificate_verified() {
    let pki = common::certs::pki();
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = pki.write(dir.path());
    let tls_port = common::redis::free_port();
    let (ca_s, cert_s, key_s) = (
        ca.to_str().unwrap(),
        cert.to_str().unwrap(),
        key.to_str().unwrap(),
    );
    let tls_port_s = tls_port.to_string();
    let redis = RedisServer::start(&[
        "--tls-port",
        &tls_port_s,
        "--tls-cert-file",
        cert_s,
        "--tls-key-file",
        key_s,
        "--tls-ca-cert-file",
        ca_s,
        "--tls-auth-clients",
        "no",
    ]);
    let m = mocks(&["openai", "deepseek"]);
    let cost = cost_of_ask(&m);
    let store = |verify: Option<bool>| {
        let mut s = json!({"policy": "redis", "redis_host": "localhost", "redis_port": tls_port,
                           "redis_ssl": true, "redis_timeout": 2000});
        if let Some(v) = verify {
            s["redis_ssl_verify"] = json!(v);
        }
        s
    };
    let mut cfg = seed_priority_route(&m, redis_limit(2 * cost, store(None)), false);
    cfg["gateway"] = json!({"ssl_trusted_certificate": ca_s});
    let gw = Gateway::start_json(cfg);
    assert_eq!(passed(&[&gw], 4), 2, "{}", gw.stderr());
    // The counter is in that Redis (read over its plain port).
    let keys = redis.cmd(&["KEYS", "ringway:*"]).unwrap();
    assert!(keys.contains("openai-instance"), "{keys}");

    // The same store without the CA: the certificate is refused.
    let untrusted = Gateway::start_json(seed_priority_route(
        &m,
        redis_limit(1000, store(None)),
        false,
    ));
    let r = Conn::connect(untrusted.addr).post_json("/anything", ASK);
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(
        untrusted.wait_for_log("certificate", Duration::from_secs(5)),
        "{}",
        untrusted.stderr()
    );
    // …unless verification is turned off.
    let unverified = Gateway::start_json(seed_priority_route(
        &m,
        redis_limit(1000, store(Some(false))),
        false,
    ));
    assert_eq!(
        Conn::connect(unverified.addr)
            .post_json("/anything", ASK)
            .status,
        200
    );
}

/// A master, its replica and a sentinel watching the master as
/// `mymaster`.
fn sentinel_group() -> (RedisServer, RedisServer, RedisSentinel) {
    let master = RedisServer::start(&[]);
    let replica = RedisServer::start(&["--replicaof", "127.0.0.1", &master.port.to_string()]);
    let sentinel = RedisSentinel::start("mymaster", master.port);
    (master, replica, sentinel)
}

/// The seed route budgeted at 100 requests in Redis found through
/// `sentinel`; with `workers`.
fn sentinel_gateway(m: &mock_llm::MockServer, sentinel: &RedisSentinel, workers: u32) -> Gateway {
    let store = json!({"policy": "redis-sentinel", "redis_master_name": "mymaster",
                       "redis_sentinels": [{"host": "127.0.0.1", "port": sentinel.port}],
                       "redis_timeout": 2000});
    let mut doc = seed_priority_route(m, redis_limit(100 * cost_of_ask(m), store), false);
    doc["gateway"] = json!({ "workers": workers });
    Gateway::start_json(doc)
}

/// Tokens `server` holds as openai-instance's count.
fn instance_used(server: &RedisServer) -> u64 {
    let key = "ringway:ai-rate-limiting:{route/ai-proxy-multi-route:openai-instance}";
    let r = server.cmd(&["GET", key]).unwrap();
    r.lines().nth(1).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// `policy: redis-sentinel`: the master is found through a real sentinel,
/// and after a failover (the old master now a read-only replica) the
/// gateway asks again and keeps counting on the new master.
#[test]
fn sentinel_finds_the_master_and_follows_a_failover() {
    let (master, replica, sentinel) = sentinel_group();
    let m = mocks(&["openai", "deepseek"]);
    let cost = cost_of_ask(&m);
    let gw = sentinel_gateway(&m, &sentinel, 2);
    assert_eq!(passed(&[&gw], 2), 2, "{}", gw.stderr());
    assert!(master
        .cmd(&["KEYS", "ringway:*"])
        .unwrap()
        .contains("openai-instance"));

    // Fail over to the replica once the sentinel has seen it.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let r = RedisServer::cmd_on(sentinel.port, &["SENTINEL", "FAILOVER", "mymaster"]);
        if r.starts_with("+OK") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no failover: {r}");
        std::thread::sleep(Duration::from_millis(500));
    }
    while !sentinel
        .master_addr("mymaster")
        .contains(&replica.port.to_string())
    {
        assert!(
            std::time::Instant::now() < deadline,
            "failover did not finish"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The old master turns replica: writes there are refused (READONLY),
    // so the gateway asks the sentinel again and writes to the new one.
    while !master.cmd(&["ROLE"]).unwrap().contains("slave") {
        assert!(
            std::time::Instant::now() < deadline,
            "old master not demoted"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // (What it held before depends on how far replication had got.)
    let before = instance_used(&replica);
    assert_eq!(passed(&[&gw], 2), 2, "{}", gw.stderr());
    let after = instance_used(&replica);
    assert!(
        after >= before + 2 * cost,
        "the new master counts: {before} → {after}"
    );
}

/// A master demoted without its clients being dropped (here by hand:
/// `REPLICAOF` keeps client connections, where a sentinel-run failover
/// kills them) answers the gateway's kept connection with `READONLY`:
/// the gateway takes that as a failover, asks the sentinels again and
/// counts on the master they name now.
#[test]
fn sentinel_readonly_answer_sends_the_gateway_back_to_the_sentinels() {
    let (old, new, sentinel) = sentinel_group();
    let m = mocks(&["openai", "deepseek"]);
    let cost = cost_of_ask(&m);
    // One worker: the one that learned the old master is the one asked.
    let gw = sentinel_gateway(&m, &sentinel, 1);
    assert_eq!(passed(&[&gw], 2), 2, "{}", gw.stderr());

    // Swap the roles behind the sentinel's back, then point it at the new
    // master; the gateway's idle connection to the old one stays open.
    assert!(
        RedisServer::cmd_on(sentinel.port, &["SENTINEL", "REMOVE", "mymaster"]).starts_with("+OK")
    );
    assert!(new
        .cmd(&["REPLICAOF", "NO", "ONE"])
        .unwrap()
        .starts_with("+OK"));
    let new_port = new.port.to_string();
    assert!(old
        .cmd(&["REPLICAOF", "127.0.0.1", &new_port])
        .unwrap()
        .starts_with("+OK"));
    let monitor = [
        "SENTINEL",
        "MONITOR",
        "mymaster",
        "127.0.0.1",
        &new_port,
        "1",
    ];
    assert!(RedisServer::cmd_on(sentinel.port, &monitor).starts_with("+OK"));
    assert!(sentinel.master_addr("mymaster").contains(&new_port));

    let before = instance_used(&new);
    assert_eq!(passed(&[&gw], 2), 2, "{}", gw.stderr());
    assert!(
        instance_used(&new) >= before + 2 * cost,
        "the new master counts: {before} → {}",
        instance_used(&new)
    );
    // The way there was a READONLY answer on the kept connection, not a
    // dropped one.
    let errors = old.cmd(&["INFO", "errorstats"]).unwrap();
    assert!(errors.contains("errorstat_READONLY"), "{errors}");
}

#[test]
fn redis_down_fails_closed_or_open_as_configured() {
    let m = mocks(&["openai", "deepseek"]);
    // Nobody listens on this port.
    let port = common::redis::free_port();
    let store = |degrade: bool| {
        json!({"policy": "redis", "redis_host": "127.0.0.1", "redis_port": port,
               "redis_timeout": 300, "allow_degradation": degrade})
    };
    let closed = Gateway::start_json(seed_priority_route(
        &m,
        redis_limit(1000, store(false)),
        false,
    ));
    let r = Conn::connect(closed.addr).post_json("/anything", ASK);
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.json()["error_msg"]
        .as_str()
        .unwrap()
        .contains("rate limit store unavailable"));
    assert!(closed.wait_for_log("refusing the request", Duration::from_secs(5)));
    // The log names the address once.
    let err = closed.stderr();
    assert!(
        err.contains(&format!("connect to 127.0.0.1:{port} failed"))
            && !err.contains(&format!("127.0.0.1:{port}: connect")),
        "{err}"
    );
    assert_eq!(
        m.instance("openai").requests().len(),
        0,
        "nothing reached the provider"
    );

    let open = Gateway::start_json(seed_priority_route(
        &m,
        redis_limit(1000, store(true)),
        false,
    ));
    let r = Conn::connect(open.addr).post_json("/anything", ASK);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(open.wait_for_log("letting the request through", Duration::from_secs(5)));

    // A leased budget's claim fails the same way.
    let mut leased = store(false);
    leased["redis_lease_tokens"] = json!(1000);
    let gw = Gateway::start_json(seed_priority_route(&m, redis_limit(1000, leased), false));
    let r = Conn::connect(gw.addr).post_json("/anything", ASK);
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(gw.wait_for_log("claim failed, refusing", Duration::from_secs(5)));
}

#[test]
fn a_stalled_redis_times_out_instead_of_hanging_requests() {
    let redis = RedisServer::start(&["--enable-debug-command", "yes"]);
    let m = mocks(&["openai", "deepseek"]);
    let store = json!({"policy": "redis", "redis_host": "127.0.0.1", "redis_port": redis.port,
                       "redis_timeout": 200});
    let gw = Gateway::start_json(seed_priority_route(&m, redis_limit(1000, store), false));
    assert_eq!(
        Conn::connect(gw.addr).post_json("/anything", ASK).status,
        200
    );
    // Freeze the server for longer than the client below waits.
    let port = redis.port;
    let sleeper = std::thread::spawn(move || {
        let r = RedisServer::cmd_on(port, &["DEBUG", "SLEEP", "6"]);
        assert!(r.contains("OK"), "{r}");
    });
    std::thread::sleep(Duration::from_millis(200));
    let mut c = Conn::connect(gw.addr);
    c.set_timeout(Duration::from_secs(4));
    let r = c.post_json("/anything", ASK);
    assert_eq!(r.status, 503, "{}", r.text());
    sleeper.join().unwrap();
    // The timeout marked Redis down; once the background probe reaches it
    // again, requests pass (the broken connection was not reused).
    assert!(gw.wait_for_log("redis is down", Duration::from_secs(5)));
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while Conn::connect(gw.addr).post_json("/anything", ASK).status != 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "redis never came back"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(gw.wait_for_log("redis answers again", Duration::from_secs(5)));
}

#[test]
fn redis_cluster_shares_the_budget_and_follows_redirects() {
    let cluster = RedisCluster::start();
    let m = mocks(&["openai", "deepseek"]);
    let cost = cost_of_ask(&m);
    // Each gateway knows a different single seed node, so at least two of
    // them must follow a MOVED redirect to reach the key's owner.
    let gws: Vec<Gateway> = cluster
        .nodes
        .iter()
        .map(|n| {
            let store = json!({"policy": "redis-cluster", "redis_cluster_nodes": [n.addr()],
                               "redis_cluster_name": "test-cluster"});
            Gateway::start_json(seed_priority_route(&m, redis_limit(4 * cost, store), false))
        })
        .collect();
    let refs: Vec<&Gateway> = gws.iter().collect();
    assert_eq!(passed(&refs, 9), 4);
}
