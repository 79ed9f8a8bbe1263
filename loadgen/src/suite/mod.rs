//! The benchmark suite: one command regenerates every number in
//! `results/`. mock-llm runs in this process (its threads and the load
//! share one CPU), the gateway (ringway, and nginx `proxy_pass` when
//! installed) is pinned to another, and every comparison runs in
//! interleaved rounds. Writes one JSON file per section (with raw
//! histograms), SVG plots, and `README.md` with the tables.
//!
//! Sections: side-by-side chat and streaming (req/s, latency, TTFT, CPU
//! per request, ratios), the same at quarter load in open loop (the
//! gateway's added latency without queueing), added latency at
//! concurrency 1 (these two also with busy polling on), a concurrency
//! sweep, the throughput frontier (highest open-loop rate with p99 under
//! 1/5/10 ms), memory per idle open SSE stream, cost as instances grow,
//! a body-size sweep, and the fallback verdicts.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mock_llm::{InstanceConfig, MockServer};
use serde::Serialize;
use serde_json::{json, Value};

mod frontier;
mod idle;
mod output;
mod under_load;

use crate::compare::{compare, Target, TargetReport};
use crate::procs::{self, Proc};
use crate::run::{Mode, RunSpec};
use crate::workload::{Url, Workload};

#[derive(Debug, Clone)]
pub struct SuiteArgs {
    pub out: PathBuf,
    /// A ~2-second smoke version (tests, CI): tiny runs, no nginx.
    pub quick: bool,
    pub ringway: PathBuf,
    /// Run nginx `proxy_pass` side by side when it is installed.
    pub nginx: bool,
    pub gateway_cpu: Option<usize>,
    pub load_cpu: Option<usize>,
    pub rounds: usize,
    /// Seconds per measured run (per target per round).
    pub run_secs: f64,
    pub concurrency: usize,
    pub idle_streams: usize,
    /// The LiteLLM proxy executable, for a LiteLLM column in the chat and
    /// streaming comparisons (`scripts/setup-litellm.sh` installs it).
    pub litellm: Option<PathBuf>,
}

impl SuiteArgs {
    pub fn quick(out: PathBuf, ringway: PathBuf) -> SuiteArgs {
        SuiteArgs {
            out,
            quick: true,
            ringway,
            nginx: false,
            gateway_cpu: None,
            load_cpu: None,
            rounds: 1,
            run_secs: 0.15,
            concurrency: 8,
            idle_streams: 500,
            litellm: None,
        }
    }
}

fn url(addr: SocketAddr, path: &str) -> Url {
    Url {
        addr,
        host: addr.to_string(),
        path: path.to_owned(),
    }
}

/// `benches/payloads/agent-32k.json`: a coding agent's chat request.
const AGENT_BODY: &str = include_str!("../../../benches/payloads/agent-32k.json");

fn workload(stream: bool, prompt_words: usize) -> Workload {
    Workload {
        stream,
        prompt_words,
        ..Default::default()
    }
}

fn spec(addr: SocketAddr, path: &str, w: &Workload, mode: Mode, secs: f64) -> RunSpec {
    RunSpec {
        addr,
        request: w.request(&url(addr, path)),
        mode,
        duration: Duration::from_secs_f64(secs),
        requests: None,
        warmup: Duration::from_secs_f64((secs / 4.0).min(1.0)),
        timeout: Duration::from_secs(30),
        progress: false,
        label: path.to_owned(),
    }
}

