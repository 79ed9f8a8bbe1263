//! Nothing an operator writes takes the process down: every number in the
//! configuration has a bound, and an absurd one (`1e20` seconds,
//! `i64::MAX` milliseconds, a trillion pooled connections) is refused with
//! the field's path — by `ringway --check` (exit 2, not a panic's 101)
//! and by the Admin API (400, and it keeps answering). A `cost_expr`
//! nested 300,000 deep is refused the same way instead of overflowing the
//! stack.

#![allow(clippy::disallowed_types, clippy::unwrap_used)]

mod common;

use common::gateway::check;
use common::{Conn, Gateway};
use serde_json::{json, Value};

const KEY: &str = "bounds-admin-key";
const BIG: i64 = i64::MAX;

/// One absurd setting: where it goes, and the path its refusal names.
struct Case {
    /// The route's `upstream` (else the route has only plugins).
    upstream: Option<Value>,
    plugins: Value,
    /// Names the field in the file and over the Admin API alike
    /// (`upstream.…` or `plugins.<name>.…`).
    field: &'static str,
    /// Fields of the route itself.
    route: Value,
}

fn nodes() -> Value {
    json!([{"host": "127.0.0.1", "port": 1980, "weight": 1}])
}

fn upstream(extra: Value) -> Case {
    let mut u = json!({"nodes": nodes()});
    for (k, v) in extra.as_object().unwrap() {
        u[k] = v.clone();
    }
    Case {
        upstream: Some(u),
        plugins: json!({}),
        field: "",
        route: json!({}),
    }
}

fn instance(extra: Value) -> Value {
    let mut i = json!({"name": "a", "provider": "openai-compatible", "weight": 1,
        "auth": {"header": {"Authorization": "Bearer k"}},
        "override": {"endpoint": "http://127.0.0.1:1/v1/chat/completions"}});
    for (k, v) in extra.as_object().unwrap() {
        i[k] = v.clone();
    }
    i
}

fn ai(extra: Value) -> Case {
    let mut p = json!({"instances": [instance(json!({}))]});
    for (k, v) in extra.as_object().unwrap() {
        p[k] = v.clone();
    }
    Case {
        upstream: None,
        plugins: json!({ "ai-proxy-multi": p }),
        field: "",
        route: json!({}),
    }
}

fn with_ai(plugin: &str, conf: Value) -> Case {
    let mut c = ai(json!({}));
    c.plugins[plugin] = conf;
    c
}

fn logger(plugin: &str, conf: Value) -> Case {
    let mut c = upstream(json!({}));
    c.plugins = json!({ plugin: conf });
    c
}

fn http_logger(extra: Value) -> Case {
    let mut conf = json!({"uri": "http://127.0.0.1:1/log"});
    for (k, v) in extra.as_object().unwrap() {
        conf[k] = v.clone();
    }
    logger("http-logger", conf)
}

fn route(fields: Value) -> Case {
    let mut c = upstream(json!({}));
    c.route = fields;
    c
}

fn at(mut c: Case, field: &'static str) -> Case {
    c.field = field;
    c
}

