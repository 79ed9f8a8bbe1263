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

use monoio::net::TcpListener;

use super::conn;
use super::listen::ListenerKind;
use crate::config::GatewaySettings;
use crate::lane::Lane;
use crate::net::Io;
use crate::observe::metrics::series::Sample;
use crate::observe::metrics::table::{Node, Observation, SeriesTable};
use crate::snapshot::{Snapshot, SnapshotCell};
use crate::supervise::signal::LocalSignal;
use crate::supervise::{self, fault, Component};

/// What every worker receives at start.
#[derive(Clone)]
pub struct WorkerShared {
    pub cell: Arc<SnapshotCell>,
    pub access_log: Option<Arc<crate::observe::AccessLog>>,
    pub gateway: Arc<GatewaySettings>,
    pub tls: Option<monoio_rustls::TlsAcceptor>,
    /// This worker's request counters (read by the metrics endpoint).
    pub stats: Arc<crate::observe::metrics::WorkerStats>,
    /// Every worker's "serving" flag (read by the Status API): this
    /// worker sets its own while its accept loops run.
    pub serving: Arc<crate::status::ready::Serving>,
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
    /// What this core's handlers share: settings, pool, busy polling.
    pub lane: Rc<Lane>,
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
    logs_queued: crate::supervise::signal::Doorbell,
    pub stats: Arc<crate::observe::metrics::WorkerStats>,
    /// This worker's labelled series (`None`: `gateway.metrics.labels`
    /// off, or no metrics listener).
    pub series: Option<RefCell<SeriesTable>>,
}

impl Worker {
    fn new(index: usize, shared: WorkerShared) -> Worker {
        let snap = shared.cell.load();
        let generation = snap.generation;
        let slots = snap.upstream_slots;
        let labels = shared.gateway.metric_labels;
        let series = labels.enabled.then(|| {
            RefCell::new(SeriesTable::new(
                labels.max_label_sets,
                shared.stats.labelled.clone(),
            ))
        });
        Worker {
            series,
            index,
            lane: Rc::new(Lane::new(shared.gateway, slots)),
            cell: shared.cell,
            current: RefCell::new(Rc::new(snap)),
            generation: Cell::new(generation),
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
        ctx: &crate::exchange::ctx::RequestCtx,
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

    /// Records a finished request in the labelled series (APISIX's
    /// families): a few id lookups in worker-local maps and plain stores.
    pub fn record_series(
        &self,
        snap: &Snapshot,
        head: &crate::http::RequestHead,
        ctx: &crate::exchange::ctx::RequestCtx,
    ) {
        let Some(table) = &self.series else { return };
        let mut table = table.borrow_mut();
        if let Some(slot) = ctx.llm_active {
            table.end_llm(slot);
        }
        let (o, s) = observation(snap, head, ctx);
        table.record(&o, &s);
    }

    /// An LLM request starts on route `index`: raises its
    /// `apisix_llm_active_connections` until [`Self::record_series`].
    pub fn begin_llm(
        &self,
        snap: &Snapshot,
        index: usize,
        ctx: &mut crate::exchange::ctx::RequestCtx,
    ) {
        if let Some(table) = &self.series {
            let route = &snap.routes[index].metrics;
            ctx.llm_active = Some(table.borrow_mut().begin_llm(route, ctx.consumer.as_ref()));
        }
    }

    /// The current snapshot, picking up a newly published one if any.
    #[inline]
    #[allow(clippy::redundant_allocation)]
    pub fn snapshot(&self) -> Rc<Arc<Snapshot>> {
        let g = self.cell.generation();
        if g != self.generation.get() {
            let snap = self.cell.load();
            self.lane.resize_rr(snap.upstream_slots);
            if let Some(table) = &self.series {
                let current = snap.routes.iter().map(|r| &*r.metrics).collect();
                table.borrow_mut().reloaded(&current);
            }
            self.generation.set(snap.generation);
            *self.current.borrow_mut() = Rc::new(snap);
        }
        self.current.borrow().clone()
    }
}

/// A finished request's label values and sample, read from its context.
fn observation<'a>(
    snap: &'a Snapshot,
    head: &crate::http::RequestHead,
    ctx: &'a crate::exchange::ctx::RequestCtx,
) -> (Observation<'a>, Sample) {
    use crate::exchange::ctx::RequestType;
    let ai = ctx.request_type != RequestType::TraditionalHttp;
    let node = match (&ctx.llm.instance, ctx.upstream_addr) {
        (Some(i), _) if ai => Node::Instance(i),
        (_, Some(a)) => Node::Ip(a.ip()),
        _ => Node::None,
    };
    let body = match head.framing {
        crate::http::BodyFraming::Length(n) => n,
        _ => 0,
    };
    let o = Observation {
        route: ctx
            .route_index
            .and_then(|i| snap.routes.get(i as usize))
            .map(|r| &r.metrics),
        consumer: ctx.consumer.as_ref(),
        node,
        request_model: ctx.llm.request_model.as_deref().filter(|_| ai),
        model: ctx.llm.model.as_deref().filter(|_| ai),
        request_type: ctx.request_type,
        code: ctx.status,
    };
    let stream = ctx.request_type == RequestType::AiStream;
    let s = Sample {
        request: ctx.started.elapsed(),
        upstream: ctx.upstream_response_time,
        ingress: head.buf.len() as u64 + body,
        egress: ctx.bytes_sent,
        // APISIX's `llm_time_to_first_token`: a stream's first token, an
        // answer's whole response time.
        llm_latency: ctx
            .llm
            .ttft
            .or(ctx.upstream_response_time.filter(|_| !stream)),
        ttft: ctx.llm.ttft.filter(|_| stream),
        prompt_tokens: ctx.llm.prompt_tokens,
        completion_tokens: ctx.llm.completion_tokens,
    };
    (o, s)
}

/// Decrements the open-connection count even if the task unwinds.
struct ActiveGuard(Rc<Worker>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.set(self.0.active.get() - 1);
        self.0.stats.connection_closed();
    }
}