/// ai-proxy-multi with `n` instances (weights 8,2,1,1,…) on the mocks.
fn ringway_config(m: &MockServer, n: usize) -> String {
    let mut inst = String::new();
    for i in 0..n {
        let mock = if i % 2 == 0 { "m1" } else { "m2" };
        let weight = match i {
            0 => 8,
            1 => 2,
            _ => 1,
        };
        inst.push_str(&format!(
            "              - name: i{i}\n                provider: openai-compatible\n                weight: {weight}\n                auth: {{header: {{Authorization: \"Bearer k\"}}}}\n                options: {{model: gpt-4o-mini}}\n                override: {{endpoint: \"{}/v1/chat/completions\"}}\n",
            m.instance(mock).url()
        ));
    }
    format!(
        "consumers:\n  - username: bench\n    credentials:\n      - name: key\n        type: key-auth\n        config: {{key: bench-key}}\nservices:\n  - name: bench\n    routes:\n      - name: chat\n        uris: [/v1/chat/completions]\n        plugins:\n          ai-proxy-multi:\n            keepalive_pool: 256\n            instances:\n{inst}      - name: guarded\n        uris: [/guarded/v1/chat/completions]\n        plugins:\n          key-auth: {{}}\n          ai-rate-limiting:\n            limit: 10000000000\n            time_window: 3600\n          ai-proxy-multi:\n            keepalive_pool: 256\n            instances:\n{inst}      - name: idle\n        uris: [/idle/v1/chat/completions]\n        plugins:\n          ai-proxy-multi:\n            timeout: 600000\n            instances:\n              - name: slow\n                provider: openai-compatible\n                weight: 1\n                auth: {{header: {{Authorization: \"Bearer k\"}}}}\n                override: {{endpoint: \"{}/v1/chat/completions\"}}\n  - name: idle-plain\n    upstream:\n      nodes: [{{host: 127.0.0.1, port: {}, weight: 1}}]\n      timeout: {{connect: 5, send: 600, read: 600}}\n    routes:\n      - name: idle-plain\n        uris: [/idle-plain/v1/chat/completions]\n",
        m.instance("slow").url(),
        m.instance("slow").addr().port()
    )
}

/// The suite's mock-llm: `m1` and `m2` answer 16 tokens at once, `slow`
/// never sends its first token (idle streams).
fn suite_mock() -> Result<MockServer, String> {
    let tokens = 16;
    MockServer::builder()
        .instance(InstanceConfig::new("m1").tokens(tokens))
        .instance(InstanceConfig::new("m2").tokens(tokens))
        .instance(
            InstanceConfig::new("slow")
                .tokens(1)
                .ttft(Duration::from_secs(600)),
        )
        .workers(1)
        .spawn()
        .map_err(|e| format!("mock-llm: {e}"))
}

pub use idle::IdleRoute;

/// Memory per idle open stream for each of `builds` (ringway binaries),
/// measured one after another in `rounds` (A B A B …) against one mock:
/// `(build, result)` in measurement order. `loadgen idle` runs this to
/// compare builds; the suite's section measures one build the same way.
pub fn compare_idle(
    builds: &[PathBuf],
    streams: usize,
    rounds: usize,
    route: IdleRoute,
) -> Result<Vec<(PathBuf, Value)>, String> {
    let nofile = ringway::server::rlimit::raise_nofile();
    let streams = streams.min(idle::fd_cap(nofile));
    let mock = suite_mock()?;
    let mut out = Vec::new();
    for _ in 0..rounds {
        for b in builds {
            out.push((
                b.clone(),
                idle::idle_streams(&mock, b, None, streams, route)?,
            ));
        }
    }
    Ok(out)
}

/// The busy-poll window of the suite's second ringway (`gateway.busy_poll_us`),
/// measured next to the default one where latency at light load is the
/// question (concurrency 1, under load).
pub const BUSY_POLL_US: u64 = 200;

/// The name of that target.
pub const BUSY_POLL_TARGET: &str = "ringway busy-poll";

struct Env {
    mock: MockServer,
    ringway: (Proc, SocketAddr),
    /// The same build and config with busy polling on (not in quick runs).
    ringway_busy: Option<(Proc, SocketAddr)>,
    nginx: Option<(Proc, SocketAddr)>,
    litellm: Option<(Proc, SocketAddr)>,
}

