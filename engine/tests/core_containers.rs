//! Running well inside containers: with io_uring blocked by a seccomp
//! filter (what Docker's default profile does) the workers run on epoll,
//! say so in the log, the metrics and `/status`, and serve; `workers:
//! auto` follows the CPUs the process may use (its affinity mask, its
//! cgroup's CPU quota) and pins only to allowed CPUs; `pin_workers: false`
//! leaves placement to the kernel.
#![allow(unsafe_code, clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::upstream::Upstream;
use common::{Conn, Gateway};
use serde_json::json;

/// io_uring_setup, io_uring_enter, io_uring_register (x86_64).
const IO_URING_SYSCALLS: [u32; 3] = [425, 426, 427];

/// Installs a seccomp filter answering EPERM to the io_uring system calls,
/// as Docker's default profile does, in the child before it runs.
fn block_io_uring(cmd: &mut Command) {
    // SAFETY: only async-signal-safe calls (prctl) between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            const LD_NR: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
            const JEQ: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
            const RET: u16 = 0x06; // BPF_RET | BPF_K
            const ERRNO_EPERM: u32 = 0x0005_0000 | libc::EPERM as u32;
            const ALLOW: u32 = 0x7fff_0000;
            let f = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
            let [a, b, c] = IO_URING_SYSCALLS;
            let mut prog = [
                f(LD_NR, 0, 0, 0),
                f(JEQ, 3, 0, a),
                f(JEQ, 2, 0, b),
                f(JEQ, 1, 0, c),
                f(RET, 0, 0, ALLOW),
                f(RET, 0, 0, ERRNO_EPERM),
            ];
            let fprog = libc::sock_fprog {
                len: prog.len() as u16,
                filter: prog.as_mut_ptr(),
            };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &fprog) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

fn node(up: &Upstream) -> serde_json::Value {
    let port: u16 = up
        .node_yaml()
        .rsplit("port: ")
        .next()
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    json!({"host": "127.0.0.1", "port": port, "weight": 1})
}

#[test]
fn with_io_uring_blocked_the_workers_run_on_epoll_and_say_so() {
    let up = Upstream::echo();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ringway.yaml");
    let doc = json!({
        "gateway": {
            "listen": ["127.0.0.1:0"], "workers": 2,
            "admin": {"enabled": false},
            "metrics": {"listen": "127.0.0.1:0"},
            "status": {"listen": "127.0.0.1:0"},
        },
    });
    let text = format!(
        "{}{}",
        serde_yaml_ng::to_string(&doc).unwrap(),
        common::catch_all(&up)
    );
    std::fs::write(&file, text).unwrap();
    let mut cmd = Command::new(common::gateway::bin());
    cmd.arg("-c")
        .arg(&file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    block_io_uring(&mut cmd);
    let mut child = cmd.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut proxy, mut metrics, mut status) = (None, None, None);
    while proxy.is_none() || metrics.is_none() || status.is_none() {
        let line = lines.next().expect("announce lines").unwrap();
        for (prefix, slot) in [
            ("ringway: proxy listening on http://", &mut proxy),
            ("ringway: metrics listening on http://", &mut metrics),
            ("ringway: status listening on http://", &mut status),
        ] {
            if let Some(a) = line.strip_prefix(prefix) {
                *slot = Some(a.parse::<std::net::SocketAddr>().unwrap());
            }
        }
    }
    let r = Conn::connect(proxy.unwrap()).get("/hello");
    assert_eq!(r.status, 200, "served on epoll");
    let m = Conn::connect(metrics.unwrap()).get("/metrics").text();
    assert!(
        m.contains("ringway_io_driver_info{driver=\"epoll\"} 1"),
        "{m}"
    );
    let s = Conn::connect(status.unwrap()).get("/status").text();
    assert!(s.contains("\"io_driver\":\"epoll\""), "{s}");
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("io_uring is unavailable"), "{stderr}");
    assert!(stderr.contains("epoll driver"), "{stderr}");
}

