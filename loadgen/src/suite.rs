//! The benchmark suite: one command regenerates every number in
//! `results/`. mock-llm runs in this process (its threads and the load
//! share one CPU), the gateway (ringway, and nginx `proxy_pass` when
//! installed) is pinned to another, and every comparison runs in
//! interleaved rounds. Writes one JSON file per section (with raw
//! histograms), SVG plots, and `README.md` with the tables.
//!
//! Sections: side-by-side chat and streaming (req/s, latency, TTFT, CPU
//! per request, ratios), added latency at concurrency 1, a concurrency
//! sweep, the throughput frontier (highest open-loop rate with p99 under
//! 1/5/10 ms), memory per idle open SSE stream, cost as instances grow,
//! a body-size sweep, and the fallback verdicts.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mock_llm::{InstanceConfig, MockServer};
use serde::Serialize;
use serde_json::{json, Value};

use crate::compare::{compare, Target, TargetReport};
use crate::procs::{self, Proc};
use crate::run::{run, Mode, RunSpec};
use crate::stats::{decode, Summary};
use crate::workload::{Template, Url, Workload};

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

fn workload(stream: bool, prompt_words: usize) -> Workload {
    Workload {
        template: Template::Chat,
        stream,
        prompt_words,
        model: "gpt-4o-mini".into(),
        max_tokens: None,
        headers: Vec::new(),
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
        "consumers:\n  - username: bench\n    credentials:\n      - name: key\n        type: key-auth\n        config: {{key: bench-key}}\nservices:\n  - name: bench\n    routes:\n      - name: chat\n        uris: [/v1/chat/completions]\n        plugins:\n          ai-proxy-multi:\n            keepalive_pool: 256\n            instances:\n{inst}      - name: guarded\n        uris: [/guarded/v1/chat/completions]\n        plugins:\n          key-auth: {{}}\n          ai-rate-limiting:\n            limit: 10000000000\n            time_window: 3600\n          ai-proxy-multi:\n            keepalive_pool: 256\n            instances:\n{inst}      - name: idle\n        uris: [/idle/v1/chat/completions]\n        plugins:\n          ai-proxy-multi:\n            timeout: 600000\n            instances:\n              - name: slow\n                provider: openai-compatible\n                weight: 1\n                auth: {{header: {{Authorization: \"Bearer k\"}}}}\n                override: {{endpoint: \"{}/v1/chat/completions\"}}\n",
        m.instance("slow").url()
    )
}

struct Env {
    mock: MockServer,
    ringway: (Proc, SocketAddr),
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
    let tokens = 16;
    let mock = MockServer::builder()
        .instance(InstanceConfig::new("m1").tokens(tokens))
        .instance(InstanceConfig::new("m2").tokens(tokens))
        .instance(
            InstanceConfig::new("slow")
                .tokens(1)
                .ttft(Duration::from_secs(600)),
        )
        .workers(1)
        .spawn()
        .map_err(|e| format!("mock-llm: {e}"))?;
    let ringway = procs::start_ringway(
        &args.ringway,
        &ringway_config(&mock, 2),
        1,
        args.gateway_cpu,
    )?;
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

    say("added latency at concurrency 1");
    let mut c1_targets = targets(
        &env,
        "/v1/chat/completions",
        &workload(false, 16),
        Mode::Closed { concurrency: 1 },
        secs,
    );
    c1_targets.retain(|t| t.name != "litellm");
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
    let frontier = frontier(&env, args)?;
    write_json(&args.out, "frontier.json", &frontier)?;

