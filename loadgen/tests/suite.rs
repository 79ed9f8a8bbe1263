//! The benchmark suite end to end in its quick form: mock-llm in process,
//! the real ringway binary, every section run for a moment; the JSON must
//! parse with the expected fields and the SVG plots must be complete.
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

/// The string `field` of each element of the array `v`.
fn field_of_each<'a>(v: &'a serde_json::Value, field: &str) -> Vec<&'a str> {
    let items = v.as_array().unwrap().iter();
    items.map(|x| x[field].as_str().unwrap()).collect()
}

#[test]
fn quick_suite_writes_valid_json_and_svg() {
    let out = tempfile::tempdir().unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["suite", "--quick", "--out"])
        .arg(out.path())
        .arg("--ringway")
        .arg(ringway_bin())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success(),
        "suite failed:\n{stderr}\n{}",
        String::from_utf8_lossy(&run.stdout)
    );

    let read = |name: &str| -> serde_json::Value {
        let text = std::fs::read_to_string(out.path().join(name))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    let chat = read("compare-chat.json");
    let names = field_of_each(&chat, "name");
    assert_eq!(names, ["direct", "ringway"]);
    for t in chat.as_array().unwrap() {
        assert!(t["summary"]["ok"].as_u64().unwrap() > 0, "{t}");
        assert!(t["summary"]["rps"].as_f64().unwrap() > 0.0);
        // The raw histogram decodes and agrees with the summary.
        let h = loadgen::stats::decode(t["summary"]["histograms"]["latency"].as_str().unwrap())
            .unwrap();
        assert_eq!(h.len(), t["summary"]["latency"]["count"].as_u64().unwrap());
    }
    assert!(chat[1]["cpu_us_per_request"].as_f64().unwrap() > 0.0);
    let stream = read("compare-stream.json");
    assert!(stream[1]["summary"]["ttft"]["p50"].as_u64().unwrap() > 0);
    assert!(stream[1]["added_ttft_p50_us"].is_i64());
    for name in ["under-load-chat.json", "under-load-stream.json"] {
        let load = read(name);
        let names = field_of_each(&load, "name");
        assert_eq!(names, ["direct", "ringway"], "{name}");
        assert!(load[1]["summary"]["ok"].as_u64().unwrap() > 0, "{name}");
        assert!(load[1]["added_p99_us"].is_i64(), "{name}");
    }
    assert!(
        read("suite.json")["under_load"]["chat_rate"]
            .as_f64()
            .unwrap()
            >= 100.0
    );
    assert_eq!(read("sweep.json").as_array().unwrap().len(), 2);
    assert!(
        read("idle-streams.json")["kib_per_stream"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    assert_eq!(read("instances.json").as_array().unwrap().len(), 2);
    // Two prompt sizes and the agent's conversation, each through ringway.
    let bodies = read("body-size.json");
    let labels = field_of_each(&bodies, "body");
    assert_eq!(
        labels,
        ["16-word prompt", "1024-word prompt", "agent conversation"]
    );
    let agent = &bodies[2];
    assert!(agent["body_bytes"].as_u64().unwrap() > 30_000, "{agent}");
    assert!(
        agent["targets"][1]["summary"]["ok"].as_u64().unwrap() > 0,
        "{agent}"
    );
    assert!(agent["targets"][1]["cpu_us_per_request"].as_f64().unwrap() > 0.0);
    assert!(!read("frontier.json")["points"]
        .as_array()
        .unwrap()
        .is_empty());
    let fallback = read("fallback.json");
    assert!(
        fallback.as_array().unwrap().iter().all(|v| v["ok"] == true),
        "{fallback}"
    );
    let index = read("suite.json");
    assert_eq!(index["fallback_ok"], true);
    assert!(index["machine"]["cpus"].as_u64().unwrap() >= 1);

    for svg in [
        "latency-cdf.svg",
        "ttft-cdf.svg",
        "throughput-vs-concurrency.svg",
    ] {
        let text = std::fs::read_to_string(out.path().join(svg)).unwrap();
        assert!(
            text.starts_with("<svg") && text.trim_end().ends_with("</svg>"),
            "{svg} incomplete"
        );
        // One data line (plus its legend sample) per target, in the
        // series colours, each with real points.
        for colour in ["#1F77B4", "#D62728"] {
            let line = text
                .split("<polyline")
                .find(|p| p.contains(&format!("stroke=\"{colour}\"")))
                .unwrap_or_else(|| panic!("{svg}: no {colour} series"));
            let points = line
                .split("points=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap();
            assert!(
                points.split_whitespace().count() >= 2,
                "{svg}: empty series"
            );
        }
    }
    let readme = std::fs::read_to_string(out.path().join("README.md")).unwrap();
    for section in [
        "## Chat, non-streaming",
        "## Memory per idle open SSE stream",
        "## Fallback correctness",
    ] {
        assert!(readme.contains(section), "README lacks {section}");
    }
}

#[test]
fn idle_compares_builds_side_by_side() {
    // The same build twice: two rows, each with streams open through the
    // gateway and a per-stream figure.
    let bin = ringway_bin();
    let run = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["idle", "-n", "300"])
        .arg(&bin)
        .arg(&bin)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let rows: Vec<&str> = stdout.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "{stdout}");
    for row in rows {
        let cols: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cols[1], "300", "{row}");
        assert!(cols.last().unwrap().parse::<f64>().unwrap() > 0.0, "{row}");
    }
}
