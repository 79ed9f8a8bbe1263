//! APISIX's labelled metric families, through the real binary: chat,
//! streaming, a fallback and key-auth consumers on mock-llm, then the
//! exact series on `/apisix/prometheus/metrics` (and `/metrics`, the same
//! families); the cardinality cap folding new label sets into `_other_`;
//! a reload keeping a surviving route's counters; a real Prometheus
//! server scraping the gateway and answering PromQL over its HTTP API;
//! and the Grafana dashboard asking only for metrics ringway exports.
//!
//! Run alone: `cargo test -p ringway --test metrics_labels`.

#![allow(clippy::unwrap_used)]

mod common;

use common::ai::{Faults, InstanceConfig, MockServer, ASK};
use common::gateway::GatewayConfig;
use common::prom::{self, Prometheus, Scrape};
use common::{Conn, Gateway};
use serde_json::{json, Value};

/// A stream whose client asks for the usage chunk (so the test knows
/// the tokens the gateway counted).
const STREAM: &str = r#"{"stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"What is 1+1?"}]}"#;
const ALICE: (&str, &str) = ("apikey", "alice-key");
const BOB: (&str, &str) = ("apikey", "bob-key");

fn mocks() -> MockServer {
    MockServer::builder()
        .instance(InstanceConfig::new("primary").tokens(4))
        .instance(InstanceConfig::new("backup").tokens(6))
        .instance(InstanceConfig::new("broken").faults(Faults {
            status: Some(500),
            ..Default::default()
        }))
        .spawn()
        .expect("mock")
}

fn instance(m: &MockServer, name: &str, priority: i64, model: Option<&str>) -> Value {
    let mut i = json!({
        "name": name,
        "provider": "openai-compatible",
        "priority": priority,
        "weight": 1,
        "auth": {"header": {"Authorization": "Bearer k"}},
        "override": {"endpoint": format!("{}/v1/chat/completions", m.instance(name).url())},
    });
    if let Some(model) = model {
        i["options"] = json!({"model": model});
    }
    i
}

/// Routes: `/chat` (key-auth, one instance), `/fallback` (key-auth, a
/// broken instance first, then the backup), `/open` (no auth, the
/// client's model passed through, `prefer_name`).
fn body(m: &MockServer) -> String {
    let doc = json!({
        "services": [{
            "id": "svc-ai",
            "name": "ai-service",
            "routes": [
                {"id": "r-chat", "name": "chat", "uris": ["/chat"],
                 "plugins": {"key-auth": {}, "ai-proxy-multi": {
                     "instances": [instance(m, "primary", 0, Some("gpt-p"))]}}},
                {"id": "r-fallback", "name": "fallback", "uris": ["/fallback"],
                 "plugins": {"key-auth": {}, "ai-proxy-multi": {
                     "fallback_strategy": ["http_5xx"],
                     "instances": [instance(m, "broken", 1, Some("gpt-x")),
                                   instance(m, "backup", 0, Some("gpt-b"))]}}},
                {"id": "r-open", "name": "open", "uris": ["/open"],
                 "plugins": {"prometheus": {"prefer_name": true}, "ai-proxy-multi": {
                     "instances": [instance(m, "primary", 0, None)]}}},
            ],
        }],
        "consumers": [
            {"username": "alice", "credentials": [{"name": "a", "type": "key-auth", "config": {"key": "alice-key"}}]},
            {"username": "bob", "credentials": [{"name": "b", "type": "key-auth", "config": {"key": "bob-key"}}]},
        ],
    });
    yaml_of(&doc)
}

/// JSON is YAML: the config file body as one JSON document per key.
fn yaml_of(doc: &Value) -> String {
    doc.as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| format!("{k}: {v}\n"))
        .collect()
}

fn gateway(m: &MockServer, workers: usize, max_label_sets: usize) -> Gateway {
    Gateway::start_with(GatewayConfig {
        workers,
        gateway_extra: format!(
            "metrics: {{listen: \"127.0.0.1:0\", max_label_sets: {max_label_sets}}}\nadmin: {{enabled: false}}"
        ),
        body: body(m),
        ..Default::default()
    })
}

/// The usage the client was told, `(prompt, completion)`: a JSON answer's
/// `usage`, or a stream's usage chunk.
fn usage(text: &str) -> (u64, u64) {
    let num = |key: &str| -> u64 {
        let at = text
            .rfind(key)
            .unwrap_or_else(|| panic!("no {key} in {text}"));
        text[at + key.len()..]
            .trim_start_matches([':', ' '])
            .chars()
            .take_while(|c| c.is_ascii_digit())
            .collect::<String>()
            .parse()
            .unwrap()
    };
    (num("\"prompt_tokens\""), num("\"completion_tokens\""))
}

