//! Running a load: closed loop (N connections, each sending as soon as
//! its previous answer is in) or open loop (a fixed arrival rate, latency
//! from the due time), for a duration after a warm-up, on one monoio
//! runtime on the calling thread, with an optional live progress line.
//!
//! [`run_together`] drives several targets in the same instants: each
//! keeps its own connections and statistics, and open-loop arrivals of
//! all of them are merged into one paced sequence, each target's evenly
//! spaced and offset from the others' (A B C A B C …). A stall of the
//! machine then lands on every target alike, instead of on whichever one
//! happened to be running.

use std::cell::{Cell, RefCell};
use std::io::Write;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::client::{Conn, Failure, Outcome};
use crate::pace::Pacer;
use crate::schedule::{latency_from_due, Schedule};
use crate::stats::{histogram, human_us, micros, ErrorClass, Sample, Stats};

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
        let second = started
            .saturating_duration_since(self.measure_from)
            .as_secs();
        match result {
            Err(f) => {
                s.per_second.entry(second).or_default().count(Some(f.class));
                *s.errors.entry(f.class).or_default() += 1;
                s.sample(Sample {
                    at: started,
                    class: f.class,
                    status: 0,
                    instance: None,
                    detail: f.detail,
                });
            }
            Ok(o) => {
                *s.statuses.entry(o.status).or_default() += 1;
                s.bytes += o.bytes;
                if let Some(i) = &o.instance {
                    *s.instances.entry(i.clone()).or_default() += 1;
                }
                if let Some(n) = o.attempts {
                    *s.attempts.entry(n).or_default() += 1;
                }
                let class = if o.status >= 400 && o.malformed_error {
                    Some(ErrorClass::MalformedError)
                } else if o.status >= 400 {
                    Some(ErrorClass::Status)
                } else if o.stream && o.error_event {
                    Some(ErrorClass::ErrorEvent)
                } else if o.stream && !o.completed {
                    Some(ErrorClass::Truncated)
                } else {
                    None
                };
                s.per_second.entry(second).or_default().count(class);
                match class {
                    Some(c) => {
                        *s.errors.entry(c).or_default() += 1;
                        let _ = s.error_latency.record(micros(latency));
                        if c == ErrorClass::ErrorEvent {
                            if let Some(d) = &o.error_detail {
                                let from = o.instance.as_deref().unwrap_or("-");
                                s.count_error_event(&format!("{from}: {d}"), 1);
                            }
                        }
                        let detail = match &o.error_detail {
                            Some(d) => d.clone(),
                            None => format!(
                                "stream ended without its end marker after {} tokens, {} bytes",
                                o.tokens, o.bytes
                            ),
                        };
                        s.sample(Sample {
                            at: started,
                            class: c,
                            status: o.status,
                            instance: o.instance,
                            detail,
                        });
                    }
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
    let mut results = run_together(std::slice::from_ref(spec))?;
    Ok(results.remove(0))
}

/// Runs all `specs` at once on a fresh runtime on this thread, one result
/// each, in order. Either all are closed loop or all open loop.
pub fn run_together(specs: &[RunSpec]) -> std::io::Result<Vec<RunResult>> {
    let open = specs
        .iter()
        .filter(|s| matches!(s.mode, Mode::Open { .. }))
        .count();
    if open != 0 && open != specs.len() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "targets run together are either all open loop or all closed loop",
        ));
    }
    let mut rt = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .with_entries(4096)
        .build()?;
    rt.block_on(run_async(specs.to_vec()))
}

/// One target of a run: what to send where, and its statistics (cheap to
/// clone: a handle an open-loop request takes along).
#[derive(Clone)]
struct Lane {
    sh: Rc<Shared>,
    addr: SocketAddr,
    request: Bytes,
    /// Open loop: idle connections, how many are open, and the cap.
    idle: Rc<RefCell<Vec<Conn>>>,
    open: Rc<Cell<usize>>,
    max_conns: usize,
}