    say("memory per idle stream");
    // ringway holds three descriptors per open stream (client socket, the
    // duplicate that watches it for leaving, upstream socket): stay inside
    // the open-file limit it could raise itself to (a container may cap
    // the hard limit, 20,000 here).
    let fd_cap = (nofile.saturating_sub(512) / 3) as usize;
    let idle = idle_streams(&env, args, args.idle_streams.min(fd_cap.max(1)))?;
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
    let mut bodies = Vec::new();
    for &wds in words {
        let mut t = targets(&env, "/v1/chat/completions", &workload(false, wds), c, secs);
        t.truncate(2);
        let r = compare(&t, args.rounds)?;
        let bytes = workload(false, wds).body().len();
        bodies.push(json!({"prompt_words": wds, "body_bytes": bytes, "targets": r}));
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

    plots(&args.out, &chat, &stream, &sweep)?;
    index.insert("machine".into(), machine());
    index.insert("quick".into(), json!(args.quick));
    index.insert("chat".into(), headline(&chat));
    index.insert("stream".into(), headline(&stream));
    index.insert("c1".into(), headline(&c1));
    index.insert("guard_rails".into(), headline(&guarded));
    index.insert("frontier".into(), frontier.clone());
    index.insert("idle_streams".into(), idle.clone());
    index.insert("fallback_ok".into(), json!(fb.iter().all(|v| v.ok)));
    let index = Value::Object(index);
    write_json(&args.out, "suite.json", &index)?;
    let md = crate::report::readme(
        &index, &chat, &stream, &c1, &guarded, &sweep, &inst, &bodies, &fb,
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

/// Highest open-loop rate through ringway whose p99 stays under 1, 5 and
/// 10 ms with no errors.
fn frontier(env: &Env, args: &SuiteArgs) -> Result<Value, String> {
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

/// Opens `n` streams that wait for a first token that never comes (the
/// mock's `slow` instance) and reads ringway's RSS before and during.
/// A fresh gateway serves them: in the one that ran the load sections, the
/// allocator's retained free pages would absorb the streams without RSS
/// growing, and the figure would come out too low.
fn idle_streams(env: &Env, args: &SuiteArgs, n: usize) -> Result<Value, String> {
    use std::io::Write;
    let (gateway, addr) = procs::start_ringway(
        &args.ringway,
        &ringway_config(&env.mock, 2),
        1,
        args.gateway_cpu,
    )?;
    let pid = gateway.pid();
    let body = workload(true, 16).body();
    let req = format!(
        "POST /idle/v1/chat/completions HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let slow = env.mock.instance("slow");
    let open_now = || slow.stats().open_streams as usize;
    // In batches, each established end to end before the next: 10,000
    // connects at once overflow listen backlogs, and SYN retries would leave
    // part of the streams unopened when RSS is read. The first batch is a
    // small warm-up, so per-thread allocator and ring setup is in "before".
    const BATCH: usize = 250;
    const WARM: usize = 50;
    let base = open_now();
    let mut socks = Vec::with_capacity(n + WARM);
    let mut before = None;
    while socks.len() < n + WARM {
        let batch = if socks.is_empty() {
            WARM
        } else {
            BATCH.min(n + WARM - socks.len())
        };
        for _ in 0..batch {
            let mut s = std::net::TcpStream::connect(addr)
                .map_err(|e| format!("idle stream connect: {e}"))?;
            s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
            socks.push(s);
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while open_now() < base + socks.len() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        if before.is_none() {
            std::thread::sleep(Duration::from_millis(200));
            before = Some((procs::rss_kib(pid), open_now()));
        }
    }
    let (before, base) = before.unwrap_or((0, base));
    let open = open_now().saturating_sub(base);
    std::thread::sleep(Duration::from_millis(200));
    let during = procs::rss_kib(pid);
    drop(socks);
    drop(gateway);
    // Per stream that reached the upstream after the warm-up (all of them,
    // unless the deadline above ran out).
    let per = (during.saturating_sub(before)) as f64 / open.max(1) as f64;
    Ok(
        json!({"streams": n, "open_upstream_streams": open, "rss_before_kib": before,
              "rss_during_kib": during, "kib_per_stream": per, "fresh_gateway": true}),
    )
}

fn machine() -> Value {
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
    })
}

fn hist_of(s: &Summary, ttft: bool) -> Option<hdrhistogram::Histogram<u64>> {
    decode(if ttft {
        &s.histograms.ttft
    } else {
        &s.histograms.latency
    })
}

fn plots(
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