fn cases() -> Vec<Case> {
    let many: Vec<Value> = (0..1025)
        .map(|i| instance(json!({"name": format!("i{i}")})))
        .collect();
    let many_nodes: Vec<Value> = (0..1025)
        .map(|i| json!({"host": "127.0.0.1", "port": 1000 + i, "weight": 1}))
        .collect();
    vec![
        // The issue's three: each panicked in Duration::from_secs_f64.
        at(
            upstream(json!({"keepalive_pool": {"idle_timeout": 1e20}})),
            "upstream.keepalive_pool.idle_timeout",
        ),
        at(
            ai(json!({"sse_heartbeat_interval": 1e20})),
            "plugins.ai-proxy-multi.sse_heartbeat_interval",
        ),
        at(
            ai(json!({"instances": [instance(json!({"checks": {"active": {"timeout": 1e20}}}))]})),
            "plugins.ai-proxy-multi.instances[0].checks.active.timeout",
        ),
        // Accepted, then overflowing an Instant (or a cast) at run time.
        at(
            upstream(json!({"keepalive_pool": {"size": 1_000_000_000_000_i64}})),
            "upstream.keepalive_pool.size",
        ),
        at(
            upstream(json!({"keepalive_pool": {"requests": 10_000_000_000_000_i64}})),
            "upstream.keepalive_pool.requests",
        ),
        at(upstream(json!({"retries": BIG})), "upstream.retries"),
        at(route(json!({"timeout": {"read": 1e20}})), "timeout.read"),
        at(route(json!({"status": BIG})), "status"),
        at(
            upstream(json!({"retry_timeout": 1e20})),
            "upstream.retry_timeout",
        ),
        at(
            upstream(json!({"nodes": [{"host": "127.0.0.1", "port": 1980, "weight": BIG}]})),
            "upstream.nodes[0].weight",
        ),
        at(upstream(json!({"nodes": many_nodes})), "upstream.nodes"),
        at(
            ai(json!({"keepalive_timeout": BIG})),
            "plugins.ai-proxy-multi.keepalive_timeout",
        ),
        at(
            ai(json!({"keepalive_pool": BIG})),
            "plugins.ai-proxy-multi.keepalive_pool",
        ),
        at(
            ai(json!({"max_stream_duration_ms": BIG})),
            "plugins.ai-proxy-multi.max_stream_duration_ms",
        ),
        at(
            ai(json!({"max_retries": BIG})),
            "plugins.ai-proxy-multi.max_retries",
        ),
        at(
            ai(json!({"instances": [instance(json!({"weight": BIG}))]})),
            "plugins.ai-proxy-multi.instances[0].weight",
        ),
        at(
            ai(
                json!({"instances": [instance(json!({"checks": {"active": {"concurrency": BIG}}}))]}),
            ),
            "plugins.ai-proxy-multi.instances[0].checks.active.concurrency",
        ),
        at(
            ai(json!({ "instances": many })),
            "plugins.ai-proxy-multi.instances",
        ),
        at(
            with_ai(
                "ai-rate-limiting",
                json!({"limit": 10, "time_window": 1_000_000_000_000_000_i64}),
            ),
            "plugins.ai-rate-limiting.time_window",
        ),
        at(
            with_ai(
                "ai-rate-limiting",
                json!({"policy": "redis", "redis_host": "127.0.0.1", "limit": 10, "time_window": 60, "redis_timeout": BIG}),
            ),
            "plugins.ai-rate-limiting.redis_timeout",
        ),
        at(
            with_ai(
                "ai-rate-limiting",
                json!({"policy": "redis", "redis_host": "127.0.0.1", "limit": 10, "time_window": 60, "redis_keepalive_timeout": BIG}),
            ),
            "plugins.ai-rate-limiting.redis_keepalive_timeout",
        ),
        at(
            http_logger(json!({"timeout": BIG})),
            "plugins.http-logger.timeout",
        ),
        at(
            http_logger(json!({"inactive_timeout": BIG})),
            "plugins.http-logger.inactive_timeout",
        ),
        at(
            http_logger(json!({"buffer_duration": BIG})),
            "plugins.http-logger.buffer_duration",
        ),
        at(
            http_logger(json!({"retry_delay": BIG})),
            "plugins.http-logger.retry_delay",
        ),
        at(
            logger(
                "kafka-logger",
                json!({"brokers": [{"host": "127.0.0.1", "port": 9092}], "kafka_topic": "t", "timeout": BIG}),
            ),
            "plugins.kafka-logger.timeout",
        ),
        at(
            logger(
                "kafka-logger",
                json!({"brokers": [{"host": "127.0.0.1", "port": 9092}], "kafka_topic": "t", "meta_refresh_interval": BIG}),
            ),
            "plugins.kafka-logger.meta_refresh_interval",
        ),
    ]
}

/// The case as an ADC file: one service holding the route.
fn file_of(c: &Case) -> Value {
    let mut r = json!({"name": "r", "uris": ["/x"], "plugins": c.plugins});
    for (k, v) in c.route.as_object().unwrap() {
        r[k] = v.clone();
    }
    let mut svc = json!({"name": "s", "routes": [r]});
    if let Some(u) = &c.upstream {
        svc["upstream"] = u.clone();
    }
    json!({ "services": [svc] })
}

/// The case as an Admin API route body.
fn route_of(c: &Case) -> Value {
    let mut r = json!({"uri": "/x", "plugins": c.plugins});
    for (k, v) in c.route.as_object().unwrap() {
        r[k] = v.clone();
    }
    if let Some(u) = &c.upstream {
        r["upstream"] = u.clone();
    }
    r
}