fn targets(env: &Env, path: &str, w: &Workload, mode: Mode, secs: f64) -> Vec<Target> {
    let direct = env.mock.instance("m1").addr();
    let mut t = vec![
        Target {
            name: "direct".into(),
            spec: spec(direct, "/v1/chat/completions", w, mode, secs),
            pid: None,
        },
        Target {
            name: "ringway".into(),
            spec: spec(env.ringway.1, path, w, mode, secs),
            pid: Some(env.ringway.0.pid()),
        },
    ];
    if let Some((p, addr)) = &env.nginx {
        t.push(Target {
            name: "nginx".into(),
            spec: spec(*addr, "/v1/chat/completions", w, mode, secs),
            pid: Some(p.pid()),
        });
    }
    if let Some((p, addr)) = &env.litellm {
        t.push(Target {
            name: "litellm".into(),
            spec: spec(*addr, "/v1/chat/completions", w, mode, secs),
            pid: Some(p.pid()),
        });
    }
    t
}

/// The targets of the light-load sections (concurrency 1, under load):
/// LiteLLM left out (it cannot serve these rates), the busy-polling
/// ringway added after the default one.
fn light_load_targets(env: &Env, path: &str, w: &Workload, mode: Mode, secs: f64) -> Vec<Target> {
    let mut t = targets(env, path, w, mode, secs);
    t.retain(|t| t.name != "litellm");
    if let Some((p, addr)) = &env.ringway_busy {
        let at = t
            .iter()
            .position(|t| t.name == "ringway")
            .map_or(t.len(), |i| i + 1);
        t.insert(
            at,
            Target {
                name: BUSY_POLL_TARGET.into(),
                spec: spec(*addr, path, w, mode, secs),
                pid: Some(p.pid()),
            },
        );
    }
    t
}

fn write_json(dir: &Path, name: &str, v: &impl Serialize) -> Result<(), String> {
    let text = serde_json::to_string_pretty(v).map_err(|e| e.to_string())?;
    std::fs::write(dir.join(name), text).map_err(|e| format!("{name}: {e}"))
}

fn say(msg: &str) {
    let mut e = std::io::stderr().lock();
    let _ = writeln!(e, "suite: {msg}");
}

