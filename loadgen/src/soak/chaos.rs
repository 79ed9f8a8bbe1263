//! The soak's chaos schedule: two tracks of trouble, each a thread that
//! cycles through its events for as long as the load runs, every event
//! followed by a calm gap, everything undone when the soak stops.
//!
//! Instance track (mock-llm `a`, `b`, `c`; at most one instance in trouble
//! at a time, except in the short "all failing" event, so a fallback
//! always exists):
//!
//! | event | what the mock does |
//! |---|---|
//! | 429 storm | `a` answers 429 with `Retry-After: 2` |
//! | 5xx bursts | `b` fails half its requests with 500 / 502 / 503 |
//! | reset before response | `c` resets each connection before answering |
//! | reset mid-stream | `a` resets streams after 3 chunks |
//! | stall mid-stream | `b` stalls streams after 2 chunks for 20 s (past the route's `timeout`) |
//! | slow first token | `c` waits 5 s before the first token (past `timeout`) |
//! | slow drip | `a` sends 40 tokens 400 ms apart (streams outlive `max_stream_duration_ms`) |
//! | instance killed | `c` stops listening and resets its open connections, then comes back |
//! | all failing | `a` 429, `b` 503, `c` resets, for a short while: the answer is a 502/503 |
//!
//! Infrastructure track: Redis killed (SIGKILL) and restarted empty; the
//! log sink down and up; the Kafka broker killed and restarted (when
//! `tansu` is installed).
//!
//! Every event is written to the [`EventLog`] with its time since the
//! load started, and printed to stderr.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use mock_llm::{Faults, MockServer};
use serde::Serialize;

use super::kafka::Broker;
use super::redis::Redis;
use super::sink::LogSink;

/// One thing the soak did.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Seconds since the load started.
    pub at: f64,
    /// What kind (the figures count them by kind).
    pub kind: String,
    pub detail: String,
    /// It failed (a restart that did not come back, say).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Events in order, shared by the tracks.
pub struct EventLog {
    start: Instant,
    events: Mutex<Vec<Event>>,
    /// Print chaos events to stderr as they happen.
    echo: bool,
}

impl EventLog {
    pub fn new(start: Instant, echo: bool) -> EventLog {
        EventLog {
            start,
            events: Mutex::new(Vec::new()),
            echo,
        }
    }

    pub fn start(&self) -> Instant {
        self.start
    }

    pub fn push(&self, kind: &str, detail: String, error: Option<String>) {
        let at = self.start.elapsed().as_secs_f64();
        #[allow(clippy::print_stderr)]
        // Admin changes come every few seconds: only refusals are news.
        if self.echo && (kind != "admin change" || error.is_some()) {
            match &error {
                None => eprintln!("soak {at:>7.1}s  {kind}: {detail}"),
                Some(e) => eprintln!("soak {at:>7.1}s  {kind}: {detail} FAILED: {e}"),
            }
        }
        if let Ok(mut ev) = self.events.lock() {
            ev.push(Event {
                at,
                kind: kind.to_owned(),
                detail,
                error,
            });
        }
    }

    pub fn events(&self) -> Vec<Event> {
        self.events.lock().map(|e| e.clone()).unwrap_or_default()
    }

    /// Events by kind (errors included).
    pub fn counts(&self) -> BTreeMap<String, u64> {
        let mut m = BTreeMap::new();
        for e in self.events() {
            *m.entry(e.kind).or_default() += 1;
        }
        m
    }

    pub fn errors(&self) -> Vec<Event> {
        self.events()
            .into_iter()
            .filter(|e| e.error.is_some())
            .collect()
    }
}

/// Sleeps `d` unless `stop` is set first; false when stopped.
pub fn nap(stop: &AtomicBool, d: Duration) -> bool {
    let end = Instant::now() + d;
    while Instant::now() < end {
        if stop.load(Ordering::Acquire) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(25).min(end - Instant::now()));
    }
    !stop.load(Ordering::Acquire)
}

/// The instance events, in the order they run.
pub const INSTANCE_EVENTS: [&str; 9] = [
    "429 storm",
    "5xx bursts",
    "reset before response",
    "reset mid-stream",
    "stall mid-stream",
    "slow first token",
    "slow drip",
    "instance killed",
    "all failing",
];

/// The infrastructure events, in the order they run.
pub const INFRA_EVENTS: [&str; 3] = ["redis killed", "log sink down", "kafka broker killed"];

fn faults(f: impl FnOnce(&mut Faults)) -> Faults {
    let mut x = Faults::default();
    f(&mut x);
    x
}

/// Runs the instance track until `stop`: each event for 70% of `slot`,
/// then calm for the rest.
pub fn instance_track(m: &MockServer, slot: Duration, stop: &AtomicBool, log: &EventLog) {
    let on = slot.mul_f64(0.7);
    let calm = slot - on;
    let mut round = 0usize;
    'cycle: loop {
        for kind in INSTANCE_EVENTS {
            let hold = if kind == "all failing" {
                ALL_FAILING
            } else {
                on
            };
            let detail = start_instance_event(m, kind, round);
            log.push(
                kind,
                format!("{detail}, for {:.1} s", hold.as_secs_f64()),
                None,
            );
            let held = nap(stop, hold);
            end_instance_event(m, kind);
            if !held || !nap(stop, calm) {
                break 'cycle;
            }
        }
        round += 1;
    }
    // Whatever was interrupted is undone.
    for i in m.instances() {
        i.clear_faults();
        i.start_listening();
    }
}

