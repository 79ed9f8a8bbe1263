//! Workers: one OS thread per core, pinned, each running its own monoio
//! runtime (io_uring, or the epoll driver where io_uring is unavailable)
//! with its own `SO_REUSEPORT` listeners, connection pool and counters.
//! Nothing here is shared with other workers except the snapshot cell,
//! read through a generation check between requests.

use std::cell::{Cell, RefCell};
use std::net::TcpListener as StdListener;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use monoio::net::TcpListener;

use super::conn;
use super::listen::ListenerKind;
use super::signal::LocalSignal;
use crate::config::{GatewaySettings, Snapshot, SnapshotCell};
use crate::http::HeadLimits;
use crate::net::Io;
use crate::upstream::Pool;

/// What every worker receives at start.
#[derive(Clone)]
pub struct WorkerShared {
    pub cell: Arc<SnapshotCell>,
    pub access_log: Option<Arc<crate::observe::AccessLog>>,
    pub gateway: Arc<GatewaySettings>,
    pub tls: Option<monoio_rustls::TlsAcceptor>,
    /// This worker's request counters (read by the metrics endpoint).
    pub stats: Arc<crate::observe::metrics::WorkerStats>,
}

/// Per-worker state, owned by one thread.
pub struct Worker {
    pub index: usize,
    cell: Arc<SnapshotCell>,
    /// `Rc` around the shared `Arc` on purpose: requests clone the `Rc`
    /// (a plain increment on this core) instead of the `Arc` (an atomic on a
    /// cache line every worker touches).
    #[allow(clippy::redundant_allocation)]
    current: RefCell<Rc<Arc<Snapshot>>>,
    generation: Cell<u64>,
    pub gateway: Arc<GatewaySettings>,
    pub head_limits: HeadLimits,
    pub pool: Pool,
    /// Round-robin counters of plain upstreams, by `UpstreamSpec::slot`.
    rr: RefCell<Vec<u64>>,
    pub shutdown: Rc<LocalSignal>,
    /// Open client connections.
    pub active: Cell<usize>,
    tls: Option<monoio_rustls::TlsAcceptor>,
    /// This worker's access-log buffer, if logging is on.
    log: Option<crate::observe::WorkerLog>,
    /// Logger-plugin entries waiting to be handed to their sinks.
    loggers: crate::loggers::WorkerQueue,
    /// Rung when a log line or entry is queued: the shipper sleeps until
    /// then, instead of ticking while nothing is logged. The queues are
    /// private to the worker and filled only by [`Worker::log_request`],
    /// so nothing can be queued without ringing it.
    logs_queued: super::signal::Doorbell,
    pub stats: Arc<crate::observe::metrics::WorkerStats>,
    pub busy: super::busy_poll::BusyPoll,
}

impl Worker {
    fn new(index: usize, shared: WorkerShared) -> Worker {
        let snap = shared.cell.load();
        let generation = snap.generation;
        let slots = snap.upstream_slots;
        Worker {
            index,
            head_limits: HeadLimits {
                max_head_bytes: shared.gateway.limits.max_head_bytes,
                max_headers: shared.gateway.limits.max_headers,
            },
            busy: super::busy_poll::BusyPoll::new(shared.gateway.busy_poll),
            gateway: shared.gateway,
            cell: shared.cell,
            current: RefCell::new(Rc::new(snap)),
            generation: Cell::new(generation),
            pool: Pool::new(),
            rr: RefCell::new(vec![0; slots]),
            shutdown: LocalSignal::new(),
            active: Cell::new(0),
            tls: shared.tls,
            log: shared.access_log.map(crate::observe::WorkerLog::new),
            loggers: Default::default(),
            logs_queued: Default::default(),
            stats: shared.stats,
        }
    }

    /// Queues a finished request's access-log line and logger entries
    /// (global rules' loggers log every request, matched or not, as in
    /// APISIX; the route's when one matched) and wakes the shipper.
    pub fn log_request(
        &self,
        snap: &Snapshot,
        head: &crate::http::RequestHead,
        ctx: &super::ctx::RequestCtx,
    ) {
        let mut queued = false;
        if let Some(log) = &self.log {
            log.record(head, ctx, &snap.redaction);
            queued = true;
        }
        if snap.global_plugins.has_loggers() {
            snap.global_plugins
                .log(head, ctx, &self.loggers, &snap.redaction);
            queued = true;
        }
        if let Some(idx) = ctx.log_route {
            snap.routes[idx]
                .plugins
                .log(head, ctx, &self.loggers, &snap.redaction);
            queued = true;
        }
        if queued {
            self.logs_queued.ring();
        }
    }

    /// The current snapshot, picking up a newly published one if any.
    #[inline]
    #[allow(clippy::redundant_allocation)]
    pub fn snapshot(&self) -> Rc<Arc<Snapshot>> {
        let g = self.cell.generation();
        if g != self.generation.get() {
            let snap = self.cell.load();
            self.rr.borrow_mut().resize(snap.upstream_slots, 0);
            self.generation.set(snap.generation);
            *self.current.borrow_mut() = Rc::new(snap);
        }
        self.current.borrow().clone()
    }

    /// Next round-robin position for upstream `slot`.
    #[inline]
    pub fn next_rr(&self, slot: usize) -> u64 {
        let mut rr = self.rr.borrow_mut();
        match rr.get_mut(slot) {
            Some(c) => {
                let v = *c;
                *c = v.wrapping_add(1);
                v
            }
            None => 0,
        }
    }
}

/// Decrements the open-connection count even if the task unwinds.
struct ActiveGuard(Rc<Worker>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.set(self.0.active.get() - 1);
    }
}

