//! Side-by-side comparison: the same load against several targets in
//! interleaved rounds that alternate direction (A B C, C B A, …), so drift
//! on a noisy machine and a target's position in a round hit every target
//! alike. Each target's rounds are merged into one set of
//! histograms; the report gives ratios to the first target (the baseline,
//! usually mock-llm direct) and to every peer, added latency and TTFT,
//! and CPU time per request for targets whose process is known.
//!
//! [`compare_together`] drives all targets at once instead (see
//! [`crate::run::run_together`]), each at the spec's rate: every
//! target's tail then holds the same machine stalls, which on a noisy VM
//! move a 3-second round's p99 by milliseconds.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::run::{run, run_together, RunResult, RunSpec};
use crate::stats::{Stats, Summary};

/// One thing to drive.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub spec: RunSpec,
    /// Process whose CPU time is charged to this target (the gateway).
    pub pid: Option<u32>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TargetReport {
    pub name: String,
    pub summary: Summary,
    /// Gateway CPU time per measured request, microseconds.
    pub cpu_us_per_request: Option<f64>,
    /// This target's requests/s over the baseline's.
    pub rps_ratio: f64,
    /// Latency added over the baseline (same rounds), microseconds.
    pub added_p50_us: i64,
    pub added_p99_us: i64,
    pub added_ttft_p50_us: Option<i64>,
    pub added_ttft_p99_us: Option<i64>,
    /// requests/s of this target over each other target's.
    pub rps_ratio_to: BTreeMap<String, f64>,
}

/// Runs `rounds` interleaved rounds; the first target is the baseline.
/// Each target gets one unmeasured warm-up run first.
pub fn compare(targets: &[Target], rounds: usize) -> Result<Vec<TargetReport>, String> {
    compare_with(targets, rounds, false)
}

/// Runs `rounds` rounds in which all targets are driven at once; the
/// first target is the baseline. One unmeasured warm-up round first.
pub fn compare_together(targets: &[Target], rounds: usize) -> Result<Vec<TargetReport>, String> {
    compare_with(targets, rounds, true)
}

