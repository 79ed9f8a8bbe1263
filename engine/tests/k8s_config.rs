//! Kubernetes objects as configuration (`ringway -c manifests.yaml`,
//! docs/kubernetes.md), through the real binary on loopback with mock-llm
//! as every provider.
//!
//! Every Kubernetes example of the seed document (both tabs: Gateway API
//! and APISIX CRD, kept as written in `fixtures/k8s/seed/`) is loaded and
//! must answer exactly as its ADC twin (same fixture folder) and its
//! Admin API twin (the ADC twin's consumers, credentials and route PUT to
//! the Admin API, as the seed's curl tabs do): same statuses, same
//! instances answering in the same order, same body shape, the same
//! `X-AI-RateLimit-*` headers, and the providers receiving the same
//! requests. Endpoints (and the logger's brokers) are pointed at the test's
//! servers; API keys are the same text in every form.
#![allow(clippy::disallowed_types, clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::ai::{MockServer, ASK};
use common::gateway::{bin, GatewayConfig};
use common::{Conn, Gateway};
use mock_llm::InstanceConfig;
use serde::Deserialize;
use serde_json::{json, Value};

/// The seed's `${VAR}`s, set to the text its Kubernetes tabs write.
const ENV: [(&str, &str); 5] = [
    ("OPENAI_API_KEY", "your-api-key"),
    ("DEEPSEEK_API_KEY", "your-api-key"),
    ("AZ_OPENAI_API_KEY", "your-api-key"),
    ("YOUR_LLM_API_KEY", "your-api-key"),
    ("YOUR_LLM_MODEL", "your-model"),
];

const ADMIN_KEY: &str = "edd1c9f034335f136f87ad84b625c8f1";

/// The instances of the seed's examples and the mock answering for each.
const MOCKS: [(&str, &str); 5] = [
    ("openai-instance", "openai"),
    ("deepseek-instance", "deepseek"),
    ("az-openai-instance", "azure"),
    ("llm-instance-1", "llm1"),
    ("llm-instance-2", "llm2"),
];

#[derive(Clone, Copy, Debug, PartialEq)]
enum Form {
    Adc,
    AdminApi,
    GatewayApi,
    ApisixCrd,
}

/// One seed example in its forms, and what it does with a gateway.
struct Example {
    adc: &'static str,
    gateway_api: &'static str,
    apisix_crd: &'static str,
    gateway_extra: &'static str,
    scenario: fn(&Gateway, &MockServer) -> Vec<Value>,
}

