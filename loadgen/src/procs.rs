//! Processes a benchmark drives: the `ringway` binary on a generated
//! config (optionally with its Admin API and metrics listeners, whose
//! addresses it announces), nginx, pinned to a CPU with `taskset`, with
//! their CPU time, resident memory, open files and threads read from
//! `/proc`. Everything started here is killed when its handle drops.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process, killed on drop.
pub struct Proc {
    child: Child,
    pub name: String,
    _dir: Option<tempfile::TempDir>,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// User + system CPU time so far (all threads).
    pub fn cpu(&self) -> Duration {
        cpu_of(self.pid())
    }

    /// Resident set size, KiB.
    pub fn rss_kib(&self) -> u64 {
        rss_kib(self.pid())
    }

    /// The process's standard error, when it was written to a file
    /// (ringway's: `stderr.log` in its temporary directory).
    pub fn stderr_path(&self) -> Option<PathBuf> {
        let p = self._dir.as_ref()?.path().join("stderr.log");
        p.exists().then_some(p)
    }

    /// How the process ended, if it has.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // SIGTERM first so nginx's workers go too, then make sure.
        let _ = Command::new("kill").arg(self.pid().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU time of a process from `/proc/<pid>/stat` (utime + stime).
pub fn cpu_of(pid: u32) -> Duration {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return Duration::ZERO;
    };
    // Fields after the command name (which may contain spaces).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    let hz = clock_ticks_per_sec();
    Duration::from_secs_f64(ticks as f64 / hz as f64)
}

fn clock_ticks_per_sec() -> u64 {
    // CLK_TCK is 100 on every Linux this runs on; read it when possible.
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// `VmRSS` of a process, KiB.
pub fn rss_kib(pid: u32) -> u64 {
    status_field(pid, "VmRSS:")
}

/// Open file descriptors of a process (entries of `/proc/<pid>/fd`).
pub fn open_fds(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64)
}

/// `Threads` of a process.
pub fn threads(pid: u32) -> u64 {
    status_field(pid, "Threads:")
}

fn status_field(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// The `ringway` binary: `explicit`, else next to this executable.
pub fn ringway_binary(explicit: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(p) = explicit {
        return Ok(p.to_owned());
    }
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let dir = me.parent().ok_or("no executable directory")?;
    for cand in [dir.join("ringway"), dir.join("../ringway")] {
        if cand.exists() {
            return Ok(cand);
        }
    }
    Err(format!(
        "ringway binary not found next to {} (build it with `cargo build --release -p ringway`, or pass --ringway)",
        me.display()
    ))
}

fn pinned(cpu: Option<usize>, program: &Path) -> Command {
    match cpu {
        Some(c) => {
            let mut cmd = Command::new("taskset");
            cmd.arg("-c").arg(c.to_string()).arg(program);
            cmd
        }
        None => Command::new(program),
    }
}

/// Starts ringway with `config_yaml` (its `gateway.listen` is replaced by a
/// free loopback port) and waits for it to listen.
pub fn start_ringway(
    bin: &Path,
    config_yaml: &str,
    workers: usize,
    cpu: Option<usize>,
) -> Result<(Proc, SocketAddr), String> {
    start_ringway_with(bin, "", config_yaml, workers, cpu)
}

/// [`start_ringway`] with extra `gateway:` settings (one `key: value` per
/// line, unindented).
pub fn start_ringway_with(
    bin: &Path,
    gateway_extra: &str,
    config_yaml: &str,
    workers: usize,
    cpu: Option<usize>,
) -> Result<(Proc, SocketAddr), String> {
    let gateway =
        format!("admin: {{enabled: false}}\nmetrics: {{enabled: false}}\nstatus: {{enabled: false}}\n{gateway_extra}");
    let r = spawn_ringway(bin, &gateway, config_yaml, workers, cpu, false)?;
    Ok((r.proc, r.addr))
}

/// A ringway started with its Admin API and metrics listeners.
pub struct Ringway {
    pub proc: Proc,
    /// The proxy listener.
    pub addr: SocketAddr,
    pub admin: Option<SocketAddr>,
    pub metrics: Option<SocketAddr>,
}

/// [`start_ringway_with`], and the Admin API (with `admin_key`) and the
/// metrics endpoint on free loopback ports.
pub fn start_ringway_observed(
    bin: &Path,
    admin_key: &str,
    gateway_extra: &str,
    config_yaml: &str,
    workers: usize,
    cpu: Option<usize>,
) -> Result<Ringway, String> {
    let gateway = format!(
        "admin: {{listen: \"127.0.0.1:0\", key: \"{admin_key}\"}}\nmetrics: {{listen: \"127.0.0.1:0\"}}\nstatus: {{enabled: false}}\n{gateway_extra}"
    );
    let r = spawn_ringway(bin, &gateway, config_yaml, workers, cpu, true)?;
    if r.admin.is_none() || r.metrics.is_none() {
        return Err("ringway did not announce its admin and metrics listeners".into());
    }
    Ok(r)
}

/// The listener a "ringway: … listening on http://ADDR" line announces.
fn announced(line: &str) -> Option<(&'static str, &str)> {
    let (what, addr) = line
        .strip_prefix("ringway: ")?
        .split_once(" listening on http://")?;
    let what = match what {
        "proxy" => "proxy",
        "admin API" => "admin",
        "metrics" => "metrics",
        _ => return None,
    };
    Some((what, addr))
}

/// Starts ringway with `gateway` settings (unindented lines) and
/// `config_yaml`, and reads the addresses it announces (waiting for the
/// admin and metrics ones too when `observed`).
fn spawn_ringway(
    bin: &Path,
    gateway: &str,
    config_yaml: &str,
    workers: usize,
    cpu: Option<usize>,
    observed: bool,
) -> Result<Ringway, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let path = dir.path().join("ringway.yaml");
    let extra: String = gateway.lines().map(|l| format!("  {l}\n")).collect();
    let cfg = format!(
        "gateway:\n  listen: [\"127.0.0.1:0\"]\n  workers: {workers}\n{extra}{config_yaml}"
    );
    std::fs::write(&path, cfg).map_err(|e| e.to_string())?;
    let errors = std::fs::File::create(dir.path().join("stderr.log")).map_err(|e| e.to_string())?;
    let mut child = pinned(cpu, bin)
        .arg("-c")
        .arg(&path)
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(errors)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some((what, addr)) = announced(&line) {
                let _ = tx.send((what, addr.to_owned()));
            }
        }
    });
    let proc = Proc {
        child,
        name: "ringway".into(),
        _dir: Some(dir),
    };
    let parse = |a: &str| -> Result<SocketAddr, String> {
        a.parse().map_err(|e| format!("bad address {a}: {e}"))
    };
    let (mut addr, mut admin, mut metrics) = (None, None, None);
    let deadline = Instant::now() + Duration::from_secs(20);
    while addr.is_none() || (observed && (admin.is_none() || metrics.is_none())) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(("proxy", a)) => addr = addr.or(Some(parse(&a)?)),
            Ok(("admin", a)) => admin = Some(parse(&a)?),
            Ok((_, a)) => metrics = Some(parse(&a)?),
            // The metrics and admin lines follow the proxy's at once: a
            // missing one is not coming.
            Err(_) if addr.is_some() => break,
            Err(_) => {
                return Err(
                    "ringway did not start (check the config with `ringway --check`)".to_owned(),
                )
            }
        }
    }
    let addr = addr.ok_or("ringway announced no proxy listener")?;
    Ok(Ringway {
        proc,
        addr,
        admin,
        metrics,
    })
}