/// How long every instance fails at once.
const ALL_FAILING: Duration = Duration::from_secs(2);

/// Sets `kind`'s faults; says what it did.
fn start_instance_event(m: &MockServer, kind: &str, round: usize) -> String {
    match kind {
        "429 storm" => {
            m.instance("a").set_faults(faults(|f| {
                f.status = Some(429);
                f.retry_after = Some(2);
            }));
            "a answers 429, Retry-After: 2".into()
        }
        "5xx bursts" => {
            let status = [500, 502, 503][round % 3];
            m.instance("b").set_faults(faults(|f| {
                f.status = Some(status);
                f.fail_rate = Some(0.5);
            }));
            format!("b fails half its requests with {status}")
        }
        "reset before response" => {
            m.instance("c")
                .set_faults(faults(|f| f.reset_before_response = Some(true)));
            "c resets every connection before answering".into()
        }
        "reset mid-stream" => {
            m.instance("a")
                .set_faults(faults(|f| f.reset_after_chunks = Some(3)));
            "a resets streams after 3 chunks".into()
        }
        "stall mid-stream" => {
            m.instance("b").set_faults(faults(|f| {
                f.stall_ms = Some(20_000);
                f.stall_after_chunks = Some(2);
            }));
            "b stalls streams for 20 s after 2 chunks".into()
        }
        "slow first token" => {
            m.instance("c")
                .set_faults(faults(|f| f.ttft_ms = Some(5_000)));
            "c waits 5 s before the first token".into()
        }
        "slow drip" => {
            m.instance("a").set_faults(faults(|f| {
                f.itl_ms = Some(400);
                f.tokens = Some(40);
            }));
            "a sends 40 tokens 400 ms apart".into()
        }
        "instance killed" => {
            let c = m.instance("c");
            // Open connections die with the process: reset them too.
            c.set_faults(faults(|f| f.reset_before_response = Some(true)));
            c.stop_listening();
            "c stops listening and resets open connections".into()
        }
        "all failing" => {
            m.instance("a").set_faults(faults(|f| {
                f.status = Some(429);
                f.retry_after = Some(1);
            }));
            m.instance("b").set_faults(faults(|f| f.status = Some(503)));
            m.instance("c")
                .set_faults(faults(|f| f.reset_before_response = Some(true)));
            "a 429, b 503, c resets".into()
        }
        _ => String::new(),
    }
}

fn end_instance_event(m: &MockServer, kind: &str) {
    match kind {
        "instance killed" => {
            let c = m.instance("c");
            c.clear_faults();
            c.start_listening();
        }
        _ => {
            for i in m.instances() {
                i.clear_faults();
            }
        }
    }
}

/// What the infrastructure track takes down.
pub struct Infra<'a> {
    pub redis: &'a mut Redis,
    pub sink: &'a mut LogSink,
    pub kafka: Option<&'a mut Broker>,
}

/// Runs the infrastructure track until `stop`: each event for 60% of
/// `slot`, then up again for the rest.
pub fn infra_track(infra: Infra<'_>, slot: Duration, stop: &AtomicBool, log: &EventLog) {
    let Infra {
        redis,
        sink,
        mut kafka,
    } = infra;
    let down = slot.mul_f64(0.6);
    let up = slot - down;
    'cycle: loop {
        for kind in INFRA_EVENTS {
            let detail = match kind {
                "redis killed" => {
                    redis.kill();
                    format!("redis-server on port {} killed (SIGKILL)", redis.port)
                }
                "log sink down" => {
                    sink.down();
                    "log sink closed its listener and connections".into()
                }
                _ => match kafka.as_deref_mut() {
                    Some(k) => {
                        k.kill();
                        format!("tansu on port {} killed", k.port)
                    }
                    None => continue,
                },
            };
            log.push(
                kind,
                format!("{detail}, for {:.1} s", down.as_secs_f64()),
                None,
            );
            let held = nap(stop, down);
            bring_back(kind, redis, sink, kafka.as_deref_mut(), held, log);
            if !held || !nap(stop, up) {
                break 'cycle;
            }
        }
    }
}

/// Undoes `kind`; with `under_load`, also says how soon ringway used a
/// restarted Redis again.
fn bring_back(
    kind: &str,
    redis: &mut Redis,
    sink: &mut LogSink,
    kafka: Option<&mut Broker>,
    under_load: bool,
    log: &EventLog,
) {
    let (what, result) = match kind {
        "redis killed" => {
            let r = redis.restart();
            let used = if under_load && r.is_ok() {
                redis.wait_for_use(Duration::from_secs(10))
            } else {
                None
            };
            let detail = match (&r, used) {
                (Ok(()), _) if !under_load => "on the same port (the load is over)".to_owned(),
                (Err(_), _) => "on the same port".to_owned(),
                (Ok(()), Some(d)) => format!(
                    "on the same port; ringway used it again after {:.2} s",
                    d.as_secs_f64()
                ),
                (Ok(()), None) => "on the same port; ringway did not use it within 10 s".into(),
            };
            log.push("redis restarted", detail, r.err());
            return;
        }
        "log sink down" => ("log sink up", sink.up()),
        _ => match kafka {
            Some(k) => ("kafka broker restarted", k.restart()),
            None => return,
        },
    };
    log.push(what, "on the same port".into(), result.err());
}
