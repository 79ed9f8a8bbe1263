//! Engine core: configuration errors name the file, the field path and the
//! reason; exit code 2; nothing starts. `${VAR}` interpolation.

#![allow(clippy::disallowed_types)]

mod common;

use common::gateway::{bin, check, GatewayConfig};
use common::{client, Gateway, Upstream};

const OK: &str = "services:\n  - name: s\n    upstream:\n      nodes: [{host: 127.0.0.1, port: 1980, weight: 1}]\n    routes:\n      - name: r\n        uris: [\"/*\"]\n";

#[test]
fn valid_config_checks_ok() {
    let (code, out) = check(OK);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("is valid"), "{out}");
}

#[test]
fn errors_name_file_field_and_reason() {
    let cases: &[(&str, &str)] = &[
        (
            "services:\n  - name: s\n    upstream:\n      nodes: [{host: 127.0.0.1, port: 1980, weight: -1}]\n    routes:\n      - name: r\n        uris: [\"/*\"]\n",
            "services[0].upstream.nodes[0].weight: must be >= 0",
        ),
        (
            "services:\n  - name: s\n    upstream:\n      nodes: [{host: 127.0.0.1, port: 1980}]\n    routes:\n      - name: r\n        uris: [\"/*\"]\n        methdos: [GET]\n",
            "services[0].routes[0].methdos: unknown field `methdos`",
        ),
        (
            "services:\n  - name: s\n    upstream:\n      nodes: [{host: 127.0.0.1, port: 1980}]\n    routes:\n      - name: r\n        uris: [\"/*\"]\n        plugins:\n          limit-count: {count: 1}\n",
            "services[0].routes[0].plugins.limit-count: plugin `limit-count` is not supported by ringway",
        ),
        (
            "services:\n  - name: s\n    upstream:\n      nodes: [{host: 127.0.0.1, port: \"${RINGWAY_TEST_UNSET_PORT}\"}]\n    routes:\n      - name: r\n        uris: [\"/*\"]\n",
            "services[0].upstream.nodes[0].port: environment variable `RINGWAY_TEST_UNSET_PORT` is not set",
        ),
        (
            "services:\n  - name: s\n    routes:\n      - name: r\n        uris: [\"/*\"]\n",
            "services[0].routes[0]: route has nothing to answer it",
        ),
        (
            "gateway:\n  workers: 0\n",
            "gateway.workers: must be \"auto\" or an integer",
        ),
        (
            "gateway:\n  listen: [\"not an address\"]\n",
            "gateway.listen[0]:",
        ),
        ("services: [\n", "invalid YAML"),
        ("upstreams: []\n", "upstreams: unknown top-level field"),
        (
            "services:\n  - name: s\n    upstream:\n      nodes: [{host: 127.0.0.1, port: 1980}]\n    routes:\n      - name: r\n        uris: [\"v1/chat\"]\n",
            "services[0].routes[0].uris[0]: `v1/chat` must start with `/`",
        ),
    ];
    for (yaml, expected) in cases {
        let (code, out) = check(yaml);
        assert_eq!(code, 2, "expected exit 2 for {yaml:?}, got {code}: {out}");
        assert!(out.contains(expected), "expected {expected:?} in:\n{out}");
        assert!(out.contains("bad.yaml"), "the file must be named: {out}");
    }
}

#[test]
fn invalid_config_starts_nothing() {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = probe.local_addr().unwrap().port();
    drop(probe);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        format!(
            "gateway:\n  listen: [\"127.0.0.1:{port}\"]\nservices:\n  - name: s\n    bogus: 1\n"
        ),
    )
    .unwrap();
    let out = std::process::Command::new(bin())
        .arg("-c")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("services[0].bogus"));
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[test]
fn env_variables_are_interpolated() {
    let up = Upstream::echo();
    let gw = Gateway::start_with(GatewayConfig {
        body: "services:\n  - name: s\n    upstream:\n      nodes: [{host: 127.0.0.1, port: \"${UP_PORT}\", weight: 1}]\n    routes:\n      - name: r\n        uris: [\"${ROUTE_PREFIX}/*\"]\n".into(),
        env: vec![
            ("UP_PORT".into(), up.addr.port().to_string()),
            ("ROUTE_PREFIX".into(), "/api".into()),
        ],
        ..Default::default()
    });
    assert_eq!(client::get(gw.addr, "/api/x").status, 200);
    assert_eq!(client::get(gw.addr, "/other").status, 404);
}

