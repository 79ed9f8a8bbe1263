//! What the suite writes besides its JSON: machine facts and SVG plots.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{json, Value};

use crate::compare::TargetReport;
use crate::stats::{decode, Summary};

pub(super) fn machine() -> Value {
    let cmd = |c: &str, a: &[&str]| {
        std::process::Command::new(c)
            .args(a)
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .map(|s| s.trim().to_owned())
            .unwrap_or_default()
    };
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    json!({
        "cpus": std::fs::read_to_string("/proc/cpuinfo")
            .map(|s| s.lines().filter(|l| l.starts_with("processor")).count())
            .unwrap_or(0),
        "cpu_model": cpu,
        "kernel": cmd("uname", &["-r"]),
        "date": cmd("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        "rustc": cmd("rustc", &["--version"]),
        "nginx": cmd("sh", &["-c", "nginx -v 2>&1"]),
        "ringway": env!("CARGO_PKG_VERSION"),
        "cpuidle": cpuidle(),
    })
}

/// The idle driver, and for `haltpoll` how long an idle vCPU polls before
/// it halts: on a VM this decides what a cross-core wake-up costs, so it
/// moves every latency in the suite (results/light-load-latency.md).
fn cpuidle() -> String {
    let read = |p: &str| std::fs::read_to_string(p).map(|s| s.trim().to_owned());
    let Ok(driver) = read("/sys/devices/system/cpu/cpuidle/current_driver") else {
        return "unknown".into();
    };
    match read("/sys/module/haltpoll/parameters/guest_halt_poll_ns") {
        Ok(ns) if driver == "haltpoll" => format!("haltpoll, guest_halt_poll_ns {ns}"),
        _ => driver,
    }
}

fn hist_of(s: &Summary, ttft: bool) -> Option<hdrhistogram::Histogram<u64>> {
    decode(if ttft {
        &s.histograms.ttft
    } else {
        &s.histograms.latency
    })
}

pub(super) fn plots(
    dir: &Path,
    chat: &[TargetReport],
    stream: &[TargetReport],
    sweep: &[Value],
) -> Result<(), String> {
    let lat: Vec<(String, hdrhistogram::Histogram<u64>)> = chat
        .iter()
        .filter_map(|t| hist_of(&t.summary, false).map(|h| (t.name.clone(), h)))
        .collect();
    let refs: Vec<(String, &hdrhistogram::Histogram<u64>)> =
        lat.iter().map(|(n, h)| (n.clone(), h)).collect();
    crate::plot::cdf(
        &dir.join("latency-cdf.svg"),
        "Chat latency CDF (non-streaming)",
        &refs,
    )?;
    let ttft: Vec<(String, hdrhistogram::Histogram<u64>)> = stream
        .iter()
        .filter_map(|t| hist_of(&t.summary, true).map(|h| (t.name.clone(), h)))
        .collect();
    let refs: Vec<(String, &hdrhistogram::Histogram<u64>)> =
        ttft.iter().map(|(n, h)| (n.clone(), h)).collect();
    crate::plot::cdf(
        &dir.join("ttft-cdf.svg"),
        "Time to first token CDF (streaming)",
        &refs,
    )?;
    let mut by_target: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for point in sweep {
        let c = point["concurrency"].as_f64().unwrap_or(1.0);
        for t in point["targets"].as_array().into_iter().flatten() {
            let name = t["name"].as_str().unwrap_or("?").to_owned();
            let rps = t["summary"]["rps"].as_f64().unwrap_or(0.0);
            by_target.entry(name).or_default().push((c, rps));
        }
    }
    let series: Vec<(String, Vec<(f64, f64)>)> = by_target.into_iter().collect();
    crate::plot::lines(
        &dir.join("throughput-vs-concurrency.svg"),
        "Throughput vs concurrency",
        "concurrency (log)",
        "requests/s",
        &series,
    )
}