/// Runs the whole suite and writes `args.out`.
pub fn run_suite(args: &SuiteArgs) -> Result<Value, String> {
    std::fs::create_dir_all(&args.out).map_err(|e| e.to_string())?;
    let nofile = ringway::server::rlimit::raise_nofile();
    if let Some(cpu) = args.load_cpu {
        // mock-llm's threads inherit this affinity.
        procs::pin_current_thread(cpu);
    }
    let mock = suite_mock()?;
    let ringway = procs::start_ringway(
        &args.ringway,
        &ringway_config(&mock, 2),
        1,
        args.gateway_cpu,
    )?;
    let ringway_busy = if args.quick {
        None
    } else {
        Some(procs::start_ringway_with(
            &args.ringway,
            &format!("busy_poll_us: {BUSY_POLL_US}"),
            &ringway_config(&mock, 2),
            1,
            args.gateway_cpu,
        )?)
    };
    let nginx = if args.nginx && !args.quick {
        match procs::start_nginx(mock.instance("m1").addr(), args.gateway_cpu) {
            Ok(n) => Some(n),
            Err(e) => {
                say(&format!("nginx skipped: {e}"));
                None
            }
        }
    } else {
        None
    };
    let litellm = match &args.litellm {
        Some(bin) if !args.quick => {
            say("starting LiteLLM (this takes a while)");
            Some(procs::start_litellm(
                bin,
                [mock.instance("m1").addr(), mock.instance("m2").addr()],
                args.gateway_cpu,
            )?)
        }
        _ => None,
    };
    let env = Env {
        mock,
        ringway,
        ringway_busy,
        nginx,
        litellm,
    };
    let secs = args.run_secs;
    let c = Mode::Closed {
        concurrency: args.concurrency,
    };
    let mut index = serde_json::Map::new();

    say("side by side: chat");
    let chat = compare(
        &targets(&env, "/v1/chat/completions", &workload(false, 16), c, secs),
        args.rounds,
    )?;
    write_json(&args.out, "compare-chat.json", &chat)?;
    crate::compare::print_table("chat, non-streaming", &chat);

    say("side by side: streaming");
    let stream = compare(
        &targets(&env, "/v1/chat/completions", &workload(true, 16), c, secs),
        args.rounds,
    )?;
    write_json(&args.out, "compare-stream.json", &stream)?;
    crate::compare::print_table("chat, streaming", &stream);

    say("added latency under load (open loop, a quarter of ringway's closed-loop rate)");
    let (chat_rate, load_chat) = under_load::under_load(&env, args, &chat, false)?;
    write_json(&args.out, "under-load-chat.json", &load_chat)?;
    crate::compare::print_table("chat under load", &load_chat);
    let (stream_rate, load_stream) = under_load::under_load(&env, args, &stream, true)?;
    write_json(&args.out, "under-load-stream.json", &load_stream)?;
    crate::compare::print_table("streaming under load", &load_stream);

    say("added latency at concurrency 1");
    let c1_targets = light_load_targets(
        &env,
        "/v1/chat/completions",
        &workload(false, 16),
        Mode::Closed { concurrency: 1 },
        secs,
    );
    let c1 = compare(&c1_targets, args.rounds)?;
    write_json(&args.out, "added-latency-c1.json", &c1)?;

    say("cost of key-auth + ai-rate-limiting");
    let mut guarded_w = workload(false, 16);
    guarded_w
        .headers
        .push(("apikey".into(), "bench-key".into()));
    let guard_targets = vec![
        Target {
            name: "ai-proxy-multi".into(),
            spec: spec(
                env.ringway.1,
                "/v1/chat/completions",
                &workload(false, 16),
                c,
                secs,
            ),
            pid: Some(env.ringway.0.pid()),
        },
        Target {
            name: "+key-auth+rate-limit".into(),
            spec: spec(
                env.ringway.1,
                "/guarded/v1/chat/completions",
                &guarded_w,
                c,
                secs,
            ),
            pid: Some(env.ringway.0.pid()),
        },
    ];
    let guarded = compare(&guard_targets, args.rounds)?;
    write_json(&args.out, "guard-rails-cost.json", &guarded)?;
    crate::compare::print_table("key-auth + ai-rate-limiting (local)", &guarded);

    say("concurrency sweep");
    let levels: &[usize] = if args.quick {
        &[1, 8]
    } else {
        &[1, 4, 16, 64, 256]
    };
    let mut sweep: Vec<Value> = Vec::new();
    for &n in levels {
        let mut t = targets(
            &env,
            "/v1/chat/completions",
            &workload(false, 16),
            Mode::Closed { concurrency: n },
            secs,
        );
        t.retain(|t| t.name != "litellm");
        let r = compare(&t, args.rounds)?;
        sweep.push(json!({"concurrency": n, "targets": r}));
    }
    write_json(&args.out, "sweep.json", &sweep)?;

    say("throughput frontier");
    let frontier = frontier::frontier(&env, args)?;
    write_json(&args.out, "frontier.json", &frontier)?;

    say("memory per idle stream");
    // ringway holds three descriptors per open stream (client socket, the
    // duplicate that watches it for leaving, upstream socket): stay inside
    // the open-file limit it could raise itself to (a container may cap
    // the hard limit, 20,000 here).
    let idle = idle::idle_streams(
        &env.mock,
        &args.ringway,
        args.gateway_cpu,
        args.idle_streams.min(idle::fd_cap(nofile)),
        IdleRoute::Ai,
    )?;
    write_json(&args.out, "idle-streams.json", &idle)?;

    say("cost as instances grow");
    let counts: &[usize] = if args.quick { &[2, 16] } else { &[2, 16, 256] };
    let mut inst = Vec::new();
    for &n in counts {
        let (p, addr) = procs::start_ringway(
            &args.ringway,
            &ringway_config(&env.mock, n),
            1,
            args.gateway_cpu,
        )?;
        let t = vec![Target {
            name: format!("{n} instances"),
            spec: spec(addr, "/v1/chat/completions", &workload(false, 16), c, secs),
            pid: Some(p.pid()),
        }];
        let r = compare(&t, args.rounds)?;
        inst.push(json!({"instances": n, "report": r[0]}));
    }
    write_json(&args.out, "instances.json", &inst)?;

    say("body-size sweep");
    let words: &[usize] = if args.quick {
        &[16, 1024]
    } else {
        &[16, 1024, 16_384, 65_536]
    };
    // One long prompt string of N words, and a coding agent's request
    // (history, tools, tool results: escapes and text that is not ASCII).
    let mut cases: Vec<(String, Workload)> = words
        .iter()
        .map(|&wds| (format!("{wds}-word prompt"), workload(false, wds)))
        .collect();
    let agent: serde_json::Value = serde_json::from_str(AGENT_BODY).map_err(|e| e.to_string())?;
    cases.insert(
        2.min(cases.len()),
        (
            "agent conversation".into(),
            Workload {
                body: Some(agent),
                ..workload(false, 0)
            },
        ),
    );
    let mut bodies = Vec::new();
    for (label, w) in &cases {
        let mut t = targets(&env, "/v1/chat/completions", w, c, secs);
        // nginx passes bytes through without reading them: the cost of
        // validating and splicing shows against it.
        t.retain(|t| t.name != "litellm");
        let r = compare(&t, args.rounds)?;
        let bytes = w.body().len();
        bodies.push(json!({"body": label, "body_bytes": bytes, "targets": r}));
    }
    write_json(&args.out, "body-size.json", &bodies)?;

    say("fallback correctness");
    let fb = crate::fallback::run_fallback(
        &args.ringway,
        &crate::fallback::FallbackArgs {
            phase: Duration::from_secs_f64(if args.quick { 0.3 } else { 3.0 }),
            concurrency: 8,
            workers: 2,
            gateway_cpu: None,
        },
    )?;
    write_json(&args.out, "fallback.json", &fb)?;
    crate::fallback::print_verdicts(&fb);

    output::plots(&args.out, &chat, &stream, &sweep)?;
    index.insert("machine".into(), output::machine());
    index.insert("quick".into(), json!(args.quick));
    index.insert("chat".into(), headline(&chat));
    index.insert("stream".into(), headline(&stream));
    index.insert("c1".into(), headline(&c1));
    index.insert(
        "under_load".into(),
        json!({"max_conns": under_load::MAX_CONNS, "chat_rate": chat_rate, "stream_rate": stream_rate,
               "chat": headline(&load_chat), "stream": headline(&load_stream)}),
    );
    index.insert("guard_rails".into(), headline(&guarded));
    index.insert("frontier".into(), frontier.clone());
    index.insert("idle_streams".into(), idle.clone());
    index.insert("fallback_ok".into(), json!(fb.iter().all(|v| v.ok)));
    let index = Value::Object(index);
    write_json(&args.out, "suite.json", &index)?;
    let md = crate::report::readme(
        &index,
        &chat,
        &stream,
        [&load_chat, &load_stream],
        &c1,
        &guarded,
        &sweep,
        &inst,
        &bodies,
        &fb,
    );
    std::fs::write(args.out.join("README.md"), md).map_err(|e| e.to_string())?;
    Ok(index)
}

fn headline(r: &[TargetReport]) -> Value {
    r.iter()
        .map(|t| {
            (
                t.name.clone(),
                json!({"rps": t.summary.rps, "rps_ratio": t.rps_ratio, "p50_us": t.summary.latency.p50,
                       "p99_us": t.summary.latency.p99, "added_p50_us": t.added_p50_us, "added_p99_us": t.added_p99_us,
                       "added_ttft_p50_us": t.added_ttft_p50_us, "cpu_us_per_request": t.cpu_us_per_request,
                       "rps_ratio_to": t.rps_ratio_to}),
            )
        })
        .collect::<serde_json::Map<_, _>>()
        .into()
}
