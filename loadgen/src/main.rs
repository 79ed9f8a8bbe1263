//! The `loadgen` binary.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// loadgen hosts mock-llm in-process for the suite: the same allocator as
/// the mock-llm and ringway binaries.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use loadgen::cli::{print_summary, run_one, LoadArgs};
use loadgen::workload::Url;

/// Load generator for LLM gateways: latency, TTFT and inter-token latency
/// histograms, fallback correctness under chaos, side-by-side comparisons.
#[derive(Parser, Debug)]
#[command(name = "loadgen", version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Drive one target and report.
    Run {
        /// Target URL, e.g. http://127.0.0.1:9080/v1/chat/completions.
        url: String,
        #[command(flatten)]
        load: LoadArgs,
        /// Write the full summary (with raw histograms) here.
        #[arg(long)]
        json: Option<std::path::PathBuf>,
    },
    /// The same load against several targets in interleaved rounds
    /// (A B C, C B A, …); ratios to the first target and to each other.
    Compare {
        /// `name=URL` (repeatable); the first is the baseline.
        #[arg(long = "target", required = true)]
        targets: Vec<String>,
        /// `name=PID`: charge that process's CPU time to the target.
        #[arg(long = "pid")]
        pids: Vec<String>,
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// Drive all targets at once in each round (each at the full rate
        /// or concurrency, open-loop arrivals taking turns), so the
        /// machine's stalls land on every target alike.
        #[arg(long)]
        together: bool,
        /// Pin loadgen to this CPU.
        #[arg(long)]
        cpu: Option<usize>,
        #[command(flatten)]
        load: LoadArgs,
        #[arg(long)]
        json: Option<std::path::PathBuf>,
    },
    /// Regenerate the benchmark suite: results/*.json, SVG plots and
    /// results/README.md.
    Suite {
        #[arg(long, default_value = "results")]
        out: std::path::PathBuf,
        /// A ~2-second smoke run (small runs, no nginx).
        #[arg(long)]
        quick: bool,
        #[arg(long)]
        ringway: Option<std::path::PathBuf>,
        /// Leave nginx out even when installed.
        #[arg(long)]
        no_nginx: bool,
        /// CPU for the gateway under test (ringway, nginx).
        #[arg(long, default_value_t = 0)]
        gateway_cpu: usize,
        /// CPU for loadgen and mock-llm.
        #[arg(long, default_value_t = 1)]
        load_cpu: usize,
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// Seconds per measured run.
        #[arg(long, default_value_t = 2.0)]
        run_secs: f64,
        #[arg(short = 'c', long, default_value_t = 32)]
        concurrency: usize,
        #[arg(long, default_value_t = 10_000)]
        idle_streams: usize,
        /// The LiteLLM proxy executable (scripts/setup-litellm.sh prints it):
        /// adds a LiteLLM column to the chat and streaming comparisons.
        #[arg(long)]
        litellm: Option<std::path::PathBuf>,
    },
    /// Memory per idle open SSE stream for one or more ringway builds, one
    /// after another against one mock-llm whose first token never comes
    /// (each build a fresh process, one worker).
    Idle {
        /// ringway binaries to compare.
        #[arg(required = true)]
        builds: Vec<std::path::PathBuf>,
        /// Streams per build (capped by the open-file limit).
        #[arg(short = 'n', long, default_value_t = 4000)]
        streams: usize,
        /// Rounds over the builds (A B A B …).
        #[arg(long, default_value_t = 1)]
        rounds: usize,
        /// The route the streams take: `ai` (ai-proxy-multi) or `plain`
        /// (an upstream route to the same mock instance).
        #[arg(long, value_enum, default_value = "ai")]
        route: loadgen::suite::IdleRoute,
    },
    /// Fallback correctness under scripted mock-llm chaos (starts mock-llm
    /// in process and ringway as a child); exits 1 on any violation.
    Fallback {
        /// Seconds per phase.
        #[arg(long, default_value_t = 3.0)]
        phase_secs: f64,
        #[arg(short = 'c', long, default_value_t = 8)]
        concurrency: usize,
        /// ringway workers.
        #[arg(long, default_value_t = 2)]
        workers: usize,
        /// The ringway binary (default: next to loadgen).
        #[arg(long)]
        ringway: Option<std::path::PathBuf>,
        /// Write the verdicts as JSON here.
        #[arg(long)]
        json: Option<std::path::PathBuf>,
    },
    /// Chaos soak: JSON and streaming load through ringway for the whole
    /// run while instances fail (429 storms, 5xx, resets, stalls, a kill),
    /// Redis, the log sink and the Kafka broker restart and the route
    /// changes through the Admin API every 3 s; then verdicts (every
    /// request answered, none lost, open files, threads and RSS back to
    /// baseline, no panic). Exits 1 on any violation.
    Soak {
        /// Load and chaos time, seconds.
        #[arg(long, default_value_t = 120.0)]
        secs: f64,
        /// Connections sending JSON requests, and as many streaming.
        #[arg(short = 'c', long, default_value_t = 8)]
        concurrency: usize,
        /// ringway workers.
        #[arg(long, default_value_t = 2)]
        workers: usize,
        /// The ringway binary (default: next to loadgen).
        #[arg(long)]
        ringway: Option<std::path::PathBuf>,
        /// Leave the Kafka broker and kafka-logger out even when tansu is
        /// installed.
        #[arg(long)]
        no_kafka: bool,
        /// Write the report (verdicts, figures, failed-request samples,
        /// chaos events) as JSON here.
        #[arg(long)]
        json: Option<std::path::PathBuf>,
    },
}