fn admin_put(admin: std::net::SocketAddr, path: &str, body: &str) -> common::client::Response {
    let mut c = Conn::connect(admin);
    c.send(
        format!(
            "PUT {path} HTTP/1.1\r\nHost: a\r\nX-API-KEY: {KEY}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    c.read_response()
}

fn admin_alive(admin: std::net::SocketAddr) {
    let mut c = Conn::connect(admin);
    c.send(
        format!("GET /apisix/admin/routes HTTP/1.1\r\nHost: a\r\nX-API-KEY: {KEY}\r\n\r\n")
            .as_bytes(),
    );
    assert_eq!(c.read_response().status, 200, "the Admin API answers");
}

#[test]
fn check_refuses_absurd_numbers_naming_the_field() {
    for c in cases() {
        let (code, out) = check(&file_of(&c).to_string());
        assert_eq!(code, 2, "{}: exit {code}: {out}", c.field);
        let want = format!("services[0].routes[0].{}", c.field);
        let want = if c.field.starts_with("upstream") {
            format!("services[0].{}", c.field)
        } else {
            want
        };
        assert!(out.contains(&want), "{want} not named: {out}");
    }
}

#[test]
fn admin_api_refuses_absurd_numbers_and_keeps_answering() {
    let gw =
        Gateway::start_json(json!({"gateway": {"admin": {"listen": "127.0.0.1:0", "key": KEY}}}));
    let admin = gw.admin_addr.expect("admin listener");
    for c in cases() {
        let r = admin_put(admin, "/apisix/admin/routes/r1", &route_of(&c).to_string());
        assert_eq!(r.status, 400, "{}: {}", c.field, r.text());
        assert!(
            r.text().contains(c.field),
            "{} not named: {}",
            c.field,
            r.text()
        );
        admin_alive(admin);
    }
    // The same bounds hold for plugin metadata and global rules.
    let r = admin_put(
        admin,
        "/apisix/admin/plugin_metadata/http-logger",
        &json!({"max_pending_entries": BIG}).to_string(),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("max_pending_entries"), "{}", r.text());
    let r = admin_put(
        admin,
        "/apisix/admin/global_rules/g1",
        &json!({"plugins": {"http-logger": {"uri": "http://127.0.0.1:1/log", "timeout": BIG}}})
            .to_string(),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        r.text().contains("plugins.http-logger.timeout"),
        "{}",
        r.text()
    );
    admin_alive(admin);
}

/// `cost_expr` sources that once overflowed the stack: 300,000 nested
/// parentheses (the parser's recursion), a 150,000-term sum (a tree as
/// deep, overflowing evaluation and drop), 100,000 unary minuses; and
/// nesting short enough to pass the length bound but not the depth one.
fn deep_exprs() -> Vec<String> {
    vec![
        format!("{}1{}", "(".repeat(1000), ")".repeat(1000)),
        format!("{}1{}", "(".repeat(300_000), ")".repeat(300_000)),
        format!("1{}", "+1".repeat(150_000)),
        format!("{}1", "-".repeat(100_000)),
        format!("2{}", "^2".repeat(100_000)),
        format!("{}1{}", "max(".repeat(50_000), ")".repeat(50_000)),
    ]
}

fn rate_limited(cost_expr: &str) -> Value {
    with_ai(
        "ai-rate-limiting",
        json!({"limit": 10, "time_window": 60, "limit_strategy": "expression", "cost_expr": cost_expr}),
    )
    .plugins
}

#[test]
fn a_deep_cost_expr_is_refused_and_the_process_lives() {
    for src in deep_exprs() {
        let doc = json!({"services": [{"name": "s", "routes": [{"name": "r", "uris": ["/x"], "plugins": rate_limited(&src)}]}]});
        let (code, out) = check(&doc.to_string());
        assert_eq!(code, 2, "exit {code}: {}", &out[..out.len().min(2000)]);
        assert!(
            out.contains("services[0].routes[0].plugins.ai-rate-limiting.cost_expr"),
            "{}",
            &out[..out.len().min(2000)]
        );
    }
    let gw =
        Gateway::start_json(json!({"gateway": {"admin": {"listen": "127.0.0.1:0", "key": KEY}}}));
    let admin = gw.admin_addr.expect("admin listener");
    for src in deep_exprs() {
        let body = json!({"uri": "/x", "plugins": rate_limited(&src)}).to_string();
        let r = admin_put(admin, "/apisix/admin/routes/deep", &body);
        assert_eq!(r.status, 400, "{}", r.text());
        assert!(
            r.text().contains("plugins.ai-rate-limiting.cost_expr"),
            "{}",
            r.text()
        );
        admin_alive(admin);
    }
    // A sensible expression is still taken.
    let body = json!({"uri": "/x", "plugins": rate_limited("input_tokens + cache_read_input_tokens * 0.1 + max(output_tokens, 1)")}).to_string();
    let r = admin_put(admin, "/apisix/admin/routes/ok", &body);
    assert_eq!(r.status, 201, "{}", r.text());
}
