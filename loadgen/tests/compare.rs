//! `compare` and `compare_together` against mock-llm in process. Two
//! targets share one mock instance and differ only in the model they ask
//! for, so the mock's request log shows when each target's requests
//! arrived: in rounds, one target's run after the other's; together, the
//! two taking turns request by request.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use loadgen::compare::{compare, compare_together, Target, TargetReport};
use loadgen::run::{Mode, RunSpec};
use loadgen::workload::{Url, Workload};
use mock_llm::{InstanceConfig, MockServer};

const RATE: f64 = 300.0;
const ROUNDS: usize = 2;

fn mock() -> MockServer {
    MockServer::builder()
        .instance(InstanceConfig::new("m1").tokens(4))
        .workers(1)
        .spawn()
        .unwrap()
}

fn targets(mock: &MockServer) -> Vec<Target> {
    let url = Url::parse(&format!(
        "{}/v1/chat/completions",
        mock.instance("m1").url()
    ))
    .unwrap();
    ["a", "b"]
        .into_iter()
        .map(|name| Target {
            name: name.into(),
            spec: RunSpec {
                addr: url.addr,
                request: Workload {
                    model: format!("model-{name}"),
                    ..Workload::default()
                }
                .request(&url),
                mode: Mode::Open {
                    rate: RATE,
                    max_conns: 4,
                },
                duration: Duration::from_millis(400),
                requests: None,
                warmup: Duration::from_millis(100),
                timeout: Duration::from_secs(5),
                progress: false,
                label: name.into(),
            },
            pid: None,
        })
        .collect()
}

/// The targets' names in the order the mock received their requests.
fn arrivals(mock: &MockServer) -> Vec<String> {
    mock.instance("m1")
        .requests()
        .iter()
        .map(|r| {
            r.json()["model"]
                .as_str()
                .unwrap()
                .trim_start_matches("model-")
                .to_owned()
        })
        .collect()
}

fn switches(order: &[String]) -> usize {
    order.windows(2).filter(|w| w[0] != w[1]).count()
}

type Compare = fn(&[Target], usize) -> Result<Vec<TargetReport>, String>;

/// Runs `compare` on a fresh mock, checks both targets were measured, and
/// returns the targets' names in the order the mock received them.
fn measured_arrivals(compare: Compare) -> Vec<String> {
    let mock = mock();
    let reports = compare(&targets(&mock), ROUNDS).unwrap();
    let names: Vec<&str> = reports.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    for r in &reports {
        // 2 rounds × 0.4 s at 300 req/s: 240 due, all answered.
        assert_eq!(r.summary.ok, r.summary.requests, "{}", r.name);
        assert!(r.summary.ok >= 200, "{}: {} requests", r.name, r.summary.ok);
    }
    arrivals(&mock)
}

#[test]
fn together_drives_every_target_in_the_same_instants() {
    let order = measured_arrivals(compare_together);
    // Each target's arrivals are offset by half an interval from the
    // other's: the log alternates a b a b … (at least half the time, so a
    // stall that sends a burst, whose order on two connections the mock
    // may read either way, cannot fail it; in rounds there are 4 switches).
    assert!(
        switches(&order) * 2 >= order.len(),
        "{} switches in {} requests",
        switches(&order),
        order.len()
    );
}

#[test]
fn rounds_drive_one_target_at_a_time() {
    let order = measured_arrivals(compare);
    // Warm-ups a, b; round 1 a, b; round 2 b, a (reversed): four switches.
    assert_eq!(switches(&order), 4, "{order:?}");
}
