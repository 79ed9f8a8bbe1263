//! Running a load: closed loop (N connections, each sending as soon as
//! its previous answer is in) or open loop (a fixed arrival rate, latency
//! from the due time), for a duration after a warm-up, on one monoio
//! runtime on the calling thread, with an optional live progress line.

use std::cell::{Cell, RefCell};
use std::io::Write;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::client::{Conn, Failure, Outcome};
use crate::pace::Pacer;
use crate::schedule::{latency_from_due, Schedule};
use crate::stats::{histogram, human_us, micros, ErrorClass, Stats};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// This many connections, back to back.
    Closed { concurrency: usize },
    /// This many requests per second, using up to `max_conns` connections.
    Open { rate: f64, max_conns: usize },
}

#[derive(Debug, Clone)]
pub struct RunSpec {
    pub addr: SocketAddr,
    pub request: Bytes,
    pub mode: Mode,
    pub duration: Duration,
    /// Stop after this many measured requests (closed loop), if set.
    pub requests: Option<u64>,
    pub warmup: Duration,
    pub timeout: Duration,
    pub progress: bool,
    pub label: String,
}

#[derive(Debug, Clone)]
pub struct RunResult {
    pub stats: Stats,
    /// The measured window.
    pub elapsed: Duration,
}

/// Shared by the tasks of one run (one thread).
struct Shared {
    stats: RefCell<Stats>,
    /// Latencies since the last progress line.
    window: RefCell<hdrhistogram::Histogram<u64>>,
    measure_from: Instant,
    end: Instant,
    measured: Cell<u64>,
    limit: Option<u64>,
    timeout: Duration,
}

impl Shared {
    fn record(&self, started: Instant, result: Result<Outcome, Failure>, latency: Duration) {
        if started < self.measure_from {
            return;
        }
        self.measured.set(self.measured.get() + 1);
        let mut s = self.stats.borrow_mut();
        match result {
            Err(f) => *s.errors.entry(f.class).or_default() += 1,
            Ok(o) => {
                *s.statuses.entry(o.status).or_default() += 1;
                s.bytes += o.bytes;
                if let Some(i) = &o.instance {
                    *s.instances.entry(i.clone()).or_default() += 1;
                }
                let class = if o.status >= 400 {
                    Some(ErrorClass::Status)
                } else if o.stream && o.error_event {
                    Some(ErrorClass::ErrorEvent)
                } else if o.stream && !o.completed {
                    Some(ErrorClass::Truncated)
                } else {
                    None
                };
                match class {
                    Some(c) => *s.errors.entry(c).or_default() += 1,
                    None => {
                        s.ok += 1;
                        let _ = s.latency.record(micros(latency));
                        let _ = self.window.borrow_mut().record(micros(latency));
                        if let Some(t) = o.ttft {
                            let _ = s.ttft.record(micros(t));
                        }
                        if let Some(us) = o.overhead_us {
                            let _ = s.overhead.record(us);
                        }
                        for gap in &o.itl {
                            let _ = s.itl.record(micros(*gap));
                        }
                    }
                }
            }
        }
    }

    /// How late an open-loop request left, against its due time.
    fn record_lateness(&self, due: Instant, sent: Instant) {
        if due >= self.measure_from {
            let late = sent.saturating_duration_since(due);
            let _ = self.stats.borrow_mut().lateness.record(micros(late));
        }
    }

    fn done(&self) -> bool {
        Instant::now() >= self.end || self.limit.is_some_and(|l| self.measured.get() >= l)
    }
}

/// Runs `spec` to completion on a fresh runtime on this thread.
pub fn run(spec: &RunSpec) -> std::io::Result<RunResult> {
    let mut rt = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .with_entries(4096)
        .build()?;
    rt.block_on(run_async(spec.clone()))
}

async fn run_async(spec: RunSpec) -> std::io::Result<RunResult> {
    let start = Instant::now();
    let measure_from = start + spec.warmup;
    let shared = Rc::new(Shared {
        stats: RefCell::new(Stats::default()),
        window: RefCell::new(histogram()),
        measure_from,
        end: measure_from + spec.duration,
        measured: Cell::new(0),
        limit: spec.requests,
        timeout: spec.timeout,
    });
    if spec.progress {
        monoio::spawn(progress(shared.clone(), spec.label.clone()));
    }
    match spec.mode {
        Mode::Closed { concurrency } => {
            let tasks: Vec<_> = (0..concurrency.max(1))
                .map(|_| {
                    monoio::spawn(closed_worker(
                        shared.clone(),
                        spec.addr,
                        spec.request.clone(),
                    ))
                })
                .collect();
            for t in tasks {
                t.await;
            }
        }
        Mode::Open { rate, max_conns } => {
            open_loop(shared.clone(), &spec, rate, max_conns.max(1)).await
        }
    }
    let measured_until = if spec.requests.is_some() {
        Instant::now()
    } else {
        Instant::now().min(shared.end)
    };
    let elapsed = measured_until.saturating_duration_since(measure_from);
    if spec.progress {
        eprintln!();
    }
    let stats = shared.stats.borrow().clone();
    Ok(RunResult { stats, elapsed })
}

