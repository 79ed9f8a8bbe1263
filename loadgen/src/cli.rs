//! The `loadgen run` command line: one load against one target, a summary
//! on stdout, optionally the full JSON (with raw histograms).

use std::time::Duration;

use clap::Args;

use crate::run::{run, Mode, RunSpec};
use crate::stats::{human_us, Percentiles, Summary};
use crate::workload::{parse_header, Template, Url, Workload};

/// Shared load options.
#[derive(Args, Debug, Clone)]
pub struct LoadArgs {
    /// Connections sending back to back (closed loop).
    #[arg(short = 'c', long, default_value_t = 32)]
    pub concurrency: usize,
    /// Requests per second (open loop; latency measured from the due time).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Most connections in open-loop mode.
    #[arg(long, default_value_t = 1024)]
    pub max_conns: usize,
    /// Measured time, seconds.
    #[arg(short = 'd', long, default_value_t = 10.0)]
    pub duration: f64,
    /// Stop after this many measured requests instead.
    #[arg(short = 'n', long)]
    pub requests: Option<u64>,
    /// Warm-up before measuring, seconds.
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Per-request timeout, seconds.
    #[arg(long, default_value_t = 30.0)]
    pub timeout: f64,
    #[arg(long, value_enum, default_value_t = Template::Chat)]
    pub template: Template,
    /// Ask for a streamed answer.
    #[arg(long)]
    pub stream: bool,
    /// Words in the prompt.
    #[arg(long, default_value_t = 16)]
    pub prompt_words: usize,
    /// Send this file's JSON object as the body instead of the template's
    /// (e.g. `benches/payloads/agent-32k.json`); `--stream` and
    /// `--max-tokens` still apply, the template gives the default path.
    #[arg(long, value_name = "FILE")]
    pub body: Option<String>,
    #[arg(long, default_value = "gpt-4o-mini")]
    pub model: String,
    #[arg(long)]
    pub max_tokens: Option<u32>,
    /// Extra request header, `Name: value` (repeatable).
    #[arg(short = 'H', long = "header")]
    pub headers: Vec<String>,
    /// No live progress line.
    #[arg(short, long)]
    pub quiet: bool,
}

impl LoadArgs {
    pub fn workload(&self) -> Result<Workload, String> {
        Ok(Workload {
            template: self.template,
            stream: self.stream,
            prompt_words: self.prompt_words,
            model: self.model.clone(),
            max_tokens: self.max_tokens,
            headers: self
                .headers
                .iter()
                .map(|h| parse_header(h))
                .collect::<Result<_, _>>()?,
            body: self
                .body
                .as_deref()
                .map(Workload::body_from_file)
                .transpose()?,
        })
    }

    pub fn spec(&self, url: &Url, label: &str) -> Result<RunSpec, String> {
        let w = self.workload()?;
        Ok(RunSpec {
            addr: url.addr,
            request: w.request(url),
            mode: match self.rate {
                Some(rate) => Mode::Open {
                    rate,
                    max_conns: self.max_conns,
                },
                None => Mode::Closed {
                    concurrency: self.concurrency,
                },
            },
            duration: Duration::from_secs_f64(self.duration),
            requests: self.requests,
            warmup: Duration::from_secs_f64(self.warmup),
            timeout: Duration::from_secs_f64(self.timeout),
            progress: !self.quiet,
            label: label.to_owned(),
        })
    }
}

/// Runs one load and returns its summary.
pub fn run_one(url: &Url, args: &LoadArgs, label: &str) -> Result<Summary, String> {
    let spec = args.spec(url, label)?;
    let r = run(&spec).map_err(|e| e.to_string())?;
    Ok(r.stats.summary(r.elapsed))
}

/// A few lines for people.
/// One "label p50 … p99 … max … (note)" line of a summary.
fn print_tail(label: &str, t: &Percentiles, note: &str) {
    println!(
        "  {label} p50 {}  p99 {}  max {}  ({note})",
        human_us(t.p50),
        human_us(t.p99),
        human_us(t.max)
    );
}

pub fn print_summary(label: &str, s: &Summary) {
    println!(
        "{label}: {} ok / {} requests in {:.1}s = {:.0} req/s; errors {:?}",
        s.ok, s.requests, s.seconds, s.rps, s.errors
    );
    let l = &s.latency;
    println!(
        "  latency  p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
        human_us(l.p50),
        human_us(l.p90),
        human_us(l.p99),
        human_us(l.p999),
        human_us(l.max)
    );
    if let Some(t) = &s.ttft {
        println!(
            "  ttft     p50 {}  p90 {}  p99 {}  max {}",
            human_us(t.p50),
            human_us(t.p90),
            human_us(t.p99),
            human_us(t.max)
        );
    }
    if let Some(t) = &s.itl {
        println!(
            "  itl      p50 {}  p90 {}  p99 {}  max {}",
            human_us(t.p50),
            human_us(t.p90),
            human_us(t.p99),
            human_us(t.max)
        );
    }
    if let Some(t) = &s.lateness {
        print_tail("sent late", t, "open-loop pacing against the schedule");
    }
    if let Some(t) = &s.overhead {
        print_tail("gateway ", t, "its own time, X-Ringway-Overhead-Us");
    }
    if let Some(t) = &s.error_latency {
        print_tail("errors  ", t, "error statuses and stream error events");
    }
    if !s.instances.is_empty() {
        println!("  instances {:?}", s.instances);
    }
}
