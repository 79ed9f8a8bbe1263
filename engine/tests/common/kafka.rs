//! A real Kafka-protocol broker (`tansu`, in memory) on a free loopback
//! port, killed when dropped, and a real Kafka client (the `kafka-python`
//! consumer in `.venv`) to read what ringway produced. Both installed by
//! `scripts/setup-test-deps.sh`.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub struct KafkaBroker {
    child: Child,
    pub port: u16,
}

fn tansu() -> PathBuf {
    let home = std::env::var("HOME").unwrap_or_default();
    let candidates = [PathBuf::from(format!("{home}/.cargo/bin/tansu"))];
    for c in candidates {
        if c.exists() {
            return c;
        }
    }
    let found = Command::new("sh")
        .args(["-c", "command -v tansu"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    found.expect("`tansu` (Kafka-protocol broker) not found: run scripts/setup-test-deps.sh")
}

impl KafkaBroker {
    pub fn start() -> KafkaBroker {
        let port = super::redis::free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(tansu())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tansu");
        let b = KafkaBroker { child, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "tansu did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        b
    }

    /// Creates `topic` with `partitions` (tansu does not create topics on
    /// demand; many Kafka deployments do not either).
    pub fn create_topic(&self, topic: &str, partitions: u32) {
        let out = Command::new(tansu())
            .args(["topic", "create", topic, "--broker"])
            .arg(format!("tcp://127.0.0.1:{}", self.port))
            .args(["--partitions", &partitions.to_string()])
            .env("RUST_LOG", "error")
            .output()
            .expect("run tansu topic create");
        assert!(
            out.status.success(),
            "tansu topic create {topic}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Reads up to `n` messages of `topic` from the beginning with
    /// kafka-python, waiting at most `within`: (key, value as JSON).
    pub fn consume(&self, topic: &str, n: usize, within: Duration) -> Vec<(Option<String>, Value)> {
        self.consume_raw(topic, n, within)
            .into_iter()
            .map(|(k, v)| {
                let value = serde_json::from_str(&v)
                    .unwrap_or_else(|e| panic!("entry is not JSON ({e}): {v}"));
                (k, value)
            })
            .collect()
    }

    /// [`KafkaBroker::consume`] with the values as text.
    pub fn consume_raw(
        &self,
        topic: &str,
        n: usize,
        within: Duration,
    ) -> Vec<(Option<String>, String)> {
        let python = concat!(env!("CARGO_MANIFEST_DIR"), "/../.venv/bin/python");
        assert!(
            std::path::Path::new(python).exists(),
            "{python} missing: run scripts/setup-test-deps.sh"
        );
        let script = r#"
import json, sys, time
from kafka import KafkaConsumer
servers, topic, n, ms = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
deadline = time.time() + ms / 1000
c = KafkaConsumer(topic, bootstrap_servers=servers, auto_offset_reset="earliest",
                  enable_auto_commit=False, group_id=None, consumer_timeout_ms=500)
got = 0
while got < n and time.time() < deadline:
    for m in c:
        print(json.dumps({"key": m.key.decode() if m.key is not None else None,
                          "value": m.value.decode()}), flush=True)
        got += 1
        if got >= n:
            break
"#;
        let out = Command::new(python)
            .arg("-c")
            .arg(script)
            .arg(self.bootstrap())
            .arg(topic)
            .arg(n.to_string())
            .arg(within.as_millis().to_string())
            .output()
            .expect("run the kafka-python consumer");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "consumer failed: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
            .lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                (
                    v["key"].as_str().map(str::to_owned),
                    v["value"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }
}

impl Drop for KafkaBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
