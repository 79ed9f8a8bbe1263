//! The soak's Kafka broker, when `tansu` is installed
//! (`~/.cargo/bin/tansu`, see `scripts/setup-test-deps.sh`): in-memory
//! storage on a free loopback port, for a `kafka-logger`. It can be
//! killed and started again on the same port; its topic is created again
//! each time (memory storage forgets it, and tansu does not create topics
//! on demand).

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The topic ringway's kafka-logger writes to.
pub const TOPIC: &str = "ringway-soak";

pub struct Broker {
    bin: PathBuf,
    child: Option<Child>,
    pub port: u16,
}

/// `tansu`, if installed.
pub fn tansu() -> Option<PathBuf> {
    let home = std::env::var("HOME").unwrap_or_default();
    let local = PathBuf::from(format!("{home}/.cargo/bin/tansu"));
    if local.exists() {
        return Some(local);
    }
    Command::new("sh")
        .args(["-c", "command -v tansu"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
}

impl Broker {
    pub fn start(bin: PathBuf) -> Result<Broker, String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("kafka: no free port: {e}"))?
            .port();
        let mut b = Broker {
            bin,
            child: None,
            port,
        };
        b.restart()?;
        Ok(b)
    }

    pub fn is_up(&self) -> bool {
        self.child.is_some()
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the broker on the same port and creates [`TOPIC`].
    pub fn restart(&mut self) -> Result<(), String> {
        self.kill();
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let deadline = Instant::now() + Duration::from_secs(20);
        // A broker that exits at once (its port still held by the one
        // just killed) is started again.
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if Instant::now() > deadline {
                self.kill();
                return Err(format!("tansu did not listen on port {}", self.port));
            }
            let running = self
                .child
                .as_mut()
                .is_some_and(|c| matches!(c.try_wait(), Ok(None)));
            if !running {
                let child = Command::new(&self.bin)
                    .args(["broker", "--listener-url", &url])
                    .args(["--advertised-listener-url", &url])
                    .args(["--storage-engine", "memory://tansu/"])
                    .env("RUST_LOG", "error")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .map_err(|e| format!("cannot start tansu: {e}"))?;
                self.child = Some(child);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        loop {
            let out = Command::new(&self.bin)
                .args(["topic", "create", TOPIC, "--broker", &url])
                .args(["--partitions", "1"])
                .env("RUST_LOG", "error")
                .output()
                .map_err(|e| format!("cannot run tansu topic create: {e}"))?;
            if out.status.success() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "tansu topic create {TOPIC}: {}",
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}
