//! Active health checks: one thread (`ringway-health`) with its own monoio
//! runtime probes every instance that has `checks.active` (as the
//! configuration lists them through [`Probed`]), and publishes
//! each verdict into the instance's shared [`super::InstanceState`] (one atomic
//! store), which every worker reads without locks. Probing never touches
//! a worker: the request path only loads a flag.
//!
//! The thread follows config changes: on each new snapshot it starts a
//! probe task for every instance with checks it does not probe yet and
//! stops tasks whose instance or check config went away. Verdicts follow
//! APISIX's healthchecker: `healthy.successes` consecutive successes mark
//! an instance healthy; `unhealthy.http_failures` responses with a status
//! in `unhealthy.http_statuses`, `tcp_failures` connect failures or
//! `timeouts` timeouts mark it unhealthy; other statuses count for
//! neither. Healthy instances are probed every `healthy.interval`,
//! unhealthy ones every `unhealthy.interval`. Transitions are logged and
//! counted.

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use ahash::AHashMap;

use super::spec::{ActiveCheck, ProbeType};
use super::InstanceState;
use crate::exchange::ProxyError;
use crate::observe::metrics;
use crate::supervise::signal::Shutdown;
use crate::supervise::{self, fault, Component};
use crate::upstream::endpoint::Endpoint;
use crate::upstream::oneshot::{self, OneShot};
use crate::upstream::{TlsClients, TlsTarget};

/// What the configuration asks to be probed (the snapshot cell implements
/// it), read again whenever its generation changes.
pub trait Probed: Send + Sync + 'static {
    /// Changes with every new configuration.
    fn generation(&self) -> u64;
    /// Every instance with `checks.active`.
    fn instances(&self) -> Vec<ProbedInstance>;
    /// The current configuration's TLS client settings.
    fn tls(&self) -> TlsClients;
}

/// One instance with active checks, as the configuration describes it.
#[derive(Clone)]
pub struct ProbedInstance {
    pub name: Arc<str>,
    /// Its shared state, which survives reloads: the probe's identity too.
    pub state: Arc<InstanceState>,
    pub check: ActiveCheck,
    /// Its endpoint and the URL's host and port (of its chat target, else
    /// its embeddings one); `None` when it has neither.
    pub endpoint: Option<(Arc<Endpoint>, String, u16)>,
}

/// How often the thread looks for a new config snapshot.
const RECONCILE_EVERY: Duration = Duration::from_millis(100);

/// Starts the health-check thread; it exits when `shutdown` triggers.
pub fn start(
    probed: Arc<dyn Probed>,
    shutdown: Arc<Shutdown>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    crate::timer::background_thread("ringway-health", Component::Health, move || {
        run(probed.clone(), shutdown.clone())
    })
}

/// One probed instance.
struct Probe {
    alive: Rc<Cell<bool>>,
    check: ActiveCheck,
}

async fn run(probed: Arc<dyn Probed>, shutdown: Arc<Shutdown>) {
    let mut probes: AHashMap<usize, Probe> = AHashMap::new();
    let mut generation = None;
    while !shutdown.is_triggered() {
        let g = probed.generation();
        if generation != Some(g) {
            generation = Some(g);
            fault(Component::Health);
            reconcile(&probed, &mut probes);
        }
        monoio::time::sleep(RECONCILE_EVERY).await;
    }
    for p in probes.values() {
        p.alive.set(false);
    }
}

/// Starts and stops probe tasks to match the current configuration.
/// Instances are identified by their shared state, which survives
/// reloads, so an unchanged instance keeps its task, counters and verdict.
fn reconcile(probed: &Arc<dyn Probed>, probes: &mut AHashMap<usize, Probe>) {
    let seen: AHashMap<usize, ProbedInstance> = probed
        .instances()
        .into_iter()
        .map(|inst| (Arc::as_ptr(&inst.state) as usize, inst))
        .collect();
    probes.retain(|key, p| {
        let keep = seen.get(key).is_some_and(|inst| inst.check == p.check);
        if !keep {
            p.alive.set(false);
        }
        keep
    });
    for (key, inst) in seen {
        if probes.contains_key(&key) {
            continue;
        }
        let alive = Rc::new(Cell::new(true));
        probes.insert(
            key,
            Probe {
                alive: alive.clone(),
                check: inst.check.clone(),
            },
        );
        let probed = probed.clone();
        monoio::spawn(supervise::task(Component::HealthProbe, move || {
            probe_loop(probed.clone(), inst.clone(), alive.clone())
        }));
    }
}

