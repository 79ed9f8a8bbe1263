//! Fallback-correctness mode: ringway in front of mock-llm instances while
//! a script injects chaos, phase by phase, checking what users rely on:
//!
//! | phase | chaos | checks |
//! |---|---|---|
//! | calm | none | split within tolerance of the 5:3:2 weights |
//! | 429 | `a` answers 429 + Retry-After | every request succeeds, `a` answers none |
//! | 5xx | `b` fails half its requests with 500 | every request succeeds |
//! | restart | `c` stops listening, then comes back | every request succeeds |
//! | streams | `a` resets streams after 3 chunks | no stream truncated without an error event |
//! | runaway | `a` stalls streams after 2 chunks, on a route with `max_stream_duration_ms` | every stream cut with an error event, none left hanging |
//! | rate limit | `d` has a token budget | every request succeeds, `d` never served more than its budget plus what was in flight |
//! | conversations | none, then `b` answers 503 | Responses API follow-ups (`previous_response_id` or a Conversations API `conversation`) answered by the account holding their conversation at the first attempt; `b`'s fail visibly (never answered elsewhere), `a`'s go on, new ones start on `a` |
//!
//! Prints a verdict table; the caller exits non-zero on any violation.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use mock_llm::{Faults, InstanceConfig, MockServer};
use serde::Serialize;

use crate::run::{run, Mode, RunSpec};
use crate::stats::Stats;
use crate::workload::{Url, Workload};

#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub phase: String,
    pub check: String,
    pub observed: String,
    pub ok: bool,
}

/// Knobs of a fallback run.
#[derive(Debug, Clone)]
pub struct FallbackArgs {
    pub phase: Duration,
    pub concurrency: usize,
    pub workers: usize,
    pub gateway_cpu: Option<usize>,
}

const WEIGHTS: [(&str, u32); 3] = [("a", 5), ("b", 3), ("c", 2)];
/// Requests' worth of tokens in `d`'s budget.
const BUDGET_REQUESTS: u64 = 40;
/// `max_stream_duration_ms` of the runaway phase's route.
const STREAM_CAP_MS: u64 = 300;

fn config(m: &MockServer, d_limit: u64) -> String {
    let inst = |name: &str, mock: &str, weight: u32, priority: i32| {
        format!(
            "              - name: {name}\n                provider: openai-compatible\n                weight: {weight}\n                priority: {priority}\n                auth: {{header: {{Authorization: \"Bearer k\"}}}}\n                options: {{model: m-{mock}}}\n                override: {{endpoint: \"{}/v1/chat/completions\"}}\n",
            m.instance(mock).url()
        )
    };
    let mut chaos = String::new();
    for (n, w) in WEIGHTS {
        chaos.push_str(&inst(n, n, w, 0));
    }
    format!(
        "services:\n  - name: chaos\n    routes:\n      - name: chaos\n        uris: [/v1/chat/completions]\n        plugins:\n          ai-proxy-multi:\n            fallback_strategy: [http_429, http_5xx]\n            instances:\n{chaos}      - name: limited\n        uris: [/limited/v1/chat/completions]\n        plugins:\n          ai-rate-limiting:\n            instances: [{{name: d, limit: {d_limit}, time_window: 600}}]\n          ai-proxy-multi:\n            fallback_strategy: [rate_limiting]\n            instances:\n{}{}      - name: capped\n        uris: [/capped/v1/chat/completions]\n        plugins:\n          ai-proxy-multi:\n            max_stream_duration_ms: {STREAM_CAP_MS}\n            instances:\n{}      - name: accounts\n        uris: [{path}, {path}/*, {conv}, {conv}/*]\n        methods: [POST, GET, DELETE]\n        plugins:\n          ai-proxy-multi:\n            fallback_strategy: [http_429, http_5xx]\n            instances:\n{}{}",
        inst("d", "d", 1, 1),
        inst("a-spare", "a", 1, 0),
        inst("a-capped", "a", 1, 0),
        inst("acct-a", "a", 1, 0).replace("/v1/chat/completions", "/v1/responses"),
        inst("acct-b", "b", 1, 0).replace("/v1/chat/completions", "/v1/responses"),
        path = crate::conversations::PATH,
        conv = crate::conversations::CONVERSATIONS,
    )
}

fn load(addr: SocketAddr, path: &str, stream: bool, args: &FallbackArgs) -> RunSpec {
    let url = Url {
        addr,
        host: addr.to_string(),
        path: path.to_owned(),
    };
    let w = Workload {
        stream,
        prompt_words: 8,
        ..Default::default()
    };
    RunSpec {
        addr,
        request: w.request(&url),
        mode: Mode::Closed {
            concurrency: args.concurrency,
        },
        duration: args.phase,
        requests: None,
        warmup: Duration::ZERO,
        timeout: Duration::from_secs(10),
        progress: false,
        label: path.to_owned(),
    }
}

