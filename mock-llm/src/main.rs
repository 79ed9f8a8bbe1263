//! The `mock-llm` binary: serves one or more named mock instances.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

/// The same allocator as ringway, so the mock stays far from being the
/// bottleneck of a benchmark.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use mock_llm::{Dist, InstanceConfig, MockServer};

const AFTER_HELP: &str = "\
Endpoints (matched by path suffix, so any prefix works):
  POST …/chat/completions     OpenAI chat (JSON, or SSE with \"stream\": true)
  POST …/embeddings           OpenAI embeddings (float or base64)
  POST …/messages             Anthropic Messages (JSON or SSE)
  POST …/responses            OpenAI Responses API (JSON, or its SSE events with \"stream\": true)
  GET|DELETE …/responses/{id} a response this instance stored (as an account does);
                              also …/{id}/input_items, POST …/{id}/cancel; previous_response_id
                              it does not hold: 400 previous_response_not_found
  POST …/conversations        Conversations API (stored per instance; GET/POST/DELETE …/{id},
                              GET/POST …/{id}/items); a response's `conversation` it does
                              not hold: 404
  GET  …/models               model list
  GET  /health, /healthz      health (status settable via health_status)
  POST /oauth2/token          Google OAuth2 JWT-bearer grant (for auth.gcp)
  Azure paths /openai/deployments/{d}/… require ?api-version=…

Test endpoints (not counted or recorded):
  GET /_stats                 counters: requests by status, tokens, open streams, faults, connections
  GET /_requests              last requests (method, path, query, headers, body); DELETE clears
  GET /_control               current faults
  POST /_control              set faults, e.g. {\"status\":429,\"retry_after\":2,\"for_secs\":30},
                              {\"fail_rate\":0.5,\"status\":503}, {\"reset_before_response\":true},
                              {\"reset_after_chunks\":3}, {\"stall_ms\":5000,\"stall_after_chunks\":2},
                              {\"refuse_for_secs\":5}, {\"slow_read_bps\":1000},
                              {\"ttft_ms\":100,\"itl_ms\":10,\"tokens\":50}, {\"health_status\":503}, {\"clear\":true}

Per-request headers (override instance settings):
  x-mock-status, x-mock-fail-rate, x-mock-retry-after, x-mock-ttft-ms, x-mock-itl-ms,
  x-mock-tokens, x-mock-reset-after-chunks, x-mock-reset-before-response,
  x-mock-stall-ms, x-mock-stall-after-chunks, x-mock-slow-read-bps,
  x-mock-omit-done (end chat streams without data: [DONE]),
  x-mock-json-style (compact, python: json.dumps spacing, pretty: indented)

Prompt tokens: 1 per whitespace-separated word of text content, +4 per message
(and +4 for an Anthropic system prompt, or per Responses input item and
for its instructions). Completion: N tokens (capped by max_tokens /
max_completion_tokens / max_output_tokens), one SSE chunk each.";

/// OpenAI/Anthropic-compatible mock LLM upstream with scripted latency and chaos.
#[derive(Parser, Debug)]
#[command(name = "mock-llm", version, about, after_help = AFTER_HELP)]
struct Cli {
    /// Address of an instance (repeat for several instances).
    #[arg(long = "listen", value_name = "ADDR")]
    listen: Vec<SocketAddr>,
    /// Name of the instance at the same position as its --listen (default mock-0, mock-1, …).
    #[arg(long = "name", value_name = "NAME")]
    name: Vec<String>,
    /// A YAML or JSON file: `instances: [{name, listen, ttft: {kind: fixed, ms: 100}, tokens, …}]`.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Worker threads (each serves every instance).
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Time to first token, milliseconds.
    #[arg(long, default_value_t = 0.0)]
    ttft_ms: f64,
    /// Delay between tokens, milliseconds.
    #[arg(long, default_value_t = 0.0)]
    itl_ms: f64,
    /// Jitter: draw TTFT and inter-token delays from a log-normal around the given values with this sigma.
    #[arg(long)]
    jitter_sigma: Option<f64>,
    /// Completion tokens per answer.
    #[arg(long, default_value_t = 16)]
    tokens: u32,
    /// Expected API key (Authorization: Bearer, api-key or x-api-key); others get 401.
    #[arg(long)]
    api_key: Option<String>,
    /// Seed for fail rates and jitter.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Requests kept for GET /_requests.
    #[arg(long, default_value_t = 1000)]
    max_recorded: usize,
    /// Spell answers and stream events' JSON as `python` (json.dumps's
    /// ", " and ": ") or `pretty` (indented; several data: lines per event),
    /// as other OpenAI-compatible servers do (default: compact).
    #[arg(long, value_name = "STYLE")]
    json_style: Option<mock_llm::JsonStyle>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    instances: Vec<InstanceConfig>,
}

#[allow(clippy::print_stdout, clippy::print_stderr)]
fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut instances: Vec<InstanceConfig> = Vec::new();
    if let Some(path) = &cli.config {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("mock-llm: cannot read {}: {e}", path.display());
                return ExitCode::from(2);
            }
        };
        match serde_yaml_ng::from_str::<FileConfig>(&text) {
            Ok(f) => instances.extend(f.instances),
            Err(e) => {
                eprintln!("mock-llm: {}: {e}", path.display());
                return ExitCode::from(2);
            }
        }
    }
    if cli.name.len() > cli.listen.len() {
        eprintln!("mock-llm: more --name than --listen");
        return ExitCode::from(2);
    }
    let dist = |ms: f64| match cli.jitter_sigma {
        Some(sigma) if ms > 0.0 => Dist::Lognormal {
            median_ms: ms,
            sigma,
        },
        _ => Dist::Fixed { ms },
    };
    for (i, addr) in cli.listen.iter().enumerate() {
        let name = cli
            .name
            .get(i)
            .cloned()
            .unwrap_or_else(|| format!("mock-{i}"));
        instances.push(InstanceConfig {
            name,
            listen: *addr,
            ttft: dist(cli.ttft_ms),
            itl: dist(cli.itl_ms),
            tokens: cli.tokens,
            api_key: cli.api_key.clone(),
            seed: cli.seed.wrapping_add(i as u64),
            max_recorded: cli.max_recorded,
            faults: mock_llm::Faults {
                json_style: cli.json_style,
                ..Default::default()
            },
            ..Default::default()
        });
    }
    if instances.is_empty() {
        instances.push(InstanceConfig {
            name: "mock-0".into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 18001)),
            ttft: dist(cli.ttft_ms),
            itl: dist(cli.itl_ms),
            tokens: cli.tokens,
            api_key: cli.api_key.clone(),
            seed: cli.seed,
            max_recorded: cli.max_recorded,
            faults: mock_llm::Faults {
                json_style: cli.json_style,
                ..Default::default()
            },
            ..Default::default()
        });
    }
    let mut builder = MockServer::builder().workers(cli.workers);
    for i in instances {
        builder = builder.instance(i);
    }
    let mut server = match builder.spawn() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("mock-llm: cannot start: {e}");
            return ExitCode::from(1);
        }
    };
    for h in server.instances() {
        println!("mock-llm: instance {} listening on {}", h.name(), h.addr());
    }
    let term = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        if let Err(e) = signal_hook::flag::register(sig, term.clone()) {
            eprintln!("mock-llm: cannot install signal handler: {e}");
        }
    }
    while !term.load(std::sync::atomic::Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
    }
    server.shutdown();
    ExitCode::SUCCESS
}