/// Starts nginx (one worker, pinned) proxying every path to `upstream`
/// with upstream keep-alive and buffering off, on a free port.
pub fn start_nginx(upstream: SocketAddr, cpu: Option<usize>) -> Result<(Proc, SocketAddr), String> {
    let bin = ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .ok_or("nginx is not installed (benches/compare/install-nginx.sh installs it)")?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let conf = format!(
        r#"daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log error;
events {{ worker_connections 16384; }}
http {{
  access_log off;
  client_body_temp_path {dir};
  proxy_temp_path {dir};
  upstream llm {{ server {upstream}; keepalive 256; }}
  server {{
    listen 127.0.0.1:{port} reuseport;
    keepalive_requests 1000000;
    location / {{
      proxy_pass http://llm;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
      proxy_request_buffering off;
    }}
  }}
}}
"#,
        dir = dir.path().display()
    );
    let path = dir.path().join("nginx.conf");
    std::fs::write(&path, conf).map_err(|e| e.to_string())?;
    let child = pinned(cpu, &bin)
        .arg("-c")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start nginx: {e}"))?;
    let addr: SocketAddr = format!("127.0.0.1:{port}")
        .parse()
        .map_err(|e| format!("{e}"))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(addr).is_err() {
        if Instant::now() > deadline {
            return Err("nginx did not start".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok((
        Proc {
            child,
            name: "nginx".into(),
            _dir: Some(dir),
        },
        addr,
    ))
}

/// Pins the calling thread to `cpu`.
pub fn pin_current_thread(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET writes in
    // bounds for cpu < CPU_SETSIZE; sched_setaffinity reads the set.
    #[allow(unsafe_code)]
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if cpu < libc::CPU_SETSIZE as usize {
            libc::CPU_SET(cpu, &mut set);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        }
    }
}

/// Starts the LiteLLM proxy (`litellm` from `scripts/setup-litellm.sh`)
/// pinned to `cpu`, with two deployments of one model weighted 8:2 on the
/// given OpenAI-compatible bases, and waits until it answers.
pub fn start_litellm(
    bin: &Path,
    bases: [SocketAddr; 2],
    cpu: Option<usize>,
) -> Result<(Proc, SocketAddr), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let conf = format!(
        "model_list:\n  - model_name: gpt-4o-mini\n    litellm_params: {{model: openai/gpt-4o-mini, api_base: \"http://{}/v1\", api_key: sk-mock, weight: 8}}\n  - model_name: gpt-4o-mini\n    litellm_params: {{model: openai/gpt-4o-mini, api_base: \"http://{}/v1\", api_key: sk-mock, weight: 2}}\nrouter_settings:\n  routing_strategy: simple-shuffle\nlitellm_settings:\n  drop_params: true\n  telemetry: false\n",
        bases[0], bases[1]
    );
    let path = dir.path().join("litellm.yaml");
    std::fs::write(&path, conf).map_err(|e| e.to_string())?;
    let log = std::fs::File::create(dir.path().join("litellm.log")).map_err(|e| e.to_string())?;
    let child = pinned(cpu, bin)
        .arg("--config")
        .arg(&path)
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--num_workers",
            "1",
        ])
        .env("LITELLM_LOG", "ERROR")
        .env("LITELLM_TELEMETRY", "False")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
    let addr: SocketAddr = format!("127.0.0.1:{port}")
        .parse()
        .map_err(|e| format!("{e}"))?;
    let proc = Proc {
        child,
        name: "litellm".into(),
        _dir: Some(dir),
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(mut s) = std::net::TcpStream::connect(addr) {
            use std::io::{Read, Write};
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = s.write_all(
                b"GET /health/liveliness HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            );
            let mut b = [0u8; 64];
            if matches!(s.read(&mut b), Ok(n) if n > 12 && b.starts_with(b"HTTP/1.1 200")) {
                return Ok((proc, addr));
            }
        }
        if Instant::now() > deadline {
            return Err("litellm did not become ready within 120 s".into());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_lines() {
        assert_eq!(
            announced("ringway: proxy listening on http://127.0.0.1:9080"),
            Some(("proxy", "127.0.0.1:9080"))
        );
        assert_eq!(
            announced("ringway: admin API listening on http://127.0.0.1:9180"),
            Some(("admin", "127.0.0.1:9180"))
        );
        assert_eq!(
            announced("ringway: metrics listening on http://127.0.0.1:9091"),
            Some(("metrics", "127.0.0.1:9091"))
        );
        assert_eq!(announced("ringway: proxy listening on https://x:1"), None);
        assert_eq!(announced("{\"status\":200}"), None);
    }
}
