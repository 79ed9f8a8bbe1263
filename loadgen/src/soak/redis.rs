//! The soak's Redis: a real `redis-server` (no persistence) on a free
//! loopback port, for `ai-rate-limiting`'s `policy: redis`. It can be
//! killed (SIGKILL, as a crash) and started again on the same port, with
//! its data gone as after a real crash without persistence.
//! `scripts/setup-test-deps.sh` installs `redis-server`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Redis {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Redis {
    /// Starts `redis-server` on a free loopback port; a clear error when
    /// it is not installed.
    pub fn start() -> Result<Redis, String> {
        let found = Command::new("sh")
            .args(["-c", "command -v redis-server"])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            return Err(
                "`redis-server` not found: the soak needs a real Redis (scripts/setup-test-deps.sh installs it)"
                    .into(),
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("redis: no free port: {e}"))?
            .port();
        let mut r = Redis {
            child: None,
            port,
            dir: tempfile::tempdir().map_err(|e| e.to_string())?,
        };
        r.restart()?;
        Ok(r)
    }

    pub fn is_up(&self) -> bool {
        self.child.is_some()
    }

    /// Kills the server at once (SIGKILL: no goodbye to its clients).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same port (empty) and waits until
    /// it answers `PING`.
    pub fn restart(&mut self) -> Result<(), String> {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let child = Command::new("redis-server")
                .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(self.dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| format!("cannot start redis-server: {e}"))?;
            self.child = Some(child);
            while Instant::now() < deadline {
                if self.cmd(&["PING"]).is_ok_and(|r| r.contains("PONG")) {
                    return Ok(());
                }
                // Exited (the port still held by a dying one): try again.
                if let Some(c) = self.child.as_mut() {
                    if matches!(c.try_wait(), Ok(Some(_))) {
                        self.child = None;
                        break;
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if Instant::now() >= deadline {
                self.kill();
                return Err(format!("redis-server did not start on port {}", self.port));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Keys in database 0 (0 when the server does not answer).
    pub fn dbsize(&self) -> u64 {
        self.cmd(&["DBSIZE"])
            .ok()
            .and_then(|r| r.trim().strip_prefix(':')?.parse().ok())
            .unwrap_or(0)
    }

    /// `total_commands_processed` since the server started (0 when it
    /// does not answer); each call adds one.
    pub fn commands(&self) -> u64 {
        self.cmd(&["INFO", "stats"])
            .ok()
            .and_then(|r| {
                r.lines()
                    .find_map(|l| l.strip_prefix("total_commands_processed:"))
                    .and_then(|v| v.trim().parse().ok())
            })
            .unwrap_or(0)
    }

    /// Waits (up to `within`) until somebody else sends commands: how
    /// long it took after the call.
    pub fn wait_for_use(&self, within: Duration) -> Option<Duration> {
        let t = Instant::now();
        let first = self.commands();
        let mut mine = 1;
        while t.elapsed() < within {
            std::thread::sleep(Duration::from_millis(50));
            let now = self.commands();
            mine += 1;
            // Our own looks are one command each; more is somebody else.
            if now > first + mine + 2 {
                return Some(t.elapsed());
            }
        }
        None
    }

    /// One command; the raw reply (good enough for one-line replies).
    fn cmd(&self, args: &[&str]) -> std::io::Result<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut out = format!("*{}\r\n", args.len());
        for a in args {
            out.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s.write_all(out.as_bytes())?;
        let mut buf = vec![0u8; 16 * 1024];
        let n = s.read(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}