/// What one probe found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Success,
    HttpFailure(u16),
    /// A status in neither list: counts for nothing.
    Neutral(u16),
    TcpFailure,
    Timeout,
}

/// Consecutive results and the verdict they lead to.
#[derive(Debug, Default)]
struct Tally {
    successes: u32,
    http_failures: u32,
    tcp_failures: u32,
    timeouts: u32,
}

impl Tally {
    /// Records an outcome; returns the new verdict if it changes.
    fn record(&mut self, o: Outcome, healthy: bool, check: &ActiveCheck) -> Option<bool> {
        match o {
            Outcome::Success => {
                *self = Tally {
                    successes: self.successes.saturating_add(1),
                    ..Tally::default()
                };
                (!healthy && self.successes >= check.healthy.successes).then_some(true)
            }
            Outcome::Neutral(_) => None,
            Outcome::HttpFailure(_) => {
                self.successes = 0;
                self.http_failures = self.http_failures.saturating_add(1);
                (healthy && self.http_failures >= check.unhealthy.http_failures).then_some(false)
            }
            Outcome::TcpFailure => {
                self.successes = 0;
                self.tcp_failures = self.tcp_failures.saturating_add(1);
                (healthy && self.tcp_failures >= check.unhealthy.tcp_failures).then_some(false)
            }
            Outcome::Timeout => {
                self.successes = 0;
                self.timeouts = self.timeouts.saturating_add(1);
                (healthy && self.timeouts >= check.unhealthy.timeouts).then_some(false)
            }
        }
    }
}

/// Where and how an instance is probed: the instance's own address, with
/// `checks.active.host` as the Host header and TLS server name.
struct ProbeTarget {
    /// What to connect to: the instance's endpoint (resolved when the
    /// configuration was compiled and kept fresh by the DNS thread, so a
    /// probe never waits for DNS), never `checks.active.host` (APISIX's
    /// healthchecker probes the node's IP with the check's host as
    /// `hostname`)…
    endpoint: Arc<crate::upstream::endpoint::Endpoint>,
    /// … on this port (`checks.active.port`, else the endpoint's).
    port: u16,
    /// The `Host` header: `checks.active.host` as written (as
    /// lua-resty-healthcheck sends it), else the endpoint's authority.
    host_header: String,
    tls: Option<TlsTarget>,
}

fn probe_target(inst: &ProbedInstance) -> Option<ProbeTarget> {
    let check = &inst.check;
    let (endpoint, url_host, url_port) = inst.endpoint.as_ref()?;
    let port = check.port.unwrap_or(*url_port);
    let name = check.host.as_deref().unwrap_or(url_host);
    let host_header = match &check.host {
        Some(h) => h.clone(),
        None => {
            let default_port = if check.kind == ProbeType::Https {
                443
            } else {
                80
            };
            if port == default_port {
                url_host.clone()
            } else {
                format!("{url_host}:{port}")
            }
        }
    };
    let tls = match check.kind {
        ProbeType::Https => Some(TlsTarget {
            sni: Arc::from(name.trim_matches(|c| c == '[' || c == ']')),
            verify: check.https_verify_certificate,
        }),
        ProbeType::Http => None,
        // A TCP probe only connects.
        ProbeType::Tcp => None,
    };
    Some(ProbeTarget {
        endpoint: endpoint.clone(),
        port,
        host_header,
        tls,
    })
}

