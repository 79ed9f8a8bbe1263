//! The chaos soak in its CI length: `loadgen soak --secs 120` against the
//! debug ringway binary (mock-llm in process, a real `redis-server`, the
//! log sink, a tansu broker when installed). It must exit 0 and its JSON
//! must show every verdict passed, every chaos event run, requests
//! answered and none lost. No latency figure is checked: it runs on
//! loaded 2-core machines.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Command;

fn ringway_bin() -> PathBuf {
    let loadgen = PathBuf::from(env!("CARGO_BIN_EXE_loadgen"));
    let bin = loadgen.with_file_name("ringway");
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let ok = Command::new(cargo)
            .args(["build", "-p", "ringway", "--bin", "ringway"])
            .status()
            .unwrap()
            .success();
        assert!(ok, "building ringway failed");
    }
    bin
}

#[test]
fn two_minute_chaos_soak_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("soak.json");
    let run = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["soak", "--secs", "120", "--json"])
        .arg(&json)
        .arg("--ringway")
        .arg(ringway_bin())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "soak failed:\n{stdout}\n{stderr}");
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(r["ok"], true, "{stdout}");
    let verdicts = r["verdicts"].as_array().unwrap();
    assert!(verdicts.len() >= 14, "{stdout}");
    for v in verdicts {
        assert_eq!(v["ok"], true, "{v}");
    }
    for kind in ["json", "stream"] {
        let q = &r[kind];
        assert!(q["total"].as_u64().unwrap() > 0, "{q}");
        assert_eq!(q["lost"], 0, "{q}");
        assert_eq!(q["answered"], q["total"], "{q}");
    }
    for event in [
        "429 storm",
        "5xx bursts",
        "reset before response",
        "reset mid-stream",
        "stall mid-stream",
        "slow first token",
        "slow drip",
        "instance killed",
        "all failing",
        "redis killed",
        "redis restarted",
        "log sink down",
        "log sink up",
        "admin change",
    ] {
        assert!(
            r["chaos"][event].as_u64().unwrap_or(0) >= 1,
            "{event}: {}",
            r["chaos"]
        );
    }
    assert!(!r["panics"].as_object().unwrap().is_empty(), "{stdout}");
}