/// Runs a worker on the current thread until shutdown and drain complete.
pub fn run(
    index: usize,
    cpu: Option<usize>,
    listeners: Vec<(StdListener, ListenerKind)>,
    shared: WorkerShared,
    stop: flume::Receiver<()>,
) -> std::io::Result<()> {
    if let Some(cpu) = cpu {
        if let Err(e) = monoio::utils::bind_to_cpu_set([cpu]) {
            tracing::warn!(worker = index, cpu, "cannot pin worker to its core: {e}");
        }
    }
    let mut rt = runtime()?;
    rt.block_on(async move {
        let drain = shared.gateway.timeouts.drain;
        let w = Rc::new(Worker::new(index, shared));
        for (l, kind) in listeners {
            let l = TcpListener::from_std(l)?;
            monoio::spawn(accept_loop(w.clone(), l, kind));
        }
        monoio::spawn(sweep_pools(w.clone()));
        if w.busy.enabled() {
            monoio::spawn(super::busy_poll::run(w.clone(), stop.clone()));
        }
        monoio::spawn(ship_logs(w.clone()));
        let _ = stop.recv_async().await;
        w.shutdown.fire();
        let deadline = Instant::now() + drain;
        while w.active.get() > 0 && Instant::now() < deadline {
            crate::timer::sleep(Duration::from_millis(10)).await;
        }
        if w.active.get() > 0 {
            tracing::warn!(
                worker = index,
                open = w.active.get(),
                "drain timeout: closing remaining connections"
            );
        }
        if let Some(log) = &w.log {
            log.ship();
        }
        w.loggers.ship();
        Ok(())
    })
}

type Runtime = monoio::FusionRuntime<
    monoio::time::TimeDriver<monoio::IoUringDriver>,
    monoio::time::TimeDriver<monoio::LegacyDriver>,
>;

/// Builds this thread's runtime. The ring is set up for one issuer with
/// cooperative task running: completions are picked up at the next
/// `io_uring_enter` instead of interrupting the worker with an IPI (a
/// measured ~10% of CPU under load). Older kernels without those flags get a
/// plain ring; no io_uring at all gets the epoll driver.
fn runtime() -> std::io::Result<Runtime> {
    const ENTRIES: u32 = 4096;
    let mut urb = io_uring::IoUring::builder();
    urb.setup_coop_taskrun().setup_single_issuer();
    match monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .with_entries(ENTRIES)
        .uring_builder(urb)
        .build()
    {
        Ok(rt) => Ok(rt),
        Err(e) => {
            tracing::debug!("io_uring with COOP_TASKRUN unavailable ({e}); using a plain ring");
            monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
                .enable_timer()
                .with_entries(ENTRIES)
                .build()
        }
    }
}

async fn accept_loop(w: Rc<Worker>, listener: TcpListener, kind: ListenerKind) {
    let local_port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    loop {
        let accepted = monoio::select! {
            r = listener.accept() => r,
            _ = w.shutdown.wait() => break,
        };
        match accepted {
            Ok((tcp, peer)) => {
                let _ = tcp.set_nodelay(true);
                w.active.set(w.active.get() + 1);
                let guard = ActiveGuard(w.clone());
                monoio::spawn(async move {
                    let w = guard.0.clone();
                    let raw_fd = tcp.as_raw_fd();
                    let io = match kind {
                        ListenerKind::Plain => Io::Tcp(tcp),
                        ListenerKind::Tls => {
                            let Some(acceptor) = w.tls.clone() else {
                                return;
                            };
                            // Boxed: the handshake's state is large and only
                            // TLS connections should carry it.
                            match crate::timer::timeout(
                                w.gateway.timeouts.header,
                                Box::pin(acceptor.accept(tcp)),
                            )
                            .await
                            {
                                Ok(Ok(s)) => Io::ServerTls(Box::new(s)),
                                Ok(Err(e)) => {
                                    tracing::debug!(%peer, "TLS handshake failed: {e}");
                                    return;
                                }
                                Err(_) => return,
                            }
                        }
                    };
                    let served =
                        std::panic::AssertUnwindSafe(conn::serve(w, io, peer, local_port, raw_fd))
                            .catch_unwind()
                            .await;
                    if served.is_err() {
                        tracing::error!(%peer, "connection handler panicked; connection closed, worker keeps serving");
                    }
                    drop(guard);
                });
            }
            Err(e) => {
                // Out of descriptors and similar: back off instead of spinning.
                tracing::warn!(worker = w.index, "accept failed: {e}");
                crate::timer::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Hands queued access-log lines and logger entries on, at most
/// `SHIP_EVERY` after the first of them was queued (sooner when a queue
/// fills); asleep while nothing is logged. What is left at shutdown is
/// shipped when the worker ends.
async fn ship_logs(w: Rc<Worker>) {
    loop {
        monoio::select! {
            _ = w.logs_queued.rung() => {}
            _ = w.shutdown.wait() => return,
        }
        monoio::select! {
            _ = crate::timer::sleep(crate::observe::access_log::SHIP_EVERY) => {}
            _ = w.shutdown.wait() => return,
        }
        w.logs_queued.answer();
        if let Some(log) = &w.log {
            log.ship();
        }
        w.loggers.ship();
    }
}

async fn sweep_pools(w: Rc<Worker>) {
    loop {
        monoio::select! {
            _ = crate::timer::sleep(Duration::from_secs(5)) => w.pool.sweep(),
            _ = w.shutdown.wait() => return,
        }
    }
}
