//! The deployment kit under `deploy/`: the default configuration, the
//! image's entrypoint, the Kubernetes manifests and the systemd unit.
//!
//! - The entrypoint the way the image runs it: the binary found on `PATH`
//!   as `ENTRYPOINT ["ringway"]`, the Dockerfile's `CMD` arguments, the
//!   default configuration (its addresses moved to free loopback ports, the
//!   rest verbatim) in a read-only directory, a bare environment holding
//!   only the provider key and endpoint, the Dockerfile's non-root uid when
//!   the test runs as root. Ready on the manifests' probe path, a chat
//!   served through mock-llm, the metrics on the scrape annotation's path,
//!   then the Dockerfile's `STOPSIGNAL`: not ready, the open stream
//!   finishes, exit 0 within the grace period the manifests give.
//! - `ringway --check` on the default configuration, with and without the
//!   provider key.
//! - The manifests against Kubernetes' own schemas (`kubernetes-validate`
//!   in `.venv`, `scripts/setup-test-deps.sh`), and against the
//!   configuration: ports, probe paths, the grace period, the ConfigMap's
//!   copy of the file, the image's user, stop signal and command.
//! - The systemd unit through `systemd-analyze verify` (skipped, saying
//!   so, where systemd-analyze is missing) and against the configuration.
#![allow(unsafe_code, clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::ai::{InstanceConfig, MockServer};
use common::Conn;
use ringway::config::{FieldPath, GatewaySettings};
use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn yaml(rel: &str) -> Value {
    serde_yaml_ng::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The default configuration's `gateway:` section as ringway reads it
/// (its defaults applied).
fn settings() -> GatewaySettings {
    let doc = yaml("deploy/ringway.yaml");
    GatewaySettings::from_value(doc.get("gateway"), &FieldPath::root().field("gateway"))
        .expect("deploy/ringway.yaml's gateway section")
}

/// The one container of the Deployment.
fn container() -> Value {
    let d = yaml("deploy/kubernetes/deployment.yaml");
    let cs = d["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap();
    assert_eq!(cs.len(), 1, "one container");
    cs[0].clone()
}

/// A named (or numbered) container port.
fn port_of(c: &Value, name: &Value) -> u16 {
    if let Some(n) = name.as_u64() {
        return n as u16;
    }
    let name = name.as_str().unwrap();
    c["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no container port named {name}"))["containerPort"]
        .as_u64()
        .unwrap() as u16
}

/// A Dockerfile instruction's argument (the last one of that name).
fn dockerfile(instruction: &str) -> String {
    read("deploy/Dockerfile")
        .lines()
        .filter_map(|l| l.strip_prefix(&format!("{instruction} ")))
        .next_back()
        .unwrap_or_else(|| panic!("deploy/Dockerfile has no {instruction}"))
        .trim()
        .to_owned()
}

fn dockerfile_json(instruction: &str) -> Vec<String> {
    serde_json::from_str(&dockerfile(instruction)).unwrap()
}

/// A `Key=value` of the systemd unit (the last one).
fn unit(key: &str) -> String {
    read("deploy/systemd/ringway.service")
        .lines()
        .filter_map(|l| l.strip_prefix(&format!("{key}=")))
        .next_back()
        .unwrap_or_else(|| panic!("ringway.service has no {key}="))
        .to_owned()
}

fn signal_number(name: &str) -> i32 {
    match name {
        "SIGTERM" => libc::SIGTERM,
        "SIGINT" => libc::SIGINT,
        "SIGQUIT" => libc::SIGQUIT,
        "SIGHUP" => libc::SIGHUP,
        other => panic!("unexpected stop signal {other}"),
    }
}

/// terminationGracePeriodSeconds, less the preStop sleep: how long the
/// process has between SIGTERM and SIGKILL.
fn grace_after_sigterm() -> Duration {
    let d = yaml("deploy/kubernetes/deployment.yaml");
    let grace = d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        .as_u64()
        .unwrap();
    let sleep = container()["lifecycle"]["preStop"]["sleep"]["seconds"]
        .as_u64()
        .unwrap_or(0);
    Duration::from_secs(grace.checked_sub(sleep).expect("grace > preStop sleep"))
}

/// The default configuration with `from` replaced by `to`, exactly once.
fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert_eq!(
        text.matches(from).count(),
        1,
        "deploy/ringway.yaml should hold {from} once"
    );
    text.replacen(from, to, 1)
}

