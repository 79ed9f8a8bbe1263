//! Busy polling (`gateway.busy_poll_us`): a worker keeps its core awake
//! while traffic flows and sleeps once it stops, and everything that
//! normally happens when the runtime parks still happens while it polls:
//! deadlines fire, access logs are shipped, a stop request is taken.

#![allow(clippy::unwrap_used, clippy::disallowed_types)]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::ai::{chat_url, instance, InstanceConfig, MockServer, ASK};
use common::{Conn, Gateway};
use serde_json::json;

/// CPU time the process has used (user + system), in clock ticks.
fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces) start at 3.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

fn ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions.
    #[allow(unsafe_code)]
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    t as u64
}

/// Keeps one keep-alive connection busy with a chat request every `gap`
/// until `stop` is set or an answer is not a 200; returns how many
/// succeeded. (The thread panics, harmlessly, if the gateway goes away.)
fn traffic(gw: &Gateway, gap: Duration, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<usize> {
    let addr = gw.addr;
    std::thread::spawn(move || {
        let mut c = Conn::connect(addr);
        let mut ok = 0;
        while !stop.load(Ordering::Relaxed) {
            if c.post_json("/v1/chat/completions", ASK).status != 200 {
                break;
            }
            ok += 1;
            std::thread::sleep(gap);
        }
        ok
    })
}

#[test]
fn a_polling_worker_fires_deadlines_ships_logs_and_stops() {
    polling_worker_behaves(Vec::new());
}

/// The same on the epoll driver (no io_uring), where each round of the
/// runtime's loop is an `epoll_wait` with a zero timeout.
#[test]
fn the_same_on_the_epoll_driver() {
    polling_worker_behaves(vec![("MONOIO_FORCE_LEGACY_DRIVER".into(), "1".into())]);
}

fn polling_worker_behaves(env: Vec<(String, String)>) {
    let m = MockServer::builder()
        .instance(InstanceConfig::new("fast").tokens(4))
        .instance(InstanceConfig::new("slow").ttft(Duration::from_secs(10)))
        .spawn()
        .unwrap();
    let logs = tempfile::tempdir().unwrap();
    let log_path = logs.path().join("access.log");
    let mut gw = Gateway::start_json_env(
        json!({
            // One worker, so the background traffic keeps the very worker
            // that serves the request under test polling; a 100 ms window
            // with a request every 2 ms never lets it sleep.
            "gateway": {"workers": 1, "busy_poll_us": 100_000,
                        "access_log": {"path": log_path.to_str().unwrap()}},
            "services": [{
                "name": "ai",
                "routes": [
                    {"name": "fast", "uris": ["/v1/chat/completions"],
                     "plugins": {"ai-proxy-multi": {"instances": [
                         instance("fast", 1, &chat_url(&m, "fast"), "m")]}}},
                    {"name": "slow", "uris": ["/slow/v1/chat/completions"],
                     "plugins": {"ai-proxy-multi": {"timeout": 300, "instances": [
                         instance("slow", 1, &chat_url(&m, "slow"), "m")]}}},
                ],
            }],
        }),
        env,
    );
    let stop = Arc::new(AtomicBool::new(false));
    let bg = traffic(&gw, Duration::from_millis(2), stop.clone());
    std::thread::sleep(Duration::from_millis(200));

    // The worker polls: it stays on its CPU between requests.
    let (t0, c0) = (Instant::now(), cpu_ticks(gw.pid()));
    std::thread::sleep(Duration::from_secs(1));
    let busy = (cpu_ticks(gw.pid()) - c0) as f64
        / (t0.elapsed().as_secs_f64() * ticks_per_second() as f64);
    assert!(
        busy > 0.25,
        "a polling worker should stay on its CPU ({busy:.2})"
    );

    // A deadline on the polling worker fires on time (the attempt's 300 ms
    // timeout), not when the traffic stops.
    let started = Instant::now();
    let r = Conn::connect(gw.addr).post_json("/slow/v1/chat/completions", ASK);
    assert_eq!(r.status, 504, "{}", r.text());
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the timeout waited for the polling to end: {:?}",
        started.elapsed()
    );
    assert!(!bg.is_finished(), "traffic must still be flowing");

    // Access-log lines are shipped while it polls.
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut lines = 0;
    while Instant::now() < deadline && lines == 0 {
        std::thread::sleep(Duration::from_millis(50));
        lines = std::fs::read_to_string(&log_path).map_or(0, |s| s.lines().count());
    }
    assert!(lines > 0, "no access-log line shipped while polling");
    assert!(!bg.is_finished(), "traffic must still be flowing");

    // Traffic stops: after the window the worker sleeps again.
    stop.store(true, Ordering::Relaxed);
    let served = bg.join().unwrap();
    assert!(served > 100, "{served}");
    std::thread::sleep(Duration::from_millis(300));
    let (t0, c0) = (Instant::now(), cpu_ticks(gw.pid()));
    std::thread::sleep(Duration::from_secs(1));
    let idle = (cpu_ticks(gw.pid()) - c0) as f64
        / (t0.elapsed().as_secs_f64() * ticks_per_second() as f64);
    assert!(idle < 0.1, "an idle worker must not poll ({idle:.2})");

    // A stop request is taken while it polls.
    let stop = Arc::new(AtomicBool::new(false));
    let bg = traffic(&gw, Duration::from_millis(2), stop.clone());
    std::thread::sleep(Duration::from_millis(300));
    let signalled = Instant::now();
    gw.signal(libc::SIGTERM);
    assert_eq!(gw.wait(Duration::from_secs(10)), Some(0));
    assert!(
        signalled.elapsed() < Duration::from_secs(5),
        "{:?}",
        signalled.elapsed()
    );
    stop.store(true, Ordering::Relaxed);
    let _ = bg.join();
}