fn all_succeeded(phase: &str, s: &Stats, out: &mut Vec<Verdict>) {
    out.push(Verdict {
        phase: phase.into(),
        check: "every request succeeded (a fallback existed)".into(),
        observed: format!("{} ok of {} ({:?})", s.ok, s.total(), s.errors),
        ok: s.total() > 0 && s.ok == s.total(),
    });
}

/// Runs every phase; returns the verdicts.
pub fn run_fallback(ringway: &Path, args: &FallbackArgs) -> Result<Vec<Verdict>, String> {
    let mut b = MockServer::builder();
    for n in ["a", "b", "c", "d"] {
        b = b.instance(
            InstanceConfig::new(n)
                .tokens(8)
                .itl(Duration::from_millis(1)),
        );
    }
    let m = b.spawn().map_err(|e| format!("mock-llm: {e}"))?;
    // Tokens one request costs.
    let probe = mock_llm::client::Conn::connect(m.instance("d").addr()).post_json(
        "/v1/chat/completions",
        &Workload {
            stream: false,
            prompt_words: 8,
            ..Default::default()
        }
        .body(),
    );
    let cost = probe.json()["usage"]["total_tokens"]
        .as_u64()
        .unwrap_or(1)
        .max(1);
    let before_d = m.instance("d").stats();
    let d_limit = cost * BUDGET_REQUESTS;
    let (gw, addr) = crate::procs::start_ringway(
        ringway,
        &config(&m, d_limit),
        args.workers,
        args.gateway_cpu,
    )?;
    let mut v = Vec::new();
    let go = |path: &str, stream: bool| -> Result<Stats, String> {
        run(&load(addr, path, stream, args))
            .map(|r| r.stats)
            .map_err(|e| e.to_string())
    };

    // Calm: the weighted split.
    let s = go("/v1/chat/completions", false)?;
    all_succeeded("calm", &s, &mut v);
    let total: u64 = s.instances.values().sum();
    let shares: Vec<String> = WEIGHTS
        .iter()
        .map(|(n, _)| {
            format!(
                "{n} {:.2}",
                *s.instances.get(*n).unwrap_or(&0) as f64 / total.max(1) as f64
            )
        })
        .collect();
    let within = WEIGHTS.iter().all(|(n, w)| {
        let share = *s.instances.get(*n).unwrap_or(&0) as f64 / total.max(1) as f64;
        (share - f64::from(*w) / 10.0).abs() <= 0.05
    });
    v.push(Verdict {
        phase: "calm".into(),
        check: "split within ±0.05 of 0.5/0.3/0.2".into(),
        observed: shares.join(", "),
        ok: total > 0 && within,
    });

    // a answers 429 with Retry-After.
    m.instance("a").set_faults(Faults {
        status: Some(429),
        retry_after: Some(1),
        ..Default::default()
    });
    let s = go("/v1/chat/completions", false)?;
    m.instance("a").clear_faults();
    all_succeeded("429 on a", &s, &mut v);
    v.push(Verdict {
        phase: "429 on a".into(),
        check: "instance a answered no request".into(),
        observed: format!("a answered {}", s.instances.get("a").unwrap_or(&0)),
        ok: s.instances.get("a").is_none_or(|&n| n == 0),
    });
    // Let a's cooldown pass.
    std::thread::sleep(Duration::from_millis(1100));

    // b fails half its requests.
    m.instance("b").set_faults(Faults {
        status: Some(500),
        fail_rate: Some(0.5),
        ..Default::default()
    });
    let s = go("/v1/chat/completions", false)?;
    m.instance("b").clear_faults();
    all_succeeded("5xx bursts on b", &s, &mut v);

    // c is killed and restarted mid-phase.
    let s = std::thread::scope(|scope| {
        let c = m.instance("c");
        let third = args.phase / 3;
        scope.spawn(move || {
            std::thread::sleep(third);
            c.stop_listening();
            std::thread::sleep(third);
            c.start_listening();
        });
        go("/v1/chat/completions", false)
    })?;
    all_succeeded("c killed and restarted", &s, &mut v);

    // Streams reset mid-way on a.
    m.instance("a").set_faults(Faults {
        reset_after_chunks: Some(3),
        ..Default::default()
    });
    let s = go("/v1/chat/completions", true)?;
    m.instance("a").clear_faults();
    let truncated = s.errors_of(crate::stats::ErrorClass::Truncated);
    let events = s.errors_of(crate::stats::ErrorClass::ErrorEvent);
    v.push(Verdict {
        phase: "streams reset on a".into(),
        check: "no stream truncated without an error event".into(),
        observed: format!(
            "{} streams: {} complete, {events} error events, {truncated} truncated ({:?})",
            s.total(),
            s.ok,
            s.errors
        ),
        ok: s.total() > 0 && truncated == 0 && s.ok + events == s.total(),
    });

    // A runaway upstream: a's streams stall for longer than the client
    // waits; the capped route cuts them.
    m.instance("a").set_faults(Faults {
        stall_ms: Some(30_000),
        stall_after_chunks: Some(2),
        ..Default::default()
    });
    let s = go("/capped/v1/chat/completions", true)?;
    m.instance("a").clear_faults();
    let cut = s.errors_of(crate::stats::ErrorClass::ErrorEvent);
    v.push(Verdict {
        phase: "runaway streams on a".into(),
        check: format!(
            "every stream cut at max_stream_duration_ms ({STREAM_CAP_MS}) with an error event"
        ),
        observed: format!("{} streams: {cut} cut ({:?})", s.total(), s.errors),
        ok: s.total() > 0 && cut == s.total(),
    });

    // d's token budget.
    let s = go("/limited/v1/chat/completions", false)?;
    all_succeeded("rate limit on d", &s, &mut v);
    let after_d = m.instance("d").stats();
    let served = (after_d.prompt_tokens + after_d.completion_tokens)
        .saturating_sub(before_d.prompt_tokens + before_d.completion_tokens);
    let slack = cost * args.concurrency as u64;
    v.push(Verdict {
        phase: "rate limit on d".into(),
        check: format!("d served at most its budget ({d_limit}) + in flight ({slack}) tokens"),
        observed: format!("{served} tokens"),
        ok: served >= d_limit && served <= d_limit + slack,
    });
    conversations_phase(&m, addr, args, &mut v);
    drop(gw);
    Ok(v)
}

