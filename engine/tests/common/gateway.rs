#![allow(unsafe_code)]
//! Starts the real `ringway` binary with a generated config on loopback
//! ports chosen by the kernel, waits for its "listening" lines, and stops
//! it (SIGTERM, then SIGKILL) when dropped.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Gateway {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub tls_addr: Option<SocketAddr>,
    pub admin_addr: Option<SocketAddr>,
    pub metrics_addr: Option<SocketAddr>,
    /// The Status API (`/status`, `/status/ready`); off unless the test's
    /// `gateway` section sets `status`.
    pub status_addr: Option<SocketAddr>,
    pub dir: tempfile::TempDir,
    stderr: Arc<Mutex<String>>,
    stdout: Arc<Mutex<Vec<String>>>,
    env: Vec<(String, String)>,
}

/// Config pieces; `start` fills in loopback listeners.
pub struct GatewayConfig {
    pub workers: usize,
    /// Extra lines for the `gateway:` section (without indentation).
    pub gateway_extra: String,
    /// The rest of the file (`services:`, `consumers:`, …).
    pub body: String,
    pub env: Vec<(String, String)>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            workers: 2,
            gateway_extra: String::new(),
            body: String::new(),
            env: Vec::new(),
        }
    }
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_ringway")
}

impl Gateway {
    /// Starts with default settings (2 workers) and `body` as services.
    pub fn start(body: &str) -> Gateway {
        Gateway::start_with(GatewayConfig {
            body: body.to_owned(),
            ..Default::default()
        })
    }

    /// Starts with a config given as JSON (the whole document; a
    /// `gateway` object in it is merged over the test defaults).
    pub fn start_json(doc: serde_json::Value) -> Gateway {
        Gateway::start_json_env(doc, Vec::new())
    }

    pub fn start_json_env(doc: serde_json::Value, env: Vec<(String, String)>) -> Gateway {
        Gateway::start_json_wrapped(doc, env, &[])
    }

    /// Like [`Gateway::start_json_env`], the binary run by `wrapper` (a
    /// command and its arguments, followed by the binary and its own), e.g.
    /// in namespaces of the test's making.
    pub fn start_json_wrapped(
        mut doc: serde_json::Value,
        env: Vec<(String, String)>,
        wrapper: &[&str],
    ) -> Gateway {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut gw = serde_json::json!({
            "listen": ["127.0.0.1:0"],
            "workers": 2,
            "admin": {"enabled": false},
            "metrics": {"enabled": false},
            "status": {"enabled": false},
        });
        if let Some(extra) = doc.get("gateway").and_then(|g| g.as_object()).cloned() {
            for (k, v) in extra {
                gw[k] = v;
            }
        }
        doc["gateway"] = gw;
        let path = dir.path().join("ringway.yaml");
        std::fs::write(&path, serde_yaml_ng::to_string(&doc).expect("yaml")).expect("write config");
        Gateway::spawn(dir, &[path], &env, wrapper)
    }

    pub fn start_with(cfg: GatewayConfig) -> Gateway {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut yaml = format!(
            "gateway:\n  listen: [\"127.0.0.1:0\"]\n  workers: {}\n",
            cfg.workers
        );
        let extra = cfg.gateway_extra.trim_end();
        if !extra.contains("admin:") {
            yaml.push_str("  admin: {enabled: false}\n");
        }
        if !extra.contains("metrics:") {
            yaml.push_str("  metrics: {enabled: false}\n");
        }
        if !extra.contains("status:") {
            yaml.push_str("  status: {enabled: false}\n");
        }
        for line in extra.lines() {
            yaml.push_str("  ");
            yaml.push_str(line);
            yaml.push('\n');
        }
        yaml.push_str(&cfg.body);
        let path = dir.path().join("ringway.yaml");
        std::fs::write(&path, &yaml).expect("write config");
        Gateway::spawn(dir, &[path], &cfg.env, &[])
    }

    /// Starts with several configuration files (`-c` each, in order):
    /// `ringway.yaml` holding the test's `gateway:` section (loopback
    /// listeners, 2 workers, `gateway_extra` lines) and `body`, then each
    /// of `files` (name, text) written beside it.
    pub fn start_files(cfg: GatewayConfig, files: &[(&str, &str)]) -> Gateway {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut yaml = format!(
            "gateway:\n  listen: [\"127.0.0.1:0\"]\n  workers: {}\n",
            cfg.workers
        );
        for (key, off) in [
            ("admin:", "admin"),
            ("metrics:", "metrics"),
            ("status:", "status"),
        ] {
            if !cfg.gateway_extra.contains(key) {
                yaml.push_str(&format!("  {off}: {{enabled: false}}\n"));
            }
        }
        for line in cfg.gateway_extra.trim_end().lines() {
            yaml.push_str("  ");
            yaml.push_str(line);
            yaml.push('\n');
        }
        yaml.push_str(&cfg.body);
        let mut paths = vec![dir.path().join("ringway.yaml")];
        std::fs::write(&paths[0], &yaml).expect("write config");
        for (name, text) in files {
            let p = dir.path().join(name);
            std::fs::write(&p, text).expect("write manifests");
            paths.push(p);
        }
        Gateway::spawn(dir, &paths, &cfg.env, &[])
    }

