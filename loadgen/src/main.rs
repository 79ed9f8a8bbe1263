//! The `loadgen` binary.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
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
}

#[allow(clippy::print_stdout, clippy::print_stderr)]
fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
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
