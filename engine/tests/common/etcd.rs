//! A real `etcd` (Debian's etcd-server, installed by
//! `scripts/setup-test-deps.sh`) on free loopback ports, killed when
//! dropped; `etcdctl` writes and reads keys as an operator would.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::redis::free_port;

pub struct Etcd {
    child: Option<Child>,
    pub port: u16,
    peer: u16,
    pub dir: tempfile::TempDir,
    /// With TLS: the CA, certificate and key files (the same certificate
    /// serves the server and, for client-certificate auth, the client).
    pub tls: Option<(PathBuf, PathBuf, PathBuf)>,
}

impl Etcd {
    pub fn start() -> Etcd {
        Etcd::start_in(tempfile::tempdir().unwrap(), free_port())
    }

    fn start_in(dir: tempfile::TempDir, port: u16) -> Etcd {
        let peer = free_port();
        let mut e = Etcd {
            child: None,
            port,
            peer,
            dir,
            tls: None,
        };
        e.spawn();
        e
    }

    /// A server on TLS that requires a client certificate signed by the
    /// test CA ([`super::certs::pki`]).
    pub fn start_tls() -> Etcd {
        let dir = tempfile::tempdir().unwrap();
        let files = super::certs::pki().write(dir.path());
        let mut e = Etcd {
            child: None,
            port: free_port(),
            peer: free_port(),
            dir,
            tls: Some(files),
        };
        e.spawn();
        e
    }

    fn spawn(&mut self) {
        let url = self.endpoint();
        let mut cmd = Command::new("etcd");
        if let Some((ca, cert, key)) = &self.tls {
            cmd.arg("--cert-file").arg(cert).arg("--key-file").arg(key);
            cmd.arg("--trusted-ca-file")
                .arg(ca)
                .arg("--client-cert-auth");
        }
        let child = cmd
            .arg("--data-dir")
            .arg(self.dir.path().join("data"))
            .args([
                "--listen-client-urls",
                &url,
                "--advertise-client-urls",
                &url,
            ])
            .args([
                "--listen-peer-urls",
                &format!("http://127.0.0.1:{}", self.peer),
            ])
            .args([
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{}", self.peer),
            ])
            .args([
                "--initial-cluster",
                &format!("default=http://127.0.0.1:{}", self.peer),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start etcd (scripts/setup-test-deps.sh installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.ctl(&["endpoint", "health"]).is_err() {
            assert!(Instant::now() < deadline, "etcd did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn endpoint(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// Runs `etcdctl` against this server; its stdout, or stderr as the error.
    pub fn ctl(&self, args: &[&str]) -> Result<String, String> {
        let mut cmd = Command::new("etcdctl");
        cmd.env("ETCDCTL_API", "3")
            .args(["--endpoints", &self.endpoint(), "--command-timeout=5s"]);
        if let Some((ca, cert, key)) = &self.tls {
            cmd.arg("--cacert")
                .arg(ca)
                .arg("--cert")
                .arg(cert)
                .arg("--key")
                .arg(key);
        }
        let out = cmd.args(args).output().map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    pub fn put(&self, key: &str, value: &str) {
        self.ctl(&["put", key, value]).expect("etcdctl put");
    }

    pub fn get(&self, key: &str) -> Option<String> {
        let out = self
            .ctl(&["get", key, "--print-value-only"])
            .expect("etcdctl get");
        let v = out.trim_end();
        (!v.is_empty()).then(|| v.to_owned())
    }

    /// Stops the server (its data stays).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port and data.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
    }
}
