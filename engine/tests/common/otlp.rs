//! A real OTLP/HTTP receiver (`tests/otlp/receiver.py`, decoding with the
//! official protobufs from PyPI's `opentelemetry-proto`, installed in
//! `.venv` by `scripts/setup-test-deps.sh`), killed when dropped, and
//! what it received: spans and the requests' headers.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub struct Receiver {
    child: Child,
    pub port: u16,
    out: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Receiver {
    pub fn start() -> Receiver {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
        let python = format!("{root}/.venv/bin/python");
        assert!(
            std::path::Path::new(&python).exists(),
            "{python} missing: run scripts/setup-test-deps.sh"
        );
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("spans.jsonl");
        let mut child = Command::new(python)
            .arg(format!("{root}/tests/otlp/receiver.py"))
            .arg(&out)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the OTLP receiver");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.trim().parse().expect("the receiver's port");
        Receiver {
            child,
            port,
            out,
            _dir: dir,
        }
    }

    /// Everything received so far, one JSON value per line.
    pub fn lines(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The spans received so far.
    pub fn spans(&self) -> Vec<Value> {
        let lines = self.lines();
        for l in &lines {
            assert!(l.get("error").is_none(), "a body did not decode: {l}");
        }
        lines
            .into_iter()
            .filter_map(|l| l.get("span").cloned())
            .collect()
    }

    /// The spans of trace `trace_id`, once there are `n` (or what there
    /// is after 15 s).
    pub fn trace(&self, trace_id: &str, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let got: Vec<Value> = self
                .spans()
                .into_iter()
                .filter(|s| s["trace_id"] == trace_id)
                .collect();
            if got.len() >= n || Instant::now() > deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