/// Responses API conversations over accounts `acct-a` and `acct-b`
/// (mock-llm `a` and `b`), calm and then with `b` failing.
fn conversations_phase(
    m: &MockServer,
    addr: SocketAddr,
    args: &FallbackArgs,
    v: &mut Vec<Verdict>,
) {
    use crate::conversations::{converse, follow_up, start, Style, Tally};
    let t = converse(addr, args.concurrency.min(16), args.phase);
    let both = t.started_on.len() == 2;
    v.push(Verdict {
        phase: "conversations".into(),
        check: "follow-ups reach their conversation's account at once".into(),
        observed: format!(
            "{} conversations (started on {:?}), {} follow-ups: {} elsewhere, {} retried, failed {:?}",
            t.conversations, t.started_on, t.follow_ups, t.elsewhere, t.retried, t.failed
        ),
        ok: t.follow_ups > 0 && both && t.elsewhere == 0 && t.retried == 0 && t.failed.is_empty(),
    });
    // Conversations on both accounts, then b fails.
    let mut setup = Tally::default();
    let threads: Vec<_> = (0..20)
        .filter_map(|n| {
            let style = if n % 2 == 0 {
                Style::Chain
            } else {
                Style::Conversation
            };
            start(addr, style, &mut setup)
        })
        .collect();
    m.instance("b").set_faults(Faults {
        status: Some(503),
        ..Default::default()
    });
    let (mut on_a, mut on_b) = (Tally::default(), Tally::default());
    let (mut a_went_on, mut b_stopped) = (0, 0);
    for mut th in threads {
        if th.holder == "acct-a" {
            a_went_on += u64::from(follow_up(addr, &mut th, false, &mut on_a));
        } else {
            b_stopped += u64::from(!follow_up(addr, &mut th, false, &mut on_b));
        }
    }
    let mut fresh = Tally::default();
    for style in [Style::Chain, Style::Conversation].repeat(5) {
        start(addr, style, &mut fresh);
    }
    m.instance("b").clear_faults();
    let b_ended_visibly = on_b
        .failed
        .keys()
        .all(|k| k.starts_with("follow-up 502") || k.starts_with("follow-up 503"));
    v.push(Verdict {
        phase: "conversations, b down".into(),
        check: "b's end in 502/503, a's go on, new ones start on a".into(),
        observed: format!(
            "a's {a_went_on}/{} went on; b's {b_stopped}/{} ended ({:?}), {} answered elsewhere; new: {:?}, failed {:?}",
            on_a.follow_ups, on_b.follow_ups, on_b.failed, on_b.elsewhere, fresh.started_on, fresh.failed
        ),
        ok: on_a.follow_ups > 0
            && on_b.follow_ups > 0
            && a_went_on == on_a.follow_ups
            && on_a.elsewhere == 0
            && b_stopped == on_b.follow_ups
            && on_b.elsewhere == 0
            && b_ended_visibly
            && fresh.conversations == 10
            && fresh.started_on.keys().all(|k| k == "acct-a"),
    });
}

/// The verdict table for people.
pub fn print_verdicts(v: &[Verdict]) {
    println!("{:<24} {:<62} {:<6} observed", "phase", "check", "ok");
    for x in v {
        println!(
            "{:<24} {:<62} {:<6} {}",
            x.phase,
            x.check,
            if x.ok { "PASS" } else { "FAIL" },
            x.observed
        );
    }
}
