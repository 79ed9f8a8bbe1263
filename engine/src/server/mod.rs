//! The server: binds listeners, starts one pinned worker per core, installs
//! signal handling and drains on shutdown. [`conn`] owns the per-connection
//! loop (read a head, route, run the rewrite phase, call the route's
//! handler and see "done" or "stream"), [`worker`] the per-core runtime and what it owns (its
//! [`crate::lane::Lane`], snapshot, log queues), [`listen`] socket setup.
//! Shutdown plumbing is [`crate::supervise::signal`]'s, the gateway's own
//! responses [`crate::exchange::reply`]'s.

pub mod conn;
pub mod cpus;
pub mod listen;
pub mod rlimit;
pub mod tls;
pub mod worker;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::snapshot::{Loaded, SnapshotCell};
use crate::supervise::signal::Shutdown;
use listen::{Bound, ListenerKind};
use worker::WorkerShared;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("cannot start worker thread: {0}")]
    Thread(std::io::Error),
}

/// A started gateway: its bound addresses and the handle to stop it.
pub struct Running {
    pub proxy_addrs: Vec<SocketAddr>,
    pub admin_addr: Option<SocketAddr>,
    pub metrics_addr: Option<SocketAddr>,
    /// The Status API (`/status`, `/status/ready`).
    pub status_addr: Option<SocketAddr>,
    pub tls_addrs: Vec<SocketAddr>,
    pub cell: Arc<SnapshotCell>,
    pub shutdown: Arc<Shutdown>,
    threads: Vec<std::thread::JoinHandle<()>>,
    log: Option<(Arc<crate::observe::AccessLog>, std::thread::JoinHandle<()>)>,
}

/// How long shutdown waits for logger plugins to send what they hold.
const LOGGER_CLOSE: std::time::Duration = std::time::Duration::from_secs(5);

impl Running {
    /// Waits for every worker to finish (after shutdown and drain).
    pub fn join(self) {
        for t in self.threads {
            // Workers are supervised: a panic restarts the run, never
            // reaches the join.
            let _ = t.join();
        }
        // Every worker has shipped its last lines: let the writer finish.
        if let Some((log, t)) = self.log {
            log.close();
            let _ = t.join();
        }
        // And the logger plugins send what they still hold.
        let deadline = std::time::Instant::now() + LOGGER_CLOSE;
        self.cell.load().shared.close_loggers(deadline);
    }
}