    fn spawn(
        dir: tempfile::TempDir,
        paths: &[std::path::PathBuf],
        env: &[(String, String)],
        wrapper: &[&str],
    ) -> Gateway {
        let mut cmd = match wrapper.split_first() {
            None => Command::new(bin()),
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(bin());
                c
            }
        };
        for path in paths {
            cmd.arg("-c").arg(path);
        }
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn ringway");
        let stderr = Arc::new(Mutex::new(String::new()));
        let stdout_lines = Arc::new(Mutex::new(Vec::new()));
        let mut err_pipe = child.stderr.take().expect("stderr");
        let err_buf = stderr.clone();
        let err_reader = std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n) = err_pipe.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                err_buf
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&chunk[..n]));
            }
        });
        let (tx, rx) = mpsc::channel::<String>();
        let out = child.stdout.take().expect("stdout");
        let lines = stdout_lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
        let mut addr = None;
        let mut seen = Announced::default();
        let deadline = Instant::now() + Duration::from_secs(20);
        while addr.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(a) = line.strip_prefix("ringway: proxy listening on http://") {
                        addr = Some(a.parse().expect("addr"));
                    } else {
                        seen.note(&line);
                    }
                }
                Err(_) => {
                    // Exited (stdout closed) or still silent: stop it, then
                    // wait for the whole of its stderr before telling why.
                    let _ = child.kill();
                    let status = child.wait();
                    let _ = err_reader.join();
                    panic!(
                        "ringway did not start ({status:?}); stderr:\n{}",
                        stderr.lock().unwrap()
                    );
                }
            }
        }
        // The remaining announce lines follow immediately.
        while let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            seen.note(&line);
        }
        Gateway {
            child: Some(child),
            addr: addr.expect("proxy addr"),
            tls_addr: seen.tls,
            admin_addr: seen.admin,
            metrics_addr: seen.metrics,
            status_addr: seen.status,
            dir,
            stderr,
            stdout: stdout_lines,
            env: env.to_vec(),
        }
    }

    /// The configuration file it runs (rewrite it to test reloads).
    pub fn config_path(&self) -> std::path::PathBuf {
        self.dir.path().join("ringway.yaml")
    }

    /// Stops it (SIGTERM, a clean exit) and starts it again on the same
    /// configuration file and directory (new ports).
    pub fn restart(mut self) -> Gateway {
        assert_eq!(self.stop(Duration::from_secs(10)), Some(0), "clean exit");
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("tempdir"));
        let path = dir.path().join("ringway.yaml");
        let env = std::mem::take(&mut self.env);
        Gateway::spawn(dir, &[path], &env, &[])
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Stops the gateway (cleanly: exit 0) and returns the lines of its
    /// JSON access log at `log`.
    pub fn stop_and_read_log(&mut self, log: &std::path::Path) -> Vec<serde_json::Value> {
        assert_eq!(self.stop(Duration::from_secs(5)), Some(0));
        std::fs::read_to_string(log)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Everything the gateway logged so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub fn stdout(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0)
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: sending a signal to our own child process.
        unsafe {
            libc::kill(self.pid(), sig);
        }
    }

    /// Sends SIGTERM and waits for exit; returns the exit code.
    pub fn stop(&mut self, within: Duration) -> Option<i32> {
        self.signal(libc::SIGTERM);
        self.wait(within)
    }

    pub fn wait(&mut self, within: Duration) -> Option<i32> {
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return status.code();
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until stderr contains `needle`.
    pub fn wait_for_log(&self, needle: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.stderr().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

/// The listeners besides the proxy's that a start announced.
#[derive(Default)]
struct Announced {
    tls: Option<SocketAddr>,
    admin: Option<SocketAddr>,
    metrics: Option<SocketAddr>,
    status: Option<SocketAddr>,
}

impl Announced {
    fn note(&mut self, line: &str) {
        let Some(rest) = line.strip_prefix("ringway: ") else {
            return;
        };
        let slot = if let Some(a) = rest.strip_prefix("proxy listening on https://") {
            Some((&mut self.tls, a))
        } else if let Some(a) = rest.strip_prefix("admin API listening on http://") {
            Some((&mut self.admin, a))
        } else if let Some(a) = rest.strip_prefix("metrics listening on http://") {
            Some((&mut self.metrics, a))
        } else if let Some(a) = rest.strip_prefix("status listening on http://") {
            Some((&mut self.status, a))
        } else {
            None
        };
        if let Some((slot, a)) = slot {
            *slot = Some(a.parse().expect("addr"));
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: signalling our own child.
            unsafe {
                libc::kill(child.id() as i32, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs `ringway --check -c` on `yaml`; returns (exit code, stdout+stderr).
pub fn check(yaml: &str) -> (i32, String) {
    check_env(yaml, &[])
}

/// As [`check`], with these environment variables set.
pub fn check_env(yaml: &str, env: &[(&str, &str)]) -> (i32, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, yaml).expect("write");
    let out = Command::new(bin())
        .arg("--check")
        .arg("-c")
        .arg(&path)
        .envs(env.iter().copied())
        .output()
        .expect("run");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}