fn post(gw: &Gateway, path: &str, body: &str, key: Option<(&str, &str)>) -> (u16, String) {
    let headers: Vec<(&str, &str)> = key.into_iter().collect();
    let r = Conn::connect(gw.addr).post_json_with(path, body, &headers);
    (r.status, r.text())
}

/// A scrape once the gateway has recorded `requests` requests: a worker
/// records at the log phase, just after the client has its answer.
fn scrape(gw: &Gateway, requests: f64) -> Scrape {
    scrape_until(gw, |sc| {
        sc.sum("apisix_http_requests_total", &[]) >= requests
    })
}

/// A scrape once `done` holds of it (or the last one after 5 s).
fn scrape_until(gw: &Gateway, done: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let sc = prom::scrape(
            gw.metrics_addr.expect("metrics listener"),
            "/apisix/prometheus/metrics",
        );
        if done(&sc) || std::time::Instant::now() > deadline {
            return sc;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Labels of `r-chat`'s series (ids, not names).
fn chat(consumer: &'static str) -> Vec<(&'static str, &'static str)> {
    vec![
        ("route", "r-chat"),
        ("route_id", "r-chat"),
        ("service", "svc-ai"),
        ("service_id", "svc-ai"),
        ("consumer", consumer),
    ]
}

fn with<'a>(
    mut base: Vec<(&'a str, &'a str)>,
    more: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    base.extend_from_slice(more);
    base
}

#[test]
fn apisix_families_count_chat_streams_fallbacks_and_consumers_exactly() {
    let m = mocks();
    let gw = gateway(&m, 1, 10_000);
    let mut alice_tokens = (0, 0);
    for _ in 0..3 {
        let (s, t) = post(&gw, "/chat", ASK, Some(ALICE));
        assert_eq!(s, 200, "{t}");
        let u = usage(&t);
        alice_tokens = (alice_tokens.0 + u.0, alice_tokens.1 + u.1);
    }
    let mut bob_tokens = (0, 0);
    for _ in 0..2 {
        let (s, t) = post(&gw, "/chat", STREAM, Some(BOB));
        assert_eq!(s, 200, "{t}");
        let u = usage(&t);
        bob_tokens = (bob_tokens.0 + u.0, bob_tokens.1 + u.1);
    }
    let (s, _) = post(&gw, "/chat", ASK, None);
    assert_eq!(s, 401);
    for _ in 0..2 {
        let (s, t) = post(&gw, "/fallback", ASK, Some(ALICE));
        assert_eq!(s, 200, "{t}");
    }
    assert_eq!(Conn::connect(gw.addr).get("/nowhere").status, 404);

    let sc = scrape(&gw, 9.0);
    let status = "apisix_http_status";
    // Exactly the label sets the traffic made.
    assert_eq!(
        sc.sum(
            status,
            &with(
                chat("alice"),
                &[
                    ("code", "200"),
                    ("node", "primary"),
                    ("matched_uri", "/chat"),
                    ("matched_host", "")
                ]
            )
        ),
        3.0
    );
    assert_eq!(
        sc.count(status, &chat("alice")),
        1,
        "one series for alice on r-chat"
    );
    assert_eq!(
        sc.sum(
            status,
            &with(chat("bob"), &[("code", "200"), ("node", "primary")])
        ),
        2.0
    );
    assert_eq!(
        sc.sum(status, &with(chat(""), &[("code", "401"), ("node", "")])),
        1.0
    );
    assert_eq!(
        sc.sum(
            status,
            &[
                ("route", "r-fallback"),
                ("consumer", "alice"),
                ("node", "backup"),
                ("code", "200")
            ]
        ),
        2.0
    );
    assert_eq!(sc.sum(status, &[("route", ""), ("code", "404")]), 1.0);
    assert_eq!(sc.sum(status, &[]), 9.0);
    assert_eq!(sc.sum("apisix_http_requests_total", &[]), 9.0);

    // Tokens by consumer and model, as the client was told them.
    let tokens = |c: &'static str, ty: &'static str| {
        let l = with(
            chat(c),
            &[
                ("request_type", ty),
                ("llm_model", "gpt-p"),
                ("request_llm_model", ""),
                ("node", "primary"),
            ],
        );
        (
            sc.sum("apisix_llm_prompt_tokens", &l),
            sc.sum("apisix_llm_completion_tokens", &l),
        )
    };
    assert_eq!(
        tokens("alice", "ai_chat"),
        (alice_tokens.0 as f64, alice_tokens.1 as f64)
    );
    assert_eq!(
        tokens("bob", "ai_stream"),
        (bob_tokens.0 as f64, bob_tokens.1 as f64)
    );
    assert_eq!(bob_tokens.1, 8, "4 tokens per answer");

    // Latency: every request observed as `request` and `apisix`; the 404
    // and 401 have no upstream time.
    let lat = "apisix_http_latency_count";
    assert_eq!(sc.sum(lat, &[("type", "request")]), 9.0);
    assert_eq!(sc.sum(lat, &[("type", "apisix")]), 9.0);
    assert_eq!(sc.sum(lat, &[("type", "upstream")]), 7.0);
    assert_eq!(
        sc.sum(lat, &with(chat("alice"), &[("type", "request")])),
        3.0
    );
    assert_eq!(
        sc.sum(
            "apisix_http_latency_bucket",
            &with(chat("alice"), &[("type", "request"), ("le", "+Inf")])
        ),
        3.0
    );
    // TTFT for streams only; llm_latency for both.
    assert_eq!(sc.sum("apisix_llm_ttft_count", &[]), 2.0);
    assert_eq!(sc.sum("apisix_llm_ttft_count", &chat("bob")), 2.0);
    assert_eq!(sc.sum("apisix_llm_latency_count", &[]), 7.0);
    // Bandwidth: ingress at least the bodies sent, egress the bodies got.
    let ingress = sc.sum(
        "apisix_bandwidth",
        &with(chat("alice"), &[("type", "ingress")]),
    );
    assert!(ingress >= 3.0 * ASK.len() as f64, "{ingress}");
    assert!(
        sc.sum(
            "apisix_bandwidth",
            &with(chat("alice"), &[("type", "egress")])
        ) > 0.0
    );
    // Nothing in flight now; a connection per request was accepted.
    assert_eq!(sc.sum("apisix_llm_active_connections", &[]), 0.0);
    assert!(sc.count("apisix_llm_active_connections", &chat("bob")) == 1);
    assert!(
        sc.sum(
            "apisix_nginx_http_current_connections",
            &[("state", "accepted")]
        ) >= 9.0
    );

    // The fallback, by instance and reason.
    assert_eq!(
        sc.sum(
            "ringway_ai_fallbacks_total",
            &[("instance", "broken"), ("reason", "http_5xx")]
        ),
        2.0
    );
    assert_eq!(sc.sum("ringway_ai_fallbacks_total", &[]), 2.0);
    assert_eq!(
        sc.sum(
            "ringway_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    assert_eq!(sc.sum("ringway_metrics_label_sets_dropped_total", &[]), 0.0);

    // `/metrics` serves the same families.
    let plain = prom::scrape(gw.metrics_addr.unwrap(), "/metrics");
    assert_eq!(plain.families, sc.families);
    assert_eq!(plain.sum(status, &[]), 9.0);
}

#[test]
fn past_max_label_sets_new_label_sets_fold_into_other_and_are_counted() {
    let m = mocks();
    let gw = gateway(&m, 1, 4);
    // One label set on /chat, then ten client-chosen models on /open.
    assert_eq!(post(&gw, "/chat", ASK, Some(ALICE)).0, 200);
    for i in 0..10 {
        let body = format!(
            r#"{{"model":"client-model-{i}","messages":[{{"role":"user","content":"hi"}}]}}"#
        );
        let (s, t) = post(&gw, "/open", &body, None);
        assert_eq!(s, 200, "{t}");
    }
    let sc = scrape(&gw, 11.0);
    let status = "apisix_http_status";
    // Three models got their own series (with prefer_name: the route's
    // and service's names), seven were folded.
    assert_eq!(
        sc.count(
            "apisix_llm_prompt_tokens",
            &[
                ("route", "open"),
                ("route_id", "r-open"),
                ("service", "ai-service"),
                ("service_id", "svc-ai")
            ]
        ),
        3
    );
    assert_eq!(sc.sum(status, &[("route", "open"), ("code", "200")]), 3.0);
    assert_eq!(
        sc.sum(
            status,
            &[
                ("route", "_other_"),
                ("consumer", "_other_"),
                ("node", "_other_"),
                ("code", "200")
            ]
        ),
        7.0
    );
    assert!(
        sc.sum(
            "apisix_llm_prompt_tokens",
            &[
                ("request_llm_model", "_other_"),
                ("request_type", "ai_chat")
            ]
        ) > 0.0
    );
    assert_eq!(sc.sum("ringway_metrics_label_sets_dropped_total", &[]), 7.0);
    assert_eq!(
        sc.sum("ringway_metrics_label_sets", &[]),
        5.0,
        "four and the overflow series"
    );
    assert_eq!(sc.sum(status, &[]), 11.0, "nothing lost, only folded");
}

#[test]
fn a_reload_keeps_counting_a_surviving_route_and_drops_a_removed_one() {
    let m = mocks();
    let gw = gateway(&m, 1, 10_000);
    assert_eq!(post(&gw, "/chat", ASK, Some(ALICE)).0, 200);
    let open = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
    assert_eq!(post(&gw, "/open", open, None).0, 200);
    // The same file without `/open`.
    let path = gw.config_path();
    let text = std::fs::read_to_string(&path).unwrap();
    let cut = text
        .replace("\"r-open\"", "\"r-gone\"")
        .replace("\"/open\"", "\"/gone\"");
    std::fs::write(&path, cut).unwrap();
    gw.signal(libc::SIGHUP);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while Conn::connect(gw.addr).post_json("/open", open).status != 404 {
        assert!(std::time::Instant::now() < deadline, "reload not seen");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(post(&gw, "/chat", ASK, Some(ALICE)).0, 200);
    let alice_ok = with(chat("alice"), &[("code", "200")]);
    let sc = scrape_until(&gw, |sc| sc.sum("apisix_http_status", &alice_ok) >= 2.0);
    assert_eq!(
        sc.sum("apisix_http_status", &alice_ok),
        2.0,
        "counted across the reload"
    );
    assert_eq!(sc.count("apisix_http_status", &[("route_id", "r-open")]), 0);
}

#[test]
fn a_real_prometheus_scrapes_the_gateway_and_answers_promql() {
    let Some(bin) = prom::binary() else {
        panic!(
            "prometheus not found: run scripts/setup-test-deps.sh (installs Debian's prometheus)"
        );
    };
    let m = mocks();
    let gw = gateway(&m, 2, 10_000);
    let prometheus = Prometheus::start(&bin, gw.metrics_addr.unwrap());
    let mut prompt_alice = 0;
    for _ in 0..4 {
        let (s, t) = post(&gw, "/chat", ASK, Some(ALICE));
        assert_eq!(s, 200, "{t}");
        prompt_alice += usage(&t).0;
    }
    for _ in 0..3 {
        let (s, t) = post(&gw, "/chat", STREAM, Some(BOB));
        assert_eq!(s, 200, "{t}");
    }
    let v = prometheus.value_once(r#"sum(apisix_http_status{route="r-chat"})"#, 7.0);
    assert_eq!(v, 7.0);
    let v = prometheus.value_once(
        r#"sum by (consumer) (apisix_llm_prompt_tokens{consumer="alice"})"#,
        prompt_alice as f64,
    );
    assert_eq!(v, prompt_alice as f64);
    assert_eq!(
        prometheus.value_once(r#"sum(apisix_llm_ttft_count{consumer="bob"})"#, 3.0),
        3.0
    );
    // A quantile over the latency histogram: within the buckets APISIX
    // defines (1 ms .. 60 s), and at most the largest bucket observed.
    let q = prometheus.query(
        r#"histogram_quantile(0.5, sum by (le) (apisix_http_latency_bucket{type="request",route="r-chat"}))"#,
    );
    let p50: f64 = q[0]["value"][1].as_str().unwrap().parse().unwrap();
    assert!(p50.is_finite() && p50 > 0.0 && p50 <= 60_000.0, "{q}");
    // The scrape itself was healthy: the text parsed.
    assert_eq!(prometheus.value_once("up", 1.0), 1.0);
}

/// Metric names a dashboard expression asks for.
fn names_in(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let b = expr.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let rest = &expr[i..];
        if (rest.starts_with("apisix_") || rest.starts_with("ringway_"))
            && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_'))
        {
            let n: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            i += n.len();
            out.push(n);
        } else {
            i += 1;
        }
    }
    out
}

fn exprs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(o) => {
            for (k, v) in o {
                match (k.as_str(), v) {
                    ("expr", Value::String(s)) => out.push(s.clone()),
                    _ => exprs(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| exprs(v, out)),
        _ => {}
    }
}

#[test]
fn the_grafana_dashboard_asks_only_for_metrics_ringway_exports() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/grafana/ringway-dashboard.json"
    );
    let dash: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert!(
        dash["panels"].as_array().is_some_and(|p| p.len() >= 8),
        "panels"
    );
    let mut all = Vec::new();
    exprs(&dash, &mut all);
    assert!(!all.is_empty());
    let m = mocks();
    let gw = gateway(&m, 1, 10_000);
    assert_eq!(post(&gw, "/chat", STREAM, Some(BOB)).0, 200);
    let sc = scrape(&gw, 1.0);
    let mut exported = sc.names();
    exported.extend(sc.families.keys().cloned());
    let mut asked = std::collections::BTreeSet::new();
    for e in &all {
        for n in names_in(e) {
            assert!(
                exported.contains(&n),
                "the dashboard asks for {n}, which ringway does not export ({e})"
            );
            asked.insert(n);
        }
    }
    for must in [
        "apisix_http_status",
        "apisix_llm_ttft_bucket",
        "ringway_ai_fallbacks_total",
        "ringway_instance_healthy",
        "ringway_config_source_stale_since_seconds",
    ] {
        assert!(asked.contains(must), "the dashboard shows {must}");
    }
}