async fn closed_worker(sh: Rc<Shared>, addr: SocketAddr, request: Bytes) {
    let mut conn: Option<Conn> = None;
    while !sh.done() {
        let started = Instant::now();
        let c = match conn.take() {
            Some(c) => c,
            None => match Conn::connect(addr, sh.timeout).await {
                Ok(c) => c,
                Err(f) => {
                    sh.record(started, Err(f), Duration::ZERO);
                    monoio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let mut c = c;
        let result = c.exchange(request.clone(), sh.timeout).await;
        let keep = matches!(&result, Ok(o) if !o.close);
        sh.record(started, result, started.elapsed());
        if keep {
            conn = Some(c);
        }
    }
}

async fn open_loop(sh: Rc<Shared>, spec: &RunSpec, rate: f64, max_conns: usize) {
    let idle: Rc<RefCell<Vec<Conn>>> = Rc::new(RefCell::new(Vec::new()));
    let open = Rc::new(Cell::new(0usize));
    let pacer = match Pacer::new() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("loadgen: cannot pace open-loop arrivals (timerfd: {e})");
            return;
        }
    };
    let schedule = Schedule::new(Instant::now(), rate);
    let mut i = 0u64;
    let mut tasks = Vec::new();
    while !sh.done() {
        let due = schedule.due(i);
        let sent = pacer.wait_until(due).await;
        sh.record_lateness(due, sent);
        i += 1;
        let (sh, idle, open, addr, req) = (
            sh.clone(),
            idle.clone(),
            open.clone(),
            spec.addr,
            spec.request.clone(),
        );
        tasks.push(monoio::spawn(async move {
            // Take an idle connection, open one if allowed, or wait.
            let conn = loop {
                if let Some(c) = idle.borrow_mut().pop() {
                    break Ok(c);
                }
                if open.get() < max_conns {
                    open.set(open.get() + 1);
                    match Conn::connect(addr, sh.timeout).await {
                        Ok(c) => break Ok(c),
                        Err(f) => {
                            open.set(open.get() - 1);
                            break Err(f);
                        }
                    }
                }
                monoio::time::sleep(Duration::from_micros(200)).await;
            };
            let mut c = match conn {
                Ok(c) => c,
                Err(f) => return sh.record(due, Err(f), Duration::ZERO),
            };
            let result = c.exchange(req, sh.timeout).await;
            let keep = matches!(&result, Ok(o) if !o.close);
            sh.record(due, result, latency_from_due(due, Instant::now()));
            if keep {
                idle.borrow_mut().push(c);
            } else {
                open.set(open.get() - 1);
            }
        }));
        if tasks.len() > 4096 {
            let done: Vec<_> = tasks.drain(..2048).collect();
            for t in done {
                t.await;
            }
        }
    }
    for t in tasks {
        t.await;
    }
}

async fn progress(sh: Rc<Shared>, label: String) {
    let started = Instant::now();
    let mut last_total = 0u64;
    while !sh.done() {
        monoio::time::sleep(Duration::from_secs(1)).await;
        let (total, errors) = {
            let s = sh.stats.borrow();
            (s.total(), s.error_count())
        };
        let mut w = sh.window.borrow_mut();
        let (p50, p99) = if w.is_empty() {
            (0, 0)
        } else {
            (w.value_at_quantile(0.5), w.value_at_quantile(0.99))
        };
        w.reset();
        let phase = if Instant::now() < sh.measure_from {
            "warm-up"
        } else {
            "measure"
        };
        eprint!(
            "\r[{label} {:>5.1}s {phase}] {:>8} req/s  errors {:<6} p50 {:<9} p99 {:<9}",
            started.elapsed().as_secs_f64(),
            total - last_total,
            errors,
            human_us(p50),
            human_us(p99)
        );
        let _ = std::io::stderr().flush();
        last_total = total;
    }
}