/// Without `gateway.admin.key` the Admin API gets a random key, written to
/// a file only this user can read; the log names the file, never the key.
#[test]
fn a_generated_admin_key_is_in_a_private_file_not_the_log() {
    use std::os::unix::fs::PermissionsExt;
    let gw =
        Gateway::start_json(serde_json::json!({"gateway": {"admin": {"listen": "127.0.0.1:0"}}}));
    let admin = gw.admin_addr.expect("admin API on");
    let path = std::env::temp_dir().join(format!("ringway-admin-{}.key", admin.port()));
    let key = std::fs::read_to_string(&path).unwrap();
    assert_eq!(key.len(), 32);
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let log = gw.stderr();
    assert!(log.contains(&path.display().to_string()), "{log}");
    assert!(!log.contains(&key), "the key is in the log: {log}");
    let mut c = common::Conn::connect(admin);
    c.send(
        format!("GET /apisix/admin/routes HTTP/1.1\r\nHost: a\r\nX-API-KEY: {key}\r\n\r\n")
            .as_bytes(),
    );
    assert_eq!(c.read_response().status, 200);
    let _ = std::fs::remove_file(&path);
}

/// APISIX's own spelling, `${{VAR}}` and `${{VAR:=default}}` (apisix/cli/
/// file.lua: spaces inside the braces allowed, the default trimmed), works
/// beside `${VAR}`: inside strings, typed when it is the whole value, and
/// `$${{VAR}}` is a `$` before the value, as in APISIX (which has no escape
/// for `${{`).
#[test]
fn apisix_double_brace_variables_are_interpolated() {
    let m = common::ai::mocks(&["m"]);
    let doc = serde_json::json!({"services": [{"name": "s", "routes": [{
        "name": "r", "uris": ["${{PREFIX}}/*"], "methods": ["POST"],
        "plugins": {"ai-proxy-multi": {"instances": [{
            "name": "m", "provider": "openai-compatible", "weight": 1,
            "auth": {"header": {"Authorization": "Bearer $${{KEY}}"}},
            "options": {"model": "${{ MODEL }}", "max_tokens": "${{MAX_TOKENS:= 3 }}"},
            "override": {"endpoint": "http://127.0.0.1:${{MOCK_PORT}}/v1/chat/completions"},
        }]}},
    }]}]});
    let port = m.instance("m").addr().port().to_string();
    let gw = Gateway::start_json_env(
        doc,
        vec![
            ("PREFIX".into(), "/api".into()),
            ("KEY".into(), "sk-1".into()),
            ("MODEL".into(), "gpt-x".into()),
            ("MOCK_PORT".into(), port),
        ],
    );
    let r = client::Conn::connect(gw.addr).post_json("/api/chat", common::ai::ASK);
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["model"], "gpt-x");
    assert_eq!(v["usage"]["completion_tokens"], 3, "max_tokens typed: {v}");
    let seen = m.instance("m").requests();
    let auth = seen[0]
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
        .map(|(_, v)| v.as_str());
    assert_eq!(auth, Some("Bearer $sk-1"));

    // A missing one is an error naming it and the field.
    let (code, out) = check(
        "services:\n  - name: s\n    upstream:\n      nodes: [{host: 127.0.0.1, port: \"${{RINGWAY_TEST_UNSET}}\"}]\n    routes:\n      - name: r\n        uris: [\"/*\"]\n",
    );
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("services[0].upstream.nodes[0].port: environment variable `RINGWAY_TEST_UNSET` is not set"),
        "{out}"
    );
}

/// `--help` documents what an operator needs beyond the options (ports,
/// exit codes, signals, `${VAR}`), and `--version` names the commit.
#[test]
fn help_documents_ports_exit_codes_signals_and_version_names_the_commit() {
    let run = |arg: &str| {
        let out = std::process::Command::new(common::gateway::bin())
            .arg(arg)
            .output()
            .expect("run ringway");
        assert!(out.status.success(), "{arg}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let help = run("--help");
    for needle in [
        "0.0.0.0:9080",
        "127.0.0.1:9180",
        "127.0.0.1:9091",
        "127.0.0.1:7085",
        "Exit codes:",
        "2  invalid configuration",
        "SIGHUP",
        "SIGTERM",
        "${VAR:=default}",
    ] {
        assert!(help.contains(needle), "--help lacks {needle}:\n{help}");
    }
    let version = run("--version");
    let commit = version
        .split("(commit ")
        .nth(1)
        .and_then(|r| r.strip_suffix(")\n"))
        .unwrap_or_else(|| panic!("{version}"));
    assert!(
        commit == "unknown"
            || (commit.len() == 12 && commit.bytes().all(|b| b.is_ascii_hexdigit())),
        "{version}"
    );
}
