//! The `ringway` binary: parse the command line, load and validate the
//! configuration, start the workers, wait for a signal, drain, exit.
//!
//! Exit codes: 0 after a clean shutdown or a successful `--check`, 1 when
//! the gateway cannot start (a port in use, say), 2 for an invalid
//! configuration (nothing is started).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// mimalloc: per-thread free lists suit thread-per-core workers that
/// allocate and free on the same thread (results/allocator.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// What `ringway --version` says: the version and the commit.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("RINGWAY_COMMIT"),
    ")"
);

/// What `ringway --help` adds after the options.
const AFTER_HELP: &str = "\
Ports (defaults; set in the file's `gateway:` section):
  0.0.0.0:9080    proxy (gateway.listen)
  127.0.0.1:9180  Admin API (gateway.admin.listen; off on a data plane)
  127.0.0.1:9091  Prometheus metrics (gateway.metrics.listen)
  127.0.0.1:7085  Status API /status, /status/ready (gateway.status.listen)

Exit codes:
  0  clean shutdown, or a valid configuration with --check
  1  cannot start (a port in use, etcd unreachable with no last good configuration)
  2  invalid configuration (the message names the file and the field)

Signals:
  SIGTERM, SIGINT  stop accepting, drain in-flight requests (gateway.timeouts.drain), exit 0;
                   a second one exits at once
  SIGHUP           re-read the configuration files (also re-read when one changes)

Configuration:
  ${VAR} and ${VAR:=default} in the file are replaced from the environment
  (APISIX's ${{VAR}} too; $${ is a literal ${); an unset variable without a
  default is an error naming it.
  RINGWAY_IO_DRIVER=epoll runs the workers on epoll instead of io_uring.";

/// LLM edge gateway: ai-proxy-multi on a thread-per-core io_uring engine.
#[derive(Parser, Debug)]
#[command(name = "ringway", version = VERSION, about, long_about = None, after_help = AFTER_HELP)]
struct Cli {
    /// Configuration file: ADC-format YAML (`services`, `consumers`,
    /// `global_rules`, `plugin_metadata`) plus an optional `gateway:`
    /// section, or Kubernetes manifests (APISIX CRDs, Gateway API
    /// HTTPRoute, Secrets; docs/kubernetes.md). Repeat to combine one ADC
    /// file with files of manifests.
    #[arg(
        short = 'c',
        long = "config",
        value_name = "FILE",
        default_value = "conf/ringway.yaml"
    )]
    config: Vec<PathBuf>,

    /// Only validate the configuration: exit 0 if valid, 2 if not.
    #[arg(long)]
    check: bool,

    /// Log level for the error log on stderr (`RUST_LOG` overrides).
    #[arg(long, value_name = "LEVEL", default_value = "info")]
    log_level: String,
}

#[allow(clippy::print_stdout, clippy::print_stderr)]
fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cli.log_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        // A log line that cannot be written (whoever read stderr is gone)
        // is lost quietly: reporting it would panic on the same broken
        // pipe, in whichever thread logged — the signal thread included.
        .log_internal_errors(false)
        .init();

    ringway::server::rlimit::raise_nofile();
    let loaded = match ringway::snapshot::load_files(&cli.config) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("ringway: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    if cli.check {
        println!(
            "ringway: configuration {} is valid ({} routes)",
            cli.config
                .iter()
                .map(|c| c.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            loaded.snapshot.routes.len()
        );
        return ExitCode::SUCCESS;
    }
    let drain = loaded.gateway.timeouts.drain;
    let running = match ringway::server::start(loaded) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ringway: cannot start: {e}");
            return ExitCode::from(1);
        }
    };
    if let Err(e) = ringway::server::install_signal_handlers(running.shutdown.clone(), drain) {
        eprintln!("ringway: cannot install signal handlers: {e}");
        return ExitCode::from(1);
    }
    ringway::server::announce(&running);
    running.join();
    tracing::info!("ringway stopped");
    ExitCode::SUCCESS
}