fn compare_with(
    targets: &[Target],
    rounds: usize,
    together: bool,
) -> Result<Vec<TargetReport>, String> {
    if targets.is_empty() {
        return Err("no targets".into());
    }
    let warm_ups: Vec<RunSpec> = targets
        .iter()
        .map(|t| {
            let mut warm = t.spec.clone();
            warm.duration = warm.warmup.max(Duration::from_millis(100));
            warm.warmup = Duration::ZERO;
            warm.requests = None;
            warm.progress = false;
            warm
        })
        .collect();
    if together {
        run_together(&warm_ups).map_err(|e| e.to_string())?;
    } else {
        for (t, warm) in targets.iter().zip(&warm_ups) {
            run(warm).map_err(|e| format!("{}: {e}", t.name))?;
        }
    }
    let measured: Vec<RunSpec> = targets
        .iter()
        .map(|t| RunSpec {
            warmup: Duration::ZERO,
            ..t.spec.clone()
        })
        .collect();
    let mut merged: Vec<(Stats, Duration, Duration)> =
        vec![(Stats::default(), Duration::ZERO, Duration::ZERO); targets.len()];
    let mut add = |i: usize, r: &RunResult, cpu: Option<Duration>| {
        merged[i].0.merge(&r.stats);
        merged[i].1 += r.elapsed;
        merged[i].2 += cpu.unwrap_or_default();
    };
    let cpu_now = |t: &Target| t.pid.map(crate::procs::cpu_of);
    let cpu_since = |t: &Target, c0: Option<Duration>| {
        t.pid
            .zip(c0)
            .map(|(pid, c0)| crate::procs::cpu_of(pid).saturating_sub(c0))
    };
    for round in 0..rounds.max(1) {
        if together {
            let cpu0: Vec<_> = targets.iter().map(cpu_now).collect();
            let results = run_together(&measured).map_err(|e| e.to_string())?;
            for (i, r) in results.iter().enumerate() {
                add(i, r, cpu_since(&targets[i], cpu0[i]));
            }
            continue;
        }
        for i in round_order(targets.len(), round) {
            let t = &targets[i];
            let cpu0 = cpu_now(t);
            let r = run(&measured[i]).map_err(|e| format!("{}: {e}", t.name))?;
            add(i, &r, cpu_since(t, cpu0));
        }
    }
    let summaries: Vec<Summary> = merged.iter().map(|(s, e, _)| s.summary(*e)).collect();
    let base = &summaries[0];
    let ttft_p = |s: &Summary, f: fn(&crate::stats::Percentiles) -> u64| s.ttft.as_ref().map(f);
    Ok(targets
        .iter()
        .zip(&summaries)
        .zip(&merged)
        .map(|((t, s), (stats, _, cpu))| {
            let rps_ratio_to = targets
                .iter()
                .zip(&summaries)
                .filter(|(o, _)| o.name != t.name)
                .map(|(o, os)| (o.name.clone(), ratio(s.rps, os.rps)))
                .collect();
            let diff = |a: Option<u64>, b: Option<u64>| match (a, b) {
                (Some(a), Some(b)) => Some(a as i64 - b as i64),
                _ => None,
            };
            TargetReport {
                name: t.name.clone(),
                cpu_us_per_request: t
                    .pid
                    .filter(|_| stats.total() > 0)
                    .map(|_| cpu.as_secs_f64() * 1e6 / stats.total() as f64),
                rps_ratio: ratio(s.rps, base.rps),
                added_p50_us: s.latency.p50 as i64 - base.latency.p50 as i64,
                added_p99_us: s.latency.p99 as i64 - base.latency.p99 as i64,
                added_ttft_p50_us: diff(ttft_p(s, |p| p.p50), ttft_p(base, |p| p.p50)),
                added_ttft_p99_us: diff(ttft_p(s, |p| p.p99), ttft_p(base, |p| p.p99)),
                rps_ratio_to,
                summary: s.clone(),
            }
        })
        .collect())
}

/// The order targets run in during `round`: every other round backwards
/// (A B C, C B A, …), so neither drift across a round nor a position in it
/// favours one target.
fn round_order(targets: usize, round: usize) -> impl Iterator<Item = usize> {
    let backwards = round % 2 == 1;
    (0..targets).map(move |i| if backwards { targets - 1 - i } else { i })
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        0.0
    }
}

/// A table for people.
pub fn print_table(title: &str, reports: &[TargetReport]) {
    use crate::stats::human_us;
    println!("{title}");
    println!(
        "  {:<12} {:>10} {:>8} {:>9} {:>9} {:>9} {:>10} {:>10} {:>9}",
        "target", "req/s", "ratio", "p50", "p99", "p99.9", "ttft p50", "+p99", "cpu/req"
    );
    for r in reports {
        let s = &r.summary;
        println!(
            "  {:<12} {:>10.0} {:>8.3} {:>9} {:>9} {:>9} {:>10} {:>10} {:>9}",
            r.name,
            s.rps,
            r.rps_ratio,
            human_us(s.latency.p50),
            human_us(s.latency.p99),
            human_us(s.latency.p999),
            s.ttft.as_ref().map_or("-".into(), |t| human_us(t.p50)),
            format!("{}µs", r.added_p99_us),
            r.cpu_us_per_request
                .map_or("-".into(), |c| format!("{c:.1}µs")),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::round_order;

    #[test]
    fn rounds_alternate_direction() {
        let rounds: Vec<Vec<usize>> = (0..4).map(|r| round_order(3, r).collect()).collect();
        assert_eq!(rounds, [[0, 1, 2], [2, 1, 0], [0, 1, 2], [2, 1, 0]]);
        assert_eq!(round_order(1, 1).collect::<Vec<_>>(), [0]);
    }
}