/// SIGKILLs the gateway if the test ends (panics) before it exited, so a
/// failed run leaves no process behind.
struct KillOnDrop(Option<i32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            // SAFETY: signalling our own child, not yet reaped.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
}

#[test]
fn the_image_entrypoint_serves_as_a_non_root_user_and_drains_on_its_stop_signal() {
    let key = "sk-deploy-kit";
    let mock = MockServer::builder()
        .instance(
            InstanceConfig::new("openai")
                .api_key(key)
                .tokens(12)
                .itl(Duration::from_millis(100)),
        )
        .spawn()
        .unwrap();

    // The image's layout: /usr/local/bin/ringway, /etc/ringway/ringway.yaml
    // (read-only: a ConfigMap volume), under a root everyone may traverse.
    let root = tempfile::tempdir().unwrap();
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin_dir = root.path().join("usr/local/bin");
    let etc = root.path().join("etc/ringway");
    std::fs::create_dir_all(&bin_dir).unwrap();
    std::fs::create_dir_all(&etc).unwrap();
    for d in [
        root.path().join("usr"),
        root.path().join("usr/local"),
        bin_dir.clone(),
    ] {
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::set_permissions(
        root.path().join("etc"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let bin = bin_dir.join("ringway");
    if std::fs::hard_link(common::gateway::bin(), &bin).is_err() {
        std::fs::copy(common::gateway::bin(), &bin).unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    let s = settings();
    let mut text = read("deploy/ringway.yaml");
    for addr in [s.listen[0], s.status.unwrap().listen, s.metrics.unwrap()] {
        text = replace_once(&text, &format!("\"{addr}\""), "\"127.0.0.1:0\"");
    }
    let file = etc.join("ringway.yaml");
    std::fs::write(&file, text).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o444)).unwrap();
    std::fs::set_permissions(&etc, std::fs::Permissions::from_mode(0o555)).unwrap();

    // ENTRYPOINT + CMD, the CMD's path moved under the test's root.
    let entrypoint = dockerfile_json("ENTRYPOINT");
    let mut cmd_args = dockerfile_json("CMD");
    assert_eq!(entrypoint, ["ringway"]);
    let image_path = cmd_args.last().unwrap().clone();
    *cmd_args.last_mut().unwrap() = root
        .path()
        .join(image_path.trim_start_matches('/'))
        .to_string_lossy()
        .into_owned();
    let mut cmd = Command::new(&entrypoint[0]);
    cmd.args(&cmd_args)
        .env_clear()
        .env("PATH", format!("{}:/usr/bin:/bin", bin_dir.display()))
        .env("OPENAI_API_KEY", key)
        .env(
            "OPENAI_CHAT_ENDPOINT",
            format!("{}/v1/chat/completions", mock.instance("openai").url()),
        )
        .current_dir("/")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: geteuid has no preconditions.
    let as_root = unsafe { libc::geteuid() } == 0;
    let user = dockerfile("USER");
    let (uid, gid) = user.split_once(':').unwrap();
    let (uid, gid): (u32, u32) = (uid.parse().unwrap(), gid.parse().unwrap());
    if as_root {
        cmd.uid(uid).gid(gid);
    }
    // A copied binary may still be open for writing in a child another
    // test thread forked meanwhile (until that child execs): ETXTBSY.
    let mut tries = 0;
    let mut child = loop {
        tries += 1;
        match cmd.spawn() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < 100 => {
                std::thread::sleep(Duration::from_millis(20))
            }
            r => break r.expect("start ringway from PATH"),
        }
    };
    let pid = child.id() as i32;
    let mut guard = KillOnDrop(Some(pid));

    let mut err_pipe = child.stderr.take().unwrap();
    let (err_tx, err_rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err_pipe.read_to_string(&mut s);
        let _ = err_tx.send(s);
    });
    let (tx, rx) = mpsc::channel::<String>();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let (mut proxy, mut status, mut metrics) = (None, None, None);
    let deadline = Instant::now() + Duration::from_secs(20);
    while proxy.is_none() || status.is_none() || metrics.is_none() {
        let line = match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(l) => l,
            Err(_) => {
                guard.0 = None;
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "ringway did not announce its listeners; stderr:\n{}",
                    err_rx.recv().unwrap_or_default()
                );
            }
        };
        let addr = |p: &str| {
            line.strip_prefix(p)
                .map(|a| a.parse::<SocketAddr>().unwrap())
        };
        proxy = proxy.or(addr("ringway: proxy listening on http://"));
        status = status.or(addr("ringway: status listening on http://"));
        metrics = metrics.or(addr("ringway: metrics listening on http://"));
    }
    let (proxy, status, metrics) = (proxy.unwrap(), status.unwrap(), metrics.unwrap());

    if as_root {
        let st = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let uids = st.lines().find(|l| l.starts_with("Uid:")).unwrap();
        assert!(
            uids.split_whitespace()
                .skip(1)
                .all(|u| u == uid.to_string()),
            "runs as {uid}: {uids}"
        );
    }

    // Readiness, as the kubelet asks it.
    let c = container();
    let ready = &c["readinessProbe"]["httpGet"];
    let live = &c["livenessProbe"]["httpGet"];
    let ready_path = ready["path"].as_str().unwrap();
    let started = Instant::now();
    loop {
        let r = Conn::connect(status).get(ready_path);
        if r.status == 200 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{ready_path} never 200: {} {}",
            r.status,
            r.text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let r = Conn::connect(status).get(live["path"].as_str().unwrap());
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["draining"], false);

    // A chat through mock-llm with the key from the environment.
    let r = Conn::connect(proxy).post_json(
        "/v1/chat/completions",
        r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-ringway-instance"), Some("openai"));
    assert_eq!(mock.instance("openai").stats().requests, 1);

    // The metrics where the scrape annotation says.
    let d = yaml("deploy/kubernetes/deployment.yaml");
    let ann = &d["spec"]["template"]["metadata"]["annotations"];
    let r = Conn::connect(metrics).get(ann["prometheus.io/path"].as_str().unwrap());
    assert_eq!(r.status, 200);
    assert!(r.text().contains("ringway_"), "{}", r.text());

    // A stream in flight, then the image's stop signal.
    let mut stream = Conn::connect(proxy);
    let body =
        r#"{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"a story"}]}"#;
    stream.send(
        format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    assert_eq!(stream.read_head().0, 200);
    let mut sse = String::from_utf8(stream.read_chunk().unwrap()).unwrap();
    let stop = signal_number(&dockerfile("STOPSIGNAL"));
    // SAFETY: signalling our own child.
    unsafe {
        libc::kill(pid, stop);
    }
    let signalled = Instant::now();
    loop {
        let r = Conn::connect(status).get(ready_path);
        if r.status == 503 {
            assert!(r.text().contains("draining"), "{}", r.text());
            break;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(5),
            "still ready after the stop signal"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    while let Some(chunk) = stream.read_chunk() {
        sse.push_str(&String::from_utf8(chunk).unwrap());
    }
    assert!(
        sse.trim_end().ends_with("data: [DONE]"),
        "stream cut: {sse}"
    );

    let grace = grace_after_sigterm();
    let code = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st.code();
        }
        if signalled.elapsed() > grace {
            guard.0 = None;
            let _ = child.kill();
            let _ = child.wait();
            panic!("not exited within the grace period ({grace:?})");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    guard.0 = None;
    let stderr = err_rx.recv().unwrap();
    assert_eq!(code, Some(0), "stderr:\n{stderr}");
    assert!(stderr.contains("shutting down"), "{stderr}");
    // Read-only directory, nothing written beside the file.
    let names: Vec<_> = std::fs::read_dir(&etc)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["ringway.yaml"]);
}

#[test]
fn check_accepts_the_default_config_and_names_a_missing_provider_key() {
    let run = |env: &[(&str, &str)]| {
        Command::new(common::gateway::bin())
            .args(["--check", "-c"])
            .arg(repo().join("deploy/ringway.yaml"))
            .env_clear()
            .envs(env.iter().copied())
            .output()
            .unwrap()
    };
    let ok = run(&[("OPENAI_API_KEY", "sk-x")]);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("is valid"));
    let missing = run(&[]);
    assert_eq!(missing.status.code(), Some(2));
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(err.contains("`OPENAI_API_KEY` is not set"), "{err}");
}

#[test]
fn the_manifests_agree_with_the_default_config_and_the_image() {
    let s = settings();
    let listen = s.listen[0];
    let st = s.status.expect("the Status API is on");
    let metrics = s.metrics.expect("metrics are on");
    for (what, a) in [
        ("listen", listen),
        ("status", st.listen),
        ("metrics", metrics),
    ] {
        assert!(
            a.ip().is_unspecified(),
            "{what} must be reachable from outside the pod: {a}"
        );
    }
    if let Some(admin) = &s.admin {
        assert!(admin.listen.ip().is_loopback(), "Admin API beyond loopback");
    }
    let drain = s.timeouts.drain;

    // The ConfigMap carries the file verbatim.
    let cm = yaml("deploy/kubernetes/configmap.yaml");
    assert_eq!(
        cm["data"]["ringway.yaml"].as_str().unwrap(),
        read("deploy/ringway.yaml"),
        "deploy/kubernetes/configmap.yaml's data.ringway.yaml differs from deploy/ringway.yaml"
    );

    // Ports and probes.
    let d = yaml("deploy/kubernetes/deployment.yaml");
    let pod = &d["spec"]["template"]["spec"];
    let c = container();
    let ready = &c["readinessProbe"]["httpGet"];
    let live = &c["livenessProbe"]["httpGet"];
    assert_eq!(ready["path"], "/status/ready");
    assert_eq!(live["path"], "/status");
    assert_eq!(port_of(&c, &ready["port"]), st.listen.port());
    assert_eq!(port_of(&c, &live["port"]), st.listen.port());
    let mut container_ports: Vec<u16> = c["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["containerPort"].as_u64().unwrap() as u16)
        .collect();
    container_ports.sort_unstable();
    let mut config_ports = vec![listen.port(), st.listen.port(), metrics.port()];
    config_ports.sort_unstable();
    assert_eq!(container_ports, config_ports);
    let ann = &d["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(ann["prometheus.io/port"], metrics.port().to_string());
    assert_eq!(ann["prometheus.io/path"], "/apisix/prometheus/metrics");
    let svc = yaml("deploy/kubernetes/service.yaml");
    for p in svc["spec"]["ports"].as_array().unwrap() {
        assert_eq!(port_of(&c, &p["targetPort"]), listen.port(), "{p}");
    }
    let mut exposed: Vec<u16> = dockerfile("EXPOSE")
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    exposed.sort_unstable();
    assert_eq!(exposed, config_ports);

    // Draining fits in the grace period.
    let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
    let sleep = c["lifecycle"]["preStop"]["sleep"]["seconds"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        Duration::from_secs(grace) > Duration::from_secs(sleep) + drain,
        "terminationGracePeriodSeconds {grace} <= preStop {sleep} s + drain {drain:?}"
    );
    let stop = unit("TimeoutStopSec").parse::<u64>().unwrap();
    assert!(Duration::from_secs(stop) > drain, "TimeoutStopSec {stop}");

    // The stop signal is the one that drains (SIGTERM or SIGINT), the same
    // in the image and the unit; SIGHUP reloads.
    let stop_signal = dockerfile("STOPSIGNAL");
    assert!(["SIGTERM", "SIGINT"].contains(&stop_signal.as_str()));
    assert_eq!(unit("KillSignal"), stop_signal);
    assert_eq!(unit("ExecReload"), "/bin/kill -HUP $MAINPID");

    // The image's command and user, as the pod runs them.
    let cmd = dockerfile_json("CMD");
    let args: Vec<String> = serde_json::from_value(c["args"].clone()).unwrap();
    assert_eq!(args, cmd);
    let config_path = Path::new(cmd.last().unwrap());
    let mount = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "config")
        .unwrap();
    assert_eq!(
        Path::new(mount["mountPath"].as_str().unwrap()),
        config_path.parent().unwrap()
    );
    assert!(
        mount.get("subPath").is_none(),
        "subPath mounts never update"
    );
    assert!(cm["data"]
        .get(config_path.file_name().unwrap().to_str().unwrap())
        .is_some());
    assert!(unit("ExecStart").ends_with(&format!("-c {}", config_path.display())));
    let user = dockerfile("USER");
    let sc = &pod["securityContext"];
    assert_eq!(
        format!("{}:{}", sc["runAsUser"], sc["runAsGroup"]),
        user,
        "runAsUser/runAsGroup vs the image's USER"
    );
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
    let csc = &c["securityContext"];
    assert_eq!(csc["readOnlyRootFilesystem"], true);
    assert_eq!(csc["allowPrivilegeEscalation"], false);
    assert_eq!(csc["capabilities"]["drop"], serde_json::json!(["ALL"]));

    // workers: auto follows the CPU limit: a whole number, requested as
    // much as limited.
    let res = &c["resources"];
    assert_eq!(res["requests"]["cpu"], res["limits"]["cpu"]);
    let cpus = res["limits"]["cpu"].as_str().unwrap();
    assert!(cpus.parse::<u32>().is_ok(), "limits.cpu {cpus}: whole CPUs");

    // kustomization.yaml lists every manifest but the example Secret.
    let k = yaml("deploy/kubernetes/kustomization.yaml");
    let listed: BTreeSet<String> = serde_json::from_value(k["resources"].clone()).unwrap();
    let files: BTreeSet<String> = manifests()
        .into_iter()
        .filter(|f| !f.ends_with(".example.yaml"))
        .collect();
    assert_eq!(listed, files);
}

/// Every manifest under deploy/kubernetes but kustomization.yaml.
fn manifests() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(repo().join("deploy/kubernetes"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
        .collect();
    v.sort();
    v
}

/// The oldest Kubernetes the manifests support (the preStop `sleep`
/// action) and the newest the pinned kubernetes-validate knows.
const KUBERNETES_VERSIONS: [&str; 2] = ["1.30.0", "1.37.0"];

#[test]
fn the_manifests_are_valid_kubernetes_objects() {
    let tool = repo().join(".venv/bin/kubernetes-validate");
    assert!(
        tool.exists(),
        "{} missing: run scripts/setup-test-deps.sh",
        tool.display()
    );
    let dir = repo().join("deploy/kubernetes");
    let files = manifests();
    assert!(files.len() >= 4, "{files:?}");
    for version in KUBERNETES_VERSIONS {
        let out = Command::new(&tool)
            .args(["--strict", "--kubernetes-version", version])
            .args(&files)
            .current_dir(&dir)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "Kubernetes {version}:\n{text}");
        for f in &files {
            assert!(
                text.contains(&format!("{f} passed")),
                "{f} not validated against {version}:\n{text}"
            );
        }
        assert!(!text.contains("WARN"), "{text}");
    }
}

#[test]
fn the_systemd_unit_verifies() {
    let Ok(out) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("SKIPPED the_systemd_unit_verifies: systemd-analyze is not installed");
        return;
    };
    assert!(out.status.success());
    // The unit as installed, its binary where this build put it (verify
    // checks that ExecStart's program exists).
    let dir = tempfile::tempdir().unwrap();
    let text = read("deploy/systemd/ringway.service")
        .replace("/usr/local/bin/ringway", common::gateway::bin());
    let file = dir.path().join("ringway.service");
    std::fs::write(&file, text).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&file)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Unknown keys and bad values are warnings with exit 0: none allowed.
    assert!(out.status.success() && text.trim().is_empty(), "{text}");
    let env = read("deploy/systemd/ringway.env.example");
    assert!(env.lines().any(|l| l.starts_with("OPENAI_API_KEY=")));
    assert!(unit("EnvironmentFile").ends_with("/ringway.env"));
}