async fn run_async(specs: Vec<RunSpec>) -> std::io::Result<Vec<RunResult>> {
    let start = Instant::now();
    let lanes: Vec<Lane> = specs
        .iter()
        .map(|spec| {
            let measure_from = start + spec.warmup;
            Lane {
                sh: Rc::new(Shared {
                    stats: RefCell::new(Stats::default()),
                    window: RefCell::new(histogram()),
                    measure_from,
                    end: measure_from + spec.duration,
                    measured: Cell::new(0),
                    limit: spec.requests,
                    timeout: spec.timeout,
                }),
                addr: spec.addr,
                request: spec.request.clone(),
                idle: Rc::new(RefCell::new(Vec::new())),
                open: Rc::new(Cell::new(0)),
                max_conns: match spec.mode {
                    Mode::Open { max_conns, .. } => max_conns.max(1),
                    Mode::Closed { concurrency } => concurrency.max(1),
                },
            }
        })
        .collect();
    for (lane, spec) in lanes.iter().zip(&specs) {
        if spec.progress {
            monoio::spawn(progress(lane.sh.clone(), spec.label.clone()));
        }
    }
    let rates: Vec<f64> = specs
        .iter()
        .filter_map(|s| match s.mode {
            Mode::Open { rate, .. } => Some(rate),
            Mode::Closed { .. } => None,
        })
        .collect();
    if rates.len() == lanes.len() {
        open_loop(&lanes, &rates).await;
    } else {
        let tasks: Vec<_> = lanes
            .iter()
            .flat_map(|lane| {
                (0..lane.max_conns).map(|_| {
                    monoio::spawn(closed_worker(
                        lane.sh.clone(),
                        lane.addr,
                        lane.request.clone(),
                    ))
                })
            })
            .collect();
        for t in tasks {
            t.await;
        }
    }
    let results = lanes
        .iter()
        .zip(&specs)
        .map(|(lane, spec)| {
            let sh = &lane.sh;
            let measured_until = if spec.requests.is_some() {
                Instant::now()
            } else {
                Instant::now().min(sh.end)
            };
            if spec.progress {
                eprintln!();
            }
            RunResult {
                stats: sh.stats.borrow().clone(),
                elapsed: measured_until.saturating_duration_since(sh.measure_from),
            }
        })
        .collect();
    Ok(results)
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

/// Sends every lane's arrivals on its own evenly spaced schedule, the
/// schedules offset so that with equal rates the lanes take turns; each
/// request goes out on a connection of its own lane.
async fn open_loop(lanes: &[Lane], rates: &[f64]) {
    let pacer = match Pacer::new() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("loadgen: cannot pace open-loop arrivals (timerfd: {e})");
            return;
        }
    };
    let now = Instant::now();
    let schedules: Vec<Schedule> = rates
        .iter()
        .enumerate()
        .map(|(i, rate)| {
            let offset = Duration::from_secs_f64(i as f64 / (rate.max(1e-3) * lanes.len() as f64));
            Schedule::new(now + offset, *rate)
        })
        .collect();
    let mut next = vec![0u64; lanes.len()];
    let mut tasks = Vec::new();
    // The lane whose next request is due first, among those still running.
    while let Some(l) = (0..lanes.len())
        .filter(|&l| !lanes[l].sh.done())
        .min_by_key(|&l| schedules[l].due(next[l]))
    {
        let due = schedules[l].due(next[l]);
        next[l] += 1;
        let lane = &lanes[l];
        let sent = pacer.wait_until(due).await;
        lane.sh.record_lateness(due, sent);
        tasks.push(monoio::spawn(send_open(lane.clone(), due)));
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

/// One open-loop request: an idle connection of its lane, a new one if the
/// lane may open more, or a wait for either.
async fn send_open(lane: Lane, due: Instant) {
    let Lane {
        sh,
        addr,
        request: req,
        idle,
        open,
        max_conns,
    } = lane;
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