#[test]
fn epoll_can_be_chosen_for_a_side_by_side_measurement() {
    let up = Upstream::echo();
    let doc = json!({
        "gateway": {"metrics": {"listen": "127.0.0.1:0"}},
        "services": [{"name": "s", "upstream": {"nodes": [node(&up)]}, "routes": [{"name": "all", "uris": ["/*"]}]}],
    });
    let env = vec![("RINGWAY_IO_DRIVER".to_owned(), "epoll".to_owned())];
    let gw = Gateway::start_json_env(doc, env);
    assert_eq!(Conn::connect(gw.addr).get("/x").status, 200);
    let m = Conn::connect(gw.metrics_addr.unwrap())
        .get("/metrics")
        .text();
    assert!(
        m.contains("ringway_io_driver_info{driver=\"epoll\"} 1"),
        "{m}"
    );
}

#[test]
fn an_unrestricted_process_runs_io_uring() {
    let up = Upstream::echo();
    let gw = Gateway::start_json(json!({
        "gateway": {"metrics": {"listen": "127.0.0.1:0"}},
        "services": [{"name": "s", "upstream": {"nodes": [node(&up)]}, "routes": [{"name": "all", "uris": ["/*"]}]}],
    }));
    let m = Conn::connect(gw.metrics_addr.unwrap())
        .get("/metrics")
        .text();
    assert!(
        m.contains("ringway_io_driver_info{driver=\"io_uring\"} 1"),
        "{m}"
    );
}

/// The worker threads (`ringway-w<i>`) of `pid` and their allowed CPUs.
fn workers(pid: i32) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let t = t.unwrap().path();
        let comm = std::fs::read_to_string(t.join("comm")).unwrap_or_default();
        let comm = comm.trim();
        if !comm.starts_with("ringway-w") {
            continue;
        }
        let status = std::fs::read_to_string(t.join("status")).unwrap_or_default();
        let allowed = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .unwrap_or("")
            .trim()
            .to_owned();
        out.push((comm.to_owned(), allowed));
    }
    out.sort();
    out
}

fn start(wrapper: &[&str], gateway: serde_json::Value) -> Gateway {
    let up = Upstream::echo();
    let doc = json!({
        "gateway": gateway,
        "services": [{"name": "s", "upstream": {"nodes": [node(&up)]}, "routes": [{"name": "all", "uris": ["/*"]}]}],
    });
    // (No request reaches the upstream: it is there for the route.)
    Gateway::start_json_wrapped(doc, Vec::new(), wrapper)
}

#[test]
fn workers_auto_follows_the_affinity_mask_and_pins_only_there() {
    let cpus = std::thread::available_parallelism().unwrap().get();
    assert!(cpus >= 2, "this test needs two CPUs");
    let gw = start(&["taskset", "-c", "1"], json!({"workers": "auto"}));
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        workers(gw.pid()),
        [("ringway-w0".to_owned(), "1".to_owned())]
    );

    // Two CPUs allowed, pinning off: two workers, each free on both.
    let gw = start(
        &["taskset", "-c", "0,1"],
        json!({"workers": "auto", "pin_workers": false}),
    );
    std::thread::sleep(Duration::from_millis(200));
    let w = workers(gw.pid());
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(w.iter().all(|(_, cpus)| cpus == "0-1"), "{w:?}");

    // Pinning on (the default): one CPU each, never both on CPU 0.
    let gw = start(&["taskset", "-c", "0,1"], json!({"workers": "auto"}));
    std::thread::sleep(Duration::from_millis(200));
    let w = workers(gw.pid());
    let pinned: Vec<&str> = w.iter().map(|(_, c)| c.as_str()).collect();
    assert_eq!(pinned, ["0", "1"], "{w:?}");
}

#[test]
fn workers_auto_follows_the_cgroup_cpu_quota() {
    // A cgroup (v1 `cpu` controller here; v2's `cpu.max` is read the
    // same way) allowing one CPU's worth of time.
    let cg = std::path::PathBuf::from(format!(
        "/sys/fs/cgroup/cpu/ringway-test-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&cg).expect("the cpu cgroup is writable (root)");
    std::fs::write(cg.join("cpu.cfs_period_us"), "100000").unwrap();
    std::fs::write(cg.join("cpu.cfs_quota_us"), "100000").unwrap();
    let enter = format!("echo $$ > {}/cgroup.procs && exec \"$@\"", cg.display());
    let gw = start(&["sh", "-c", &enter, "sh"], json!({"workers": "auto"}));
    std::thread::sleep(Duration::from_millis(200));
    let w = workers(gw.pid());
    assert_eq!(w.len(), 1, "one CPU's quota, one worker: {w:?}");
    drop(gw);
    std::thread::sleep(Duration::from_millis(300));
    let _ = std::fs::remove_dir(&cg);
}