fn env() -> Vec<(String, String)> {
    ENV.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn mocks() -> MockServer {
    let mut b = MockServer::builder();
    for (_, m) in MOCKS {
        b = b.instance(InstanceConfig::new(m).tokens(4));
    }
    b.spawn().expect("mock")
}

/// The YAML documents of `text` as JSON.
fn docs(text: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|d| Value::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

fn to_yaml(docs: &[Value]) -> String {
    docs.iter()
        .map(|d| serde_yaml_ng::to_string(d).unwrap())
        .collect::<Vec<_>>()
        .join("---\n")
}

/// Points every ai-proxy-multi instance at its mock (keeping the path
/// and query the example gives, if any) and every logger's brokers at
/// `kafka`.
fn patch(v: &mut Value, m: &MockServer, kafka: Option<u16>) {
    match v {
        Value::Object(map) => {
            if let Some(Value::Array(instances)) = map.get_mut("instances") {
                for inst in instances.iter_mut().filter(|i| i.get("provider").is_some()) {
                    let name = inst["name"].as_str().unwrap().to_owned();
                    let mock = MOCKS.iter().find(|(i, _)| *i == name).unwrap().1;
                    let path = inst["override"]["endpoint"]
                        .as_str()
                        .and_then(|e| e.splitn(4, '/').nth(3).map(|p| format!("/{p}")))
                        .unwrap_or_else(|| "/v1/chat/completions".into());
                    inst["override"] =
                        json!({"endpoint": format!("{}{path}", m.instance(mock).url())});
                }
            }
            if let (Some(port), Some(Value::Array(_))) = (kafka, map.get("brokers")) {
                map.insert(
                    "brokers".into(),
                    json!([{"host": "127.0.0.1", "port": port}]),
                );
            }
            map.values_mut().for_each(|x| patch(x, m, kafka));
        }
        Value::Array(list) => list.iter_mut().for_each(|x| patch(x, m, kafka)),
        _ => {}
    }
}

/// `${VAR}` replaced as the seed's shell does in its curl bodies.
fn interpolate(v: &mut Value) {
    match v {
        Value::String(s) => {
            for (k, val) in ENV {
                *s = s.replace(&format!("${{{k}}}"), val);
            }
        }
        Value::Object(m) => m.values_mut().for_each(interpolate),
        Value::Array(l) => l.iter_mut().for_each(interpolate),
        _ => {}
    }
}

fn admin_put(admin: std::net::SocketAddr, path: &str, body: &Value) {
    let body = body.to_string();
    let mut c = Conn::connect(admin);
    c.send(format!("PUT {path} HTTP/1.1\r\nHost: 127.0.0.1:9180\r\nX-API-KEY: {ADMIN_KEY}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()).as_bytes());
    let r = c.read_response();
    assert!(r.status == 200 || r.status == 201, "{path}: {}", r.text());
}

/// The ADC twin's resources PUT to the Admin API, as the seed's curl tabs.
fn configure_over_admin_api(gw: &Gateway, adc: &Value) {
    let admin = gw.admin_addr.expect("admin listener");
    for c in adc["consumers"].as_array().into_iter().flatten() {
        let user = c["username"].as_str().unwrap();
        admin_put(
            admin,
            "/apisix/admin/consumers",
            &json!({"username": user, "plugins": c["plugins"]}),
        );
        for cred in c["credentials"].as_array().into_iter().flatten() {
            let kind = cred["type"].as_str().unwrap();
            admin_put(
                admin,
                &format!("/apisix/admin/consumers/{user}/credentials"),
                &json!({"id": cred["name"], "plugins": {kind: cred["config"]}}),
            );
        }
    }
    for s in adc["services"].as_array().into_iter().flatten() {
        for r in s["routes"].as_array().into_iter().flatten() {
            let body = json!({"id": r["name"], "uri": r["uris"][0], "methods": r["methods"], "plugins": r["plugins"]});
            admin_put(admin, "/apisix/admin/routes", &body);
        }
    }
}

/// Runs `ex` in `form` and returns what its scenario saw.
fn run(ex: &Example, form: Form, kafka: Option<u16>) -> Vec<Value> {
    let m = mocks();
    let cfg = |extra: &str| GatewayConfig {
        gateway_extra: format!("{}\n{extra}", ex.gateway_extra),
        env: env(),
        ..Default::default()
    };
    let gw = match form {
        Form::Adc => {
            let mut d = docs(ex.adc);
            d.iter_mut().for_each(|v| patch(v, &m, kafka));
            Gateway::start_with(GatewayConfig {
                body: to_yaml(&d),
                ..cfg("")
            })
        }
        Form::AdminApi => {
            let gw = Gateway::start_with(cfg(&format!(
                "admin: {{listen: \"127.0.0.1:0\", key: {ADMIN_KEY}}}"
            )));
            let mut adc = docs(ex.adc).remove(0);
            patch(&mut adc, &m, kafka);
            interpolate(&mut adc);
            configure_over_admin_api(&gw, &adc);
            gw
        }
        Form::GatewayApi | Form::ApisixCrd => {
            let text = if form == Form::GatewayApi {
                ex.gateway_api
            } else {
                ex.apisix_crd
            };
            let mut d = docs(text);
            d.iter_mut().for_each(|v| patch(v, &m, kafka));
            Gateway::start_files(cfg(""), &[("ai-proxy-multi-ic.yaml", &to_yaml(&d))])
        }
    };
    (ex.scenario)(&gw, &m)
}

/// Runs the three forms (both Kubernetes tabs) and compares them.
fn same_in_every_form(ex: &Example, kafka: Option<u16>, check: fn(&[Value])) {
    let adc = run(ex, Form::Adc, kafka);
    check(&adc);
    for form in [Form::AdminApi, Form::GatewayApi, Form::ApisixCrd] {
        let got = run(ex, form, kafka);
        assert_eq!(
            got,
            adc,
            "{form:?} answers differently from the ADC form:\n{form:?}: {}\nADC: {}",
            serde_json::to_string_pretty(&got).unwrap(),
            serde_json::to_string_pretty(&adc).unwrap()
        );
    }
}

/// What a client sees of an answer: status, the instance that answered,
/// the model, the body's shape and the rate-limit headers.
fn answer(r: &mock_llm::client::Response) -> Value {
    let body: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    let shape: Vec<&String> = body
        .as_object()
        .map(|o| o.keys().collect())
        .unwrap_or_default();
    let limits: BTreeMap<String, String> = r
        .headers
        .iter()
        .filter(|(k, _)| k.to_ascii_lowercase().starts_with("x-ai-ratelimit"))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
        .collect();
    json!({
        "status": r.status,
        "instance": r.header("x-ringway-instance"),
        "model": body["model"],
        "object": body["object"],
        "shape": shape,
        "message": body["message"],
        "ratelimit": limits,
    })
}

/// What each mock received: method, path, auth and the body's model and
/// max_tokens.
fn received(m: &MockServer) -> Value {
    let mut out = serde_json::Map::new();
    for (_, name) in MOCKS {
        let reqs: Vec<Value> = m
            .instance(name)
            .requests()
            .iter()
            .map(|r| {
                let j = r.json();
                json!({"path": r.path, "query": r.query, "authorization": r.header("authorization"),
                       "api-key": r.header("api-key"), "model": j["model"], "max_tokens": j["max_tokens"]})
            })
            .collect();
        out.insert(name.into(), Value::Array(reqs));
    }
    Value::Object(out)
}

fn post(gw: &Gateway, body: &str, headers: &[(&str, &str)]) -> Value {
    answer(&Conn::connect(gw.addr).post_json_with("/anything", body, headers))
}

fn chats(gw: &Gateway, m: &MockServer, n: usize) -> Vec<Value> {
    let mut out: Vec<Value> = (0..n).map(|_| post(gw, ASK, &[])).collect();
    out.push(received(m));
    out
}

fn instances(answers: &[Value]) -> Vec<&str> {
    answers
        .iter()
        .filter_map(|a| a.get("instance").and_then(Value::as_str))
        .collect()
}

macro_rules! seed {
    ($name:literal) => {
        (
            include_str!(concat!("fixtures/k8s/seed/", $name, ".adc.yaml")),
            include_str!(concat!("fixtures/k8s/seed/", $name, ".gateway-api.yaml")),
            include_str!(concat!("fixtures/k8s/seed/", $name, ".apisix-crd.yaml")),
        )
    };
}

fn example(
    forms: (&'static str, &'static str, &'static str),
    scenario: fn(&Gateway, &MockServer) -> Vec<Value>,
) -> Example {
    Example {
        adc: forms.0,
        gateway_api: forms.1,
        apisix_crd: forms.2,
        gateway_extra: "",
        scenario,
    }
}

#[test]
fn seed_weighted_split_same_in_every_form() {
    let ex = example(seed!("01-weighted"), |gw, m| chats(gw, m, 10));
    same_in_every_form(&ex, None, |a| {
        let i = instances(a);
        assert_eq!(
            i.iter().filter(|x| **x == "openai-instance").count(),
            8,
            "{a:?}"
        );
        assert_eq!(
            i.iter().filter(|x| **x == "deepseek-instance").count(),
            2,
            "{a:?}"
        );
    });
}

#[test]
fn seed_priority_with_rate_limit_fallback_same_in_every_form() {
    let ex = example(seed!("02-priority-rate-limit"), |gw, m| chats(gw, m, 3));
    same_in_every_form(&ex, None, |a| {
        // The quota of 10 tokens is spent by the first answer: the rest go
        // to the lower priority.
        assert_eq!(
            instances(a),
            ["openai-instance", "deepseek-instance", "deepseek-instance"],
            "{a:?}"
        );
    });
}

#[test]
fn seed_consumers_same_in_every_form() {
    let ex = example(seed!("03-consumers"), |gw, m| {
        let mut out = vec![post(gw, ASK, &[])];
        for key in ["john-key", "john-key", "jane-key", "jane-key", "wrong"] {
            out.push(post(gw, ASK, &[("apikey", key)]));
        }
        out.push(received(m));
        out
    });
    same_in_every_form(&ex, None, |a| {
        assert_eq!(a[0]["status"], 401, "{a:?}");
        assert_eq!(a[0]["message"], "Missing API key in request");
        assert_eq!(a[5]["status"], 401);
        // Round robin between the two, each consumer's quota counted
        // apart (its X-AI-RateLimit-* headers).
        assert_eq!(
            instances(&a[1..5]),
            [
                "openai-instance",
                "deepseek-instance",
                "openai-instance",
                "deepseek-instance"
            ],
            "{a:?}"
        );
        assert_eq!(
            a[1]["ratelimit"]["x-ai-ratelimit-limit-openai-instance"],
            "10"
        );
        assert_eq!(
            a[4]["ratelimit"]["x-ai-ratelimit-limit-deepseek-instance"],
            "10"
        );
    });
}

#[test]
fn seed_max_tokens_same_in_every_form() {
    let ex = example(seed!("04-max-tokens"), |gw, m| chats(gw, m, 4));
    same_in_every_form(&ex, None, |a| {
        let got = &a[4];
        assert_eq!(got["openai"][0]["max_tokens"], 50, "{got}");
        assert_eq!(got["deepseek"][0]["max_tokens"], 100, "{got}");
    });
}

#[test]
fn seed_embeddings_same_in_every_form() {
    let ex = example(seed!("05-embeddings"), |gw, m| {
        let mut out: Vec<Value> = (0..4)
            .map(|_| post(gw, r#"{"input": "What is the capital of France?"}"#, &[]))
            .collect();
        out.push(received(m));
        out
    });
    same_in_every_form(&ex, None, |a| {
        assert_eq!(a[0]["object"], "list", "{a:?}");
        assert_eq!(a[4]["azure"][0]["query"], "api-version=2023-05-15", "{a:?}");
        assert_eq!(a[4]["azure"][0]["api-key"], "your-api-key");
    });
}

#[test]
fn seed_health_check_same_in_every_form() {
    // As written, llm-instance-2 is probed over HTTPS; its mock speaks
    // HTTP, so the probe takes it out and llm-instance-1 answers alone.
    let ex = example(seed!("06-health-check"), |gw, _| {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut run = 0;
        while run < 4 {
            assert!(
                Instant::now() < deadline,
                "the probe never took llm-instance-2 out"
            );
            let a = post(gw, ASK, &[]);
            run = if a["instance"] == "llm-instance-1" {
                run + 1
            } else {
                0
            };
        }
        (0..6).map(|_| post(gw, ASK, &[])).collect()
    });
    same_in_every_form(&ex, None, |a| {
        assert_eq!(instances(a), ["llm-instance-1"; 6], "{a:?}");
    });
}

#[test]
fn seed_logger_same_in_every_form() {
    let broker = common::kafka::KafkaBroker::start();
    broker.create_topic("test2", 1);
    let port: u16 = broker
        .bootstrap()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let mut ex = example(seed!("07-logger"), |gw, m| {
        let mut out = chats(gw, m, 10);
        out.push(json!(kafka_entries_sent(gw, 10)));
        out
    });
    ex.gateway_extra = "metrics: {listen: \"127.0.0.1:0\"}";
    same_in_every_form(&ex, Some(port), |a| {
        assert_eq!(a[11], 10, "every entry reached the broker: {a:?}");
        assert_eq!(instances(a).len(), 10);
    });
}

/// Kafka logger entries sent (the metric's label names the route or
/// service holding the logger, whose id differs between forms), once
/// `want` or after 10 s.
fn kafka_entries_sent(gw: &Gateway, want: u64) -> u64 {
    let addr = gw.metrics_addr.expect("metrics address announced");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = Conn::connect(addr).get("/metrics").text();
        let sent: u64 = text
            .lines()
            .filter(|l| {
                l.starts_with("ringway_logger_entries_total{logger=\"kafka logger (")
                    && l.contains("outcome=\"sent\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum();
        if sent >= want || Instant::now() > deadline {
            return sent;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

// === beyond the seed ===

/// A Service `llm` (ExternalName 127.0.0.1) and two routes to it: one of
/// an ApisixRoute, one of an HTTPRoute.
fn plain_manifests(port: u16) -> String {
    format!(
        r#"apiVersion: v1
kind: Service
metadata: {{name: llm, namespace: aic}}
spec: {{type: ExternalName, externalName: 127.0.0.1, ports: [{{name: http, port: {port}}}]}}
---
apiVersion: apisix.apache.org/v2
kind: ApisixRoute
metadata: {{name: models, namespace: aic}}
spec:
  http:
    - name: list
      match: {{paths: [/v1/models], methods: [GET]}}
      backends: [{{serviceName: llm, servicePort: http}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: health, namespace: aic}}
spec:
  rules:
    - matches: [{{path: {{type: PathPrefix, value: /health}}}}]
      backendRefs: [{{name: llm, port: {port}}}]
"#
    )
}

#[test]
fn a_gateway_file_and_manifests_combine() {
    let m = mocks();
    let port = m.instance("openai").addr().port();
    let body = format!(
        "services:\n  - name: adc\n    upstream: {{nodes: [{{host: 127.0.0.1, port: {port}, weight: 1}}]}}\n    routes: [{{name: adc-models, uris: [/adc/*]}}]\n"
    );
    let gw = Gateway::start_files(
        GatewayConfig {
            body,
            ..Default::default()
        },
        &[("routes.yaml", &plain_manifests(port))],
    );
    let r = Conn::connect(gw.addr).get("/v1/models");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["object"], "list");
    let r = Conn::connect(gw.addr).get("/health");
    assert_eq!(r.status, 200, "{}", r.text());
    // The gateway file's own route is served beside them.
    let r = Conn::connect(gw.addr).get("/adc/x");
    assert!(
        !r.text().contains("404 Route Not Found"),
        "proxied: {}",
        r.text()
    );
    assert_eq!(
        m.instance("openai")
            .requests()
            .iter()
            .filter(|q| q.path == "/v1/models")
            .count(),
        1
    );
}

#[test]
fn secrets_with_data_and_string_data() {
    let m = mocks();
    let manifests = format!(
        r#"apiVersion: v1
kind: Secret
metadata: {{name: john, namespace: aic}}
data: {{key: am9obi1rZXk=}}
---
apiVersion: v1
kind: Secret
metadata: {{name: jane, namespace: aic}}
stringData: {{key: jane-key}}
---
apiVersion: v1
kind: Secret
metadata: {{name: provider, namespace: aic}}
stringData:
  instances.0.auth.header.Authorization: Bearer from-a-secret
---
apiVersion: apisix.apache.org/v2
kind: ApisixConsumer
metadata: {{name: johndoe, namespace: aic}}
spec: {{authParameter: {{keyAuth: {{secretRef: {{name: john}}}}}}}}
---
apiVersion: apisix.apache.org/v1alpha1
kind: Consumer
metadata: {{name: janedoe, namespace: aic}}
spec:
  credentials: [{{type: key-auth, name: primary-key, secretRef: {{name: jane}}}}]
---
apiVersion: apisix.apache.org/v2
kind: ApisixRoute
metadata: {{name: chat, namespace: aic}}
spec:
  http:
    - name: chat
      match: {{paths: [/anything], methods: [POST]}}
      authentication: {{enable: true, type: keyAuth}}
      plugins:
        - name: ai-proxy-multi
          enable: true
          secretRef: provider
          config:
            instances:
              - name: openai-instance
                provider: openai
                weight: 1
                auth: {{header: {{Authorization: "Bearer placeholder"}}}}
                options: {{model: gpt-4}}
                override: {{endpoint: "{}/v1/chat/completions"}}
"#,
        m.instance("openai").url()
    );
    let gw = Gateway::start_files(GatewayConfig::default(), &[("k8s.yaml", &manifests)]);
    assert_eq!(post(&gw, ASK, &[])["status"], 401);
    assert_eq!(post(&gw, ASK, &[("apikey", "nope")])["status"], 401);
    assert_eq!(
        post(&gw, ASK, &[("apikey", "john-key")])["status"],
        200,
        "data (base64)"
    );
    assert_eq!(
        post(&gw, ASK, &[("apikey", "jane-key")])["status"],
        200,
        "stringData"
    );
    let reqs = m.instance("openai").requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(
        reqs[0].header("authorization"),
        Some("Bearer from-a-secret")
    );
}

/// Runs `ringway --check` on a gateway file and `manifests`.
fn check_manifests(manifests: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let gw = dir.path().join("gateway.yaml");
    std::fs::write(&gw, "gateway: {workers: 1}\n").unwrap();
    let k = dir.path().join("manifests.yaml");
    std::fs::write(&k, manifests).unwrap();
    let out = std::process::Command::new(bin())
        .args(["--check", "-c"])
        .arg(&gw)
        .arg("-c")
        .arg(&k)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn unknown_kinds_are_listed_once_and_ignored() {
    let other = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: llm, namespace: aic}\nspec: {replicas: 1}\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: apisix}\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: apisix, namespace: aic}\n---\napiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {name: apisix}\n---\napiVersion: apisix.apache.org/v1alpha1\nkind: GatewayProxy\nmetadata: {name: apisix-config, namespace: aic}\n---\n";
    let (code, out) = check_manifests(&format!("{other}{}", plain_manifests(8080)));
    assert_eq!(code, 0, "{out}");
    let lines: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("ringway does not serve"))
        .collect();
    assert_eq!(lines.len(), 1, "{out}");
    assert!(
        lines[0].contains("Deployment/aic/llm, GatewayClass/default/apisix, Gateway/aic/apisix, IngressClass/default/apisix, GatewayProxy/aic/apisix-config"),
        "{out}"
    );
    assert!(out.contains("is valid (2 routes)"), "{out}");
}

#[test]
fn invalid_objects_are_refused_naming_kind_namespace_name_field_and_file() {
    let bad_port = plain_manifests(8080).replace("servicePort: http", "servicePort: 0");
    let (code, out) = check_manifests(&bad_port);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("manifests.yaml: ApisixRoute/aic/models: spec.http[0].backends[0].servicePort: must be a port number"), "{out}");

    // A plugin config the compiler refuses: named by object and field too.
    let weight = "apiVersion: apisix.apache.org/v1alpha1\nkind: PluginConfig\nmetadata: {name: pc, namespace: aic}\nspec:\n  plugins:\n    - name: ai-proxy-multi\n      config: {instances: [{name: a, provider: openai, weight: -1, auth: {header: {Authorization: x}}, options: {model: m}}]}\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: chat, namespace: aic}\nspec:\n  rules: [{filters: [{type: ExtensionRef, extensionRef: {group: apisix.apache.org, kind: PluginConfig, name: pc}}]}]\n";
    let (code, out) = check_manifests(weight);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("manifests.yaml: HTTPRoute/aic/chat: spec.rules[0]"),
        "{out}"
    );
    assert!(out.contains("instances[0].weight"), "{out}");

    // Starting, not only checking, refuses the same way.
    let dir = tempfile::tempdir().unwrap();
    let k = dir.path().join("manifests.yaml");
    std::fs::write(&k, &bad_port).unwrap();
    let out = std::process::Command::new(bin())
        .arg("-c")
        .arg(&k)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("ApisixRoute/aic/models: spec.http[0].backends[0].servicePort"));
}

#[test]
fn editing_a_manifest_reloads_every_file() {
    let m = mocks();
    let port = m.instance("openai").addr().port();
    let manifests = plain_manifests(port);
    let gw = Gateway::start_files(GatewayConfig::default(), &[("routes.yaml", &manifests)]);
    assert_eq!(Conn::connect(gw.addr).get("/v1/models").status, 200);
    let path = gw.dir.path().join("routes.yaml");
    // The route now takes /models/* and rewrites nothing: GET /v1/models
    // is no longer routed, GET /models/x is (the mock answers 404 itself).
    std::fs::write(
        &path,
        manifests.replace("paths: [/v1/models]", "paths: [/models/*]"),
    )
    .unwrap();
    assert!(
        gw.wait_for_log("configuration reloaded", Duration::from_secs(10)),
        "{}",
        gw.stderr()
    );
    let not_routed = |p: &str| {
        Conn::connect(gw.addr)
            .get(p)
            .text()
            .contains("404 Route Not Found")
    };
    assert!(not_routed("/v1/models"));
    assert!(!not_routed("/models/x"));
    // An invalid edit is refused and the last good configuration stays.
    std::fs::write(
        &path,
        manifests.replace("servicePort: http", "servicePort: nope"),
    )
    .unwrap();
    assert!(
        gw.wait_for_log("reload refused", Duration::from_secs(10)),
        "{}",
        gw.stderr()
    );
    assert!(
        gw.stderr()
            .contains("routes.yaml: ApisixRoute/aic/models: spec.http[0].backends[0].servicePort"),
        "{}",
        gw.stderr()
    );
    assert!(not_routed("/v1/models"));
    assert!(!not_routed("/models/x"));
}