/// Binds every listener and starts the workers.
pub fn start(loaded: Loaded) -> Result<Running, StartError> {
    let gw = loaded.gateway.clone();
    let io_uring = !epoll_forced() && monoio::utils::detect_uring();
    if !io_uring {
        tracing::warn!(
            "io_uring is unavailable (a seccomp profile such as Docker's default blocks it, or the kernel lacks it); workers run on the epoll driver"
        );
    }
    crate::observe::metrics::set_io_driver(io_uring);
    // A control plane serves the Admin API only: no proxy listeners, no
    // workers.
    let serves_traffic = gw.deployment.as_ref().is_none_or(|d| d.serves_traffic());
    let workers = if serves_traffic { gw.workers.max(1) } else { 0 };
    let mut bound: Vec<Bound> = Vec::new();
    for &addr in gw.listen.iter().filter(|_| serves_traffic) {
        bound.push(
            listen::bind_reuseport(addr, workers, ListenerKind::Plain)
                .map_err(|source| StartError::Listen { addr, source })?,
        );
    }
    let tls = match gw.tls.as_ref().filter(|_| serves_traffic) {
        Some(t) => {
            let acceptor = tls::acceptor(t)?;
            for &addr in &t.listen {
                bound.push(
                    listen::bind_reuseport(addr, workers, ListenerKind::Tls)
                        .map_err(|source| StartError::Listen { addr, source })?,
                );
            }
            Some(acceptor)
        }
        None => None,
    };
    let proxy_addrs: Vec<SocketAddr> = bound
        .iter()
        .filter(|b| b.kind == ListenerKind::Plain)
        .map(|b| b.addr)
        .collect();
    let tls_addrs: Vec<SocketAddr> = bound
        .iter()
        .filter(|b| b.kind == ListenerKind::Tls)
        .map(|b| b.addr)
        .collect();

    let log = match &gw.access_log {
        Some(t) => Some(crate::observe::AccessLog::start(t).map_err(StartError::Thread)?),
        None => None,
    };
    let access_log = log.as_ref().map(|(l, _)| l.clone());
    let cell = Arc::new(SnapshotCell::new(loaded.snapshot));
    let (shutdown, stops) = Shutdown::new(workers);
    let source = open_source(&cell, &gw, loaded.files.clone(), &shutdown)?;
    let from_etcd = source.etcd().is_some();
    let stats: Vec<Arc<crate::observe::metrics::WorkerStats>> =
        (0..workers).map(|_| Arc::default()).collect();
    let serving = crate::status::ready::Serving::new(workers);
    let shared = WorkerShared {
        access_log,
        cell: cell.clone(),
        gateway: gw.clone(),
        tls,
        stats: Arc::default(),
        serving: serving.clone(),
    };
    let admin_addr = match &gw.admin {
        Some(a) => {
            let l = listen::bind_one(a.listen).map_err(|source| StartError::Listen {
                addr: a.listen,
                source,
            })?;
            let addr = l.local_addr().map_err(|source| StartError::Listen {
                addr: a.listen,
                source,
            })?;
            let key = match &a.key {
                Some(k) => Some(k.clone()),
                None => generated_admin_key(addr),
            };
            match key {
                Some(key) => {
                    crate::admin::start(l, key, source.clone(), gw.clone(), shutdown.clone())
                        .map_err(StartError::Thread)?;
                    Some(addr)
                }
                None => None,
            }
        }
        None => None,
    };
    crate::health::prober::start(cell.clone(), shutdown.clone()).map_err(StartError::Thread)?;
    if !from_etcd {
        crate::source::watch::start(source, shutdown.clone()).map_err(StartError::Thread)?;
    }
    let metrics_addr = match gw.metrics {
        Some(at) => {
            let l =
                listen::bind_one(at).map_err(|source| StartError::Listen { addr: at, source })?;
            let addr = l
                .local_addr()
                .map_err(|source| StartError::Listen { addr: at, source })?;
            crate::status::server::start(l, stats.clone(), cell.clone(), shutdown.clone())
                .map_err(StartError::Thread)?;
            Some(addr)
        }
        None => None,
    };
    // After the configuration is loaded (etcd read, or its last good copy):
    // until every worker below serves, `/status/ready` says which do not.
    let status_addr = match gw.status {
        Some(st) => {
            let at = st.listen;
            let l =
                listen::bind_one(at).map_err(|source| StartError::Listen { addr: at, source })?;
            let addr = l
                .local_addr()
                .map_err(|source| StartError::Listen { addr: at, source })?;
            let api = crate::status::api::StatusApi {
                cell: cell.clone(),
                shutdown: shutdown.clone(),
                serving: serving.clone(),
                stale_after: st.stale_after,
                etcd: from_etcd,
            };
            crate::status::api::start(l, api).map_err(StartError::Thread)?;
            Some(addr)
        }
        None => None,
    };
    // Only the CPUs this process may run on (its affinity mask: taskset,
    // a container's cpuset); none when pinning is off.
    let cpus = if gw.pin_workers {
        cpus::allowed()
    } else {
        Vec::new()
    };
    let mut per_worker: Vec<Vec<_>> = (0..workers).map(|_| Vec::new()).collect();
    for b in bound {
        for (i, s) in b.sockets.into_iter().enumerate() {
            per_worker[i].push((s, b.kind));
        }
    }
    let mut threads = Vec::with_capacity(workers);
    for (i, (listeners, stop)) in per_worker.into_iter().zip(stops).enumerate() {
        let cpu = if cpus.len() > 1 {
            Some(cpus[i % cpus.len()])
        } else {
            None
        };
        let mut shared = shared.clone();
        shared.stats = stats[i].clone();
        let t = worker::start(i, cpu, listeners, shared, stop).map_err(StartError::Thread)?;
        threads.push(t);
    }
    Ok(Running {
        proxy_addrs,
        admin_addr,
        metrics_addr,
        status_addr,
        tls_addrs,
        cell,
        shutdown,
        threads,
        log,
    })
}

/// `RINGWAY_IO_DRIVER=epoll` runs the workers on epoll even where
/// io_uring works: to measure the epoll path side by side with io_uring
/// (`results/`), as a container without io_uring would run.
pub fn epoll_forced() -> bool {
    std::env::var_os("RINGWAY_IO_DRIVER").is_some_and(|v| v == "epoll")
}