#[allow(clippy::print_stdout, clippy::print_stderr)]
fn main() -> ExitCode {
    let cli = Cli::parse();
    ringway::server::rlimit::raise_nofile();
    match cli.cmd {
        Cmd::Compare {
            targets,
            pids,
            rounds,
            together,
            cpu,
            load,
            json,
        } => {
            if let Some(c) = cpu {
                loadgen::procs::pin_current_thread(c);
            }
            let mut list = Vec::new();
            for t in &targets {
                let Some((name, u)) = t.split_once('=') else {
                    eprintln!("loadgen: --target wants name=URL, got `{t}`");
                    return ExitCode::from(2);
                };
                let url = match Url::parse(u) {
                    Ok(u) => u,
                    Err(e) => {
                        eprintln!("loadgen: {name}: {e}");
                        return ExitCode::from(2);
                    }
                };
                let pid = pids
                    .iter()
                    .filter_map(|p| p.split_once('='))
                    .find(|(n, _)| *n == name)
                    .and_then(|(_, p)| p.parse().ok());
                let mut spec = match load.spec(&url, name) {
                    Ok(s) => s,
                    Err(e) => {
                        eprintln!("loadgen: {e}");
                        return ExitCode::from(2);
                    }
                };
                spec.progress = false;
                list.push(loadgen::compare::Target {
                    name: name.to_owned(),
                    spec,
                    pid,
                });
            }
            let compared = if together {
                loadgen::compare::compare_together(&list, rounds)
            } else {
                loadgen::compare::compare(&list, rounds)
            };
            match compared {
                Ok(r) => {
                    loadgen::compare::print_table("compare", &r);
                    if let Some(path) = json {
                        let _ = std::fs::write(
                            &path,
                            serde_json::to_string_pretty(&r).unwrap_or_default(),
                        );
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("loadgen: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Cmd::Suite {
            out,
            quick,
            ringway,
            no_nginx,
            gateway_cpu,
            load_cpu,
            rounds,
            run_secs,
            concurrency,
            idle_streams,
            litellm,
        } => {
            let bin = match loadgen::procs::ringway_binary(ringway.as_deref()) {
                Ok(b) => b,
                Err(e) => {
                    eprintln!("loadgen: {e}");
                    return ExitCode::from(2);
                }
            };
            let args = if quick {
                loadgen::suite::SuiteArgs::quick(out, bin)
            } else {
                loadgen::suite::SuiteArgs {
                    out,
                    quick,
                    ringway: bin,
                    nginx: !no_nginx,
                    gateway_cpu: Some(gateway_cpu),
                    load_cpu: Some(load_cpu),
                    rounds,
                    run_secs,
                    concurrency,
                    idle_streams,
                    litellm,
                }
            };
            match loadgen::suite::run_suite(&args) {
                Ok(index) => {
                    println!("suite: wrote {}", args.out.display());
                    if index["fallback_ok"].as_bool() == Some(false) {
                        eprintln!("loadgen: fallback violations found");
                        return ExitCode::from(1);
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("loadgen: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Cmd::Idle {
            builds,
            streams,
            rounds,
            route,
        } => match loadgen::suite::compare_idle(&builds, streams, rounds, route) {
            Ok(rows) => {
                println!(
                    "{:40} {:>8} {:>12} {:>12} {:>11}",
                    "build", "streams", "RSS before", "RSS during", "KiB/stream"
                );
                for (b, v) in rows {
                    println!(
                        "{:40} {:>8} {:>10} K {:>10} K {:>11.2}",
                        b.display(),
                        v["open_upstream_streams"].as_u64().unwrap_or(0),
                        v["rss_before_kib"].as_u64().unwrap_or(0),
                        v["rss_during_kib"].as_u64().unwrap_or(0),
                        v["kib_per_stream"].as_f64().unwrap_or(0.0)
                    );
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("loadgen: {e}");
                ExitCode::from(1)
            }
        },
        Cmd::Fallback {
            phase_secs,
            concurrency,
            workers,
            ringway,
            json,
        } => {
            let bin = match loadgen::procs::ringway_binary(ringway.as_deref()) {
                Ok(b) => b,
                Err(e) => {
                    eprintln!("loadgen: {e}");
                    return ExitCode::from(2);
                }
            };
            let args = loadgen::fallback::FallbackArgs {
                phase: std::time::Duration::from_secs_f64(phase_secs),
                concurrency,
                workers,
                gateway_cpu: None,
            };
            match loadgen::fallback::run_fallback(&bin, &args) {
                Ok(v) => {
                    loadgen::fallback::print_verdicts(&v);
                    if let Some(path) = json {
                        let _ = std::fs::write(
                            &path,
                            serde_json::to_string_pretty(&v).unwrap_or_default(),
                        );
                    }
                    if v.iter().all(|x| x.ok) {
                        ExitCode::SUCCESS
                    } else {
                        eprintln!("loadgen: fallback violations found");
                        ExitCode::from(1)
                    }
                }
                Err(e) => {
                    eprintln!("loadgen: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Cmd::Soak {
            secs,
            concurrency,
            workers,
            ringway,
            no_kafka,
            json,
        } => {
            let bin = match loadgen::procs::ringway_binary(ringway.as_deref()) {
                Ok(b) => b,
                Err(e) => {
                    eprintln!("loadgen: {e}");
                    return ExitCode::from(2);
                }
            };
            let args = loadgen::soak::SoakArgs {
                duration: std::time::Duration::from_secs_f64(secs.max(1.0)),
                concurrency: concurrency.max(1),
                workers: workers.max(1),
                kafka: !no_kafka,
                echo: true,
            };
            match loadgen::soak::run_soak(&bin, &args) {
                Ok(r) => {
                    loadgen::soak::print::print_report(&r);
                    if let Some(path) = json {
                        if let Err(e) = std::fs::write(
                            &path,
                            serde_json::to_string_pretty(&r).unwrap_or_default(),
                        ) {
                            eprintln!("loadgen: cannot write {}: {e}", path.display());
                            return ExitCode::from(2);
                        }
                    }
                    if r.ok {
                        ExitCode::SUCCESS
                    } else {
                        eprintln!("loadgen: soak verdicts violated");
                        ExitCode::from(1)
                    }
                }
                Err(e) => {
                    eprintln!("loadgen: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Cmd::Run { url, load, json } => {
            let url = match Url::parse(&url) {
                Ok(u) => u,
                Err(e) => {
                    eprintln!("loadgen: {e}");
                    return ExitCode::from(2);
                }
            };
            match run_one(&url, &load, "run") {
                Ok(s) => {
                    print_summary("run", &s);
                    if let Some(path) = json {
                        if let Err(e) = std::fs::write(
                            &path,
                            serde_json::to_string_pretty(&s).unwrap_or_default(),
                        ) {
                            eprintln!("loadgen: cannot write {}: {e}", path.display());
                            return ExitCode::from(1);
                        }
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("loadgen: {e}");
                    ExitCode::from(1)
                }
            }
        }
    }
}
