//! The throughput frontier: the highest open-loop rate through ringway
//! whose p99 stays under 1, 5 and 10 ms.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::{spec, workload, Env, SuiteArgs};
use crate::run::{run, Mode};

/// Highest open-loop rate through ringway whose p99 stays under 1, 5 and
/// 10 ms with no errors.
pub(super) fn frontier(env: &Env, args: &SuiteArgs) -> Result<Value, String> {
    let rates: Vec<f64> = if args.quick {
        vec![200.0, 400.0]
    } else {
        vec![1e3, 2e3, 5e3, 1e4, 1.5e4, 2e4, 2.5e4, 3e4, 4e4, 5e4, 6e4]
    };
    let mut points = Vec::new();
    let mut best: BTreeMap<&str, f64> = BTreeMap::new();
    for rate in rates {
        let s = spec(
            env.ringway.1,
            "/v1/chat/completions",
            &workload(false, 16),
            Mode::Open {
                rate,
                max_conns: 1024,
            },
            args.run_secs,
        );
        let r = run(&s).map_err(|e| e.to_string())?;
        let sum = r.stats.summary(r.elapsed);
        let clean = sum.ok == sum.requests && sum.requests > 0;
        for (name, limit) in [
            ("p99_under_1ms", 1_000),
            ("p99_under_5ms", 5_000),
            ("p99_under_10ms", 10_000),
        ] {
            if clean && sum.latency.p99 <= limit {
                best.insert(name, sum.rps);
            }
        }
        points.push(json!({"rate": rate, "rps": sum.rps, "p50_us": sum.latency.p50, "p99_us": sum.latency.p99, "errors": sum.requests - sum.ok}));
        if !clean || sum.latency.p99 > 50_000 {
            break;
        }
    }
    Ok(json!({"best": best, "points": points}))
}
