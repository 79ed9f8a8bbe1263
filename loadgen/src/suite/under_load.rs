//! Added latency under load. The closed-loop comparisons run every
//! gateway at saturation, where a request's latency is mostly the queue of
//! the 31 others ahead of it on the gateway's core (nginx's as much as
//! ringway's). Here the same requests arrive open loop at a quarter of
//! the rate ringway sustained in closed loop, over at most 32 connections, to
//! mock-llm directly, ringway and nginx alike: the added p50/p99 and TTFT
//! are then the gateway's own cost at a realistic load, measured from each
//! request's due time (no coordinated omission). Arrivals are evenly
//! spaced to the microsecond ([`crate::pace`]); how late each left is in
//! the report.

use super::{light_load_targets, workload, Env, SuiteArgs};
use crate::compare::{compare, TargetReport};
use crate::run::Mode;

/// Most connections the open loop may use (the closed loop's count).
pub const MAX_CONNS: usize = 32;

/// Runs the comparison at a quarter of ringway's rate in `closed`; returns the
/// rate used and the reports.
pub(super) fn under_load(
    env: &Env,
    args: &SuiteArgs,
    closed: &[TargetReport],
    stream: bool,
) -> Result<(f64, Vec<TargetReport>), String> {
    let ringway_rps = closed
        .iter()
        .find(|t| t.name == "ringway")
        .map_or(0.0, |t| t.summary.rps);
    // A quarter: at half, this 2-core setup's load-and-mock core saturates
    // in open loop before the gateway does (see the frontier section), and
    // the tails measure that core, not the gateway.
    let rate = (ringway_rps * 0.25).max(100.0).round();
    let mode = Mode::Open {
        rate,
        max_conns: MAX_CONNS,
    };
    let t = light_load_targets(
        env,
        "/v1/chat/completions",
        &workload(stream, 16),
        mode,
        args.run_secs,
    );
    Ok((rate, compare(&t, args.rounds)?))
}