/// Where the configuration comes from: the file (its Admin API changes
/// applied before the first request), or etcd (read whole before the
/// first request, then watched).
fn open_source(
    cell: &Arc<SnapshotCell>,
    gw: &Arc<crate::config::GatewaySettings>,
    files: Vec<std::path::PathBuf>,
    shutdown: &Arc<Shutdown>,
) -> Result<Arc<crate::source::ConfigSource>, StartError> {
    use crate::source::{etcd, ConfigSource};
    let etcd_settings = gw.deployment.as_ref().and_then(|d| d.etcd.clone());
    let Some(settings) = etcd_settings else {
        return Ok(Arc::new(ConfigSource::open_files(
            cell.clone(),
            gw.clone(),
            files,
        )));
    };
    let extra_ca = gw.ssl_trusted_certificate.as_deref();
    let etcd = Arc::new(etcd::Etcd::new(
        settings,
        files.first().map(|f| f.as_path()),
        extra_ca,
    )?);
    let source = Arc::new(ConfigSource::with_etcd(
        cell.clone(),
        gw.clone(),
        etcd.clone(),
    ));
    etcd::start(etcd, source.clone(), shutdown.clone())?;
    Ok(source)
}

/// Prints the bound addresses on stdout, one line each, for humans and
/// for scripts and tests waiting on start-up.
pub fn announce(r: &Running) {
    let mut out = std::io::stdout().lock();
    for a in &r.proxy_addrs {
        let _ = writeln!(out, "ringway: proxy listening on http://{a}");
    }
    for a in &r.tls_addrs {
        let _ = writeln!(out, "ringway: proxy listening on https://{a}");
    }
    if let Some(a) = r.admin_addr {
        let _ = writeln!(out, "ringway: admin API listening on http://{a}");
    }
    if let Some(a) = r.metrics_addr {
        let _ = writeln!(out, "ringway: metrics listening on http://{a}");
    }
    if let Some(a) = r.status_addr {
        let _ = writeln!(out, "ringway: status listening on http://{a}");
    }
    let _ = out.flush();
}

/// A key for an Admin API whose `gateway.admin.key` is not set: random,
/// and written to a file only this user can read (`ringway-admin-<port>.key`
/// in the temporary directory) whose name — never the key — is logged.
/// `None` (the Admin API stays off, and says why) when either fails.
fn generated_admin_key(addr: SocketAddr) -> Option<String> {
    let mut b = [0u8; 16];
    if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b).is_err() {
        tracing::error!(
            "gateway.admin.key is not set and no random key can be made; the Admin API is off"
        );
        return None;
    }
    let key: String = b.iter().map(|x| format!("{x:02x}")).collect();
    let path = std::env::temp_dir().join(format!("ringway-admin-{}.key", addr.port()));
    match write_private(&path, key.as_bytes()) {
        Ok(()) => {
            tracing::warn!(
                "gateway.admin.key is not set; this run's Admin API key is in {} (readable by this user only)",
                path.display()
            );
            Some(key)
        }
        Err(e) => {
            tracing::error!(
                "gateway.admin.key is not set and the generated key cannot be written to {}: {e}; the Admin API is off",
                path.display()
            );
            None
        }
    }
}

/// Writes `data` to a new file at `path` with mode 0600 (an old file there
/// is removed first; a symbolic link is not followed).
fn write_private(path: &std::path::Path, data: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    f.write_all(data)
}

/// Trips `shutdown` on SIGTERM or SIGINT; a second signal exits at once.
pub fn install_signal_handlers(
    shutdown: Arc<Shutdown>,
    drain: std::time::Duration,
) -> std::io::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])?;
    let mut seen = 0;
    crate::supervise::thread(
        "ringway-signals",
        crate::supervise::Component::Signals,
        move || {
            crate::supervise::fault(crate::supervise::Component::Signals);
            for sig in signals.forever() {
                seen += 1;
                if seen == 1 {
                    tracing::info!(signal = sig, "shutting down: no new connections, draining in-flight requests for up to {:?}", drain);
                    shutdown.trigger();
                } else {
                    tracing::warn!("second signal: exiting now");
                    std::process::exit(130);
                }
            }
        },
    )?;
    Ok(())
}