/// Starts worker `index` on its own supervised thread: a panic that
/// unwinds its runtime starts a new runtime on the same listening sockets
/// (each run gets duplicates of their descriptors, so the sockets and
/// their accept queues outlive any one run).
pub fn start(
    index: usize,
    cpu: Option<usize>,
    listeners: Vec<(StdListener, ListenerKind)>,
    shared: WorkerShared,
    stop: flume::Receiver<()>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let name = format!("ringway-w{index}");
    supervise::thread(&name, Component::Worker, move || {
        let mut dups = Vec::with_capacity(listeners.len());
        for (l, kind) in &listeners {
            match l.try_clone() {
                Ok(l) => dups.push((l, *kind)),
                Err(e) => {
                    tracing::error!(worker = index, "cannot use a listening socket: {e}");
                    return;
                }
            }
        }
        // A run after a panic: not serving until its accept loops run again.
        shared.serving.stop(index);
        if let Err(e) = run(index, cpu, dups, shared.clone(), stop.clone()) {
            tracing::error!(worker = index, "worker failed: {e}");
        }
    })
}

/// Runs a worker on the current thread until shutdown and drain complete.
fn run(
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
    // A run after a panic: the timer wheel's driver went with the old runtime.
    crate::timer::forget_driver();
    rt.block_on(async move {
        let drain = shared.gateway.timeouts.drain;
        let serving = shared.serving.clone();
        let w = Rc::new(Worker::new(index, shared));
        fault(Component::Worker);
        for (l, kind) in listeners {
            let l = Rc::new(Listening {
                control: l.try_clone()?,
                socket: TcpListener::from_std(l)?,
            });
            let w = w.clone();
            monoio::spawn(supervise::task(Component::Accept, move || {
                accept_loop(w.clone(), l.clone(), kind)
            }));
        }
        // Every listener is registered with this runtime and its accept
        // loop spawned: serving, until this run ends (returns or unwinds).
        let _serving = serving.serve(index);
        let sw = w.clone();
        monoio::spawn(supervise::task(Component::PoolSweeper, move || {
            sweep_pools(sw.clone())
        }));
        if w.lane.busy.enabled() {
            let (lane, shutdown, stop) = (w.lane.clone(), w.shutdown.clone(), stop.clone());
            monoio::spawn(supervise::task(Component::BusyPoll, move || {
                crate::lane::busy_poll::run(lane.clone(), shutdown.clone(), stop.clone())
            }));
        }
        let lw = w.clone();
        monoio::spawn(supervise::task(Component::LogShipper, move || {
            ship_logs(lw.clone())
        }));
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
    if super::epoll_forced() {
        return monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .map(Runtime::from);
    }
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

/// A listening socket: the runtime's handle, and a std one for
/// [`stop_listening`].
struct Listening {
    socket: TcpListener,
    control: StdListener,
}

async fn accept_loop(w: Rc<Worker>, listening: Rc<Listening>, kind: ListenerKind) {
    let listener = &listening.socket;
    let local_port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    loop {
        fault(Component::Accept);
        let accepted = monoio::select! {
            r = listener.accept() => r,
            _ = w.shutdown.wait() => {
                stop_listening(&listening.control);
                break;
            }
        };
        match accepted {
            Ok((tcp, peer)) => {
                let _ = tcp.set_nodelay(true);
                w.active.set(w.active.get() + 1);
                w.stats.connection_opened();
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
                            let handshake = supervise::contain(Component::TlsHandshake, async {
                                fault(Component::TlsHandshake);
                                // Boxed: the handshake's state is large and
                                // only TLS connections should carry it.
                                crate::timer::timeout(
                                    w.lane.gateway.timeouts.header,
                                    Box::pin(acceptor.accept(tcp)),
                                )
                                .await
                            });
                            match handshake.await {
                                Some(Ok(Ok(s))) => Io::ServerTls(Box::new(s)),
                                Some(Ok(Err(e))) => {
                                    tracing::debug!(%peer, "TLS handshake failed: {e}");
                                    return;
                                }
                                Some(Err(_)) | None => return,
                            }
                        }
                    };
                    // The connection moves into the future that serves it
                    // (not captured by a block around it: that would keep
                    // a second copy for the connection's life).
                    let c = crate::exchange::ClientConn::new(io, peer, local_port, raw_fd);
                    supervise::contain(Component::Connection, conn::serve(w, c)).await;
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

/// Stops the listening socket taking connections, for every descriptor
/// of it (the supervisor keeps one open across runs, so dropping ours
/// would not close it): new connections are refused during the drain,
/// as when the socket is closed.
fn stop_listening(listener: &StdListener) {
    if let Err(e) = socket2::SockRef::from(listener).shutdown(std::net::Shutdown::Read) {
        tracing::debug!("cannot stop listening: {e}");
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
        fault(Component::LogShipper);
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

/// Every 5 s: closes expired idle upstream connections, and picks up a
/// newly published configuration, so that an idle worker lets go of the
/// one it last used (and what only that one holds: a replaced logger's
/// sending thread and connection, a replaced Redis store) instead of
/// keeping it until its next request.
async fn sweep_pools(w: Rc<Worker>) {
    loop {
        monoio::select! {
            _ = crate::timer::sleep(Duration::from_secs(5)) => {
                fault(Component::PoolSweeper);
                w.lane.pool.sweep();
                drop(w.snapshot());
            }
            _ = w.shutdown.wait() => return,
        }
    }
}