async fn probe_loop(probed: Arc<dyn Probed>, inst: ProbedInstance, alive: Rc<Cell<bool>>) {
    let check = &inst.check;
    let Some(target) = probe_target(&inst) else {
        tracing::warn!(instance = %inst.name, "health checks skipped: the instance has no endpoint");
        return;
    };
    let mut tally = Tally::default();
    while alive.get() {
        fault(Component::HealthProbe);
        let healthy = inst.state.is_healthy();
        let outcome = probe(&*probed, check, &target).await;
        metrics::HEALTH_PROBES.inc();
        if !alive.get() {
            return;
        }
        if let Some(verdict) = tally.record(outcome, healthy, check) {
            if inst.state.set_healthy(verdict) {
                metrics::HEALTH_TRANSITIONS.inc();
                if verdict {
                    tracing::info!(instance = %inst.name, host = %target.endpoint.host, port = target.port,
                        "instance is healthy again (active check: {outcome:?})");
                } else {
                    tracing::warn!(instance = %inst.name, host = %target.endpoint.host, port = target.port,
                        "instance is unhealthy (active check: {outcome:?})");
                }
            }
        }
        let wait = if inst.state.is_healthy() {
            check.healthy.interval
        } else {
            check.unhealthy.interval
        };
        monoio::time::sleep(wait).await;
    }
}

async fn probe(probed: &dyn Probed, check: &ActiveCheck, t: &ProbeTarget) -> Outcome {
    let Some(addr) = t.endpoint.addr().map(|a| SocketAddr::new(a.ip(), t.port)) else {
        return Outcome::TcpFailure;
    };
    if check.kind == ProbeType::Tcp {
        return match monoio::time::timeout(check.timeout, monoio::net::TcpStream::connect(addr))
            .await
        {
            Ok(Ok(_)) => Outcome::Success,
            Ok(Err(_)) => Outcome::TcpFailure,
            Err(_) => Outcome::Timeout,
        };
    }
    let tls = probed.tls();
    let headers: Vec<(&str, &str)> = check
        .req_headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let req = OneShot {
        addr,
        tls: t.tls.as_ref(),
        method: "GET",
        host: &t.host_header,
        target: &check.http_path,
        headers: &headers,
        body: &[],
        timeout: check.timeout,
    };
    match oneshot::request(&req, &tls).await {
        Ok(a) if check.healthy.http_statuses.contains(&a.status) => Outcome::Success,
        Ok(a) if check.unhealthy.http_statuses.contains(&a.status) => {
            Outcome::HttpFailure(a.status)
        }
        Ok(a) => Outcome::Neutral(a.status),
        Err(ProxyError::ConnectTimeout | ProxyError::UpstreamTimeout) => Outcome::Timeout,
        Err(_) => Outcome::TcpFailure,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check() -> ActiveCheck {
        ActiveCheck::compile(
            &json!({"healthy": {"successes": 2}, "unhealthy": {"http_failures": 3, "tcp_failures": 2, "timeouts": 2}}),
            &crate::config::FieldPath::root(),
        )
        .unwrap()
    }

    #[test]
    fn thresholds_follow_the_check() {
        let c = check();
        let mut t = Tally::default();
        assert_eq!(t.record(Outcome::HttpFailure(500), true, &c), None);
        assert_eq!(t.record(Outcome::Neutral(418), true, &c), None);
        assert_eq!(t.record(Outcome::HttpFailure(500), true, &c), None);
        assert_eq!(t.record(Outcome::HttpFailure(503), true, &c), Some(false));
        assert_eq!(t.record(Outcome::Success, false, &c), None);
        assert_eq!(t.record(Outcome::Success, false, &c), Some(true));
        // A success resets failure streaks.
        assert_eq!(t.record(Outcome::TcpFailure, true, &c), None);
        assert_eq!(t.record(Outcome::Success, true, &c), None);
        assert_eq!(t.record(Outcome::TcpFailure, true, &c), None);
        assert_eq!(t.record(Outcome::TcpFailure, true, &c), Some(false));
        let mut t = Tally::default();
        assert_eq!(t.record(Outcome::Timeout, true, &c), None);
        assert_eq!(t.record(Outcome::Timeout, true, &c), Some(false));
    }
}
